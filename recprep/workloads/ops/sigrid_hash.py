"""sigrid_hash(salt, maxValue): a salted 64-bit mix of int64 IDs reduced into [0, maxValue).

``sigrid_hash(id) = mix64(id, salt) mod maxValue`` with :func:`recprep.workloads.ops.hashing.mix64`
(splitmix64's finaliser). The same ID, salt and maxValue give the same result on every machine
and recprep version. Element-wise on list features; nulls stay null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field

from .base import INT, LIST, ElementwiseOp, OpParams
from .hashing import mix64, reduce_range


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
        if array.null_count:
            valid = np.asarray(array.is_valid())
            raw = array.fill_null(0).to_numpy()
        else:
            valid, raw = None, array.to_numpy()
        out = reduce_range(mix64(raw.astype(np.int64, copy=False), self.params.salt), self.params.max_value)
        return pa.array(out, mask=None if valid is None else ~valid)
