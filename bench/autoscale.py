"""Autoscaling policies side by side on a simulated cluster: stall, cost, actions, shards lost.

    python bench/autoscale.py                       # every policy on every trace, a table
    python bench/autoscale.py --json                # one JSON object: trace -> policy -> measures
                                                    # (and _floor: trace -> its cost floor and bound)
    python bench/autoscale.py --trace my.csv        # columns: seconds, demand (any unit)
    python bench/autoscale.py --traces steady nasa --policies predictive reactive oracle
    python bench/autoscale.py --lookahead 120        # the driver keeps 120 s ahead, for every policy
    python bench/autoscale.py --onset-bound          # bursty: a reference seeing each burst from its start

The simulator is ``recprep.predictor.sim`` (see its docstring); the policies are
``recprep.predictor.policies``. Traces: synthetic steady, diurnal and bursty, and the public traces
of ``../shared/data/traces/`` beside the repository (read in place, skipped when absent). Every
trace is rescaled so that its peak needs every pool at its max. Benchmarks are not tests: nothing
here fails on a result; ``tests/predictor`` checks the invariants.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as the issue measures

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recprep.predictor.forecast import (  # noqa: E402
    HoltWinters,
    QuantileForecaster,
    forecast_error,
    future_peak,
    rolling_mean,
    seasonal_naive,
    smoothed,
)
from recprep.predictor.policies import (  # noqa: E402
    Adaptive,
    HillClimb,
    MovingWindow,
    Oracle,
    Predictive,
    Reactive,
    StaticPeak,
)
from recprep.predictor.sim import PoolConfig, SimConfig, simulate  # noqa: E402

TRACES_DIR = REPO.parent / "shared" / "data" / "traces"
NASA = "nasa_http_requests_per_minute_1995.csv.gz"
AZURE = "azure_vm_v2_2019_total_cpu_mem_5min.csv.gz"
SKYPILOT = "skypilot_spot_availability_preemption_traces.csv.gz"

#: Simulated seconds per trace, and how a real trace's day is compressed into them.
DURATION = 6 * 3600
DAY = 3 * 3600  # one day of a real trace lasts 3 simulated hours (two days per run)
SYNTHETIC_PERIOD = 4 * 3600
#: The trace's peak is this share of every pool at its max: it needs them all.
PEAK_SHARE = 0.98
POLICIES = {
    "predictive": lambda period, seed: Predictive(period=period, seed=seed),
    "reactive": lambda period, seed: Reactive(),
    "adaptive": lambda period, seed: Adaptive(),
    "hill-climbing": lambda period, seed: HillClimb(),
    "moving-window": lambda period, seed: MovingWindow(),
    "static-peak": lambda period, seed: StaticPeak(),
    "oracle": lambda period, seed: Oracle(),
}


def preemption_rate(path: Path) -> tuple[float, str]:
    """Preemptions per instance-hour of the CPU instances of the SkyPilot preemption traces
    (r5.16xlarge on AWS, c3-highcpu-88 on GCP): drops of ``value`` over the instance-hours held."""
    if not path.exists():
        return 0.4, f"{path.name} absent: assumed 0.4 preemptions per instance-hour"
    series: dict[tuple, list[tuple[int, float, float]]] = {}
    with gzip.open(path, "rt") as f:
        for row in csv.DictReader(f):
            if row["kind"] != "preemption" or row["resource"] not in ("intel_64", "c3-88"):
                continue
            key = (row["collection"], row["zone"], row["resource"])
            series.setdefault(key, []).append(
                (int(row["tick"]), float(row["value"]), float(row["gap_seconds"]))
            )
    drops = held = 0.0
    for points in series.values():
        points.sort()
        for (_, v0, gap), (_, v1, _) in zip(points, points[1:]):
            drops += max(0.0, v0 - v1)
            held += v0 * gap / 3600.0
    rate = drops / held if held else 0.4
    return rate, (
        f"{SKYPILOT}: {drops:.0f} preemptions over {held:.0f} CPU instance-hours "
        f"(AWS r5.16xlarge, GCP c3-highcpu-88) = {rate:.2f} per worker-hour"
    )


def cluster(preempt_per_hour: float, seed: int) -> SimConfig:
    """Two pools as the spec has them: preemptible cpu (max 20) and isp on 4 storage nodes."""
    return SimConfig(
        pools=(
            # 65,536-row shards: 6.6 s on a cpu worker (10k rows/s), spot price
            PoolConfig(
                "cpu",
                1,
                20,
                6.5536,
                0.10,
                lag_median=60.0,
                preempt_per_hour=preempt_per_hour,
                prior_seconds_per_shard=8.0,
            ),
            # an ISP unit: 4x a cpu worker's rows/s (PreSto), twice its price, slower to place
            PoolConfig("isp", 0, 4, 1.6384, 0.20, lag_median=90.0, hosts=4, prior_seconds_per_shard=2.0),
        ),
        seed=seed,
    )


def _rescale(demand: np.ndarray, peak: float) -> np.ndarray:
    top = np.nanmax(demand)
    return demand * (peak / top) if top > 0 else demand


def _hold(values: np.ndarray, seconds_per_point: float, duration: int) -> np.ndarray:
    """Per-second demand holding each point for its span, over ``duration`` seconds."""
    idx = np.minimum((np.arange(duration) / seconds_per_point).astype(int), len(values) - 1)
    return values[idx]


def synthetic(name: str, rng: np.random.Generator, parts: dict | None = None) -> np.ndarray:
    """A synthetic trace; ``parts``, when given, gets the bursty trace's demand without its bursts
    (``calm``) and each burst's (start, end) seconds (``bursts``)."""
    t = np.arange(DURATION, dtype=float)
    noise = np.repeat(rng.normal(0, 0.03, DURATION // 10 + 1), 10)[:DURATION]
    if name == "steady":
        d = 0.6 + noise
    elif name == "diurnal":
        d = 0.6 - 0.35 * np.cos(2 * np.pi * t / SYNTHETIC_PERIOD) + noise
    elif name == "bursty":
        d = 0.35 + noise
        if parts is not None:
            parts["calm"], parts["bursts"] = np.maximum(d, 0.0), []
        start = rng.exponential(1800.0)
        while start < DURATION:
            length = rng.uniform(300, 900)
            ramp = rng.uniform(20, 90)
            height = rng.uniform(0.3, 0.6)
            seg = (t >= start) & (t < start + length)
            d[seg] += height * np.minimum(1.0, (t[seg] - start) / ramp)
            if parts is not None:
                parts["bursts"].append((start, start + length))
            start += length + rng.exponential(1800.0)
    else:
        raise ValueError(name)
    return np.maximum(d, 0.0)


def _read_csv_gz(path: Path, time_col: str, value_col: str) -> tuple[list[str], np.ndarray]:
    times, values = [], []
    with gzip.open(path, "rt") as f:
        for row in csv.DictReader(f):
            times.append(row[time_col])
            values.append(float(row[value_col]))
    return times, np.array(values)


def nasa(path: Path, start: str, days: int = 2) -> np.ndarray:
    """Requests per minute from ``start`` for ``days``; zero runs of 10+ minutes are gaps (NaN)."""
    times, counts = _read_csv_gz(path, "time", "number_of_requests")
    i = times.index(start)
    window = counts[i : i + days * 1440].astype(float)
    zero = window == 0
    run_start = None
    for j, z in enumerate(np.append(zero, False)):
        if z and run_start is None:
            run_start = j
        elif not z and run_start is not None:
            if j - run_start >= 10:
                window[run_start:j] = np.nan
            run_start = None
    return _hold(window, DAY / 1440, DURATION)


def azure(path: Path, days: int = 2) -> np.ndarray:
    _, cpu = _read_csv_gz(path, "timestamp", "cpu_usage")
    return _hold(cpu[: days * 288], DAY / 288, DURATION)


def user_trace(path: Path) -> tuple[np.ndarray, str]:
    """A CSV of (seconds, demand) held per second over its own span."""
    secs, vals = [], []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            try:
                s, v = float(row[0]), float(row[1]) if row[1].strip() else math.nan
            except (ValueError, IndexError):
                continue  # the header, or a blank line
            secs.append(s)
            vals.append(v)
    if len(secs) < 2:
        raise SystemExit(f"{path}: needs at least two rows of seconds,demand")
    secs_a = np.array(secs) - secs[0]
    span = int(secs_a[-1]) + 1
    idx = np.searchsorted(secs_a, np.arange(span), side="right") - 1
    return np.array(vals)[idx], f"{path.name}: {len(secs)} points over {span} s"


def load_traces(names: list[str], user: Path | None, seed: int) -> tuple[dict, dict, list[str]]:
    """name -> per-second demand (unscaled), name -> seasonal period (s), notes."""
    traces, periods, notes = {}, {}, []
    for name in names:
        if name in ("steady", "diurnal", "bursty"):
            # each its own stream: a trace is the same whichever others run
            traces[name] = synthetic(
                name, np.random.default_rng([seed, ("steady", "diurnal", "bursty").index(name)])
            )
            periods[name] = SYNTHETIC_PERIOD if name == "diurnal" else None
        elif name in ("nasa", "nasa-gaps"):
            path = TRACES_DIR / NASA
            if not path.exists():
                notes.append(f"{name}: skipped, {path} absent")
                continue
            start = "1995-07-12 00:00:00" if name == "nasa" else "1995-08-01 00:00:00"
            traces[name] = nasa(path, start)
            periods[name] = DAY
            notes.append(f"{name}: NASA-HTTP requests/minute from {start}, 2 days, 1 day = {DAY} s simulated")
        elif name == "azure":
            path = TRACES_DIR / AZURE
            if not path.exists():
                notes.append(f"{name}: skipped, {path} absent")
                continue
            traces[name] = azure(path)
            periods[name] = DAY
            notes.append(f"azure: Azure VM v2 total CPU, first 2 days, 1 day = {DAY} s simulated")
    if user is not None:
        traces[user.stem], note = user_trace(user)
        periods[user.stem] = None
        notes.append(note)
    return traces, periods, notes


def _whole_mixes(config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every whole-worker mix of the pools within their limits (min to max; a pool with hosts, ISP,
    at most one worker per host), as (capacity rows/s ascending, the least cost per hour of a mix
    with at least that capacity)."""
    ranges = [range(p.min, p.limit + 1) for p in config.pools]
    caps, costs = [], []
    for combo in np.array(np.meshgrid(*ranges, indexing="ij")).reshape(len(ranges), -1).T:
        caps.append(sum(n * config.rate(p) for n, p in zip(combo, config.pools)))
        costs.append(sum(n * p.price_per_hour for n, p in zip(combo, config.pools)))
    order = np.argsort(caps, kind="stable")
    caps_a, costs_a = np.array(caps, dtype=float)[order], np.array(costs, dtype=float)[order]
    return caps_a, np.minimum.accumulate(costs_a[::-1])[::-1]


def cost_floor(demand: np.ndarray, config: SimConfig, smoothing: float | None = None) -> float:
    """The least cost of meeting ``demand`` (rows/s per step of ``config.dt``; NaN: no trainer)
    without a stall, ignoring start-up lag and preemption: at each step the cheapest whole-worker
    mix of the pools (within their min and max, ISP capped by its hosts) whose capacity meets that
    step's demand, or its trailing moving average over ``smoothing`` seconds (None:
    ``config.peak_smoothing``, the 30 s the trainers' buffer holds; 0: the raw demand), summed
    over the trace. Above the pools' limits, the pools at their limits."""
    caps, least = _whole_mixes(config)
    want = np.nan_to_num(np.asarray(demand, dtype=float), nan=0.0)
    seconds = config.peak_smoothing if smoothing is None else smoothing
    k = max(1, round(seconds / config.dt))
    need = rolling_mean(want, k) if k > 1 else want
    idx = np.minimum(np.searchsorted(caps, need * (1 - 1e-12), side="left"), len(caps) - 1)
    return float(least[idx].sum() * config.dt / 3600.0)


def _fractional_cost(config: SimConfig, rate: np.ndarray) -> np.ndarray:
    """Cost per hour of the cheapest *fractional* mix meeting ``rate``: every pool at its min,
    then the cheapest rows first (convex in the rate, and below every whole-worker mix)."""
    pools = sorted(config.pools, key=lambda p: p.price_per_hour / config.rate(p))
    need = np.maximum(0.0, rate - sum(p.min * config.rate(p) for p in pools))
    cost = np.full(np.shape(rate), sum(p.min * p.price_per_hour for p in pools), dtype=float)
    for p in pools:
        take = np.minimum(need, (p.limit - p.min) * config.rate(p))
        cost += take / config.rate(p) * p.price_per_hour
        need = need - take
    return cost


def cost_bound(demand: np.ndarray, config: SimConfig, windows=(60, 300, 900, 1800, 3600)) -> float:
    """A lower bound on the cost of any policy that never stalls, in the simulator's model with
    nominal rows/s per worker and no start-up lag or preemption: capacity may follow demand at
    once, and the buffer may let a policy alternate whole-worker mixes to pay for a fractional one.

    Over any window of ``w`` seconds the rows produced, plus the rows buffered or in flight at its
    start (at most the driver's cap: 30 s of the demand it measured, at least its minimum shards;
    bounded by 30 s of the most demand over the 60 s before), must cover the demand in it; the
    cost of a window is at least ``w`` times the cheapest fractional mix meeting that average
    (Jensen: the fractional cost is convex). Every tiling of the trace by windows of one size is a
    bound; this is the best of ``windows``."""
    want = np.nan_to_num(np.asarray(demand, dtype=float), nan=0.0)
    dt = config.dt
    n = len(want)
    floor_rows = config.min_prefetch_shards * config.shard_rows
    look = max(1, round(60.0 / dt))
    best = 0.0
    for w in windows:
        k = max(1, round(w / dt))
        total = 0.0
        for a in range(0, n, k):
            b = min(n, a + k)
            held = max(floor_rows, config.prefetch_seconds * float(want[max(0, a - look) : a + 1].max()))
            rate = max(0.0, (float(want[a:b].sum()) * dt - held) / ((b - a) * dt))
            total += (b - a) * dt * float(_fractional_cost(config, np.array(rate)))
        best = max(best, total / 3600.0)
    return best


def floors(demand: np.ndarray, config: SimConfig) -> dict:
    """The trace's cost floor (:func:`cost_floor` of the 30 s average, and of the raw demand) and
    the lower bound any policy that never stalls pays (:func:`cost_bound`)."""
    return {
        "floor": round(cost_floor(demand, config), 4),
        "floor_raw": round(cost_floor(demand, config, smoothing=0), 4),
        "bound": round(cost_bound(demand, config), 4),
    }


def forecast_baselines(demand: np.ndarray, period: float | None, horizon_s: float, seed: int) -> dict:
    """MAPE and coverage of the peak over the horizon: ours (p90) vs seasonal-naive vs Holt-Winters,
    on the trace's demand in 10 s bins, a forecast every 30 s from the first hour on."""
    bins = np.array(
        [np.nan if np.isnan(c).all() else np.nanmean(c) for c in np.array_split(demand, len(demand) // 10)]
    )
    h = max(1, math.ceil(horizon_s / 10))
    season = round(period / 10) if period else None
    actual = future_peak(smoothed(bins, 3), h)
    ours = QuantileForecaster(h, quantile=0.9, period=season, seed=seed)
    hw = HoltWinters(season)  # smooth by itself
    f = {"gbr-p90": [], "seasonal-naive": [], "holt-winters": []}
    truth = []
    for t in range(len(bins)):
        hw.update(bins[t])
        if t < 360 or t % 3:
            continue
        hist = bins[: t + 1]
        f["gbr-p90"].append(ours.predict(hist)[0])
        f["seasonal-naive"].append(seasonal_naive(hist, h, season))
        f["holt-winters"].append(hw.peak(h))
        truth.append(actual[t])
    return {k: forecast_error(v, truth) for k, v in f.items()}


class OnsetOracle(Oracle):
    """A reference for the bursty trace: what a policy could do that learns of a burst the second
    it begins, and then knows it whole (its height, ramp and length), but never sees one coming.

    The oracle's planner fed the true peak demand over the horizon of a trace in which the bursts
    not yet begun are left out (the calm demand in their place), plus ``headroom`` rows/s held at
    all times. No causal policy knows more about a burst than this one does, so where it cannot
    meet the issue's bars at some headroom, a forecast from the demand seen so far cannot either
    (at that headroom, with this planner; a policy with another planner may do better)."""

    name = "onset"

    def __init__(
        self,
        full: np.ndarray,
        calm: np.ndarray,
        bursts: list,
        headroom: float,
        config: SimConfig | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.full, self.calm, self.bursts, self.headroom = full, calm, bursts, headroom
        # the oracle's smoothing: the simulator's peak_smoothing (default: SimConfig's), in steps
        # of its dt (one a second: the traces are per second)
        config = config or SimConfig(pools=())
        self.k = max(1, round(config.peak_smoothing / config.dt))

    def peak(self, now: float, obs, horizon: float) -> tuple[float, str]:
        a, b = int(now), min(len(self.full), int(now + horizon) + 1)
        lo = max(0, a - self.k)
        seen = self.calm[lo:b].copy()
        t = np.arange(lo, b)
        for start, end in self.bursts:
            if start <= now:
                begun = (t >= start) & (t < end)
                seen[begun] = self.full[lo:b][begun]
        return float(rolling_mean(seen, self.k)[a - lo :].max()) + self.headroom, "peak of begun bursts"


#: Standing headroom of the onset reference, in cpu workers' rows/s.
ONSET_HEADROOM = (0.0, 0.25, 0.5, 1.0, 2.0)


def onset_bound(args) -> dict:
    """The bursty trace: reactive's stall and cost (the bars' corner) and the onset reference's at
    each headroom of :data:`ONSET_HEADROOM`, deciding every 5 s."""
    rate, _ = preemption_rate(TRACES_DIR / SKYPILOT)
    config = cluster(rate, args.seed)
    parts: dict = {}
    raw = synthetic("bursty", np.random.default_rng([args.seed, 2]), parts)
    scale = PEAK_SHARE * config.max_rate() / np.nanmax(raw)
    full, calm = raw * scale, parts["calm"] * scale
    reactive = simulate(Reactive(), full, config)
    predictive = simulate(Predictive(seed=args.seed), full, config)
    cpu = next(p for p in config.pools if p.name == "cpu")
    out = {
        "bars": {"stall": reactive.stall_fraction / 3, "cost": 0.9 * reactive.cost},
        "reactive": {"stall_fraction": reactive.stall_fraction, "cost": reactive.cost},
        "predictive": {"stall_fraction": predictive.stall_fraction, "cost": predictive.cost},
        "onset": [],
    }
    for workers in ONSET_HEADROOM:
        policy = OnsetOracle(full, calm, parts["bursts"], workers * config.rate(cpu), config, interval=5.0)
        res = simulate(policy, full, config)
        out["onset"].append(
            {"headroom_workers": workers, "stall_fraction": res.stall_fraction, "cost": res.cost}
        )
    return out


def bound_table(out: dict) -> str:
    bars = out["bars"]
    lines = [
        "bursty: the onset reference (each burst known whole from its first second, none before; the",
        "oracle's planner every 5 s) with standing headroom, against the bars (predictive must have",
        f"stall <= {_sf(bars['stall'])} = 1/3 reactive's and cost <= {bars['cost']:.2f} = 0.9x reactive's)",
        "",
        f"{'policy':<28} {'stall':>7} {'stall s':>8} {'cost':>6}  meets both",
    ]
    rows = [("reactive", out["reactive"]), ("predictive", out["predictive"])]
    rows += [(f"onset, +{r['headroom_workers']:g} cpu workers", r) for r in out["onset"]]
    for label, r in rows:
        ok = r["stall_fraction"] <= bars["stall"] and r["cost"] <= bars["cost"]
        lines.append(
            f"{label:<28} {_sf(r['stall_fraction']):>7} {r['stall_fraction'] * DURATION:>8.1f} "
            f"{r['cost']:>6.2f}  {'yes' if ok else 'no'}"
        )
    return "\n".join(lines)


def run(args) -> dict:
    rate, rate_note = preemption_rate(TRACES_DIR / SKYPILOT)
    config = cluster(rate, args.seed)
    if args.lookahead is not None:
        config = dataclasses.replace(config, prefetch_seconds=args.lookahead)
    peak = PEAK_SHARE * config.max_rate()
    traces, periods, notes = load_traces(args.traces, args.trace, args.seed)
    notes.insert(0, rate_note)
    if args.lookahead is not None:
        notes.append(
            f"look-ahead: the driver keeps {args.lookahead:g} s of the measured demand committed or in "
            "flight ahead of the trainers, for every policy (default 30 s)"
        )
    notes.append(
        f"every trace rescaled so its peak is {peak / 1e3:.0f}k rows/s = {PEAK_SHARE:.0%} of the pools at "
        f"max (cpu 20 x 10k + isp 4 x 40k rows/s): the peak needs every pool at its max"
    )
    out: dict = {"_notes": notes, "_forecast": {}, "_floor": {}, "_seconds": {}}
    started = time.process_time()
    for name, raw in traces.items():
        demand = _rescale(raw, peak)
        out[name] = {}
        out["_floor"][name] = floors(demand, config)
        trace_started = time.process_time()
        recorded = {}
        for pol in args.policies:
            policy = POLICIES[pol](periods[name], args.seed)
            res = simulate(policy, demand, config, record=args.plot is not None)
            if args.plot is not None:
                recorded[pol] = res
            out[name][pol] = res.row()
            if args.reasons and res.decisions:
                out[name][pol]["last_reasons"] = res.decisions[-3:]
        out["_seconds"][name] = round(time.process_time() - trace_started, 2)
        if args.plot is not None:
            from autoscale_plot import plot_trace

            out.setdefault("_plots", {})[name] = str(plot_trace(name, demand, recorded, config, args.plot))
        if "predictive" in args.policies and not args.no_forecast:
            horizon = max(p.lag_median * math.exp(1.28 * p.lag_sigma) for p in config.pools) + 15.0
            out["_forecast"][name] = forecast_baselines(demand, periods[name], horizon, args.seed)
    out["_seconds"]["simulations"] = round(sum(out["_seconds"].values()), 2)
    out["_seconds"]["total"] = round(time.process_time() - started, 2)
    return out


def _fmt(x: float, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def table(out: dict) -> str:
    lines = [*("# " + n for n in out["_notes"]), ""]
    head = (
        f"{'trace':<10} {'policy':<12} {'stall':>7} {'cpu wh':>7} {'isp wh':>7} {'cost':>7} "
        f"{'x floor':>7} {'actions':>7} {'lost':>5} {'preempt':>7} {'fc MAPE':>8} {'fc cov':>6}"
    )
    lines.append(head)
    for name, rows in out.items():
        if name.startswith("_"):
            continue
        fl = out["_floor"].get(name)
        if fl:
            lines.append(
                f"{name:<10} {'(floor)':<12} {0:>7.4f} {'':>7} {'':>7} {fl['floor']:>7.2f} {1:>7.2f}   "
                f"bound {fl['bound']:.2f}, raw-demand floor {fl['floor_raw']:.2f}"
            )
        for pol, r in rows.items():
            fc = r["forecast"] or {}
            wh = r["worker_hours"]
            lines.append(
                f"{name:<10} {pol:<12} {r['stall_fraction']:>7.4f} {wh['cpu']:>7.1f} {wh['isp']:>7.1f} "
                f"{r['cost']:>7.2f} {_ratio(r['cost'], fl):>7} {r['actions']:>7d} {r['shards_lost']:>5d} "
                f"{r['preemptions']['cpu']:>7d} "
                f"{_fmt(fc.get('mape')):>8} {_fmt(fc.get('coverage')):>6}"
            )
    if out["_forecast"]:
        lines += ["", "forecast of the peak demand over start-up lag + interval (MAPE %, coverage)"]
        for name, fc in out["_forecast"].items():
            cells = "  ".join(f"{k} {_fmt(v['mape'], 1)}% / {_fmt(v['coverage'])}" for k, v in fc.items())
            lines.append(f"{name:<10} {cells}")
    lines += [
        "",
        "cost floor: the cheapest whole-worker mix meeting each second's 30 s average demand, no start-up",
        "lag or preemption; bound: what any policy that never stalls pays at least (the buffer credited,",
        "fractional mixes); x floor: cost / floor",
    ]
    lines += ["", "checks of the issue's 'What must hold' (predictive against the others, per trace):"]
    for name, rows in out.items():
        if name.startswith("_") or not {"predictive", "reactive", "oracle"} <= set(rows):
            continue
        checks = holds(rows, out["_floor"].get(name))
        lines.append(f"{name:<10} " + "; ".join(f"{k}: {v}" for k, v in checks.items()))
    if out.get("_plots"):
        lines += [
            "",
            "images (demand, forecast and capacity per policy): " + ", ".join(out["_plots"].values()),
        ]
    secs = ", ".join(f"{k} {v}" for k, v in out["_seconds"].items())
    lines += [
        "",
        f"CPU seconds (every policy's simulation per trace; total with the forecast baselines): {secs}",
    ]
    return "\n".join(lines)


def _ratio(cost: float, fl: dict | None) -> str:
    return f"{cost / fl['floor']:.2f}" if fl and fl["floor"] > 0 else "-"


def _sf(x: float) -> str:
    """A stall fraction: 4 decimals, or 2 significant digits when that would show a stall as 0."""
    return f"{x:.1e}" if 0 < x < 5e-5 else f"{x:.4f}"


def _yes(ok: bool, detail: str) -> str:
    return f"{'yes' if ok else 'NO'} ({detail})"


def reach(target: float, fl: dict | None) -> str:
    """Whether a cost of ``target`` is within reach of a policy that never stalls, by the floors."""
    if not fl:
        return ""
    if target < fl["bound"]:
        return f"; {target:.2f} is below the bound {fl['bound']:.2f}: unreachable without stalls, proven"
    if target < fl["floor"]:
        return (
            f"; {target:.2f} is below the floor {fl['floor']:.2f} (above the bound {fl['bound']:.2f}): "
            "unreachable by whole-worker mixes meeting the 30 s demand"
        )
    return f"; {target:.2f} = {target / fl['floor']:.2f}x the floor: not ruled out"


def holds(rows: dict, fl: dict | None = None) -> dict:
    """The issue's conditions for predictive on one trace, each with the figures behind it; with
    the trace's floors (:func:`floors`), whether 0.9x reactive's cost is within reach at all."""
    p, r, o = rows["predictive"], rows["reactive"], rows["oracle"]
    ps, rs = p["stall_fraction"], r["stall_fraction"]
    checks = {
        "stall <= 1/3 reactive": _yes(ps <= rs / 3, f"{_sf(ps)} vs {_sf(rs)}"),
        "cost <= 0.9x reactive": _yes(
            p["cost"] <= 0.9 * r["cost"], f"{p['cost'] / r['cost']:.2f}x" + reach(0.9 * r["cost"], fl)
        ),
        "fewer actions": _yes(p["actions"] < r["actions"], f"{p['actions']} vs {r['actions']}"),
        "cost <= 1.25x oracle": _yes(p["cost"] <= 1.25 * o["cost"], f"{p['cost'] / o['cost']:.2f}x"),
        "no shard lost": _yes(all(x["shards_lost"] == 0 for x in rows.values()), "all policies"),
    }
    for other in ("hill-climbing", "adaptive"):
        if other in rows:
            os_ = rows[other]["stall_fraction"]
            if ps == os_ == 0:
                checks[f"stall < {other}"] = "tie (both 0)"
            else:
                checks[f"stall < {other}"] = _yes(ps < os_, f"{_sf(ps)} vs {_sf(os_)}")
    return checks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="one JSON object keyed by trace, then policy")
    ap.add_argument("--trace", type=Path, help="a CSV of seconds,demand (any unit) to replay as well")
    ap.add_argument(
        "--traces",
        nargs="*",
        default=["steady", "diurnal", "bursty", "nasa", "nasa-gaps", "azure"],
        help="built-in traces to replay (none with --traces and --trace FILE: only the file)",
    )
    ap.add_argument("--policies", nargs="*", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--lookahead",
        type=float,
        metavar="S",
        help="seconds of demand the simulated driver keeps ahead of the trainers, for every policy "
        "(default 30: a streaming pipeline's buffer; recprep's own driver does not throttle)",
    )
    ap.add_argument("--no-forecast", action="store_true", help="skip the forecast baselines")
    ap.add_argument("--reasons", action="store_true", help="keep the last decisions' reasons")
    ap.add_argument(
        "--plot",
        type=Path,
        metavar="DIR",
        help="draw demand, forecast and capacity per policy as DIR/<trace>.png (needs matplotlib)",
    )
    ap.add_argument(
        "--onset-bound",
        action="store_true",
        help="only the bursty trace: the onset reference (bursts known from their first second) "
        "at several standing headrooms against the bars",
    )
    args = ap.parse_args(argv)
    if args.onset_bound:
        out = onset_bound(args)
        print(json.dumps(out, indent=1) if args.json else bound_table(out))
        return 0
    out = run(args)
    print(json.dumps(out, indent=1) if args.json else table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
