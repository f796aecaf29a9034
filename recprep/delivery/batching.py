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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SourceError
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
        dense, sparse = [], []
        for f in schema:
            if f.name == label:
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
class ArrayBatch:
    dense: np.ndarray  #: (B, n_dense) float32
    labels: np.ndarray  #: (B,) float32
    keys: tuple[str, ...]
    values: np.ndarray  #: int64, key-major
    lengths: np.ndarray  #: int64, (F * B,), key-major
    offsets: np.ndarray  #: int64, (F * B + 1,)
    shards: tuple[int, ...] = ()  #: shards whose last row is in this batch
    ack: Callable[[int], None] | None = field(default=None, repr=False)

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


def iter_batches(
    stream: Iterable[Delivery],
    batch_size: int,
    features: Features | FeatureChoice | None = None,
    ack: Callable[[int], None] | None = None,
) -> Iterator[ArrayBatch]:
    """Batches of ``batch_size`` rows across the shards of ``stream`` (the last may be shorter).

    ``ack`` (usually the stream's ``ack``) is attached to every batch, for
    :meth:`ArrayBatch.acknowledge`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    pending: list[pa.Table] = []
    rows = 0
    ends: list[tuple[int, int]] = []  # (shard index, pending row position where it ends)

    def emit(n: int) -> ArrayBatch:
        nonlocal pending, rows, ends
        table = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
        batch = to_arrays(table.slice(0, n), features)
        batch.shards = tuple(i for i, end in ends if end <= n)
        batch.ack = ack
        ends = [(i, end - n) for i, end in ends if end > n]
        rest = table.slice(n)
        pending, rows = ([rest] if rest.num_rows else []), rows - n
        return batch

    for delivery in stream:
        table = delivery.table
        if not isinstance(features, Features):
            features = (features or FeatureChoice()).resolve(table.schema)
        features.check(table.schema, f"shard {delivery.index}")
        pending.append(table.select(features.columns))
        rows += table.num_rows
        ends.append((delivery.index, rows))
        while rows >= batch_size:
            yield emit(batch_size)
    if rows:
        yield emit(rows)
    elif ends and isinstance(features, Features):
        empty = to_arrays(pending[0].slice(0, 0) if pending else _empty(features), features)
        empty.shards, empty.ack = tuple(i for i, _ in ends), ack
        yield empty


def _empty(features: Features) -> pa.Table:
    return pa.table(
        {
            features.label: pa.array([], pa.float32()),
            **{n: pa.array([], pa.float32()) for n in features.dense},
            **{n: pa.array([], pa.list_(pa.int64())) for n in features.sparse},
        }
    )
