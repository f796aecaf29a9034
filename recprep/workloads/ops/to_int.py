"""to_int: decimal ID strings ("196", "-1", "0007") to int64.

A value is an optional ``+`` or ``-`` followed by one or more ASCII digits (leading zeros allowed;
no spaces, no other characters) within the int64 range [-2**63, 2**63 - 1]. Anything else (a
null, an empty string, "1.5", " 7", "1e3", a value out of range) becomes null, and the plan
counts those nulls like hex_to_int's (a job reports the op when it nulls many values). Strings,
large strings and binary, plain, dictionary-encoded (parsed once per dictionary entry) or inside
lists. One pass in C over the offsets and data (``_kernels.decimal_strings``); pyarrow.compute
without the extension. IDs too wide for int64 are better hashed as strings (sigrid_hash).
"""

from __future__ import annotations

import pyarrow as pa

from ...op_params import ToIntParams
from .base import INT, STRING, ElementwiseOp, from_numpy
from .strings import is_string_type, parse_decimal


class ToInt(ElementwiseOp):
    Params = ToIntParams
    name = ToIntParams.op
    accepts = frozenset({STRING})

    def output_kind(self, kind: str) -> str:
        return INT

    def values(self, array: pa.Array, state=None) -> pa.Array:
        if not is_string_type(array.type):
            raise TypeError(f"to_int needs strings, got {array.type}")
        values, valid = parse_decimal(array)
        return from_numpy(values, valid)
