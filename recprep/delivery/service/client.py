"""The trainer's side of the shard service: one consumer of a group, one epoch.

    client = ShardClient("grpc://host:8815", group="train", rank=0, world_size=2, token=None, epoch=0)
    for shard in client:           # this rank's shards, waiting for new ones while the job runs
        consume(shard.table)       # or shard.batches()
        client.ack(shard.index)    # once the shard's rows are part of the trainer's state

Each iteration opens a new stream: the shards of this rank that the group has not acknowledged,
each whole. A new client (a restarted trainer) supersedes an older one of the same group, epoch
and rank (see :mod:`.server` for the delivery semantics). Errors are :class:`ShardServiceError`
with the server's one-line message (:class:`ShardAuthError` for a missing or wrong token).

A service that cannot be reached (a trainer started before the service listens, a restarted or
rescheduled service pod) is retried with backoff for ``retry`` seconds (:class:`ShardServiceUnavailable`
after that). A stream cut mid-way is opened again: the service sends every unacknowledged shard
again, whole, and the iteration skips those it already yielded, so each shard reaches the trainer
once per iteration; an acknowledgement is idempotent at the server, so one whose answer was lost
is simply sent again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import pyarrow as pa
import pyarrow.flight as flight

from ...workloads.output.dedup import materialize, recount
from .auth import bearer_headers
from .errors import ShardAuthError, ShardServiceError, ShardServiceUnavailable
from .protocol import ACK, STATUS, Member, check_member, parse_batch_metadata

#: Seconds a client keeps retrying a service it cannot reach, by default: a service pod
#: rescheduled (a preempted node) is back within this on a healthy cluster.
RETRY_SECONDS = 120.0
#: The first and the longest wait between two tries.
FIRST_WAIT, LONGEST_WAIT = 0.25, 5.0


class _Outage:
    """One stretch of an unreachable service: waits with exponential backoff, and raises the
    last error once ``seconds`` have gone since the first failure."""

    def __init__(self, seconds: float, clock=time.monotonic, sleep=time.sleep):
        self.seconds, self.clock, self.sleep = seconds, clock, sleep
        self.since: float | None = None
        self.pause = FIRST_WAIT

    def over(self) -> None:
        """The service answered: the next failure starts a new outage."""
        self.since, self.pause = None, FIRST_WAIT

    def wait(self, error: ShardServiceUnavailable) -> None:
        now = self.clock()
        if self.since is None:
            self.since = now
        left = self.since + self.seconds - now
        if left <= 0:
            if self.seconds > 0:
                raise ShardServiceUnavailable(f"{error} for {now - self.since:.0f} s") from None
            raise error
        self.sleep(min(self.pause, left))  # backing off before the next try
        self.pause = min(self.pause * 2, LONGEST_WAIT)


@dataclass
class ShardDelivery:
    """One shard as received: its index, and its rows as record batches (or one table)."""

    index: int
    epoch: int
    schema: pa.Schema
    _batches: list[pa.RecordBatch] = field(repr=False)

    @property
    def num_rows(self) -> int:
        return sum(b.num_rows for b in self._batches)

    @property
    def nbytes(self) -> int:
        """Bytes of the Arrow buffers received."""
        return sum(b.nbytes for b in self._batches)

    def batches(self) -> list[pa.RecordBatch]:
        """The record batches as received: a deduplicated shard's in its stored layout (the
        history lists that follow from the session before left out: ``table`` makes them)."""
        return list(self._batches)

    @cached_property
    def table(self) -> pa.Table:
        """The shard's rows; a deduplicated shard's group lists all there (``dedup.materialize``)."""
        # a deduplicated shard's unique counts are its own, not the stream schema's first shard's
        table = recount(pa.Table.from_batches(self._batches, schema=self.schema))
        try:
            return materialize(table)
        except ValueError as exc:
            raise ShardServiceError(f"shard {self.index}: {exc}") from None


class ShardClient:
    """Consumer ``rank`` of ``world_size`` in ``group`` at the shard service ``location``,
    reading epoch ``epoch``. ``timeout``: seconds for connecting, acknowledging and status calls
    (a stream waits for commits as long as the server's wait timeout allows); ``retry``: seconds
    to keep retrying a service that cannot be reached (0: fail at once)."""

    def __init__(
        self,
        location: str,
        group: str = "train",
        rank: int = 0,
        world_size: int = 1,
        token: str | None = None,
        epoch: int = 0,
        *,
        timeout: float = 30.0,
        retry: float = RETRY_SECONDS,
    ):
        check_member(group, rank, world_size, epoch)
        if not retry >= 0:
            raise ShardServiceError(f"retry: expected seconds >= 0, got {retry!r}")
        self.retry = float(retry)
        if not isinstance(location, str) or not location.startswith(
            ("grpc://", "grpc+tcp://", "grpc+tls://")
        ):
            raise ShardServiceError(f"location: expected grpc://host:port, got {location!r}")
        self.location, self.group, self.rank, self.world_size, self.epoch = (
            location,
            group,
            rank,
            world_size,
            epoch,
        )
        self.session = uuid.uuid4().hex
        self.member = Member(group, rank, world_size, epoch, self.session)
        headers = bearer_headers(token)
        self._stream_options = flight.FlightCallOptions(headers=headers)
        self._call_options = flight.FlightCallOptions(headers=headers, timeout=timeout)
        try:
            self._flight = flight.connect(location)
        except (pa.ArrowException, ValueError) as exc:
            raise ShardServiceError(f"{location}: not a shard service location ({_message(exc)})") from None
        self.acked: list[int] = []  #: what this client acknowledged, in order
        self.reopened = 0  #: streams opened again after the service could not be reached

    def __iter__(self) -> Iterator[ShardDelivery]:
        yielded: set[int] = set()  # this iteration's shards: a reopened stream sends them again
        outage = _Outage(self.retry)
        while True:
            try:
                for delivery in self._stream():
                    outage.over()
                    if delivery.index not in yielded:
                        yielded.add(delivery.index)
                        yield delivery
                return
            except ShardServiceUnavailable as exc:
                outage.wait(exc)
                self.reopened += 1

    def _stream(self) -> Iterator[ShardDelivery]:
        """One stream, as the server sends it."""
        try:
            reader = self._flight.do_get(flight.Ticket(self.member.encode()), options=self._stream_options)
            schema = reader.schema
        except pa.ArrowException as exc:
            raise self._error(exc) from None
        current, expected, batches = None, 0, []
        try:
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    break
                except pa.ArrowException as exc:
                    raise self._error(exc) from None
                shard, rows, last = parse_batch_metadata(chunk.app_metadata)
                if current is None:
                    current, expected = shard, rows
                elif shard != current:
                    raise ShardServiceError(f"{self.location}: shard {current} ended without its last batch")
                batches.append(chunk.data)
                if last:
                    delivery = ShardDelivery(current, self.epoch, schema, batches)
                    if delivery.num_rows != expected:
                        raise ShardServiceError(
                            f"{self.location}: shard {current} arrived with {delivery.num_rows} rows, "
                            f"the ledger says {expected}"
                        )
                    current, batches = None, []
                    yield delivery
            if current is not None:
                raise ShardServiceError(f"{self.location}: the stream ended inside shard {current}")
        finally:
            reader.cancel()

    def ack(self, index: int) -> None:
        """Tell the service that shard ``index`` is consumed; returns once that is on disk there."""
        if isinstance(index, bool) or not isinstance(index, int):
            try:
                index = int(index)  # numpy integers
            except (TypeError, ValueError):
                raise ShardServiceError(f"ack: shard must be an integer, got {index!r}") from None
        action = flight.Action(ACK, self.member.encode(shard=index))
        self._retried(lambda: list(self._flight.do_action(action, options=self._call_options)))
        self.acked.append(index)

    def status(self) -> dict:
        """The job's progress and each group's acknowledgement counts, from the server."""
        action = flight.Action(STATUS, b"")
        results = self._retried(lambda: list(self._flight.do_action(action, options=self._call_options)))
        return json.loads(results[0].body.to_pybytes())

    def _retried(self, call: Callable[[], list]) -> list:
        """``call()``, again while the service cannot be reached, for ``retry`` seconds."""
        outage = _Outage(self.retry)
        while True:
            try:
                return call()
            except pa.ArrowException as exc:
                error = self._error(exc)
                if not isinstance(error, ShardServiceUnavailable):
                    raise error from None
                outage.wait(error)

    def close(self) -> None:
        self._flight.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _error(self, exc: BaseException) -> ShardServiceError:
        if isinstance(exc, flight.FlightUnauthenticatedError):
            return ShardAuthError(f"{self.location}: unauthenticated: {_message(exc)}")
        if isinstance(exc, flight.FlightUnavailableError):
            return ShardServiceUnavailable(f"{self.location}: shard service unavailable ({_message(exc)})")
        return ShardServiceError(f"{self.location}: {_message(exc)}")


def _message(exc: BaseException) -> str:
    """The server's message without gRPC's debug context."""
    text = str(exc)
    for cut in (". Detail:", ". gRPC client debug context:", "\n"):
        text = text.split(cut)[0]
    return text.strip()
