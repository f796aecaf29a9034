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
from typing import ClassVar

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

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Manifest spelling of each field -> its description."""
        return {f.alias or name: f.description or "" for name, f in cls.model_fields.items()}


class FillNullParams(OpParams):
    op = "fill_null"
    summary = "nulls become value"

    value: float | int | str = Field(
        0, description="The value that replaces nulls (cast to the column's type)."
    )


class ClampParams(OpParams):
    op = "clamp"
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
    summary = "ln(x + offset), inputs below 1 - offset raised to 1 - offset first"

    offset: float = Field(
        3.0, description="Added before the logarithm; values below 1 - offset are raised to 1 - offset first."
    )


class BucketizeParams(OpParams):
    op = "bucketize"
    summary = "int32 index of the bucket a value falls in (searchsorted, side left)"

    borders: list[float] = Field(description="Bucket borders: non-empty and non-decreasing.")
    output: str | None = Field(None, description=_OUTPUT)

    @field_validator("borders")
    @classmethod
    def _sorted(cls, borders: list[float]) -> list[float]:
        if not borders:
            raise ValueError("borders must not be empty")
        if any(math.isnan(b) for b in borders):
            raise ValueError("borders must not contain NaN")
        if any(b < a for a, b in zip(borders, borders[1:])):
            raise ValueError("borders must be non-decreasing")
        return borders


class HexToIntParams(OpParams):
    op = "hex_to_int"
    summary = "hex ID strings (1-16 digits) to int64; empty, null or not hex -> null"


class SigridHashParams(OpParams):
    op = "sigrid_hash"
    summary = "salted 64-bit mix of int64 IDs reduced into [0, maxValue); element-wise on lists"

    salt: int = Field(
        0,
        ge=0,
        lt=SALT_LIMIT,
        description="Salt mixed into every ID (0 <= salt < 2**64); different salts give independent hashes.",
    )
    max_value: int = Field(
        gt=0, le=MAX_HASH_RANGE, description="Size of the embedding table: results fall in [0, maxValue)."
    )


class ToListParams(OpParams):
    op = "to_list"
    summary = "scalar -> one-element list, null -> empty list"


class FirstXParams(OpParams):
    op = "firstx"
    summary = "first min(k, len) elements of each list"

    k: int = Field(ge=1, description="Keep the first min(k, len) elements of each list (k >= 1).")


class NGramParams(OpParams):
    op = "ngram"
    summary = "hashed n-grams of consecutive IDs of a list feature"

    n: int = Field(ge=1, le=16, description="Length of the n-grams (1 <= n <= 16).")
    max_value: int = Field(gt=0, le=MAX_HASH_RANGE, description="Hash n-grams into [0, maxValue).")
    salt: int = Field(0, ge=0, lt=SALT_LIMIT, description="Salt of the n-gram hash.")
    output: str | None = Field(None, description=_OUTPUT)


class CategorifyParams(OpParams):
    op = "categorify"
    summary = "fitted vocabulary: ID = rank by count + 1, unseen or null -> 0"

    min_count: int = Field(
        1,
        ge=1,
        description="Keep values that occur at least this many times in the source; rarer values map to 0.",
    )


class NormalizeParams(OpParams):
    op = "normalize"
    summary = "fitted mean and std: (x - mean) / std"


class BoxCoxParams(OpParams):
    op = "boxcox"
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
        SigridHashParams,
        ToListParams,
        FirstXParams,
        NGramParams,
        CategorifyParams,
        NormalizeParams,
        BoxCoxParams,
    )
}
