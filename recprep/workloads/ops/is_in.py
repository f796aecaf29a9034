"""is_in(values): 1 where a value is one of ``values``, else 0; a null is 0.

What turns an event-type column into a 0/1 label (Taobao's ``behavior_type``: ``pv`` is a view,
``buy`` a purchase) or any categorical column into a flag. Strings or integers, plain or
dictionary-encoded (decided once per dictionary entry); the result is int64. With ``output`` it
makes a new column, which ``spec.source.label`` may name.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...op_params import IsInParams
from .base import INT, STRING, ElementwiseOp, decode


class IsIn(ElementwiseOp):
    Params = IsInParams
    name = IsInParams.op
    accepts = frozenset({INT, STRING})
    generates = True

    def __init__(self, params: IsInParams):
        super().__init__(params)
        # integer values for an integer column, strings for a string one: the plan refuses the
        # other kind (naming the transform) before any data is read
        self._ints = all(isinstance(v, int) for v in params.values)
        self.accepts = frozenset({INT if self._ints else STRING})

    def output_kind(self, kind: str) -> str:
        return INT

    def values(self, array: pa.Array, state=None) -> pa.Array:
        array = decode(array)
        wanted = self.params.values
        if pa.types.is_boolean(array.type):
            array = array.cast(pa.int8())  # false 0, true 1
        if pa.types.is_integer(array.type) != self._ints:
            kind = "integers" if pa.types.is_integer(array.type) else "strings"
            raise TypeError(f"is_in: the column holds {kind}; give values of the same kind")
        if self._ints:
            # a value outside the column type's range matches no row (and cannot be its type)
            info = np.iinfo(array.type.to_pandas_dtype())
            wanted = [v for v in wanted if info.min <= v <= info.max]
            value_set = pa.array(wanted, type=array.type)
        else:
            value_set = pa.array(wanted).cast(array.type)
        return pc.is_in(array, value_set=value_set).cast(pa.int64()).fill_null(0)
