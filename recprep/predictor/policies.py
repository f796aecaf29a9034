"""Scaling policies behind one interface: ``decide(now, observation) -> Decision``.

Every policy is called every ``interval`` seconds with an :class:`~.signals.Observation` and
answers the replicas it wants per pool, each with a reason a person can read. The baselines follow
the rules of the systems they stand for:

- :class:`Reactive`: dask-kubernetes' rule. Every 5 s it takes the scheduler's adaptive target
  (queued work over a 5 s target duration) for its default worker group (``cpu``) and removes at
  most 25% of the workers per step; the other group (``isp``) keeps a fixed size (its limit).
- :class:`Adaptive`: distributed's ``Adaptive``: 1 s interval, the same target, a removal only
  after 3 consecutive suggestions; ``isp`` fixed as above.
- :class:`HillClimb`: Cachew. +1 ``cpu`` worker while the trainers' batch time improves by more
  than 7%, -1 while the loss stays under 3%.
- :class:`MovingWindow`: Autopilot's recommender: the p95 of the demand over a moving window with
  exponentially decaying weights, plus a margin, sized by the planner.
- :class:`StaticPeak`: every pool at its limit all the time.
- :class:`Oracle`: the planner fed the true future peak demand (the limit to measure against).
- :class:`Predictive` (ours): the quantile forecast over start-up lag plus interval, the
  planner, hysteresis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .forecast import QuantileForecaster
from .planner import Hysteresis, Plan, describe, fmt_rate, plan
from .signals import Observation, PoolState


@dataclass(frozen=True)
class Decision:
    """Replicas wanted per pool, and why (one reason per pool)."""

    targets: dict[str, int]
    reasons: dict[str, str]
    #: The forecast behind it, when the policy made one (rows/s).
    forecast: float | None = None
    #: What the policy saw, for the decision log.
    inputs: dict = field(default_factory=dict)


class Policy:
    """The interface: a name, an interval and ``decide``."""

    name = "policy"
    interval = 5.0

    def decide(self, now: float, obs: Observation) -> Decision:  # pragma: no cover - interface
        raise NotImplementedError


def _bounded(pool: PoolState, n: int) -> int:
    return max(pool.lower, min(pool.limit, int(n)))


def _keep(pool: PoolState, why: str) -> tuple[int, str]:
    n = _bounded(pool, pool.limit)
    return n, f"{pool.name} {pool.replicas} -> {n}: {why}"


def _others_fixed(obs: Observation, why: str) -> tuple[dict[str, int], dict[str, str]]:
    """Targets and reasons keeping every pool but ``cpu`` at its size (policies that scale one
    worker group)."""
    targets, reasons = {}, {}
    for name, pool in obs.pools.items():
        if name != "cpu":
            targets[name], reasons[name] = _keep(pool, why)
    return targets, reasons


def _adaptive_target(obs: Observation, target_duration: float) -> int:
    """distributed's ``adaptive_target``: queued and running work over the target duration."""
    return math.ceil(obs.queued_work / target_duration) if obs.queued_work > 0 else 0


class Reactive(Policy):
    name = "reactive"

    def __init__(self, interval: float = 5.0, target_duration: float = 5.0, max_remove: float = 0.25):
        self.interval, self.target_duration, self.max_remove = interval, target_duration, max_remove

    def decide(self, now: float, obs: Observation) -> Decision:
        cpu = obs.pools["cpu"]
        want = _bounded(cpu, _adaptive_target(obs, self.target_duration))
        why = f"adaptive target {want} ({obs.queued_work:.0f} worker-s queued / {self.target_duration:.0f} s)"
        if want < cpu.replicas:
            step = max(1, math.floor(self.max_remove * cpu.replicas))
            if cpu.replicas - want > step:
                want = cpu.replicas - step
                why += f"; removing at most {self.max_remove:.0%} per step"
        targets, reasons = _others_fixed(obs, "not the default worker group: fixed size")
        targets["cpu"], reasons["cpu"] = want, f"cpu {cpu.replicas} -> {want}: {why}"
        return Decision(targets, reasons)


class Adaptive(Policy):
    name = "adaptive"

    def __init__(self, interval: float = 1.0, target_duration: float = 5.0, wait_count: int = 3):
        self.interval, self.target_duration, self.wait_count = interval, target_duration, wait_count
        self._below = 0

    def decide(self, now: float, obs: Observation) -> Decision:
        cpu = obs.pools["cpu"]
        want = _bounded(cpu, _adaptive_target(obs, self.target_duration))
        why = f"adaptive target {want} ({obs.queued_work:.0f} worker-s queued / {self.target_duration:.0f} s)"
        if want < cpu.replicas:
            self._below += 1
            if self._below < self.wait_count:
                why += f"; removal suggested {self._below} of {self.wait_count} times"
                want = cpu.replicas
            else:
                self._below = 0
        else:
            self._below = 0
        targets, reasons = _others_fixed(obs, "not scaled by Adaptive: fixed size")
        targets["cpu"], reasons["cpu"] = want, f"cpu {cpu.replicas} -> {want}: {why}"
        return Decision(targets, reasons)


class HillClimb(Policy):
    """Cachew's climb on the trainers' batch time; waits for started workers before judging."""

    name = "hill-climb"

    def __init__(self, interval: float = 30.0, improve: float = 0.07, tolerate: float = 0.03):
        self.interval, self.improve, self.tolerate = interval, improve, tolerate
        self._ref: float | None = None  # batch time before the last step
        self._last = 0  # +1, -1 or 0: the last step taken
        self._base: float | None = None  # batch time when the climb settled

    def decide(self, now: float, obs: Observation) -> Decision:
        cpu = obs.pools["cpu"]
        bt = obs.batch_time
        targets, reasons = _others_fixed(obs, "not scaled by the hill climb: fixed size")
        n = cpu.replicas
        if cpu.ready < cpu.replicas or math.isnan(bt):
            targets["cpu"] = n
            reasons["cpu"] = f"cpu {n} -> {n}: waiting for started workers before measuring"
            return Decision(targets, reasons)
        step, why = 0, ""
        if self._last == +1:
            gain = (self._ref - bt) / self._ref if self._ref else 0.0
            if gain > self.improve:
                step, why = +1, f"batch time improved {gain:.0%} > {self.improve:.0%}"
            else:
                why, self._base = f"batch time improved only {gain:.0%}: settled", bt
        elif self._last == -1:
            loss = (bt - self._ref) / self._ref if self._ref else 0.0
            if loss < self.tolerate:
                step, why = -1, f"batch time lost {loss:.0%} < {self.tolerate:.0%}"
            else:
                step, why = +1, f"batch time lost {loss:.0%}: undo"
                self._base = None
        else:
            if self._base is None or bt > self._base * (1 + self.improve) or n <= cpu.lower:
                # worse than when it settled, or no worker left to take away: probe upwards
                step, why = +1, f"batch time {bt * 1e3:.1f} ms: try one more"
            else:
                step, why = -1, f"batch time {bt * 1e3:.1f} ms steady: try one fewer"
        want = _bounded(cpu, n + step)
        self._last = want - n
        self._ref = bt
        targets["cpu"] = want
        reasons["cpu"] = f"cpu {n} -> {want}: {why}"
        return Decision(targets, reasons)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cw = np.cumsum(w)
    return float(v[np.searchsorted(cw, q * cw[-1])])


class MovingWindow(Policy):
    name = "autopilot"

    def __init__(
        self, interval: float = 60.0, window: float = 1800.0, half_life: float = 600.0, margin: float = 0.15
    ):
        self.interval, self.window, self.half_life, self.margin = interval, window, half_life, margin

    def decide(self, now: float, obs: Observation) -> Decision:
        vals = obs.demand.recent(self.window)
        age = (len(vals) - 1 - np.arange(len(vals))) * obs.demand.step
        ok = ~np.isnan(vals)
        p95 = _weighted_quantile(vals[ok], 0.5 ** (age[ok] / self.half_life), 0.95) if ok.any() else 0.0
        want = p95 * (1 + self.margin)
        lag = max(p.startup_lag for p in obs.pools.values())
        pl = plan(obs.pools, want, horizon=lag + self.interval, label=f"decayed p95 +{self.margin:.0%}")
        return _from_plan(obs, pl, pl.sizes, {})


class StaticPeak(Policy):
    name = "static-peak"
    interval = 60.0

    def decide(self, now: float, obs: Observation) -> Decision:
        targets, reasons = {}, {}
        for name, pool in obs.pools.items():
            targets[name], reasons[name] = _keep(pool, "provisioned for the peak")
        return Decision(targets, reasons)


def _from_plan(obs: Observation, pl: Plan, sizes: dict[str, int], notes: dict[str, str], forecast=None):
    reasons = {}
    for name, pool in obs.pools.items():
        reasons[name] = describe(name, pool.replicas, sizes[name], obs.pools, pl) + notes.get(name, "")
    return Decision(dict(sizes), reasons, forecast=forecast, inputs={"required": pl.required})


class _Planned(Policy):
    """Shared by the oracle and the predictive policy: peak demand -> planner -> hysteresis."""

    def __init__(self, interval: float, hold: float, backlog_target: float, credit: float = 0.0):
        self.credit = credit
        self.interval = interval
        self.hysteresis = Hysteresis(hold)
        self.backlog_target = backlog_target

    def horizon(self, obs: Observation) -> float:
        return max(p.startup_lag for p in obs.pools.values()) + self.interval

    def peak(self, now: float, obs: Observation, horizon: float) -> tuple[float, str]:
        raise NotImplementedError

    def decide(self, now: float, obs: Observation) -> Decision:
        horizon = self.horizon(obs)
        peak, label = self.peak(now, obs, horizon)
        if math.isnan(peak):
            # trainers attached but nothing measured yet: every pool at its limit until it is
            sizes = {name: pool.limit for name, pool in obs.pools.items()}
            why = f"{label}; every pool at its limit until measured"
            reasons = {n: f"{n} {p.replicas} -> {sizes[n]}: {why}" for n, p in obs.pools.items()}
            return Decision(sizes, reasons)
        recent = obs.demand.recent(horizon)
        trainers = obs.trainers and not (len(recent) and np.isnan(recent).all())
        if not trainers and obs.trainers:
            label = f"no demand measured for {horizon:.0f} s (trainers away)"
        required = peak
        buffer_note = ""
        if trainers and math.isfinite(obs.backlog):
            # the buffer: refill it to backlog_target seconds of the peak over the horizon, or spend
            # what it holds beyond that (at most ``credit`` of the peak): noise shorter than the
            # buffer need not be met by workers
            buffered = obs.backlog * obs.current_demand()
            reserve = self.backlog_target * peak
            delta = max((reserve - buffered) / horizon, -self.credit * peak)
            if delta < 0:
                buffer_note = f"; less {fmt_rate(-delta)} drawn from {obs.backlog:.0f} s of buffered rows"
            elif delta > 0:
                buffer_note = f"; plus {fmt_rate(delta)} to refill the buffer to {self.backlog_target:.0f} s"
            required = max(0.0, peak + delta)
        pl = plan(
            obs.pools,
            required,
            horizon=horizon,
            label=label,
            now=now,
            rows_left=obs.rows_left,
            deadline=obs.deadline,
            trainers=trainers,
        )
        sizes, notes = {}, {}
        for name, pool in obs.pools.items():
            sizes[name], note = self.hysteresis.apply(now, name, pool.replicas, pl.sizes[name])
            notes[name] = buffer_note + note
        return _from_plan(obs, pl, sizes, notes, forecast=peak)


class Oracle(_Planned):
    """Knows the future demand: ``obs.extra['future_peak'](start, end)`` gives its true peak."""

    name = "oracle"

    def __init__(
        self, interval: float = 15.0, hold: float = 60.0, backlog_target: float = 20.0, credit: float = 0.0
    ):
        super().__init__(interval, hold, backlog_target, credit)

    def peak(self, now: float, obs: Observation, horizon: float) -> tuple[float, str]:
        return float(obs.extra["future_peak"](now, now + horizon)), "true peak demand"


class Predictive(_Planned):
    """Ours: the upper quantile of the peak demand over start-up lag plus interval."""

    name = "predictive"

    def __init__(
        self,
        interval: float = 15.0,
        quantile: float = 0.9,
        hold: float = 120.0,
        backlog_target: float = 20.0,
        credit: float = 0.0,
        period: float | None = None,
        seed: int = 0,
    ):
        super().__init__(interval, hold, backlog_target, credit)
        self.quantile = quantile
        self.period = period
        self.seed = seed
        self.forecaster: QuantileForecaster | None = None

    def peak(self, now: float, obs: Observation, horizon: float) -> tuple[float, str]:
        if self.forecaster is None:
            # the horizon in bins is fixed by the first decision (the model learns that horizon)
            step = obs.demand.step
            bins = max(1, math.ceil(horizon / step))
            season = round(self.period / step) if self.period else None
            self.forecaster = QuantileForecaster(bins, quantile=self.quantile, period=season, seed=self.seed)
        value, how = self.forecaster.predict(obs.demand.array())
        return value, f"forecast p{round(self.quantile * 100)} demand ({how})"


def all_policies(period: float | None = None, seed: int = 0) -> list[Policy]:
    """One fresh instance of every policy, ours first."""
    return [
        Predictive(period=period, seed=seed),
        Reactive(),
        Adaptive(),
        HillClimb(),
        MovingWindow(),
        StaticPeak(),
        Oracle(),
    ]


__all__ = [
    "Adaptive",
    "Decision",
    "HillClimb",
    "MovingWindow",
    "Oracle",
    "Policy",
    "Predictive",
    "Reactive",
    "StaticPeak",
    "all_policies",
    "fmt_rate",
]
