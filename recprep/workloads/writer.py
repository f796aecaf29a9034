"""Shard files: written under a temporary name, checksummed, then renamed into place.

The same table always gives the same bytes (no timestamps in the file; one row group per
shard), which is what makes a retried or resumed shard indistinguishable from the first try.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from .ops.base import decode
from .sources import BadRow

QUARANTINE_DIR = "_quarantine"


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass
class WrittenFile:
    name: str
    rows: int
    bytes: int
    sha256: str


def plain_table(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns decoded, so every shard has the same plain schema."""
    if not any(pa.types.is_dictionary(f.type) for f in table.schema):
        return table
    cols = []
    for name in table.column_names:
        col = table[name]
        if pa.types.is_dictionary(col.type):
            col = pa.chunked_array([decode(c) for c in col.chunks], type=col.type.value_type)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _atomic_write(directory: str, name: str, payload: bytes, fsync: bool) -> None:
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    with open(tmp, "wb") as f:
        f.write(payload)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, name))


def write_shard(table: pa.Table, directory: str, index: int, compression: str, fsync: bool = False) -> WrittenFile:
    table = plain_table(table)
    scalar_cols = [f.name for f in table.schema if not pa.types.is_nested(f.type)]
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=None if compression == "none" else compression,
        row_group_size=max(table.num_rows, 1),
        # min/max of hashed ID lists help no reader and cost a third of the write time
        write_statistics=scalar_cols,
    )
    payload = sink.getvalue().to_pybytes()
    name = shard_name(index)
    _atomic_write(directory, name, payload, fsync)
    return WrittenFile(name, table.num_rows, len(payload), hashlib.sha256(payload).hexdigest())


def write_quarantine(rows: list[BadRow], directory: str, index: int, fsync: bool = False) -> str:
    """Malformed rows of shard ``index`` as JSON lines; returns the file's path in the output."""
    qdir = os.path.join(directory, QUARANTINE_DIR)
    os.makedirs(qdir, exist_ok=True)
    name = f"part-{index:05d}.jsonl"
    lines = "".join(
        json.dumps({"file": r.file, "line": r.line, "reason": r.reason, "text": r.text}) + "\n" for r in rows
    )
    _atomic_write(qdir, name, lines.encode(), fsync)
    return f"{QUARANTINE_DIR}/{name}"
