"""The per-job accounting from placement records: bytes, busy seconds, energy, cost, pace."""

from __future__ import annotations

import pytest

from recprep.isp_nodes.accounting import Account, _span, placement_record
from recprep.isp_nodes.model import IspModel
from recprep.workloads.tasks import Ran, ShardResult


def _result(ran: list[Ran], stored=1000, handoff=0, size=100) -> ShardResult:
    return ShardResult(0, "part-00000.parquet", 10, 0, size, "x", None, {}, stored, handoff, ran)


def test_span_is_the_union_of_intervals():
    assert _span([(0, 1), (0.5, 2), (3, 4)]) == pytest.approx(3.0)
    assert _span([]) == 0


def test_network_bytes_by_placement():
    isp = Ran("isp/s0/0", "s0", (0, 5), 0.0, 1.0, read=True, wrote=True)
    cpu = Ran("cpu-0", None, (0, 5), 0.0, 1.0, read=True, wrote=True)
    local = placement_record(_result([isp]), "s0", "held")
    assert local["pool"] == "isp" and local["networkBytes"] == {"raw": 0, "handoff": 0, "shard": 100}
    remote = placement_record(_result([cpu]), "s0", "overflow")
    assert remote["pool"] == "cpu" and remote["networkBytes"]["raw"] == 1000
    part = Ran("isp/s0/0", "s0", (0, 3), 0.0, 1.0, read=True, wrote=False)
    rest = Ran("cpu-0", None, (3, 5), 1.0, 0.5, read=False, wrote=True)
    split = placement_record(_result([part, rest], handoff=400), "s0", "held")
    assert split["pool"] == "isp+cpu" and split["networkBytes"] == {"raw": 0, "handoff": 400, "shard": 100}
    assert [t["steps"] for t in split["tasks"]] == [[0, 3], [3, 5]]


def test_energy_cost_and_pace():
    model = IspModel.model_validate(
        {"ispUnitWatts": 10, "cpuCoreWatts": 2, "ispNodeHourly": 3.6, "cpuNodeHourly": 7.2}
    )
    account = Account(model, preemptible=False)
    account.workers = {"isp": 1, "cpu": 2}
    account.wall_seconds = 10.0
    units = {"isp/s0/0": 2}
    for start in (0.0, 0.0, 1.0, 1.0):  # two units busy for 2 s: 4 tasks of 1 s, modelled 1 s each
        ran = Ran("isp/s0/0", "s0", (0, 5), start, 1.0, read=True, wrote=True, model_seconds=1.0)
        account.add(10, 100, placement_record(_result([ran]), "s0", "held"), units)
    cpu = Ran("cpu-0", None, (0, 5), 0.0, 3.0, read=True, wrote=True)
    account.add(10, 100, placement_record(_result([cpu]), "s0", "overflow"), units)
    doc = account.to_json()
    assert doc["placement"] == "mixed" and doc["shardsByPool"] == {"isp": 4, "cpu": 1}
    assert doc["networkBytes"] == {"raw": 1000, "handoff": 0, "shard": 500, "total": 1500}
    assert doc["busySeconds"] == {"isp": 4.0, "cpu": 3.0}
    assert doc["modelled"]["joules"] == pytest.approx(4 * 10 + 3 * 2)
    # one ISP node at $3.60/h and two cores at $7.20/4 per hour, for 10 s
    assert doc["modelled"]["dollars"] == pytest.approx((3.6 + 2 * 7.2 / 4) * 10 / 3600)
    assert doc["modelled"]["rowsPerJoule"] == pytest.approx(50 / 46, rel=1e-3)
    pace = doc["ispWorkers"]["isp/s0/0"]
    assert pace["busySeconds"] == 2.0 and pace["taskSeconds"] == 4.0
    assert pace["rowsPerSecond"] == 20.0 and pace["elapsedRowsPerSecond"] == 20.0
    assert pace["modelRowsPerSecond"] == 20.0 and pace["ratio"] == 1.0
