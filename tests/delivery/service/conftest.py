"""A small job output made by recprep itself (synthetic Criteo rows through the Criteo recipe),
shared read-only by the service tests; each test keeps its acknowledgements in its own state dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job

from ...conftest import job_doc
from .rows import row_digests

ROWS, ROWS_PER_SHARD = 36_000, 2_000  # 18 shards


def synthetic_doc(
    output: Path, rows: int = ROWS, rows_per_shard: int = ROWS_PER_SHARD, seed: int = 7
) -> dict:
    doc = job_doc(f"synthetic://criteo?rows={rows}&seed={seed}", str(output))
    doc["metadata"]["name"] = "service-test"
    doc["spec"]["output"]["rowsPerShard"] = rows_per_shard
    return doc


@pytest.fixture(scope="session")
def job_output(tmp_path_factory, dask_client) -> Path:
    out = tmp_path_factory.mktemp("service") / "out"
    summary = run_job(load_job_dict(synthetic_doc(out)), client=dask_client)
    assert summary.rows_written == ROWS and summary.shards == ROWS // ROWS_PER_SHARD
    return out


@pytest.fixture(scope="session")
def output_digests(job_output) -> np.ndarray:
    return np.sort(row_digests(pq.read_table(job_output)))
