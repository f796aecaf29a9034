"""hex_to_int: 1-16 hex digits (either case) -> int64; empty, null or non-hex -> null; 16-digit
values >= 2**63 wrap to the int64 with the same bit pattern; wider IDs are folded into 64 bits
(leading zeros skipped, groups of 16 digits from the right, highest first, h = mix64(h ^ g))."""

from __future__ import annotations

import string

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._reference_hash import MASK, mix64
from ._support import PROPERTY, assert_values, check_elementwise, make, nullable

HEX = "0123456789abcdefABCDEF"


def reference(s):
    if s is None or isinstance(s, bytes) and not s:
        return None
    if isinstance(s, bytes):
        try:
            s = s.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not s or any(c not in HEX for c in s):
        return None
    digits = [HEX.index(c.lower()) for c in s]
    while len(digits) > 16 and digits[0] == 0:
        digits.pop(0)
    if len(digits) <= 16:
        value = 0
        for d in digits:
            value = value * 16 + d
    else:  # fold: groups of 16 from the right, highest group first
        cut = len(digits) % 16 or 16
        groups = [digits[:cut]] + [digits[i : i + 16] for i in range(cut, len(digits), 16)]
        value = 0
        for group in groups:
            g = 0
            for d in group:
                g = g * 16 + d
            value = mix64((value ^ g) & MASK)
    return value - 2**64 if value >= 2**63 else value


hex_ids = st.text(HEX, min_size=1, max_size=16)
long_hex = st.text(HEX, min_size=17, max_size=70)
ascii_junk = st.text(string.printable, max_size=18)
# a valid ID with one character swapped for something that is not a hex digit
broken_hex = st.tuples(hex_ids, st.sampled_from(list("gGxX -+_.\x00é")), st.integers(0, 15)).map(
    lambda t: t[0][: t[2]] + t[1] + t[0][t[2] + 1 :]
)
any_string = st.one_of(
    hex_ids,
    hex_ids,
    long_hex,
    ascii_junk,
    broken_hex,
    st.text(max_size=10),
    st.just(""),
    st.sampled_from(["ffffffffffffffff", "8000000000000000", "7fffffffffffffff", "0", "0x1f", " 1f"]),
)

# the Criteo shape: every ID exactly 8 characters (the op's fast path), empty strings mixed in
eight = st.one_of(
    st.text(HEX, min_size=8, max_size=8),
    st.text(HEX, min_size=8, max_size=8),
    st.text(string.printable, min_size=8, max_size=8),
)
criteo_ids = st.lists(st.one_of(eight, st.just(""), st.none()), max_size=60)
mixed_ids = st.lists(nullable(any_string), max_size=60)

string_types = st.sampled_from([pa.string(), pa.large_string()])


@PROPERTY
@given(values=criteo_ids, arrow_type=string_types)
def test_eight_character_ids(values, arrow_type):
    op = make("hex_to_int")
    check_elementwise(op, values, arrow_type, reference, out_type=pa.int64())


@PROPERTY
@given(values=mixed_ids, arrow_type=string_types)
def test_mixed_lengths(values, arrow_type):
    op = make("hex_to_int")
    check_elementwise(op, values, arrow_type, reference, out_type=pa.int64())


@PROPERTY
@given(values=st.one_of(criteo_ids, mixed_ids), data=st.data(), arrow_type=string_types)
def test_sliced_arrays(values, data, arrow_type):
    op = make("hex_to_int")
    array = pa.array(values, arrow_type)
    start = data.draw(st.integers(0, len(values)))
    length = data.draw(st.integers(0, len(values) - start))
    for offset, size in ((start, length), (3, 10)):
        sliced = array.slice(offset, size)
        want = [reference(v) for v in values[offset : offset + size]]
        assert_values(op.transform(sliced).to_pylist(), want, what=f"slice({offset}, {size})")
        assert_values(
            op.transform(sliced.dictionary_encode()).to_pylist(),
            want,
            what=f"dictionary of slice({offset}, {size})",
        )


@PROPERTY
@given(values=st.lists(nullable(st.one_of(hex_ids.map(str.encode), st.binary(max_size=17))), max_size=40))
def test_binary_columns(values):
    op = make("hex_to_int")
    check_elementwise(op, values, pa.binary(), reference, out_type=pa.int64())


@pytest.mark.parametrize(
    "text, want",
    [
        ("68fd1e64", 0x68FD1E64),
        ("68FD1E64", 0x68FD1E64),
        ("0", 0),
        ("F", 15),
        ("7fffffffffffffff", 2**63 - 1),
        ("8000000000000000", -(2**63)),
        ("ffffffffffffffff", -1),
        ("0000000000000001", 1),
        ("00000000000000001", 1),  # 17 digits, 1 significant: the plain value
        ("d41d8cd98f00b204e9800998ecf8427e", 3021144707574031991),  # MD5-style: folded, not dropped
        ("D41D8CD98F00B204E9800998ECF8427E", 3021144707574031991),
        ("1" * 17, -1759345975842387248),
        ("", None),
        (None, None),
        ("0x1f", None),
        ("1f ", None),
        ("g", None),
        ("-1", None),
        ("１", None),  # a full-width digit is not a hex digit
    ],
)
def test_examples(text, want):
    op = make("hex_to_int")
    # alone, next to 8-character IDs (fast path) and next to other lengths (general path)
    for values in ([text], [text, "00000001"], [text, "1", "abc"]):
        got = op.transform(pa.array(values, pa.string())).to_pylist()
        assert got[0] == want, (values, got)


def test_empty_and_all_null():
    op = make("hex_to_int")
    for array in (
        pa.array([], pa.string()),
        pa.array(["ab"]).slice(1, 0),
        pa.array([None, None], pa.string()),
        pa.array(["", ""]),
    ):
        out = op.transform(array)
        assert out.type == pa.int64()
        assert out.to_pylist() == [None] * len(array)


def test_unknown_params_rejected():
    with pytest.raises(ValidationError):
        make("hex_to_int", base=16)
