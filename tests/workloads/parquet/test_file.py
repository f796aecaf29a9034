"""recprep's Parquet writer: what it writes reads back identically with pyarrow and with an
independent reader (DuckDB), for every layout it takes (nulls, dictionaries, lists, slices)."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recprep.workloads.parquet import supports, write_table
from recprep.workloads.parquet.column import DICTIONARY_LIMIT
from recprep.workloads.writer import plain_schema, plain_table

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CODECS = ["none", "snappy", "zstd", "gzip", "lz4"]
TYPES = {
    pa.int32(): st.integers(-(2**31), 2**31 - 1),
    pa.int64(): st.integers(-(2**63), 2**63 - 1),
    pa.float32(): st.floats(width=32, allow_nan=True, allow_infinity=True),
    pa.float64(): st.floats(allow_nan=True, allow_infinity=True),
}


def small(strategy):
    """Mostly few distinct values (dictionary pages), sometimes any."""
    return st.one_of(st.sampled_from([0, 1, 2, 7, -3]), strategy)


@st.composite
def columns(draw, rows: int):
    t = draw(st.sampled_from(list(TYPES)))
    value = (
        small(TYPES[t])
        if not pa.types.is_floating(t)
        else st.one_of(st.sampled_from([0.0, -0.0, 1.5]), TYPES[t])
    )
    nullable = st.one_of(st.none(), value) if draw(st.booleans()) else value
    shape = draw(st.sampled_from(["flat", "dict", "dict-null-entry", "list", "list-dict"]))
    if shape.startswith("list"):
        item = pa.field("item", t, nullable=True)
        lists = draw(
            st.lists(st.one_of(st.none(), st.lists(nullable, max_size=4)), min_size=rows, max_size=rows)
        )
        array = pa.array(lists, pa.list_(item))
        if shape == "list-dict":
            array = pa.ListArray.from_arrays(
                array.offsets,
                array.values.dictionary_encode(),
                mask=array.is_null() if array.null_count else None,
            )
        return array
    array = pa.array(draw(st.lists(nullable, min_size=rows, max_size=rows)), t)
    if shape == "dict":
        return array.dictionary_encode()
    if shape == "dict-null-entry":
        import pyarrow.compute as pc

        return pc.dictionary_encode(array, null_encoding="encode")
    return array


@st.composite
def tables(draw):
    rows = draw(st.integers(0, 40))
    n = draw(st.integers(1, 4))
    cols = [draw(columns(rows + 3)) for _ in range(n)]
    start = draw(st.integers(0, 3))  # sliced columns: non-zero array offsets
    cols = [c.slice(start, rows) for c in cols]
    return pa.table(cols, names=[f"c{i}" for i in range(n)])


def same(got: list, want: list) -> bool:
    def eq(a, b):
        if isinstance(a, list) or isinstance(b, list):
            return a is not None and b is not None and len(a) == len(b) and all(map(eq, a, b))
        if isinstance(a, float) and isinstance(b, float):
            return (math.isnan(a) and math.isnan(b)) or (
                a == b and math.copysign(1, a) == math.copysign(1, b)
            )
        return a == b

    return len(got) == len(want) and all(map(eq, got, want))


@PROPERTY
@given(table=tables(), codec=st.sampled_from(CODECS))
def test_round_trip_through_pyarrow(table, codec):
    assert supports(table.schema)
    data = write_table(table, codec, logical=plain_schema(table.schema))
    back = pq.read_table(io.BytesIO(data))
    want = plain_table(table)
    reference = pq.read_table(_pyarrow_bytes(want))  # what pyarrow's own writer reads back as
    assert back.schema == reference.schema
    for name in want.column_names:
        assert same(back[name].to_pylist(), want[name].to_pylist()), name
    assert write_table(table, codec, logical=plain_schema(table.schema)) == data  # deterministic


def _pyarrow_bytes(table: pa.Table) -> pa.BufferReader:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return pa.BufferReader(sink.getvalue())


@PROPERTY
@given(table=tables())
def test_statistics_match_the_values(table):
    meta = pq.ParquetFile(io.BytesIO(write_table(table))).metadata
    plain = plain_table(table)
    for i, name in enumerate(plain.column_names):
        col = plain[name]
        if pa.types.is_list(col.type):
            continue
        stats = meta.row_group(0).column(i).statistics
        assert stats.null_count == col.null_count
        values = [
            v for v in col.to_pylist() if v is not None and not (isinstance(v, float) and math.isnan(v))
        ]
        if values:
            assert stats.has_min_max and stats.min == min(values) and stats.max == max(values)


def test_independent_reader_duckdb(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    rng = np.random.default_rng(0)
    n = 5000
    ids = rng.integers(0, 300, n)
    lengths = rng.integers(0, 3, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    table = pa.table(
        {
            "label": pa.array(rng.integers(0, 2, n)),
            "dense": pa.array(np.log(rng.integers(1, 50, n) + 3.0), mask=rng.random(n) < 0.1),
            "bucket": pa.array(rng.integers(0, 4, n).astype(np.int32)),
            "sparse": pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(rng.integers(0, 10**6, offsets[-1]))
            ),
            "hashed": pa.array(ids).dictionary_encode(),
            "wide": pa.array(rng.integers(-(2**62), 2**62, n)),  # distinct everywhere: PLAIN
        }
    )
    for codec in CODECS:
        path = tmp_path / f"t-{codec}.parquet"
        path.write_bytes(write_table(table, codec, logical=plain_schema(table.schema)))
        rows = duckdb.sql(f"SELECT label, dense, bucket, sparse, hashed, wide FROM '{path}'").fetchall()
        want = plain_table(table).to_pylist()
        assert [tuple(r.values()) for r in want] == [(a, b, c, list(d), e, f) for a, b, c, d, e, f in rows], (
            codec
        )


def test_high_cardinality_falls_back_to_plain():
    n = DICTIONARY_LIMIT // 8 + 10
    table = pa.table({"x": pa.array(np.arange(n, dtype=np.int64)), "y": pa.array(np.zeros(n, np.int64))})
    meta = pq.ParquetFile(io.BytesIO(write_table(table))).metadata.row_group(0)
    assert "RLE_DICTIONARY" not in meta.column(0).encodings and not meta.column(0).has_dictionary_page
    assert "RLE_DICTIONARY" in meta.column(1).encodings
    assert pq.read_table(io.BytesIO(write_table(table))).equals(table)


def test_unsupported_types_are_refused():
    assert not supports(pa.schema([("s", pa.string())]))
    assert not supports(pa.schema([("l", pa.list_(pa.string()))]))
    assert not supports(pa.schema([("u", pa.uint64())]))
    with pytest.raises(TypeError, match="does not encode"):
        write_table(pa.table({"s": ["a"]}))
