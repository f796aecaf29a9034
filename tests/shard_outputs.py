"""Job outputs for the trainer-side tests: the real Criteo sample preprocessed by recprep (run
once per session), and hand-made output directories with every sparse layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recprep.spec import load_job_dict
from recprep.workloads.output import JOB_FILE, LEDGER_FILE
from recprep.workloads.runner import run_job

from .conftest import job_doc

_outputs: dict[str, Path] = {}


def criteo_output(tmp_path_factory, criteo_tsv: Path, dask_client, rows_per_shard: int = 3000) -> Path:
    """The Criteo sample through the README's recipe, in shards of ``rows_per_shard`` rows."""
    key = f"criteo-{rows_per_shard}"
    if key not in _outputs:
        out = tmp_path_factory.mktemp("criteo-out") / "job"
        doc = job_doc(str(criteo_tsv), str(out))
        doc["spec"]["output"]["rowsPerShard"] = rows_per_shard
        run_job(load_job_dict(doc), client=dask_client)
        _outputs[key] = out
    return _outputs[key]


def write_output(directory: Path, tables: list[pa.Table], order: list[int] | None = None) -> Path:
    """A job output directory holding ``tables`` as shards 0..n-1, committed in ``order``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / JOB_FILE).write_text(json.dumps({"identity": "test", "name": "hand-made"}))
    lines = []
    for i in order if order is not None else range(len(tables)):
        name = f"part-{i:05d}.parquet"
        pq.write_table(tables[i], directory / name)
        digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        lines.append(json.dumps({"shard": i, "file": name, "rows": tables[i].num_rows, "sha256": digest}))
    (directory / LEDGER_FILE).write_text("".join(line + "\n" for line in lines))
    return directory


def layout_table(rows: int, seed: int, start: int = 0) -> pa.Table:
    """label, two dense columns, a list feature with lengths 0-4 and nulls, an int32 scalar
    feature with nulls, a list<int32> feature; ``row_id`` (dense) numbers the rows from ``start``."""
    rng = np.random.default_rng(seed)
    lists = []
    for _ in range(rows):
        n = int(rng.integers(0, 5))
        lists.append(None if n == 4 else [int(x) for x in rng.integers(0, 1000, n)])
    scalars = [None if rng.random() < 0.2 else int(x) for x in rng.integers(0, 7, rows)]
    return pa.table(
        {
            "label": pa.array(rng.integers(0, 2, rows), pa.int64()),
            "row_id": pa.array(np.arange(start, start + rows, dtype=np.float64)),
            "d": pa.array(rng.normal(size=rows)),
            "multi": pa.array(lists, pa.list_(pa.int64())),
            "bucket": pa.array(scalars, pa.int32()),
            "small": pa.array([[int(x)] for x in rng.integers(0, 50, rows)], pa.list_(pa.int32())),
        }
    )
