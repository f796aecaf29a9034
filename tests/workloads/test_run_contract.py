"""The driver's contract on bad input and crashes, end to end on a Dask cluster: rows are
conserved, an op that empties a feature is reported, a crash's leftovers are repaired, nothing
outside the job is read or removed, and every failure is one line with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from recprep.errors import BadDataError
from recprep.spec import load_job_dict
from recprep.workloads.output import (
    LEDGER_FILE,
    JobRecord,
    OutputWriter,
    read_commits,
    read_job,
    read_shard,
)
from recprep.workloads.runner import run_job

pytestmark = pytest.mark.integration

HEX_TRANSFORMS = [
    {"op": "hex_to_int", "columns": ["s1", "s2"]},
    {"op": "sigrid_hash", "columns": ["s1", "s2"], "maxValue": 1000},
    {"op": "to_list", "columns": ["s1", "s2"]},
]


def job_doc(source: str, output: str, transforms=None, rows_per_shard: int = 250, **source_fields) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "contract"},
        "spec": {
            "source": {
                "uri": source,
                "format": "tsv",
                "header": True,
                "dense": ["d1"],
                "sparse": ["s1", "s2"],
                **source_fields,
            },
            "transforms": transforms if transforms is not None else HEX_TRANSFORMS,
            "output": {"uri": output, "rowsPerShard": rows_per_shard},
        },
    }


def write_tsv(path: Path, rows: list[str]) -> Path:
    path.write_text("label\td1\ts1\ts2\n" + "".join(r + "\n" for r in rows))
    return path


def md5ish(i: int) -> str:
    return f"{(i * 0x9E3779B97F4A7C15) % 2**128:032x}"


@pytest.mark.parametrize("scanner_declines", [False, True], ids=["C scanner", "pyarrow reader"])
def test_wide_ids_are_hashed_and_an_op_that_empties_a_feature_is_reported(
    tmp_path, dask_client, scanner_declines
):
    rows = [f"{i % 2}\t{i}\t{md5ish(i)}\t{'not-hex' if i % 2 else f'{i:08x}'}" for i in range(1000)]
    if scanner_declines:  # a quote sends every split to pyarrow's reader (the op runs in the plan)
        rows = [r.replace("not-hex", '"not-hex"') for r in rows]
    src = write_tsv(tmp_path / "ids.tsv", rows)
    doc = job_doc(str(src), str(tmp_path / "out"))
    summary = run_job(load_job_dict(doc), client=dask_client)
    table = pq.read_table(tmp_path / "out")
    assert summary.rows_written == 1000 and summary.rows_conserved
    assert all(len(ids) == 1 for ids in table["s1"].to_pylist())  # 32-digit IDs: hashed, not emptied
    assert sum(len(ids) == 0 for ids in table["s2"].to_pylist()) == 500
    (warning,) = summary.warnings
    assert warning.startswith("spec.transforms[0] (hex_to_int on s2) made 500 of 1,000 values null (50.0%)")
    # the counts are in the ledger: a resumed run that does nothing still reports them
    again = run_job(load_job_dict(doc), client=dask_client)
    assert again.shards_skipped == again.shards and again.warnings == summary.warnings


def test_non_finite_rows_are_quarantined_and_count_against_max_bad_fraction(tmp_path, dask_client):
    rows = [f"1\t{'inf' if i % 10 == 0 else i}\t{i:08x}\t{i:08x}" for i in range(1000)]
    src = write_tsv(tmp_path / "inf.tsv", rows)
    with pytest.raises(BadDataError, match=r"\d+ malformed rows .* exceed spec.source.maxBadFraction=0.01"):
        run_job(load_job_dict(job_doc(str(src), str(tmp_path / "strict"))), client=dask_client)
    doc = job_doc(str(src), str(tmp_path / "lenient"), maxBadFraction=0.5)
    summary = run_job(load_job_dict(doc), client=dask_client)
    assert (summary.rows_read, summary.rows_written, summary.rows_quarantined) == (1000, 900, 100)
    bad = [
        json.loads(line)
        for f in sorted((tmp_path / "lenient" / "_quarantine").iterdir())
        for line in f.open()
    ]
    assert len(bad) == 100 and bad[0] == {
        "file": str(src),
        "line": 2,
        "reason": "column d1: non-finite value inf",
        "text": "1\tinf\t00000000\t00000000",
    }
    assert pq.read_table(tmp_path / "lenient")["d1"].to_numpy().max() < float("inf")


def test_a_torn_ledger_and_a_changed_shard_are_repaired_by_the_next_run(tmp_path, dask_client):
    src = write_tsv(tmp_path / "ids.tsv", [f"1\t{i}\t{i:08x}\t{i:08x}" for i in range(1000)])
    doc = job_doc(str(src), str(tmp_path / "out"))
    first = run_job(load_job_dict(doc), client=dask_client)
    out = tmp_path / "out"
    ledger = out / LEDGER_FILE
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(ledger.read_bytes()[:-20])  # a crash in the middle of the last commit
    # a committed shard changed under the ledger: one whose record survives (shards commit in
    # the order they finish, so the torn last line may be any shard's)
    shard = out / next(json.loads(line)["file"] for line in lines[:-1])
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    second = run_job(load_job_dict(doc), client=dask_client)
    assert second.shards_skipped == first.shards - 2
    assert any("torn last line" in w for w in second.warnings)
    assert any("no longer matched their ledger records" in w for w in second.warnings)
    commits = read_commits(str(out))
    assert sorted(c.shard for c in commits) == list(range(first.shards))
    for record in commits:  # every committed shard is in the ledger and matches its line
        read_shard(str(out), record, verify=True)
    assert all(line.endswith("}") for line in ledger.read_text().splitlines())


def test_a_resumed_run_checks_its_committed_shards_several_at_once(tmp_path, dask_client, monkeypatch):
    """The first 4 reads of its shards wait at a barrier of 4: one after another (as they were:
    a round trip per shard in an object store), the first would wait out the barrier's timeout."""
    import itertools
    import threading

    from recprep.workloads.output import writer
    from recprep.workloads.output.store import LocalStore

    src = write_tsv(tmp_path / "ids.tsv", [f"1\t{i}\t{i:08x}\t{i:08x}" for i in range(2000)])
    doc = job_doc(str(src), str(tmp_path / "out"))
    first = run_job(load_job_dict(doc), client=dask_client)
    assert first.shards >= 8 and writer.CHECK_THREADS >= 4
    barrier, count, read = threading.Barrier(4, timeout=20), itertools.count(), LocalStore.read

    def together(self, name):
        if name.startswith("part-") and next(count) < 4:
            barrier.wait()
        return read(self, name)

    monkeypatch.setattr(LocalStore, "read", together)
    second = run_job(load_job_dict(doc), client=dask_client)
    assert second.shards_skipped == first.shards and not second.warnings


def test_an_output_inside_the_input_directory_is_never_read_as_input(tmp_path, dask_client):
    data = tmp_path / "data"
    data.mkdir()
    write_tsv(data / "a.tsv", [f"1\t{i}\t{i:08x}\t{i:08x}" for i in range(600)])
    doc = job_doc(str(data), str(data / "out"))
    first = run_job(load_job_dict(doc), client=dask_client)
    second = run_job(load_job_dict(doc), client=dask_client)  # the first run's shards are in data/
    assert second.rows_read == first.rows_read == 600 and second.shards_skipped == first.shards


def test_a_shard_that_fails_unexpectedly_is_one_line_with_its_details_in_a_log(tmp_path):
    from recprep.workloads.sources import Split
    from recprep.workloads.tasks import _failure

    doc = job_doc("unused.tsv", str(tmp_path / "out"))
    try:
        raise RuntimeError("a bug\nover two lines")
    except RuntimeError as exc:
        failure = _failure(load_job_dict(doc), Split(7, "in.tsv", 0, 100, 10), "transform", exc)
    log = tmp_path / "out" / "_errors" / "part-00007.log"
    assert (
        failure.message == f"shard 7 (in.tsv [0:100]): RuntimeError: a bug over two lines; details in {log}"
    )
    assert "Traceback" in log.read_text() and "raise RuntimeError" in log.read_text()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recprep.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def one_line_error(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    # stderr also holds the progress bar's last frame (drawn with "━"): the rest is the error
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "━" not in line]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_second_run_while_the_first_holds_the_output_is_refused_naming_it(tmp_path):
    src = write_tsv(tmp_path / "ids.tsv", [f"1\t{i}\t{i:08x}\t{i:08x}" for i in range(100)])
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(job_doc(str(src), str(out))))
    out.mkdir()
    with OutputWriter(str(out)) as running:  # a run of another job holds the directory
        running.open(JobRecord("f" * 64, "first", None, 4), overwrite=False)
        proc = run_cli("run", str(job), "--overwrite", "--workers", "1", cwd=tmp_path)
        line = one_line_error(proc, 1)
        assert f"error: {out}: in use by job 'first' (identity ffffffffffff, pid" in line
        assert "a second run on the same output is refused while it runs" in line
    assert read_job(str(out)).name == "first" and not (out / LEDGER_FILE).exists()  # nothing cleared


@pytest.mark.parametrize(
    "content, code, expected",
    [
        (
            b"apiVersion: recprep.io/v1alpha1\nkind: \xffPreprocessJob\n",
            2,
            "job.yaml:2: not UTF-8 text (byte 39 of the file is 0xff)",
        ),
        (
            b"apiVersion: recprep.io/v1alpha1\nkind: PreprocessJob\nkind: PreprocessJob\n",
            2,
            "key 'kind' appears twice",
        ),
    ],
    ids=["non-UTF-8", "duplicate key"],
)
def test_a_bad_manifest_is_one_line_and_exit_2(tmp_path, content, code, expected):
    job = tmp_path / "job.yaml"
    job.write_bytes(content)
    assert expected in one_line_error(run_cli("validate", str(job), cwd=tmp_path), code)


def test_a_plain_file_named_gz_is_one_line_and_exit_1(tmp_path):
    src = tmp_path / "data.tsv.gz"
    src.write_text("label\td1\ts1\ts2\n1\t2\tab\tcd\n")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(job_doc(str(src), str(tmp_path / "out"))))
    line = one_line_error(run_cli("run", str(job), "--workers", "1", cwd=tmp_path), 1)
    assert f"{src}: cannot" in line and "Not a gzipped file" in line
