"""Deduplicated (RecD) job outputs for the trainer-side tests: session tables whose user-side
columns are constant within a session, encoded with the shard layout's own ``pack``, beside the
same rows as plain shards (``expand`` of the deduplicated ones)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from recprep.workloads.output.dedup import Unique, expand, first_rows, pack
from recprep.workloads.output.records import FeatureRoles

from ..shard_outputs import write_output

#: the dedup groups: "user" (a list and a scalar feature) and "ctx" (one ID, repeated across sessions)
GROUPS = {"user": ["user", "age"], "ctx": ["ctx"]}
#: the roles: the group columns interleaved with the per-sample ones, as a job may list them
ROLES = FeatureRoles("label", ("d", "row_id"), ("item", "user", "ctx", "age", "small"))


def session_table(rows: int, seed: int, start: int = 0) -> pa.Table:
    """``rows`` samples in sessions of 1-7 samples: ``session`` (not a feature), the label, two dense
    columns (``row_id`` numbers the rows from ``start``), per-sample ``item`` (lists of 0-4 IDs,
    some null) and ``small`` (list<int32>), and per-session ``user`` (lists of 0-3 IDs or null),
    ``age`` (int32 or null) and ``ctx`` (one of 20 IDs: the same ID recurs in other sessions)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 8, size=rows)
    session = np.repeat(np.arange(rows) + 1000 * seed, lengths)[:rows]
    n_sessions = int(session[-1] - session[0]) + 1 if rows else 0
    users = []
    for _ in range(n_sessions):
        n = int(rng.integers(0, 5))
        users.append(None if n == 4 else [int(x) for x in rng.integers(0, 300, n)])
    ages = [None if rng.random() < 0.2 else int(x) for x in rng.integers(0, 10, n_sessions)]
    ctx = [[int(x)] for x in rng.integers(0, 20, n_sessions)]
    per_session = session - session[0] if rows else session
    items = []
    for _ in range(rows):
        n = int(rng.integers(0, 6))
        items.append(None if n == 5 else [int(x) for x in rng.integers(0, 1000, n)])
    table = pa.table(
        {
            "session": pa.array(session, pa.int64()),
            "label": pa.array(rng.integers(0, 2, rows), pa.int64()),
            "d": pa.array(rng.normal(size=rows)),
            "row_id": pa.array(np.arange(start, start + rows, dtype=np.float64)),
            "item": pa.array(items, pa.list_(pa.int64())),
            "user": pa.array(users, pa.list_(pa.int64())).take(pa.array(per_session)),
            "age": pa.array(ages, pa.int32()).take(pa.array(per_session)),
            "ctx": pa.array(ctx, pa.list_(pa.int64())).take(pa.array(per_session)),
            "small": pa.array([[int(x)] for x in rng.integers(0, 50, rows)], pa.list_(pa.int32())),
        }
    )
    return table.replace_schema_metadata(ROLES.metadata())


def dedup(table: pa.Table, groups: dict[str, list[str]] = GROUPS) -> pa.Table:
    """``table`` in the deduplicated layout: each group's rows once per run of ``session`` (in
    order of first appearance, whether or not a session's samples are adjacent)."""
    session = table["session"].to_numpy()
    if len(session) and (np.diff(session) != 0).sum() + 1 == len(np.unique(session)):
        starts, inverse = first_rows(session)  # sessions are runs: the writer's case
    else:
        _, first, inverse = np.unique(session, return_index=True, return_inverse=True)
        order = np.argsort(first)
        rank = np.empty(len(order), np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        starts, inverse = first[order], rank[inverse.reshape(-1)]
    uniques = [
        Unique(name, table.select(cols).take(pa.array(starts)), inverse) for name, cols in groups.items()
    ]
    grouped = [c for cols in groups.values() for c in cols]
    return pack(table.drop_columns(grouped), uniques, order=table.column_names)


def write_pair(directory: Path, tables: list[pa.Table], groups: dict[str, list[str]] = GROUPS):
    """(plain output, deduplicated output) of ``tables``: shards 0..n-1 in both, the plain ones
    ``expand()`` of the deduplicated ones (checked to be the tables themselves)."""
    packed = [dedup(t, groups) for t in tables]
    plain = [expand(p) for p in packed]
    for t, p in zip(tables, plain):
        assert p.equals(t) and p.schema.metadata == t.schema.metadata
    return write_output(directory / "plain", plain), write_output(directory / "dedup", packed)


def with_spec(directory: Path, spec: dict) -> Path:
    """The output directory with ``spec`` in its ``_job.json`` (what the trainer sizes tables from)."""
    job = directory / "_job.json"
    doc = json.loads(job.read_text())
    job.write_text(json.dumps({**doc, "spec": spec}))
    return directory
