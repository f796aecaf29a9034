"""bench/autoscale.py's onset reference: it sees a burst of the bursty trace from its first second
and none before, and asking for the trace's parts leaves the trace as it was."""

import numpy as np

from bench.autoscale import OnsetOracle, synthetic
from recprep.predictor.signals import BinnedSeries, Observation


def test_the_parts_of_the_bursty_trace_rebuild_it_and_do_not_change_it():
    plain = synthetic("bursty", np.random.default_rng([0, 2]))
    parts: dict = {}
    again = synthetic("bursty", np.random.default_rng([0, 2]), parts)
    assert np.array_equal(plain, again)
    assert parts["bursts"] and all(0 <= s < e for s, e in parts["bursts"])
    outside = np.ones(len(plain), bool)
    for start, end in parts["bursts"]:
        inside = (np.arange(len(plain)) >= start) & (np.arange(len(plain)) < end)
        outside &= ~inside
        assert (plain[inside] >= parts["calm"][inside]).all()
    assert np.array_equal(plain[outside], parts["calm"][outside])


def _peak(policy: OnsetOracle, now: float, horizon: float = 100.0) -> float:
    obs = Observation(now, {}, BinnedSeries(10.0), float("inf"), 0.0, float("nan"))
    return policy.peak(now, obs, horizon)[0]


def test_a_burst_is_seen_from_its_first_second_and_not_before():
    calm = np.full(1000, 1.0)
    full = calm.copy()
    full[500:700] = 5.0  # one burst, 500-700 s
    policy = OnsetOracle(full, calm, [(500.0, 700.0)], headroom=0.5)
    assert _peak(policy, 450.0) == 1.5  # the burst starts within the horizon: not seen
    assert _peak(policy, 499.0) == 1.5
    assert _peak(policy, 500.0) > 1.5  # begun: seen whole over the horizon (smoothed over 30 s)
    assert _peak(policy, 560.0) == 5.5
    assert _peak(policy, 800.0) == 1.5  # over
