"""A whole Parquet file (one row group) from an Arrow table, as bytes.

Layout: ``PAR1``, one column chunk per column (see ``column.py``), the FileMetaData footer
(Thrift compact), its length, ``PAR1``. The Arrow schema is stored under ``ARROW:schema`` as
pyarrow does, so readers get the table's exact types back. No timestamps or host names: the
same table and compression always give the same bytes.
"""

from __future__ import annotations

import base64
import functools

import pyarrow as pa

from ... import __version__
from . import column, thrift
from .schema import leaves, schema_elements

CREATED_BY = f"recprep version {__version__}"
MAGIC = b"PAR1"


@functools.lru_cache(maxsize=64)
def _schema(columns: tuple) -> list[bytes]:
    """The encoded SchemaElements (the same for every shard of a job)."""
    return [thrift.struct(element) for element in schema_elements(list(columns))]


def supports(schema: pa.Schema) -> bool:
    """Whether :func:`write_table` encodes every column of ``schema``."""
    return leaves(schema) is not None


def write_table(
    table: pa.Table,
    compression: str = "snappy",
    statistics: frozenset[str] | None = None,
    logical: pa.Schema | None = None,
) -> bytes:
    """``table`` as one Parquet file with one row group. ``statistics``: the flat columns that
    get min/max/null-count statistics (None: every flat column). ``logical``: the Arrow schema
    stored for readers (default: the table's; give the plain one to hide dictionary encoding)."""
    columns = leaves(table.schema)
    if columns is None:
        raise TypeError(f"recprep's Parquet writer does not encode this schema: {table.schema}")
    out = bytearray(MAGIC)
    chunks: list[thrift.Fields] = []
    total_uncompressed = 0
    for leaf, name in zip(columns, table.column_names):
        col = table[name]
        array = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if isinstance(array, pa.DictionaryArray) and col.num_chunks > 1:
            array = col.unify_dictionaries().combine_chunks()
        chunk = column.encode(array, leaf, compression, statistics is None or name in statistics)
        base = len(out)
        meta = list(chunk.meta) + [(9, "i64", base + chunk.data_offset)]
        if chunk.dictionary_offset is not None:
            meta.append((11, "i64", base + chunk.dictionary_offset))
        meta.sort(key=lambda f: f[0])
        chunks.append([(2, "i64", base), (3, "struct", meta)])
        out += chunk.data
        total_uncompressed += chunk.uncompressed
    row_group = [
        (1, "list:struct", chunks),
        (2, "i64", total_uncompressed),
        (3, "i64", table.num_rows),
        (5, "i64", len(MAGIC)),
        (6, "i64", len(out) - len(MAGIC)),
        (7, "i16", 0),
    ]
    arrow_schema = base64.b64encode((logical or table.schema).serialize().to_pybytes())
    footer = thrift.struct(
        [
            (1, "i32", 2),
            (2, "list:raw", _schema(tuple(columns))),
            (3, "i64", table.num_rows),
            (4, "list:struct", [row_group]),
            (5, "list:struct", [[(1, "binary", "ARROW:schema"), (2, "binary", arrow_schema)]]),
            (6, "binary", CREATED_BY),
            # ColumnOrder TYPE_ORDER per leaf: without it readers ignore min_value/max_value
            (7, "list:struct", [[(1, "struct", [])] for _ in columns]),
        ]
    )
    out += footer + len(footer).to_bytes(4, "little") + MAGIC
    return bytes(out)
