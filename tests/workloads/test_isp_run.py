"""ISP placement end to end on real embedded Dask clusters (issue 11): shards byte-identical
whatever the placement and the worker counts; the ledger's placement records where each shard
ran and why; paced ISP workers keep the model's pace; a dying ISP worker loses nothing; a job
whose ISP pool is empty runs on the CPU pool and says so."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from recprep.isp_nodes.placement import holder, local_nodes, node_of, split_key
from recprep.isp_nodes.worker import embedded_specs
from recprep.spec import load_job_dict
from recprep.workloads.locality import scheduler_workers
from recprep.workloads.runner import run_job

from ..conftest import job_doc

pytestmark = pytest.mark.integration

SYNTHETIC = "synthetic://criteo?rows=48000&seed=3"
CATEGORIFY = [
    {"op": "fill_null", "columns": "dense", "value": 0},
    {"op": "log", "columns": "dense", "offset": 3},
    {"op": "hex_to_int", "columns": "sparse"},
    {"op": "categorify", "columns": ["C1", "C2"], "minCount": 1},  # not offloaded: the CPU pool's
    {"op": "sigrid_hash", "columns": "sparse", "salt": 0, "maxValue": 100000},
    {"op": "to_list", "columns": "sparse"},
]
#: a model slow enough for this machine to keep pace with on two cores, first task included
#: and under load (about two seconds per shard and unit; the real work takes a tenth of that)
SLOW = {
    "throughput": {"decode": 2.5e5, "generation": 2.5e5, "normalization": 5e5},
    "parseBytesPerSecond": 2e8,
    "internalReadBytesPerSecond": 4e8,
}


def _doc(out: Path, transforms=None, source: str = SYNTHETIC, rows_per_shard: int = 4000, isp=None) -> dict:
    doc = job_doc(source, str(out), transforms=transforms)
    doc["spec"]["output"]["rowsPerShard"] = rows_per_shard
    if isp is not None:
        doc["spec"]["pools"] = {"isp": copy.deepcopy(isp)}
    return doc


def _shards(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("part-*.parquet"))}


def _ledger(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "_ledger.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """The demo recipe on synthetic data, run the plain way (no ISP pool named)."""
    out = tmp_path_factory.mktemp("plain")
    run_job(load_job_dict(_doc(out)), workers=2)
    return out


def test_isp_placement_writes_the_plain_runs_bytes_and_keeps_raw_data_on_its_node(plain, tmp_path):
    summary = run_job(load_job_dict(_doc(tmp_path, isp={"min": 2})), workers=0, isp_workers=2)
    assert _shards(tmp_path) == _shards(plain)
    nodes = local_nodes(2)
    for line in _ledger(tmp_path):
        p, src = line["placement"], line["source"]
        key = split_key(src["path"], src["start"], src["stop"])
        assert p["pool"] == "isp" and p["holder"] == holder(key, nodes)
        (task,) = p["tasks"]
        assert node_of(task["worker"]) == p["holder"] == task["node"] and task["steps"] == [0, 7]
        assert p["networkBytes"] == {"raw": 0, "handoff": 0, "shard": line["bytes"]}
        assert p["reason"] == f"its raw data is on {p['holder']}: read and transformed there"
    a = summary.accounting
    assert a["placement"] == "isp" and a["networkBytes"]["raw"] == 0
    assert a["networkBytes"]["shard"] == sum(line["bytes"] for line in _ledger(tmp_path))
    assert (
        a["busySeconds"]["cpu"] == 0 and a["busySeconds"]["isp"] > 0 and a["workers"] == {"isp": 2, "cpu": 0}
    )
    assert a["storedBytes"] > a["networkBytes"]["total"]  # raw data is bigger than the shards
    assert json.loads((tmp_path / "_accounting.json").read_text()) == a


@pytest.mark.parametrize(("cpu", "isp"), [(2, 0), (1, 1), (1, 3)])
def test_any_mix_of_pools_writes_the_same_bytes_and_accounts_raw_bytes_where_they_moved(
    plain, tmp_path, cpu, isp
):
    summary = run_job(load_job_dict(_doc(tmp_path, isp={"min": 1})), workers=cpu, isp_workers=isp)
    assert _shards(tmp_path) == _shards(plain)
    moved = 0
    for line in _ledger(tmp_path):
        p = line["placement"]
        read_by = p["tasks"][0]["node"]
        assert (read_by is None) == (p["pool"] == "cpu")
        moved += p["storedBytes"] if read_by is None or read_by != p["holder"] else 0
    assert summary.accounting["networkBytes"]["raw"] == moved
    if isp == 0:
        assert summary.accounting["placement"] == "cpu-centric" and moved == summary.accounting["storedBytes"]
        assert any("no ISP worker joined; all 12 shards ran on the CPU pool" in w for w in summary.warnings)
    else:
        assert summary.accounting["shardsByPool"].get("isp", 0) > 0
        assert not summary.warnings


def test_a_job_with_an_op_isp_units_do_not_run_splits_each_shard_between_the_pools(tmp_path):
    reference = tmp_path / "plain"
    run_job(load_job_dict(_doc(reference, CATEGORIFY)), workers=1)
    out = tmp_path / "isp"
    summary = run_job(load_job_dict(_doc(out, CATEGORIFY, isp={"min": 1})), workers=1, isp_workers=1)
    assert _shards(out) == _shards(reference)
    split = [line["placement"] for line in _ledger(out) if line["placement"]["pool"] == "isp+cpu"]
    assert split, "no shard ran its offloaded steps on the ISP worker"
    for p in split:
        assert [(t["node"], t["steps"]) for t in p["tasks"]] == [("storage-0", [0, 3]), (None, [3, 6])]
        assert "spec.transforms[3:] ran on the CPU pool (categorify is not offloaded" in p["reason"]
        assert p["networkBytes"]["raw"] == 0 and p["networkBytes"]["handoff"] > 0
    assert summary.accounting["networkBytes"]["handoff"] == sum(p["networkBytes"]["handoff"] for p in split)


def test_paced_isp_workers_keep_the_models_throughput_within_ten_percent(plain, tmp_path):
    isp = {"min": 1, "units": 2, "mode": "paced", "model": SLOW}
    summary = run_job(load_job_dict(_doc(tmp_path, isp=isp)), workers=0, isp_workers=2)
    assert _shards(tmp_path) == _shards(plain)
    paced = summary.accounting["ispWorkers"]
    assert set(paced) == {"isp/storage-0/0", "isp/storage-1/0"}
    for name, w in paced.items():
        assert w["tasksBehind"] <= 1, (name, w)  # the first task on a worker also compiles the plan
        assert 0.9 <= w["ratio"] <= 1.1, (name, w)
        assert w["rowsPerSecond"] == pytest.approx(w["modelRowsPerSecond"], rel=0.1)
        # its two units worked at once: the wall time busy is well under the tasks' seconds
        assert w["busySeconds"] < 0.8 * w["taskSeconds"], (name, w)
    for line in _ledger(tmp_path):
        (task,) = line["placement"]["tasks"]
        assert task["seconds"] >= task["modelSeconds"] > 0


def test_an_isp_worker_that_dies_mid_job_loses_nothing(plain, tmp_path):
    from distributed import Client, Nanny, Scheduler, SpecCluster

    isp = {"min": 2, "units": 1, "mode": "paced", "model": SLOW}
    specs = {
        "cpu-0": {"cls": Nanny, "options": {"nthreads": 1, "name": "cpu-0", "silence_logs": logging.ERROR}}
    }
    specs |= embedded_specs(local_nodes(2), 1)
    with (
        SpecCluster(
            workers=specs, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(3)
        victim = next(a for a, w in scheduler_workers(client).items() if w["name"] == "isp/storage-1/0")
        pid = client.run(os.getpid, workers=[victim])[victim]
        # the worker's process is killed (no goodbye) once the job is under way, two shards in its
        # hands; its nanny starts a new one under the same name
        timer = threading.Timer(1.5, os.kill, (pid, signal.SIGKILL))
        timer.start()
        try:
            summary = run_job(load_job_dict(_doc(tmp_path, isp=isp)), client=client)
        finally:
            timer.cancel()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    again = [
        line for line in _ledger(tmp_path) if "a second time: its worker left" in line["placement"]["reason"]
    ]
    assert again, "no shard was redone after the worker died"
    assert _shards(tmp_path) == _shards(plain)
    shards = [line["shard"] for line in _ledger(tmp_path)]
    assert sorted(shards) == list(range(12))  # each shard committed once
    assert summary.rows_conserved and summary.rows_written == 48000


def test_cli_isp_workers_runs_the_first_commands_job_with_storage_nodes(tmp_path):
    from ..conftest import recprep

    job = tmp_path / "job.yaml"
    job.write_text(json.dumps(_doc(tmp_path / "out", isp={"min": 1, "units": 2})))
    done = recprep("run", str(job), "--workers", "1", "--isp-workers", "2")
    assert done.returncode == 0, done.stderr
    assert "placement" in done.stdout and "MB over the network" in done.stdout
    pools = {line["placement"]["pool"] for line in _ledger(tmp_path / "out")}
    assert "isp" in pools
    bad = recprep("run", str(job), "--isp-workers", "-1")
    assert bad.returncode == 2 and "--isp-workers" in bad.stderr and "Traceback" not in bad.stderr
