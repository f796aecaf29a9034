"""The parameters of every op, as plain data: what a transform may say besides ``op`` and ``columns``.

These models are all the spec needs to validate a transform, so ``recprep.spec`` (and through it
the operator and the CRD generator) loads no numpy, pyarrow or C kernel. The implementations in
``recprep.workloads.ops`` attach to them: each op class names its model here as ``Params``, and
``PARAMS`` (op name -> model) is the one list of op names; a test checks the two agree.

Each field's ``description`` is its documentation: it reaches validation errors
(``spec.transforms[2].k: ... -- k: keep the first ...``) and the CRD (``kubectl explain``).
Manifests spell fields in camelCase (``maxValue``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

#: Largest ``maxValue`` of a hash op (results are int64).
MAX_HASH_RANGE = 2**63 - 1
#: Salts are unsigned 64-bit integers.
SALT_LIMIT = 2**64

_OUTPUT = (
    "Name of a new column for the result (feature generation); omit to replace the column. With "
    'several input columns, use {column} in the name (e.g. "{column}_bucket").'
)


#: The op classes an ISP unit runs (PreSto's split of preprocessing): parsing raw text into typed
#: values, feature generation (new or reshaped sparse features), normalization of dense values.
OFFLOAD_CLASSES = ("decode", "generation", "normalization")


class OpParams(BaseModel):
    """Base of every op's parameter model: camelCase in manifests, unknown fields rejected."""

    # allow_inf_nan=False: no parameter takes inf or NaN (offset: .nan would make every value NaN)
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, allow_inf_nan=False
    )

    #: The op's name in manifests (``op: <name>``).
    op: ClassVar[str] = ""
    #: What the op does, in one line (the CRD's description of ``op`` lists them).
    summary: ClassVar[str] = ""
    #: The op's class for near-data processing (``recprep.isp_nodes``): one of OFFLOAD_CLASSES,
    #: whose throughput the ISP model gives, or None when the op is not offloaded to ISP units
    #: (it runs on the CPU pool).
    offload: ClassVar[str | None] = None

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Manifest spelling of each field -> its description."""
        return {f.alias or name: f.description or "" for name, f in cls.model_fields.items()}


class FillNullParams(OpParams):
    op = "fill_null"
    offload = "normalization"
    summary = "nulls become value"

    value: float | int | str = Field(
        0, description="The value that replaces nulls (cast to the column's type)."
    )


class ClampParams(OpParams):
    op = "clamp"
    offload = "normalization"
    summary = "values (or list elements) limited to [min, max]"

    min: float | None = Field(None, description="Lower bound (inclusive); omit for none.")
    max: float | None = Field(None, description="Upper bound (inclusive); omit for none.")

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("give at least one of min, max")
        if any(b is not None and math.isnan(b) for b in (self.min, self.max)):
            raise ValueError("min and max must not be NaN")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class LogParams(OpParams):
    op = "log"
    offload = "normalization"
    summary = "ln(x + offset), inputs below 1 - offset raised to 1 - offset first"

    offset: float = Field(
        3.0, description="Added before the logarithm; values below 1 - offset are raised to 1 - offset first."
    )


class BucketizeParams(OpParams):
    op = "bucketize"
    offload = "generation"
    summary = "int32 index of the bucket a value falls in (searchsorted, side left)"

    borders: list[float] = Field(description="Bucket borders: non-empty and non-decreasing.")
    output: str | None = Field(None, min_length=1, description=_OUTPUT)

    @field_validator("borders")
    @classmethod
    def _sorted(cls, borders: list[float]) -> list[float]:
        return _check_borders(borders)


def _check_borders(borders: list[float]) -> list[float]:
    if not borders:
        raise ValueError("borders must not be empty")
    if any(math.isnan(b) for b in borders):
        raise ValueError("borders must not contain NaN")
    if any(b < a for a, b in zip(borders, borders[1:])):
        raise ValueError("borders must be non-decreasing")
    return borders


class HexToIntParams(OpParams):
    op = "hex_to_int"
    offload = "decode"
    summary = "hex ID strings (1-16 digits) to int64; empty, null or not hex -> null"


#: how string IDs become 64-bit keys (sigrid_hash, cross): the summaries and descriptions say it
STRING_KEY = (
    "a string (or binary) ID is first hashed to 64 bits with FNV-1a 64 of its UTF-8 (raw) bytes: "
    "h = 0xCBF29CE484222325, then h = (h XOR byte) * 0x100000001B3 mod 2**64 for each byte; "
    "a null or empty string gives null"
)


class SigridHashParams(OpParams):
    op = "sigrid_hash"
    offload = "generation"
    summary = (
        "salted 64-bit mix of int64 or string IDs reduced into [0, maxValue); element-wise on lists; "
        "strings are FNV-1a 64-hashed first; null or empty string -> null"
    )

    salt: int = Field(
        0,
        ge=0,
        lt=SALT_LIMIT,
        description="Salt mixed into every ID (0 <= salt < 2**64); different salts give independent hashes.",
    )
    max_value: int = Field(
        gt=0,
        le=MAX_HASH_RANGE,
        description="Size of the embedding table: results fall in [0, maxValue) (splitmix64 of "
        "ID + salt * 0x9E3779B97F4A7C15, modulo maxValue; " + STRING_KEY + ").",
    )


class ToIntParams(OpParams):
    op = "to_int"
    offload = "decode"
    summary = (
        "decimal ID strings ('196', '-1', '0007') to int64; empty, null, not decimal or out of "
        "int64 range -> null"
    )


class IsInParams(OpParams):
    op = "is_in"
    offload = "generation"
    summary = "1 where the value is one of values, else 0 (null -> 0): a 0/1 label from an event type"

    values: list[str] | list[int] = Field(
        min_length=1,
        description="The values that give 1 (strings for a string column, integers for an integer one).",
    )
    output: str | None = Field(None, min_length=1, description=_OUTPUT)


class CrossParams(OpParams):
    op = "cross"
    offload = "generation"
    summary = (
        "hashed combination (feature cross) of two or more sparse columns into [0, maxValue); "
        "a null in any input -> null"
    )

    output: str = Field(
        min_length=1,
        description="Name of the new column holding the cross (required; the input columns are kept).",
    )
    max_value: int = Field(
        gt=0,
        le=MAX_HASH_RANGE,
        description="Size of the cross's embedding table: results fall in [0, maxValue). A row's "
        "cross folds its values' 64-bit keys in the table's column order, h = mix64(k1, salt), then "
        "h = mix64(h XOR mix64(kj, salt + j - 1)) (ngram's fold), modulo maxValue; int IDs are "
        "their own key, " + STRING_KEY + ".",
    )
    salt: int = Field(0, ge=0, lt=SALT_LIMIT, description="Salt of the cross's hash (0 <= salt < 2**64).")

    @field_validator("output")
    @classmethod
    def _one_name(cls, output: str) -> str:
        if "{column}" in output:
            raise ValueError("a cross makes one column from all its inputs: give a plain name, not {column}")
        return output


#: seconds in each unit of a time op's age
TIME_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 7 * 86400}


class TimeParams(OpParams):
    op = "time"
    offload = "decode"
    summary = (
        "a part of a timestamp, in UTC: hour (0-23), weekday (0-6, Monday 0), day of the month "
        "(1-31), or age since a reference time bucketized by borders; unparseable -> null"
    )

    part: Literal["hour", "weekday", "day", "age"] = Field(
        description="What to extract: hour (0-23) | weekday (0-6, Monday = 0) | day (day of the "
        "month, 1-31) | age (time since reference in unit, bucketized by borders), all in UTC."
    )
    format: str = Field(
        "unix",
        min_length=1,
        description="How the column holds the time: unix (seconds since 1970-01-01 UTC, int or "
        "decimal string) | unix_ms (milliseconds) | a strptime pattern such as '%y%m%d%H' "
        "(Avazu's hour 14102100) for string or int columns (ints are zero-padded to the pattern's "
        "width when it has only fixed-width fields). Times outside years 1-9999 are null.",
    )
    output: str | None = Field(None, min_length=1, description=_OUTPUT)
    reference: str | int | None = Field(
        None,
        description="part age only (required there): the reference time, an ISO 8601 date-time "
        "('2014-10-21', '2017-12-03T00:00:00Z'; no offset = UTC) or unix seconds.",
    )
    unit: Literal["seconds", "minutes", "hours", "days", "weeks"] | None = Field(
        None,
        description="part age only: the age's unit, seconds | minutes | hours | days | weeks "
        "(default days); age = (time - reference) / unit, a real number.",
    )
    borders: list[float] | None = Field(
        None,
        description="part age only (required there): bucket borders of the age, non-empty and "
        "non-decreasing; the result is the number of borders strictly below the age, 0..len(borders).",
    )

    @field_validator("format")
    @classmethod
    def _format(cls, fmt: str) -> str:
        if fmt not in ("unix", "unix_ms") and "%" not in fmt:
            raise ValueError("give unix, unix_ms or a strptime pattern with % fields (e.g. '%y%m%d%H')")
        return fmt

    @field_validator("borders")
    @classmethod
    def _sorted(cls, borders: list[float] | None) -> list[float] | None:
        return None if borders is None else _check_borders(borders)

    @field_validator("reference", mode="before")
    @classmethod
    def _reference(cls, reference: object) -> object:
        if isinstance(reference, bool) or not isinstance(reference, str | int | None):
            raise ValueError("give an ISO 8601 date-time (a string) or unix seconds (an integer)")
        if reference is not None:
            _reference_ms(reference)  # raises ValueError naming what is wrong
        return reference

    @model_validator(mode="after")
    def _age_fields(self):
        if self.part == "age":
            missing = [f for f in ("reference", "borders") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"{', '.join(missing)}: required for part age")
        else:
            given = [f for f in ("reference", "unit", "borders") if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: only for part age (part is {self.part})")
        return self

    @property
    def reference_ms(self) -> int | None:
        """The reference as unix milliseconds (None unless part is age; finer digits of an ISO
        reference are dropped, towards the past)."""
        return None if self.reference is None else _reference_ms(self.reference)

    @property
    def unit_ms(self) -> int:
        """Milliseconds in the age's unit."""
        return 1000 * TIME_UNITS[self.unit or "days"]


#: the time op's valid range: years 1-9999, as unix seconds [min, max)
TIME_MIN = int((datetime(1, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
TIME_MAX = (
    int((datetime(9999, 12, 31, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) + 86400
)


def _reference_ms(reference: str | int) -> int:
    if isinstance(reference, int):
        ms = reference * 1000
    else:
        try:
            when = datetime.fromisoformat(reference.strip())
        except ValueError:
            raise ValueError(
                f"{reference!r} is not an ISO 8601 date-time (e.g. 2014-10-21T00:00:00Z)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ms = (when.replace(tzinfo=None) - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
        ms -= when.utcoffset() // timedelta(milliseconds=1)
    if not TIME_MIN * 1000 <= ms < TIME_MAX * 1000:
        raise ValueError("the reference must lie in years 1-9999 (UTC)")
    return ms


class ToListParams(OpParams):
    op = "to_list"
    offload = "generation"
    summary = "scalar -> one-element list, null -> empty list"


class FirstXParams(OpParams):
    op = "firstx"
    offload = "generation"
    summary = "first min(k, len) elements of each list"

    k: int = Field(ge=1, description="Keep the first min(k, len) elements of each list (k >= 1).")


class NGramParams(OpParams):
    op = "ngram"
    offload = "generation"
    summary = "hashed n-grams of consecutive IDs of a list feature"

    n: int = Field(ge=1, le=16, description="Length of the n-grams (1 <= n <= 16).")
    max_value: int = Field(gt=0, le=MAX_HASH_RANGE, description="Hash n-grams into [0, maxValue).")
    salt: int = Field(0, ge=0, lt=SALT_LIMIT, description="Salt of the n-gram hash.")
    output: str | None = Field(None, min_length=1, description=_OUTPUT)


class HistoryParams(OpParams):
    op = "history"
    offload = None  # reads the rows before each session: the shard's own order, on the CPU pool
    summary = "the values of the key's last k events before each session (needs spec.source.session)"

    k: int = Field(
        ge=1,
        le=4096,
        description="The key's last k events before the session (1 <= k <= 4096); nulls left out.",
    )
    output: str | None = Field(
        None,
        min_length=1,
        description="Name of the new list column (required; with several input columns use {column}, e.g. "
        '"{column}_history").',
    )

    @model_validator(mode="after")
    def _needs_output(self):
        if not self.output:
            raise ValueError("output: required (history makes a new list column; the input stays)")
        return self


class CategorifyParams(OpParams):
    op = "categorify"
    offload = None  # a fitted vocabulary: a lookup table that may exceed an ISP unit's memory
    summary = "fitted vocabulary: ID = rank by count + 1, unseen or null -> 0"

    min_count: int = Field(
        1,
        ge=1,
        description="Keep values that occur at least this many times in the source; rarer values map to 0.",
    )


class NormalizeParams(OpParams):
    op = "normalize"
    offload = "normalization"
    summary = "fitted mean and std: (x - mean) / std"


class BoxCoxParams(OpParams):
    op = "boxcox"
    offload = "normalization"
    summary = "Box-Cox with lambda fitted by scikit-learn on a deterministic sample"

    shift: float = Field(0.0, description="Added to every value first; Box-Cox needs x + shift > 0.")
    sample_size: int = Field(
        100_000,
        ge=10,
        description="Number of values the lambda is fitted on (a deterministic, evenly strided sample).",
    )


#: op name -> its parameter model: the one list of the ops a manifest may name.
PARAMS: dict[str, type[OpParams]] = {
    cls.op: cls
    for cls in (
        FillNullParams,
        ClampParams,
        LogParams,
        BucketizeParams,
        HexToIntParams,
        ToIntParams,
        IsInParams,
        SigridHashParams,
        CrossParams,
        TimeParams,
        ToListParams,
        FirstXParams,
        NGramParams,
        HistoryParams,
        CategorifyParams,
        NormalizeParams,
        BoxCoxParams,
    )
}
