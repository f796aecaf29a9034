import math

import numpy as np
import pytest

from recprep.predictor.forecast import (
    HoltWinters,
    QuantileForecaster,
    forecast_error,
    future_peak,
    seasonal_naive,
    smoothed,
)


def test_future_peak_and_smoothing():
    y = np.array([1.0, 5.0, 2.0, 3.0, np.nan, np.nan, 4.0])
    fp = future_peak(y, 2)
    assert fp[[0, 1, 2, 4]].tolist() == [5.0, 3.0, 3.0, 4.0]
    assert np.isnan(fp[3])  # the next two bins are gaps: unknown
    assert np.isnan(fp[5]) and np.isnan(fp[6])  # the window leaves the series
    s = smoothed(np.array([3.0, 6.0, 9.0, np.nan, 12.0]), 3)
    assert s[:3].tolist() == [3.0, 4.5, 6.0] and np.isnan(s[3]) and s[4] == pytest.approx(10.0)


def _seasonal(n, period, rng, noise=0.05):
    t = np.arange(n)
    return 1000 * (1.0 + 0.5 * np.sin(2 * np.pi * t / period)) * (1 + noise * rng.standard_normal(n))


def test_quantile_forecaster_covers_its_quantile_and_falls_back_while_history_is_short(rng):
    period, h = 144, 8
    y = _seasonal(3 * period + 200, period, rng)
    f = QuantileForecaster(h, quantile=0.9, period=period, refit_every=50, min_history=90)
    value, how = f.predict(y[:20])
    assert "too short" in how and value == pytest.approx(smoothed(y[:20], 3)[-8:].max() * 1.15)
    truth = future_peak(smoothed(y, 3), h)
    fc, actual = [], []
    for t in range(2 * period, len(y) - h, 3):
        fc.append(f.predict(y[: t + 1])[0])
        actual.append(truth[t])
    assert f.fits >= 2
    err = forecast_error(fc, actual)
    assert 0.75 <= err["coverage"] <= 1.0
    assert err["mape"] < 20
    # a p50 model covers less than the p90 one
    f50 = QuantileForecaster(h, quantile=0.5, period=period, refit_every=50)
    fc50 = [f50.predict(y[: t + 1])[0] for t in range(2 * period, len(y) - h, 3)]
    assert forecast_error(fc50, actual)["coverage"] < err["coverage"]


def test_forecast_with_gaps_in_history(rng):
    y = _seasonal(400, 144, rng)
    y[100:160] = np.nan
    y[-5:] = np.nan  # the newest bins are a gap too
    f = QuantileForecaster(6, period=144, min_history=50)
    value, _ = f.predict(y)
    assert math.isfinite(value) and value > 0
    assert math.isnan(f.predict(np.full(10, np.nan))[0])


def test_baselines():
    period = 24
    y = np.tile(np.arange(period, dtype=float), 5)
    # seasonal naive: the smoothed peak of the next 3 bins one season ago
    assert seasonal_naive(y, 3, period, smooth=1) == pytest.approx(2.0)
    assert seasonal_naive(y[:10], 3, None) == pytest.approx(8.0)  # no season: the last (smoothed) value
    hw = HoltWinters(period)
    for v in np.tile(10 + np.sin(np.arange(period) / period * 2 * np.pi), 20):
        hw.update(v)
    hw.update(math.nan)  # a gap is skipped
    assert abs(hw.peak(1) - (10 + np.sin(1 / period * 2 * np.pi))) < 0.3


def test_forecast_error():
    e = forecast_error([110, 90, np.nan, 50], [100, 100, 100, 0])
    assert e == {"mape": pytest.approx(10.0), "coverage": 0.5, "n": 2}
    assert math.isnan(forecast_error([1.0], [np.nan])["mape"])
