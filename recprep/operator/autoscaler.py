"""The operator's autoscaler: the policy of ``spec.autoscale`` run on a running job's pools.

Policy and mechanism stay apart. The predictor (``recprep.predictor``: ``policy_from``,
``Policy.decide(now, Observation) -> Decision``) decides; ``scaling.clamp`` holds its answer to
``spec.pools``; ``pools.resize_pool`` carries it out (scale-up by replicas, scale-down by graceful
retirement through the scheduler). This module builds what the policy sees and records what it
decided:

- **what the policy sees** (:func:`observation`, pure): each pool's Deployment replicas and the
  workers the scheduler runs (``status.workers``' count), rows/s of one worker of each pool from
  the driver's published ``pools`` (rows over task seconds of the shards a pool finished in one
  task, ``recprep.progress``), the pools' prices from ``spec.pools.isp.model``, each pool's
  start-up lag (replicas raised -> worker joined the scheduler, measured by the follower's
  passes into a ``LagTracker``, ``STARTUP_PRIOR`` until measured), the rows left (the driver's
  estimate less the rows read), the deadline (``spec.autoscale.deadline`` seconds after
  ``status.startTime``: the policy's clock is seconds since the job's start, so a restarted
  operator keeps it), the scheduler's task counts (the reactive baselines' signal), and the
  trainers' demand (:class:`Trainers`): how fast the driver's ``consumedRows`` (the rows of the
  shards the shard service's groups acknowledged) grows between looks, and the backlog in
  seconds of it. Before a consumer group joins there are no trainers: the policy sizes for the
  deadline, or without one for the pools' limits.
- **the ISP pool** is sized too, within ``spec.pools.isp`` and at most one worker per storage
  node (:meth:`Autoscalers.storage_nodes`: the schedulable Nodes the ISP pool's nodeSelector
  matches); its actions come first, and the CPU pool may go to none only while ISP workers that
  run every transform of a shard stay (:func:`isp_serves`).
- **preemptions**: the preempted workers of each pool (``status.preemptions``' pods) over the
  worker-seconds the follower's passes saw them run (``PreemptionTracker``), for a preemptible
  CPU pool's expected capacity.
- **what it decided**: ``status.autoscaler`` (``status.autoscaler_status``: the policy, its
  forecast and quantile, capacity and rows/s per worker of each pool, the start-up lags, the
  last ``status.MAX_DECISIONS`` scaling actions with time, pool, from, to and reason), a
  Kubernetes Event (reason ``Scaled``, the reason as message) per scaling action, and the
  ``Scaled`` printer column (``lastScale``).

Rate-limited and idempotent across an operator restart, with no state outside the objects:

- the policy looks every ``policy.interval`` seconds (its own interval: ``spec.autoscale.interval``
  for predictive and moving-window, the baseline's for the others), and no scaling action is
  taken within that interval of ``status.autoscaler.lastScaleTime``;
- a target equal to the Deployment's replicas is no action (a decision that was carried out
  before a restart is not repeated);
- an action is written to ``status.autoscaler.pending`` (with ``lastScaleTime``) before it is
  carried out and moved to ``lastDecisions`` after. An operator killed in between finds it: if
  the Deployment has the target's replicas, it records the action (and posts its Event), else it
  drops it; the next decision starts from the Deployment as it is.

One :class:`JobAutoscaler` per job lives in the operator's memory (``Autoscalers``, in kopf's
memo): the policy object (whose forecaster and hysteresis learn across decisions), the lag
trackers and the demand series. The policy runs on a small thread pool, never in the follower's
pass (a scale-down waits for retirement); ``Autoscalers.stop`` is called before a finished job's
pools go to 0, and an action in flight completes first, so none follows it.

The predictor loads numpy and scikit-learn: it is imported here only inside the functions that
run a job's policy, so an operator without autoscaled jobs never loads them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..errors import SpecError
from ..failpoints import failpoint
from ..progress import TRANSFORM
from ..spec import IspPoolSpec, PoolBounds, PoolSpec, PreprocessJob, load_job_dict
from . import kube, labels, pools, scaling
from . import scheduler as dask_scheduler
from . import status as st
from .settings import Settings

#: Seconds a pool's worker is assumed to take from replicas raised to joining the scheduler,
#: until measured (a pod scheduled on a node that has room; a new node takes longer).
STARTUP_PRIOR = 60.0
#: Preemption notices per worker-hour of a preemptible pool assumed until measured (weighted as one
#: worker-hour: ``predictor.signals.PreemptionTracker``). None assumed: spot interruption rates
#: vary by instance type, zone and hour, so only the job's own notices count.
PREEMPTION_PRIOR_PER_HOUR = 0.0
#: Seconds the autoscaler waits for the scheduler's answer (it looks again next interval).
SCHEDULER_TIMEOUT = 5.0
#: Jobs whose policy runs at once.
THREADS = 4
#: Reason of the Event posted on each scaling action.
SCALED = "Scaled"
#: The failpoint (``recprep.failpoints``) between an action's intent written to the status and its
#: resize: where an operator killed mid-action stops.
FAILPOINT_DECIDED = "autoscaler.decided"
#: The pools the autoscaler resizes, in the order a decision's actions are carried out: the ISP
#: pool first, since whether the CPU pool may be empty depends on the ISP workers that stay.
SCALED_POOLS = (labels.ISP, labels.CPU)

log = logging.getLogger(__name__)


# --- what the policy sees (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class PoolView:
    """A pool as the operator sees it: its Deployment's replicas and the workers joined to the
    scheduler that accept work."""

    replicas: int
    running: int


def rows_per_worker(progress: dict[str, Any] | None) -> dict[str, float]:
    """Pool -> rows/s of one worker of it (one task at a time), from the driver's published
    ``pools``; only the pools that finished a whole shard in measurable time."""
    rates = {}
    for pool, item in ((progress or {}).get("pools") or {}).items():
        if item.get("seconds", 0) > 0 and item.get("rows", 0) > 0:
            rates[pool] = item["rows"] / item["seconds"]
    return rates


def task_seconds(progress: dict[str, Any] | None) -> float | None:
    """Mean seconds of a whole-shard task over every pool (None: none measured)."""
    items = ((progress or {}).get("pools") or {}).values()
    shards = sum(i.get("shards", 0) for i in items)
    return sum(i["seconds"] for i in items) / shards if shards else None


def rows_left(progress: dict[str, Any] | None) -> float | None:
    """Rows not read yet: the driver's estimate of the job's rows less the rows read (None:
    no estimate yet)."""
    if not progress or progress.get("rowsEstimated") is None:
        return None
    return float(max(0, progress["rowsEstimated"] - progress["rows"]))


def isp_serves(job: PreprocessJob, views: dict[str, PoolView], isp_target: int | None = None) -> bool:
    """Whether ISP workers run whole shards, so that the CPU pool may be empty: every transform
    of the job has an ISP class (else the CPU pool finishes what the ISP pool starts), and ISP
    workers run (and stay, when the ISP pool goes to ``isp_target``)."""
    isp = views.get(labels.ISP)
    if isp is None or not job.spec.isp_runs_whole_shards:
        return False
    staying = isp.running if isp_target is None else min(isp.running, isp_target)
    return staying > 0


def pool_bounds(
    job: PreprocessJob,
    pool: str,
    views: dict[str, PoolView],
    hosts: int | None = None,
    isp_target: int | None = None,
) -> tuple[int, int]:
    """The (min, max) a pool is held to: ``spec.pools.<pool>``; the CPU pool keeps at least one
    worker unless ISP workers run whole shards (:func:`isp_serves`, with the ISP pool at
    ``isp_target`` when it is being resized); the ISP pool at most one worker per storage node
    (``hosts``: None when unknown)."""
    if pool == labels.CPU:
        bounds = job.spec.pools.cpu
        floor = 0 if isp_serves(job, views, isp_target) else 1
        return min(max(bounds.min, floor), bounds.max), bounds.max
    isp = job.spec.pools.isp
    high = isp.max if hosts is None else min(isp.max, hosts)
    return min(isp.min, high), high


def cpu_bounds(job: PreprocessJob, views: dict[str, PoolView]) -> tuple[int, int]:
    """``spec.pools.cpu`` with its floor (:func:`pool_bounds`): (min, max)."""
    return pool_bounds(job, labels.CPU, views)


def pool_rates(job: PreprocessJob, rates: dict[str, float]) -> dict[str, float]:
    """Rows/s of one worker of each pool: the CPU pool's measured rate (else the ISP pool's, per
    unit), the ISP pool's measured rate per unit (else the CPU pool's) times its units. Empty
    when nothing is measured."""
    cpu = rates.get(labels.CPU) or rates.get(labels.ISP)
    if cpu is None:
        return {}
    isp = rates.get(labels.ISP) or cpu
    return {labels.CPU: cpu, labels.ISP: isp * job.spec.pools.isp.units}


def isp_scaled(job: PreprocessJob, views: dict[str, PoolView], hosts: int | None = None) -> bool:
    """Whether the policy sizes the ISP pool: its Deployment exists and the pool may have workers
    (or has some to take away)."""
    isp = views.get(labels.ISP)
    return isp is not None and (isp.replicas > 0 or pool_bounds(job, labels.ISP, views, hosts)[1] > 0)


def pool_states(
    job: PreprocessJob,
    views: dict[str, PoolView],
    per_worker: dict[str, float],
    lags: dict[str, float],
    hosts: int | None = None,
    preempt_rates: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The policy's ``PoolState`` of each pool: the CPU pool within ``spec.pools.cpu`` (and its
    floor), with its measured preemptions per worker-second when it is preemptible; the ISP pool
    (:func:`isp_scaled`) within ``spec.pools.isp`` and its storage nodes (``hosts``)."""
    from ..predictor.signals import PoolState

    model = job.spec.pools.isp.model
    low, high = cpu_bounds(job, views)
    cpu = views[labels.CPU]
    preemptible = job.spec.pools.cpu.preemptible
    states = {
        labels.CPU: PoolState(
            labels.CPU,
            replicas=cpu.replicas,
            ready=min(cpu.running, cpu.replicas),
            min=low,
            max=high,
            rows_per_worker=per_worker[labels.CPU],
            price_per_hour=model.cpu_core_hourly(preemptible),
            startup_lag=lags.get(labels.CPU, STARTUP_PRIOR),
            preempt_rate=(preempt_rates or {}).get(labels.CPU, 0.0) if preemptible else 0.0,
        )
    }
    if isp_scaled(job, views, hosts):
        isp = views[labels.ISP]
        states[labels.ISP] = PoolState(
            labels.ISP,
            replicas=isp.replicas,
            ready=min(isp.running, isp.replicas),
            min=job.spec.pools.isp.min,
            max=job.spec.pools.isp.max,
            rows_per_worker=per_worker[labels.ISP],
            price_per_hour=model.isp_node_hourly,
            startup_lag=lags.get(labels.ISP, STARTUP_PRIOR),
            hosts=hosts,
        )
    return states


def scheduler_view(workers: dict[str, dask_scheduler.DaskWorker], seconds: float | None) -> Any:
    """The scheduler's task counts as the reactive baselines read them (None: no task measured)."""
    from ..predictor.signals import SchedulerView

    if seconds is None:
        return None
    running = [w for w in workers.values() if w.status == "running"]
    executing = sum(w.executing for w in running)
    return SchedulerView(
        queued=sum(max(0, w.processing - w.executing) for w in running),
        running=executing,
        task_seconds=seconds,
        workers=len(running),
        idle=sum(1 for w in running if w.processing == 0),
    )


def observation(
    job: PreprocessJob,
    now: float,
    views: dict[str, PoolView],
    progress: dict[str, Any],
    lags: dict[str, float],
    demand: Any,
    workers: dict[str, dask_scheduler.DaskWorker] | None = None,
    trainers: Trainers | None = None,
    hosts: int | None = None,
    preempt_rates: dict[str, float] | None = None,
) -> Any:
    """The policy's ``Observation`` at ``now`` (seconds since the job's start), or None when no
    pool's rate is measured yet (no decision on a guess). ``trainers`` turns the progress
    document's ``consumedRows`` into the demand series (one bin per look) and the backlog;
    ``hosts`` and ``preempt_rates`` go to :func:`pool_states`."""
    from ..predictor.signals import Observation

    per_worker = pool_rates(job, rows_per_worker(progress))
    if not per_worker:
        return None
    view = scheduler_view(workers or {}, task_seconds(progress))
    attached, backlog = (trainers or Trainers()).look(now, progress, demand)
    return Observation(
        now=now,
        pools=pool_states(job, views, per_worker, lags, hosts, preempt_rates),
        demand=demand,
        backlog=backlog,
        queued_work=view.queued * view.task_seconds if view is not None else 0.0,
        batch_time=math.nan,
        rows_left=rows_left(progress),
        deadline=None if job.spec.autoscale.deadline is None else float(job.spec.autoscale.deadline),
        trainers=attached,
        scheduler=view,
    )


#: Least seconds the trainers' demand is measured over: the driver reads the acknowledgements
#: every 5 s (``workloads.runner.CONSUMPTION_INTERVAL``), so a shorter look would see nothing,
#: then a jump. Between two measurements a look carries the last one forward.
DEMAND_WINDOW = 10.0


class Trainers:
    """The trainers' demand from the driver's ``consumedRows`` (rows of the shards the shard
    service's groups acknowledged in their first epoch): rows/s over the last ``DEMAND_WINDOW``
    seconds or more, the backlog (rows written and not consumed) in seconds of it. No group yet:
    a gap, no trainers; a group just joined: attached, nothing measured yet (NaN)."""

    def __init__(self, window: float = DEMAND_WINDOW):
        self.window = window
        self.last: tuple[float, int] | None = None  # where the current measurement started
        self.rate = math.nan

    def look(self, now: float, progress: dict[str, Any], demand: Any) -> tuple[bool, float]:
        rows = progress.get("consumedRows")
        if not isinstance(rows, int):
            demand.record(now, math.nan)  # (a late look fills the bins it missed)
            return False, math.inf
        if self.last is None:
            self.last = (now, rows)
        elif now - self.last[0] >= self.window:
            self.rate = max(0, rows - self.last[1]) / (now - self.last[0])
            self.last = (now, rows)
        demand.record(now, self.rate)
        written = int(progress.get("rows") or 0) - int(progress.get("rowsQuarantined") or 0)
        unread = max(0, written - rows)
        return True, unread / self.rate if self.rate > 0 else math.inf


@dataclass(frozen=True)
class Action:
    """One pool to resize: from the Deployment's replicas to the target, and why."""

    pool: str
    before: int
    target: int
    reason: str


def actions(
    job: PreprocessJob,
    views: dict[str, PoolView],
    targets: dict[str, int],
    reasons: dict[str, str],
    hosts: int | None = None,
) -> list[Action]:
    """The resizes a decision asks for, in ``SCALED_POOLS`` order: each pool's target held to
    its bounds (:func:`pool_bounds`: the CPU pool's floor counts the ISP workers that stay) by
    ``scaling.pool_target`` (the decision as a ``scaling.Targets`` policy), where it differs
    from the Deployment's replicas."""
    found = []
    policy = scaling.Targets(targets, reasons)
    isp_target = None
    for pool in SCALED_POOLS:
        view = views.get(pool)
        if view is None or pool not in targets or (pool == labels.ISP and not isp_scaled(job, views, hosts)):
            continue
        low, high = pool_bounds(job, pool, views, hosts, isp_target)
        decision = scaling.pool_target(pool, view.replicas, PoolBounds(min=low, max=high), policy)
        if pool == labels.ISP:
            isp_target = decision.target
        if decision.changes:
            found.append(Action(pool, decision.current, decision.target, decision.reason))
    return found


def parse_time(text: str | None) -> datetime | None:
    """A status timestamp (``status.now_rfc3339``), None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def may_scale(last_scale: str | None, now: datetime, interval: float) -> bool:
    """Whether a scaling action may be taken at ``now``: none yet, or ``interval`` seconds have
    passed since ``status.autoscaler.lastScaleTime`` (second precision: rounded up)."""
    last = parse_time(last_scale)
    return last is None or (now - last).total_seconds() + 1.0 >= interval


def settle_pending(pending: dict[str, Any] | None, replicas: int | None) -> dict[str, Any] | None:
    """An action found in ``status.autoscaler.pending`` (an operator stopped between deciding and
    recording it): the record to keep when the Deployment has its target's replicas (it was
    carried out), None when it does not (it was not: the next decision starts afresh)."""
    if not pending or replicas is None or replicas != pending.get("to"):
        return None
    return {**pending, "reason": f"{pending.get('reason', '')} (recorded after an operator restart)"}


# --- running it (mechanism) ------------------------------------------------------------------------


class JobAutoscaler:
    """The autoscaler's memory of one job: its policy, lag trackers, demand series, and when it
    looks next."""

    def __init__(self, uid: str):
        from ..predictor.signals import LagTracker, PreemptionTracker

        self.uid = uid
        #: Held while an action is carried out, and by ``stop``.
        self.lock = threading.Lock()
        self.stopped = False
        self.busy = False
        self.next_look = -math.inf  # monotonic
        self.policy: Any = None
        self._policy_key: Any = None
        self.demand: Any = None
        #: the trainers' consumption between looks
        self.trainers = Trainers()
        #: Whether a pending action of an earlier operator was looked at.
        self.settled = False
        #: Whether the job's start was seen (``first_workers``).
        self.started_seen = False
        self.lags = {pool: LagTracker(STARTUP_PRIOR, trusted=1) for pool in labels.POOLS}
        #: preemption notices per worker-second of each pool (``status.preemptions``' pods over
        #: the workers' running time the follower's passes saw)
        self.preemptions = {pool: PreemptionTracker(PREEMPTION_PRIOR_PER_HOUR) for pool in labels.POOLS}
        self._notices: set[tuple] | None = None  # the notices counted (None: none looked at yet)
        self._saw_at: float | None = None
        #: pool -> monotonic times of the replicas asked for and not joined yet, oldest first
        self.requested: dict[str, list[float]] = {pool: [] for pool in labels.POOLS}
        self._running: dict[str, int] = {}
        self._state_lock = threading.Lock()

    def policy_for(self, job: PreprocessJob) -> Any:
        """The job's policy, made anew when ``spec.autoscale`` changed."""
        from ..predictor.policies import policy_from
        from ..predictor.signals import BinnedSeries

        key = job.spec.autoscale.model_dump()
        if self.policy is None or key != self._policy_key:
            self.policy = policy_from(job.spec.autoscale)
            self._policy_key = key
            self.demand = BinnedSeries(max(float(self.policy.interval), 1.0))
            self.trainers = Trainers()
        return self.policy

    def first_workers(self, body: dict, running: dict[str, int], now: float, wall: datetime) -> None:
        """Seen from its start: the first worker of each pool the job starts with, asked for at
        ``status.startTime``, is a start-up to measure too (a fresh pool's, the slowest kind),
        when it has not joined yet (``running``; ``now`` monotonic, ``wall`` the time now)."""
        started = parse_time((body.get("status") or {}).get("startTime"))
        if started is None:
            return  # not started yet: looked at again next pass
        self.started_seen = True
        since = max(0.0, (wall - started).total_seconds())
        if since > 2 * STARTUP_PRIOR:
            return  # this operator came later (a restart): the first start-ups were not seen
        asked_at = now - since
        pools = (body.get("spec") or {}).get("pools") or {}
        for pool in labels.POOLS:
            first = scaling.initial_replicas(pool, _bounds_of(pools.get(pool), pool))
            if first and not running.get(pool):
                self.asked(pool, 1, asked_at)
                with self._state_lock:
                    self._running[pool] = 0  # so that its join is seen as one

    def asked(self, pool: str, count: int, now: float) -> None:
        """``count`` more replicas of ``pool`` asked for at ``now`` (monotonic)."""
        with self._state_lock:
            self.requested[pool].extend([now] * max(0, count))

    def saw(self, now: float, running: dict[str, int]) -> None:
        """The scheduler's running workers per pool at ``now``: workers that joined since the last
        look end the oldest requests (their lag is recorded); the workers running since the last
        look were exposed to preemption."""
        with self._state_lock:
            if self._saw_at is not None:
                for pool, count in running.items():
                    if pool in self.preemptions:
                        self.preemptions[pool].expose(count, max(0.0, now - self._saw_at))
            self._saw_at = now
            for pool, count in running.items():
                before = self._running.get(pool)
                self._running[pool] = count
                if before is None or count <= before or pool not in self.requested:
                    continue
                for _ in range(min(count - before, len(self.requested[pool]))):
                    self.lags[pool].record(self.requested[pool].pop(0), now)

    def noticed(self, body: dict, running: dict[str, int], wall: datetime) -> None:
        """Count the preempted workers of each pool in ``status.preemptions`` not counted yet. The
        first look (a new operator) counts the recorded ones against the job's time so far at
        the workers running now (the exposure this operator did not see)."""
        records = ((body.get("status") or {}).get("preemptions") or {}).get("last") or []
        name = body["metadata"]["name"]
        prefixes = {pool: labels.worker_name(name, pool) + "-" for pool in labels.POOLS}
        with self._state_lock:
            first = self._notices is None
            seen = self._notices = self._notices or set()
            for record in records:
                key = (record.get("node"), record.get("reason"), record.get("noticeTime"))
                if key in seen:
                    continue
                seen.add(key)
                for pool, prefix in prefixes.items():
                    hit = sum(1 for pod in record.get("pods") or [] if str(pod).startswith(prefix))
                    if hit:
                        self.preemptions[pool].record(hit)
            started = parse_time((body.get("status") or {}).get("startTime"))
            if first and records and started is not None:
                since = max(0.0, (wall - started).total_seconds())
                for pool, count in running.items():
                    if pool in self.preemptions:
                        self.preemptions[pool].expose(count, since)

    def preempt_rates(self) -> dict[str, float]:
        """Preemption notices per worker-second of each pool (``PreemptionTracker.rate``)."""
        with self._state_lock:
            return {pool: tracker.rate() for pool, tracker in self.preemptions.items()}

    def startup_lags(self) -> dict[str, float]:
        with self._state_lock:
            return {pool: tracker.quantile() for pool, tracker in self.lags.items()}


def _bounds_of(raw: Any, pool: str) -> PoolBounds:
    """``spec.pools.<pool>`` of a raw body as bounds (the spec's defaults where absent)."""
    default = (IspPoolSpec if pool == labels.ISP else PoolSpec)()
    raw = raw if isinstance(raw, dict) else {}
    low, high = int(raw.get("min", default.min) or 0), int(raw.get("max", default.max) or 0)
    return PoolBounds(min=min(low, high), max=high)


def _document(body: dict) -> dict:
    return {key: body[key] for key in body if key != "status"}


class Autoscalers:
    """Every autoscaled job's :class:`JobAutoscaler` (by uid) and the threads their policies run
    on; the follower calls :meth:`follow` for each running job every pass."""

    def __init__(self, threads: int = THREADS, clock=time.monotonic, wall=lambda: datetime.now(UTC)):
        self.jobs: dict[str, JobAutoscaler] = {}
        self.clock, self.wall = clock, wall
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- the follower's calls --------------------------------------------------------------------

    def follow(
        self,
        api: Any,
        body: dict,
        running: dict[str, int],
        phase: str,
        settings: Settings,
        logger: logging.Logger,
    ) -> None:
        """One pass's look at a job that is not finished: measure the start-up lags, and start its
        policy when a look is due (on the thread pool; at most one at a time per job)."""
        uid = body["metadata"].get("uid") or body["metadata"]["name"]
        if "autoscale" not in (body.get("spec") or {}):
            self.forget(uid)
            return
        now = self.clock()
        with self._lock:
            job = self.jobs.get(uid)
            if job is None:
                job = self.jobs[uid] = JobAutoscaler(uid)
        if not job.started_seen:
            job.first_workers(body, running, now, self.wall())
        job.saw(now, running)
        job.noticed(body, running, self.wall())
        if phase != st.RUNNING or job.busy or job.stopped or now < job.next_look:
            return
        job.busy = True
        try:
            self._pool().submit(self._run, job, api, body, settings, logger)
        except RuntimeError:  # shut down
            job.busy = False

    def stop(self, uid: str) -> None:
        """The job finished: no action after this returns (one in flight completes first)."""
        job = self.jobs.get(uid)
        if job is not None:
            with job.lock:
                job.stopped = True

    def forget(self, uid: str) -> None:
        self.stop(uid)
        with self._lock:
            self.jobs.pop(uid, None)

    def retain(self, uids: set[str]) -> None:
        """Forget the jobs not in ``uids`` (deleted ones)."""
        for uid in [u for u in self.jobs if u not in uids]:
            self.forget(uid)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="recprep-autoscale")
            return self._executor

    # -- one look at one job -----------------------------------------------------------------------

    def _run(self, job: JobAutoscaler, api: Any, body: dict, settings: Settings, logger) -> None:
        try:
            self.look(job, api, body, settings, logger)
        except Exception:  # a bug in one look must not stop the next
            logger.exception("autoscaler: job %s: the look failed", body["metadata"].get("name"))
        finally:
            job.busy = False

    def look(self, state: JobAutoscaler, api: Any, body: dict, settings: Settings, logger) -> None:
        """Observe, decide, carry out and record, once."""
        meta = body["metadata"]
        name, namespace = meta["name"], meta.get("namespace") or settings.namespace
        current = (body.get("status") or {}).get("autoscaler") or {}
        try:
            job = load_job_dict(_document(body), f"PreprocessJob {namespace}/{name}")
        except SpecError as exc:
            state.next_look = self.clock() + 15.0
            logger.warning("autoscaler: job %s/%s: the spec does not load: %s", namespace, name, exc)
            return
        policy = state.policy_for(job)
        state.next_look = self.clock() + float(policy.interval)
        now = self.wall()
        started = parse_time((body.get("status") or {}).get("startTime"))
        if started is None:
            return
        views: dict[str, PoolView] = {}
        replicas: dict[str, int] = {}
        for pool in labels.POOLS:
            deployment = kube.read_worker_deployment(api, namespace, name, pool)
            if deployment is not None:
                replicas[pool] = int(deployment.spec.replicas or 0)
        if labels.CPU not in replicas:
            return
        try:
            scheduler = dask_scheduler.state(
                dask_scheduler.address(name, namespace), timeout=SCHEDULER_TIMEOUT
            )
        except dask_scheduler.SchedulerUnavailable:
            return  # looked at again next interval
        running = scheduler.running_per_pool()
        views = {pool: PoolView(n, running.get(pool, 0)) for pool, n in replicas.items()}

        done: list[dict] = []
        if not state.settled:
            state.settled = True
            pending = current.get("pending")
            record = settle_pending(pending, replicas.get((pending or {}).get("pool")))
            if record is not None:
                done.append(record)
                kube.post_event(api, body, "Normal", SCALED, record["reason"])
            elif pending:
                logger.info(
                    "autoscaler: job %s/%s: dropped an action not carried out: %s", namespace, name, pending
                )

        progress = scheduler.progress
        lags = state.startup_lags()
        hosts = self.storage_nodes(api, settings, logger) if labels.ISP in views else None
        shown = [labels.CPU] + ([labels.ISP] if isp_scaled(job, views, hosts) else [])
        per_worker = {p: r for p, r in pool_rates(job, rows_per_worker(progress)).items() if p in shown}
        capacity = {p: per_worker[p] * views[p].running for p in shown if p in per_worker}
        settings_ = job.spec.autoscale
        quantile = settings_.quantile if policy.name == "predictive" else None
        message, forecast = None, None
        if progress is None or progress["stage"] != TRANSFORM:
            message = "waiting for the transform pass"
        else:
            obs = observation(
                job,
                (now - started).total_seconds(),
                views,
                progress,
                lags,
                state.demand,
                scheduler.workers,
                state.trainers,
                hosts,
                state.preempt_rates(),
            )
            if obs is None:
                message = "waiting for a pool's first shard to measure its rate"
            else:
                decision = policy.decide(obs.now, obs)
                # (without trainers a forecast of the demand would be made up)
                forecast = decision.forecast if obs.trainers else None
                wanted = actions(job, views, decision.targets, decision.reasons, hosts)
                if not wanted:  # why the pools keep their size, as the policy said it
                    message = "; ".join(decision.reasons[p] for p in SCALED_POOLS if p in decision.reasons)
                    message = message[: st.MAX_REASON] or None
                last = done[-1]["time"] if done else current.get("lastScaleTime")
                if wanted and not may_scale(last, now, policy.interval):
                    message = f"no scaling within {policy.interval:g} s of the last one"
                    wanted = []
                for action in wanted:
                    record = self._carry_out(state, api, body, job, namespace, action, settings, logger, now)
                    if record is None:
                        break
                    done.append(record)
        new = st.autoscaler_status(
            current,
            policy=policy.name,
            quantile=quantile,
            forecast=forecast,
            capacity=capacity,
            rows_per_worker=per_worker,
            startup_lag={p: lags[p] for p in shown},
            message=message,
            actions=done,
        )
        if _without_nulls(new) != current:
            kube.merge_job_status(api, namespace, name, {"autoscaler": new})

    def storage_nodes(self, api: Any, settings: Settings, logger) -> int | None:
        """How many schedulable Nodes match the ISP pool's nodeSelector: the most ISP workers
        (one per storage node). None when unknown: no nodeSelector (pinned by an affinity), the
        Nodes cannot be listed, or none matches yet (a node group may be scaled from zero)."""
        selector = settings.isp_pool.node_selector
        if not selector:
            return None
        try:
            found = kube.count_nodes(api, selector)
        except ApiException as exc:
            logger.info("autoscaler: cannot count the storage nodes: %s", kube.api_error_text(exc))
            return None
        return found or None

    def _carry_out(
        self,
        state: JobAutoscaler,
        api: Any,
        body: dict,
        job: PreprocessJob,
        namespace: str,
        action: Action,
        settings: Settings,
        logger,
        now: datetime,
    ) -> dict | None:
        """One resize through ``pools.resize_pool``: the scaling record of what it did (None when
        nothing changed or the job finished)."""
        name = job.metadata.name
        record = st.scaling_record(action.pool, action.before, action.target, action.reason, now)
        with state.lock:
            if state.stopped:
                return None
            # first the intent, so that an operator killed from here on neither repeats nor loses it
            kube.merge_job_status(
                api, namespace, name, {"autoscaler": {"pending": record, "lastScaleTime": record["time"]}}
            )
            failpoint(FAILPOINT_DECIDED)
            try:
                change = pools.resize_pool(api, job, namespace, action.pool, action.target, settings, logger)
            except dask_scheduler.SchedulerUnavailable as exc:
                change = None
                logger.warning("autoscaler: job %s/%s: cannot retire workers: %s", namespace, name, exc)
            if change is None or change.after == change.before:
                kube.merge_job_status(api, namespace, name, {"autoscaler": {"pending": None}})
                if change is not None and change.kept:
                    logger.info("autoscaler: job %s/%s: %s", namespace, name, change.describe())
                return None
            if change.after > change.before:
                state.asked(action.pool, change.after - change.before, self.clock())
            if change.after != action.target:
                record = {**record, "to": change.after, "reason": f"{record['reason']}; {change.describe()}"}
                record["reason"] = record["reason"][: st.MAX_REASON]
            logger.info("autoscaler: job %s/%s: %s", namespace, name, change.describe())
            kube.post_event(api, body, "Normal", SCALED, f"{action.reason}")
            return record


def _without_nulls(value: Any) -> Any:
    """``value`` as the API server stores a merge patch of it (null members deleted)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
