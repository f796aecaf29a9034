import math

import numpy as np
import pytest

from recprep.predictor.signals import (
    BinnedSeries,
    LagTracker,
    PreemptionTracker,
    backlog_seconds,
    demand_rate,
    rate_series,
    work_left_seconds,
)


def test_rate_series_bins_rows_per_second():
    # acks at 0.5 s (100 rows), 1.2 s (50), 1.9 s (50), 3.0 s (400); 1 s bins over [0, 4)
    r = rate_series([0.5, 1.2, 1.9, 3.0, 9.0], [100, 50, 50, 400, 1], 0.0, 4.0, 1.0)
    assert r.tolist() == [100.0, 100.0, 0.0, 400.0]
    assert rate_series([1.0], [10], 0.0, 4.0, 2.0).tolist() == [5.0, 0.0]
    with pytest.raises(ValueError):
        rate_series([], [], 0, 1, 0)


def test_demand_is_consumption_over_the_time_spent_computing():
    # 30,000 rows in a 10 s bin during which the trainer waited 7 s: it wants 10k rows/s, not 3k
    assert demand_rate(30_000, 3.0) == 10_000
    assert math.isnan(demand_rate(0, 0.0))


def test_backlog_and_work_left():
    assert backlog_seconds(1_000_000, 400_000, 20_000) == 30.0
    assert backlog_seconds(10, 10, 0) == 0.0
    assert backlog_seconds(20, 10, 0) == math.inf
    assert work_left_seconds(100, 40, 6.5) == pytest.approx(390.0)
    assert work_left_seconds(100, 100, math.nan) == 0.0
    assert work_left_seconds(100, 10, math.nan) == math.inf


def test_binned_series_keeps_the_newest_values():
    s = BinnedSeries(10.0, maxlen=5)
    for v in range(3000):
        s.append(v)
    assert len(s) == 5 and s.array().tolist() == [2995, 2996, 2997, 2998, 2999]
    assert s.recent(20).tolist() == [2998, 2999]
    assert s.end == 30_000.0


def test_lag_tracker_uses_the_prior_until_measured():
    t = LagTracker(prior=90.0)
    assert t.quantile() == 90.0
    for lag in [30, 40, 50, 60, 70]:
        t.record(100.0, 100.0 + lag)
    assert t.quantile(0.5) == pytest.approx(50.0)
    assert t.quantile(1.0) == pytest.approx(70.0)


def test_preemption_rate_moves_from_the_prior_to_the_measurement():
    p = PreemptionTracker(prior_per_hour=0.5)
    assert p.rate() == pytest.approx(0.5 / 3600)
    p.expose(workers=10, seconds=36_000)  # 100 worker-hours, 20 notices: 0.2 per hour
    p.record(20)
    assert p.rate() * 3600 == pytest.approx(20.5 / 101, rel=1e-9)
    assert np.isfinite(p.rate())
