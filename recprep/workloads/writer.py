"""Shard files: a transformed table encoded as the bytes of one Parquet shard.

The same table always gives the same bytes (no timestamps in the file; one row group per
shard), which is what makes a retried or resumed shard indistinguishable from the first try.
Putting the bytes in place and committing them is the output contract's (``output.writer``).

Shards of numeric columns and lists of them (every recprep pipeline's training output) are
encoded by recprep's own Parquet writer (``parquet/``), which writes dictionary-encoded columns
as they are and builds levels column-wise; pyarrow's writer is several times slower on list
columns. Any other column type sends the shard to pyarrow's writer.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from .ops.base import decode

try:
    from . import parquet
except ImportError:  # a source tree without the built extension: pyarrow writes every shard
    parquet = None


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
