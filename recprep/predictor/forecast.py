"""Demand forecasts over the horizon that matters (start-up lag plus one decision interval).

What is forecast is the *peak* over the next ``h`` bins of the demand smoothed over ``smooth``
bins (:func:`smoothed`): capacity must meet the demand throughout the horizon, but the trainers'
prefetch buffer absorbs what lasts less than a few bins, so noise from bin to bin need not be met.

- :class:`QuantileForecaster` (ours): scikit-learn gradient boosting with quantile loss on lagged
  and seasonal features of the job's own history, refit online; the target is the log ratio of the
  coming peak to the current level, so one model serves any scale. While the history is short it
  falls back to the recent peak with a fixed headroom.
- :func:`seasonal_naive` and :class:`HoltWinters` (additive trend and season): the baselines.
- :func:`forecast_error`: MAPE and quantile coverage of a set of forecasts.

Gaps (NaN bins) are carried forward for features and left out of the training targets.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

LAGS = (1, 3, 6, 12, 30)


def _ffill(y: np.ndarray) -> np.ndarray:
    """NaNs replaced by the last value before them (0 before the first value)."""
    y = np.asarray(y, dtype=float)
    if not np.isnan(y).any():
        return y
    idx = np.where(~np.isnan(y), np.arange(len(y)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = y[idx]
    out[np.isnan(out)] = 0.0
    return out


def smoothed(y, k: int) -> np.ndarray:
    """Mean of the last ``k`` bins at each bin (gaps carried forward; NaN where ``y`` is a gap)."""
    y = np.asarray(y, dtype=float)
    if k <= 1 or len(y) == 0:
        return y.copy()
    out = rolling_mean(_ffill(y), k)
    out[np.isnan(y)] = np.nan
    return out


def future_peak(y: np.ndarray, h: int) -> np.ndarray:
    """``out[t]`` = max of ``y[t+1 .. t+h]`` (NaN when that window leaves the series or is all gaps)."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    out = np.full(n, np.nan)
    if n <= h:
        return out
    from numpy.lib.stride_tricks import sliding_window_view

    windows = sliding_window_view(y[1:], h)  # windows[t] = y[t+1 : t+1+h]
    with np.errstate(all="ignore"):
        valid = ~np.isnan(windows).all(axis=1)
        peaks = np.full(len(windows), np.nan)
        peaks[valid] = np.nanmax(windows[valid], axis=1)
    out[: len(windows)] = peaks
    return out


def _features(filled: np.ndarray, h: int, period: int | None) -> np.ndarray:
    """One feature row per bin of ``filled`` (a gap-free series)."""
    n = len(filled)
    logy = np.log1p(np.maximum(filled, 0.0))
    cur = np.log1p(np.maximum(rolling_mean(filled, 3), 0.0))
    cols = []
    for k in LAGS:
        lagged = np.concatenate([np.full(k, logy[0]), logy[:-k]]) if n > k else np.full(n, logy[0])
        cols.append(cur - lagged)
    cols.append(np.log1p(np.maximum(rolling_mean(filled, 30), 0.0)) - cur)
    cols.append(np.log1p(np.maximum(_rolling_max(filled, 12), 0.0)) - cur)
    if period:
        seasonal_now = np.full(n, np.nan)
        seasonal_peak = np.full(n, np.nan)
        peaks = future_peak(filled, h)
        if n > period:
            seasonal_now[period:] = logy[:-period]
            seasonal_peak[period:] = np.log1p(np.maximum(peaks[:-period], 0.0))
        known = ~np.isnan(seasonal_peak)
        cols.append(np.where(known, seasonal_peak - seasonal_now, 0.0))
        cols.append(np.where(known, seasonal_peak - cur, 0.0))
        cols.append(known.astype(float))
    return np.column_stack(cols)


def rolling_mean(y: np.ndarray, k: int) -> np.ndarray:
    """The mean of the last ``k`` values at each point (of fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(y)])
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - k)
    return (c[idx] - c[lo]) / (idx - lo)


def _rolling_max(y: np.ndarray, k: int) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.concatenate([np.full(k - 1, y[0] if len(y) else 0.0), y])
    return sliding_window_view(padded, k).max(axis=1)


class QuantileForecaster:
    """The ``quantile`` of the peak demand over the next ``horizon`` bins, learned online."""

    def __init__(
        self,
        horizon: int,
        quantile: float = 0.9,
        period: int | None = None,
        refit_every: int = 180,
        min_history: int = 90,
        window: int = 1000,
        fallback_headroom: float = 0.15,
        smooth: int = 3,
        seed: int = 0,
    ):
        if not 0.5 <= quantile < 1:
            raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
        if horizon < 1:
            raise ValueError(f"horizon must be at least one bin, got {horizon}")
        self.horizon = int(horizon)
        self.quantile = quantile
        self.period = period
        self.refit_every = refit_every
        self.min_history = min_history
        self.window = window
        self.fallback_headroom = fallback_headroom
        self.smooth = smooth
        self.seed = seed
        self.model: GradientBoostingRegressor | None = None
        self._fitted_at = -(10**9)
        self.fits = 0

    def _maybe_refit(self, y: np.ndarray) -> None:
        n = len(y)
        if n - self._fitted_at < self.refit_every and self.model is not None:
            return
        target_raw = future_peak(smoothed(y, self.smooth), self.horizon)
        filled = _ffill(y)
        x = _features(filled, self.horizon, self.period)
        cur = np.log1p(np.maximum(rolling_mean(filled, 3), 0.0))
        target = np.log1p(np.maximum(target_raw, 0.0)) - cur
        ok = ~np.isnan(target) & ~np.isnan(y)
        ok[: min(n, 3)] = False
        idx = np.flatnonzero(ok)[-self.window :]
        if len(idx) < self.min_history:
            return
        model = GradientBoostingRegressor(
            loss="quantile",
            alpha=self.quantile,
            n_estimators=40,
            max_depth=3,
            learning_rate=0.1,
            subsample=0.8,
            random_state=self.seed,
        )
        model.fit(x[idx], target[idx])
        self.model = model
        self._fitted_at = n
        self.fits += 1

    def predict(self, history) -> tuple[float, str]:
        """(forecast peak, how it was made) from the history so far (NaN bins: gaps); NaN when
        nothing has been measured yet."""
        y = np.asarray(history, dtype=float)
        if len(y) == 0 or np.isnan(y).all():
            return math.nan, "no demand measured yet"
        self._maybe_refit(y)
        filled = _ffill(y)
        if self.model is None:
            recent = smoothed(filled, self.smooth)[-max(self.horizon, 6) :]
            return float(recent.max() * (1 + self.fallback_headroom)), (
                f"recent peak +{self.fallback_headroom:.0%} (history too short for the model)"
            )
        tail = filled[-max(60, (self.period or 0) + self.horizon + 2) :]
        x = _features(tail, self.horizon, self.period)[-1:]
        cur = math.log1p(max(float(rolling_mean(tail, 3)[-1]), 0.0))
        value = math.expm1(cur + float(self.model.predict(x)[0]))
        return max(0.0, value), f"gradient boosting p{round(self.quantile * 100)}"


def surge(history, z: float = 4.0, base_bins: int = 12, noise_bins: int = 30) -> float:
    """The demand a jump in the newest bin points to, or NaN when there is none.

    A jump is the newest bin above the median of the ``base_bins`` before it by more than ``z``
    times the bins' noise (a robust spread of their differences over the last ``noise_bins``);
    the ramp it starts is taken to go on as much again over the horizon (the newest bin plus its
    rise). A model refit every few hundred bins has seen few such onsets and follows them a bin
    or two late, which start-up lags of a minute or more make costly; noisy demand (bins that
    swing by half their level) rarely passes the test."""
    y = np.asarray(history, dtype=float)
    if len(y) < base_bins + 2 or math.isnan(y[-1]):
        return math.nan
    before = y[-noise_bins - 1 : -1]
    before = before[~np.isnan(before)]
    base = y[-base_bins - 1 : -1]
    base = base[~np.isnan(base)]
    if len(base) < base_bins // 2 or len(before) < 4:
        return math.nan
    level = float(np.median(base))
    noise = 1.4826 * float(np.median(np.abs(np.diff(before)))) / math.sqrt(2)
    rise = float(y[-1]) - level
    if rise <= 0 or rise <= z * max(noise, 1e-3 * level, 1e-9):
        return math.nan
    return float(y[-1]) + rise


def seasonal_naive(history, horizon: int, period: int | None, smooth: int = 3) -> float:
    """The (smoothed) peak over the same horizon one season ago; the last value while there is no
    season."""
    y = smoothed(_ffill(np.asarray(history, dtype=float)), smooth)
    if len(y) == 0:
        return 0.0
    if period and len(y) > period:
        start = len(y) - period  # the bin one season after the current one's predecessor
        return float(y[start : start + horizon].max())
    return float(y[-1])


class HoltWinters:
    """Additive Holt-Winters exponential smoothing, updated one bin at a time (gaps: skipped)."""

    def __init__(self, period: int | None, alpha: float = 0.3, beta: float = 0.02, gamma: float = 0.2):
        self.period = period if period and period > 1 else None
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.level: float | None = None
        self.trend = 0.0
        self.season = np.zeros(self.period or 1)
        self.t = 0

    def update(self, value: float) -> None:
        i = self.t % (self.period or 1)
        self.t += 1
        if math.isnan(value):
            return
        if self.level is None:
            self.level = value
            return
        s = self.season[i] if self.period else 0.0
        prev = self.level
        self.level = self.alpha * (value - s) + (1 - self.alpha) * (self.level + self.trend)
        self.trend = self.beta * (self.level - prev) + (1 - self.beta) * self.trend
        if self.period:
            self.season[i] = self.gamma * (value - self.level) + (1 - self.gamma) * s

    def peak(self, horizon: int) -> float:
        if self.level is None:
            return 0.0
        steps = np.arange(1, horizon + 1)
        if self.period:
            s = self.season[(self.t + steps - 1) % self.period]
        else:
            s = 0.0
        return float(max(0.0, np.max(self.level + steps * self.trend + s)))


def forecast_error(forecasts, actual) -> dict:
    """MAPE (%) and coverage (share of actual peaks at or under the forecast) where both are known
    and the actual is positive."""
    f = np.asarray(forecasts, dtype=float)
    a = np.asarray(actual, dtype=float)
    ok = ~np.isnan(f) & ~np.isnan(a) & (a > 0)
    if not ok.any():
        return {"mape": math.nan, "coverage": math.nan, "n": 0}
    f, a = f[ok], a[ok]
    return {
        "mape": float(np.mean(np.abs(f - a) / a) * 100),
        "coverage": float(np.mean(a <= f)),
        "n": int(ok.sum()),
    }
