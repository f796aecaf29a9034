"""fill_null(value): replace missing values with a constant."""

from __future__ import annotations

import pyarrow as pa

from .base import FLOAT, INT, LIST, STRING, ElementwiseOp, OpParams


class FillNullParams(OpParams):
    value: float | int | str = 0
    """The value that replaces nulls (cast to the column's type)."""


class FillNull(ElementwiseOp):
    name = "fill_null"
    Params = FillNullParams
    accepts = frozenset({INT, FLOAT, STRING, LIST})

    def values(self, array: pa.Array, state=None) -> pa.Array:
        if not array.null_count:
            return array
        fill = pa.scalar(self.params.value).cast(array.type)
        return array.fill_null(fill)
