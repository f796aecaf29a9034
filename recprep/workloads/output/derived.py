"""History lists a deduplicated shard need not store: they follow from the row before.

A history (``ops.history``) is the values of a column over a key's last ``k`` events before a
session. The next session of the same key has the same window moved on by the events between
the two sessions, and a session shard holds those events anyway, per sample, in the column the
history was made from. So in a dedup group (``output.dedup``), whose unique rows are a shard's
sessions in order, most history lists can be left out and made again on reading:

    unique row ``u`` (``u >= 1``) whose flag is set holds the last ``k`` values of
    (the list of row ``u - 1``, then ``source[f(u - 1) : f(u)]``)

where ``f(u)`` is row ``u``'s first sample (the inverse index never decreases in a session
shard) and ``source`` is the per-sample column. A flagged row's list is stored as null.

The writer sets a flag only where the rule gives the row's list exactly, checked value by value
(:func:`flags`): the rule is a way of storing the list, not an assumption about the ops, so a
list the rule does not give (a key's first session in the shard, an op after ``history`` that
changed the list or its source, nulls in the source) is stored whole. A chain of flagged rows
reads back from the last row stored whole, ``h``, at once: the last ``k`` values of
(list ``h``, then ``source[f(h) : f(u)]``), which is the rule applied row after row.

Everything is whole numpy columns: one gather checks every list of a shard, one builds them again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Prefix of a derived column's flag column (int32 0 or 1, one flag per unique row).
FLAGS_PREFIX = "_derived."


@dataclass(frozen=True)
class Derivation:
    """A group's list column (``column``) whose rows may follow from the row before and the
    per-sample column ``source``, over windows of ``k`` values."""

    column: str
    source: str
    k: int

    @property
    def flags(self) -> str:
        return FLAGS_PREFIX + self.column

    def to_json(self) -> dict:
        return {"column": self.column, "from": self.source, "k": self.k, "flags": self.flags}

    @classmethod
    def from_json(cls, doc: dict) -> Derivation:
        d = cls(doc["column"], doc["from"], int(doc["k"]))
        if not (isinstance(d.column, str) and isinstance(d.source, str)) or d.k < 1:
            raise ValueError(f"derived column {doc!r}: column and from must be names, k at least 1")
        if doc.get("flags", d.flags) != d.flags:
            raise ValueError(f"derived column {d.column!r}: its flags are {d.flags!r}, not {doc['flags']!r}")
        return d


def first_samples(inverse: np.ndarray, unique: int) -> np.ndarray | None:
    """Each unique row's first sample, or None when the inverse index decreases somewhere
    (rows not in session order: nothing is derived)."""
    if len(inverse) > 1 and bool(np.any(inverse[1:] < inverse[:-1])):
        return None
    return np.searchsorted(inverse, np.arange(unique), side="left")


def _one(col) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _valid(col: pa.Array) -> np.ndarray:
    return np.ones(len(col), bool) if not col.null_count else np.asarray(col.is_valid().to_numpy(False))


def _lists(col: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(lengths, offsets, values as int64, valid) of a list column of integers; None for any other
    type. A null list has length 0."""
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        return None
    if not pa.types.is_integer(col.type.value_type):
        return None
    valid = _valid(col)
    lengths = np.asarray(pc.fill_null(pc.list_value_length(col), 0).to_numpy(False), np.int64)
    offsets = np.zeros(len(col) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = col.flatten()
    if flat.null_count:  # a null inside a list: not a history's (history leaves nulls out)
        return None
    return lengths, offsets, np.asarray(flat.to_numpy(False), np.int64), valid


def _source(col) -> tuple[np.ndarray, np.ndarray] | None:
    """(values as int64, valid) of a per-sample integer column; None for any other type."""
    col = _one(col)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if not pa.types.is_integer(col.type):
        return None
    valid = _valid(col)
    return np.asarray(col.fill_null(0).to_numpy(False), np.int64), valid


def _rule_index(p, base_offset, base_len, base_first, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Where position ``p`` of (a base row's list, then the source from the base row's first
    sample on) is in ``concatenate([list values, source])``, and whether it is in the list."""
    in_list = p < base_len
    return np.where(in_list, base_offset + p, n_values + base_first + p - base_len), in_list


def _segments(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment of each position, position within its segment) of segments of ``lengths``."""
    total = int(lengths.sum())
    seg = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return seg, np.arange(total, dtype=np.int64) - starts[seg]


def flags(lists, source, inverse: np.ndarray, k: int) -> np.ndarray:
    """The rows of ``lists`` (a group's ``U`` unique rows) that the rule gives exactly from the
    row before and ``source`` (the ``N`` samples' column): one bool per row, never the first."""
    lists = _one(lists)
    u_count = len(lists)
    out = np.zeros(u_count, bool)
    first = first_samples(inverse, u_count)
    parsed, src = _lists(lists), _source(source)
    if u_count < 2 or first is None or parsed is None or src is None:
        return out
    lengths, offsets, values, valid = parsed
    src_values, src_valid = src
    total = lengths[:-1] + (first[1:] - first[:-1])  # the values the rule takes the last k of
    wanted = np.minimum(k, total)
    rows = np.flatnonzero((lengths[1:] == wanted) & valid[1:] & valid[:-1]) + 1
    if not len(rows):
        return out
    seg, j = _segments(lengths[rows])
    u = rows[seg]
    p = total[u - 1] - lengths[u] + j  # the position in (list u - 1, then the samples between)
    index, stored = _rule_index(p, offsets[u - 1], lengths[u - 1], first[u - 1], len(values))
    expected = np.concatenate([values, src_values])[index]
    known = np.ones(len(index), bool)  # a null sample enters no history: such a list is stored
    known[~stored] = src_valid[index[~stored] - len(values)]
    bad = (expected != values[offsets[u] + j]) | ~known
    out[rows] = True
    out[u[bad]] = False
    return out


def rebuild(lists, row_flags: np.ndarray, source, inverse: np.ndarray, k: int) -> pa.Array:
    """``lists`` (``U`` rows, null where flagged) with every flagged row's list made again."""
    lists = _one(lists)
    u_count = len(lists)
    if not row_flags.any():
        return lists
    if row_flags[0]:
        raise ValueError("the first unique row is flagged derived: it has no row before it")
    first = first_samples(inverse, u_count)
    if first is None:
        raise ValueError("rows flagged derived, but the inverse index decreases")
    parsed, src = _lists(lists), _source(source)
    if parsed is None or src is None:
        raise ValueError(
            f"rows flagged derived, but the list ({lists.type}) or its source is not of integers"
        )
    lengths, offsets, values, valid = parsed
    head = np.maximum.accumulate(np.where(row_flags, 0, np.arange(u_count)))  # the row stored whole
    head_len = lengths[head]
    total = head_len + (first - first[head])
    out_len = np.where(row_flags, np.minimum(k, total), lengths)
    seg, j = _segments(out_len)
    h = head[seg]
    p = np.where(row_flags[seg], total[seg] - out_len[seg] + j, j)
    index, _ = _rule_index(p, offsets[h], head_len[seg], first[h], len(values))
    if len(index) and (index.max() >= len(values) + len(src[0])):
        raise ValueError("rows flagged derived reach past the shard's samples")
    rebuilt = np.concatenate([values, src[0]])[index]
    new_offsets = np.zeros(u_count + 1, np.int64)
    np.cumsum(out_len, out=new_offsets[1:])
    large = pa.types.is_large_list(lists.type)
    mask = None if valid[~row_flags].all() else pa.array(~(valid | row_flags))
    return (pa.LargeListArray if large else pa.ListArray).from_arrays(
        pa.array(new_offsets, pa.int64() if large else pa.int32()),
        pa.array(rebuilt).cast(lists.type.value_type),
        type=lists.type,
        mask=mask,
    )


def stored(lists, row_flags: np.ndarray) -> pa.Array:
    """``lists`` with the flagged rows' lists left out (null)."""
    lists = _one(lists)
    if not row_flags.any():
        return lists
    return pc.if_else(pa.array(row_flags), pa.nulls(len(lists), lists.type), lists)


__all__ = ["FLAGS_PREFIX", "Derivation", "first_samples", "flags", "rebuild", "stored"]
