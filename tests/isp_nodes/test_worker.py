"""Pacing: a task is held to its modelled time, and marked behind when its real work is slower."""

from __future__ import annotations

import pytest

from recprep.isp_nodes.worker import here, pace


class Clock:
    def __init__(self, now: float):
        self.now = now
        self.waited: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waited.append(seconds)
        self.now += seconds


def test_a_task_faster_than_the_model_waits_out_the_rest():
    clock = Clock(10.3)  # began at 10.0: 0.3 s of real work
    paced = pace(10.0, 1.0, clock=clock, wait=clock.wait)
    assert clock.waited == [pytest.approx(0.7)]
    assert paced.model_seconds == 1.0 and not paced.behind


def test_a_task_slower_than_the_model_is_behind_and_does_not_wait():
    clock = Clock(12.0)
    paced = pace(10.0, 1.0, clock=clock, wait=clock.wait)
    assert clock.waited == [] and paced.behind


def test_outside_a_worker_the_task_is_local():
    assert here() == ("local", None)
