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

from recprep.workloads.parquet import column, supports, write_table
from recprep.workloads.parquet.column import DICTIONARY_LIMIT
from recprep.workloads.parquet.levels import flatten
from recprep.workloads.parquet.schema import leaves
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
            "ids": pa.array(rng.integers(0, 10**6, n)),  # hashed IDs: DELTA_BINARY_PACKED
            # a user's 50-item history, one list per session of 14 events: BYTE_STREAM_SPLIT
            # once compressed
            "history": pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32) * 50),
                pa.array(
                    rng.integers(0, 10**6, 14 * n + 50)[14 * np.arange(n)[:, None] + np.arange(50)].ravel()
                ),
            ),
            # 20-item windows sliding by one of 5,000 items (13 bits) a row: with snappy or lz4,
            # the dictionary's indices packed at 16 bits
            "recent": pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32) * 20),
                pa.array(rng.integers(0, 10**6, n + 20)[np.arange(n)[:, None] + np.arange(20)].ravel()),
            ),
        }
    )
    for codec in CODECS:
        path = tmp_path / f"t-{codec}.parquet"
        path.write_bytes(write_table(table, codec, logical=plain_schema(table.schema)))
        meta = pq.ParquetFile(path).metadata.row_group(0)
        encodings = {"PLAIN", "RLE_DICTIONARY", "DELTA_BINARY_PACKED"}
        if codec != "none":
            encodings.add("BYTE_STREAM_SPLIT")
        assert {e for i in range(meta.num_columns) for e in meta.column(i).encodings} >= encodings
        if codec in ("snappy", "lz4"):  # the recent items' indices at 2 bytes each, not 13 bits
            # (zstd and gzip make BYTE_STREAM_SPLIT or PLAIN smaller still)
            assert _dictionary_width(path, "recent", codec) == 16, codec
        names = "label, dense, bucket, sparse, hashed, wide, ids, history, recent"
        rows = duckdb.sql(f"SELECT {names} FROM '{path}'").fetchall()
        want = plain_table(table).to_pylist()
        got = [(*r[:3], list(r[3]), *r[4:7], list(r[7]), list(r[8])) for r in rows]
        assert [tuple(r.values()) for r in want] == got, codec


def _page_header(data: bytes) -> tuple[int, list[int]]:
    """(length, i32 values in order) of a Thrift compact struct of i32 fields and nested structs,
    as recprep writes a page header (type, uncompressed size, compressed size, then the data
    page header)."""
    at, depth, values = 0, 1, []
    while depth:
        kind, at = data[at] & 0x0F, at + 1
        if kind == 0:  # stop
            depth -= 1
        elif kind == 12:  # struct
            depth += 1
        else:
            assert kind == 5, kind  # i32: a zigzag varint
            value, shift = 0, 0
            while True:
                value, at, shift = value | (data[at] & 0x7F) << shift, at + 1, shift + 7
                if not data[at - 1] & 0x80:
                    break
            values.append(value >> 1 ^ -(value & 1))
    return at, values


def _dictionary_width(path, name: str, codec: str) -> int:
    """The bit width of a column's dictionary indices: the first byte of its data page's values
    (a v1 page: header, then the repetition and definition levels, each behind its length)."""
    meta = pq.ParquetFile(path).metadata.row_group(0)
    (chunk,) = (
        meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema.startswith(name)
    )
    data = path.read_bytes()[chunk.data_page_offset :]
    header, (_, uncompressed, compressed, *_) = _page_header(data)
    body = pa.decompress(
        data[header : header + compressed], decompressed_size=uncompressed, codec=column.CODECS[codec][1]
    )
    at = 0
    for _ in range(2):  # repetition, then definition levels
        at += 4 + int.from_bytes(body[at : at + 4], "little")
    return body[at]


def test_high_cardinality_goes_without_a_dictionary():
    n = DICTIONARY_LIMIT // 8 + 10
    table = pa.table(
        {
            "x": pa.array(np.arange(n, dtype=np.int64)),
            "y": pa.array(np.zeros(n, np.int64)),
            "z": pa.array(np.arange(n, dtype=np.float64)),
        }
    )
    meta = pq.ParquetFile(io.BytesIO(write_table(table))).metadata.row_group(0)
    assert (
        meta.column(0).encodings == ("RLE", "DELTA_BINARY_PACKED") and not meta.column(0).has_dictionary_page
    )
    assert "RLE_DICTIONARY" in meta.column(1).encodings
    assert meta.column(2).encodings == ("PLAIN", "RLE") and not meta.column(2).has_dictionary_page
    assert pq.read_table(io.BytesIO(write_table(table))).equals(table)


def _chunk(table: pa.Table, codec: str):
    data = write_table(table, codec)
    assert pq.read_table(io.BytesIO(data)).equals(table)
    return pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0)


def _candidate_bytes(table: pa.Table, codec: str) -> dict[str, int]:
    """Compressed bytes of the column's pages in each encoding the writer weighs."""
    (leaf,) = leaves(table.schema)
    flat = flatten(table.column(0).combine_chunks(), leaf)
    levels = column._levels(flat.rep, leaf.max_rep) + column._levels(flat.defs, leaf.max_def)
    names = {
        column.PLAIN: "PLAIN",
        column.RLE_DICTIONARY: "RLE_DICTIONARY",
        column.DELTA_BINARY_PACKED: "DELTA_BINARY_PACKED",
    }
    out = {}
    candidates = column._candidates(flat, leaf)[0]
    for candidate in candidates:
        dict_page, data_page, _ = candidate.pages(levels, flat.num_levels, column.CODECS[codec][1])
        out[names[candidate.encoding]] = len(data_page) + (len(dict_page) if dict_page else 0)
    plain = next(c for c in candidates if c.encoding == column.PLAIN)
    split = column._split_of(plain, leaf.dtype.itemsize)
    out["BYTE_STREAM_SPLIT"] = len(split.pages(levels, flat.num_levels, column.CODECS[codec][1])[1])
    packed = next((c for c in candidates if c.encoding == column.RLE_DICTIONARY), None)
    aligned = column._aligned_of(packed) if packed is not None else None
    if aligned is not None:
        dict_page, data_page, _ = aligned.pages(levels, flat.num_levels, column.CODECS[codec][1])
        out["RLE_DICTIONARY whole bytes"] = len(data_page) + len(dict_page)
    return out


def test_each_chunk_takes_the_encoding_that_makes_it_smallest():
    """Hashed IDs of a large table (nearly all distinct): DELTA_BINARY_PACKED, not a dictionary
    holding every value at full width; a few distinct values: the dictionary; lists sliding by
    one item per row (a user's history feature), compressed: the dictionary with its 15-bit
    indices packed at 16, where the compressor finds each list in the one before (at 15 bits
    each list starts at a different bit of its byte); without compression: the dictionary;
    sliding by 14 items a row (one list per session of a deduplicated history), compressed:
    BYTE_STREAM_SPLIT, where
    the compressor finds the window in every byte plane and folds the high bytes' planes (IDs
    below a million). Each the smallest of the encodings once compressed, though the writer
    compresses only what it needs to compare."""
    rng = np.random.default_rng(0)
    n = 20_000
    items = rng.integers(0, 10**6, n + 50)
    tables = {
        "ids": pa.table({"x": pa.array(rng.integers(0, 10**6, n))}),
        "few": pa.table({"x": pa.array(rng.integers(0, 50, n))}),
        "history": pa.table(
            {
                "x": pa.ListArray.from_arrays(
                    pa.array(np.arange(n + 1, dtype=np.int32) * 50),
                    pa.array(items[np.arange(n)[:, None] + np.arange(50)].ravel()),
                )
            }
        ),
        "sessions": pa.table(
            {
                "x": pa.ListArray.from_arrays(
                    pa.array(np.arange(n // 14 + 1, dtype=np.int32) * 50),
                    pa.array(items[14 * np.arange(n // 14)[:, None] + np.arange(50)].ravel()),
                )
            }
        ),
    }
    expected = {
        ("ids", "snappy"): "DELTA_BINARY_PACKED",
        ("ids", "none"): "DELTA_BINARY_PACKED",
        ("few", "snappy"): "RLE_DICTIONARY",
        ("few", "none"): "RLE_DICTIONARY",
        ("history", "snappy"): "RLE_DICTIONARY whole bytes",
        ("history", "none"): "RLE_DICTIONARY",
        ("sessions", "snappy"): "BYTE_STREAM_SPLIT",
        ("sessions", "zstd"): "BYTE_STREAM_SPLIT",
    }
    for (name, codec), encoding in expected.items():
        chunk, sizes = _chunk(tables[name], codec), _candidate_bytes(tables[name], codec)
        assert min(sizes, key=sizes.get) == encoding, (name, codec, sizes)
        assert encoding.split()[0] in chunk.encodings, (name, codec, chunk.encodings)
        assert chunk.total_compressed_size == sizes[encoding], (name, codec, sizes)


@st.composite
def integer_columns(draw):
    """Integer columns the delta encoding wins on (ramps, hashed IDs) or may (any value), with
    nulls, empty and null lists, dictionaries they arrive in, and sliced offsets."""
    t = draw(st.sampled_from([pa.int32(), pa.int64()]))
    bits = t.bit_width
    rows = draw(st.integers(2, 600))
    shape = draw(st.sampled_from(["ramp", "ids", "any"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = rows * 5 + 10  # enough for rows + 2 lists of at most 5
    if shape == "ramp":
        steps = rng.integers(-3, 40, n)
        values = (draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)) + np.cumsum(steps)).astype(
            t.to_pandas_dtype()
        )  # wraps at the type's ends, as the encoding's differences do
    elif shape == "ids":
        values = rng.integers(0, 10**6, n).astype(t.to_pandas_dtype())
    else:
        values = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), n, dtype=t.to_pandas_dtype())
    nulls = rng.random(n) < draw(st.sampled_from([0.0, 0.1, 0.5]))
    flat = pa.array(values, t, mask=nulls if nulls.any() else None)
    if draw(st.booleans()):  # lists of 0-5 values, some null
        lengths = rng.integers(0, 6, rows + 2)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        items = flat.slice(0, int(offsets[-1]))
        if draw(st.booleans()):
            items = items.dictionary_encode()
        mask = rng.random(rows + 2) < 0.1
        array = pa.ListArray.from_arrays(pa.array(offsets), items, mask=pa.array(mask))
    else:
        array = flat.dictionary_encode() if draw(st.booleans()) else flat
    start = draw(st.integers(0, 2))
    return array.slice(start, rows)


@PROPERTY
@given(col=integer_columns(), codec=st.sampled_from(CODECS))
def test_integer_columns_round_trip_whichever_encoding_wins(col, codec):
    table = pa.table({"x": col})
    data = write_table(table, codec, logical=plain_schema(table.schema))
    want = plain_table(table)
    assert pq.read_table(io.BytesIO(data))["x"].to_pylist() == want["x"].to_pylist()
    assert write_table(table, codec, logical=plain_schema(table.schema)) == data


def test_a_ramp_and_hashed_ids_take_the_delta_encoding_with_nulls_and_offsets():
    rng = np.random.default_rng(1)
    ramp = pa.array(np.cumsum(rng.integers(0, 9, 5000)), mask=rng.random(5000) < 0.2).slice(3)
    ids = pa.array(rng.integers(0, 10**6, 30_000)).dictionary_encode()
    lists = pa.ListArray.from_arrays(pa.array(np.arange(0, 30_001, 3, dtype=np.int32)), ids)
    for col in (ramp, lists):
        table = pa.table({"x": col})
        chunk = _chunk(table, "snappy") if not pa.types.is_list(col.type) else None
        data = write_table(table, "snappy", logical=plain_schema(table.schema))
        meta = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0)
        assert "DELTA_BINARY_PACKED" in meta.encodings, meta.encodings
        assert pq.read_table(io.BytesIO(data))["x"].to_pylist() == plain_table(table)["x"].to_pylist()
        assert chunk is None or chunk.encodings == meta.encodings


def test_unsupported_types_are_refused():
    assert not supports(pa.schema([("s", pa.string())]))
    assert not supports(pa.schema([("l", pa.list_(pa.string()))]))
    assert not supports(pa.schema([("u", pa.uint64())]))
    with pytest.raises(TypeError, match="does not encode"):
        write_table(pa.table({"s": ["a"]}))
