"""Pool sizing and scale-down choice: pure policy, no Kubernetes and no Dask calls.

``pool_target`` says how many workers a pool should have within its spec bounds;
``choose_retirements`` says which pods go when it shrinks, with the reason for each. The
mechanism (``pools``) retires the chosen workers through the Dask scheduler, marks their pods
with ``DELETION_COST`` and only then lowers the Deployment's replicas, so the ReplicaSet
controller deletes exactly those pods.

The controller ranks the pods of a shrinking ReplicaSet: not ready before ready, then lower
``controller.kubernetes.io/pod-deletion-cost`` first, then newest first. The choice therefore
takes not-ready pods first (they hold no data, and the controller takes them first whatever
their cost), then ready pods by what they would lose: a worker already retiring, a pod whose
worker has not joined the scheduler, then the joined workers by running tasks, bytes held
and tasks assigned (in that order).
Never the newest pod just because it is the newest: that one may hold data.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Annotation the ReplicaSet controller reads to choose which pods to delete first.
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
#: The cost put on the pods chosen for retirement (others have the default, 0).
DELETION_COST = "-1000"


def pool_target(replicas: int, minimum: int, maximum: int) -> int:
    """Workers a pool should have, given how many it has now and its spec bounds.

    Within [minimum, maximum]; a pool that may have workers keeps at least one, so the job
    makes progress (until a predictor sizes the pools, this is the whole policy: the bounds
    move, the pool follows).
    """
    if minimum < 0 or maximum < minimum:
        raise ValueError(f"pool bounds must satisfy 0 <= min <= max, got min={minimum} max={maximum}")
    wanted = max(int(replicas), 1)
    return max(minimum, min(maximum, wanted))


@dataclass(frozen=True)
class WorkerPod:
    """What the policy knows about one pod of a pool."""

    name: str
    ready: bool
    #: A Dask worker of this pod's name is connected to the scheduler.
    joined: bool = False
    #: The scheduler is already retiring it (it takes no new tasks).
    retiring: bool = False
    #: Tasks it runs now (their work is lost if it goes before they finish).
    executing: int = 0
    #: Bytes of results it holds (copied elsewhere before it goes).
    stored_bytes: int = 0
    #: Tasks assigned to it, queued ones included (they move elsewhere for free).
    processing: int = 0


@dataclass(frozen=True)
class Retirement:
    pod: str
    reason: str
    #: Its worker must be retired through the scheduler before the pod goes.
    needs_retire: bool


def _rank(pod: WorkerPod) -> tuple:
    load = (pod.executing, pod.stored_bytes, pod.processing)
    if not pod.ready:
        return (0, 0, (0, 0, 0), pod.name)
    if pod.retiring:
        return (1, 0, load, pod.name)
    if not pod.joined:
        return (1, 1, (0, 0, 0), pod.name)
    return (1, 2, load, pod.name)


def _reason(pod: WorkerPod) -> str:
    if not pod.ready:
        return "not ready: holds no data"
    if pod.retiring:
        return "already retiring"
    if not pod.joined:
        return "its worker has not joined the scheduler: holds no data"
    return (f"{pod.executing} running task(s), {pod.stored_bytes} bytes held, "
            f"{pod.processing} assigned")


def choose_retirements(pods: list[WorkerPod], count: int) -> list[Retirement]:
    """The ``count`` pods to remove (fewer if there are fewer), cheapest loss first."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    chosen = sorted(pods, key=_rank)[:count]
    return [Retirement(pod.name, _reason(pod), needs_retire=pod.ready and pod.joined)
            for pod in chosen]
