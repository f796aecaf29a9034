"""The pool policy as data: targets within the spec bounds, and which pods a scale-down takes."""

from __future__ import annotations

import pytest

from recprep.operator.scaling import (
    Decision,
    KeepWithinBounds,
    WorkerPod,
    choose_retirements,
    clamp,
    initial_replicas,
    pool_target,
)
from recprep.spec import PoolBounds


@pytest.mark.parametrize(
    ("replicas", "minimum", "maximum", "target"),
    [
        (1, 0, 20, 1),
        (5, 0, 20, 5),  # within bounds: unchanged
        (5, 0, 3, 3),
        (1, 2, 4, 2),  # clamped to max / raised to min
        (0, 0, 4, 1),  # a pool that may have workers keeps one (no predictor yet)
        (0, 0, 0, 0),
        (3, 0, 0, 0),  # max 0: none
        (2, 2, 2, 2),
    ],
)
def test_pool_target(replicas, minimum, maximum, target):
    decision = pool_target("cpu", replicas, PoolBounds(min=minimum, max=maximum))
    assert decision.target == target and decision.current == replicas and decision.reason
    assert decision.changes == (target != replicas)


@pytest.mark.parametrize(("minimum", "maximum"), [(3, 1), (-1, 2)])
def test_clamp_refuses_bad_bounds(minimum, maximum):
    bounds = PoolBounds.model_construct(min=minimum, max=maximum)  # the spec itself refuses these
    with pytest.raises(ValueError, match="0 <= min <= max"):
        clamp(1, bounds)


def test_a_policy_fills_the_hook_and_the_bounds_hold_it():
    class Wants:
        def __init__(self, n):
            self.n = n

        def wanted(self, pool, current):
            return self.n, f"forecast needs {self.n}"

    bounds = PoolBounds(min=1, max=6)
    assert pool_target("isp", 2, bounds, Wants(4)) == Decision("isp", 2, 4, "forecast needs 4")
    held = pool_target("isp", 2, bounds, Wants(40))
    assert held.target == 6 and held.reason == "forecast needs 40; held to spec.pools.isp [min 1, max 6]"
    assert pool_target("isp", 2, bounds, Wants(0)).target == 1


def test_initial_replicas_is_the_decision_for_an_empty_pool():
    assert initial_replicas("cpu", PoolBounds(min=0, max=20)) == 1
    assert initial_replicas("cpu", PoolBounds(min=3, max=5)) == 3
    assert initial_replicas("isp", PoolBounds(min=0, max=0)) == 0
    assert KeepWithinBounds().wanted("cpu", 0) == (1, "at least one worker, so the job makes progress")


def joined(name, executing=0, stored=0, processing=0, retiring=False):
    return WorkerPod(
        name,
        ready=True,
        joined=True,
        retiring=retiring,
        executing=executing,
        stored_bytes=stored,
        processing=processing,
    )


def test_not_ready_pods_go_first_then_retiring_then_unjoined_then_the_least_loaded():
    pods = [
        joined("busy", executing=1, stored=10),
        joined("holder", stored=5_000_000),
        joined("idle"),
        WorkerPod("starting", ready=True, joined=False),
        joined("leaving", executing=1, retiring=True),
        WorkerPod("pending", ready=False),
    ]
    order = [r.pod for r in choose_retirements(pods, len(pods))]
    assert order == ["pending", "leaving", "starting", "idle", "holder", "busy"]
    picked = {r.pod: r for r in choose_retirements(pods, len(pods))}
    assert not picked["pending"].needs_retire and not picked["starting"].needs_retire
    assert picked["idle"].needs_retire and picked["leaving"].needs_retire
    assert picked["pending"].reason == "not ready: holds no data"
    assert picked["holder"].reason == "0 running task(s), 5000000 bytes held, 0 assigned"


def test_a_running_task_weighs_more_than_bytes_and_bytes_more_than_queued_tasks():
    pods = [joined("a", executing=1), joined("b", stored=10**9), joined("c", processing=7)]
    assert [r.pod for r in choose_retirements(pods, 3)] == ["c", "b", "a"]


def test_the_newest_pod_is_not_chosen_for_being_new():
    # Names of a Deployment's pods carry no age; the choice depends on what the pods hold only,
    # and ties are broken by name (deterministic), never by creation order.
    pods = [joined("w-zzz-newest", stored=100), joined("w-aaa-oldest")]
    assert [r.pod for r in choose_retirements(pods, 1)] == ["w-aaa-oldest"]


def test_counts():
    pods = [joined("a"), joined("b")]
    assert choose_retirements(pods, 0) == []
    assert len(choose_retirements(pods, 5)) == 2
    with pytest.raises(ValueError):
        choose_retirements(pods, -1)
