"""Splits and the source protocol shared by every source format."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import pyarrow as pa

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
