"""Shard streams: where a trainer's shards come from, one committed shard at a time.

A *shard stream* is an iterable of deliveries (objects with ``.index``, the shard number, and
``.table``, a ``pyarrow.Table``) together with an ``ack(index)`` callable that the trainer calls
once it has consumed the last batch of that shard. Two streams satisfy it:

- :class:`LocalShardStream`, over a local job output directory: the committed shards in ledger
  order (the order the driver committed them), each checked against the ledger's sha256. Its
  ``ack`` only records what was acknowledged: a directory keeps no consumer state.
- ``recprep.delivery.service.ShardClient``, the Arrow Flight shard service client, whose ``ack``
  tells the service the shard is consumed so a restarted trainer resumes after it.

A *shard source* is the picklable description a trainer (or each ``DataLoader`` worker process)
opens a stream from: :class:`LocalShards` or :class:`ServiceShards`. ``open(epoch, part, parts)``
returns the stream of one epoch; ``part``/``parts`` split a stream among the worker processes of
one trainer (disjoint parts that together cover the stream).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import OutputError, RecprepError, SourceError
from ..workloads.output import CommitRecord, read_commits, read_job, read_shard
from ..workloads.output.dedup import materialize


@runtime_checkable
class Delivery(Protocol):
    index: int
    table: pa.Table


class ShardStream(Protocol):
    """What the loader reads: deliveries in order, and an acknowledgement per consumed shard."""

    def __iter__(self) -> Iterator[Delivery]: ...

    def ack(self, index: int) -> None: ...


class ShardSource(Protocol):
    def open(self, epoch: int = 0, part: int = 0, parts: int = 1) -> ShardStream: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class LocalDelivery:
    index: int
    table: pa.Table


def read_ledger(directory: str) -> list[CommitRecord]:
    """The committed shards of a job output directory, in commit order, whose files are there
    (the output contract's reader, ``recprep.workloads.output``); SourceError naming the
    directory when it is not a job output."""
    try:
        read_job(directory)
        return read_commits(directory)
    except OutputError as exc:
        raise SourceError(str(exc)) from None


@dataclass
class LocalShardStream:
    """The committed shards of one output directory (a slice of them for rank/part)."""

    directory: str
    entries: list[CommitRecord]
    verify: bool = True
    acked: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[LocalDelivery]:
        for e in self.entries:
            try:
                payload = read_shard(self.directory, e, self.verify)
            except OutputError as exc:
                raise SourceError(str(exc)) from None
            path = os.path.join(self.directory, e.file)
            try:
                table = materialize(pq.read_table(pa.BufferReader(payload)))
            except pa.ArrowException as exc:
                raise SourceError(f"{path}: not a readable Parquet shard ({exc})") from None
            except ValueError as exc:  # a deduplicated shard whose record and data disagree
                raise SourceError(f"{path}: {exc}") from None
            yield LocalDelivery(e.shard, table)

    def ack(self, index: int) -> None:
        self.acked.append(index)


@dataclass(frozen=True)
class LocalShards:
    """A local job output directory as a shard source. ``rank``/``world_size`` give each of
    several trainers every ``world_size``-th committed shard; the order is ledger order in every
    epoch."""

    directory: str
    rank: int = 0
    world_size: int = 1
    verify: bool = True

    def __post_init__(self):
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")

    def open(self, epoch: int = 0, part: int = 0, parts: int = 1) -> LocalShardStream:
        entries = read_ledger(self.directory)[self.rank :: self.world_size][part::parts]
        return LocalShardStream(self.directory, entries, self.verify)

    def describe(self) -> str:
        return self.directory


@dataclass(frozen=True)
class ServiceShards:
    """The Arrow Flight shard service as a shard source (one consumer of a group per trainer).

    The client is imported only when a stream is opened, so everything else works where the
    service module is absent. A stream cannot be split among ``DataLoader`` worker processes:
    acknowledgements must come from the process that trains (a worker would have to acknowledge
    shards still waiting in the loader's prefetch queue)."""

    location: str
    group: str = "train"
    rank: int = 0
    world_size: int = 1
    token: str | None = None

    def __post_init__(self):
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")

    def open(self, epoch: int = 0, part: int = 0, parts: int = 1) -> ShardStream:
        if parts != 1:
            raise RecprepError(
                "the shard service stream cannot be split among DataLoader worker processes "
                "(shards are acknowledged by the training process): use num_workers=0"
            )
        client_class = service_client_class()
        return client_class(
            location=self.location,
            group=self.group,
            rank=self.rank,
            world_size=self.world_size,
            token=self.token,
            epoch=epoch,
        )

    def describe(self) -> str:
        return f"{self.location} (group {self.group}, rank {self.rank}/{self.world_size})"


def service_client_class() -> Callable[..., ShardStream]:
    try:
        from .service import ShardClient
    except ImportError as exc:
        raise RecprepError(
            f"the shard service client (recprep.delivery.service.ShardClient) is not available: {exc}"
        ) from None
    return ShardClient
