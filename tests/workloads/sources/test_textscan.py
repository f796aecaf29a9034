"""The C scanner (the text sources' fast path) against pyarrow's CSV reader (the general path):
on any input it either declines or gives exactly pyarrow's table, hex columns decoded."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recprep.errors import SourceError
from recprep.op_params import HexToIntParams
from recprep.spec import SourceSpec
from recprep.workloads.ops.base import decode
from recprep.workloads.ops.hex_to_int import HexToInt
from recprep.workloads.sources import open_source, text

pytestmark = pytest.mark.skipif(text._scan is None, reason="the _textscan extension is not built")

NAMES = ["label", "d1", "d2", "s1", "s2", "note"]
INTS = [
    "0",
    "-5",
    "007",
    "123456789012345678",
    "+5",
    " 5",
    "0x10",
    "",
    "NA",
    "nan",
    "1.5",
    "99999999999999999999",
    "abc",
    "-",
    "-0",
]
FLOATS = [
    "1.5",
    "5.",
    ".5",
    "-0",
    "+1.5",
    "1e5",
    "1E+05",
    "1.e5",
    "-2.5e-3",
    "inf",
    "-inf",
    "nan",
    "NaN",
    "",
    "1.5e",
    "abc",
    "0.1",
    "123456789012345678",
    "1e400",
    "4.9e-324",
    ".",
    "+.5",
    "12345678901234567890.5",
    "NULL",
    "#N/A",
    " 1",
]
HEXES = [
    "68fd1e64",
    "",
    "ABCDEF",
    "g1",
    "ffffffffffffffff",
    "10000000000000000",
    "NULL",
    "0",
    "N/A",
    "80e26c9b",
    "\u00e9",
    "a b",
]
STRINGS = ["x", "", "hello world", "null", "\u00fcber", "a,b"]


def source_for(path, header=False, delimiter="\t"):
    return open_source(
        SourceSpec.model_validate(
            {
                "uri": str(path),
                "format": "tsv" if delimiter == "\t" else "csv",
                "header": header,
                "columns": None if header else NAMES,
                "delimiter": delimiter,
                "label": "label",
                "dense": ["d1", "d2"],
                "sparse": ["s1", "s2"],
            }
        )
    )


def float_bits(array: pa.Array) -> tuple[list, np.ndarray]:
    valid = np.asarray(array.is_valid())
    return valid.tolist(), np.where(valid, array.fill_null(0).to_numpy().view(np.int64), 0)


def assert_same(fast: pa.Table, slow: pa.Table, decode_hex: set[str]) -> None:
    assert fast.column_names == slow.column_names
    hex_op = HexToInt(HexToIntParams())
    for name in fast.column_names:
        got = decode(fast[name].combine_chunks())
        want = decode(slow[name].combine_chunks())
        if name in decode_hex:
            want = decode(hex_op.transform(slow[name].combine_chunks()))
        assert got.type == want.type, name
        if pa.types.is_floating(got.type):
            assert float_bits(got)[0] == float_bits(want)[0], name
            assert (float_bits(got)[1] == float_bits(want)[1]).all(), name
        else:
            assert got.to_pylist() == want.to_pylist(), name


row = st.tuples(
    st.sampled_from(INTS),
    st.sampled_from(FLOATS),
    st.sampled_from(FLOATS),
    st.sampled_from(HEXES),
    st.sampled_from(HEXES),
    st.sampled_from(STRINGS),
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(row, max_size=12),
    extra=st.lists(
        st.sampled_from(["", "\r", '"', "short", "too\tmany\tfields\there\tnow\tx\ty"]), max_size=2
    ),
    data=st.data(),
)
def test_scan_declines_or_equals_pyarrow(tmp_path_factory, rows, extra, data):
    lines = ["\t".join(r) for r in rows]
    for piece in extra:  # a line of a different shape somewhere, or a CR / a quote in a line
        at = data.draw(st.integers(0, len(lines)))
        if piece in ("\r", '"') and lines:
            lines[at % len(lines)] += piece
        else:
            lines.insert(at, piece)
    text_bytes = ("\n".join(lines) + data.draw(st.sampled_from(["", "\n"]))).encode()
    path = tmp_path_factory.mktemp("scan") / "data.tsv"
    path.write_bytes(text_bytes)
    source = source_for(path)
    splits = source.splits(10**6)
    if not splits:  # an empty file has nothing to read
        return
    (split,) = splits
    raw = source._bytes(split)
    decode_hex = {"s1"}
    fast = scanned(source, raw, split, decode_hex)
    try:
        slow_table, slow_bad, _ = source._read_arrow(raw, split)
    except SourceError:
        assert fast is None  # pyarrow refuses the piece: the fast path must not accept it
        return
    if fast is None:
        return
    assert not slow_bad, "the fast path accepted a piece with malformed rows"
    assert_same(fast, slow_table, decode_hex)


def scanned(source, raw, split, decode_hex):
    """The scanner's table of the piece, or None when it declines it."""
    result = source._scan(raw, split, frozenset(decode_hex))
    return None if result is None else result[0]


def test_scan_takes_the_common_case(tmp_path):
    lines = ["1\t5\t-2.5\t68fd1e64\t\tnote", "0\t\t1e3\t\t80e26c9b\t", "", "1\t-3\tnan\tABC\tg\tx"]
    path = tmp_path / "data.tsv"
    path.write_text("\n".join(lines) + "\n")
    source = source_for(path)
    (split,) = source.splits(10**6)
    raw = source._bytes(split)
    fast = scanned(source, raw, split, {"s1", "s2"})
    assert fast is not None
    assert fast["s1"].to_pylist() == [0x68FD1E64, None, 0xABC]
    assert fast["s2"].to_pylist() == [None, 0x80E26C9B, None]  # "g" is not hex
    assert fast["d2"].to_pylist()[:2] == [-2.5, 1000.0] and fast["d2"].null_count == 1
    assert fast["d1"].to_pylist() == [5.0, None, -3.0]
    assert_same(fast, source._read_arrow(raw, split)[0], {"s1", "s2"})


def test_scan_with_header_and_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(",".join(NAMES) + "\n1,2,3,ff,ee,a\n0,,,,,\n")
    source = source_for(path, header=True, delimiter=",")
    (split,) = source.splits(10**6)
    fast = scanned(source, source._bytes(split), split, {"s1"})
    assert fast is not None and fast.num_rows == 2
    assert fast["s1"].to_pylist() == [255, None] and fast["s2"].to_pylist() == ["ee", None]
    assert_same(fast, source._read_arrow(source._bytes(split), split)[0], {"s1"})


def test_declined_split_still_quarantines(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("1\t2\t3\tff\tee\ta\n1\t2\n0\t1\t1\tab\tcd\tb\n")
    source = source_for(path)
    (split,) = source.splits(10**6)
    result = source.read(split, frozenset({"s1"}))
    assert result.table.num_rows == 2 and [b.line for b in result.bad] == [2]
