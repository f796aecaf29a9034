"""The deduplicated shard layout (RecD's IKJT, in one Parquet file).

A job with ``spec.dedup`` names groups of features that are constant within a session. A shard
of such a job stores each group's distinct rows once, with an inverse index per sample:

- every column in no group is per sample, as in any shard (``N`` rows);
- a group's columns hold its ``U`` unique rows in rows ``[0, U)`` of the file and nulls in
  ``[U, N)`` (``U <= N`` always: every unique row is some sample's). Unique rows are in order of
  first appearance, so in a session-grouped shard the inverse index never decreases;
- the group's inverse column (``_inverse.<group>``, int32, no nulls) gives, for each of the
  ``N`` samples, its row in ``[0, U)``;
- the schema metadata key ``recprep.dedup`` (JSON) lists the groups:
  ``{"version": 1, "groups": [{"name": ..., "columns": [...], "inverse": "_inverse.<name>",
  "unique": U}]}``;
- version 2 adds, to a group with history lists, ``"derived": [{"column": c, "from": s, "k": k,
  "flags": "_derived.<c>"}]``: a flag column (int32 0 or 1, rows ``[0, U)``) marks the unique rows whose
  list of ``c`` is not stored (null) because it follows from the row before and the per-sample
  column ``s`` (:mod:`.derived` has the rule). :func:`materialize` makes them again.

Sample ``i``'s value of a group column ``c`` is ``c[inverse[i]]`` (once the derived lists are
made again). A plain Parquet reader still
reads every column outside the groups as usual (the nulls cost one definition level each); a
reader that knows the layout (:func:`expand`, the loader) gets every sample's values back, and the
loader hands the unique rows to the model with TorchRec's ``inverse_indices``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .derived import Derivation, flags, rebuild, stored

#: The schema metadata key of a deduplicated shard's groups.
DEDUP_KEY = b"recprep.dedup"
#: Prefix of a group's inverse column.
INVERSE_PREFIX = "_inverse."
LAYOUT_VERSION = 1
#: The layout version of a shard with derived history lists.
DERIVED_VERSION = 2


@dataclass(frozen=True)
class DedupGroup:
    """One group of a shard: its name, its columns, its inverse column and its unique rows."""

    name: str
    columns: tuple[str, ...]
    unique: int
    derived: tuple[Derivation, ...] = ()  #: its history lists stored only where needed

    @property
    def inverse(self) -> str:
        return inverse_column(self.name)

    @property
    def bookkeeping(self) -> tuple[str, ...]:
        """The group's columns that are no feature: its inverse index and flags."""
        return (self.inverse, *(d.flags for d in self.derived))

    def to_json(self) -> dict:
        doc = {
            "name": self.name,
            "columns": list(self.columns),
            "inverse": self.inverse,
            "unique": self.unique,
        }
        if self.derived:
            doc["derived"] = [d.to_json() for d in self.derived]
        return doc


def inverse_column(group: str) -> str:
    return INVERSE_PREFIX + group


def groups_of(schema: pa.Schema) -> list[DedupGroup]:
    """The dedup groups a shard's schema records (none: a plain shard). A record that does not
    parse, or names columns the schema does not have, is an error (ValueError)."""
    raw = (schema.metadata or {}).get(DEDUP_KEY)
    if raw is None:
        return []
    try:
        doc = json.loads(raw)
        groups = [
            DedupGroup(
                g["name"],
                tuple(g["columns"]),
                int(g["unique"]),
                tuple(Derivation.from_json(d) for d in g.get("derived", ())),
            )
            for g in doc["groups"]
        ]
        if not all(isinstance(g.name, str) and all(isinstance(c, str) for c in g.columns) for g in groups):
            raise TypeError("group names and columns must be strings")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"schema metadata {DEDUP_KEY.decode()}: malformed ({exc})") from None
    names = set(schema.names)
    for g in groups:
        missing = [c for c in (*g.columns, *g.bookkeeping, *(d.source for d in g.derived)) if c not in names]
        if missing:
            raise ValueError(f"dedup group {g.name!r}: the shard has no column {missing[0]!r}")
        outside = [d.column for d in g.derived if d.column not in g.columns]
        if outside:
            raise ValueError(
                f"dedup group {g.name!r}: derived column {outside[0]!r} is not one of its columns"
            )
    return groups


@dataclass
class Unique:
    """One group of a deduplicated table: its unique rows and each sample's row among them."""

    group: str
    rows: pa.Table  #: the group's columns, U rows
    inverse: np.ndarray  #: int32 (N,), values in [0, U)


def _padded(col, n: int) -> pa.ChunkedArray:
    """``col`` (a group's unique rows) followed by nulls up to ``n`` rows."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    return pa.chunked_array([*chunks, pa.nulls(n - len(col), col.type)], type=col.type)


def pack(
    table: pa.Table,
    uniques: list[Unique],
    order: list[str] | None = None,
    derive: Sequence[Derivation] = (),
) -> pa.Table:
    """The shard layout of ``table`` (N samples, every column but the groups') and the groups'
    unique rows: the columns in ``order`` (default: ``table``'s, then each group's), then each
    group's inverse column (and flag columns); ``table``'s schema metadata is kept. ``derive``:
    history lists of the groups stored only where the row before and their per-sample source
    column do not give them (:mod:`.derived`); one whose source is not one of ``table``'s
    per-sample columns is stored whole."""
    n = table.num_rows
    columns: dict[str, pa.ChunkedArray | pa.Array] = dict(zip(table.column_names, table.columns))
    groups, extra = [], []
    for u in uniques:
        count = u.rows.num_rows
        if count > n or len(u.inverse) != n:
            raise ValueError(
                f"dedup group {u.group!r}: {count} unique rows and {len(u.inverse)} inverse for {n}"
            )
        rows = dict(zip(u.rows.column_names, u.rows.columns))
        derived = tuple(d for d in derive if d.column in rows and d.source in table.column_names)
        flag_columns = {}
        for d in derived:
            row_flags = flags(rows[d.column], columns[d.source], u.inverse, d.k)
            rows[d.column] = stored(rows[d.column], row_flags)
            flag_columns[d.flags] = _padded(pa.array(row_flags.astype(np.int32)), n)
        for name, col in rows.items():
            columns[name] = _padded(col, n)
        columns[inverse_column(u.group)] = pa.array(u.inverse.astype(np.int32, copy=False), pa.int32())
        columns.update(flag_columns)
        group = DedupGroup(u.group, tuple(u.rows.column_names), count, derived)
        groups.append(group)
        extra += group.bookkeeping
    if order is not None:
        columns = {c: columns[c] for c in [*order, *extra]}
    out = pa.table(columns)
    meta = dict(table.schema.metadata or {})
    version = DERIVED_VERSION if any(g.derived for g in groups) else LAYOUT_VERSION
    meta[DEDUP_KEY] = json.dumps(
        {"version": version, "groups": [g.to_json() for g in groups]}, separators=(",", ":")
    ).encode()
    return out.replace_schema_metadata(meta)


def materialize(table: pa.Table) -> pa.Table:
    """A whole shard with its derived history lists made again and stored as any group column
    (version 1 of the layout: no flag columns); any other shard as it is. ValueError when the
    flags contradict the shard (its record or data was changed on the way)."""
    if b'"derived"' not in (table.schema.metadata or {}).get(DEDUP_KEY, b""):
        return table  # nothing to make (a record that does not parse is its readers' to report)
    groups = groups_of(table.schema)
    if not any(g.derived for g in groups):
        return table
    n = table.num_rows
    for g in groups:
        inverse = np.asarray(table[g.inverse].to_numpy(), dtype=np.int64)
        for d in g.derived:
            row_flags = table[d.flags].slice(0, g.unique)
            if row_flags.null_count:
                raise ValueError(
                    f"dedup group {g.name!r}: flag column {d.flags!r} has nulls among its unique rows"
                )
            lists = table[d.column].slice(0, g.unique)
            try:
                made = rebuild(lists, np.asarray(row_flags.to_numpy()) != 0, table[d.source], inverse, d.k)
            except ValueError as exc:
                raise ValueError(f"dedup group {g.name!r}, column {d.column!r}: {exc}") from None
            i = table.schema.get_field_index(d.column)
            table = table.set_column(i, table.schema.field(i), _padded(made, n))
    doc = json.loads(table.schema.metadata[DEDUP_KEY])
    doc["version"] = LAYOUT_VERSION
    for g in doc["groups"]:
        g.pop("derived", None)
    meta = dict(table.schema.metadata)
    meta[DEDUP_KEY] = json.dumps(doc, separators=(",", ":")).encode()
    table = table.drop_columns([d.flags for g in groups for d in g.derived])
    return table.replace_schema_metadata(meta)


def unpack(table: pa.Table) -> tuple[pa.Table, list[Unique]]:
    """``table`` (a whole shard) as its per-sample columns and its groups' unique rows (the
    derived lists made again); a plain shard is itself with no groups."""
    table = materialize(table)
    groups = groups_of(table.schema)
    if not groups:
        return table, []
    grouped = {c for g in groups for c in (*g.columns, g.inverse)}
    samples = table.select([c for c in table.column_names if c not in grouped])
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != DEDUP_KEY}
    uniques = [
        Unique(
            g.name,
            table.select(list(g.columns)).slice(0, g.unique),
            np.asarray(table[g.inverse].to_numpy(), dtype=np.int32),
        )
        for g in groups
    ]
    return samples.replace_schema_metadata(meta or None), uniques


def recount(table: pa.Table) -> pa.Table:
    """``table`` (one whole shard) with each group's unique count taken from its inverse column
    (``max + 1``: every unique row is some sample's). The shard service streams every shard under
    the first one's schema, whose record holds that shard's counts; a receiver recounts."""
    raw = (table.schema.metadata or {}).get(DEDUP_KEY)
    if raw is None:
        return table
    try:
        doc = json.loads(raw)
        for g in doc["groups"]:
            inverse = table[g["inverse"]]
            g["unique"] = int(pc.max(inverse).as_py()) + 1 if table.num_rows else 0
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"schema metadata {DEDUP_KEY.decode()}: malformed ({exc})") from None
    meta = dict(table.schema.metadata)
    meta[DEDUP_KEY] = json.dumps(doc, separators=(",", ":")).encode()
    return table.replace_schema_metadata(meta)


def expand(table: pa.Table) -> pa.Table:
    """Every sample's values of a deduplicated shard, as a plain table (the columns in the file's
    order, the inverse and flag columns and the dedup record dropped); a plain shard is returned
    as is."""
    groups = groups_of(table.schema)
    if not groups:
        return table
    samples, uniques = unpack(table)
    values = {name: samples[name] for name in samples.column_names}
    for u in uniques:
        taken = u.rows.take(pa.array(u.inverse, pa.int32()))
        values.update(zip(taken.column_names, taken.columns))
    bookkeeping = {c for g in groups for c in g.bookkeeping}
    order = [c for c in table.column_names if c not in bookkeeping]
    out = pa.table({c: values[c] for c in order})
    return out.replace_schema_metadata(samples.schema.metadata)


def first_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each run, each row's run ordinal) of ``keys``, a per-sample run label that
    changes where a run (a session) ends: the rows ops run on once, and the inverse index."""
    n = len(keys)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int32)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    inverse = np.zeros(n, np.int32)
    inverse[starts[1:]] = 1
    return starts, np.cumsum(inverse, dtype=np.int32)


__all__ = [
    "DEDUP_KEY",
    "DERIVED_VERSION",
    "DedupGroup",
    "Derivation",
    "Unique",
    "expand",
    "first_rows",
    "groups_of",
    "inverse_column",
    "materialize",
    "pack",
    "unpack",
]
