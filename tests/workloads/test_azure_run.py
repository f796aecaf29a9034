"""Jobs whose source and output are in Azure Blob Storage (a real Azure Blob API: Azurite, through
adlfs, the client users have; credentials from ``AZURE_STORAGE_CONNECTION_STRING``, as adlfs reads
them): the shards are byte-identical to a local run, the ledger has one record per shard, a
rerun commits nothing again, and a missing container or a wrong account key fail before any work
in one line naming the URI."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pytest
import yaml

from recprep.delivery.shards import LocalShards
from recprep.spec import load_job_dict
from recprep.workloads.output import read_commits
from recprep.workloads.runner import run_job

from ..azurite import KEY, azurite
from ..azurite import available as azurite_missing
from ..conftest import REPO, job_doc

pytestmark = pytest.mark.integration
PER_SHARD = 4096


@pytest.fixture(scope="module")
def az():
    if why := azurite_missing():
        pytest.skip(why)
    with azurite("data", "out") as (fs, env):
        yield fs, env


def doc_for(source: str, output: str) -> dict:
    doc = job_doc(source, output)
    doc["spec"]["output"]["rowsPerShard"] = PER_SHARD
    return doc


def test_a_job_reading_and_writing_azure_writes_the_shards_of_a_local_run(az, criteo_lines, tmp_path):
    fs, _ = az
    local = tmp_path / "day.tsv.gz"
    local.write_bytes(gzip.compress(b"".join(criteo_lines) * 3))  # 30,000 real rows
    fs.put_file(str(local), "data/day.tsv.gz")
    run_job(load_job_dict(doc_for(str(local), str(tmp_path / "local"))), workers=1)
    reference = {p.name: p.read_bytes() for p in sorted((tmp_path / "local").glob("part-*.parquet"))}

    summary = run_job(load_job_dict(doc_for("az://data/day.tsv.gz", "az://out/day")), workers=1)
    assert summary.rows_written == 30_000 and summary.shards == len(reference) >= 6
    fs.invalidate_cache()
    ours = {p.rsplit("/", 1)[1]: fs.cat(p) for p in sorted(fs.glob("out/day/part-*.parquet"))}
    assert ours == reference
    records = fs.ls("out/day/_ledger", detail=False)
    assert len(records) == len(reference)  # one commit record per shard
    assert not fs.exists("out/day/_lock")  # the lease is given back
    assert [r.shard for r in read_commits("az://out/day")] == list(range(len(reference)))
    assert sum(d.table.num_rows for d in LocalShards("az://out/day").open()) == 30_000
    again = run_job(load_job_dict(doc_for("az://data/day.tsv.gz", "az://out/day")), workers=1)
    assert again.shards_skipped == len(reference) and again.rows_processed == 0


def test_a_missing_container_or_a_wrong_key_fail_before_any_work(az, tmp_path):
    _, env = az
    wrong = env["AZURE_STORAGE_CONNECTION_STRING"].replace(KEY, "d3Jvbmc=" * 11)
    cases = [
        (env, "az://no-such-container/out", "The specified container does not exist"),
        (
            {"AZURE_STORAGE_CONNECTION_STRING": wrong},
            "az://out/wrong-key",
            "Server failed to authenticate the request",
        ),
    ]
    for environment, uri, expected in cases:
        job = tmp_path / "job.yaml"
        job.write_text(yaml.safe_dump(doc_for("synthetic://criteo?rows=1000&seed=1", uri)))
        proc = subprocess.run(
            [sys.executable, "-m", "recprep.cli", "run", str(job), "--workers", "1"],
            cwd=REPO,
            env={**_without_azure(), **environment},
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [
            line for line in (proc.stdout + proc.stderr).splitlines() if line.strip() and "━" not in line
        ]
        assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
        assert f"spec.output.uri: cannot write to '{uri}'" in lines[0] and expected in lines[0], lines[0]
    assert not fs_has(az[0], "out/wrong-key")


def fs_has(fs, prefix: str) -> bool:
    fs.invalidate_cache()
    return bool(fs.glob(f"{prefix}/*"))


def _without_azure() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
