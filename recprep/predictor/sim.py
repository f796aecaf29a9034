"""A job on a cluster, simulated in steps of ``dt`` seconds, driven by any :class:`~.policies.Policy`.

The model (``bench/autoscale.py`` replays traces through it; ``tests/predictor`` checks it):

- **Pools** (:class:`PoolConfig`): each worker processes one shard at a time, taking the pool's
  seconds per shard times a lognormal jitter; a worker is billed from its request to its removal.
- **Start-up lag**: lognormal per worker, drawn at its request.
- **Preemptions** (preemptible pools): notices arrive as a Poisson process per worker (plus any
  ``mass_preemptions``: every worker of the pool at once). A noticed worker takes no new shard
  (it drains); at the end of the notice period it dies, and a shard still running on it is *lost*
  (its work is gone; the driver re-queues it). The node is drained on notice (as a node
  termination handler does), so the Deployment creates the replacement pod at the notice, and it
  starts up like any other. A pod still starting when noticed goes at once, nothing lost.
- **Scale-down** is graceful: pods still starting go first, then idle workers, then busy ones,
  which finish their shard before they go.
- **The driver** keeps ``prefetch_seconds`` of the trainers' demand committed or in flight ahead
  of them, at the demand it has measured (the mean of the last ``prefetch_seconds`` of demand
  bins; at least ``min_prefetch_shards``): it cannot know the trace's future peak. It submits a
  task per shard the buffer has room for, so the scheduler's queue (what dask's adaptive target
  reads) is the shortfall.
- **The scheduler** (:class:`~.signals.SchedulerView`): tasks queued and running, workers joined
  and idle, and its estimate of a task's duration, the average of the measured ones with
  distributed's weight of 1/2 for the newest.
- **Trainers** want ``demand[t]`` rows/s; they consume what is committed and stall for the rest.
- **The ledger**: every shard id is committed exactly once; at the end each id handed out is
  committed, running or queued (``ledger_ok``).

Signals reach the policy only through :mod:`.signals`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .forecast import forecast_error, rolling_mean
from .planner import ThroughputModel
from .signals import (
    BinnedSeries,
    LagTracker,
    Observation,
    PoolState,
    PreemptionTracker,
    SchedulerView,
    backlog_seconds,
    demand_rate,
)


@dataclass(frozen=True)
class PoolConfig:
    name: str
    min: int
    max: int
    #: True seconds one worker takes for one shard (the throughput model learns it).
    seconds_per_shard: float
    price_per_hour: float
    lag_median: float
    lag_sigma: float = 0.3
    preempt_per_hour: float = 0.0
    notice: tuple[float, float] = (30.0, 120.0)
    #: Nodes able to host this pool (ISP: storage nodes); None: no limit.
    hosts: int | None = None
    #: The planner's prior for seconds per shard before any is measured.
    prior_seconds_per_shard: float | None = None

    @property
    def limit(self) -> int:
        """Workers the pool may have at most: its max, and one per host."""
        return self.max if self.hosts is None else min(self.max, self.hosts)


@dataclass(frozen=True)
class SimConfig:
    pools: tuple[PoolConfig, ...]
    shard_rows: int = 65536
    dt: float = 1.0
    bin_seconds: float = 10.0
    prefetch_seconds: float = 30.0
    #: The least the driver keeps ahead, in shards, however low the demand.
    min_prefetch_shards: int = 2
    #: The demand peak the oracle meets and forecasts are scored on: of this moving average.
    peak_smoothing: float = 30.0
    batch_rows: int = 8192
    shard_jitter: float = 0.1
    seed: int = 0
    #: Times at which every worker of the preemptible pools gets a notice at once.
    mass_preemptions: tuple[float, ...] = ()

    def max_rate(self) -> float:
        """Rows/s of every pool at its limit."""
        return sum(p.limit * self.rate(p) for p in self.pools)

    def rate(self, pool: PoolConfig) -> float:
        return self.shard_rows / pool.seconds_per_shard


class _Worker:
    __slots__ = ("ready_at", "requested_at", "shard", "started", "done_at", "die_at", "retiring", "noticed")

    def __init__(self, requested_at: float, ready_at: float):
        self.requested_at = requested_at
        self.ready_at = ready_at
        self.shard = -1
        self.started = 0.0
        self.done_at = math.inf
        self.die_at = math.inf
        self.retiring = False
        self.noticed = False


@dataclass
class Result:
    policy: str
    duration: float
    stall_fraction: float
    worker_hours: dict[str, float]
    cost: float
    actions: int
    shards_lost: int
    shards_committed: int
    duplicates: int
    ledger_ok: bool
    preemptions: dict[str, int]
    forecast: dict
    seconds: float
    decisions: list = field(default_factory=list)
    timeline: list = field(default_factory=list)
    #: With ``record``: (time, horizon, forecast) of every forecast the policy made.
    forecasts: list = field(default_factory=list)

    def row(self) -> dict:
        return {
            "stall_fraction": round(self.stall_fraction, 5),
            "worker_hours": {k: round(v, 3) for k, v in self.worker_hours.items()},
            "cost": round(self.cost, 4),
            "actions": self.actions,
            "shards_lost": self.shards_lost,
            "shards_committed": self.shards_committed,
            "ledger_ok": self.ledger_ok,
            "preemptions": self.preemptions,
            "forecast": self.forecast,
            "seconds": round(self.seconds, 3),
        }


def simulate(
    policy, demand: np.ndarray, config: SimConfig, keep_decisions: int = 200, record: bool = False
) -> Result:
    """Run ``policy`` against ``demand`` (rows/s per step of ``config.dt``; NaN: a gap, no trainer
    demand and nothing measured) and return the measures."""
    wall = time.perf_counter()
    dt = config.dt
    rng = np.random.default_rng(config.seed)
    demand = np.asarray(demand, dtype=float)
    steps = len(demand)
    duration = steps * dt
    want = np.nan_to_num(demand, nan=0.0)
    floor_rows = config.min_prefetch_shards * config.shard_rows
    # warm start: the driver has measured the first demand and filled the buffer for it
    cap_rows = max(floor_rows, config.prefetch_seconds * (want[0] if steps else 0.0))
    k = max(1, round(config.peak_smoothing / dt))
    smooth_want = rolling_mean(want, k)

    pools = {p.name: p for p in config.pools}
    workers: dict[str, list[_Worker]] = {n: [] for n in pools}
    target: dict[str, int] = {}
    lags = {n: LagTracker(p.lag_median * math.exp(1.28 * p.lag_sigma)) for n, p in pools.items()}
    preempt = {n: PreemptionTracker(p.preempt_per_hour) for n, p in pools.items()}
    model = ThroughputModel(
        config.shard_rows,
        {n: (p.prior_seconds_per_shard or p.seconds_per_shard) for n, p in pools.items()},
    )
    demand_bins = BinnedSeries(config.bin_seconds, maxlen=100_000)
    bin_steps = max(1, round(config.bin_seconds / dt))

    # the ledger
    next_id = 0
    requeued: deque[int] = deque()
    committed = bytearray()
    duplicates = lost = 0
    committed_count = 0
    buffer = cap_rows  # warm start: the buffer full
    task_seconds = math.nan  # the scheduler's duration estimate of a transform task
    # the trainers
    stalled = demand_seconds = 0.0
    bin_rows = bin_busy = bin_want = 0.0
    interval_rows = 0.0
    # accounting
    worker_seconds = dict.fromkeys(pools, 0.0)
    cost = 0.0
    actions = 0
    notices = dict.fromkeys(pools, 0)
    decisions: deque = deque(maxlen=keep_decisions)
    timeline: list[tuple] = []  # with record: (time, demand, buffer, stalled s, pods..., targets...)
    forecasts: list[tuple[float, float, float]] = []  # (time, horizon, forecast)
    mass = sorted(config.mass_preemptions)
    # the driver gives shards to the cheapest rows first
    by_cost = sorted(pools.items(), key=lambda kv: kv[1].price_per_hour * kv[1].seconds_per_shard)

    def lag_draw(p: PoolConfig) -> float:
        return float(p.lag_median * math.exp(p.lag_sigma * rng.standard_normal()))

    def take_shard() -> int:
        nonlocal next_id
        if requeued:
            return requeued.popleft()
        next_id += 1
        committed.append(0)
        return next_id - 1

    def live(name: str) -> list[_Worker]:
        """The pods the Deployment counts: not retiring, not draining on a preemption notice."""
        return [w for w in workers[name] if not w.retiring and not w.noticed]

    def resize(name: str, n: int, now: float, warm: bool = False) -> None:
        ws = live(name)
        if n > len(ws):
            for _ in range(n - len(ws)):
                ready = now if warm else now + lag_draw(pools[name])
                workers[name].append(_Worker(now, ready))
        elif n < len(ws):
            # graceful: starting pods first, then idle, then busy (they finish their shard)
            order = sorted(ws, key=lambda w: (not w.noticed, w.ready_at <= now, w.shard >= 0, -w.ready_at))
            for w in order[: len(ws) - n]:
                if w.ready_at > now or w.shard < 0:
                    workers[name].remove(w)
                else:
                    w.retiring = True

    def true_peak(start: float, end: float) -> float:
        a = int(start / dt)
        return float(smooth_want[a : max(a + 1, int(end / dt))].max())

    def observe(now: float) -> Observation:
        states = {}
        for name, p in pools.items():
            ws = live(name)
            ready = sum(1 for w in ws if w.ready_at <= now and not w.noticed)
            states[name] = PoolState(
                name=name,
                replicas=target.get(name, len(ws)),
                ready=ready,
                min=p.min,
                max=p.max,
                rows_per_worker=model.rows_per_worker(name),
                price_per_hour=p.price_per_hour,
                startup_lag=lags[name].quantile(0.9),
                preempt_rate=preempt[name].rate() if p.preempt_per_hour > 0 else 0.0,
                hosts=p.hosts,
            )
        inflight_rows = sum(config.shard_rows for ws in workers.values() for w in ws if w.shard >= 0)
        pending = max(0.0, cap_rows - buffer - inflight_rows) / config.shard_rows
        running = sum(max(0.0, w.done_at - now) for ws in workers.values() for w in ws if w.shard >= 0)
        joined = [w for ws in workers.values() for w in ws if w.ready_at <= now]
        est = task_seconds if not math.isnan(task_seconds) else model.seconds["cpu"]
        sched = SchedulerView(
            queued=math.ceil(pending),
            running=sum(1 for w in joined if w.shard >= 0),
            task_seconds=est,
            workers=len(joined),
            idle=sum(1 for w in joined if w.shard < 0),
        )
        recent = demand_bins.recent(30) if len(demand_bins) else np.zeros(0)
        recent = recent[~np.isnan(recent)]
        cur = float(recent.mean()) if recent.size else 0.0
        bt = (
            (last_interval * config.batch_rows / interval_rows)
            if interval_rows > 0 and last_interval > 0
            else math.nan
        )
        return Observation(
            now=now,
            pools=states,
            demand=demand_bins,
            backlog=backlog_seconds(buffer, 0.0, cur),
            queued_work=math.ceil(pending) * model.seconds["cpu"] + running,
            batch_time=bt,
            extra={"future_peak": true_peak},
            scheduler=sched,
        )

    def apply(decision, now: float, warm: bool = False) -> None:
        nonlocal actions
        for name, n in decision.targets.items():
            n = max(pools[name].min, min(pools[name].max, int(n)))
            if pools[name].hosts is not None:
                n = min(n, pools[name].hosts)
            if n != target.get(name, -1) and not warm:
                actions += 1
                decisions.append((round(now, 1), decision.reasons.get(name, "")))
            target[name] = n
            resize(name, n, now, warm)

    last_interval = 0.0
    next_decision = 0.0
    last_decision_at = 0.0
    for i in range(steps):
        now = i * dt
        # --- policy
        if now >= next_decision:
            last_interval = now - last_decision_at
            obs = observe(now)
            decision = policy.decide(now, obs)
            if hasattr(policy, "horizon"):
                horizon = policy.horizon(obs)
                if decision.forecast is not None:
                    forecasts.append((now, horizon, decision.forecast))
            apply(decision, now, warm=(i == 0))
            interval_rows = 0.0
            last_decision_at = now
            next_decision = now + policy.interval
        # --- preemption notices
        while mass and mass[0] <= now:
            mass.pop(0)
            for name, p in pools.items():
                if p.preempt_per_hour > 0:
                    for w in live(name):
                        if not w.noticed:
                            w.noticed = True
                            w.die_at = (
                                now + rng.uniform(*p.notice)
                                if w.ready_at <= now
                                else now
                                if w.ready_at <= now
                                else now
                            )
                            notices[name] += 1
                            preempt[name].record()
        for name, p in pools.items():
            if p.preempt_per_hour <= 0:
                continue
            ws = [w for w in workers[name] if not w.noticed]
            preempt[name].expose(len(ws), dt)
            k = rng.binomial(len(ws), min(1.0, p.preempt_per_hour / 3600.0 * dt)) if ws else 0
            if k:
                for j in rng.choice(len(ws), size=k, replace=False):
                    w = ws[j]
                    w.noticed = True
                    w.die_at = now + rng.uniform(*p.notice) if w.ready_at <= now else now
                    notices[name] += 1
                    preempt[name].record()
        # --- workers: deaths, joins, completions, retirements
        for name, p in pools.items():
            keep = []
            for w in workers[name]:
                if w.noticed and w.die_at <= now:
                    if w.shard >= 0 and w.ready_at <= now:
                        lost += 1
                        requeued.append(w.shard)
                    continue  # dead; the Deployment replaces it below
                if w.ready_at <= now < w.ready_at + dt and w.requested_at < w.ready_at:
                    lags[name].record(w.requested_at, w.ready_at)
                if w.shard >= 0 and w.done_at <= now:
                    sid = w.shard
                    if committed[sid]:
                        duplicates += 1
                    else:
                        committed[sid] = 1
                        committed_count += 1
                    buffer += config.shard_rows
                    took = w.done_at - w.started
                    model.record(name, took)
                    task_seconds = took if math.isnan(task_seconds) else 0.5 * task_seconds + 0.5 * took
                    w.shard, w.started, w.done_at = -1, w.done_at, math.inf  # idle since
                if w.retiring and w.shard < 0:
                    continue  # retired after its shard
                keep.append(w)
            workers[name] = keep
            # the Deployment keeps its replicas: dead pods are replaced
            missing = target.get(name, 0) - len(live(name))
            for _ in range(max(0, missing)):
                workers[name].append(_Worker(now, now + lag_draw(p)))
        # --- the driver hands out shards while the buffer has room (sized by the demand it measured)
        inflight = sum(1 for ws in workers.values() for w in ws if w.shard >= 0)
        room = int((cap_rows - buffer) // config.shard_rows) - inflight
        if room > 0:
            for name, p in by_cost:
                for w in workers[name]:
                    if room <= 0:
                        break
                    if w.shard < 0 and not w.noticed and not w.retiring and w.ready_at <= now:
                        w.shard = take_shard()
                        jitter = math.exp(config.shard_jitter * rng.standard_normal())
                        # it starts when it became free within this step (no step-rounding of shards)
                        w.started = min(now, max(w.started, w.ready_at, now - dt))
                        w.done_at = w.started + p.seconds_per_shard * jitter
                        room -= 1
        # --- the trainers
        d = want[i] * dt
        if d > 0:
            got = min(d, buffer)
            buffer -= got
            stalled += dt * (1.0 - got / d)
            demand_seconds += dt
            bin_rows += got
            bin_busy += dt * got / d
            bin_want += d
            interval_rows += got
        # --- billing
        for name, p in pools.items():
            n = len(workers[name])
            worker_seconds[name] += n * dt
            cost += n * dt / 3600.0 * p.price_per_hour
        # --- signals, one bin at a time
        if (i + 1) % bin_steps == 0:
            if record:
                timeline.append(
                    (
                        now,
                        want[i],
                        buffer,
                        stalled,
                        *(len(live(n)) for n in pools),
                        *(target.get(n, 0) for n in pools),
                    )
                )
            gap = np.isnan(demand[max(0, i + 1 - bin_steps) : i + 1]).all()
            if gap or (bin_want > 0 and bin_busy == 0):
                demand_bins.append(math.nan)  # a gap, or stalled throughout: demand unmeasured
            else:
                demand_bins.append(demand_rate(bin_rows, bin_busy) if bin_busy > 0 else 0.0)
            bin_rows = bin_busy = bin_want = 0.0
            measured = demand_bins.recent(config.prefetch_seconds)
            measured = measured[~np.isnan(measured)]
            if measured.size:
                cap_rows = max(floor_rows, config.prefetch_seconds * float(measured.mean()))
            elif gap:
                cap_rows = floor_rows  # no trainer lately: keep the least

    inflight_ids = [w.shard for ws in workers.values() for w in ws if w.shard >= 0]
    handed = next_id
    accounted = committed_count + len(inflight_ids) + len(requeued)
    ledger_ok = (
        duplicates == 0
        and accounted == handed
        and len(set(inflight_ids) | set(requeued)) == (len(inflight_ids) + len(requeued))
    )
    # forecast error: the forecast of the peak over its horizon against the true peak
    ferr = {}
    if forecasts:
        fc = np.array([f[2] for f in forecasts])
        actual = np.array(
            [
                float(smooth_want[int(t / dt) + 1 : int((t + h) / dt) + 1].max())
                if int((t + h) / dt) + 1 <= steps
                else math.nan
                for t, h, _ in forecasts
            ]
        )
        ferr = forecast_error(fc, actual)
    return Result(
        policy=getattr(policy, "name", type(policy).__name__),
        duration=duration,
        stall_fraction=stalled / demand_seconds if demand_seconds else 0.0,
        worker_hours={n: s / 3600.0 for n, s in worker_seconds.items()},
        cost=cost,
        actions=actions,
        shards_lost=lost,
        shards_committed=committed_count,
        duplicates=duplicates,
        ledger_ok=ledger_ok,
        preemptions=notices,
        forecast=ferr,
        seconds=time.perf_counter() - wall,
        decisions=list(decisions),
        timeline=timeline,
        forecasts=forecasts if record else [],
    )


__all__ = ["PoolConfig", "Result", "SimConfig", "simulate"]
