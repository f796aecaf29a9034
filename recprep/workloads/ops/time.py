"""time(part, format, output?, reference?, unit?, borders?): time features of a timestamp column.

All in UTC. The column's values are read as a time ``t`` by ``format``:

* ``unix``: seconds since 1970-01-01T00:00:00Z (an int column, or decimal strings parsed as
  ``to_int`` parses them); ``unix_ms``: milliseconds (Taobao's ``timestamp`` is unix seconds);
* a strptime pattern (``%y%m%d%H`` for Avazu's ``hour`` 14102100): strings are parsed with
  Arrow's strptime and must be exactly what strftime writes with that pattern (a canonical
  round trip: "14022900", 29 February 2014, or a one-digit hour "1410210" are null); int columns
  are written in decimal first, zero-padded to the pattern's width when every field of the
  pattern has a fixed width (``%y%m%d%H`` is 8 digits, so 8102100 reads as 2008-10-21 00:00).

Values that do not parse, and times outside the years 1-9999, are null (the plan reports how many).
Then, as int64 IDs for sparse features:

* ``hour``: 0-23; ``weekday``: 0-6 with Monday = 0; ``day``: the day of the month, 1-31;
* ``age``: ``a = (t - reference) / unit`` as a real number (times in milliseconds, so an exact
  float64 division), bucketized like ``bucketize``: the number of ``borders`` strictly below
  ``a``, 0..len(borders). A time before the reference has a negative age.

Dictionary-encoded columns are parsed once per dictionary entry; numpy (datetime64) and
pyarrow.compute (strptime), no per-row Python.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...op_params import TIME_MAX, TIME_MIN, TimeParams
from .base import INT, STRING, ElementwiseOp, from_numpy, numeric_values, validity
from .strings import is_string_type, parse_decimal

_MS_HOUR, _MS_DAY = 3_600_000, 86_400_000
#: width of the fixed-width strftime fields (an int is zero-padded to a pattern of only these)
_WIDTHS = {"Y": 4, "y": 2, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2, "j": 3, "%": 1}


def fixed_width(pattern: str) -> int | None:
    """The length of every text ``pattern`` writes, or None when a field's width varies."""
    width = 0
    for directive, literal in re.findall(r"%(.)|([^%])", pattern):
        if literal:
            width += len(literal.encode())
        elif directive in _WIDTHS:
            width += _WIDTHS[directive]
        else:
            return None
    return width


class Time(ElementwiseOp):
    Params = TimeParams
    name = TimeParams.op
    accepts = frozenset({INT, STRING})
    generates = True

    def __init__(self, params: TimeParams):
        super().__init__(params)
        self._borders = None if params.borders is None else np.asarray(params.borders, dtype=np.float64)
        fmt = params.format
        self._width = None if fmt in ("unix", "unix_ms") else fixed_width(fmt)

    def output_kind(self, kind: str) -> str:
        return INT

    def values(self, array: pa.Array, state=None) -> pa.Array:
        ms, valid = self.milliseconds(array)
        part = self.params.part
        if part == "hour":
            out = np.floor_divide(ms, _MS_HOUR) % 24
        elif part == "weekday":  # 1970-01-01 was a Thursday (3)
            out = (np.floor_divide(ms, _MS_DAY) + 3) % 7
        elif part == "day":
            days = np.floor_divide(ms, _MS_DAY).astype("datetime64[D]")
            out = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        else:
            age = (ms - self.params.reference_ms) / float(self.params.unit_ms)
            out = np.searchsorted(self._borders, age, side="left")
        return from_numpy(out.astype(np.int64, copy=False), None if valid.all() else valid)

    def milliseconds(self, array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Unix milliseconds of every row (0 where invalid) and the validity (in years 1-9999)."""
        fmt = self.params.format
        t = array.type
        if fmt in ("unix", "unix_ms"):
            if is_string_type(t):
                raw, ok = parse_decimal(array)
                ok = np.ones(len(raw), bool) if ok is None else ok
            elif pa.types.is_integer(t) or pa.types.is_boolean(t):
                fits = None
                if pa.types.is_uint64(t):  # beyond int64 is far out of range: null, not wrapped
                    fits = numeric_values(array) <= np.iinfo(np.int64).max
                if t != pa.int64():
                    array = array.cast(pa.int64(), safe=False)
                raw, ok = numeric_values(array), validity(array)
                if fits is not None:
                    ok = ok & fits
            else:
                raise TypeError(f"time needs integer or string values, got {t}")
            scale = 1000 if fmt == "unix" else 1
            ok = ok & (raw >= TIME_MIN * 1000 // scale) & (raw < TIME_MAX * 1000 // scale)
            return np.where(ok, raw, 0) * scale, ok
        text = self._text(array)
        parsed = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        # canonical round trip: day overflow (Feb 29 of a common year) or short fields are null
        same = pc.equal(pc.strftime(parsed, format=fmt), text.cast(pa.string()))
        ok = np.asarray(pc.fill_null(same, False).to_numpy(zero_copy_only=False), dtype=bool)
        secs = parsed.cast(pa.int64()).fill_null(0).to_numpy()
        ok &= (secs >= TIME_MIN) & (secs < TIME_MAX)
        return np.where(ok, secs, 0) * 1000, ok

    def _text(self, array: pa.Array) -> pa.Array:
        t = array.type
        if pa.types.is_binary(t):
            return array.view(pa.string())
        if pa.types.is_large_binary(t):
            return array.view(pa.large_string())
        if is_string_type(t):
            return array
        if not (pa.types.is_integer(t) or pa.types.is_boolean(t)):
            raise TypeError(f"time needs integer or string values, got {t}")
        # an int's decimal text (a uint64 beyond int64 included); a boolean's as 0 or 1
        text = (array if pa.types.is_integer(t) else array.cast(pa.int8())).cast(pa.string())
        if self._width:
            text = pc.utf8_lpad(text, width=self._width, padding="0")
        return text
