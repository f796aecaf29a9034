"""bench/autoscale.py's cost floor and bound on small cases computed by hand."""

import math

import numpy as np
import pytest

from bench.autoscale import cost_bound, cost_floor
from recprep.predictor.sim import PoolConfig, SimConfig

HOUR = 3600


def config() -> SimConfig:
    """cpu: min 1, max 3, 10k rows/s at 0.10/h; isp: max 4 but 2 storage nodes, 40k rows/s at 0.20/h."""
    return SimConfig(
        pools=(
            PoolConfig("cpu", 1, 3, 65536 / 10_000, 0.10, lag_median=60.0),
            PoolConfig("isp", 0, 4, 65536 / 40_000, 0.20, lag_median=90.0, hosts=2),
        )
    )


def test_floor_is_the_cheapest_whole_mix_per_second():
    demand = np.concatenate(
        [
            np.full(HOUR, 5_000.0),  # 1 cpu (the min): 0.10/h
            np.full(HOUR, 45_000.0),  # 1 cpu + 1 isp (50k) at 0.30/h; 3 cpu give only 30k
            np.full(HOUR, 95_000.0),  # 2 cpu + 2 isp (100k) at 0.60/h: isp capped by its 2 hosts
            np.full(HOUR, math.nan),  # no trainer: the min, 0.10/h
        ]
    )
    assert cost_floor(demand, config(), smoothing=0) == pytest.approx(0.10 + 0.30 + 0.60 + 0.10)
    # more than every pool gives: the pools at their limits (3 cpu + 2 isp = 0.70/h)
    assert cost_floor(np.full(HOUR, 200_000.0), config(), smoothing=0) == pytest.approx(0.70)


def test_floor_credits_the_buffer_with_the_30s_average():
    demand = np.full(HOUR, 5_000.0)
    demand[1800] = 95_000.0  # one second: its 30 s average is 8k, one cpu worker meets it
    cfg = config()
    assert cost_floor(demand, cfg) == pytest.approx(0.10)
    assert cost_floor(demand, cfg, smoothing=0) == pytest.approx(0.10 + (0.60 - 0.10) / HOUR)


def test_bound_is_below_the_floor_and_fractional():
    cfg = config()
    demand = np.full(2 * HOUR, 30_000.0)
    # fractional: 1 cpu (10k) + half an isp unit (20k of 40k) = 0.10 + 0.10 = 0.20/h, less what a
    # window's start may hold (30 s of demand), against the floor's 1 cpu + 1 isp (0.30/h)
    assert cost_floor(demand, cfg) == pytest.approx(0.60)
    bound = cost_bound(demand, cfg)
    assert 0.39 < bound <= 0.40
    assert bound < cost_floor(demand, cfg)
