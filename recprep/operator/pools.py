"""Carrying out a pool size: scale-up by replicas, scale-down by graceful retirement.

The mechanism behind ``scaling``'s policy. To shrink pool P from n to m workers:

1. read P's pods and the scheduler's workers (by pod: ``scheduler.pod_of``);
2. ``scaling.choose_retirements`` picks the n - m pods to go, with a reason each;
3. the chosen pods' workers are retired through the scheduler (their keys are copied
   elsewhere; they start no new task) and, up to ``Settings.retire_timeout``, the tasks they
   are running are let finish (tasks queued on them move to other workers when they go);
4. the pods the scheduler retired (and the chosen pods without a worker) get the
   ``controller.kubernetes.io/pod-deletion-cost`` annotation;
5. only then are the Deployment's replicas lowered, by that many: the ReplicaSet controller
   deletes the lowest-cost pods, i.e. exactly the retired ones.

A worker the scheduler would not retire (its data has nowhere to go) keeps its pod; the result
says so and the caller tries again later. Nothing is deleted without being chosen, and the
newest pod is never deleted just for being the newest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from ..spec import PreprocessJob
from . import kube, labels, scaling
from . import scheduler as dask_scheduler
from .settings import Settings


@dataclass
class PoolChange:
    """What one pool's resize did."""

    pool: str
    before: int
    target: int
    after: int
    retired: list[scaling.Retirement] = field(default_factory=list)
    #: Chosen pods whose workers the scheduler could not retire (they keep their pods).
    kept: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.after == self.target

    def describe(self) -> str:
        text = f"pool {self.pool}: {self.before} -> {self.after} workers"
        if self.after != self.target:
            text += f" (target {self.target})"
        if self.retired:
            text += "; retired " + ", ".join(f"{r.pod} ({r.reason})" for r in self.retired)
        if self.kept:
            text += "; not retired (data has nowhere to go yet): " + ", ".join(self.kept)
        return text


def _is_ready(pod: Any) -> bool:
    for cond in (pod.status.conditions or []) if pod.status else []:
        if cond.type == "Ready":
            return cond.status == "True"
    return False


def worker_pods_view(
    pods: list[Any], workers: dict[str, dask_scheduler.DaskWorker]
) -> list[scaling.WorkerPod]:
    """The policy's view of a pool's pods, joined with the scheduler's workers (by pod name)."""
    view = []
    for pod in pods:
        worker = workers.get(pod.metadata.name)
        view.append(
            scaling.WorkerPod(
                name=pod.metadata.name,
                ready=_is_ready(pod),
                joined=worker is not None,
                retiring=worker is not None and worker.status == dask_scheduler.RETIRING,
                executing=worker.executing if worker else 0,
                stored_bytes=worker.stored_bytes if worker else 0,
                processing=worker.processing if worker else 0,
            )
        )
    return view


def resize_pool(
    api: k8s.ApiClient,
    job: PreprocessJob,
    namespace: str,
    pool: str,
    target: int,
    settings: Settings,
    logger: logging.Logger,
    scheduler_address: str | None = None,
) -> PoolChange | None:
    """Bring ``pool`` to ``target`` workers; None if its Deployment does not exist (yet).

    ``scheduler_address`` defaults to the job's scheduler Service (``scheduler.address``).
    Raises ``scheduler.SchedulerUnavailable`` when the scheduler cannot be asked and a ready
    pod would have to go (it may hold data)."""
    name = job.metadata.name
    deployment = kube.read_worker_deployment(api, namespace, name, pool)
    if deployment is None:
        return None
    current = int(deployment.spec.replicas or 0)
    change = PoolChange(pool, current, target, current)
    if target >= current:
        if target > current:
            kube.set_replicas(api, namespace, name, pool, target)
            change.after = target
        return change

    addr = scheduler_address or dask_scheduler.address(name, namespace)
    pods = kube.worker_pods(api, namespace, name, pool)
    # Replicas without a pod yet (the controller has not created them) go first, for free.
    unborn = min(max(current - len(pods), 0), current - target)
    workers: dict[str, dask_scheduler.DaskWorker] = {}
    if current - target > unborn:
        try:
            workers = dask_scheduler.state(addr).workers
        except dask_scheduler.SchedulerUnavailable:
            if any(_is_ready(p) for p in pods):
                raise  # ready workers may hold data: never remove them unseen
    chosen = scaling.choose_retirements(worker_pods_view(pods, workers), current - target - unborn)
    to_retire = {workers[r.pod].address: r.pod for r in chosen if r.needs_retire and r.pod in workers}
    retired_addresses = dask_scheduler.retire(addr, list(to_retire), settings.retire_timeout)
    retired_names = [to_retire[a] for a in retired_addresses if a in to_retire]
    if retired_names and not dask_scheduler.wait_idle(addr, retired_names, settings.retire_timeout):
        logger.warning(
            "pool %s: retired workers still ran tasks after %ss; those are recomputed elsewhere",
            pool,
            settings.retire_timeout,
        )
    going = [r for r in chosen if not r.needs_retire or r.pod in retired_names]
    change.kept = [r.pod for r in chosen if r not in going]
    for r in going:
        kube.annotate_pod(api, namespace, r.pod, {scaling.DELETION_COST_ANNOTATION: scaling.DELETION_COST})
    change.retired = going
    change.after = current - unborn - len(going)
    if change.after != current:
        kube.set_replicas(api, namespace, name, pool, change.after)
    return change


def apply_bounds(
    api: k8s.ApiClient,
    job: PreprocessJob,
    namespace: str,
    settings: Settings,
    logger: logging.Logger,
    scheduler_address: str | None = None,
) -> list[PoolChange]:
    """Every pool brought to the size ``scaling.pool_target`` decides; the changes made."""
    changes = []
    for pool in labels.POOLS:
        deployment = kube.read_worker_deployment(api, namespace, job.metadata.name, pool)
        if deployment is None:
            continue
        decision = scaling.pool_target(
            pool, int(deployment.spec.replicas or 0), getattr(job.spec.pools, pool)
        )
        if decision.changes:
            logger.info(
                "pool %s: %d -> %d workers (%s)", pool, decision.current, decision.target, decision.reason
            )
            change = resize_pool(
                api, job, namespace, pool, decision.target, settings, logger, scheduler_address
            )
            if change is not None:
                changes.append(change)
    return changes
