"""Pool sizing and scale-down choice: pure policy, no Kubernetes and no Dask calls.

This module is the one place that decides how many workers a pool has:

- ``pool_target`` asks a :class:`PoolPolicy` what the pool should have (:class:`KeepWithinBounds`
  when ``spec.pools`` changes; :class:`Targets`, the predictor's decision, for a job with
  ``spec.autoscale``: ``autoscaler``), clamps the answer to the pool's spec bounds (``clamp``)
  and returns a :class:`Decision` with its reason;
- ``initial_replicas`` is the same decision for a pool that has no worker yet (the builders
  create the worker Deployments with it).

``choose_retirements`` says which pods go when a pool shrinks, with the reason for each. The
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
from typing import Protocol

from ..spec import PoolBounds

#: Annotation the ReplicaSet controller reads to choose which pods to delete first.
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
#: The cost put on the pods chosen for retirement (others have the default, 0).
DELETION_COST = "-1000"


def clamp(replicas: int, bounds: PoolBounds) -> int:
    """``replicas`` within the pool's ``[min, max]``."""
    if bounds.min < 0 or bounds.max < bounds.min:
        raise ValueError(f"pool bounds must satisfy 0 <= min <= max, got min={bounds.min} max={bounds.max}")
    return max(bounds.min, min(bounds.max, int(replicas)))


class PoolPolicy(Protocol):
    """What a pool should have before its bounds apply, and why: the slot of the predictor."""

    def wanted(self, pool: str, current: int) -> tuple[int, str]: ...


class KeepWithinBounds:
    """The policy until a predictor sizes the pools: a pool keeps the workers it has, and at least
    one so the job makes progress; the spec bounds move, the pool follows."""

    def wanted(self, pool: str, current: int) -> tuple[int, str]:
        if current < 1:
            return 1, "at least one worker, so the job makes progress"
        return int(current), "keeps its workers"


#: The policy the operator runs.
DEFAULT_POLICY: PoolPolicy = KeepWithinBounds()


class Targets:
    """A policy's answer decided elsewhere (the predictor's ``Decision`` for ``spec.autoscale``):
    each pool's target and its reason; a pool it does not name keeps its workers."""

    def __init__(self, targets: dict[str, int], reasons: dict[str, str] | None = None):
        self.targets, self.reasons = dict(targets), dict(reasons or {})

    def wanted(self, pool: str, current: int) -> tuple[int, str]:
        if pool not in self.targets:
            return KeepWithinBounds().wanted(pool, current)
        target = int(self.targets[pool])
        return target, self.reasons.get(pool) or f"{pool} {current} -> {target}"


@dataclass(frozen=True)
class Decision:
    """How many workers a pool is to have, from how many, and why."""

    pool: str
    current: int
    target: int
    reason: str

    @property
    def changes(self) -> bool:
        return self.target != self.current


def pool_target(pool: str, current: int, bounds: PoolBounds, policy: PoolPolicy = DEFAULT_POLICY) -> Decision:
    """The size of ``pool`` (now ``current`` workers): the policy's answer within the bounds."""
    wanted, reason = policy.wanted(pool, current)
    target = clamp(wanted, bounds)
    if target != wanted:
        reason += f"; held to spec.pools.{pool} [min {bounds.min}, max {bounds.max}]"
    return Decision(pool, int(current), target, reason)


def initial_replicas(pool: str, bounds: PoolBounds, policy: PoolPolicy = DEFAULT_POLICY) -> int:
    """Workers a pool starts with: what the policy wants for an empty pool, within the bounds
    (with the default policy: its min, but at least one if the pool may have any)."""
    return pool_target(pool, 0, bounds, policy).target


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
    return f"{pod.executing} running task(s), {pod.stored_bytes} bytes held, {pod.processing} assigned"


def choose_retirements(pods: list[WorkerPod], count: int) -> list[Retirement]:
    """The ``count`` pods to remove (fewer if there are fewer), cheapest loss first."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    chosen = sorted(pods, key=_rank)[:count]
    return [Retirement(pod.name, _reason(pod), needs_retire=pod.ready and pod.joined) for pod in chosen]
