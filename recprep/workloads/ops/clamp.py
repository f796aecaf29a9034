"""clamp(min, max): limit values (or list elements) to ``[min, max]``."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...op_params import ClampParams
from .base import FLOAT, INT, LIST, ElementwiseOp


class Clamp(ElementwiseOp):
    Params = ClampParams
    name = ClampParams.op
    accepts = frozenset({INT, FLOAT, LIST})

    def values(self, array: pa.Array, state=None) -> pa.Array:
        if pa.types.is_boolean(array.type) or pa.types.is_float16(array.type):
            # no min/max kernels for these: clamp a wider copy (booleans as 0/1), then cast back
            wider = pa.int8() if pa.types.is_boolean(array.type) else pa.float32()
            return self.values(array.cast(wider)).cast(array.type)
        out = array
        lo, hi = self.params.min, self.params.max
        if pa.types.is_integer(array.type):
            # keep integer columns integral: bounds round inwards, saturated to the type's range
            info = np.iinfo(array.type.to_pandas_dtype())
            tmin, tmax = int(info.min), int(info.max)
            lo = None if lo is None else min(max(lo, tmin), tmax)
            hi = None if hi is None else min(max(hi, tmin), tmax)
            lo = None if lo is None else math.ceil(lo)
            hi = None if hi is None else math.floor(hi)
        # skip_nulls=False: a null stays null instead of becoming the bound
        if lo is not None:
            out = pc.max_element_wise(out, pa.scalar(lo, type=array.type), skip_nulls=False)
        if hi is not None:
            out = pc.min_element_wise(out, pa.scalar(hi, type=array.type), skip_nulls=False)
        return out
