"""Shard files: written under a temporary name, checksummed, then renamed into place.

The same table always gives the same bytes (no timestamps in the file; one row group per
shard), which is what makes a retried or resumed shard indistinguishable from the first try.

Shards of numeric columns and lists of them (every recprep pipeline's training output) are
encoded by recprep's own Parquet writer (``parquet/``), which writes dictionary-encoded columns
as they are and builds levels column-wise; pyarrow's writer is several times slower on list
columns. Any other column type sends the shard to pyarrow's writer.
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

try:
    from . import parquet
except ImportError:  # a source tree without the built extension: pyarrow writes every shard
    parquet = None

QUARANTINE_DIR = "_quarantine"


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass
class WrittenFile:
    name: str
    rows: int
    bytes: int
    sha256: str


def plain_type(dtype: pa.DataType) -> pa.DataType:
    """``dtype`` with dictionary encoding removed (also inside lists)."""
    if pa.types.is_dictionary(dtype):
        return dtype.value_type
    if pa.types.is_list(dtype) and pa.types.is_dictionary(dtype.value_type):
        return pa.list_(dtype.value_field.with_type(dtype.value_type.value_type))
    return dtype


def plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(plain_type(f.type)) for f in schema], metadata=schema.metadata)


def plain_table(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns (and list elements) decoded, so every shard has the same plain
    schema."""
    schema = plain_schema(table.schema)
    if schema == table.schema:
        return table
    cols = []
    for name, f in zip(table.column_names, schema):
        col = table[name]
        if pa.types.is_dictionary(col.type):
            col = pa.chunked_array([decode(c) for c in col.chunks], type=f.type)
        elif col.type != f.type:
            col = pa.chunked_array([_decode_list(c) for c in col.chunks], type=f.type)
        cols.append(col)
    return pa.table(cols, schema=schema)


def _decode_list(array: pa.ListArray) -> pa.ListArray:
    mask = array.is_null() if array.null_count else None
    offsets = array.offsets if mask is None or not array.offset else pa.array(array.offsets.to_numpy())
    return pa.ListArray.from_arrays(offsets, decode(array.values), mask=mask)


def _atomic_write(directory: str, name: str, payload: bytes, fsync: bool) -> None:
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    with open(tmp, "wb") as f:
        f.write(payload)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, name))


def shard_bytes(table: pa.Table, compression: str) -> bytes:
    """The Parquet file of one shard: one row group, statistics on the flat columns."""
    scalar_cols = [f.name for f in table.schema if not pa.types.is_nested(f.type)]
    if parquet is not None and parquet.supports(table.schema):
        return parquet.write_table(table, compression, frozenset(scalar_cols), plain_schema(table.schema))
    table = plain_table(table)
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=None if compression == "none" else compression,
        row_group_size=max(table.num_rows, 1),
        # min/max of hashed ID lists help no reader and cost a third of the write time
        write_statistics=scalar_cols,
    )
    return sink.getvalue().to_pybytes()


def write_shard(table: pa.Table, directory: str, index: int, compression: str, fsync: bool = False) -> WrittenFile:
    payload = shard_bytes(table, compression)
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
