"""bucketize(borders, output?): the index of the bucket a value falls in (feature generation).

The result is ``numpy.searchsorted(borders, x, side="left")`` as int32: the number of borders
strictly below ``x``. With ``output`` set the result becomes a new sparse feature and the input
column is kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import BucketizeParams
from .base import FLOAT, INT, ElementwiseOp, from_numpy, to_float64


class Bucketize(ElementwiseOp):
    Params = BucketizeParams
    name = BucketizeParams.op
    accepts = frozenset({INT, FLOAT})
    generates = True

    def __init__(self, params: BucketizeParams):
        super().__init__(params)
        self._borders = np.asarray(params.borders, dtype=np.float64)

    def output_kind(self, kind: str) -> str:
        return INT

    def values(self, array: pa.Array, state=None) -> pa.Array:
        x, valid = to_float64(array)
        idx = np.searchsorted(self._borders, x, side="left").astype(np.int32)
        return from_numpy(idx, valid)
