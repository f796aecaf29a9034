"""log(offset=3): y = ln(x + offset), inputs below 1 - offset first raised to 1 - offset.

The raise keeps the argument of ln at least 1, so the output is never negative or NaN (the
TorchRec/TorchArrow Criteo recipe uses offset 3 after fill_null(0)). Nulls stay null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import LogParams
from .base import FLOAT, INT, ElementwiseOp, from_numpy, to_float64


class Log(ElementwiseOp):
    Params = LogParams
    name = LogParams.op
    accepts = frozenset({INT, FLOAT})

    def output_kind(self, kind: str) -> str:
        return FLOAT

    def values(self, array: pa.Array, state=None) -> pa.Array:
        x, valid = to_float64(array)
        offset = self.params.offset
        y = np.maximum(x, 1.0 - offset)
        y += offset
        np.log(y, out=y)
        return from_numpy(y, valid)
