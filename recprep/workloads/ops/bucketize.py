"""bucketize(borders, output?): the index of the bucket a value falls in (feature generation).

The result is ``numpy.searchsorted(borders, x, side="left")`` as int32: the number of borders
strictly below ``x``. With ``output`` set the result becomes a new sparse feature and the input
column is kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import field_validator

from .base import FLOAT, INT, ElementwiseOp, OpParams, from_numpy, to_float64


class BucketizeParams(OpParams):
    borders: list[float]
    """Bucket borders: non-empty and non-decreasing."""
    output: str | None = None
    """Name of a new column for the result (feature generation); omit to replace the column.
    With several input columns, use ``{column}`` in the name (e.g. ``"{column}_bucket"``)."""

    @field_validator("borders")
    @classmethod
    def _sorted(cls, borders: list[float]) -> list[float]:
        if not borders:
            raise ValueError("borders must not be empty")
        if any(b < a for a, b in zip(borders, borders[1:])):
            raise ValueError("borders must be non-decreasing")
        if any(np.isnan(b) for b in borders):
            raise ValueError("borders must not contain NaN")
        return borders


class Bucketize(ElementwiseOp):
    name = "bucketize"
    Params = BucketizeParams
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
