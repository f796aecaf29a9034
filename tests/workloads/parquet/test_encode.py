"""The C encoders against plain-Python references: the RLE/bit-packed hybrid decodes back to
its input at every bit width, dictionary encoding is first-occurrence order, and
DELTA_BINARY_PACKED decodes back to its input (wrapping differences, every block shape)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recprep.workloads.parquet._encode import delta_binary_packed, dict_encode, list_levels, rle_hybrid


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 varint at ``pos``: (its value, the position after it)."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def decode_hybrid(data: bytes, width: int, count: int) -> list[int]:
    """The Parquet RLE/bit-packing hybrid, decoded value by value (the format's definition)."""
    out, pos = [], 0
    while len(out) < count:
        header, pos = _uleb(data, pos)
        if header & 1:  # bit-packed: (header >> 1) groups of 8 values, LSB first
            nbytes = (header >> 1) * width
            bits = int.from_bytes(data[pos : pos + nbytes], "little")
            pos += nbytes
            out += [(bits >> (i * width)) & ((1 << width) - 1) for i in range((header >> 1) * 8)]
        else:
            size = (width + 7) // 8
            out += [int.from_bytes(data[pos : pos + size], "little")] * (header >> 1)
            pos += size
    assert pos == len(data), "trailing bytes"
    return out[:count]


@settings(max_examples=150, deadline=None, database=None)
@given(width=st.integers(1, 32), data=st.data())
def test_rle_hybrid_round_trips(width, data):
    value = st.integers(0, 2**width - 1)
    runs = data.draw(st.lists(st.tuples(value, st.integers(1, 20)), max_size=12))
    values = [v for v, n in runs for _ in range(n)]
    itemsize = 4 if width > 16 else data.draw(st.sampled_from([2, 4] if width > 8 else [1, 2, 4]))
    array = np.array(values, dtype={1: np.uint8, 2: np.uint16, 4: np.uint32}[itemsize])
    encoded = rle_hybrid(array, itemsize, width)
    assert decode_hybrid(encoded, width, len(values)) == values


def test_rle_uses_runs():
    assert rle_hybrid(np.full(1000, 3, np.uint8), 1, 2) == bytes([0xD0, 0x0F, 3])  # varint(2000), value


@settings(max_examples=100, deadline=None, database=None)
@given(
    values=st.lists(st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 1, 5]), max_size=200),
    itemsize=st.sampled_from([4, 8]),
)
def test_dict_encode_first_occurrence(values, itemsize):
    array = np.array(
        [v % 2**32 if itemsize == 4 else v for v in values], dtype=np.uint32 if itemsize == 4 else np.int64
    )
    indices = np.empty(len(array), np.int32)
    dictionary = np.empty(len(array), array.dtype)
    distinct = dict_encode(array, itemsize, indices, dictionary, len(array))
    order = list(dict.fromkeys(array.tolist()))
    assert distinct == len(order)
    assert dictionary[:distinct].tolist() == order
    assert [order[i] for i in indices] == array.tolist()
    if len(order) > 1:
        assert dict_encode(array, itemsize, indices, dictionary, len(order) - 1) == -1


def test_list_levels():
    offsets = np.array([0, 2, 2, 3, 3, 5], np.int32)  # [a, b], [], [c], null, [d, null]
    list_valid = np.array([1, 1, 1, 0, 1], np.uint8)
    item_valid = np.array([1, 1, 1, 1, 0], np.uint8)
    rep, defs = np.empty(10, np.uint8), np.empty(10, np.uint8)
    n = list_levels(offsets, list_valid, item_valid, 1, 3, rep, defs)
    assert rep[:n].tolist() == [0, 1, 0, 0, 0, 0, 1]
    assert defs[:n].tolist() == [3, 3, 1, 3, 0, 3, 2]


def decode_delta(data: bytes, bits: int) -> list[int]:
    """DELTA_BINARY_PACKED decoded as the format defines it, in ``bits``-bit wrapping arithmetic."""
    block, pos = _uleb(data, 0)
    miniblocks, pos = _uleb(data, pos)
    count, pos = _uleb(data, pos)
    zz, pos = _uleb(data, pos)
    mask = (1 << bits) - 1
    out = [(zz >> 1) ^ -(zz & 1)] if count else []
    per = block // miniblocks
    while len(out) < count:
        zz, pos = _uleb(data, pos)
        low = (zz >> 1) ^ -(zz & 1)
        widths = data[pos : pos + miniblocks]
        pos += miniblocks
        for width in widths:
            if len(out) >= count:
                break  # the last block's unused miniblocks: no bytes
            packed = int.from_bytes(data[pos : pos + per * width // 8], "little")
            pos += per * width // 8
            for i in range(per):
                if len(out) < count:
                    out.append((out[-1] + low + ((packed >> (i * width)) & ((1 << width) - 1))) & mask)
    assert pos == len(data), "trailing bytes"
    sign = 1 << (bits - 1)
    return [(v & mask) - ((v & sign) << 1) for v in out]


@settings(max_examples=150, deadline=None, database=None)
@given(
    itemsize=st.sampled_from([4, 8]),
    data=st.data(),
)
def test_delta_binary_packed_round_trips(itemsize, data):
    bits = itemsize * 8
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    shape = data.draw(st.sampled_from(["any", "small", "sorted"]))
    element = st.integers(low, high) if shape == "any" else st.integers(-1000, 10**6)
    values = data.draw(st.lists(element, max_size=700))
    if shape == "sorted":
        values.sort()
    array = np.array(values, dtype=np.int32 if itemsize == 4 else np.int64)
    encoded = delta_binary_packed(array, itemsize)
    assert decode_delta(encoded, bits) == values


def test_delta_binary_packed_blocks_end_where_the_values_do():
    for n in (0, 1, 2, 32, 33, 128, 129, 130, 257):
        values = np.arange(n, dtype=np.int64) * 3
        assert decode_delta(delta_binary_packed(values, 8), 64) == values.tolist()
    # the extremes' differences wrap in the type's width
    for dtype, bits in ((np.int32, 32), (np.int64, 64)):
        info = np.iinfo(dtype)
        values = np.array([info.max, info.min, 0, info.max, info.min], dtype)
        assert decode_delta(delta_binary_packed(values, values.itemsize), bits) == values.tolist()
