"""Training batches cut from a shard stream, as numpy arrays in KeyedJaggedTensor layout.

A batch holds ``dense`` (B, n_dense) float32, ``labels`` (B,) float32 and the sparse features in
TorchRec's KeyedJaggedTensor layout: ``keys`` (feature names), ``values`` (int64, every ID of the
first key for the whole batch, then the second key's, ...), ``lengths`` (int64, F * B: how many
IDs each sample has for each key, key-major) and ``offsets`` (F * B + 1, the running sum of
``lengths`` from 0). Everything is built with whole-column pyarrow/numpy kernels.

Batches span shard boundaries: rows left over at the end of a shard are completed with the first
rows of the next one, so every batch has ``batch_size`` rows except the last of the stream. A
batch lists the shards whose last row it holds (``shards``); acknowledging them once the batch is
consumed acknowledges every shard exactly after its last row was trained on. A shard with no rows
is listed by the next batch (a zero-row batch at the very end if nothing follows).

Column roles come with the shards unless given: every shard recprep writes records the job's label,
dense and sparse columns in its schema metadata (the output contract's ``FeatureRoles``), and
columns in none of them are not fed to the model. Shards without that record (written by an
older recprep) fall back to the column named ``label`` and the types: floating columns are dense,
integer and list-of-integer columns sparse. A scalar integer sparse feature (a ``bucketize``
output) is a one-ID list; a null is an empty one.

Deduplicated shards (RecD, the layout of :mod:`recprep.workloads.output.dedup`): the features of
a dedup group come once per *unique row of the batch* with an inverse index, as RecD's IKJT, in
``ArrayBatch.groups`` (one :class:`UniqueGroup` per group); ``keys``/``values``/``lengths``/
``offsets`` hold the other (per-sample) sparse features, and ``sparse_keys`` every sparse feature
in the order the roles give (a plain run's ``keys``: one table per feature either way). A
batch's unique rows are the ones its samples use, in order of first use: cut inside a shard they
are a slice of the shard's unique rows, and a batch spanning two shards holds the first shard's
rows then the second's, the second's inverse offset by the first's count. ``ArrayBatch.expanded()``
gives every sample's values back (exactly the batch the same rows cut from plain shards give).
All shards of a stream must have the same layout (all plain, or deduplicated with the same
groups): a stream mixing them is a SourceError naming the shard (shards with no rows are exempt).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SourceError
from ..workloads.output.dedup import DEDUP_KEY, INVERSE_PREFIX, DedupGroup, groups_of
from ..workloads.output.records import parse_roles
from .shards import Delivery


@dataclass(frozen=True)
class Features:
    """Which columns are the label, the dense and the sparse features (in batch order)."""

    label: str
    dense: tuple[str, ...]
    sparse: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return [self.label, *self.dense, *self.sparse]

    @classmethod
    def of(cls, schema: pa.Schema) -> Features:
        """The features of shards of ``schema``: the roles they carry, else inferred (``infer``)."""
        return FeatureChoice().resolve(schema)

    @classmethod
    def infer(cls, schema: pa.Schema, label: str = "label") -> Features:
        """Roles from the column named ``label`` and the types (shards that carry no roles)."""
        if label not in schema.names:
            raise SourceError(f"shard schema: no label column {label!r} (columns: {', '.join(schema.names)})")
        # a deduplicated shard's inverse and flag columns are no features
        bookkeeping = {c for g in _groups(schema, "shard schema") for c in g.bookkeeping}
        dense, sparse = [], []
        for f in schema:
            if f.name == label or f.name in bookkeeping:
                continue
            if pa.types.is_floating(f.type):
                dense.append(f.name)
            elif _is_id_type(f.type):
                sparse.append(f.name)
            else:
                raise SourceError(
                    f"shard schema: column {f.name!r} has type {f.type}, which is neither a "
                    "dense (floating) nor a sparse (integer or list of integers) feature"
                )
        return cls(label, tuple(dense), tuple(sparse))

    def check(self, schema: pa.Schema, where: str) -> None:
        roles: dict[str, str] = {}
        for role, names in (("label", (self.label,)), ("dense", self.dense), ("sparse", self.sparse)):
            for name in names:
                if name in roles:
                    raise SourceError(
                        f"{where}: column {name!r} is named twice (as {roles[name]} and as {role}); "
                        "a column takes one role once"
                    )
                roles[name] = role
        types = dict(zip(schema.names, schema.types))
        for name in self.columns:
            if name not in types:
                raise SourceError(f"{where}: no column {name!r}")
        t = types[self.label]
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise SourceError(f"{where}: label column {self.label!r} has type {t}, expected a number")
        for name in self.dense:
            if not (pa.types.is_floating(types[name]) or pa.types.is_integer(types[name])):
                raise SourceError(f"{where}: dense column {name!r} has type {types[name]}, expected a number")
        for name in self.sparse:
            if not _is_id_type(types[name]):
                raise SourceError(
                    f"{where}: sparse column {name!r} has type {types[name]}, expected "
                    "integers or lists of integers (hash it in the job: sigrid_hash takes strings; "
                    "or convert it: to_int, hex_to_int, categorify)"
                )


@dataclass(frozen=True)
class FeatureChoice:
    """Roles chosen by the trainer where they differ from the shards' (``recprep train --label``,
    ``--dense``, ``--sparse``): what is given replaces what the shards say, the rest is theirs."""

    label: str | None = None
    dense: tuple[str, ...] | None = None
    sparse: tuple[str, ...] | None = None

    def resolve(self, schema: pa.Schema) -> Features:
        roles = parse_roles(schema.metadata)
        if roles is None:
            found = Features.infer(schema, self.label or "label")
        elif self.label is None and roles.label is None:
            raise SourceError(
                "shard schema: the job has no label column (spec.source.label: null); name one "
                "(recprep train --label)"
            )
        else:
            found = Features(self.label or roles.label, roles.dense, roles.sparse)
        chosen = Features(
            found.label,
            self.dense if self.dense is not None else tuple(c for c in found.dense if c != found.label),
            self.sparse if self.sparse is not None else tuple(c for c in found.sparse if c != found.label),
        )
        chosen.check(schema, "shard schema")
        return chosen


def _is_id_type(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.types.is_integer(t.value_type)
    return pa.types.is_integer(t)


@dataclass
class UniqueGroup:
    """One dedup group of a batch (RecD's IKJT): its sparse features once per unique row the
    batch's samples use, in KeyedJaggedTensor layout over those ``unique`` rows (stride ``U``),
    and each sample's row among them: sample ``i``'s bag of key ``k`` is unique row
    ``inverse[i]``'s bag of ``k``."""

    name: str
    keys: tuple[str, ...]
    values: np.ndarray  #: int64, key-major
    lengths: np.ndarray  #: int64, (F_g * U,), key-major
    offsets: np.ndarray  #: int64, (F_g * U + 1,)
    unique: int  #: U, the unique rows (every one used by some sample of the batch)
    inverse: np.ndarray  #: int64, (B,), values in [0, U)

    def feature(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Key ``i``'s IDs and per-unique-row bag offsets (U,), as ``EmbeddingBag`` takes them."""
        u = self.unique
        start = self.offsets[i * u]
        return self.values[start : self.offsets[(i + 1) * u]], self.offsets[i * u : (i + 1) * u] - start

    def expand(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Key ``i``'s IDs and lengths (B,) per sample: the layout of a plain batch's feature."""
        u = self.unique
        lengths = self.lengths[i * u : (i + 1) * u][self.inverse]
        starts = self.offsets[i * u : (i + 1) * u][self.inverse]
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        take = np.repeat(starts - (ends - lengths), lengths) + np.arange(total, dtype=np.int64)
        return self.values[take], lengths


@dataclass
class ArrayBatch:
    dense: np.ndarray  #: (B, n_dense) float32
    labels: np.ndarray  #: (B,) float32
    keys: tuple[str, ...]  #: the per-sample sparse features (every one, for plain shards)
    values: np.ndarray  #: int64, key-major
    lengths: np.ndarray  #: int64, (F * B,), key-major
    offsets: np.ndarray  #: int64, (F * B + 1,)
    shards: tuple[int, ...] = ()  #: shards whose last row is in this batch
    ack: Callable[[int], None] | None = field(default=None, repr=False)
    groups: tuple[UniqueGroup, ...] = ()  #: the dedup groups (deduplicated shards)
    #: every sparse feature in the roles' order (one table each): ``keys`` and the groups' keys;
    #: defaults to ``keys`` then the groups' keys
    sparse_keys: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.sparse_keys:
            self.sparse_keys = (*self.keys, *(k for g in self.groups for k in g.keys))

    @property
    def size(self) -> int:
        return len(self.labels)

    def offset_per_key(self) -> np.ndarray:
        """(F + 1,) start of each key's values in ``values``."""
        return self.offsets[:: max(self.size, 1)] if self.size else np.zeros(len(self.keys) + 1, np.int64)

    def feature(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Key ``i``'s IDs and per-sample bag offsets (B,), as ``EmbeddingBag`` takes them."""
        b = self.size
        start = self.offsets[i * b]
        return self.values[start : self.offsets[(i + 1) * b]], self.offsets[i * b : (i + 1) * b] - start

    def lookup(self, key: str) -> tuple[np.ndarray, np.ndarray, UniqueGroup | None]:
        """Sparse feature ``key``'s IDs, its bag offsets and its dedup group: a per-sample feature
        has B bags (group None); a group's feature has one bag per unique row (U) and sample
        ``i``'s bag is ``group.inverse[i]``."""
        for g in self.groups:
            if key in g.keys:
                return (*g.feature(g.keys.index(key)), g)
        if key not in self.keys:
            raise KeyError(f"the batch has no sparse feature {key!r}")
        return (*self.feature(self.keys.index(key)), None)

    def expanded(self) -> ArrayBatch:
        """This batch with every sparse feature per sample, keyed ``sparse_keys``: what the same
        rows cut from plain shards give. A batch without groups is returned as it is."""
        if not self.groups:
            return self
        b = self.size
        bags: dict[str, tuple[np.ndarray, np.ndarray]] = {
            k: (self.feature(i)[0], self.lengths[i * b : (i + 1) * b]) for i, k in enumerate(self.keys)
        }
        for g in self.groups:
            bags.update((k, g.expand(i)) for i, k in enumerate(g.keys))
        parts = [bags[k] for k in self.sparse_keys]
        values = np.concatenate([v for v, _ in parts]) if parts else np.empty(0, np.int64)
        lengths = np.concatenate([n for _, n in parts]) if parts else np.empty(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return ArrayBatch(
            self.dense, self.labels, self.sparse_keys, values, lengths, offsets, self.shards, self.ack
        )

    def acknowledge(self) -> None:
        """Acknowledge the shards this batch completes (call once the batch is consumed)."""
        if self.ack is not None:
            for index in self.shards:
                self.ack(index)


def _ids(col: pa.ChunkedArray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values int64, lengths int64) of one sparse column."""
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lengths = pc.fill_null(pc.list_value_length(col), 0)
        values = pc.list_flatten(col)
        if values.null_count:
            raise SourceError(f"sparse column {name!r}: a list holds a null ID")
    else:
        lengths = pc.cast(pc.is_valid(col), pa.int64())
        values = pc.drop_null(col)
    return (
        np.asarray(values.to_numpy(), dtype=np.int64) if len(values) else np.empty(0, np.int64),
        np.asarray(lengths.to_numpy(), dtype=np.int64) if len(lengths) else np.empty(0, np.int64),
    )


def to_arrays(table: pa.Table, features: Features) -> ArrayBatch:
    """One batch from a table holding exactly its rows."""
    b = table.num_rows
    for name in (features.label, *features.dense):
        if table[name].null_count:
            raise SourceError(
                f"column {name!r} holds nulls: fill them in the job (fill_null) before training"
            )
    if features.dense:
        dense = np.empty((b, len(features.dense)), dtype=np.float32)
        for j, name in enumerate(features.dense):
            dense[:, j] = table[name].to_numpy()
    else:
        dense = np.zeros((b, 0), dtype=np.float32)
    labels = np.asarray(table[features.label].to_numpy(), dtype=np.float32)
    parts = [_ids(table[name], name) for name in features.sparse]
    values = np.concatenate([v for v, _ in parts]) if parts else np.empty(0, np.int64)
    lengths = np.concatenate([n for _, n in parts]) if parts else np.empty(0, np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return ArrayBatch(dense, labels, features.sparse, values, lengths, offsets)


def _groups(schema: pa.Schema, where: str) -> list[DedupGroup]:
    """The shard's dedup groups. Inverse columns without the record that says which columns they
    index (a deduplicated shard whose schema metadata was dropped on the way) are an error: its
    group columns hold the unique rows, not every sample's values."""
    try:
        groups = groups_of(schema)
    except ValueError as exc:
        raise SourceError(f"{where}: {exc}") from None
    if not groups:
        orphans = [c for c in schema.names if c.startswith(INVERSE_PREFIX)]
        if orphans:
            raise SourceError(
                f"{where}: column {orphans[0]!r} is a deduplicated shard's inverse index, but the shard's "
                f"schema metadata has no {DEDUP_KEY.decode()} record saying which columns it indexes "
                "(was the metadata dropped on the way?)"
            )
    return groups


@dataclass(frozen=True)
class _Slot:
    """How batches carry one dedup group: its name, its features (in the roles' order) and its
    inverse column."""

    name: str
    keys: tuple[str, ...]
    inverse: str


@dataclass(frozen=True)
class _Layout:
    """A shard's layout as the batches see it: the dedup groups among the features (none: plain)."""

    groups: tuple[_Slot, ...] = ()

    @classmethod
    def of(cls, groups: list[DedupGroup], features: Features, where: str) -> _Layout:
        slots = []
        for g in groups:
            for c in g.columns:
                if c == features.label or c in features.dense:
                    raise SourceError(
                        f"{where}: column {c!r} is in dedup group {g.name!r}: a group's columns are "
                        "sparse features, not the label or a dense feature"
                    )
            keys = tuple(c for c in features.sparse if c in g.columns)
            if keys:  # a group none of whose columns the trainer takes is not read
                slots.append(_Slot(g.name, keys, g.inverse))
        return cls(tuple(slots))

    def per_sample(self, features: Features) -> Features:
        grouped = {k for g in self.groups for k in g.keys}
        return Features(features.label, features.dense, tuple(c for c in features.sparse if c not in grouped))

    def describe(self) -> str:
        if not self.groups:
            return "plain"
        return (
            "deduplicated (groups " + ", ".join(f"{g.name}: {', '.join(g.keys)}" for g in self.groups) + ")"
        )


@dataclass
class _Run:
    """One group's unique rows over a run of samples, and each sample's row among them."""

    rows: pa.Table
    inverse: np.ndarray  #: int64

    def rebase(self, start: int, stop: int) -> _Run:
        """Samples ``[start, stop)`` with only the rows they use, in order of first use. The rows
        of a session-grouped run (its inverse steps by 0 or 1) are a slice of ``rows``."""
        inv = self.inverse[start:stop]
        if inv.size == 0:
            return _Run(self.rows.slice(0, 0), inv)
        steps = np.diff(inv)
        if steps.size == 0 or (steps.min() >= 0 and steps.max() <= 1):
            low = int(inv[0])
            return _Run(self.rows.slice(low, int(inv[-1]) - low + 1), inv - low)
        used, first, inverse = np.unique(inv, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        return _Run(self.rows.take(pa.array(used[order])), rank[inverse.reshape(-1)])


@dataclass
class _Piece:
    """Pending rows: the per-sample columns and, per dedup group of the layout, a run."""

    samples: pa.Table
    runs: tuple[_Run, ...] = ()

    @property
    def rows(self) -> int:
        return self.samples.num_rows

    def head(self, n: int) -> _Piece:
        return _Piece(self.samples.slice(0, n), tuple(r.rebase(0, n) for r in self.runs))

    def tail(self, n: int) -> _Piece:
        """The rows from ``n`` on; the runs keep their rows (rebased when concatenated)."""
        return _Piece(self.samples.slice(n), tuple(_Run(r.rows, r.inverse[n:]) for r in self.runs))

    @staticmethod
    def concat(pieces: list[_Piece]) -> _Piece:
        """The pieces one after the other: each group's rows concatenated, the inverse of each
        piece offset by the rows before it."""
        runs = []
        for j in range(len(pieces[0].runs)):
            parts = [p.runs[j].rebase(0, p.rows) for p in pieces]
            starts = np.cumsum([0] + [r.rows.num_rows for r in parts[:-1]])
            runs.append(
                _Run(
                    pa.concat_tables([r.rows for r in parts]),
                    np.concatenate([r.inverse + s for r, s in zip(parts, starts)]),
                )
            )
        return _Piece(pa.concat_tables([p.samples for p in pieces]), tuple(runs))


def _read(
    table: pa.Table, groups: list[DedupGroup], layout: _Layout, features: Features, where: str
) -> _Piece:
    """A shard's rows as a pending piece of ``layout``; the dedup record is checked against the
    data (unique counts within the shard, inverse indices within the unique rows)."""
    samples = table.select(layout.per_sample(features).columns)
    unique = {g.name: g.unique for g in groups}
    n, runs = table.num_rows, []
    for slot in layout.groups:
        u = unique[slot.name]
        if not 0 <= u <= n:
            raise SourceError(f"{where}: dedup group {slot.name!r} records {u} unique rows in a shard of {n}")
        col = table[slot.inverse]
        if not pa.types.is_integer(col.type) or col.null_count:
            raise SourceError(
                f"{where}: inverse column {slot.inverse!r} must hold integers without nulls "
                f"(type {col.type}, {col.null_count} nulls)"
            )
        inverse = np.asarray(col.to_numpy(), dtype=np.int64)
        if inverse.size and (inverse.min() < 0 or inverse.max() >= u):
            bad = inverse[(inverse < 0) | (inverse >= u)][0]
            raise SourceError(
                f"{where}: inverse column {slot.inverse!r} holds {bad}, outside the group's {u} unique rows"
            )
        rows = table.select(list(slot.keys)).slice(0, u).replace_schema_metadata(None)
        runs.append(_Run(rows, inverse))
    return _Piece(samples, tuple(runs))


def _unique_group(slot: _Slot, run: _Run) -> UniqueGroup:
    parts = [_ids(run.rows[name], name) for name in slot.keys]
    values = np.concatenate([v for v, _ in parts])
    lengths = np.concatenate([n for _, n in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    inverse = np.ascontiguousarray(run.inverse, dtype=np.int64)
    return UniqueGroup(slot.name, slot.keys, values, lengths, offsets, run.rows.num_rows, inverse)


def _arrays(piece: _Piece, features: Features, layout: _Layout | None) -> ArrayBatch:
    """The batch of a piece holding exactly its rows."""
    if layout is None or not layout.groups:
        return to_arrays(piece.samples, features)
    batch = to_arrays(piece.samples, layout.per_sample(features))
    batch.groups = tuple(_unique_group(slot, run) for slot, run in zip(layout.groups, piece.runs))
    batch.sparse_keys = features.sparse
    return batch


def iter_batches(
    stream: Iterable[Delivery],
    batch_size: int,
    features: Features | FeatureChoice | None = None,
    ack: Callable[[int], None] | None = None,
    session_slack: int = 0,
) -> Iterator[ArrayBatch]:
    """Batches of ``batch_size`` rows across the shards of ``stream`` (the last may be shorter).

    ``ack`` (usually the stream's ``ack``) is attached to every batch, for
    :meth:`ArrayBatch.acknowledge`. ``session_slack`` (deduplicated shards): a batch may end up
    to that many rows early, where a unique row of the first dedup group (a session) begins, so
    that the session is not split between two batches (which would store its row in both); a
    session that began more than ``session_slack`` rows before the cut is split as usual."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not 0 <= session_slack < batch_size:
        raise ValueError(f"session_slack must be in [0, batch_size), got {session_slack}")
    pending: list[_Piece] = []
    rows = 0
    ends: list[tuple[int, int]] = []  # (shard index, pending row position where it ends)
    layout: _Layout | None = None  # of the first shard with rows; every other must have it
    layout_shard = -1

    def emit(n: int) -> ArrayBatch:
        nonlocal pending, rows, ends
        piece = _Piece.concat(pending) if len(pending) > 1 else pending[0]
        batch = _arrays(piece.head(n), features, layout)
        batch.shards = tuple(i for i, end in ends if end <= n)
        batch.ack = ack
        ends = [(i, end - n) for i, end in ends if end > n]
        rest = piece.tail(n)
        pending, rows = ([rest] if rest.rows else []), rows - n
        return batch

    for delivery in stream:
        table = delivery.table
        where = f"shard {delivery.index}"
        if not isinstance(features, Features):
            features = (features or FeatureChoice()).resolve(table.schema)
        features.check(table.schema, where)
        groups = _groups(table.schema, where)
        shard_layout = _Layout.of(groups, features, where)
        if table.num_rows:
            if layout is None:
                layout, layout_shard = shard_layout, delivery.index
            elif shard_layout != layout:
                raise SourceError(
                    f"{where} is {shard_layout.describe()}, shard {layout_shard} is {layout.describe()}: "
                    "the shards of a stream must be all plain or all deduplicated with the same groups"
                )
            pending.append(_read(table, groups, shard_layout, features, where))
        rows += table.num_rows
        ends.append((delivery.index, rows))
        # with a slack, a full batch waits for the row after it (is a session cut there?)
        while rows > batch_size or (rows == batch_size and not (session_slack and layout and layout.groups)):
            yield emit(_session_cut(pending, batch_size, session_slack) if session_slack else batch_size)
    if rows:
        while rows:
            yield emit(min(rows, batch_size))
    elif ends and isinstance(features, Features):
        empty = _arrays(_empty(features, layout), features, layout)
        empty.shards, empty.ack = tuple(i for i, _ in ends), ack
        yield empty


def _session_cut(pending: list[_Piece], n: int, slack: int) -> int:
    """Where to end a batch of at most ``n`` pending rows: at ``n``, or at the first row of the
    session (unique row of the first group) that row ``n`` belongs to when it begins within the
    last ``slack`` rows of the batch."""
    if not pending or not pending[0].runs:
        return n
    # (piece, unique row) of rows [n - slack, n], as one label per row
    labels, start = [], 0
    for i, piece in enumerate(pending):
        lo, hi = max(n - slack - start, 0), min(n + 1 - start, piece.rows)
        if lo < hi:
            labels.append(piece.runs[0].inverse[lo:hi].astype(np.int64) + (i << 40))
        start += piece.rows
        if start > n:
            break
    window = np.concatenate(labels)  # rows n - slack .. n
    same = window[:-1] == window[-1]
    if same.all():  # the session began before the slack: split it
        return n
    first = len(same) - int(np.argmin(same[::-1]))  # the first row of row n's session, in the window
    return n - slack + first if first > 0 else n


def _empty(features: Features, layout: _Layout | None) -> _Piece:
    """A piece of no rows: the last batch of a stream that ends with shards of no rows."""
    layout = layout or _Layout()
    sample = layout.per_sample(features)
    samples = pa.table(
        {
            sample.label: pa.array([], pa.float32()),
            **{n: pa.array([], pa.float32()) for n in sample.dense},
            **{n: pa.array([], pa.list_(pa.int64())) for n in sample.sparse},
        }
    )
    runs = tuple(
        _Run(pa.table({k: pa.array([], pa.list_(pa.int64())) for k in slot.keys}), np.empty(0, np.int64))
        for slot in layout.groups
    )
    return _Piece(samples, runs)
