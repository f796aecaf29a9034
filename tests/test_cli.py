"""`recprep run | validate` as a user runs them: exit codes, messages, no tracebacks."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

from .conftest import REPO, job_doc, recprep


def write_job(tmp_path, doc) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_validate_the_examples():
    for name in ("demo.yaml", "criteo-sample.yaml"):
        if name == "criteo-sample.yaml" and not (REPO.parent / "shared" / "data").exists():
            continue
        res = recprep("validate", f"examples/{name}")
        assert res.returncode == 0, res.stderr
        assert "ok examples/" in res.stdout and "I1_bucket" in res.stdout


def test_validate_names_the_history_lists_a_deduplicated_shard_leaves_out():
    if not (REPO.parent / "shared" / "data").exists():
        pytest.skip("../shared/data is not here")
    res = recprep("validate", "examples/taobao-sample.yaml")
    assert res.returncode == 0, res.stderr
    assert (
        "dedup group user: user_id, item_id_history, category_id_history (once per session; where the "
        "session before gives it, not stored: item_id_history from item_id, category_id_history from "
        "category_id)"
    ) in " ".join(res.stdout.split())
    # a grouped source's splits are its shards (it neither groups nor stages its rows)
    said = " ".join(res.stdout.split())
    assert "2 shards (cut at session boundaries)" in said and "to group" not in said
    assert "ISP units (spec.pools.isp): none: a grouped session job's shard reads the edges" in said


@pytest.mark.integration
def test_run_synthetic_job_prints_summary(tmp_path):
    doc = job_doc("synthetic://criteo?rows=30000&seed=3", str(tmp_path / "out"))
    doc["spec"]["output"]["rowsPerShard"] = 10000
    res = recprep("run", write_job(tmp_path, doc), "--workers", "1")
    assert res.returncode == 0, res.stderr
    for field in ("rows read", "rows written", "rows quarantined", "shards", "seconds", "rows/s per core"):
        assert field in res.stdout
    assert "30,000" in res.stdout
    assert pq.read_table(tmp_path / "out").num_rows == 30000
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]


@pytest.mark.parametrize(
    "mutate, code, message",
    [
        (
            lambda d: d["spec"]["transforms"].append({"op": "explode", "columns": "dense"}),
            2,
            "spec.transforms[7].op: unknown op 'explode'",
        ),
        (lambda d: d["spec"]["transforms"][6].update(k=-1), 2, "spec.transforms[6].k"),
        (lambda d: d["spec"]["source"].update(uri="/nonexistent/x.tsv"), 1, "does not exist"),
        (lambda d: d["spec"]["output"].update(uri="/proc/forbidden/out"), 1, "spec.output.uri: cannot write"),
    ],
)
def test_bad_input_gets_one_clear_line(tmp_path, mutate, code, message):
    doc = job_doc("synthetic://criteo?rows=100", str(tmp_path / "out"))
    mutate(doc)
    res = recprep("run", write_job(tmp_path, doc))
    assert res.returncode == code, res.stdout + res.stderr
    assert message in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr


def test_validate_refuses_an_output_that_is_no_place_to_write(tmp_path):
    doc = job_doc("synthetic://criteo?rows=100", "synthetic://criteo")
    res = recprep("validate", write_job(tmp_path, doc))
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.strip() == "error: spec.output.uri: not a place to write to: 'synthetic://criteo'"


def test_bad_cli_arguments(tmp_path):
    res = recprep("run", "job.yaml", "--workers", "0")
    assert res.returncode == 2 and "expected a positive integer" in res.stderr
    res = recprep("validate", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "cannot read the job file" in res.stderr
    # an empty --output used to be ignored: the run wrote to spec.output.uri instead
    res = recprep("run", "job.yaml", "--output", "")
    assert res.returncode == 2 and "--output: give the output directory (got '')" in res.stderr


def test_validate_says_which_transforms_isp_units_run(tmp_path):
    transforms = [
        {"op": "fill_null", "columns": "dense", "value": 0},
        {"op": "hex_to_int", "columns": "sparse"},
        {"op": "categorify", "columns": ["C1"]},
        {"op": "sigrid_hash", "columns": "sparse", "salt": 0, "maxValue": 1000},
    ]
    doc = job_doc("synthetic://criteo?rows=1000&seed=1", str(tmp_path / "out"), transforms=transforms)
    res = recprep("validate", write_job(tmp_path, doc))
    assert res.returncode == 0, res.stderr
    line = " ".join(res.stdout.split())
    assert (
        "ISP units (spec.pools.isp): transforms [0:2] (fill_null (normalization), hex_to_int (decode))"
        in line
    )
    assert "from spec.transforms[2] (categorify, not offloaded) on, the CPU pool finishes each shard" in line


def test_validate_plans_a_compressed_input_without_writing_where_the_job_will(tmp_path, criteo_lines):
    import gzip

    src = tmp_path / "day.tsv.gz"
    src.write_bytes(gzip.compress(b"".join(criteo_lines) * 3))
    doc = job_doc(str(src), str(tmp_path / "out"))
    doc["spec"]["output"]["rowsPerShard"] = 5000
    res = recprep("validate", write_job(tmp_path, doc))
    assert res.returncode == 0, res.stderr
    assert "7 shards (~30,000 rows)" in " ".join(res.stdout.split())  # its exact lines, one pass
    assert not (tmp_path / "out").exists()
