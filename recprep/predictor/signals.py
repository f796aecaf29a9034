"""The autoscaler's signals: one definition each, as pure functions over recorded events.

The simulator (``recprep.predictor.sim``) records the same events the operator will read from the
ledger, the shard service's acknowledgements and the pods (next issue), and every policy sees
them only through an :class:`Observation` built here:

- **demand** (rows/s): what the trainers would consume if never kept waiting: rows acknowledged
  in a bin divided by the seconds the trainers spent computing (not waiting for data) in it. Plain
  consumption (:func:`rate_series` of the acknowledgements) is censored by stalls; this is not.
- **production** (rows/s): rows committed per second (:func:`rate_series` of the commits).
- **backlog** (seconds of training): committed but unconsumed rows over the demand
  (:func:`backlog_seconds`).
- **work left** per pool (seconds): planned minus committed shards times the pool's measured
  seconds per shard, for one worker (:func:`work_left_seconds`).
- **start-up lag** per pool (seconds): from a worker's request to its joining
  (:class:`LagTracker`).
- **preemptions** per pool (per worker-second): notices over the worker-seconds exposed
  (:class:`PreemptionTracker`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


def rate_series(times, rows, start: float, end: float, step: float) -> np.ndarray:
    """Rows per second in consecutive bins ``[start + i*step, start + (i+1)*step)`` up to ``end``,
    from events at ``times`` carrying ``rows`` each (acknowledgements, commits)."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    n = max(0, int(math.ceil((end - start) / step)))
    times = np.asarray(times, dtype=float)
    rows = np.asarray(rows, dtype=float)
    keep = (times >= start) & (times < start + n * step)
    idx = ((times[keep] - start) // step).astype(int)
    return np.bincount(idx, weights=rows[keep], minlength=n)[:n] / step


def demand_rate(rows_consumed: float, busy_seconds: float) -> float:
    """The trainers' demand in rows/s: consumed rows over the seconds they computed (not waited).
    NaN when they never computed (no trainer, or stalled throughout: demand unknown)."""
    if busy_seconds <= 0:
        return math.nan
    return rows_consumed / busy_seconds


def backlog_seconds(committed_rows: float, consumed_rows: float, demand: float) -> float:
    """Committed but unconsumed rows, in seconds of training at ``demand`` rows/s (inf when
    rows wait and nobody consumes, 0 when nothing waits)."""
    waiting = max(0.0, committed_rows - consumed_rows)
    if waiting == 0:
        return 0.0
    if not demand or demand <= 0 or math.isnan(demand):
        return math.inf
    return waiting / demand


def work_left_seconds(planned_shards: int, committed_shards: int, seconds_per_shard: float) -> float:
    """Seconds one worker of a pool needs for the shards not yet committed (inf if the pool's
    cost per shard is unknown or infinite and work is left)."""
    left = max(0, int(planned_shards) - int(committed_shards))
    if left == 0:
        return 0.0
    if not seconds_per_shard or math.isnan(seconds_per_shard):
        return math.inf
    return left * seconds_per_shard


class BinnedSeries:
    """A signal sampled in fixed bins (NaN where nothing was measured: a gap), bounded in length."""

    def __init__(self, step: float, maxlen: int = 4096):
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        self.step = float(step)
        self.maxlen = maxlen
        self._buf = np.empty(min(maxlen, 1024) * 2)
        self._n = 0  # values in _buf
        self.end = 0.0  # time at the end of the last bin
        self._recorded: float | None = None  # when ``record`` was last called

    def append(self, value: float) -> None:
        if self._n == len(self._buf):
            keep = self._buf[max(0, self._n - self.maxlen + 1) : self._n]
            self._buf = np.concatenate([keep, np.empty(max(len(keep), 1024))])
            self._n = len(keep)
        self._buf[self._n] = value
        self._n += 1
        self.end += self.step

    def record(self, now: float, value: float, most: int = 600) -> None:
        """``value`` observed at time ``now`` (any clock, the same each call): one bin for every
        step since the last record (at least one, at most ``most``; the first record is one bin).
        A look that came later than one step fills the bins it missed, so the series keeps time."""
        n = 1 if self._recorded is None else round((now - self._recorded) / self.step)
        self._recorded = now
        for _ in range(max(1, min(most, n))):
            self.append(value)

    def array(self) -> np.ndarray:
        """The values, oldest first (a read-only view: at most ``maxlen``)."""
        view = self._buf[max(0, self._n - self.maxlen) : self._n]
        view.flags.writeable = False
        return view

    def recent(self, seconds: float) -> np.ndarray:
        n = max(1, int(round(seconds / self.step)))
        return self.array()[-n:]

    def __len__(self) -> int:
        return min(self._n, self.maxlen)


class LagTracker:
    """Measured start-up lag of a pool's workers: request to join, a high quantile of the recent
    ones. Until ``trusted`` lags are measured the prior bounds them from below (the most of the
    prior and the measured ones): a prior that is a known median (the simulator's) wants a few
    measurements before it gives way; a guess (the operator's) only one."""

    def __init__(self, prior: float, keep: int = 64, trusted: int = 3):
        self.prior = float(prior)
        self.trusted = max(1, int(trusted))
        self.lags: deque[float] = deque(maxlen=keep)
        self._cache: dict[float, float] = {}

    def record(self, requested_at: float, joined_at: float) -> None:
        self.lags.append(max(0.0, joined_at - requested_at))
        self._cache.clear()

    def quantile(self, q: float = 0.9) -> float:
        if not self.lags:
            return self.prior
        if len(self.lags) < self.trusted:
            return max(self.prior, max(self.lags))
        if len(self.lags) < 3:
            return max(self.lags)
        if q not in self._cache:
            self._cache[q] = float(np.quantile(np.fromiter(self.lags, float), q))
        return self._cache[q]


class PreemptionTracker:
    """Preemption notices of a pool per worker-second of exposure, with a prior until measured."""

    def __init__(self, prior_per_hour: float):
        self.prior = prior_per_hour / 3600.0
        self.notices = 0
        self.exposure = 0.0  # worker-seconds

    def expose(self, workers: float, seconds: float) -> None:
        self.exposure += max(0.0, workers) * seconds

    def record(self, count: int = 1) -> None:
        self.notices += count

    def rate(self) -> float:
        """Per worker-second; the prior counts as one hour of one worker's exposure."""
        return (self.notices + self.prior * 3600.0) / (self.exposure + 3600.0)


@dataclass(frozen=True)
class PoolState:
    """What a policy knows of one pool at decision time."""

    name: str
    #: Workers requested (the Deployment's replicas): ready + starting.
    replicas: int
    ready: int
    min: int
    max: int
    #: Rows/s one worker of this pool produces (measured, or the prior).
    rows_per_worker: float
    #: Price of one worker-hour (from request to removal).
    price_per_hour: float
    #: Start-up lag (request to join) at a high quantile, seconds.
    startup_lag: float
    #: Preemption notices per worker-second (0 for a pool that is not preemptible).
    preempt_rate: float = 0.0
    #: Workers the pool can host at all (ISP: storage nodes holding the shards); None: no limit.
    hosts: int | None = None

    @property
    def limit(self) -> int:
        """The most workers this pool can have: its max, and for ISP, its host nodes."""
        return self.max if self.hosts is None else max(0, min(self.max, self.hosts))

    @property
    def lower(self) -> int:
        return min(self.min, self.limit)


@dataclass(frozen=True)
class SchedulerView:
    """What the Dask scheduler knows of the transform tasks: the inputs of its ``adaptive_target``
    (the reactive baselines read only this)."""

    #: Tasks submitted and not yet running (the driver submits as the prefetch buffer has room).
    queued: int
    #: Tasks running on a worker.
    running: int
    #: The scheduler's estimate of one task's duration: an average of the measured durations
    #: of the task prefix over every worker (seconds).
    task_seconds: float
    #: Workers joined to the scheduler, every pool.
    workers: int
    #: Of them, the ones running no task.
    idle: int


@dataclass(frozen=True)
class Observation:
    """Everything a policy may read at one decision: the signals above, now."""

    now: float
    pools: dict[str, PoolState]
    #: Demand history in bins (rows/s; NaN: gap or unknown), the newest last.
    demand: BinnedSeries
    #: Rows committed but not consumed, in seconds of training.
    backlog: float
    #: Worker-seconds of shards the driver has queued or running (what dask's scheduler sees).
    queued_work: float
    #: The trainers' mean time per batch over the last interval, waiting included (Cachew's signal);
    #: NaN when no batch finished.
    batch_time: float
    #: Rows not yet committed of a finite job (None: an open-ended stream).
    rows_left: float | None = None
    #: Absolute time the job must finish by (None: no deadline).
    deadline: float | None = None
    #: Whether trainers consume the shards (otherwise size for the deadline or for max).
    trainers: bool = True
    #: Extra, policy-specific facts (the oracle's view of the future demand).
    extra: dict = field(default_factory=dict)
    #: The scheduler's task counts (None: only ``queued_work`` is known).
    scheduler: SchedulerView | None = None

    def current_demand(self, seconds: float = 30.0) -> float:
        """Mean demand over the last ``seconds`` (gaps left out); 0 when nothing was measured."""
        vals = self.demand.recent(seconds)
        vals = vals[~np.isnan(vals)]
        return float(vals.mean()) if vals.size else 0.0
