"""The shard service: an Arrow Flight server publishing a job's shards as the driver commits them.

A trainer is one *member* of a consumer group (group, rank, world size, epoch; see
:mod:`.protocol`). Its ``do_get`` stream holds the rank's shards of that epoch
(:mod:`.assignment`) that the group has not acknowledged (:mod:`.acks`): first those already
committed, in the epoch's order, then each shard as soon as the driver commits it
(:mod:`.committed`); the stream ends once the rank's last shard was sent. Once the job is
complete, the order is exactly the epoch's seeded order; while it runs, a shard that is not
committed yet does not hold back the committed ones behind it.

Delivery semantics (what "exactly once" means here):

- An acknowledgement is on disk (fsynced) before ``ack`` returns; an acknowledged shard is never
  delivered to the group again in that epoch, whatever restarts (trainer or server).
- A shard that was sent but not acknowledged is sent again, whole, from its first row, to the
  next stream of that rank: a restarted trainer (a new ``ShardClient``) or the next iteration of
  the same client. The trainer that must not count a shard twice acknowledges a shard only once
  the shard's rows are part of its committed state (its checkpoint), and on restart resumes from
  that state: then every row is consumed exactly once. A trainer that dies between committing
  its state and acknowledging finds in its own state that it already holds the redelivered shard
  and acknowledges it without consuming it again.
- One consumer per rank: a newer ``ShardClient`` of the same group, epoch and rank (a restarted
  trainer) supersedes the older one, whose stream is cut and whose acknowledgements are refused.

Backpressure: each stream reads its shards in a producer thread into a queue of at most
``buffer_batches`` record batches of at most ``batch_rows`` rows; when the trainer stops reading,
gRPC's flow control stops the stream, the queue fills and the producer waits: the server holds
one shard file (as read, to check its sha256) and the queue per stream, however slow the trainer.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

from ...errors import OutputError
from ...uris import output_location
from ...workloads.output import FEATURES_KEY, read_shard, read_vocabulary_sizes
from ...workloads.output.dedup import DEDUP_KEY
from .acks import AckLog, consumed_rows, default_state_dir, lock_state, open_group, state_path
from .assignment import owners, rank_shards
from .auth import BearerTokenFactory
from .committed import CommittedShards
from .errors import ShardServiceError
from .protocol import ACK, STATUS, Member, batch_metadata

log = logging.getLogger(__name__)

_TICK = 0.25  #: how often a waiting stream looks at cancellation, shutdown and takeover


class _Superseded(Exception):
    pass


class ShardServer(flight.FlightServerBase):
    """Serve the shards of the job output ``output`` on ``grpc://host:port`` (``port=0``: any
    free port; see :attr:`port`). It starts listening when constructed; :meth:`close` stops it.

    ``token``: bearer token required from every client (None: no authentication).
    ``seed``: the seed of every epoch's shard order. ``state_dir``: where acknowledgements are
    kept (default ``<output>/_service``). ``wait_timeout``: a stream waiting this many seconds
    for the driver to commit another shard fails with a message saying how far the job got.
    ``verify``: check each shard file against its sha256 in the ledger before sending it.
    """

    def __init__(
        self,
        output: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        seed: int = 0,
        state_dir: str | None = None,
        batch_rows: int = 16384,
        buffer_batches: int = 4,
        poll_interval: float = 0.2,
        wait_timeout: float = 900.0,
        verify: bool = True,
    ):
        for name, value in (("batch_rows", batch_rows), ("buffer_batches", buffer_batches)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ShardServiceError(f"{name}: expected a positive integer, got {value!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ShardServiceError(f"port: expected 0 to 65535 (0: any free port), got {port!r}")
        if not wait_timeout > 0:
            raise ShardServiceError(
                f"wait_timeout: expected a positive number of seconds, got {wait_timeout!r}"
            )
        self.directory = output_location(output)
        self.shards = CommittedShards(self.directory, poll_interval)
        self.seed = int(seed)
        self.batch_rows, self.buffer_batches = batch_rows, buffer_batches
        self.wait_timeout, self.verify = float(wait_timeout), verify
        self.state_root = state_dir or default_state_dir(self.directory)
        self.state_dir = state_path(self.state_root, self.shards.identity)
        self._state_lock = lock_state(self.state_dir)
        self._lock = threading.Lock()
        self._groups: dict[str, AckLog] = {}
        self._owners: dict[tuple[int, int], np.ndarray] = {}
        self._sessions: dict[tuple[str, int, int], str] = {}
        self._streams: dict[tuple[str, int, int], int] = {}
        self._stream_ids = itertools.count(1)
        self._open: dict[int, _Stream] = {}
        self._schema: pa.Schema | None = None
        self._vocabulary_sizes: dict[str, int] | None = None
        self._closing = threading.Event()
        self.host = host
        middleware = {"auth": BearerTokenFactory(token)} if token else {}
        try:
            if port:  # gRPC says only "Server did not start properly" (and logs lines of its own)
                _check_bindable(host, port)
            super().__init__(f"grpc://{host}:{port}", middleware=middleware)
        except (pa.ArrowException, OSError) as exc:
            self._state_lock.release()
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split(". Detail")[0]
            raise ShardServiceError(f"cannot listen on {host}:{port} ({why})") from None
        self.shards.start()
        log.info(
            "serving %s (%d/%d shards committed) on %s",
            self.directory,
            len(self.shards.entries),
            self.shards.total,
            self.location,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where a client on this machine connects."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"grpc://{host}:{self.port}"

    def consumed(self) -> int | None:
        """Rows the trainers have consumed of the job's first pass (``acks.consumed_rows``, over
        the shards committed so far); None while no group has joined."""
        rows = {i: record.rows for i, record in list(self.shards.entries.items())}
        return consumed_rows(self.state_root, self.shards.identity, rows)

    def close(self, grace: float = 10.0) -> bool:
        """Stop accepting calls, end every stream and release the state directory. A stream
        whose trainer neither reads nor disconnects is stuck in gRPC's flow control, out of the
        server's reach: after ``grace`` seconds close returns False and leaves it (every
        acknowledgement is already on disk, so the process may exit)."""
        if self._closing.is_set():
            return True
        self._closing.set()
        with self.shards.changed:
            self.shards.changed.notify_all()
        stopper = threading.Thread(target=self.shutdown, name="recprep-shard-server-shutdown", daemon=True)
        stopper.start()
        stopper.join(grace)
        self.shards.stop()
        with self._lock:
            for acks in self._groups.values():
                acks.close()
        self._state_lock.release()
        if stopper.is_alive():
            log.warning("%d shard stream(s) did not end within %g s of the shutdown", len(self._open), grace)
            return False
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- Flight calls ------------------------------------------------------------------------
    def do_get(self, context, ticket):
        with _as_flight_errors():
            member, _ = Member.decode(ticket.ticket, "ticket")
            acks = self._group(member)
            stream_id = self._claim(member)
            acked = acks.acked(member.epoch)
            todo = [
                s
                for s in rank_shards(
                    self.shards.total, self.seed, member.epoch, member.rank, member.world_size
                ).tolist()
                if s not in acked
            ]
            schema = self._stream_schema(context, bool(todo))
            log.info(
                "stream %d: group %s rank %d/%d epoch %d, %d shards to send",
                stream_id,
                member.group,
                member.rank,
                member.world_size,
                member.epoch,
                len(todo),
            )
            stream = _Stream(self, context, member, acks, stream_id, todo, schema)
            return flight.GeneratorStream(schema, stream.run())

    def do_action(self, context, action):
        with _as_flight_errors():
            if self._closing.is_set():
                raise flight.FlightUnavailableError("the shard server is shutting down")
            if action.type == ACK:
                member, extra = Member.decode(action.body.to_pybytes(), "ack")
                new = self._ack(member, extra.get("shard"))
                return [json.dumps({"shard": extra["shard"], "new": new}).encode()]
            if action.type == STATUS:
                return [json.dumps(self.status(), sort_keys=True).encode()]
            raise ShardServiceError(
                f"unknown action {action.type!r} (this service knows {ACK!r}, {STATUS!r})"
            )

    def list_actions(self, context):
        return [
            (ACK, 'acknowledge a consumed shard: a consumer\'s JSON plus {"shard": n}'),
            (
                STATUS,
                "the job's progress, spec and fitted vocabulary sizes, and each group's "
                "acknowledgements, as JSON",
            ),
        ]

    def status(self) -> dict:
        with self._lock:
            groups = {
                name: {
                    "worldSize": a.header["worldSize"],
                    "acked": {str(e): n for e, n in a.counts().items()},
                }
                for name, a in self._groups.items()
            }
            streams = [
                {
                    "id": i,
                    "group": st.member.group,
                    "rank": st.member.rank,
                    "epoch": st.member.epoch,
                    "shardsSent": st.sent,
                    "shardsLeft": len(st.todo) - st.sent,
                    "bytesSent": st.sent_bytes,
                    "bufferedBatches": st.queue.qsize(),
                }
                for i, st in sorted(self._open.items())
            ]
        return {
            "streams": streams,
            "job": self.shards.name,
            "identity": self.shards.identity,
            "directory": self.directory,
            "shards": self.shards.total,
            "committed": len(self.shards.entries),
            "complete": self.shards.complete,
            "seed": self.seed,
            "groups": groups,
            "spec": self.shards.spec,
            "vocabularies": self._vocabularies(),
        }

    def _vocabularies(self) -> dict[str, int]:
        """The fitted vocabulary sizes (``_fit.json``), read once it exists and only for a job
        that fits vocabularies: with the spec, what a trainer sizes its tables from."""
        if self._vocabulary_sizes is None:
            ops = {t.get("op") for t in (self.shards.spec or {}).get("transforms", []) if isinstance(t, dict)}
            if "categorify" not in ops:
                return {}
            sizes = read_vocabulary_sizes(self.shards.store, self.shards.identity)
            if not sizes:
                return {}  # not fitted yet: look again at the next call
            self._vocabulary_sizes = sizes
        return dict(self._vocabulary_sizes)

    # -- groups, sessions, acknowledgements --------------------------------------------------
    def _group(self, member: Member) -> AckLog:
        with self._lock:
            acks = self._groups.get(member.group)
            if acks is None:
                acks = open_group(
                    self.state_dir,
                    member.group,
                    identity=self.shards.identity,
                    seed=self.seed,
                    world_size=member.world_size,
                    total=self.shards.total,
                )
                self._groups[member.group] = acks
            elif acks.header["worldSize"] != member.world_size:
                raise ShardServiceError(
                    f"group {member.group!r} has world_size {acks.header['worldSize']}; got world_size "
                    f"{member.world_size} (rank {member.rank}): use a new group name to change it"
                )
            return acks

    def _claim(self, member: Member) -> int:
        """Make ``member`` the rank's consumer; every earlier stream of the rank ends."""
        key = (member.group, member.epoch, member.rank)
        with self._lock:
            previous = self._sessions.get(key)
            if previous is not None and previous != member.session:
                log.info(
                    "group %s epoch %d rank %d: a new consumer supersedes session %s", *key, previous[:8]
                )
            self._sessions[key] = member.session
            stream_id = next(self._stream_ids)
            self._streams[key] = stream_id
            return stream_id

    def _current(self, member: Member, stream_id: int) -> bool:
        with self._lock:
            return self._streams.get((member.group, member.epoch, member.rank)) == stream_id

    def _ack(self, member: Member, shard) -> bool:
        if isinstance(shard, bool) or not isinstance(shard, int):
            raise ShardServiceError(f"ack: shard must be an integer, got {shard!r}")
        acks = self._group(member)
        total = self.shards.total
        if not 0 <= shard < total:
            raise ShardServiceError(f"ack: shard {shard} is not in [0, {total}) (job {self.shards.name!r})")
        key = (member.group, member.epoch, member.rank)
        with self._lock:
            current = self._sessions.setdefault(key, member.session)  # a server restart knows no session yet
            if current != member.session:
                raise ShardServiceError(
                    f"ack of shard {shard} refused: rank {member.rank} of group {member.group!r} (epoch "
                    f"{member.epoch}) was taken over by a newer consumer"
                )
            table = self._owners.get((member.epoch, member.world_size))
            if table is None:
                table = self._owners[(member.epoch, member.world_size)] = owners(
                    total, self.seed, member.epoch, member.world_size
                )
        owner = int(table[shard])
        if owner != member.rank:
            raise ShardServiceError(
                f"ack: shard {shard} belongs to rank {owner} of group {member.group!r} "
                f"in epoch {member.epoch}, not rank {member.rank}"
            )
        if shard not in self.shards.entries:
            raise ShardServiceError(
                f"ack: shard {shard} is not committed yet, so it cannot have been consumed"
            )
        return acks.add(member.epoch, member.rank, shard)

    # -- reading shards ----------------------------------------------------------------------
    def _stream_schema(self, context, needed: bool) -> pa.Schema:
        """The job's output schema (the first committed shard's), waiting for one if need be."""
        if self._schema is not None:
            return self._schema
        if not needed:
            return pa.schema([])
        deadline = time.monotonic() + self.wait_timeout
        with self.shards.changed:
            while not self.shards.order:
                self._check_waiting(context, deadline)
                self.shards.changed.wait(_TICK)
            first = self.shards.order[0]
        path = self.shards.path(first)
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise ShardServiceError(f"{path}: not a readable Parquet shard ({exc})") from None
        # trainers get the job's feature roles (the output contract's), nothing else of the file's
        # the roles, and a deduplicated output's groups (each receiver recounts a shard's unique rows)
        roles = {k: v for k, v in (schema.metadata or {}).items() if k in (FEATURES_KEY, DEDUP_KEY)}
        self._schema = schema.with_metadata(roles) if roles else schema.remove_metadata()
        return self._schema

    def _check_waiting(self, context, deadline: float) -> None:
        """Raise when a wait for a commit must end. ``context`` only from the call's own thread
        (a producer thread may outlive the call, and with it the context)."""
        if self._closing.is_set():
            raise flight.FlightUnavailableError("the shard server is shutting down")
        if self.shards.error:
            raise ShardServiceError(self.shards.error)
        if context is not None and context.is_cancelled():
            raise flight.FlightCancelledError("the consumer went away")
        if time.monotonic() > deadline:
            raise flight.FlightTimedOutError(
                f"no shard committed for {self.wait_timeout:g} s: job {self.shards.name!r} has "
                f"{len(self.shards.entries)}/{self.shards.total} shards in "
                f"{self.shards.ledger_path}; is its driver running?"
            )

    def read_shard(self, shard: int, schema: pa.Schema) -> Iterator[tuple[pa.RecordBatch, bytes]]:
        """The record batches of a committed shard with their app metadata."""
        entry = self.shards.entries[shard]
        path = self.shards.path(shard)
        try:
            payload = read_shard(self.shards.store, entry, self.verify)
        except OutputError as exc:
            raise ShardServiceError(str(exc)) from None
        try:
            pf = pq.ParquetFile(pa.BufferReader(payload))
            if pf.metadata.num_rows != entry.rows:
                raise ShardServiceError(f"{path}: {pf.metadata.num_rows} rows, the ledger says {entry.rows}")
            previous = None
            # one thread per stream: streams decode in parallel, a stream does not crowd the others
            for batch in pf.iter_batches(batch_size=self.batch_rows, use_threads=False):
                if previous is not None:
                    yield previous, batch_metadata(shard, entry.rows, False)
                previous = _conform(batch, schema, path)
        except pa.ArrowException as exc:
            raise ShardServiceError(f"{path}: not a readable Parquet shard ({exc})") from None
        if previous is None:
            previous = pa.RecordBatch.from_pylist([], schema=schema)
        yield previous, batch_metadata(shard, entry.rows, True)


class _Stream:
    """One ``do_get``: a producer thread reading the rank's shards into a bounded queue, and
    the generator gRPC pulls the batches from."""

    _END = object()

    def __init__(
        self,
        server: ShardServer,
        context,
        member: Member,
        acks: AckLog,
        stream_id: int,
        todo: list[int],
        schema: pa.Schema,
    ):
        self.server, self.context, self.member, self.acks = server, context, member, acks
        self.stream_id, self.todo, self.schema = stream_id, todo, schema
        self.queue: queue.Queue = queue.Queue(maxsize=server.buffer_batches)
        self.stop = threading.Event()
        self.sent = 0  #: shards whose batches all went into the queue
        self.sent_bytes = 0  #: Arrow bytes of the batches that went into the queue

    def run(self):
        with self.server._lock:
            self.server._open[self.stream_id] = self
        self.producer = threading.Thread(
            target=self._produce, name=f"recprep-stream-{self.stream_id}", daemon=True
        )
        self.producer.start()
        try:
            while True:
                try:
                    item = self.queue.get(timeout=_TICK)
                except queue.Empty:
                    if self.context.is_cancelled():
                        return
                    if self.server._closing.is_set():
                        raise flight.FlightUnavailableError("the shard server is shutting down") from None
                    if not self.producer.is_alive() and self.queue.empty():
                        raise flight.FlightInternalError("the shard stream's reader stopped") from None
                    continue
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise _to_flight(item)
                yield item
        finally:
            self.stop.set()
            with self.server._lock:
                self.server._open.pop(self.stream_id, None)

    def _put(self, item, check: bool = True) -> None:
        """Wait for room in the queue; raise _Superseded once the call is over."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=_TICK)
                return
            except queue.Full:
                if check:
                    self._check_live()
        raise _Superseded()

    def _check_live(self) -> None:
        if not self.server._current(self.member, self.stream_id):
            m = self.member
            raise ShardServiceError(
                f"rank {m.rank} of group {m.group!r} (epoch {m.epoch}) was taken over by a newer consumer; "
                "this stream ends"
            )

    def _produce(self) -> None:
        try:
            self._deliver()
            self._put(self._END)
        except _Superseded:
            pass
        except BaseException as exc:  # handed to the gRPC thread, which ends the call with it
            with contextlib.suppress(_Superseded):
                self._put(exc, check=False)

    def _deliver(self) -> None:
        server, shards, epoch = self.server, self.server.shards, self.member.epoch
        position = {s: i for i, s in enumerate(self.todo)}
        ready: list[tuple[int, int]] = []
        seen = 0  # how far into shards.order (commit order) this stream has looked
        left = len(self.todo)
        deadline = time.monotonic() + server.wait_timeout
        while left:
            with shards.changed:
                fresh, seen = shards.order[seen:], len(shards.order)
            for s in fresh:
                if s in position:
                    heapq.heappush(ready, (position[s], s))
            if ready:
                _, shard = heapq.heappop(ready)
                left -= 1
                if self.acks.is_acked(epoch, shard):
                    continue  # acknowledged meanwhile by this rank's consumer
                for item in server.read_shard(shard, self.schema):
                    self._check_live()
                    self._put(item)
                    self.sent_bytes += item[0].nbytes
                self.sent += 1
                deadline = time.monotonic() + server.wait_timeout
                continue
            with shards.changed:
                if len(shards.order) == seen:
                    shards.changed.wait(_TICK)
            if self.stop.is_set():
                raise _Superseded()
            self._check_live()
            server._check_waiting(None, deadline)


def _check_bindable(host: str, port: int) -> None:
    """OSError saying why (address in use, unknown host) when ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))


def _conform(batch: pa.RecordBatch, schema: pa.Schema, path: str) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    try:
        return batch.cast(schema)
    except (pa.ArrowException, ValueError) as exc:
        raise ShardServiceError(f"{path}: its columns differ from the job's first shard ({exc})") from None


def _to_flight(exc: BaseException) -> BaseException:
    if isinstance(exc, flight.FlightError):
        return exc
    if isinstance(exc, ShardServiceError):
        return flight.FlightServerError(str(exc))
    log.exception("shard stream failed", exc_info=exc)
    return flight.FlightInternalError(f"internal error in the shard service: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _as_flight_errors():
    """What a call raises reaches the client as one line: a ShardServiceError as it is, anything
    else (a bug) as an internal error naming its type, its traceback only in the server's log."""
    try:
        yield
    except flight.FlightError:
        raise
    except ShardServiceError as exc:
        raise flight.FlightServerError(str(exc)) from None
    except Exception as exc:
        raise _to_flight(exc) from None
