"""Pools and observations shared by the predictor's tests."""

from __future__ import annotations

import numpy as np
import pytest

from recprep.predictor.signals import BinnedSeries, Observation, PoolState


def pools(
    cpu=(0, 20), isp=(0, 4), hosts=4, preempt=0.0, cpu_replicas=1, isp_replicas=0, lag=80.0
) -> dict[str, PoolState]:
    """cpu: 10k rows/s per worker at 0.10/h; isp: 40k rows/s at 0.20/h on ``hosts`` storage nodes."""
    return {
        "cpu": PoolState("cpu", cpu_replicas, cpu_replicas, cpu[0], cpu[1], 10_000.0, 0.10, lag, preempt),
        "isp": PoolState("isp", isp_replicas, isp_replicas, isp[0], isp[1], 40_000.0, 0.20, lag, 0.0, hosts),
    }


def observation(history, pool_states=None, now=0.0, step=10.0, **kw) -> Observation:
    series = BinnedSeries(step)
    for v in history:
        series.append(v)
    kw.setdefault("backlog", 30.0)
    kw.setdefault("queued_work", 0.0)
    kw.setdefault("batch_time", float("nan"))
    return Observation(now=now, pools=pool_states or pools(), demand=series, **kw)


@pytest.fixture
def rng():
    return np.random.default_rng(7)
