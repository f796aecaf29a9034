"""is_in(values): 1 where a value is one of ``values``, else 0; a null is 0.

What turns an event-type column into a 0/1 label (Taobao's ``behavior_type``: ``pv`` is a view,
``buy`` a purchase) or any categorical column into a flag. Strings or integers, plain or
dictionary-encoded (decided once per dictionary entry); the result is int64. With ``output`` it
makes a new column, which ``spec.source.label`` may name.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ...op_params import IsInParams
from .base import INT, STRING, ElementwiseOp, decode


class IsIn(ElementwiseOp):
    Params = IsInParams
    name = IsInParams.op
    accepts = frozenset({INT, STRING})
    generates = True

    def output_kind(self, kind: str) -> str:
        return INT

    def values(self, array: pa.Array, state=None) -> pa.Array:
        array = decode(array)
        wanted = self.params.values
        if pa.types.is_integer(array.type) != all(isinstance(v, int) for v in wanted):
            kind = "integers" if pa.types.is_integer(array.type) else "strings"
            raise TypeError(f"is_in: the column holds {kind}; give values of the same kind")
        value_set = pa.array(wanted, type=array.type if pa.types.is_integer(array.type) else None)
        if not pa.types.is_integer(array.type):
            value_set = value_set.cast(array.type)
        return pc.is_in(array, value_set=value_set).cast(pa.int64()).fill_null(0)
