"""The driver end to end on real Dask clusters: determinism across worker counts, resume after
SIGKILL, quarantine of malformed lines, refusal of a different job, fitted ops."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from recprep.errors import BadDataError, OutputError, SourceError, SpecError
from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job

from ..conftest import REPO, job_doc, wait_for

FITTED = [
    {"op": "fill_null", "columns": "dense", "value": 0},
    {"op": "log", "columns": "dense"},
    {"op": "normalize", "columns": ["I1", "I2"]},
    {"op": "boxcox", "columns": ["I5"], "shift": 1},
    {"op": "categorify", "columns": ["C1", "C2"], "minCount": 2},
    {"op": "hex_to_int", "columns": ["C3"]},
    {"op": "to_list", "columns": ["C3"]},
    {"op": "ngram", "columns": ["C3"], "n": 1, "maxValue": 1000, "output": "C3_ngram"},
]


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("part-*.parquet"))}


def run_with_workers(doc: dict, workers: int):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        return run_job(load_job_dict(doc), client=client)


@pytest.mark.integration
def test_byte_identical_with_one_and_two_workers(criteo_tsv, tmp_path):
    outputs = []
    for workers in (1, 2):
        doc = job_doc(str(criteo_tsv), str(tmp_path / f"w{workers}"), transforms=FITTED)
        doc["spec"]["output"]["rowsPerShard"] = 700
        summary = run_with_workers(doc, workers)
        assert summary.workers == workers and summary.rows_written == 10_000
        outputs.append(shard_bytes(tmp_path / f"w{workers}"))
    assert len(outputs[0]) >= 10
    assert outputs[0] == outputs[1]
    fit1 = json.loads((tmp_path / "w1" / "_fit.json").read_text())
    fit2 = json.loads((tmp_path / "w2" / "_fit.json").read_text())
    assert fit1 == fit2
    # categorify: IDs are dense ranks; normalize: mean ~0, std ~1 over the whole output
    table = pq.read_table(tmp_path / "w1")
    assert abs(table["I1"].to_numpy().mean()) < 1e-9
    assert abs(table["I1"].to_numpy().std() - 1) < 1e-9
    vocab = fit1["states"]["4:C1"]["vocabulary"]
    assert table["C1"].to_numpy().max() == len(vocab)
    assert "C3_ngram" in table.column_names


@pytest.mark.integration
def test_resume_after_sigkill_is_byte_identical(criteo_lines, tmp_path):
    src = tmp_path / "big.tsv"
    src.write_bytes(b"".join(criteo_lines) * 30)  # 300k rows
    reference = tmp_path / "reference"
    doc = job_doc(str(src), str(reference))
    doc["spec"]["output"]["rowsPerShard"] = 4000
    run_with_workers(doc, 2)

    killed = tmp_path / "killed"
    doc["spec"]["output"]["uri"] = str(killed)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(doc))
    cmd = [sys.executable, "-m", "recprep.cli", "run", str(job_file), "--workers", "2"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ledger = killed / "_ledger.jsonl"
    total = len(shard_bytes(reference))
    try:
        wait_for(
            lambda: ledger.exists() and 3 <= len(ledger.read_text().splitlines()),
            120,
            message="a few committed shards",
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-job
        proc.wait(30)
    committed = len(ledger.read_text().splitlines())
    assert committed < total, "the job finished before it could be killed"
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "already committed" in resumed.stdout
    assert shard_bytes(killed) == shard_bytes(reference)
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert {e["shard"] for e in entries} == set(range(total))
    assert sum(e["rows"] for e in {e["shard"]: e for e in entries}.values()) == 300_000


def _inject(lines: list[bytes], bad: dict[int, bytes]) -> tuple[bytes, int]:
    """Lines with some replaced by malformed ones (1-based line numbers)."""
    out = list(lines)
    for number, text in bad.items():
        out[number - 1] = text + b"\n"
    return b"".join(out), len(out) - len(bad)


@pytest.mark.integration
def test_malformed_lines_are_quarantined_with_line_numbers(criteo_lines, tmp_path, dask_client):
    good = criteo_lines[0].rstrip(b"\n").split(b"\t")
    bad = {
        5: b"\t".join(good[:20]),  # too few fields
        1234: b"\t".join(good + [b"extra"]),  # too many fields
        5000: b"\t".join([good[0], b"not-a-number", *good[2:]]),  # non-numeric dense value
        9999: b"\t".join([b"x", *good[1:]]),  # non-numeric label
    }
    data, good_rows = _inject(criteo_lines, bad)
    src = tmp_path / "dirty.tsv"
    src.write_bytes(data)
    doc = job_doc(str(src), str(tmp_path / "out"))
    doc["spec"]["output"]["rowsPerShard"] = 1500  # bad lines fall in several shards
    summary = run_job(load_job_dict(doc), client=dask_client)
    assert summary.rows_written == good_rows == 9996
    assert summary.rows_quarantined == 4
    records = []
    for path in sorted((tmp_path / "out" / "_quarantine").glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["line"] for r in records) == sorted(bad)
    for r in records:
        assert r["text"].encode() == bad[r["line"]]
        assert r["file"].endswith("dirty.tsv")
    reasons = {r["line"]: r["reason"] for r in records}
    assert "expected 40 fields, found 20" in reasons[5]
    assert "column I1" in reasons[5000] and "column label" in reasons[9999]
    assert pq.read_table(tmp_path / "out").num_rows == 9996


@pytest.mark.integration
def test_too_many_bad_rows_fail_but_keep_committed_shards(criteo_lines, tmp_path, dask_client):
    bad = {n: b"garbage" for n in range(9001, 9101)}  # 1% bad, all in the last shard
    data, _ = _inject(criteo_lines, bad)
    src = tmp_path / "dirty.tsv"
    src.write_bytes(data)
    doc = job_doc(str(src), str(tmp_path / "out"), maxBadFraction=0.001)
    doc["spec"]["output"]["rowsPerShard"] = 2000
    with pytest.raises(BadDataError, match=r"maxBadFraction=0.001.*_quarantine"):
        run_job(load_job_dict(doc), client=dask_client)
    ledger = (tmp_path / "out" / "_ledger.jsonl").read_text().splitlines()
    assert len(ledger) >= 1
    for e in map(json.loads, ledger):
        assert (tmp_path / "out" / e["file"]).exists()


def test_missing_source_fails_before_any_work(tmp_path):
    doc = job_doc(str(tmp_path / "nope.tsv"), str(tmp_path / "out"))
    with pytest.raises(SourceError, match=r"spec\.source\.uri: .*nope\.tsv' does not exist"):
        run_job(load_job_dict(doc))
    assert not (tmp_path / "out").exists()


def test_unwritable_output_fails_before_any_work(criteo_tsv, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    doc = job_doc(str(criteo_tsv), str(blocker / "out"))
    with pytest.raises(OutputError, match=r"spec\.output\.uri: cannot write to"):
        run_job(load_job_dict(doc))


def test_column_errors_name_the_transform(criteo_tsv, tmp_path):
    doc = job_doc(
        str(criteo_tsv),
        str(tmp_path / "out"),
        transforms=[{"op": "log", "columns": "sparse"}],
    )
    with pytest.raises(
        SpecError,
        match=r"spec\.transforms\[0\]: op log cannot take column 'C1' of kind string; it takes: ",
    ):
        run_job(load_job_dict(doc))
    doc = job_doc(str(criteo_tsv), str(tmp_path / "out"), transforms=[{"op": "log", "columns": ["I99"]}])
    with pytest.raises(SpecError, match=r"spec\.transforms\[0\]\.columns: no column matches 'I99'"):
        run_job(load_job_dict(doc))
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_different_job_refuses_output_unless_overwrite(criteo_tsv, tmp_path, dask_client):
    out = tmp_path / "out"
    run_job(load_job_dict(job_doc(str(criteo_tsv), str(out))), client=dask_client)
    before = shard_bytes(out)
    doc = job_doc(str(criteo_tsv), str(out))
    doc["spec"]["transforms"][4]["salt"] = 7
    with pytest.raises(OutputError, match="different job.*--overwrite"):
        run_job(load_job_dict(doc), client=dask_client)
    assert shard_bytes(out) == before  # nothing lost
    summary = run_job(load_job_dict(doc), client=dask_client, overwrite=True)
    assert summary.rows_written == 10_000 and shard_bytes(out) != before
    again = run_job(load_job_dict(doc), client=dask_client)  # same job: everything is committed
    assert again.shards_skipped == again.shards and again.rows_written == 10_000


@pytest.mark.integration
def test_parquet_source_matches_text_source(criteo_tsv, tmp_path, dask_client):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = ["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))]
    types = {n: (pa.int64() if i < 14 else pa.string()) for i, n in enumerate(names)}
    raw = pcsv.read_csv(
        criteo_tsv,
        read_options=pcsv.ReadOptions(column_names=names),
        parse_options=pcsv.ParseOptions(delimiter="\t"),
        convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )
    pq.write_table(raw, tmp_path / "in.parquet", row_group_size=2500)
    doc = job_doc(str(tmp_path / "in.parquet"), str(tmp_path / "from-parquet"), dense="I*", sparse="C*")
    doc["spec"]["source"]["format"] = "parquet"
    doc["spec"]["output"]["rowsPerShard"] = 5000
    summary = run_job(load_job_dict(doc), client=dask_client)
    assert summary.shards == 2
    doc = job_doc(str(criteo_tsv), str(tmp_path / "from-text"))
    run_job(load_job_dict(doc), client=dask_client)
    a, b = pq.read_table(tmp_path / "from-parquet"), pq.read_table(tmp_path / "from-text")
    assert (
        a.drop_columns(["I1_bucket"]).to_pydict().keys() == b.drop_columns(["I1_bucket"]).to_pydict().keys()
    )
    for name in b.column_names:
        assert a[name].to_pylist() == b[name].to_pylist(), name


@pytest.mark.integration
def test_workers_hold_nothing_once_shards_are_committed(criteo_tsv, tmp_path, dask_client):
    """Results are released as they are recorded: a worker retired while the job runs holds no
    committed shard's result that the scheduler would have to move elsewhere."""
    doc = job_doc(str(criteo_tsv), str(tmp_path / "out"))
    doc["spec"]["output"]["rowsPerShard"] = 2000

    def held() -> int:
        return dask_client.run_on_scheduler(
            lambda dask_scheduler: sum(
                1
                for k, t in dask_scheduler.tasks.items()
                if "transform_shard" in str(k) and t.state == "memory"
            )
        )

    class Watch:
        recorded, total, last_held = 0, 0, None

        def start(self, total_shards, est_rows, done_shards, done_rows, done_quarantined):
            self.total = total_shards

        def phase(self, name):
            pass

        def warn(self, message):
            pass

        def advance(self, result):
            self.recorded += 1
            if self.recorded == self.total:  # still inside the run: its futures are alive
                self.last_held = wait_for(
                    lambda: held() == 0 and "none", timeout=10, message="committed shards' results released"
                )

    watch = Watch()
    summary = run_job(load_job_dict(doc), client=dask_client, progress=watch)
    assert summary.shards >= 4 and watch.recorded == summary.shards and watch.last_held == "none"


def test_the_fit_pass_reports_its_shards_and_a_resumed_run_only_its_own_rows(tmp_path, dask_client):
    doc = job_doc(
        "synthetic://criteo?rows=6000&seed=2",
        str(tmp_path / "out"),
        transforms=[{"op": "normalize", "columns": ["I1"]}, {"op": "categorify", "columns": ["C1"]}],
    )
    doc["spec"]["output"]["rowsPerShard"] = 1500

    class Calls:
        def __init__(self):
            self.calls = []

        def phase(self, name):
            self.calls.append(("phase", name))

        def start(self, total, est, done, done_rows, done_bad):
            self.calls.append(("start", total, done, done_rows))

        def fitted(self, est_rows):
            self.calls.append(("fitted", est_rows))

        def advance(self, result):
            self.calls.append(("advance", result.rows))

        def warn(self, message):
            pass

    first = Calls()
    summary = run_job(load_job_dict(doc), client=dask_client, progress=first)
    assert first.calls[:2] == [("phase", "fit 1/1"), ("start", 4, 0, 0)]
    assert first.calls[2:6] == [("fitted", 1500)] * 4
    assert first.calls[6:8] == [("phase", "transform"), ("start", 4, 0, 0)]
    assert sorted(first.calls[8:]) == [("advance", 1500)] * 4
    assert summary.rows_processed == 6000

    again = Calls()
    resumed = run_job(load_job_dict(doc), client=dask_client, progress=again)
    # the fit is read back from _fit.json; every shard is committed: nothing read, nothing to rate
    assert again.calls == [("phase", "transform"), ("start", 4, 4, 6000)]
    assert resumed.rows_processed == 0 and resumed.rows_per_second_per_core == 0.0


def test_the_embedded_cluster_has_a_worker_per_core_the_process_may_use(monkeypatch):
    """In a container limited to 3 CPUs on a bigger node: 3 workers, less the ISP units."""
    from recprep.workloads import runner

    monkeypatch.setattr(runner, "usable_cores", lambda: 3)
    assert runner.local_cpu_workers((0, 1)) == 3
    assert runner.local_cpu_workers((1, 2)) == 1
    assert runner.local_cpu_workers((4, 1)) == 1  # at least one
