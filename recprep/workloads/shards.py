"""Shard streams: where a trainer's shards come from, one committed shard at a time.

A *shard stream* is an iterable of deliveries (objects with ``.index``, the shard number, and
``.table``, a ``pyarrow.Table``) together with an ``ack(index)`` callable that the trainer calls
once it has consumed the last batch of that shard. Two streams satisfy it:

- :class:`LocalShardStream`, over a local job output directory: the committed shards in ledger
  order (the order the driver committed them), each checked against the ledger's sha256. Its
  ``ack`` only records what was acknowledged: a directory keeps no consumer state.
- ``recprep.workloads.service.ShardClient``, the Arrow Flight shard service client, whose ``ack``
  tells the service the shard is consumed so a restarted trainer resumes after it.

A *shard source* is the picklable description a trainer (or each ``DataLoader`` worker process)
opens a stream from: :class:`LocalShards` or :class:`ServiceShards`. ``open(epoch, part, parts)``
returns the stream of one epoch; ``part``/``parts`` split a stream among the worker processes of
one trainer (disjoint parts that together cover the stream).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RecprepError, SourceError
from .ledger import JOB_FILE, LEDGER_FILE


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


def read_ledger(directory: str) -> list[dict[str, Any]]:
    """The committed shards of a job output directory, in ledger (commit) order.

    A line torn by a crash mid-append is skipped (that shard was redone and recorded again); a
    shard recorded twice keeps its first line; a line whose file is gone is dropped, as the
    driver's own ledger does."""
    if not os.path.isdir(directory):
        raise SourceError(f"{directory}: the job output directory does not exist")
    if not os.path.isfile(os.path.join(directory, JOB_FILE)):
        raise SourceError(f"{directory}: not a recprep job output (no {JOB_FILE})")
    path = os.path.join(directory, LEDGER_FILE)
    entries: dict[int, dict[str, Any]] = {}
    if not os.path.exists(path):
        return []
    with open(path) as f:
        for line in f:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if e.get("shard") in entries or not os.path.exists(os.path.join(directory, e.get("file", ""))):
                continue
            entries[e["shard"]] = e
    return list(entries.values())


@dataclass
class LocalShardStream:
    """The committed shards of one output directory (a slice of them for rank/part)."""

    directory: str
    entries: list[dict[str, Any]]
    verify: bool = True
    acked: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[LocalDelivery]:
        for e in self.entries:
            path = os.path.join(self.directory, e["file"])
            try:
                with open(path, "rb") as f:
                    payload = f.read()
            except OSError as exc:
                raise SourceError(f"{path}: cannot read the shard ({exc.strerror or exc})") from None
            if self.verify and e.get("sha256") and hashlib.sha256(payload).hexdigest() != e["sha256"]:
                raise SourceError(f"{path}: content does not match its sha256 in {LEDGER_FILE}")
            try:
                table = pq.read_table(pa.BufferReader(payload))
            except pa.ArrowException as exc:
                raise SourceError(f"{path}: not a readable Parquet shard ({exc})") from None
            yield LocalDelivery(int(e["shard"]), table)

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
        return client_class(location=self.location, group=self.group, rank=self.rank,
                            world_size=self.world_size, token=self.token, epoch=epoch)

    def describe(self) -> str:
        return f"{self.location} (group {self.group}, rank {self.rank}/{self.world_size})"


def service_client_class() -> Callable[..., ShardStream]:
    try:
        from .service import ShardClient
    except ImportError as exc:
        raise RecprepError(
            f"the shard service client (recprep.workloads.service.ShardClient) is not available: {exc}"
        ) from None
    return ShardClient
