"""Per-row digests of shard tables, vectorized: two tables hold the same rows (as a multiset)
exactly when their sorted digests are equal, so a lost or repeated row shows up."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recprep.workloads.ops.hashing import mix64


def _column_hash(col: pa.Array) -> np.ndarray:
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        col = col.fill_null(pa.scalar([], col.type)) if col.null_count else col
        offsets = col.offsets.to_numpy().astype(np.int64)
        offsets = offsets - offsets[0]
        values = pc.fill_null(col.flatten(), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        lengths = np.diff(offsets)
        row = np.repeat(np.arange(len(col)), lengths)
        position = np.arange(len(values)) - offsets[:-1][row]
        elem = mix64(mix64(values.view(np.uint64)) + position.astype(np.uint64))
        sums = np.zeros(len(col), dtype=np.uint64)
        np.add.at(sums, row, elem)
        return mix64(sums, salt=1) ^ mix64(lengths.astype(np.uint64), salt=2)
    if pa.types.is_floating(col.type):
        values = pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
        bits = values.view(np.uint64)
    else:
        bits = pc.fill_null(col, 0).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
    nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=np.uint64)
    return mix64(bits, salt=3) ^ nulls


def row_digests(table: pa.Table) -> np.ndarray:
    """One uint64 per row over every column (by name, in sorted name order)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    digest = np.zeros(table.num_rows, dtype=np.uint64)
    for j, name in enumerate(sorted(table.column_names)):
        col = table[name].combine_chunks() if table.num_rows else pa.array([], table.schema.field(name).type)
        digest = mix64(digest ^ _column_hash(col), salt=j + 10)
    return digest
