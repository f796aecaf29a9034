"""The README's Criteo manifest on the real Criteo sample, checked value by value against an
independent per-row reference written with the csv module and math (not pyarrow/numpy)."""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from recprep.spec import load_job_dict
from recprep.workloads.ops.hashing import mix64
from recprep.workloads.runner import run_job

from ..conftest import job_doc

BORDERS = [0.5, 1.0, 1.5]


def reference_rows(path):
    """Per-row reference for fill_null(0), log(offset 3), bucketize(I1), to_list, firstx(1)."""
    text = gzip.open(path).read().decode()
    for fields in csv.reader(io.StringIO(text), delimiter="\t"):
        dense = [math.log(max(float(v) if v else 0.0, -2.0) + 3.0) for v in fields[1:14]]
        bucket = bisect.bisect_left(BORDERS, dense[0])  # borders strictly below x
        sparse = [[v] if v else [] for v in fields[14:40]]
        yield int(fields[0]), dense, bucket, sparse


@pytest.fixture(scope="module")
def output(criteo_sample, tmp_path_factory, dask_client):
    out = tmp_path_factory.mktemp("out")
    job = load_job_dict(job_doc(str(criteo_sample), str(out)))
    summary = run_job(job, client=dask_client)
    return out, summary


def test_writes_every_row_matching_reference(criteo_sample, output):
    out, summary = output
    assert summary.rows_written == 10_000 and summary.rows_quarantined == 0
    table = pq.read_table(out)
    assert table.num_rows == 10_000
    cols = table.to_pydict()
    for i, (label, dense, bucket, sparse) in enumerate(reference_rows(criteo_sample)):
        assert cols["label"][i] == label
        for j, value in enumerate(dense):
            assert math.isclose(cols[f"I{j + 1}"][i], value, rel_tol=1e-12, abs_tol=1e-12)
        assert cols["I1_bucket"][i] == bucket
        for j, ids in enumerate(sparse):
            assert len(cols[f"C{j + 1}"][i]) == len(ids)  # to_list + firstx(1): one ID, or none


def _python_sigrid(hex_id: str, salt: int, max_value: int) -> int:
    mask = (1 << 64) - 1
    z = (int(hex_id, 16) + salt * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) % max_value


def test_sigrid_hash_values_in_range_and_equal_reference(criteo_sample, output):
    out, _ = output
    table = pq.read_table(out).to_pydict()
    rows = list(csv.reader(io.StringIO(gzip.open(criteo_sample).read().decode()), delimiter="\t"))
    for j in range(26):
        col = table[f"C{j + 1}"]
        for i in range(0, 10_000, 97):
            raw = rows[i][14 + j]
            assert col[i] == ([_python_sigrid(raw, 0, 1_000_000)] if raw else [])
        flat = [v for lst in col for v in lst]
        assert 0 <= min(flat) and max(flat) < 1_000_000


def test_sigrid_hash_deterministic_and_salted(criteo_sample, output, tmp_path, dask_client):
    out, _ = output
    doc = job_doc(str(criteo_sample), str(tmp_path / "again"))
    run_job(load_job_dict(doc), client=dask_client)
    assert (tmp_path / "again" / "part-00000.parquet").read_bytes() == (
        out / "part-00000.parquet"
    ).read_bytes()
    doc = job_doc(str(criteo_sample), str(tmp_path / "salted"))
    doc["spec"]["transforms"][4]["salt"] = 12345
    run_job(load_job_dict(doc), client=dask_client)
    a = pq.read_table(out, columns=["C3"])["C3"].to_pylist()
    b = pq.read_table(tmp_path / "salted", columns=["C3"])["C3"].to_pylist()
    changed = sum(x != y for x, y in zip(a, b) if x)
    assert changed > 0.99 * sum(1 for x in a if x)


def test_sigrid_hash_is_uniform_chi_square(criteo_sample):
    """Distinct IDs of the sample hashed into 64 buckets: a chi-square test cannot reject
    uniformity (p > 0.001), for two salts."""
    ids = set()
    for fields in csv.reader(io.StringIO(gzip.open(criteo_sample).read().decode()), delimiter="\t"):
        ids.update(int(v, 16) for v in fields[14:] if v)
    ids = np.array(sorted(ids), dtype=np.int64)
    assert len(ids) > 20_000
    for salt in (0, 99):
        buckets = (mix64(ids, salt) % np.uint64(64)).astype(np.int64)
        counts = np.bincount(buckets, minlength=64)
        assert stats.chisquare(counts).pvalue > 0.001
