import math

import numpy as np
import pytest

from recprep.predictor.policies import (
    Adaptive,
    HillClimb,
    MovingWindow,
    Oracle,
    Predictive,
    Reactive,
    StaticPeak,
    all_policies,
)

from .conftest import observation, pools


def test_reactive_takes_the_adaptive_target_and_removes_at_most_a_quarter():
    ps = pools(cpu_replicas=20, isp_replicas=4)
    d = Reactive().decide(0, observation([1e5], ps, queued_work=0.0))
    assert d.targets == {"cpu": 15, "isp": 4}
    assert "removing at most 25% per step" in d.reasons["cpu"]
    d = Reactive().decide(0, observation([1e5], pools(cpu_replicas=2), queued_work=42.0))
    assert d.targets["cpu"] == 9  # ceil(42 / 5)


def test_adaptive_removes_only_after_three_suggestions():
    a = Adaptive()
    ps = pools(cpu_replicas=10, isp_replicas=4)
    got = [a.decide(t, observation([1e5], ps, queued_work=20.0)).targets["cpu"] for t in range(4)]
    assert got == [10, 10, 4, 10]  # the count restarts after a removal
    assert a.decide(5, observation([1e5], ps, queued_work=100.0)).targets["cpu"] == 20


def test_hill_climb_adds_while_batch_time_improves_and_removes_while_it_costs_little():
    h = HillClimb()

    def step(n, bt):
        return h.decide(0, observation([1e5], pools(cpu_replicas=n), batch_time=bt)).targets["cpu"]

    assert step(4, 1.0) == 5  # nothing known: try one more
    assert step(5, 0.8) == 6  # improved 20% > 7%
    assert step(6, 0.78) == 6  # improved 2.5%: settle
    assert step(6, 0.78) == 5  # steady: try one fewer
    assert step(5, 0.79) == 4  # lost 1.3% < 3%: one fewer again
    assert step(4, 0.9) == 5  # lost 14%: undo
    # at the pool's minimum a settled climb probes upwards (it cannot probe downwards)
    low = HillClimb()
    assert low.decide(0, observation([1e5], pools(cpu=(1, 20)), batch_time=1.0)).targets["cpu"] == 2
    low._last, low._base = 0, 1.0
    assert low.decide(0, observation([1e5], pools(cpu=(1, 20)), batch_time=1.0)).targets["cpu"] == 2
    # never judges while started workers are not ready
    obs = observation(
        [1e5], {**pools(), "cpu": pools(cpu_replicas=6)["cpu"].__class__("cpu", 6, 5, 0, 20, 1e4, 0.1, 80)}
    )
    assert h.decide(0, obs).targets["cpu"] == 6


def test_moving_window_sizes_for_the_decayed_p95():
    hist = np.full(180, 100_000.0)
    hist[-10:] = 200_000.0  # recent, so heavily weighted
    d = MovingWindow().decide(0, observation(hist))
    # decayed p95 = 200k, +15% = 230k: isp 4 (160k) + cpu 7 (70k)
    assert d.targets == {"cpu": 7, "isp": 4}


def test_static_peak_and_oracle():
    assert StaticPeak().decide(0, observation([0.0], pools(hosts=3))).targets == {"cpu": 20, "isp": 3}
    o = Oracle(backlog_target=0)
    obs = observation([1.0], extra={"future_peak": lambda a, b: 250_000.0})
    d = o.decide(0, obs)
    assert d.forecast == 250_000.0 and d.targets == {"cpu": 9, "isp": 4}
    assert "true peak demand 250k rows/s" in d.reasons["cpu"]


def test_predictive_reason_reads_like_the_issue():
    rng = np.random.default_rng(0)
    hist = 190_000 + 2_000 * rng.standard_normal(200)
    hist[-6:] = np.linspace(200_000, 300_000, 6)  # demand climbing now
    p = Predictive(quantile=0.9, backlog_target=0, surge_z=None)
    d = p.decide(0, observation(hist, pools(cpu_replicas=3, isp_replicas=4)))
    cpu = d.reasons["cpu"]
    assert cpu.startswith(f"cpu 3 -> {d.targets['cpu']}: forecast p90 demand")
    assert "exceeds current capacity 190k rows/s; workers take 80 s to start" in cpu
    assert d.targets["cpu"] > 3 and d.forecast > 250_000
    # by default a newest bin far beyond the bins' noise is followed at once: the ramp extrapolated
    d = Predictive(backlog_target=0).decide(0, observation(hist, pools(cpu_replicas=3, isp_replicas=4)))
    assert d.reasons["cpu"].startswith("cpu 3 -> 20: demand surging (newest bin 300k rows/s")
    assert d.forecast > 300_000


def test_surge_needs_a_jump_beyond_the_noise(rng):
    from recprep.predictor.forecast import surge

    calm = 100_000 + 2_000 * rng.standard_normal(60)
    assert math.isnan(surge(calm))
    jump = np.append(calm, 130_000.0)  # 15 noise spreads above the level
    assert surge(jump) == pytest.approx(130_000 + (130_000 - np.median(calm[-12:])))
    noisy = 100_000 * (1 + 0.3 * rng.standard_normal(60))
    assert math.isnan(surge(np.append(noisy, 130_000.0)))  # within the noise of a noisy series
    assert math.isnan(surge(np.append(calm, math.nan))) and math.isnan(surge(calm[:5]))


def test_capacity_hold_keeps_the_workers_that_meet_the_rate_and_shrinks_to_a_subset():
    from recprep.predictor.planner import CapacityHold

    h = CapacityHold(hold=30, memory=120)
    # the current mix (cpu 2 + isp 2: 100k) meets 95k: nothing added, though isp 3 is cheaper
    sizes, _, _ = h.apply(0, pools(cpu_replicas=2, isp_replicas=2), 95_000)
    assert sizes == {"cpu": 2, "isp": 2}
    # more than they give: the cheapest superset of them
    sizes, _, _ = h.apply(10, pools(cpu_replicas=2, isp_replicas=2), 125_000)
    assert sizes == {"cpu": 2, "isp": 3}
    # less wanted: no shrink while 125k was wanted within the hold, then the cheapest subset
    # meeting the most wanted in it (the look before the hold counts: it stood until the next)
    sizes, _, _ = h.apply(20, pools(cpu_replicas=2, isp_replicas=3), 50_000)
    assert sizes == {"cpu": 2, "isp": 3}
    sizes, _, _ = h.apply(45, pools(cpu_replicas=2, isp_replicas=3), 50_000)
    assert sizes == {"cpu": 1, "isp": 3}  # 125k (the look at 10 s stood until 20 s)
    sizes, _, _ = h.apply(60, pools(cpu_replicas=1, isp_replicas=3), 50_000)
    assert sizes == {"cpu": 1, "isp": 1}
    # a shrink the caller forbids (the buffer refilling) waits, and says why
    assert h.apply(100, pools(cpu_replicas=1, isp_replicas=1), 10_000)[0] == {"cpu": 1, "isp": 1}
    sizes, note, _ = h.apply(140, pools(cpu_replicas=1, isp_replicas=1), 10_000, shrink="refilling")
    assert sizes == {"cpu": 1, "isp": 1} and "refilling" in note["isp"]
    # trainers paused: keep what a return to the rate wanted within the memory (50k at 20-60 s)
    # needs beyond what the buffer bridges (20k): 30k
    sizes, _, _ = h.apply(150, pools(cpu_replicas=1, isp_replicas=1), 0.0, bridge=20_000)
    assert sizes == {"cpu": 0, "isp": 1}
    sizes, _, _ = h.apply(300, pools(cpu_replicas=0, isp_replicas=1), 0.0, bridge=20_000)
    assert sizes == {"cpu": 0, "isp": 0}  # nothing wanted within the memory


def test_capacity_hold_remembers_less_than_an_unconfirmed_rate():
    from recprep.predictor.planner import CapacityHold

    h = CapacityHold(hold=30, memory=120)
    # a surge asks for 125k now, but only 50k of it is remembered
    sizes, _, _ = h.apply(0, pools(cpu_replicas=1, isp_replicas=1), 125_000, remember=50_000)
    assert sizes == {"cpu": 1, "isp": 3}
    assert h.apply(10, pools(cpu_replicas=1, isp_replicas=3), 50_000)[0] == {"cpu": 1, "isp": 3}
    # once the looks span the hold, the sizes follow the most remembered (50k), not the surge
    assert h.apply(30, pools(cpu_replicas=1, isp_replicas=3), 50_000)[0] == {"cpu": 1, "isp": 1}
    # wait=False: sizes never wanted for a rate shrink without waiting out the hold
    fresh = CapacityHold(hold=30)
    assert fresh.apply(0, pools(cpu_replicas=20, isp_replicas=4), 50_000)[0] == {"cpu": 20, "isp": 4}
    fresh = CapacityHold(hold=30)
    assert fresh.apply(0, pools(cpu_replicas=20, isp_replicas=4), 50_000, wait=False)[0] == {
        "cpu": 1,
        "isp": 1,
    }


def test_predictive_shrinks_from_the_limits_at_its_first_measurement():
    p = Predictive(backlog_target=0)
    assert p.decide(0, observation([])).targets == {"cpu": 20, "isp": 4}  # nothing measured yet
    d = p.decide(10, observation(np.full(30, 50_000.0), pools(cpu_replicas=20, isp_replicas=4)))
    assert sum(d.targets.values()) < 24  # no hold on limits that were never wanted


def test_predictive_before_any_measurement_and_over_gaps():
    p = Predictive()
    d = p.decide(0, observation([]))
    assert d.targets == {"cpu": 20, "isp": 4} and "until measured" in d.reasons["cpu"]
    hist = np.full(300, 100_000.0)
    hist[100:200] = np.nan  # a gap in the trace
    d = Predictive(backlog_target=0).decide(0, observation(hist, pools(cpu_replicas=0, isp_replicas=0)))
    assert math.isfinite(d.forecast) and 100_000 <= d.forecast < 200_000
    assert d.targets["isp"] >= 2


def test_zero_demand_scales_to_the_minimum_after_the_hold():
    p = Predictive(hold=30, backlog_target=0)
    ps = pools(cpu=(1, 20), cpu_replicas=8, isp_replicas=4)
    assert p.decide(0, observation(np.zeros(200), ps)).targets == {"cpu": 8, "isp": 4}
    assert p.decide(30, observation(np.zeros(200), ps)).targets == {"cpu": 1, "isp": 0}


def test_every_policy_answers_every_pool():
    for pol in all_policies(period=3600):
        obs = observation(np.full(50, 1e5), extra={"future_peak": lambda a, b: 1e5}, batch_time=0.1)
        d = pol.decide(0, obs)
        assert set(d.targets) == {"cpu", "isp"} and set(d.reasons) == {"cpu", "isp"}
        assert all(0 <= n <= 20 for n in d.targets.values())
        assert pol.interval > 0


def test_the_buffer_is_refilled_or_spent_over_the_horizon():
    hist = np.full(200, 100_000.0)
    obs_low = observation(hist, pools(cpu_replicas=4, isp_replicas=2), backlog=5.0)
    obs_high = observation(hist, pools(cpu_replicas=4, isp_replicas=2), backlog=200.0)
    fc = {"future_peak": lambda a, b: 100_000.0}
    low = Oracle(backlog_target=20).decide(0, observation(hist, obs_low.pools, backlog=5.0, extra=fc))
    high = Oracle(backlog_target=20).decide(0, observation(hist, obs_high.pools, backlog=200.0, extra=fc))
    spend = Oracle(backlog_target=20, credit=0.5).decide(
        0, observation(hist, obs_high.pools, backlog=200.0, extra=fc)
    )
    assert low.inputs["required"] > 100_000 and "to refill the buffer" in low.reasons["cpu"]
    assert high.inputs["required"] == 100_000  # no credit by default: the peak is met by workers
    assert spend.inputs["required"] == 50_000 and "drawn from 200 s of buffered rows" in spend.reasons["cpu"]


def test_policies_from_the_settings_of_spec_autoscale():
    from types import SimpleNamespace

    from recprep.predictor.policies import POLICY_NAMES, make_policy, policy_from

    assert set(POLICY_NAMES) == {
        "predictive",
        "reactive",
        "adaptive",
        "hill-climbing",
        "moving-window",
        "static-peak",
    }
    settings = SimpleNamespace(policy="predictive", interval=30.0, quantile=0.95, deadline=3600, budget=2.0)
    p = policy_from(settings, period=1080, seed=3)
    assert isinstance(p, Predictive)
    assert (p.interval, p.quantile, p.deadline, p.budget, p.period) == (30.0, 0.95, 3600, 2.0, 1080)
    for name, cls in POLICY_NAMES.items():
        assert type(make_policy(name)) is cls
    # the baselines keep the interval of the system they stand for
    assert make_policy("reactive", interval=60).interval == 5.0
    assert make_policy("moving-window", interval=20).interval == 20
    with pytest.raises(ValueError, match="unknown policy 'magic'"):
        make_policy("magic")
    with pytest.raises(ValueError, match="quantile"):
        make_policy("predictive", quantile=1.0)
    with pytest.raises(ValueError, match="budget"):
        make_policy("predictive", budget=0)


def test_a_budget_caps_the_plan_and_the_reason_says_so():
    p = Predictive(budget=1.0, backlog_target=0)
    obs = observation(np.full(10, 300_000.0), pools(isp_replicas=4, cpu_replicas=10))
    d = p.decide(0, obs)
    # 300k rows/s needs isp 4 + cpu 14 (2.20/h); 1.00/h buys isp 4 + cpu 2 at most
    assert d.targets == {"cpu": 2, "isp": 4}
    assert "the budget of 1.00/h buys at most 180k rows/s" in d.reasons["cpu"]


def test_the_deadline_of_the_settings_sizes_a_finite_job_without_trainers():
    p = Predictive(deadline=1080.0)
    obs = observation([float("nan")] * 3, pools(), now=0.0, trainers=False, rows_left=100_000.0 * 1000)
    d = p.decide(0.0, obs)
    # 1e8 rows in 1080 - 80 s of start-up: 100k rows/s; the plan's isp 3 (120k) costs what isp 2 +
    # cpu 2 do and gives more, but the running cpu worker stays (it is not removed while growing):
    # of the sizes that keep it, isp 2 + cpu 2 (0.60/h) is cheaper than isp 3 + cpu 1 (0.70/h)
    assert d.targets == {"cpu": 2, "isp": 2}
    assert "deadline in 1,080 s" in d.reasons["cpu"]


def test_the_adaptive_target_follows_distributed():
    from recprep.predictor.signals import SchedulerView

    ps = pools(cpu_replicas=10, isp_replicas=4)
    # 30 tasks of 4 s over 5 s: 24 workers, at most one per task
    busy = SchedulerView(queued=16, running=14, task_seconds=4.0, workers=14, idle=0)
    d = Reactive().decide(0, observation([1e5], ps, scheduler=busy))
    assert d.targets["cpu"] == 20  # 24, bounded by the pool's max
    few = SchedulerView(queued=2, running=1, task_seconds=10.0, workers=0, idle=0)
    assert Reactive().decide(0, observation([1e5], pools(cpu_replicas=2), scheduler=few)).targets["cpu"] == 3
    # fewer than the workers: only the idle ones close (the target counts every pool's workers)
    calm = SchedulerView(queued=0, running=8, task_seconds=4.0, workers=14, idle=6)
    r = Reactive()
    d = r.decide(0, observation([1e5], ps, scheduler=calm))
    assert d.targets["cpu"] == 8 and "6 idle to close" in d.reasons["cpu"]
    # dask-kubernetes waits out 15 s after a change
    assert (
        r.decide(10, observation([1e5], pools(cpu_replicas=8, isp_replicas=4), scheduler=busy)).targets["cpu"]
        == 8
    )
    assert (
        r.decide(15, observation([1e5], pools(cpu_replicas=8, isp_replicas=4), scheduler=busy)).targets["cpu"]
        == 20
    )
    # Adaptive sizes the whole cluster: the fixed isp workers count toward its target
    a = Adaptive()
    assert a.decide(0, observation([1e5], ps, scheduler=busy)).targets["cpu"] == 20
    mid = SchedulerView(queued=4, running=10, task_seconds=5.0, workers=14, idle=0)
    assert a.decide(1, observation([1e5], ps, scheduler=mid)).targets["cpu"] == 10  # 14 - 4 isp


def test_capacity_hold_leaves_a_shortfall_within_the_slack_to_the_buffer():
    from recprep.predictor.planner import CapacityHold

    # cpu 2 + isp 2 give 100k: 103k is within 4% of them, 105k is not
    assert CapacityHold(hold=30).apply(0, pools(cpu_replicas=2, isp_replicas=2), 103_000, slack=0.04)[0] == {
        "cpu": 2,
        "isp": 2,
    }
    assert CapacityHold(hold=30).apply(0, pools(cpu_replicas=2, isp_replicas=2), 103_000)[0] == {
        "cpu": 3,
        "isp": 2,
    }
    assert CapacityHold(hold=30).apply(0, pools(cpu_replicas=2, isp_replicas=2), 105_000, slack=0.04)[0] == {
        "cpu": 3,
        "isp": 2,
    }


def test_predictive_slack_only_while_the_buffer_holds_its_target():
    hist = np.full(60, 102_000.0 / 1.15)  # short: the recent peak +15%, 102k
    ps = pools(cpu_replicas=2, isp_replicas=2)  # 100k
    full = Predictive(backlog_target=20, calm_memory=0, surge_z=None, refill=60)
    d = full.decide(0, observation(hist, ps, backlog=30.0))
    assert d.inputs["required"] == pytest.approx(102_000) and d.targets == {"cpu": 2, "isp": 2}
    assert Predictive(backlog_target=20, calm_memory=0, surge_z=None, slack=0).decide(
        0, observation(hist, ps, backlog=30.0)
    ).targets == {"cpu": 3, "isp": 2}
    low = Predictive(backlog_target=20, calm_memory=0, surge_z=None, refill=60)
    d = low.decide(0, observation(hist, ps, backlog=5.0))
    assert sum(d.targets.values()) > 4  # refilling: no slack


def _calm_history(rng, bins=400, level=100_000.0):
    return level * (1 + 0.03 * rng.standard_normal(bins))


def test_predictive_sizes_calm_demand_for_its_mean(rng):
    hist = _calm_history(rng)
    p = Predictive(backlog_target=0)
    d = p.decide(4000, observation(hist))
    assert "calm demand: mean of the last 300 s" in d.reasons["cpu"]
    assert d.forecast == pytest.approx(hist[-30:].mean())
    # the same demand observed for less than the memory: the forecast, with its headroom
    short = Predictive(backlog_target=0)
    d = short.decide(2000, observation(hist[:200]))
    assert "calm demand" not in d.reasons["cpu"] and d.forecast > hist[-30:].mean()
    # calm_memory=0: never calm
    d = Predictive(backlog_target=0, calm_memory=0).decide(4000, observation(hist))
    assert "calm demand" not in d.reasons["cpu"]


def test_a_jump_the_buffer_cannot_bridge_ends_the_calm(rng):
    hist = _calm_history(rng)
    p = Predictive(backlog_target=0)
    assert "calm demand" in p.decide(4000, observation(hist)).reasons["cpu"]
    # +20%: a surge, but 20% of the level for the 80 s start-up is less than the 30 s buffered
    small = np.append(hist, 120_000.0)
    jump, unbridged = p.jumps(small, observation(small))
    assert jump > 120_000.0 and not unbridged
    assert "calm demand" in p.decide(4010, observation(small)).reasons["cpu"]
    # +60% would need 48 s of the level over the start-up: more than the buffer holds
    big = np.append(hist, 160_000.0)
    assert p.jumps(big, observation(big))[1]
    d = p.decide(4020, observation(big))
    assert "demand surging" in d.reasons["cpu"]
    # back to the level: no longer calm within the memory of that jump
    back = np.append(big, np.full(30, 100_000.0))
    assert "calm demand" not in p.decide(4320, observation(back)).reasons["cpu"]
    assert "calm demand" in p.decide(4020 + 3600, observation(back)).reasons["cpu"]
    # with less in the buffer the same +20% is a jump it cannot bridge
    assert p.jumps(small, observation(small, backlog=10.0))[1]
