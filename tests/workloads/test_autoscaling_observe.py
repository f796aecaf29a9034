"""What recprep run's autoscaler shows its policy (no cluster: a recording policy, a fake clock)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from recprep.predictor.policies import Decision
from recprep.spec import load_job_dict
from recprep.workloads.autoscaling import EmbeddedAutoscaler
from recprep.workloads.locality import Topology
from recprep.workloads.tasks import Ran, ShardResult

from ..conftest import job_doc


class Recording:
    name, interval = "recording", 5.0

    def __init__(self):
        self.seen = []

    def decide(self, now, obs):
        self.seen.append((now, obs))
        return Decision({"cpu": obs.pools["cpu"].replicas}, {"cpu": "keeps"})


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def _scaler(policy, clock, cores=4):
    doc = job_doc("synthetic://criteo?rows=10", "/tmp/unused")
    doc["spec"]["pools"] = {"cpu": {"min": 1, "max": 8}}
    cluster = SimpleNamespace(worker_spec={"cpu-0": {}})
    return EmbeddedAutoscaler(cluster, None, load_job_dict(doc), policy, 100_000, cores, clock=clock)


def _landed(rows: int, seconds: float) -> ShardResult:
    ran = Ran("cpu-0", None, (0, 1), 0.0, seconds, read=True, wrote=True)
    return ShardResult(0, "part-00000.parquet", rows, 0, 1, "x", None, {}, 0, 0, [ran])


def test_no_decision_before_a_shard_is_measured_then_one_per_interval():
    policy, clock = Recording(), Clock()
    scaler = _scaler(policy, clock)
    topo = Topology(cpu=["tcp://a"], cpu_names=["cpu-0"], cpu_threads=1)
    scaler.tick(topo, 0)
    assert policy.seen == []
    scaler.landed(_landed(10_000, 0.5))
    scaler.tick(topo, 10_000)
    clock.now += 1
    scaler.tick(topo, 10_000)  # within the interval
    assert len(policy.seen) == 1
    _, obs = policy.seen[0]
    cpu = obs.pools["cpu"]
    assert cpu.rows_per_worker == 20_000 and cpu.replicas == 1 and cpu.max == 4  # the machine's cores
    assert obs.rows_left == 90_000 and not obs.trainers and obs.backlog == math.inf


def test_trainers_consumption_becomes_demand_and_backlog():
    policy, clock = Recording(), Clock()
    scaler = _scaler(policy, clock)
    topo = Topology(cpu=["tcp://a"], cpu_names=["cpu-0"], cpu_threads=1)
    scaler.landed(_landed(10_000, 0.5))
    consumed = iter([None, 0, 5_000, 15_000])
    for _ in range(4):
        scaler.tick(topo, 40_000, 40_000, lambda: next(consumed))
        clock.now += 5.0
    # a group that joined is a trainer, its rate measured from the next decision on
    assert [obs.trainers for _, obs in policy.seen] == [False, True, True, True]
    assert policy.seen[1][1].backlog == math.inf
    _, last = policy.seen[-1]
    assert last.demand.array()[-2:].tolist() == [pytest.approx(1_000.0), pytest.approx(2_000.0)]
    assert last.backlog == pytest.approx((40_000 - 15_000) / 2_000.0)
