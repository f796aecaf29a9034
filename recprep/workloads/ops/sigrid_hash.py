"""sigrid_hash(salt, maxValue): a salted 64-bit mix of int64 IDs reduced into [0, maxValue).

``sigrid_hash(id) = mix64(id, salt) mod maxValue`` with :func:`recprep.workloads.ops.hashing.mix64`
(splitmix64's finaliser). The same ID, salt and maxValue give the same result on every machine
and recprep version. Element-wise on list features; nulls stay null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field

from .base import INT, LIST, ElementwiseOp, OpParams, numeric_values, with_validity_of
from .hashing import mix64, reduce_range

try:
    from ._kernels import sigrid_hash as _kernel
except ImportError:  # a source tree without the built extension: numpy does the same
    _kernel = None


class SigridHashParams(OpParams):
    salt: int = Field(0, ge=0, lt=2**64)
    """Salt mixed into every ID (0 <= salt < 2**64); different salts give independent hashes."""
    max_value: int = Field(..., gt=0, le=2**63 - 1)
    """Size of the embedding table: results fall in [0, maxValue)."""


class SigridHash(ElementwiseOp):
    name = "sigrid_hash"
    Params = SigridHashParams
    accepts = frozenset({INT, LIST})

    def values(self, array: pa.Array, state=None) -> pa.Array:
        if not pa.types.is_integer(array.type):
            raise TypeError(f"sigrid_hash needs integer IDs, got {array.type}")
        if array.type.bit_width != 64:
            array = array.cast(pa.int64())
        raw = numeric_values(array)  # null slots hold anything: they stay null
        salt, max_value = self.params.salt, self.params.max_value
        if _kernel is not None:
            out = np.empty(len(raw), dtype=np.int64)
            _kernel(np.ascontiguousarray(raw), out, salt, max_value)
        else:
            out = reduce_range(mix64(raw.astype(np.int64, copy=False), salt), max_value)
        return with_validity_of(array, out, pa.int64())
