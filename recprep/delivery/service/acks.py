"""Acknowledged shards of consumer groups, kept in append-only files that survive restarts.

A server's state lives in ``<state_dir>/<identity[:16]>/`` (``state_dir`` defaults to
``<output>/_service``, or for an output in an object store, which has no append and no lock, to a
local directory named after its URI: :func:`default_state_dir`): a job replaced by a different
one (``--overwrite``) starts from no acknowledgements without anyone deleting files. One file
per group, ``<group>.acks.jsonl``:

- line 1, the header: ``{"group", "identity", "seed", "worldSize", "shards"}``, written to a
  temporary file, fsynced and renamed into place when the group's first consumer joins. A group
  keeps its world size and seed: a consumer with another world size is refused (the shard
  assignment would change under the acknowledgements already made).
- then one line per acknowledgement, ``{"epoch", "rank", "shard"}``, written, flushed and
  fsynced before :meth:`AckLog.add` returns, so an acknowledgement the trainer saw succeed
  outlives a crash of the server. A line torn by a crash mid-append was never confirmed to its
  trainer: it is cut off when the file is opened, and that shard is delivered again.

:class:`StateLock` keeps a second server from writing the same state directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading

from ...uris import local_path
from ...workloads.output import SERVICE_DIR
from .errors import ShardServiceError

LOCK_FILE = ".lock"


def default_state_dir(output: str) -> str:
    """Where a shard server keeps its state without ``--state-dir``: ``<output>/_service`` for a
    local output; for an object store URI, ``$XDG_STATE_HOME/recprep/service/<hash of the URI>``
    (``~/.local/state`` by default), which lasts as long as that disk does."""
    if local_path(output) is not None:
        return os.path.join(os.path.abspath(output), SERVICE_DIR)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "recprep", "service", hashlib.sha256(output.encode()).hexdigest()[:16])


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
                f"{directory}: cannot create the shard service state ({exc.strerror or exc})"
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


class AckLog:
    """The acknowledgements of one group: ``{epoch: {shard, ...}}`` in memory, a file on disk."""

    def __init__(self, path: str, header: dict, acked: dict[int, set[int]]):
        self.path = path
        self.header = header
        self._acked = acked
        self._lock = threading.Lock()
        self._file = open(path, "ab")

    @classmethod
    def open(
        cls, directory: str, group: str, *, identity: str, seed: int, world_size: int, total: int
    ) -> AckLog:
        path = os.path.join(directory, f"{group}.acks.jsonl")
        header = {
            "group": group,
            "identity": identity,
            "seed": seed,
            "worldSize": world_size,
            "shards": total,
        }
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
        for key, label in (("worldSize", "world_size"), ("seed", "seed")):
            if found.get(key) != header[key]:
                raise ShardServiceError(
                    f"group {group!r} has {label} {found.get(key)} (set when its first consumer joined, "
                    f"acknowledgements in {path}); got {label} {header[key]}: "
                    "use a new group name to change it"
                )
        if found.get("identity") != identity or found.get("shards") != total:
            raise ShardServiceError(
                f"{path}: acknowledgements of a different job; remove the file or use a new group name"
            )
        return cls(path, found, acked)

    def acked(self, epoch: int) -> frozenset[int]:
        with self._lock:
            return frozenset(self._acked.get(epoch, ()))

    def is_acked(self, epoch: int, shard: int) -> bool:
        with self._lock:
            return shard in self._acked.get(epoch, ())

    def add(self, epoch: int, rank: int, shard: int) -> bool:
        """Record the acknowledgement durably; False when it was already recorded (acks are idempotent)."""
        with self._lock:
            if self._file.closed:
                raise ShardServiceError(
                    "the shard server is shutting down; acknowledge again once it is back"
                )
            done = self._acked.setdefault(epoch, set())
            if shard in done:
                return False
            self._file.write((json.dumps({"epoch": epoch, "rank": rank, "shard": shard}) + "\n").encode())
            self._file.flush()
            os.fsync(self._file.fileno())
            done.add(shard)
            return True

    def counts(self) -> dict[int, int]:
        with self._lock:
            return {e: len(s) for e, s in sorted(self._acked.items())}

    def close(self) -> None:
        with self._lock:
            self._file.close()


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


def read_acknowledged(state_dir: str, identity: str) -> dict[str, dict[int, set[int]]]:
    """Every group's acknowledgements of the job ``identity`` under a service state directory,
    read only (a server may be appending: a torn last line is left alone and not counted):
    ``{group: {epoch: shards}}``. A file that cannot be read is left out (its group's server
    reports it)."""
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
            groups[str(header.get("group", name[: -len(".acks.jsonl")]))] = acked
    return groups


def consumed_rows(state_dir: str, identity: str, rows: dict[int, int]) -> int | None:
    """Rows the trainers have consumed of the job's first pass: the most, over the consumer
    groups, of the rows (``rows``: shard -> rows) of the shards a group acknowledged in epoch 0
    (each group reads every shard; a later epoch re-reads what is already produced). None when
    no group has joined."""
    groups = read_acknowledged(state_dir, identity)
    if not groups:
        return None
    return max(sum(rows.get(s, 0) for s in acked.get(0, ())) for acked in groups.values())
