"""`recprep train` as a user runs it: a job on the Criteo sample preprocessed by `recprep run`,
then a few dozen training steps on CPU through the look-ahead cache; one-line errors."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest
import yaml

from ..conftest import job_doc, recprep

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def criteo_job_output(tmp_path_factory, criteo_tsv):
    tmp = tmp_path_factory.mktemp("train-cli")
    doc = job_doc(str(criteo_tsv), str(tmp / "out"))
    doc["spec"]["output"]["rowsPerShard"] = 2500
    (tmp / "job.yaml").write_text(yaml.safe_dump(doc))
    res = recprep("run", str(tmp / "job.yaml"), "--workers", "1")
    assert res.returncode == 0, res.stderr
    return tmp / "out"


@pytest.mark.integration
def test_train_runs_end_to_end_on_the_criteo_sample(criteo_job_output):
    res = recprep(
        "train",
        str(criteo_job_output),
        "--steps",
        "30",
        "--batch-size",
        "256",
        "--table-rows",
        "20000",
        "--cache",
        "lookahead",
        "--cache-rows",
        "2000",
        "--window",
        "3",
        "--threads",
        "1",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["steps"] == 30 and report["samples"] == 30 * 256
    assert report["samples_per_second"] > 0 and 0 <= report["data_wait_fraction"] < 1
    assert report["cache_stats"]["hit_rate"] == 1.0 and report["cache_stats"]["rows_h2d"] > 0
    ledger = [json.loads(line) for line in (criteo_job_output / "_ledger.jsonl").read_text().splitlines()]
    ends = [sum(e["rows"] for e in ledger[: i + 1]) for i in range(len(ledger))]
    assert len(ledger) >= 3
    assert report["shards_acknowledged"] == sum(end <= 30 * 256 for end in ends)  # consumed shards only
    assert report["loss_last"] < report["loss_first"]


UNTUNED = """
import sys
import recprep.workloads.memory
recprep.workloads.memory.tune_allocator = lambda: False  # the trainer as it was before it tuned
from recprep.cli import main
sys.exit(main(["train", *sys.argv[1:]]))
"""


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_train_keeps_its_buffers_under_the_nannys_trim_threshold(criteo_job_output):
    """Started from a process that started Dask workers, a trainer inherits the nanny's
    MALLOC_TRIM_THRESHOLD_=65536, under which glibc maps every buffer over 128 KiB afresh and
    gives it back when freed: ``recprep train`` sets the allocator's thresholds itself and
    page-faults about half as often over the same steps (measured here: 104k against 203k)."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    args = [str(criteo_job_output), "--epochs", "3", "--batch-size", "5000", "--table-rows", "1000"]
    args += ["--embedding-dim", "4", "--threads", "1", "--json"]

    def faults(*command: str) -> int:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        subprocess.run(
            [sys.executable, *command, *args], env=env, check=True, capture_output=True, timeout=300
        )
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before

    tuned, untuned = faults("-m", "recprep.cli", "train"), faults("-c", UNTUNED)
    assert tuned < 0.75 * untuned, (tuned, untuned)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
def test_train_prints_a_summary(criteo_job_output, capsys):
    """In process (the same main() as the console script), to spare a second torch start-up."""
    from recprep.cli import main

    code = main(
        [
            "train",
            str(criteo_job_output),
            "--epochs",
            "2",
            "--batch-size",
            "1024",
            "--cache",
            "lru",
            "--cache-rows",
            "5000",
            "--table-rows",
            "5000",
            "--threads",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in out.splitlines()
        if line.count("│") == 3
    }
    for field in ("samples/s", "waiting for data", "cache hit rate", "rows host->device / device->host"):
        assert field in rows
    ledger = (criteo_job_output / "_ledger.jsonl").read_text().splitlines()
    assert rows["samples"] == "20,000" and rows["shards acknowledged"] == str(2 * len(ledger))
    assert rows["steps"] == "20"  # 10 batches of 1,024 rows (the last 784) per epoch
    assert rows["cache rows per table"] == "5,000"  # LRU: no window


@pytest.mark.parametrize(
    "args, code, message",
    [
        ((), 2, "give either a job output directory or --service"),
        (("OUT", "--cache", "lookahead"), 2, "--cache-rows: --cache lookahead needs a positive number"),
        (("OUT", "--cache", "fifo", "--cache-rows", "9"), 2, "--cache: must be one of none, lookahead, lru"),
        (("OUT", "--rank", "2", "--world-size", "2"), 2, "--rank 2 is not in [0, --world-size 2)"),
        (("--service", "http://x:1"), 2, "--service: expected grpc://host:port"),
        (("/nonexistent/out",), 1, "/nonexistent/out: the job output directory does not exist"),
    ],
)
def test_bad_options_get_one_clear_line(criteo_job_output, args, code, message):
    res = recprep("train", *[str(criteo_job_output) if a == "OUT" else a for a in args])
    assert res.returncode == code, res.stdout + res.stderr
    assert message in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
def test_more_bad_options_get_one_line_in_process(criteo_job_output, tmp_path, capsys):
    """In process (no torch start-up per case): an unknown device, no sparse feature (named by
    --sparse or left by the job), a column named twice, and a message longer than the terminal
    (tables too large) each get one line, not an internal error or a wrapped message."""
    from recprep.cli import main

    from ..shard_outputs import layout_table, write_output

    no_sparse = write_output(tmp_path / "no-sparse", [layout_table(20, 1).select(["label", "row_id", "d"])])
    cases = [
        (("--device", "tpu"), 2, "invalid option: --device: must be cpu, cuda or cuda:N, got 'tpu'"),
        (("--sparse", ","), 2, "invalid option: --sparse: names no column"),
        (("--sparse", "C1,C1"), 1, "column 'C1' is named twice (as sparse and as sparse)"),
        (("--table-rows", str(10**13)), 2, "invalid option: --table-rows: --table-rows asks for"),
        (("--steps", "1"), 1, f"{no_sparse}: the shards have no sparse features"),
    ]
    for args, code, message in cases:
        output = str(no_sparse) if args == ("--steps", "1") else str(criteo_job_output)
        assert main(["train", output, *args, "--threads", "1"]) == code, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, (args, err)
