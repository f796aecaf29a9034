"""clamp(min, max): limit values (or list elements) to ``[min, max]``."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import model_validator

from .base import FLOAT, INT, LIST, ElementwiseOp, OpParams


class ClampParams(OpParams):
    min: float | None = None
    """Lower bound (inclusive); omit for none."""
    max: float | None = None
    """Upper bound (inclusive); omit for none."""

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("give at least one of min, max")
        if any(b is not None and math.isnan(b) for b in (self.min, self.max)):
            raise ValueError("min and max must not be NaN")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Clamp(ElementwiseOp):
    name = "clamp"
    Params = ClampParams
    accepts = frozenset({INT, FLOAT, LIST})

    def values(self, array: pa.Array, state=None) -> pa.Array:
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
