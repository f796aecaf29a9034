"""``bench/autoscale.py --plot DIR``: one image per trace, one panel per policy, of the trainers'
demand, the policy's forecast and the capacity it provisioned, so that a reader can see why one
policy stalls and another does not.

Each panel, over the trace's time (hours):

- demand (rows/s, the trace as the trainers want it);
- capacity (rows/s) of the workers running, stacked per pool (``cpu`` below, ``isp`` above): each
  worker's rows/s from the pool's seconds per shard;
- the forecast (rows/s) each decision was made from, at its quantile, where the policy makes one;
- stalls: the seconds the trainers waited in each bin, as red ticks along the time axis.

The title gives the policy's stall fraction, cost and scaling actions. Needs matplotlib (the
``bench`` extra); the images are PNG, written to ``DIR/<trace>.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_trace(name: str, demand: np.ndarray, results: dict, config, directory: Path) -> Path:
    """Draw ``results`` (policy -> ``sim.Result`` recorded with ``record=True``) of trace ``name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pools = [p.name for p in config.pools]
    rates = {p.name: config.rate(p) for p in config.pools}
    colours = {"cpu": "#ff7f0e", "isp": "#17becf"}
    fig, axes = plt.subplots(len(results), 1, figsize=(12, 2.3 * len(results)), sharex=True, squeeze=False)
    seconds = np.arange(len(demand)) * config.dt
    for ax, (policy, res) in zip(axes[:, 0], results.items()):
        rows = np.array(res.timeline, dtype=float) if res.timeline else np.zeros((0, 4 + 2 * len(pools)))
        t = rows[:, 0] / 3600.0 if len(rows) else np.array([])
        below = np.zeros(len(rows))
        for i, pool in enumerate(pools):
            cap = rows[:, 4 + i] * rates[pool] if len(rows) else below
            ax.fill_between(
                t,
                below,
                below + cap,
                step="post",
                color=colours.get(pool, "#999"),
                alpha=0.35,
                label=f"{pool} capacity",
                linewidth=0,
            )
            below = below + cap
        ax.plot(seconds / 3600.0, demand, color="#1f77b4", linewidth=0.8, label="demand")
        if res.forecasts:
            fc = np.array(res.forecasts, dtype=float)
            ax.plot(fc[:, 0] / 3600.0, fc[:, 2], ".", color="#2ca02c", markersize=2, label="forecast")
        if len(rows):
            stalled = np.diff(rows[:, 3], prepend=0.0) > 0
            top = max(float(np.nanmax(demand)), float(below.max()) if len(below) else 0.0)
            ax.plot(
                t[stalled],
                np.full(stalled.sum(), -0.03 * top),
                "|",
                color="#d62728",
                markersize=6,
                label="stall",
            )
        ax.set_title(
            f"{policy}: stall {res.stall_fraction:.4f}, cost {res.cost:.2f}, {res.actions} actions",
            fontsize=9,
            loc="left",
        )
        ax.set_ylabel("rows/s", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=5)
    axes[-1, 0].set_xlabel("hours", fontsize=8)
    fig.suptitle(f"trace {name}: demand, forecast and capacity per policy", fontsize=11)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
