"""Scaling policies behind one interface: ``decide(now, observation) -> Decision``.

Every policy is called every ``interval`` seconds with an :class:`~.signals.Observation` and
answers the replicas it wants per pool, each with a reason a person can read. The baselines follow
the rules of the systems they stand for:

- :class:`Reactive`: dask-kubernetes' rule (``daskautoscaler_adapt`` of its operator). Every 5 s
  it takes the scheduler's adaptive target (below), a number of workers for the whole cluster,
  as the replicas of its default worker group (``cpu``), removes at most 25% of them per step and
  after any change waits out a 15 s cooldown; the other group (``isp``) keeps a fixed size (its
  limit) and is not subtracted from the target (the operator scales the default group only).
- :class:`Adaptive`: distributed's ``Adaptive``: 1 s interval, the same target for the whole
  cluster (the fixed ``isp`` workers count toward it), a removal only after 3 consecutive
  suggestions.

The scheduler's adaptive target (distributed's ``Scheduler.adaptive_target``, from the
:class:`~.signals.SchedulerView`): the expected seconds of queued and running tasks over the 5 s
target duration, at most one worker per task; when that is fewer than the workers joined, the
workers less the idle ones (only idle workers are closed).
- :class:`HillClimb`: Cachew. +1 ``cpu`` worker while the trainers' batch time improves by more
  than 7%, -1 while the loss stays under 3%.
- :class:`MovingWindow`: Autopilot's recommender: the p95 of the demand over a moving window with
  exponentially decaying weights, plus a margin, sized by the planner.
- :class:`StaticPeak`: every pool at its limit all the time.
- :class:`Oracle`: the planner fed the true future peak demand (the limit to measure against).
- :class:`Predictive` (ours): the quantile forecast over start-up lag plus interval (the recent
  mean while the demand is calm), the planner, hysteresis on the rate to meet
  (:class:`~.planner.CapacityHold`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .forecast import QuantileForecaster, surge
from .planner import CapacityHold, Hysteresis, Plan, capacity, cost_per_hour, describe, fmt_rate, plan
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


def _adaptive_target(obs: Observation, target_duration: float) -> tuple[int, str]:
    """distributed's ``adaptive_target`` (workers for the whole cluster) and how it came about.

    Without a :class:`~.signals.SchedulerView` only the queued work is known: its seconds over
    the target duration."""
    s = obs.scheduler
    if s is None:
        n = math.ceil(obs.queued_work / target_duration) if obs.queued_work > 0 else 0
        return n, f"adaptive target {n} ({obs.queued_work:.0f} worker-s queued / {target_duration:.0f} s)"
    tasks = s.queued + s.running
    occupancy = tasks * s.task_seconds
    cpu = min(tasks, math.ceil(occupancy / target_duration)) if tasks else 0
    if s.queued and not s.workers:
        cpu = max(1, cpu)
    if cpu >= s.workers:
        return cpu, (
            f"adaptive target {cpu} ({s.queued} queued + {s.running} running tasks of "
            f"{s.task_seconds:.1f} s / {target_duration:.0f} s)"
        )
    n = s.workers - s.idle
    return n, f"adaptive target {n} ({s.workers} workers, {s.idle} idle to close)"


class Reactive(Policy):
    name = "reactive"

    def __init__(
        self,
        interval: float = 5.0,
        target_duration: float = 5.0,
        max_remove: float = 0.25,
        cooldown: float = 15.0,
    ):
        self.interval, self.target_duration, self.max_remove = interval, target_duration, max_remove
        self.cooldown = cooldown
        self._cool_until = -math.inf

    def decide(self, now: float, obs: Observation) -> Decision:
        cpu = obs.pools["cpu"]
        targets, reasons = _others_fixed(obs, "not the default worker group: fixed size")
        if now < self._cool_until:
            targets["cpu"] = cpu.replicas
            reasons["cpu"] = f"cpu {cpu.replicas} -> {cpu.replicas}: cooldown after the last change"
            return Decision(targets, reasons)
        want, why = _adaptive_target(obs, self.target_duration)
        want = _bounded(cpu, want)
        if want < cpu.replicas:
            step = max(1, math.floor(self.max_remove * cpu.replicas))
            if cpu.replicas - want > step:
                want = cpu.replicas - step
                why += f"; removing at most {self.max_remove:.0%} per step"
        if want != cpu.replicas:
            self._cool_until = now + self.cooldown
        targets["cpu"], reasons["cpu"] = want, f"cpu {cpu.replicas} -> {want}: {why}"
        return Decision(targets, reasons)


class Adaptive(Policy):
    name = "adaptive"

    def __init__(self, interval: float = 1.0, target_duration: float = 5.0, wait_count: int = 3):
        self.interval, self.target_duration, self.wait_count = interval, target_duration, wait_count
        self._below = 0

    def decide(self, now: float, obs: Observation) -> Decision:
        cpu = obs.pools["cpu"]
        total, why = _adaptive_target(obs, self.target_duration)
        if obs.scheduler is not None:
            # the target is for the whole cluster: the fixed groups' workers count toward it
            others = sum(p.replicas for n, p in obs.pools.items() if n != "cpu")
            want = _bounded(cpu, total - others)
            if others:
                why += f", less {others} worker(s) of the fixed groups"
        else:
            want = _bounded(cpu, total)
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

    name = "hill-climbing"

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
    name = "moving-window"

    def __init__(
        self,
        interval: float = 60.0,
        window: float = 1800.0,
        half_life: float = 600.0,
        margin: float = 0.15,
        deadline: float | None = None,
        budget: float | None = None,
    ):
        self.interval, self.window, self.half_life, self.margin = interval, window, half_life, margin
        self.deadline, self.budget = deadline, budget

    def decide(self, now: float, obs: Observation) -> Decision:
        vals = obs.demand.recent(self.window)
        age = (len(vals) - 1 - np.arange(len(vals))) * obs.demand.step
        ok = ~np.isnan(vals)
        p95 = _weighted_quantile(vals[ok], 0.5 ** (age[ok] / self.half_life), 0.95) if ok.any() else 0.0
        want = p95 * (1 + self.margin)
        lag = max(p.startup_lag for p in obs.pools.values())
        pl = plan(
            obs.pools,
            want,
            horizon=lag + self.interval,
            label=f"decayed p95 +{self.margin:.0%}",
            now=now,
            rows_left=obs.rows_left,
            deadline=obs.deadline if obs.deadline is not None else self.deadline,
            budget=self.budget,
        )
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

    def __init__(
        self,
        interval: float,
        hold: float,
        backlog_target: float,
        credit: float = 0.0,
        deadline: float | None = None,
        budget: float | None = None,
    ):
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        if budget is not None and budget <= 0:
            raise ValueError(f"budget must be positive, got {budget}")
        self.credit = credit
        self.interval = interval
        self.hysteresis = Hysteresis(hold)
        self.backlog_target = backlog_target
        #: Seconds from the job's start (time 0 of ``now``) to finish by, unless the observation
        #: has its own; USD per hour the workers may cost.
        self.deadline, self.budget = deadline, budget
        #: Whether the last decision put every pool at its limit for want of a measurement.
        self._unmeasured = False

    def horizon(self, obs: Observation) -> float:
        return max(p.startup_lag for p in obs.pools.values()) + self.interval

    def peak(self, now: float, obs: Observation, horizon: float) -> tuple[float, str]:
        raise NotImplementedError

    def refill_seconds(self, horizon: float) -> float:
        """Seconds over which the buffer is refilled to ``backlog_target`` (the horizon)."""
        return horizon

    def decide(self, now: float, obs: Observation) -> Decision:
        horizon = self.horizon(obs)
        peak, label = self.peak(now, obs, horizon)
        if math.isnan(peak) and not obs.trainers:
            peak = 0.0  # no trainers: the plan sizes for the deadline or the limits, not a forecast
        if math.isnan(peak):
            # trainers attached but nothing measured yet: every pool at its limit until it is
            sizes = {name: pool.limit for name, pool in obs.pools.items()}
            self._unmeasured = True
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
            delta = max((reserve - buffered) / self.refill_seconds(horizon), -self.credit * peak)
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
            deadline=obs.deadline if obs.deadline is not None else self.deadline,
            trainers=trainers,
            budget=self.budget,
        )
        sizes, notes = self.size(now, obs, pl)
        notes = {name: buffer_note + notes.get(name, "") for name in obs.pools}
        if self.budget is not None and cost_per_hour(obs.pools, sizes) > self.budget + 1e-9:
            # holding workers for hysteresis must not break the budget: the plan at once
            sizes = dict(pl.sizes)
            notes = {name: buffer_note + "; over the budget: no hysteresis" for name in obs.pools}
        return _from_plan(obs, pl, sizes, notes, forecast=peak)

    def size(self, now: float, obs: Observation, pl: Plan) -> tuple[dict[str, int], dict[str, str]]:
        """Replicas per pool from the plan: each pool grows at once and shrinks after the hold."""
        sizes, notes = {}, {}
        for name, pool in obs.pools.items():
            sizes[name], notes[name] = self.hysteresis.apply(now, name, pool.replicas, pl.sizes[name])
        return sizes, notes


class Oracle(_Planned):
    """Knows the future demand: ``obs.extra['future_peak'](start, end)`` gives its true peak."""

    name = "oracle"

    def __init__(
        self,
        interval: float = 15.0,
        hold: float = 60.0,
        backlog_target: float = 20.0,
        credit: float = 0.0,
        deadline: float | None = None,
        budget: float | None = None,
    ):
        super().__init__(interval, hold, backlog_target, credit, deadline, budget)

    def peak(self, now: float, obs: Observation, horizon: float) -> tuple[float, str]:
        return float(obs.extra["future_peak"](now, now + horizon)), "true peak demand"


#: Looks the predictive plan must want less capacity before a pool shrinks (60 s at the default
#: 10 s interval).
HOLD_INTERVALS = 6
#: While the trainers pause, the pools keep what a return to the rate wanted within this many holds
#: needs beyond what the buffer supplies during a start-up.
MEMORY_HOLDS = 5
#: Demand under this share of the most rate wanted within the memory is a pause, not a new level:
#: a trickle of requests while the trainers wait (an evaluation, a checkpoint) is not a rate the
#: pools should shrink to.
PAUSE_SHARE = 0.05


class Predictive(_Planned):
    """Ours: the upper quantile of the peak demand over start-up lag plus interval, planned on
    the rate to meet rather than per pool.

    - The forecast is of the peak of the demand smoothed over ``smooth`` bins (60 s): the
      trainers' prefetch buffer (30 s of demand) absorbs what lasts less, so bin-to-bin noise need
      not be met; a jump of the newest bin beyond ``surge_z`` times the bins' noise
      (:func:`~.forecast.surge`) is followed at once, before the model catches up. The hold
      remembers only the model's forecast of that look: a surge that the next look does not see
      again (a blip of noisy demand) costs one interval of the workers it asked for, not a hold.
    - Calm demand: when the last ``calm_memory`` seconds (and at least that much history) show no
      jump the buffer cannot bridge (:meth:`jumps`: a rise that, lasting through the fastest
      pool's start-up, needs more rows than the buffer holds), the rate is the mean demand of the
      last ``calm_window`` seconds, the buffer refilled over the same window: the forecast's
      headroom is for jumps, and the buffer absorbs the noise. The first such jump hands the look
      back to the forecast and the surge.
    - A buffer below ``backlog_target`` is refilled over ``refill`` seconds (default: the horizon).
    - While the buffer holds ``backlog_target``, workers falling short of the rate by at most
      ``slack`` (a share of it) are not added to: the throughput estimate moves by a few percent
      from look to look, and a rate on a worker's boundary would add and cancel one every look.
    - :class:`~.planner.CapacityHold`: grow at once (never adding a worker while the current ones
      meet the rate), shrink after ``hold`` to the cheapest subset meeting the most wanted in it,
      never while the buffer holds under ``shrink_backlog`` times the target, and never below
      what a return of paused trainers (no demand, or under :data:`PAUSE_SHARE` of the most rate
      wanted within the memory) to that rate needs beyond
      what the buffered rows supply during a start-up. The limits taken before the first
      measurement shrink at the first look that has one, without the hold.
    """

    name = "predictive"

    def __init__(
        self,
        interval: float = 10.0,
        quantile: float = 0.8,
        hold: float | None = None,
        memory: float | None = None,
        refill: float | None = 60.0,
        smooth: int = 6,
        surge_z: float | None = 2.5,
        calm_window: float = 300.0,
        calm_memory: float = 3600.0,
        shrink_backlog: float = 1.0,
        slack: float = 0.04,
        backlog_target: float = 20.0,
        credit: float = 0.0,
        period: float | None = None,
        seed: int = 0,
        deadline: float | None = None,
        budget: float | None = None,
    ):
        if not 0.5 <= quantile < 1:
            raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
        if hold is None:  # a pool shrinks after the plan wanted less for HOLD_INTERVALS looks
            hold = HOLD_INTERVALS * interval
        if memory is None:
            memory = MEMORY_HOLDS * hold
        super().__init__(interval, hold, backlog_target, credit, deadline, budget)
        self.quantile = quantile
        self.period = period
        self.seed = seed
        self.forecaster: QuantileForecaster | None = None
        self.hold = CapacityHold(hold, memory)
        self.slack = slack
        self.refill = refill
        self.smooth = smooth
        self.surge_z = surge_z
        self.calm_window = calm_window
        self.calm_memory = calm_memory
        self.shrink_backlog = shrink_backlog
        self._buffered = 0.0  # rows committed and not consumed, at the last look that knew them
        self._surge = 0.0  # rows/s the last peak added for a surge beyond the model's forecast
        self._jumped_at = -math.inf  # the last look that saw a jump the buffer cannot bridge
        self._calm = False  # whether the last peak was the calm demand's mean

    def size(self, now: float, obs: Observation, pl: Plan) -> tuple[dict[str, int], dict[str, str]]:
        """Replicas per pool from the rate the plan must meet (:class:`~.planner.CapacityHold`):
        grow at once, never add a worker while the current ones meet it, shrink after the hold,
        and not below what a return to the rate wanted within the memory needs beyond what the
        buffered rows supply while new workers start."""
        rate = pl.required if pl.reachable else capacity(obs.pools, pl.sizes)
        demand = obs.current_demand()
        if math.isfinite(obs.backlog) and demand > 0:
            self._buffered = obs.backlog * demand
        elif obs.backlog == 0:
            self._buffered = 0.0
        lag = max(p.startup_lag for p in obs.pools.values())
        shrink = ""
        if obs.trainers and self.shrink_backlog and obs.backlog < self.shrink_backlog * self.backlog_target:
            shrink = f"no pool shrinks while the buffer holds {obs.backlog:.0f} s (refilling)"
        # trainers paused (no demand in the newest bins, or a trickle of the rate wanted within
        # the memory): they may come back at the rate they had, and the pools must bridge what the
        # buffer does not while new workers start
        paused = obs.current_demand(obs.demand.step * 2) <= PAUSE_SHARE * self.hold.most(now)
        bridge = self._buffered / max(lag, 1.0) if paused else None
        # a surge is met now, but held only once a later look sees it again: a blip of noise
        # costs one interval of the workers it asked for, not a hold
        remember = max(0.0, rate - self._surge) if self._surge > 0 else None
        # the limits taken while nothing was measured were never wanted for a rate: no hold on them
        wait, self._unmeasured = not self._unmeasured, False
        # a shortfall within the slack is left to a buffer that holds its target (trainers only:
        # a deadline has no buffer to absorb it)
        full = bool(obs.trainers) and obs.backlog >= self.backlog_target
        sizes, notes, _ = self.hold.apply(
            now,
            obs.pools,
            rate,
            bridge=bridge,
            shrink=shrink,
            remember=remember,
            wait=wait,
            slack=self.slack if full else 0.0,
        )
        return sizes, notes

    def refill_seconds(self, horizon: float) -> float:
        if self._calm:
            return self.calm_window
        return self.refill if self.refill else horizon

    def jumps(self, history: np.ndarray, obs: Observation) -> tuple[float, bool]:
        """The surge the newest bin points to (NaN: none; :func:`~.forecast.surge`) and whether
        it is a jump the buffer cannot bridge: a rise over the level before it that, lasting
        through the start-up of the fastest pool, would need more rows than the buffer holds."""
        if not self.surge_z:
            return math.nan, False
        jump = surge(history, self.surge_z)
        if math.isnan(jump):
            return jump, False
        rise = jump - float(history[-1])
        level = float(history[-1]) - rise
        lag = min(p.startup_lag for p in obs.pools.values())
        held = obs.backlog if math.isfinite(obs.backlog) else self.backlog_target
        return jump, rise * lag > held * level

    def peak(self, now: float, obs: Observation, horizon: float) -> tuple[float, str]:
        step = obs.demand.step
        bins = max(1, math.ceil(horizon / step))
        if self.forecaster is None or not self.forecaster.horizon / 2 <= bins <= self.forecaster.horizon * 2:
            # the model learns one horizon in bins: made again when the horizon that matters moved
            # far from it (the start-up lag measured in place of its prior)
            season = round(self.period / step) if self.period else None
            self.forecaster = QuantileForecaster(
                bins, quantile=self.quantile, period=season, smooth=self.smooth, seed=self.seed
            )
        history = obs.demand.array()
        value, how = self.forecaster.predict(history)  # fitted in either regime: it may change
        label = f"forecast p{round(self.quantile * 100)} demand ({how})"
        self._surge, self._calm = 0.0, False
        jump, unbridged = self.jumps(history, obs)
        if unbridged:
            self._jumped_at = now
        seen = len(history) * obs.demand.step
        calm = min(seen, now - self._jumped_at) >= self.calm_memory
        if self.calm_memory and calm and not math.isnan(value):
            # calm demand: the forecast's headroom is for jumps, and none the buffer cannot bridge
            # was seen within the memory; what the buffer cannot absorb is the mean, not the peak of
            # the noise (refilled over the same window)
            mean = obs.current_demand(self.calm_window)
            if mean > 0:
                self._calm = True
                return mean, (
                    f"calm demand: mean of the last {self.calm_window:.0f} s (no jump beyond what the "
                    f"buffer bridges within {self.calm_memory:.0f} s)"
                )
        if jump > value:
            self._surge = jump - value
            return jump, f"demand surging (newest bin {fmt_rate(history[-1])}, ramp extrapolated)"
        return value, label


#: ``spec.autoscale.policy`` -> the policy class (the spec's names; ``Oracle`` is not a choice).
POLICY_NAMES: dict[str, type[Policy]] = {
    "predictive": Predictive,
    "reactive": Reactive,
    "adaptive": Adaptive,
    "hill-climbing": HillClimb,
    "moving-window": MovingWindow,
    "static-peak": StaticPeak,
}


def make_policy(
    policy: str = "predictive",
    *,
    interval: float | None = None,
    quantile: float = 0.8,
    deadline: float | None = None,
    budget: float | None = None,
    period: float | None = None,
    seed: int = 0,
) -> Policy:
    """A fresh policy from the settings of ``spec.autoscale``, as plain values: the policy's name
    (:data:`POLICY_NAMES`), ``interval`` (seconds; None: the policy's own), ``quantile`` (of the
    predictive forecast), ``deadline`` (seconds from the job's start) and ``budget`` (USD per hour).

    The interval applies to the policies this project defines (predictive, moving-window); the
    baselines keep the interval of the system they stand for, and deadline and budget reach only
    the policies that plan (predictive, moving-window)."""
    if policy not in POLICY_NAMES:
        raise ValueError(f"unknown policy {policy!r}; allowed: {', '.join(POLICY_NAMES)}")
    if interval is not None and not interval > 0:
        raise ValueError(f"interval must be positive, got {interval}")
    if deadline is not None and not deadline > 0:
        raise ValueError(f"deadline must be positive seconds, got {deadline}")
    if budget is not None and not budget > 0:
        raise ValueError(f"budget must be positive, got {budget}")
    if policy == "predictive":
        kw = {} if interval is None else {"interval": interval}
        return Predictive(quantile=quantile, period=period, seed=seed, deadline=deadline, budget=budget, **kw)
    if policy == "moving-window":
        kw = {} if interval is None else {"interval": interval}
        return MovingWindow(deadline=deadline, budget=budget, **kw)
    return POLICY_NAMES[policy]()


def policy_from(settings, *, period: float | None = None, seed: int = 0) -> Policy:
    """:func:`make_policy` from any object with the attributes of ``spec.autoscale`` (``policy``,
    ``interval``, ``quantile``, ``deadline``, ``budget``; a missing one takes its default)."""
    return make_policy(
        getattr(settings, "policy", "predictive"),
        interval=getattr(settings, "interval", None),
        quantile=getattr(settings, "quantile", 0.8),
        deadline=getattr(settings, "deadline", None),
        budget=getattr(settings, "budget", None),
        period=period,
        seed=seed,
    )


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
    "POLICY_NAMES",
    "Reactive",
    "StaticPeak",
    "all_policies",
    "fmt_rate",
    "make_policy",
    "policy_from",
]
