"""Acknowledged shards of consumer groups, kept where they survive restarts.

A server's state lives in ``<state_dir>/<identity[:16]>/`` (``state_dir`` defaults to
``<output>/_service``: :func:`default_state_dir`): a job replaced by a different one
(``--overwrite``) starts from no acknowledgements without anyone deleting files.

In a directory, one append-only file per group, ``<group>.acks.jsonl``:

- line 1, the header: ``{"group", "identity", "seed", "worldSize", "shards"}``, written to a
  temporary file, fsynced and renamed into place when the group's first consumer joins. A group
  keeps its world size and seed: a consumer with another world size is refused (the shard
  assignment would change under the acknowledgements already made).
- then one line per acknowledgement, ``{"epoch", "rank", "shard"}``, written, flushed and
  fsynced before :meth:`AckLog.add` returns, so an acknowledgement the trainer saw succeed
  outlives a crash of the server. A line torn by a crash mid-append was never confirmed to its
  trainer: it is cut off when the file is opened, and that shard is delivered again.

:class:`StateLock` (an ``flock``) keeps a second server from writing the same state directory.

In an object store (an output at ``s3://``, ``gs://``, ``az://``: no append, no ``flock``), one
object per acknowledgement (:class:`ObjectAckLog`): ``<group>.acks/header.json`` (the same
header, created conditionally by the group's first consumer) and
``<group>.acks/epoch-NNNNN/SSSSS.json`` (``{"rank"}``), created conditionally before
:meth:`ObjectAckLog.add` returns; a PUT is whole or absent, so nothing is ever torn. The lock is
a lease, ``_lock`` (``workloads.output.lease``): a server replaced without releasing it (a pod
killed) is followed by one that waits at most the lease's length. So the acknowledgements live
with the shards: a replaced shard service pod, or a driver measuring what the trainers consumed
(``consumed_rows``), reads them from any host.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading

from ...errors import OutputError
from ...uris import local_path
from ...workloads.output import SERVICE_DIR, open_store
from ...workloads.output.lease import ObjectLease
from .errors import ShardServiceError

LOCK_FILE = ".lock"


def default_state_dir(output: str) -> str:
    """Where a shard server keeps its state without ``--state-dir``: ``<output>/_service``, in a
    directory or in the object store the output is in."""
    if local_path(output) is not None:
        return os.path.join(os.path.abspath(output), SERVICE_DIR)
    return f"{output.rstrip('/')}/{SERVICE_DIR}"


def state_path(root: str, identity: str) -> str:
    """A job's state folder under the state directory ``root`` (a path or a URI)."""
    if local_path(root) is not None:
        return os.path.join(os.path.abspath(root), identity[:16])
    return f"{root.rstrip('/')}/{identity[:16]}"


def lock_state(directory: str):
    """The lock of a server on the state folder ``directory``: :class:`StateLock` in a directory,
    :class:`ObjectStateLock` in an object store (both have ``release``)."""
    return StateLock(directory) if local_path(directory) is not None else ObjectStateLock(directory)


def open_group(directory: str, group: str, **job):
    """The acknowledgement log of ``group`` in the state folder ``directory`` (see the module)."""
    kind = AckLog if local_path(directory) is not None else ObjectAckLog
    return kind.open(directory, group, **job)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateLock:
    """An exclusive ``flock`` on ``<directory>/.lock`` for the life of one server."""

    def __init__(self, directory: str):
        try:
            os.makedirs(directory, exist_ok=True)
            self._fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ShardServiceError(
                f"{directory}: cannot create the shard service state ({exc.strerror or exc}); "
                "a read-only output needs --state-dir"
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise ShardServiceError(
                f"{directory}: another shard server (pid {holder}) serves this job's state; "
                "stop it or give a different --state-dir"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class ObjectStateLock:
    """The lease ``<directory>/_lock`` in an object store, for the life of one server."""

    def __init__(self, directory: str):
        try:
            self._lease = ObjectLease(open_store(directory))
            self._lease.acquire({"job": "shard server", "identity": directory.rstrip("/").rsplit("/", 1)[-1]})
        except (OutputError, OSError) as exc:
            raise ShardServiceError(
                f"{directory}: another shard server serves this job's state, or the state cannot be "
                f"written ({exc}); stop it or give a different --state-dir"
            ) from None

    def release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None


def _check_header(found: dict, header: dict, group: str, where: str) -> None:
    """ShardServiceError when a group's kept header is not this consumer's job and parameters."""
    for key, label in (("worldSize", "world_size"), ("seed", "seed")):
        if found.get(key) != header[key]:
            raise ShardServiceError(
                f"group {group!r} has {label} {found.get(key)} (set when its first consumer joined, "
                f"acknowledgements in {where}); got {label} {header[key]}: "
                "use a new group name to change it"
            )
    if found.get("identity") != header["identity"] or found.get("shards") != header["shards"]:
        raise ShardServiceError(
            f"{where}: acknowledgements of a different job; remove them or use a new group name"
        )


def _header(group: str, identity: str, seed: int, world_size: int, total: int) -> dict:
    return {"group": group, "identity": identity, "seed": seed, "worldSize": world_size, "shards": total}


class _Acks:
    """A group's acknowledgements, ``{epoch: {shard, ...}}`` in memory; where they are kept is
    the subclass's (:meth:`_record`, :meth:`_close`)."""

    def __init__(self, header: dict, acked: dict[int, set[int]]):
        self.header = header
        self._acked = acked
        self._lock = threading.Lock()
        self._closed = False

    def acked(self, epoch: int) -> frozenset[int]:
        with self._lock:
            return frozenset(self._acked.get(epoch, ()))

    def is_acked(self, epoch: int, shard: int) -> bool:
        with self._lock:
            return shard in self._acked.get(epoch, ())

    def add(self, epoch: int, rank: int, shard: int) -> bool:
        """Record the acknowledgement durably before returning; False when it was already
        recorded (acks are idempotent)."""
        with self._lock:
            if self._closed:
                raise ShardServiceError(
                    "the shard server is shutting down; acknowledge again once it is back"
                )
            done = self._acked.setdefault(epoch, set())
            if shard in done:
                return False
            made = self._record(epoch, rank, shard)
            done.add(shard)
            return made

    def counts(self) -> dict[int, int]:
        with self._lock:
            return {e: len(s) for e, s in sorted(self._acked.items())}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._close()

    def _record(self, epoch: int, rank: int, shard: int) -> bool:
        raise NotImplementedError

    def _close(self) -> None:
        pass


class AckLog(_Acks):
    """The acknowledgements of one group in a directory: one append-only file."""

    def __init__(self, path: str, header: dict, acked: dict[int, set[int]]):
        super().__init__(header, acked)
        self.path = path
        self._file = open(path, "ab")

    @classmethod
    def open(
        cls, directory: str, group: str, *, identity: str, seed: int, world_size: int, total: int
    ) -> AckLog:
        path = os.path.join(directory, f"{group}.acks.jsonl")
        header = _header(group, identity, seed, world_size, total)
        if not os.path.exists(path):
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write((json.dumps(header, sort_keys=True) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(directory)
            return cls(path, header, {})
        found, acked = _load(path, total)
        _check_header(found, header, group, path)
        return cls(path, found, acked)

    def _record(self, epoch: int, rank: int, shard: int) -> bool:
        self._file.write((json.dumps({"epoch": epoch, "rank": rank, "shard": shard}) + "\n").encode())
        self._file.flush()
        os.fsync(self._file.fileno())
        return True

    def _close(self) -> None:
        self._file.close()


class ObjectAckLog(_Acks):
    """The acknowledgements of one group in an object store: one object each (see the module)."""

    def __init__(self, store, folder: str, header: dict, acked: dict[int, set[int]]):
        super().__init__(header, acked)
        self.store, self.folder = store, folder
        self.path = store.path(folder)

    @classmethod
    def open(
        cls, directory: str, group: str, *, identity: str, seed: int, world_size: int, total: int
    ) -> ObjectAckLog:
        store = open_store(directory)
        folder = f"{group}.acks"
        header = _header(group, identity, seed, world_size, total)
        try:
            if store.create(f"{folder}/header.json", json.dumps(header, sort_keys=True).encode()):
                return cls(store, folder, header, {})
            found, acked = _object_group(store, folder, total)
        except OSError as exc:
            raise ShardServiceError(
                f"{store.path(folder)}: cannot keep the group's acknowledgements ({exc})"
            ) from None
        _check_header(found, header, group, store.path(folder))
        return cls(store, folder, found, acked)

    def _record(self, epoch: int, rank: int, shard: int) -> bool:
        """A conditional create: False when another server made the record first (it stands)."""
        name = f"{self.folder}/{_epoch_folder(epoch)}/{shard:05d}.json"
        try:
            return self.store.create(name, json.dumps({"rank": rank}).encode())
        except OSError as exc:
            raise ShardServiceError(
                f"{self.store.path(name)}: cannot record the acknowledgement ({exc}); acknowledge again"
            ) from None


def _epoch_folder(epoch: int) -> str:
    return f"epoch-{epoch:05d}"


def _object_group(store, folder: str, total: int | None, epoch: int | None = None):
    """(header, {epoch: acknowledged shards}) of a group kept in an object store (only ``epoch``
    when given: one listing)."""
    where = store.path(folder)
    try:
        header = json.loads(store.read(f"{folder}/header.json"))
    except (ValueError, FileNotFoundError):
        header = None
    if not isinstance(header, dict):
        raise ShardServiceError(
            f"{where}/header.json: not a group's header; remove it or use a new group name"
        )
    if total is None:
        total = header.get("shards") if isinstance(header.get("shards"), int) else 0
    acked: dict[int, set[int]] = {}
    epochs = [_epoch_folder(epoch)] if epoch is not None else store.names(folder)
    for name in epochs:
        if not name.startswith("epoch-") or not name[6:].isdigit():
            continue
        for item in store.names(f"{folder}/{name}"):
            shard = item.removesuffix(".json")
            if not shard.isdigit() or not 0 <= int(shard) < total:
                raise ShardServiceError(
                    f"{where}/{name}/{item}: not an acknowledgement of a shard in [0, {total})"
                )
            acked.setdefault(int(name[6:]), set()).add(int(shard))
    return header, acked


def _load(path: str, total: int) -> tuple[dict, dict[int, set[int]]]:
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a torn last line: never confirmed, so never happened
        with open(path, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    return _parse(data[:end], path, total)


def _parse(data: bytes, path: str, total: int | None) -> tuple[dict, dict[int, set[int]]]:
    """(header, {epoch: acknowledged shards}) of a group file's complete lines."""
    lines = data.splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict):
        raise ShardServiceError(f"{path}: no valid header line; remove the file or use a new group name")
    if total is None:
        total = header.get("shards") if isinstance(header.get("shards"), int) else 0
    acked: dict[int, set[int]] = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            e = json.loads(line)
            epoch, shard = int(e["epoch"]), int(e["shard"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ShardServiceError(f"{path}, line {number}: not an acknowledgement record") from None
        if not 0 <= shard < total:
            raise ShardServiceError(f"{path}, line {number}: shard {shard} is not in [0, {total})")
        acked.setdefault(epoch, set()).add(shard)
    return header, acked


def read_acknowledged(
    state_dir: str, identity: str, epoch: int | None = None
) -> dict[str, dict[int, set[int]]]:
    """Every group's acknowledgements of the job ``identity`` under a service state directory
    (or object store prefix), read only (a server may be appending: a torn last line is left
    alone and not counted): ``{group: {epoch: shards}}``, only ``epoch``'s when given. A group
    that cannot be read is left out (its server reports it)."""
    if local_path(state_dir) is None:
        return _read_acknowledged_objects(state_dir, identity, epoch)
    directory = os.path.join(state_dir, identity[:16])
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".acks.jsonl"))
    except OSError:
        return {}
    groups: dict[str, dict[int, set[int]]] = {}
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as f:
                data = f.read()
            header, acked = _parse(data[: data.rfind(b"\n") + 1], path, None)
        except (OSError, ShardServiceError):
            continue
        if header.get("identity") == identity:
            groups[str(header.get("group", name[: -len(".acks.jsonl")]))] = (
                acked if epoch is None else {e: s for e, s in acked.items() if e == epoch}
            )
    return groups


def _read_acknowledged_objects(state_dir: str, identity: str, epoch: int | None):
    try:
        store = open_store(state_path(state_dir, identity))
        folders = [n for n in store.names() if n.endswith(".acks")]
    except OSError:
        return {}
    groups: dict[str, dict[int, set[int]]] = {}
    for folder in folders:
        try:
            header, acked = _object_group(store, folder, None, epoch)
        except (OSError, ShardServiceError):
            continue
        if header.get("identity") == identity:
            groups[str(header.get("group", folder[: -len(".acks")]))] = acked
    return groups


def consumed_rows(state_dir: str, identity: str, rows: dict[int, int]) -> int | None:
    """Rows the trainers have consumed of the job's first pass: the most, over the consumer
    groups, of the rows (``rows``: shard -> rows) of the shards a group acknowledged in epoch 0
    (each group reads every shard; a later epoch re-reads what is already produced). None when
    no group has joined."""
    groups = read_acknowledged(state_dir, identity, epoch=0)
    if not groups:
        return None
    return max(sum(rows.get(s, 0) for s in acked.get(0, ())) for acked in groups.values())
