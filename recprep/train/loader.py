"""The trainer-side loader: batches of torch tensors from a shard stream.

- :class:`KeyedJagged` holds sparse features in TorchRec's KeyedJaggedTensor layout, with the
  same accessor names (``keys()``, ``values()``, ``lengths()``, ``offsets()``,
  ``length_per_key()``, ``offset_per_key()``, ``inverse_indices_or_none()``, ``[key]``, ``to``,
  ``pin_memory``); :meth:`KeyedJagged.to_torchrec` makes a real
  ``torchrec.sparse.jagged_tensor.KeyedJaggedTensor`` when torchrec is importable.
  ``inverse_indices`` is carried for RecD-deduplicated batches (keys, (F, B) indices into the
  unique rows); batches cut from plain shards have none.
- :class:`Batch`: ``dense`` (B, n_dense) float32, ``labels`` (B,) float32, ``sparse`` (the
  per-sample sparse features: every one for plain shards), ``groups`` and the shards the batch
  completes; ``acknowledge()`` acknowledges them on the stream.

Deduplicated shards (RecD): ``Batch.groups`` maps each dedup group's name to one KJT of its
features over the batch's ``U`` unique rows of the group (``stride() == U``, ``lengths`` F_g * U)
with ``inverse_indices() == (keys, inverse)``, ``inverse`` int64 of shape (F_g, B): row ``f``
maps every sample of the batch to its unique row for key ``f`` (every row is the same: the
group's features share one inverse index). That is TorchRec's definition, so
``torchrec.EmbeddingBagCollection`` given ``batch.groups[name]`` (``to_torchrec()``, or
``kjt="torchrec"``) looks up the U unique bags and returns B pooled rows (it expands with the
inverse indices itself). ``Batch.sparse_keys`` lists every sparse feature in the roles' order
(the order of the tables a plain run has).
- :class:`ShardDataset`: a ``torch.utils.data.IterableDataset`` (use it with
  ``DataLoader(dataset, batch_size=None)``: it yields whole batches). With ``num_workers > 0``
  each worker process opens its own part of the stream (disjoint shards, together the whole
  stream); only local directory streams can be split that way, because acknowledgements must
  come from the training process (local streams keep no consumer state).
- :class:`ShardLoader`: what a trainer iterates: a background thread cuts and converts batches
  ahead of the training loop (``prefetch`` of them), pins them when the device is a GPU and
  copies them with ``non_blocking=True``.

Batches span shard boundaries (see :mod:`recprep.delivery.batching`): every batch has
``batch_size`` rows except the last of an epoch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..delivery.batching import ArrayBatch, FeatureChoice, Features, UniqueGroup, iter_batches
from ..delivery.shards import ShardSource
from ..errors import RecprepError


@dataclass
class Jagged:
    values: torch.Tensor
    lengths: torch.Tensor
    offsets: torch.Tensor


class KeyedJagged:
    """Sparse features of one batch in KeyedJaggedTensor layout (key-major lengths/offsets)."""

    def __init__(self, keys, values, lengths, offsets=None, inverse_indices=None, stride=None):
        self._keys = list(keys)
        self._values = values
        self._lengths = lengths
        if offsets is None:
            offsets = torch.zeros(len(lengths) + 1, dtype=lengths.dtype, device=lengths.device)
            torch.cumsum(lengths, 0, out=offsets[1:])
        self._offsets = offsets
        self._inverse_indices = inverse_indices
        if stride is None:
            stride = len(lengths) // len(self._keys) if self._keys else 0
        self._stride = stride

    def keys(self) -> list[str]:
        return self._keys

    def values(self) -> torch.Tensor:
        return self._values

    def lengths(self) -> torch.Tensor:
        return self._lengths

    def offsets(self) -> torch.Tensor:
        return self._offsets

    def stride(self) -> int:
        return self._stride

    def inverse_indices_or_none(self):
        return self._inverse_indices

    def inverse_indices(self):
        if self._inverse_indices is None:
            raise ValueError("this batch carries no inverse indices (it is not deduplicated)")
        return self._inverse_indices

    def offset_per_key(self) -> list[int]:
        return (
            self._offsets[:: max(self._stride, 1)].tolist() if self._stride else [0] * (len(self._keys) + 1)
        )

    def length_per_key(self) -> list[int]:
        o = self.offset_per_key()
        return [b - a for a, b in zip(o, o[1:])]

    def __getitem__(self, key: str) -> Jagged:
        i = self._keys.index(key)
        b = self._stride
        start, stop = int(self._offsets[i * b]), int(self._offsets[(i + 1) * b])
        return Jagged(
            self._values[start:stop],
            self._lengths[i * b : (i + 1) * b],
            self._offsets[i * b : (i + 1) * b + 1] - start,
        )

    def _map(self, fn) -> KeyedJagged:
        inv = self._inverse_indices
        if inv is not None:
            inv = (inv[0], fn(inv[1]))
        return KeyedJagged(
            self._keys, fn(self._values), fn(self._lengths), fn(self._offsets), inv, self._stride
        )

    def to(self, device, non_blocking: bool = False) -> KeyedJagged:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> KeyedJagged:
        return self._map(lambda t: t.pin_memory())

    def to_torchrec(self):
        """The same batch as a ``torchrec`` KeyedJaggedTensor (:class:`TorchrecMissingError`, an
        ImportError, saying how to install it where torchrec does not import)."""
        try:
            from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
        except Exception as exc:  # a broken fbgemm fails with OSError, not ImportError
            raise TorchrecMissingError.of(exc) from exc

        return KeyedJaggedTensor(
            keys=self._keys,
            values=self._values,
            lengths=self._lengths,
            offsets=self._offsets,
            stride=self._stride,
            inverse_indices=self._inverse_indices,
        )


#: how to install TorchRec beside recprep's torch (docs/torchrec.md): its own requirement
#: ``fbgemm-gpu`` would pull the CUDA fbgemm over the CPU one, hence ``--no-deps``
TORCHREC_INSTALL = 'pip install "recprep[torchrec]" && pip install --no-deps torchrec==1.8.0'


class TorchrecMissingError(RecprepError, ImportError):
    """torchrec is not installed, or does not import; the message says how to install it."""

    @classmethod
    def of(cls, exc: BaseException) -> TorchrecMissingError:
        name = getattr(exc, "name", None) or ""
        if isinstance(exc, ModuleNotFoundError) and name.split(".")[0] == "torchrec":
            why = "is not installed"
        else:
            why = "does not import (" + " ".join(f"{type(exc).__name__}: {exc}".split()) + ")"
        return cls(f"to_torchrec() needs TorchRec, which {why}: {TORCHREC_INSTALL}", name="torchrec")


def torchrec_available() -> bool:
    try:
        import torchrec.sparse.jagged_tensor  # noqa: F401
    except Exception:  # torchrec without its native ops fails at import with more than ImportError
        return False
    return True


@dataclass
class Batch:
    dense: torch.Tensor
    labels: torch.Tensor
    sparse: Any  #: KeyedJagged, or torchrec's KeyedJaggedTensor: the per-sample sparse features
    shards: tuple[int, ...] = ()
    ack: Callable[[int], None] | None = field(default=None, repr=False)
    #: per dedup group (by name), its features over the batch's unique rows, with inverse indices
    groups: dict[str, Any] = field(default_factory=dict)
    #: every sparse feature in the roles' order (``sparse``'s keys and the groups'); default those
    sparse_keys: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.sparse_keys:
            self.sparse_keys = (*self.sparse.keys(), *(k for g in self.groups.values() for k in g.keys()))

    def __len__(self) -> int:
        return len(self.labels)

    def acknowledge(self) -> None:
        """Acknowledge the shards this batch completes; call it once the batch is consumed."""
        if self.ack is not None:
            for index in self.shards:
                self.ack(index)

    def pin_memory(self) -> Batch:
        return Batch(
            self.dense.pin_memory(),
            self.labels.pin_memory(),
            self.sparse.pin_memory(),
            self.shards,
            self.ack,
            {name: g.pin_memory() for name, g in self.groups.items()},
            self.sparse_keys,
        )

    def to(self, device, non_blocking: bool = False) -> Batch:
        return Batch(
            self.dense.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.sparse.to(device, non_blocking=non_blocking),
            self.shards,
            self.ack,
            {name: g.to(device, non_blocking=non_blocking) for name, g in self.groups.items()},
            self.sparse_keys,
        )

    def __getstate__(self):  # the ack callable stays in the process that owns the stream
        state = dict(self.__dict__)
        state["ack"] = None
        return state


def to_torch(batch: ArrayBatch, kjt: str = "native") -> Batch:
    """Zero-copy tensors over the numpy batch; ``kjt`` is ``native`` (:class:`KeyedJagged`),
    ``torchrec`` (requires torchrec) or ``auto`` (torchrec when importable)."""
    if kjt not in ("native", "torchrec", "auto"):
        raise ValueError(f"kjt must be native, torchrec or auto, got {kjt!r}")
    sparse = KeyedJagged(
        batch.keys,
        torch.from_numpy(batch.values),
        torch.from_numpy(batch.lengths),
        torch.from_numpy(batch.offsets),
        stride=batch.size,
    )
    groups = {g.name: unique_jagged(g) for g in batch.groups}
    if kjt == "torchrec" or (kjt == "auto" and torchrec_available()):
        sparse = sparse.to_torchrec()
        groups = {name: g.to_torchrec() for name, g in groups.items()}
    return Batch(
        torch.from_numpy(batch.dense),
        torch.from_numpy(batch.labels),
        sparse,
        batch.shards,
        batch.ack,
        groups,
        batch.sparse_keys,
    )


def unique_jagged(group: UniqueGroup) -> KeyedJagged:
    """One dedup group of a batch as a KJT over its ``U`` unique rows (``stride() == U``) whose
    ``inverse_indices`` are ``(keys, inverse)``, ``inverse`` int64 (F_g, B): TorchRec's layout."""
    inverse = torch.from_numpy(group.inverse).expand(len(group.keys), len(group.inverse)).contiguous()
    return KeyedJagged(
        group.keys,
        torch.from_numpy(group.values),
        torch.from_numpy(group.lengths),
        torch.from_numpy(group.offsets),
        inverse_indices=(list(group.keys), inverse),
        stride=group.unique,
    )


def epoch_batches(
    source: ShardSource,
    batch_size: int,
    epochs: int = 1,
    features: Features | FeatureChoice | None = None,
    part: int = 0,
    parts: int = 1,
    first_epoch: int = 0,
    session_slack: int = 0,
) -> Iterator[ArrayBatch]:
    """Numpy batches of ``epochs`` epochs, each from a freshly opened stream of ``source``
    (``session_slack``: see :func:`recprep.delivery.batching.iter_batches`)."""
    for epoch in range(first_epoch, first_epoch + epochs):
        stream = source.open(epoch, part, parts)
        yield from iter_batches(stream, batch_size, features, ack=stream.ack, session_slack=session_slack)


class ShardDataset(IterableDataset):
    """Batches of one epoch of ``source`` as an IterableDataset (``DataLoader(ds, batch_size=None)``)."""

    def __init__(
        self,
        source: ShardSource,
        batch_size: int,
        *,
        epoch: int = 0,
        features: Features | FeatureChoice | None = None,
        kjt: str = "native",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.source, self.batch_size, self.epoch, self.features, self.kjt = (
            source,
            batch_size,
            epoch,
            features,
            kjt,
        )

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        part, parts = (0, 1) if info is None else (info.id, info.num_workers)
        for b in epoch_batches(self.source, self.batch_size, 1, self.features, part, parts, self.epoch):
            yield to_torch(b, self.kjt)


_DONE = object()


class Prefetcher:
    """Runs an iterator in a background thread, ``depth`` items ahead of the consumer.

    Arrow and numpy release the GIL in their kernels, so cutting the next batches overlaps the
    training step. An exception in the producer is raised in the consumer; :meth:`close` stops
    the thread (it is also a context manager): a producer blocked on its source (a shard service
    waiting for the job's next shard) is a daemon thread and does not hold up the exit."""

    def __init__(self, items: Iterable, depth: int = 4, name: str = "recprep-prefetch"):
        if depth < 1:
            raise ValueError(f"prefetch depth must be positive, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put((_DONE, exc))
            return
        self._put((_DONE, None))

    def __iter__(self):
        return self

    def __next__(self):
        item, exc = self._queue.get()
        if item is _DONE:
            self._queue.put((_DONE, exc))  # later calls see the end too
            if exc is not None:
                raise exc
            raise StopIteration
        return item

    def close(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ShardLoader:
    """Batches of ``source`` on ``device``, cut ahead of the consumer in a background thread.

    Iterate it, train on each batch, then call ``batch.acknowledge()`` (or ``loader.ack(batch)``):
    a shard is acknowledged only once the batch holding its last row was consumed."""

    def __init__(
        self,
        source: ShardSource,
        batch_size: int,
        *,
        epochs: int = 1,
        device=None,
        prefetch: int = 4,
        features: Features | FeatureChoice | None = None,
        kjt: str = "native",
        session_slack: int = 0,
    ):
        """``session_slack``: a batch of deduplicated shards may end up to that many rows early, at
        the start of a session, so the session is not split between batches."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if epochs < 1:
            raise ValueError(f"epochs must be positive, got {epochs}")
        if not 0 <= session_slack < batch_size:
            raise ValueError(f"session_slack must be in [0, batch_size), got {session_slack}")
        self.source, self.batch_size, self.epochs = source, batch_size, epochs
        self.device = torch.device(device) if device is not None else default_device()
        self.prefetch, self.features, self.kjt = prefetch, features, kjt
        self.session_slack = session_slack

    def _produce(self) -> Iterator[Batch]:
        pin = self.device.type == "cuda"
        batches = epoch_batches(
            self.source, self.batch_size, self.epochs, self.features, session_slack=self.session_slack
        )
        for b in batches:
            t = to_torch(b, self.kjt)
            yield t.pin_memory() if pin else t

    def __iter__(self) -> Iterator[Batch]:
        with Prefetcher(self._produce(), self.prefetch) as pre:
            for batch in pre:
                yield batch.to(self.device, non_blocking=True)

    @staticmethod
    def ack(batch: Batch) -> None:
        batch.acknowledge()
