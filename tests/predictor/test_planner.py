import math

import pytest

from recprep.predictor.planner import (
    Hysteresis,
    ThroughputModel,
    capacity,
    cost_per_hour,
    expected_availability,
    fmt_rate,
    plan,
)

from .conftest import pools


def test_cheapest_mix_meets_the_demand():
    # 90k rows/s: isp 3 (120k, 0.60/h) or isp 2 + cpu 1 (90k, 0.50/h): the second is cheaper
    p = plan(pools(), 90_000, horizon=95)
    assert p.sizes == {"cpu": 1, "isp": 2} and p.reachable
    assert p.capacity >= 90_000 and p.cost_per_hour == pytest.approx(0.5)
    # no cheaper combination meets it (checked by brute force)
    ps = pools()
    for c in range(21):
        for i in range(5):
            if capacity(ps, {"cpu": c, "isp": i}) >= 90_000:
                assert cost_per_hour(ps, {"cpu": c, "isp": i}) >= p.cost_per_hour - 1e-12
    assert "forecast demand 90k rows/s in 95 s" in p.reasons["cpu"]


def test_min_equals_max_pins_the_pools():
    ps = pools(cpu=(5, 5), isp=(2, 2))
    for demand in (0.0, 50_000.0, 10_000_000.0):
        assert plan(ps, demand, horizon=60).sizes == {"cpu": 5, "isp": 2}
    assert not plan(ps, 10_000_000.0, horizon=60).reachable


def test_no_isp_nodes():
    ps = pools(hosts=0)
    p = plan(ps, 95_000, horizon=60)
    assert p.sizes == {"cpu": 10, "isp": 0} and p.reachable
    p = plan(ps, 250_000, horizon=60)  # more than 20 cpu workers give
    assert p.sizes == {"cpu": 20, "isp": 0} and not p.reachable
    assert "more than the pools' limits give (200k rows/s)" in p.reasons["cpu"]
    assert "limited to 0 storage node(s)" in p.reasons["isp"]


def test_isp_capacity_is_tied_to_storage_nodes():
    p = plan(pools(hosts=2), 150_000, horizon=60)
    assert p.sizes["isp"] == 2 and p.sizes["cpu"] == 7


def test_preemption_adds_headroom_on_the_preemptible_pool():
    calm = plan(pools(hosts=0), 100_000, horizon=60)
    # one preemption per worker-hour, 360 s to replace: 10% of the pool is away on average
    stormy_pools = pools(hosts=0, preempt=1 / 3600, lag=360.0)
    assert expected_availability(stormy_pools["cpu"]) == pytest.approx(0.9)
    stormy = plan(stormy_pools, 100_000, horizon=60)
    assert calm.sizes["cpu"] == 10 and stormy.sizes["cpu"] == 12
    assert "10% of cpu expected lost to preemption" in stormy.reasons["cpu"]


def test_zero_demand_keeps_the_minimum():
    p = plan(pools(cpu=(2, 20), isp=(0, 4)), 0.0, horizon=60)
    assert p.sizes == {"cpu": 2, "isp": 0} and p.reachable
    assert plan(pools(), math.nan, horizon=60).sizes == {"cpu": 0, "isp": 0}


def test_deadline_met_at_least_cost_or_said_unreachable():
    ps = pools()  # lag 80 s
    # 100 M rows in 1080 s: 1000 s after start-up -> 100k rows/s
    p = plan(ps, 0.0, horizon=95, now=0.0, rows_left=100e6, deadline=1080.0, trainers=False)
    assert p.reachable and p.required == pytest.approx(100_000)
    assert capacity(ps, p.sizes) >= 100_000 and p.sizes == {"cpu": 0, "isp": 3}
    assert "deadline in 1,080 s" in p.reasons["isp"]
    # 500 M rows: 360k rows/s at the limits need 1,469 s
    p = plan(ps, 0.0, horizon=95, now=0.0, rows_left=500e6, deadline=1080.0, trainers=False)
    assert not p.reachable and p.sizes == {"cpu": 20, "isp": 4}
    assert "deadline unreachable" in p.reasons["cpu"] and "1,469 s" in p.reasons["cpu"]
    # a deadline already past the start-up lag is unreachable at once
    assert not plan(ps, 0.0, horizon=95, now=1050.0, rows_left=1.0, deadline=1080.0, trainers=False).reachable
    # trainers faster than the deadline's rate: the trainers decide
    p = plan(ps, 200_000, horizon=95, now=0.0, rows_left=100e6, deadline=1080.0)
    assert capacity(ps, p.sizes) >= 200_000
    # nothing left: the minimum
    assert plan(ps, 200_000, horizon=95, rows_left=0, deadline=10.0).sizes == {"cpu": 0, "isp": 0}


def test_without_trainers_or_deadline_every_pool_at_its_limit():
    p = plan(pools(hosts=3), 0.0, horizon=60, trainers=False, rows_left=1e9)
    assert p.sizes == {"cpu": 20, "isp": 3}
    assert "no trainers and no deadline" in p.reasons["cpu"]
    # an open-ended source nobody consumes: nothing to produce for
    p = plan(pools(cpu=(1, 20)), 0.0, horizon=60, trainers=False)
    assert p.sizes == {"cpu": 1, "isp": 0} and "nothing to produce for" in p.reasons["cpu"]


def test_hysteresis_grows_at_once_and_shrinks_late():
    h = Hysteresis(hold=60)
    assert h.apply(0, "cpu", 4, 7)[0] == 7
    assert h.apply(15, "cpu", 7, 5)[0] == 7  # wanted 7 within the last 60 s
    assert h.apply(30, "cpu", 7, 5)[0] == 7
    target, note = h.apply(75, "cpu", 7, 4)  # wanted at most 5 since 15 s: 60 s
    assert target == 5 and "wanted at most 5" in note
    # the look at 30 s (5) stood until 75 s: within the last 60 s, from 40 s on
    target, note = h.apply(100, "cpu", 5, 3)
    assert target == 5 and "wanted 5 within the last 60 s" in note
    target, note = h.apply(140, "cpu", 5, 3)  # [80, 140]: 4 (the look at 75 s) until 100 s, then 3
    assert target == 4 and "wanted at most 4" in note
    assert h.apply(160, "cpu", 4, 3)[0] == 3  # wanted 3 throughout [100, 160]


def test_hysteresis_shrinks_after_the_hold_when_looks_come_at_irregular_times():
    h = Hysteresis(hold=8)
    assert h.apply(0.3, "cpu", 1, 2)[0] == 2
    t, shrunk = 0.3, None
    while t < 30 and shrunk is None:
        t += 1.37  # looks as an operator under load makes them: never on a grid
        target, note = h.apply(t, "cpu", 2, 1)
        if target == 1:
            shrunk = t
        else:
            assert "hysteresis" in note
    assert shrunk is not None and 8 <= shrunk - 1.67 < 8 + 1.37  # 8 s after it first wanted 1


def test_throughput_model_learns_seconds_per_shard():
    m = ThroughputModel(65536, {"cpu": 8.0})
    assert m.rows_per_worker("cpu") == pytest.approx(8192)
    for _ in range(200):
        m.record("cpu", 6.5536)
    assert m.rows_per_worker("cpu") == pytest.approx(10_000, rel=1e-3)
    m.record("isp", 1.6384)  # a pool without a prior learns from its first shard
    assert m.rows_per_worker("isp") == pytest.approx(40_000)
    with pytest.raises(ValueError):
        m.record("cpu", 0.0)


def test_fmt_rate():
    assert (
        fmt_rate(310_000) == "310k rows/s"
        and fmt_rate(2.5e6) == "2.50M rows/s"
        and fmt_rate(12) == "12 rows/s"
    )
