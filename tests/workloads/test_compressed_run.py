"""A job on a gzip-compressed input writes the same shards, byte for byte, as the same job on
the input uncompressed: many shards (not one), planned once, on a Dask cluster of 2 workers."""

from __future__ import annotations

import gzip

import pytest

from recprep.spec import load_job_dict
from recprep.workloads.output.layout import INDEX_DIR
from recprep.workloads.runner import run_job

from ..conftest import job_doc


@pytest.mark.integration
def test_a_gzip_input_writes_the_shards_of_the_same_input_uncompressed(criteo_lines, tmp_path, dask_client):
    text = b"".join(criteo_lines) * 12  # 120,000 real Criteo rows
    plain, packed = tmp_path / "day.tsv", tmp_path / "day.tsv.gz"
    plain.write_bytes(text)
    packed.write_bytes(gzip.compress(text, 6))
    outputs = {}
    for path in (plain, packed):
        doc = job_doc(str(path), str(tmp_path / f"out-{path.name}"))
        doc["spec"]["output"]["rowsPerShard"] = 8192
        summary = run_job(load_job_dict(doc), client=dask_client)
        assert summary.rows_written == 120_000 and summary.rows_quarantined == 0
        outputs[path.name] = tmp_path / f"out-{path.name}"
    ours = sorted(outputs["day.tsv.gz"].glob("part-*.parquet"))
    theirs = sorted(outputs["day.tsv"].glob("part-*.parquet"))
    assert 12 <= len(ours) == len(theirs) <= 18  # ~120,000 / 8,192, as the plain file's
    for a, b in zip(ours, theirs):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    kept = sorted(p.suffix for p in (outputs["day.tsv.gz"] / INDEX_DIR).iterdir())
    assert kept == [".gzidx", ".json"]  # the plan and index the shard tasks read
    # a second run over the same output resumes: nothing left to do, the plan is reused
    again = run_job(load_job_dict(doc), client=dask_client)
    assert again.shards_skipped == len(ours) and again.rows_processed == 0
