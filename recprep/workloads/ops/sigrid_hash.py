"""sigrid_hash(salt, maxValue): a salted 64-bit mix of int64 IDs reduced into [0, maxValue).

``sigrid_hash(id) = mix64(id, salt) mod maxValue`` with :func:`recprep.workloads.ops.hashing.mix64`
(splitmix64's finaliser). The same ID, salt and maxValue give the same result on every machine
and recprep version. Element-wise on list features; nulls stay null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import SigridHashParams
from .base import INT, LIST, ElementwiseOp, numeric_values, with_validity_of
from .hashing import mix64, reduce_range

try:
    from ._kernels import sigrid_hash as _kernel
except ImportError:  # a source tree without the built extension: numpy does the same
    _kernel = None


class SigridHash(ElementwiseOp):
    Params = SigridHashParams
    name = SigridHashParams.op
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
