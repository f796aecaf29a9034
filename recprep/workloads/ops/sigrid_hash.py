"""sigrid_hash(salt, maxValue): a salted 64-bit mix of IDs reduced into [0, maxValue).

``sigrid_hash(id) = mix64(key(id), salt) mod maxValue`` with :func:`recprep.workloads.ops.hashing.mix64`
(splitmix64's finaliser). ``key`` is the ID itself for integer IDs (its int64 two's-complement bit
pattern) and, for string IDs (string, large_string, binary; plain, dictionary-encoded or inside
lists), FNV-1a 64 of the string's UTF-8 bytes or the binary value's raw bytes
(:func:`recprep.workloads.ops.strings.fnv1a64`)::

    key = 0xCBF29CE484222325
    for byte in value: key = (key ^ byte) * 0x100000001B3   (mod 2**64)

so ``sigrid_hash("a") = mix64(0xAF63DC4C8601EC8C, salt) mod maxValue``. Wide IDs (a 32-digit hex
or a 40-digit decimal string) are just strings: hashed, never dropped. The same ID, salt and
maxValue give the same result on every machine and recprep version. Element-wise on list
features; a dictionary-encoded column is hashed on its dictionary only. Nulls stay null; an empty
string is no ID and becomes null too.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import SigridHashParams
from .base import INT, LIST, STRING, ElementwiseOp, from_numpy, numeric_values, with_validity_of
from .hashing import mix64, reduce_range
from .strings import hash_strings, is_string_type

try:
    from ._kernels import sigrid_hash as _kernel
except ImportError:  # a source tree without the built extension: numpy does the same
    _kernel = None


def salted_reduce(keys: np.ndarray, salt: int, max_value: int) -> np.ndarray:
    """``mix64(keys, salt) mod max_value`` as int64 (the kernel, or numpy without it)."""
    if _kernel is not None:
        out = np.empty(len(keys), dtype=np.int64)
        _kernel(np.ascontiguousarray(keys), out, salt, max_value)
        return out
    return reduce_range(mix64(keys.astype(np.int64, copy=False), salt), max_value)


class SigridHash(ElementwiseOp):
    Params = SigridHashParams
    name = SigridHashParams.op
    accepts = frozenset({INT, STRING, LIST})

    def output_kind(self, kind: str) -> str:
        return INT if kind == STRING else kind

    def values(self, array: pa.Array, state=None) -> pa.Array:
        salt, max_value = self.params.salt, self.params.max_value
        if is_string_type(array.type):
            keys, valid = hash_strings(array)
            return from_numpy(salted_reduce(keys, salt, max_value), valid)
        if not (pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)):
            raise TypeError(f"sigrid_hash needs integer or string IDs, got {array.type}")
        if array.type.bit_width != 64:  # narrower ints and booleans (0, 1) as int64, as cross does
            array = array.cast(pa.int64())
        raw = numeric_values(array)  # null slots hold anything: they stay null
        return with_validity_of(array, salted_reduce(raw, salt, max_value), pa.int64())
