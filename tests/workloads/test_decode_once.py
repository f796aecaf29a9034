"""Compressed files decoded once (``decode_once``): the policy's choice, a worker killed mid-file,
a driver killed mid-job and resumed, bad rows, and a file that cannot be decompressed. Each
output is checked against the same days uncompressed, shard by shard, through the ledger."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from recprep.errors import SpecError
from recprep.spec import load_job_dict
from recprep.workloads import decode_once
from recprep.workloads.output import read_commits
from recprep.workloads.runner import run_job
from recprep.workloads.tasks import DECODE_FAILPOINT, ShardError, prepare, staged_sessions

from ..conftest import REPO, failpoint_cluster, job_doc, wait_for

ROWS = 8_000  # rows per day
PER_SHARD = 1_000


def _days(criteo_lines, folder, n=3, packed=True, damage=None):
    """``n`` days of real Criteo rows (each a rotation of the sample), gzip or plain."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = b"".join((criteo_lines[i * 700 :] + criteo_lines[: i * 700])[:ROWS])
        if damage is not None:
            text = damage(i, text)
        path = folder / f"day_{i}.tsv{'.gz' if packed else ''}"
        path.write_bytes(gzip.compress(text, 6) if packed else text)
    return folder


def _job(source, output, **source_fields):
    doc = job_doc(str(source), str(output), **source_fields)
    doc["spec"]["output"]["rowsPerShard"] = PER_SHARD
    return doc


def _shards(output) -> list[bytes]:
    """Each committed shard's bytes, in shard order; every shard committed once."""
    records = sorted(read_commits(str(output)), key=lambda r: r.shard)
    assert [r.shard for r in records] == list(range(len(records)))
    return [(output / r.file).read_bytes() for r in records]


@pytest.fixture
def reference(criteo_lines, tmp_path, dask_client):
    """The shards of the same days uncompressed."""
    plain = _days(criteo_lines, tmp_path / "plain", packed=False)
    run_job(load_job_dict(_job(plain, tmp_path / "out-plain")), client=dask_client)
    return _shards(tmp_path / "out-plain")


def _choice(criteo_lines, tmp_path, threads, packed=True, decode="auto", transforms=None):
    folder = _days(criteo_lines, tmp_path / ("gz" if packed else "plain"), packed=packed)
    job = load_job_dict(
        job_doc(str(folder), str(tmp_path / "out"), transforms)
        if transforms is not None
        else _job(folder, tmp_path / "out")
    )
    source, plan = prepare(job, str(tmp_path / "index"))
    return decode_once.files_to_decode(job, source, plan, staged_sessions(job), threads, 0, decode)


def test_the_policy_decodes_once_when_each_worker_thread_has_a_file_of_its_own(criteo_lines, tmp_path):
    assert _choice(criteo_lines, tmp_path, threads=3)  # 3 files, 3 threads
    assert not _choice(criteo_lines, tmp_path, threads=4)  # a thread would wait: splits
    assert not _choice(criteo_lines, tmp_path, threads=1, decode="splits")
    assert _choice(criteo_lines, tmp_path, threads=8, decode="once")
    # a fitted op needs every split before the first shard
    fitted = [{"op": "normalize", "columns": ["I1"]}]
    assert not _choice(criteo_lines, tmp_path, threads=1, transforms=fitted)
    with pytest.raises(SpecError, match="--decode once: .*a fitted op"):
        _choice(criteo_lines, tmp_path, threads=1, transforms=fitted, decode="once")
    # plain files are read by byte ranges: nothing to decode
    with pytest.raises(SpecError, match="uncompressed files"):
        _choice(criteo_lines, tmp_path / "p", threads=1, packed=False, decode="once")


@pytest.mark.integration
def test_files_decoded_once_write_the_shards_of_the_files_uncompressed(
    criteo_lines, tmp_path, dask_client, reference
):
    source = _days(criteo_lines, tmp_path / "gz")
    doc = _job(source, tmp_path / "out")
    summary = run_job(load_job_dict(doc), client=dask_client)  # 3 files, 2 threads: once
    assert summary.rows_written == 3 * ROWS and summary.shards == len(reference) >= 24
    assert _shards(tmp_path / "out") == reference
    job = json.loads((tmp_path / "out" / "_job.json").read_text())
    assert job["shards"] == len(reference)  # recorded once the files are counted
    records = read_commits(str(tmp_path / "out"))
    assert {r.placement["reason"] for r in records} == {decode_once.REASON}
    assert {r.source["path"] for r in records} == {str(source / f"day_{i}.tsv.gz") for i in range(3)}
    # a rerun finds every shard committed (from the plans kept: no file is decoded again)
    again = run_job(load_job_dict(doc), client=dask_client)
    assert again.shards_skipped == len(reference) and again.rows_processed == 0
    # and the same job read by splits resumes the same output (one identity for both)
    by_splits = run_job(load_job_dict(doc), client=dask_client, decode="splits")
    assert by_splits.shards_skipped == len(reference) and by_splits.rows_processed == 0


@pytest.mark.integration
def test_a_worker_killed_mid_file_has_the_file_done_again_and_each_shard_committed_once(
    criteo_lines, tmp_path, reference
):
    from distributed import Client

    source = _days(criteo_lines, tmp_path / "gz")
    with (
        failpoint_cluster(tmp_path, DECODE_FAILPOINT, 3) as cluster,
        Client(cluster) as client,
    ):
        summary = run_job(load_job_dict(_job(source, tmp_path / "out")), client=client, decode="once")
    assert (tmp_path / "fired").exists()  # a worker died after its file's first shard
    assert summary.rows_written == 3 * ROWS
    assert _shards(tmp_path / "out") == reference
    lines = (tmp_path / "out" / "_ledger.jsonl").read_text().splitlines()
    assert len(lines) == len(reference)  # the shard reported before the worker died: once


@pytest.mark.integration
def test_a_driver_killed_mid_job_resumes_and_commits_every_shard_once(criteo_lines, tmp_path, reference):
    source = _days(criteo_lines, tmp_path / "gz")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(_job(source, tmp_path / "out")))
    cmd = [sys.executable, "-m", "recprep.cli", "run", str(job_file), "--workers", "1"]
    ledger = tmp_path / "out" / "_ledger.jsonl"
    proc = subprocess.Popen(
        cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def committed() -> int:
        return len(ledger.read_text().splitlines()) if ledger.exists() else 0

    try:
        wait_for(lambda: committed() >= 3, 120, message="a few committed shards")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-file
        proc.wait(30)
    before = committed()
    assert before < len(reference), "the job finished before it could be killed"
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _shards(tmp_path / "out") == reference
    shards = [json.loads(line)["shard"] for line in ledger.read_text().splitlines()]
    assert sorted(shards) == list(range(len(reference)))  # none twice


@pytest.mark.integration
def test_bad_rows_of_a_file_decoded_once_are_quarantined_with_their_line_numbers(
    criteo_lines, tmp_path, dask_client
):
    def damage(day, text):
        lines = text.splitlines(keepends=True)
        lines[2_500 + day] = b"not\ta\tcriteo\trow\n"  # in the file's third split
        return b"".join(lines)

    outputs = {}
    for packed in (False, True):
        folder = _days(criteo_lines, tmp_path / f"in-{packed}", packed=packed, damage=damage)
        out = tmp_path / f"out-{packed}"
        summary = run_job(load_job_dict(_job(folder, out)), client=dask_client, decode="auto")
        assert summary.rows_quarantined == 3
        rows = [json.loads(line) for q in sorted((out / "_quarantine").iterdir()) for line in q.open()]
        outputs[packed] = sorted((os.path.basename(r["file"]).split(".")[0], r["line"]) for r in rows)
    assert outputs[True] == outputs[False] == [(f"day_{d}", 2_501 + d) for d in range(3)]


@pytest.mark.integration
def test_a_file_that_cannot_be_decompressed_is_an_error_naming_it_and_the_shards_before_stay(
    criteo_lines, tmp_path, dask_client
):
    source = _days(criteo_lines, tmp_path / "gz", damage=lambda day, text: text * 4 if day == 0 else text)
    broken = source / "day_0.tsv.gz"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # cut short: its first half (~3.8 MB) decompresses
    with pytest.raises(ShardError, match=f"file 0 \\({broken}\\): {broken}: cannot decompress it"):
        run_job(load_job_dict(_job(source, tmp_path / "out")), client=dask_client, decode="once")
    committed = read_commits(str(tmp_path / "out"))
    assert committed and {r.source["path"] for r in committed} >= {str(broken)}  # its first half's
