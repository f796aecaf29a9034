"""Preemption, handled on notice: a node marked for termination, or a worker pod deleted by
someone else, gets its recprep workers retired through the scheduler at once.

A notice is one of:

- a **spot-interruption taint** on a Node (``NOTICE_TAINTS``: the taint AWS's node termination
  handler puts on a node when EC2 announces a spot interruption, two minutes ahead, and the one
  GKE puts on a spot/preemptible node 30 s ahead); the operator reads the Nodes once per
  follower pass (``kube.node_taints``; a ClusterRole grants get/list/watch on nodes);
- a **worker pod with a deletionTimestamp the operator did not cause** (an eviction, a drain, a
  person's ``kubectl delete``): the operator's own deletions are known by their pods' marks,
  ``scaling.DELETION_COST_ANNOTATION`` (a scale-down) or ``PREEMPTED_ANNOTATION`` (this module).

On a node's notice, the job's worker pods on that node are handled once (a node stays noticed
while tainted; a pod created there later, if any scheduler puts one there, is left alone):

1. their Dask workers are retired through the scheduler (``scheduler.retire``: the results they
   hold are copied to other workers, they start no new task; the tasks they run go back to the
   driver, whose locality scheduler requeues the tasks of vanished workers);
2. their pods get ``PREEMPTED_ANNOTATION`` and are deleted at once, so the ReplicaSet creates
   replacements at notice time, not after the node is gone; the Deployment's replicas are
   unchanged. (A pod already being deleted is only retired: its replacement is on its way.)

Each notice is recorded (``notice_record``): the node, the taint (or ``POD_DELETED``), when it was
seen, the notice it gives, the pods, how many workers the scheduler retired, the seconds from the
notice to drained (the scheduler's retirement returned) and to replaced (as many new workers of
the same pools joined the scheduler as the notice took away). ``status.preemptions`` keeps the
count and the last ``MAX_NOTICES`` records, and each notice is an Event with reason
``PREEMPTED``. A preempted worker is a worker pod: it never counts against the driver Job's
``backoffLimit``.

The functions up to ``preemptions_status`` are pure; :class:`Preemptions` is the mechanism the
follower calls every pass. Its memory (nodes and pods already handled, notices waiting for their
replacements) is rebuilt from ``status.preemptions`` after an operator restart.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import kube, labels, scaling
from . import scheduler as dask_scheduler
from . import status as st
from .settings import Settings

#: Node taints that announce the node's termination -> the notice they give, in seconds.
#: ``aws-node-termination-handler/spot-itn``: AWS Node Termination Handler, on an EC2 spot
#: interruption notice (two minutes). ``cloud.google.com/impending-node-termination``: GKE, on a
#: spot or preemptible VM's termination (30 s). One list: add a provider's taint here.
NOTICE_TAINTS: dict[str, float] = {
    "aws-node-termination-handler/spot-itn": 120.0,
    "cloud.google.com/impending-node-termination": 30.0,
}
#: The reason of a notice that is a worker pod deleted by someone else.
POD_DELETED = "PodDeleted"
#: Notice of a deleted pod without ``deletionGracePeriodSeconds`` (Kubernetes' default grace).
DEFAULT_GRACE = 30.0
#: Put on the pods the operator deletes on a notice (value: the node, or the notice's reason).
PREEMPTED_ANNOTATION = "recprep.io/preempted"
#: Notices kept in ``status.preemptions.last``.
MAX_NOTICES = st.MAX_PREEMPTIONS
#: Reason of the Event posted per notice.
PREEMPTED = "Preempted"
#: Seconds before the Nodes are listed again after the API refused it.
NODES_RETRY = 60.0
#: Fraction of the notice the retirement may take (the rest is for the pods to go).
RETIRE_SHARE = 0.5

log = logging.getLogger(__name__)


# --- pure --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeNotice:
    """A node announced for termination by one of ``NOTICE_TAINTS``."""

    node: str
    taint: str
    #: The notice, seconds.
    seconds: float


def node_notices(taints: Mapping[str, Iterable[str]]) -> dict[str, NodeNotice]:
    """Node -> its notice, from each node's taint keys (``kube.node_taints``); nodes without a
    notice taint are left out. A node with several takes the shortest notice."""
    found: dict[str, NodeNotice] = {}
    for node, keys in taints.items():
        for key in keys:
            if key in NOTICE_TAINTS:
                notice = NodeNotice(node, key, NOTICE_TAINTS[key])
                if node not in found or notice.seconds < found[node].seconds:
                    found[node] = notice
    return found


@dataclass(frozen=True)
class PodView:
    """What the notice logic knows about one worker pod."""

    name: str
    pool: str
    node: str | None = None
    #: It has a deletionTimestamp.
    deleting: bool = False
    #: It carries the operator's mark (a scale-down's deletion cost, or a notice's annotation).
    marked: bool = False
    #: Its deletionGracePeriodSeconds (None: not being deleted, or unknown).
    grace: float | None = None
    created: datetime | None = None


def pod_view(pod: Any) -> PodView:
    """A ``V1Pod`` of a worker pool as a :class:`PodView`."""
    meta = pod.metadata
    annotations = meta.annotations or {}
    marked = (
        annotations.get(scaling.DELETION_COST_ANNOTATION) == scaling.DELETION_COST
        or PREEMPTED_ANNOTATION in annotations
    )
    grace = meta.deletion_grace_period_seconds
    return PodView(
        name=meta.name,
        pool=(meta.labels or {}).get(labels.POOL, labels.CPU),
        node=pod.spec.node_name if pod.spec else None,
        deleting=meta.deletion_timestamp is not None,
        marked=marked,
        grace=float(grace) if grace is not None else None,
        created=meta.creation_timestamp,
    )


@dataclass(frozen=True)
class Notice:
    """Worker pods one notice affects: a noticed node's pods, or pods deleted by someone else
    (grouped by node)."""

    node: str
    reason: str
    seconds: float
    pods: tuple[PodView, ...]
    #: Delete the pods (a node's notice) or only retire them (already being deleted).
    delete: bool


def foreign_deletion(pod: PodView) -> bool:
    """Whether the pod is being deleted by someone else than the operator."""
    return pod.deleting and not pod.marked


def affected(
    pods: Iterable[PodView],
    notices: Mapping[str, NodeNotice],
    handled_nodes: Iterable[str] = (),
    handled_pods: Iterable[str] = (),
) -> list[Notice]:
    """The new notices among a job's worker pods: the pods (not being deleted) on a noticed node
    not handled yet, and the pods deleted by someone else not handled yet."""
    handled_nodes, handled_pods = set(handled_nodes), set(handled_pods)
    on_node: dict[str, list[PodView]] = {}
    deleted: dict[str, list[PodView]] = {}
    for pod in sorted(pods, key=lambda p: p.name):
        if pod.name in handled_pods:
            continue
        if foreign_deletion(pod):
            deleted.setdefault(pod.node or "", []).append(pod)
        elif not pod.deleting and pod.node in notices and pod.node not in handled_nodes:
            on_node.setdefault(pod.node, []).append(pod)
    found = [
        Notice(node, notices[node].taint, notices[node].seconds, tuple(group), delete=True)
        for node, group in sorted(on_node.items())
    ]
    for node, group in sorted(deleted.items()):
        grace = min((p.grace for p in group if p.grace is not None), default=DEFAULT_GRACE)
        found.append(Notice(node, POD_DELETED, grace, tuple(group), delete=False))
    return found


def needed_per_pool(pods: Iterable[PodView]) -> dict[str, int]:
    """Replacements a notice waits for: its pods per pool."""
    counts: dict[str, int] = {}
    for pod in pods:
        counts[pod.pool] = counts.get(pod.pool, 0) + 1
    return counts


def notice_record(notice: Notice, seen: datetime) -> dict[str, Any]:
    """A notice as ``status.preemptions.last`` keeps it, before it is handled."""
    return {
        "node": notice.node,
        "reason": notice.reason,
        "noticeTime": st.now_rfc3339(seen),
        "noticeSeconds": round(float(notice.seconds), 1),
        "pods": [p.name for p in notice.pods],
        "retired": 0,
        "drainedSeconds": None,
        "replacedSeconds": None,
    }


def with_drained(record: Mapping[str, Any], retired: int, seconds: float | None) -> dict[str, Any]:
    """The record once the scheduler retired ``retired`` workers, ``seconds`` after the notice
    (None: the scheduler could not be asked)."""
    return {
        **record,
        "retired": int(retired),
        "drainedSeconds": None if seconds is None else round(max(0.0, seconds), 2),
    }


def with_replaced(record: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """The record once the replacements joined the scheduler, ``seconds`` after the notice."""
    return {**record, "replacedSeconds": round(max(0.0, seconds), 2)}


def preemptions_status(previous: Mapping[str, Any] | None, record: Mapping[str, Any]) -> dict[str, Any]:
    """``status.preemptions`` with ``record`` (matched by node, reason and noticeTime) updated in
    place, or added as a new notice (counted; the last ``MAX_NOTICES`` kept)."""
    previous = copy.deepcopy(dict(previous or {}))
    last = [dict(r) for r in previous.get("last") or []]
    key = (record["node"], record["reason"], record["noticeTime"])
    for i, old in enumerate(last):
        if (old.get("node"), old.get("reason"), old.get("noticeTime")) == key:
            last[i] = dict(record)
            return {"count": int(previous.get("count") or len(last)), "last": last}
    last.append(dict(record))
    return {"count": int(previous.get("count") or 0) + 1, "last": last[-MAX_NOTICES:]}


def event_message(record: Mapping[str, Any]) -> str:
    """The Event's message of a handled notice."""
    what = (
        f"node {record['node']} tainted {record['reason']} ({record['noticeSeconds']:g} s notice)"
        if record["reason"] != POD_DELETED
        else f"worker pod(s) deleted on node {record['node'] or '?'} ({record['noticeSeconds']:g} s grace)"
    )
    drained = record.get("drainedSeconds")
    return (
        f"{what}: retired {record['retired']} of {len(record['pods'])} worker(s) through the scheduler"
        + (f" in {drained:g} s" if drained is not None else " (scheduler unreachable)")
        + f"; replacements requested for {', '.join(record['pods'])}"
    )


def _parse(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


# --- mechanism ---------------------------------------------------------------------------------


@dataclass
class _Open:
    """A handled notice waiting for its replacements to join."""

    record: dict[str, Any]
    start: datetime
    needed: dict[str, int]
    #: The pods of the job when the notice was handled (None after a restart: pods created
    #: before the notice's time count as old).
    before: set[str] | None


@dataclass
class JobPreemptions:
    """The notices of one job: handled nodes and pods, notices waiting for replacements, and
    ``status.preemptions`` as it should be."""

    status: dict[str, Any] = field(default_factory=dict)
    handled_nodes: set[str] = field(default_factory=set)
    handled_pods: set[str] = field(default_factory=set)
    waiting: list[_Open] = field(default_factory=list)

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> JobPreemptions:
        """Rebuilt after an operator restart: nodes and pods of the recorded notices count as
        handled; notices without ``replacedSeconds`` keep waiting (measured from noticeTime)."""
        state = cls(status=copy.deepcopy(dict(status or {})))
        for record in state.status.get("last") or []:
            if record.get("reason") == POD_DELETED:
                state.handled_pods.update(record.get("pods") or [])
            else:
                state.handled_nodes.add(record.get("node"))
                state.handled_pods.update(record.get("pods") or [])
            start = _parse(record.get("noticeTime"))
            if record.get("replacedSeconds") is None and start is not None:
                state.waiting.append(_Open(dict(record), start, {}, None))
        return state


class Preemptions:
    """Every job's :class:`JobPreemptions` (by uid), in kopf's memo; the follower calls
    :meth:`follow` for each unfinished job every pass."""

    def __init__(self, wall=lambda: datetime.now(UTC), clock=time.monotonic):
        self.jobs: dict[str, JobPreemptions] = {}
        self.wall, self.clock = wall, clock
        self._lock = threading.Lock()
        #: When the Nodes may be listed again after the API refused it (monotonic).
        self._nodes_after = -math.inf

    def nodes(self, api: Any, logger: logging.Logger) -> dict[str, NodeNotice] | None:
        """The noticed nodes (None: unknown: the API refused or failed; a refusal, i.e. no
        ClusterRole for nodes, is logged and asked again after ``NODES_RETRY`` seconds)."""
        if self.clock() < self._nodes_after:
            return None
        try:
            return node_notices(kube.node_taints(api))
        except ApiException as exc:
            self._nodes_after = self.clock() + NODES_RETRY
            logger.warning(
                "cannot list Nodes, so spot-interruption taints go unseen for %g s "
                "(pod deletions are still noticed): %s",
                NODES_RETRY,
                kube.api_error_text(exc),
            )
            return None

    def forget(self, uid: str) -> None:
        with self._lock:
            self.jobs.pop(uid, None)

    def retain(self, uids: set[str]) -> None:
        with self._lock:
            for uid in [u for u in self.jobs if u not in uids]:
                self.jobs.pop(uid, None)

    def follow(
        self,
        api: Any,
        body: dict,
        namespace: str,
        notices: Mapping[str, NodeNotice] | None,
        joined: Mapping[str, str],
        settings: Settings,
        logger: logging.Logger,
    ) -> dict[str, Any] | None:
        """One pass over a job: handle its new notices, measure the replacements of the earlier
        ones; ``status.preemptions`` as it should be (None: the job has had no notice).
        ``notices``: the noticed nodes (None: unknown this pass); ``joined``: the pods of the
        workers running on the scheduler -> their pool."""
        meta = body["metadata"]
        uid, name = meta.get("uid") or meta["name"], meta["name"]
        with self._lock:
            state = self.jobs.get(uid)
            if state is None:
                state = self.jobs[uid] = JobPreemptions.from_status(
                    (body.get("status") or {}).get("preemptions")
                )
        if notices is not None:  # a node no longer tainted may be noticed again later
            state.handled_nodes &= set(notices)
        pods = kube.job_worker_pods(api, namespace, name)
        views = [pod_view(p) for p in pods]
        for notice in affected(views, notices or {}, state.handled_nodes, state.handled_pods):
            self._handle(api, body, namespace, state, notice, views, settings, logger)
        self._measure(state, views, joined, logger, f"{namespace}/{name}")
        return copy.deepcopy(state.status) if state.status else None

    def _handle(
        self,
        api: Any,
        body: dict,
        namespace: str,
        state: JobPreemptions,
        notice: Notice,
        views: list[PodView],
        settings: Settings,
        logger: logging.Logger,
    ) -> None:
        name = body["metadata"]["name"]
        start = self.wall()
        if notice.reason != POD_DELETED:
            state.handled_nodes.add(notice.node)
        state.handled_pods.update(p.name for p in notice.pods)
        record = notice_record(notice, start)
        logger.warning(
            "job %s/%s: preemption notice: %s %s (%g s): retiring %s",
            namespace,
            name,
            notice.node,
            notice.reason,
            notice.seconds,
            ", ".join(p.name for p in notice.pods),
        )
        addr = dask_scheduler.address(name, namespace)
        timeout = max(1.0, min(float(settings.retire_timeout), notice.seconds * RETIRE_SHARE))
        retired: set[str] | None = None
        try:
            workers = dask_scheduler.state(addr, timeout=timeout).workers
            to_retire = [workers[p.name].address for p in notice.pods if p.name in workers]
            retired = dask_scheduler.retire(addr, to_retire, timeout)
        except dask_scheduler.SchedulerUnavailable as exc:
            logger.warning("job %s/%s: cannot retire the noticed workers: %s", namespace, name, exc)
        drained = (self.wall() - start).total_seconds() if retired is not None else None
        record = with_drained(record, len(retired or ()), drained)
        if notice.delete:
            for pod in notice.pods:
                kube.annotate_pod(
                    api, namespace, pod.name, {PREEMPTED_ANNOTATION: notice.node or notice.reason}
                )
                kube.delete_pod(api, namespace, pod.name)
        state.status = preemptions_status(state.status, record)
        state.waiting.append(_Open(record, start, needed_per_pool(notice.pods), {v.name for v in views}))
        message = event_message(record)
        logger.warning("job %s/%s: %s", namespace, name, message)
        kube.post_event(api, body, "Warning", PREEMPTED, message)

    def _measure(
        self,
        state: JobPreemptions,
        views: list[PodView],
        joined: Mapping[str, str],
        logger: logging.Logger,
        where: str,
    ) -> None:
        if not state.waiting:
            return
        now = self.wall()
        created = {v.name: v.created for v in views}
        still = []
        for item in state.waiting:
            new: dict[str, int] = {}
            for pod, pool in joined.items():
                if item.before is not None:
                    fresh = pod not in item.before
                else:
                    made = created.get(pod)
                    fresh = made is not None and made >= item.start
                if fresh:
                    new[pool] = new.get(pool, 0) + 1
            # (a notice restored after a restart does not know its pools: any fresh worker ends it)
            if item.needed:
                replaced = all(new.get(pool, 0) >= n for pool, n in item.needed.items())
            else:
                replaced = bool(new)
            if not replaced:
                still.append(item)
                continue
            item.record = with_replaced(item.record, (now - item.start).total_seconds())
            state.status = preemptions_status(state.status, item.record)
            logger.info(
                "job %s: replacements of the notice on %s joined %.1f s after it",
                where,
                item.record["node"],
                item.record["replacedSeconds"],
            )
        state.waiting = still
