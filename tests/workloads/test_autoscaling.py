"""recprep run's autoscaler on a real embedded cluster: the policy of spec.autoscale grows the
CPU pool within spec.pools when the deadline needs it, says why, and changes no byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job

from ..conftest import job_doc, recprep

pytestmark = [
    pytest.mark.integration,
    # locally the CPU pool's limit is also the machine's cores
    pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to grow to two workers"),
]

SOURCE = "synthetic://criteo?rows=800000&seed=5"


def _doc(out: Path, **spec) -> dict:
    doc = job_doc(SOURCE, str(out))
    doc["spec"]["output"]["rowsPerShard"] = 10000
    doc["spec"].update(spec)
    return doc


def _shards(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("part-*.parquet"))}


def test_a_deadline_grows_the_cpu_pool_to_its_max_and_says_why(tmp_path):
    doc = _doc(
        tmp_path / "auto", pools={"cpu": {"min": 1, "max": 2}}, autoscale={"deadline": 2, "interval": 1}
    )
    summary = run_job(load_job_dict(doc))
    (first, *rest) = summary.scaling
    assert "cpu 1 -> 2: deadline" in first, summary.scaling
    assert not any("-> 3" in line for line in rest)  # within spec.pools.cpu.max
    assert summary.cores == 2
    workers = {
        t["worker"]
        for line in (tmp_path / "auto" / "_ledger.jsonl").read_text().splitlines()
        for t in json.loads(line)["placement"]["tasks"]
    }
    assert workers == {"cpu-0", "cpu-1"}  # the new worker took shards
    plain = tmp_path / "plain"
    run_job(load_job_dict(_doc(plain)), workers=1)
    assert _shards(tmp_path / "auto") == _shards(plain)


def test_without_autoscale_the_pool_keeps_its_size(tmp_path):
    summary = run_job(load_job_dict(_doc(tmp_path, pools={"cpu": {"min": 1, "max": 2}})), workers=1)
    assert summary.scaling == [] and summary.cores == 1


def test_the_cli_prints_the_autoscalers_reasons(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(
        json.dumps(_doc(tmp_path / "out", pools={"cpu": {"min": 1, "max": 2}}, autoscale={"interval": 1}))
    )
    done = recprep("run", str(job))
    assert done.returncode == 0, done.stderr
    assert "autoscaler" in done.stdout and "cpu 1 -> 2" in done.stdout
