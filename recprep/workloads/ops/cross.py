"""cross(output, maxValue, salt): hashed feature crosses of two or more sparse columns.

A row's cross is the salted hash of the tuple of its values, taken in the table's column order
(the order in which ``columns`` resolves, which is the schema's, whatever the order of a list)::

    k_i   = key of column i's value: an integer ID is its int64 bit pattern; a string (string,
            large_string, binary) is FNV-1a 64 of its UTF-8 / raw bytes (``strings.fnv1a64``,
            as sigrid_hash hashes strings)
    h     = mix64(k_1, salt)
    h     = mix64(h ^ mix64(k_i, salt + i - 1))      for i = 2 .. number of columns
    cross = h mod maxValue

with :func:`recprep.workloads.ops.hashing.mix64` (splitmix64's finaliser, salted): the fold of
``ngram``, so a cross of (a, b) equals the 2-gram of [a, b] for integer IDs. The order of the
columns matters (cross(a, b) != cross(b, a)). A null in any input, or an empty string, makes the
row's cross null. Inputs may be plain or dictionary-encoded (keys are computed on the dictionary,
then gathered by index). The result is a new int64 sparse feature; the inputs are kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import CrossParams
from .base import INT, STRING, CombiningOp, numeric_values, validity
from .hashing import mix64, reduce_range
from .strings import hash_strings, is_string_type

try:
    from ._kernels import fold64 as _fold
except ImportError:  # a source tree without the built extension: numpy does the same
    _fold = None


def keys_of(array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Per row, the 64-bit key a hash of the value starts from (uint64) and the validity (None
    when every row is valid); see the module docstring."""
    if isinstance(array, pa.DictionaryArray):
        keys, valid = keys_of(array.dictionary)
        idx = numeric_values(array.indices)
        if array.indices.null_count:
            ok = validity(array.indices)
            idx = np.where(ok, idx, 0)
        else:
            ok = None
        if len(keys) == 0:  # every index is null
            return np.zeros(len(array), np.uint64), np.zeros(len(array), bool)
        row_keys = keys.take(idx)
        if valid is not None:
            ok = valid.take(idx) if ok is None else ok & valid.take(idx)
        return row_keys, ok
    t = array.type
    if is_string_type(t):
        return hash_strings(array)
    if pa.types.is_boolean(t) or (pa.types.is_integer(t) and t.bit_width != 64):
        array = array.cast(pa.int64())
    elif not pa.types.is_integer(t):
        raise TypeError(f"cross needs integer or string columns, got {t}")
    keys = numeric_values(array).view(np.uint64)
    return keys, (validity(array) if array.null_count else None)


class Cross(CombiningOp):
    Params = CrossParams
    name = CrossParams.op
    accepts = frozenset({INT, STRING})

    def output_kind(self, kind: str) -> str:
        return INT

    def transform_many(self, arrays: list[pa.Array]) -> pa.Array:
        if len(arrays) < self.min_inputs:
            raise ValueError(f"cross needs at least {self.min_inputs} columns, got {len(arrays)}")
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError("cross needs columns of the same length")
        salt, max_value = self.params.salt, self.params.max_value
        valid: np.ndarray | None = None
        h = np.empty(n, dtype=np.uint64)
        last = len(arrays) - 1
        for i, array in enumerate(arrays):
            keys, ok = keys_of(array)
            if ok is not None:
                valid = ok if valid is None else valid & ok
            if _fold is not None:  # one pass per column in C, the last one reduced
                salted = (salt + i) % 2**64
                _fold(
                    np.ascontiguousarray(keys, dtype=np.uint64),
                    h,
                    salted,
                    i == 0,
                    max_value if i == last else 0,
                )
                continue
            with np.errstate(over="ignore"):
                h = mix64(keys, salt) if i == 0 else mix64(h ^ mix64(keys, salt + i))
            if i == last:
                h = reduce_range(h, max_value).view(np.uint64)
        out = h.view(np.int64)
        if valid is None or valid.all():
            return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(out)], 0)
        return pa.array(out, mask=~valid)
