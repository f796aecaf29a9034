"""Splits and the source protocol shared by every source format."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import SpecError


@dataclass(frozen=True)
class Split:
    """One unit of work: a deterministic piece of the source, numbered in source order."""

    index: int
    path: str
    start: int  #: byte offset (text), first row group (parquet) or first row (synthetic)
    stop: int  #: exclusive end, in the same unit
    est_rows: int
    header: bool = False  #: the piece begins with the file's header line

    def describe(self) -> dict:
        return {"path": self.path, "start": self.start, "stop": self.stop}


@dataclass
class BadRow:
    """A malformed input row: where it is, why it was rejected, and its text."""

    file: str
    line: int
    reason: str
    text: str


@dataclass
class ReadResult:
    table: pa.Table
    bad: list[BadRow] = field(default_factory=list)
    #: per column, the values the source made null while doing an op pushed down into the read
    #: (hex fields that are not IDs, for ``hex_to_int``): counted as that op's, see ``plan``
    nulled: dict[str, int] = field(default_factory=dict)
    #: leading rows that are not the split's own: earlier events of its first session key, read
    #: so that history features see them (``sessions``); the plan drops them
    context: int = 0
    #: a grouped session source's keys of the split's own rows (``grouped_sessions.SplitKeys``),
    #: for the driver's check that no key's events are in two places
    keys: object = None


#: ``spec.source.nonFinite``: non-finite numbers (inf, -inf, NaN, 1e309) make the row bad
#: (quarantined), or become nulls.
QUARANTINE, NULL = "quarantine", "null"


def non_finite_rows(table: pa.Table, columns: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Rows of ``table`` holding a non-finite value in one of the floating ``columns`` (a bool
    mask), and for each such row the reason naming the first such column and its value."""
    mask = np.zeros(table.num_rows, dtype=bool)
    reasons: dict[int, str] = {}
    for name in columns:
        col = table[name]
        if not pa.types.is_floating(col.type) or not table.num_rows:
            continue
        bad = np.concatenate([_non_finite(chunk) for chunk in col.chunks]) if col.num_chunks else mask
        if not bad.any():
            continue
        values = col.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(bad & ~mask):
            reasons[int(i)] = f"column {name}: non-finite value {float(values[i])}"
        mask |= bad
    return mask, reasons


def _non_finite(chunk: pa.Array) -> np.ndarray:
    """Per row of a floating array: a value that is inf, -inf or NaN (nulls are not)."""
    values = np.frombuffer(
        chunk.buffers()[1], dtype=chunk.type.to_pandas_dtype(), count=len(chunk) + chunk.offset
    )[chunk.offset :]
    bad = ~np.isfinite(values)
    if chunk.null_count and bad.any():  # a null's slot holds anything
        bad &= np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return bad


def null_non_finite(table: pa.Table, columns: list[str]) -> pa.Table:
    """``table`` with every non-finite value of the floating ``columns`` made null."""
    for name in columns:
        col = table[name]
        if pa.types.is_floating(col.type):
            finite = pc.is_finite(col)
            if not pc.all(pc.or_kleene(finite, pc.is_null(col))).as_py():
                table = table.set_column(
                    table.column_names.index(name), name, pc.if_else(finite, col, pa.scalar(None, col.type))
                )
    return table


@dataclass(frozen=True)
class Roles:
    """Which columns are the label, the dense and the sparse features."""

    label: str | None
    dense: tuple[str, ...]
    sparse: tuple[str, ...]


def select(names: list[str], selector, field_path: str) -> list[str]:
    """Column names matching a selector (names and globs), in schema order."""
    patterns = [selector] if isinstance(selector, str) else list(selector)
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise SpecError(f"{field_path}: no column matches {pattern!r}; columns are: {', '.join(names)}")
        chosen += [h for h in hits if h not in chosen]
    order = {n: i for i, n in enumerate(names)}
    return sorted(chosen, key=order.__getitem__)
