"""String IDs: the 64-bit hash of a string (sigrid_hash, cross) and decimal parsing (to_int).

``fnv1a64`` is FNV-1a 64 (Fowler, Noll, Vo; the 64-bit parameters of the FNV specification,
draft-eastlake-fnv), over the string's UTF-8 bytes or a binary value's raw bytes, in unsigned
64-bit arithmetic (mod 2**64)::

    h = 0xCBF29CE484222325            # the 64-bit offset basis
    for b in data:                    # each byte, first to last
        h = (h ^ b) * 0x100000001B3   # the 64-bit FNV prime

``fnv1a64(b"") == 0xCBF29CE484222325`` and ``fnv1a64(b"a") == 0xAF63DC4C8601EC8C``. The ops
that use it then apply the salted splitmix64 mix (:mod:`.hashing`), which gives FNV's weak
low bits full avalanche. A null or an empty string is not an ID: it becomes null.

Both run over an Arrow string/binary array's offsets and data buffers in C (``_kernels``); without
the extension, numpy (the hash one byte position at a time over all rows at once) and
pyarrow.compute (decimal parsing) do the same.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .base import validity

try:
    from ._kernels import decimal_strings as _decimal_kernel
    from ._kernels import fnv1a_strings as _fnv_kernel
except ImportError:  # a source tree without the built extension: the numpy code below
    _fnv_kernel = _decimal_kernel = None

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_MASK = 2**64 - 1


def fnv1a64(data: bytes) -> int:
    """The reference, one value at a time: FNV-1a 64 of ``data`` as an unsigned int."""
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & _MASK
    return h


def is_string_type(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or (pa.types.is_large_binary(t))
    )


def string_buffers(array: pa.Array) -> tuple[np.ndarray, int, np.ndarray]:
    """(offsets of the array's rows, offset size in bytes, the data buffer) of a string/binary array."""
    t = array.type
    if pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        off_dtype = np.int64
    elif pa.types.is_string(t) or pa.types.is_binary(t):
        off_dtype = np.int32
    else:
        raise TypeError(f"needs strings or binary, got {t}")
    bufs = array.buffers()
    itemsize = np.dtype(off_dtype).itemsize
    n = len(array)
    if bufs[1] is None:  # an empty array may have no buffers at all
        return np.zeros(1, off_dtype), itemsize, np.empty(0, np.uint8)
    offsets = np.frombuffer(bufs[1], dtype=off_dtype, count=n + 1, offset=array.offset * itemsize)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.empty(0, np.uint8)
    return offsets, itemsize, data


def _run(kernel, array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    offsets, itemsize, data = string_buffers(array)
    n = len(array)
    out, ok = np.empty(n, np.uint64), np.empty(n, np.uint8)
    bitmap = array.buffers()[0] if array.null_count else None
    nulls = kernel(offsets, itemsize, data, bitmap, array.offset, out, ok)
    return out, (ok.view(bool) if nulls else None)


def hash_strings(array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """FNV-1a 64 of every row of a plain string/binary array: (uint64 hashes, validity or None
    when every row is valid); null rows and empty strings are invalid (their hash slot is 0)."""
    if _fnv_kernel is not None:
        return _run(_fnv_kernel, array)
    offsets, _, data = string_buffers(array)
    starts = offsets[:-1].astype(np.int64)
    lens = np.diff(offsets).astype(np.int64)
    valid = lens > 0
    if array.null_count:
        valid &= validity(array)
    h = np.full(len(array), np.uint64(FNV_OFFSET), dtype=np.uint64)
    rows = np.flatnonzero(valid)
    prime = np.uint64(FNV_PRIME)
    j = 0
    with np.errstate(over="ignore"):
        while len(rows):  # byte position j of every row that has one
            h[rows] = (h[rows] ^ data[starts[rows] + j].astype(np.uint64)) * prime
            j += 1
            rows = rows[lens[rows] > j]
    h[~valid] = 0
    return h, (None if valid.all() else valid)


_DECIMAL = r"^[+-]?[0-9]+$"
_INT64_MAX, _INT64_MIN_ABS = "9223372036854775807", "9223372036854775808"


def parse_decimal(array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """to_int's rule on a plain string/binary array: (int64 values, validity or None when every row
    is valid). A value is an optional ``+``/``-`` and one or more ASCII digits (leading zeros
    allowed, no spaces) within the int64 range; anything else is null."""
    if _decimal_kernel is not None:
        out, valid = _run(_decimal_kernel, array)
        return out.view(np.int64), valid
    n = len(array)
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        array = array.cast(pa.large_binary()).view(pa.large_string())  # bytes matched as they are
    ok = pc.fill_null(pc.match_substring_regex(array, _DECIMAL), False)
    negative = pc.fill_null(pc.starts_with(array, "-"), False)
    # the magnitude's significant digits: sign and leading zeros off ("" for zero)
    digits = pc.replace_substring_regex(array, r"^[+-]?0*", "")
    width = pc.fill_null(pc.utf8_length(digits), 0).to_numpy(zero_copy_only=False)
    limit = pc.if_else(negative, _INT64_MIN_ABS, _INT64_MAX)
    too_big = (width > 19) | (
        (width == 19) & pc.fill_null(pc.greater(digits, limit), True).to_numpy(zero_copy_only=False)
    )
    valid = ok.to_numpy(zero_copy_only=False) & ~too_big
    rows = np.flatnonzero(valid)
    small = pc.take(digits, pa.array(rows)).cast(pa.string())
    # at most 19 digits within the limit: exact as uint64; a negative value is its two's complement
    mag = pc.cast(pc.if_else(pc.equal(small, ""), "0", small), pa.uint64()).to_numpy()
    sign = negative.to_numpy(zero_copy_only=False)[rows]
    out = np.zeros(n, dtype=np.uint64)
    out[rows] = np.where(sign, np.uint64(0) - mag, mag)
    out = out.view(np.int64)
    return out, (None if valid.all() else valid)
