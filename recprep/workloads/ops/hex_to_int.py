"""hex_to_int: hexadecimal ID strings (Criteo's ``68fd1e64``) to int64.

Empty strings, nulls and strings that are not hex digits become null. Up to 16 digits are the
value; values of 2**63 and above keep their 64-bit pattern (they become negative int64), which
is what a hash of the ID needs. Wider IDs (an MD5-style 32-digit user or item hash) are hashed,
never dropped (:func:`fold_hex`): leading zeros skipped, up to 16 significant digits are the plain
value, more are folded into 64 bits, in groups of 16 digits from the right, highest group first,
``h = mix64(h ^ group)`` from ``h = 0``. One pass in C over the string column (``_kernels.hex_strings``, the
parser the text scanner shares); without the extension, numpy: the common case (every ID
exactly 8 digits, as in Criteo) eight digits at a time with 64-bit word arithmetic, other
lengths through a padded digit grid.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import HexToIntParams
from .base import INT, STRING, ElementwiseOp
from .hashing import mix64
from .strings import is_string_type, string_buffers

try:
    from ._kernels import hex_strings as _kernel
except ImportError:  # a source tree without the built extension: the numpy code below
    _kernel = None

_INVALID = np.uint8(255)
# byte -> nibble value, 255 for anything that is not a hex digit
_NIBBLE = np.full(256, _INVALID, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i

_U = np.uint64


def _pack8(nibbles: np.ndarray) -> np.ndarray:
    """(m, 8) uint8 nibbles, most significant first -> m uint64 values."""
    x = np.ascontiguousarray(nibbles).view("<u8").reshape(-1)
    # bytes n0..n7 (n0 lowest): pair them up, then pairs of pairs, then halves
    y = ((x << _U(4)) | (x >> _U(8))) & _U(0x00FF00FF00FF00FF)
    z = ((y << _U(8)) | (y >> _U(16))) & _U(0x0000FFFF0000FFFF)
    return ((z << _U(16)) | (z >> _U(32))) & _U(0xFFFFFFFF)


def fold_hex(text: str) -> int | None:
    """The reference of the rule, one ID at a time: the uint64 value of hex ID ``text`` (folded
    when it has more than 16 significant digits), or None when it is not a hex ID."""
    if not text or any(c not in "0123456789abcdefABCDEF" for c in text):
        return None
    digits = text.lstrip("0")
    if len(digits) <= 16:
        return int(digits or "0", 16)
    first = len(digits) % 16 or 16
    groups = [digits[:first]] + [digits[i : i + 16] for i in range(first, len(digits), 16)]
    h = 0
    for group in groups:
        h = int(mix64(np.array([h ^ int(group, 16)], dtype=np.uint64))[0])
    return h


class HexToInt(ElementwiseOp):
    Params = HexToIntParams
    name = HexToIntParams.op
    accepts = frozenset({STRING})

    def output_kind(self, kind: str) -> str:
        return INT

    def values(self, array: pa.Array, state=None) -> pa.Array:
        if not is_string_type(array.type):
            raise TypeError(f"hex_to_int needs strings, got {array.type}")
        n = len(array)
        bufs = array.buffers()
        offsets, itemsize, data = string_buffers(array)
        if _kernel is not None:
            out, ok = np.empty(n, np.int64), np.empty(n, np.uint8)
            nulls = _kernel(
                offsets, itemsize, data, bufs[0] if array.null_count else None, array.offset, out, ok
            )
            bitmap = pa.py_buffer(np.packbits(ok, bitorder="little")) if nulls else None
            return pa.Array.from_buffers(pa.int64(), n, [bitmap, pa.py_buffer(out)], nulls)
        lens = np.diff(offsets)
        valid = lens > 0
        if array.null_count:
            valid &= np.asarray(array.is_valid(), dtype=bool)
        out = np.zeros(n, dtype=np.uint64)
        if n and np.all((lens == 0) | (lens == 8)):
            chunk = data[offsets[0] : offsets[-1]]
            nib = _NIBBLE.take(chunk).reshape(-1, 8)
            ok = ~(nib == _INVALID).any(axis=1)
            nonempty = lens == 8
            out[nonempty] = _pack8(nib)
            valid[nonempty] &= ok
        elif n:
            out, valid = self._general(data, offsets, lens, valid)
        return pa.array(out.view(np.int64), mask=~valid)

    @staticmethod
    def _general(data, offsets, lens, valid):
        """Any lengths: right-align each ID of up to 16 digits in a (rows, 16) grid of '0's;
        wider IDs (no C kernel here, so this is the slow reference path) one by one."""
        n = len(lens)
        wide = np.flatnonzero(valid & (lens > 16))
        valid = valid & (lens <= 16)
        rows = np.flatnonzero(valid)
        L = lens[rows].astype(np.int64)
        starts = offsets[:-1][rows].astype(np.int64)
        total = int(L.sum())
        first = np.repeat(np.cumsum(L) - L, L)
        pos = np.arange(total, dtype=np.int64) - first
        grid = np.zeros((len(rows), 16), dtype=np.uint8)  # nibble 0 == '0' padding
        grid[np.repeat(np.arange(len(rows)), L), np.repeat(16 - L, L) + pos] = _NIBBLE.take(
            data[np.repeat(starts, L) + pos]
        )
        ok = ~(grid == _INVALID).any(axis=1)
        value = (_pack8(grid[:, :8]) << _U(32)) | _pack8(grid[:, 8:])
        out = np.zeros(n, dtype=np.uint64)
        out[rows] = value
        valid[rows] &= ok
        for row in wide:
            folded = fold_hex(bytes(data[offsets[row] : offsets[row + 1]]).decode("ascii", "replace"))
            if folded is not None:
                out[row], valid[row] = folded, True
        return out, valid
