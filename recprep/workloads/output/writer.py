"""Writing a job output: the one writer of shard files, quarantine files and the ledger.

The commit protocol: a worker puts a shard in place whole (:func:`put_shard`; its malformed
rows likewise, :func:`put_quarantine`): in a local directory under a temporary name renamed into
place, in an object store with one PUT (``store``). Then the driver records the shard's
:class:`~.records.CommitRecord` in the ledger (:meth:`OutputWriter.commit`; ``ledger``: a line
appended to ``_ledger.jsonl``, or a conditional create of ``_ledger/part-NNNNN.json`` in an
object store, which no second run can repeat). A shard is committed once its record is in the
ledger, never before its file is in place; a crash in between leaves a file that a resumed run
writes again, byte for byte.

The driver opens the directory first (:meth:`OutputWriter.open`) and holds it until the run
ends (:meth:`OutputWriter.close`):

- it takes the directory's lock (:class:`OutputLock`; in an object store a lease,
  ``lease.ObjectLease``): a second run on the same output, of any job, is refused with a line
  naming the holder (a run that dies loses its lock with its process, or its lease when it
  expires);
- it repairs a ledger whose last line a crash tore (the line is cut off, so the next commit starts
  a line of its own; that shard is simply redone);
- a directory of the same job resumes: every committed shard is checked against its record
  (file present, sha256), and one that does not match is redone; one of another job is refused
  unless the run may overwrite it;
- leftover temporaries are swept.

recprep deletes and overwrites only files of its own layout (``layout``): ``--overwrite`` clears
the shards, quarantine files, temporaries and contract files of the previous job and nothing
else that lies in the directory.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import OutputError
from .layout import (
    ACCOUNTING_FILE,
    CONTRACT_FILES,
    ERRORS_DIR,
    FIT_FILE,
    JOB_FILE,
    LOCK_FILE,
    QUARANTINE_DIR,
    SESSIONS_DIR,
    SHARD_PREFIX,
    ShardKey,
    error_log_name,
    is_error_log,
    is_quarantine_file,
    is_shard_file,
    is_temporary,
    quarantine_name,
    shard_name,
)
from .lease import ObjectLease, describe_holder
from .ledger import ledger_of, read_records
from .reader import ShardMismatch, as_store, read_fit, read_job_if_any, read_shard
from .records import CommitRecord, JobRecord, encode_fit_states
from .store import LocalStore, Store

log = logging.getLogger(__name__)

#: committed shards a resumed run reads at once to check them against their records: one after
#: another, the check of an output in an object store took a round trip per shard; at once, at
#: most this many shards' bytes are held
CHECK_THREADS = 8


class BadRowLike(Protocol):
    """A malformed input row as the sources report it."""

    file: str
    line: int
    reason: str
    text: str


@dataclass(frozen=True)
class WrittenFile:
    name: str
    bytes: int
    sha256: str


def check_writable(directory: str | Store) -> None:
    """Create the output (a local directory) and prove a file can be written there, before any
    work; OutputError naming the URI (a missing bucket, missing credentials, access denied)."""
    as_store(directory).check_writable()


def put_shard(directory: str | Store, index: ShardKey, payload: bytes, fsync: bool = False) -> WrittenFile:
    """Shard ``index``'s file put in place (not yet committed: the driver records it)."""
    name = shard_name(index)
    as_store(directory).put(name, payload, fsync)
    return WrittenFile(name, len(payload), hashlib.sha256(payload).hexdigest())


def put_quarantine(
    directory: str | Store, index: ShardKey, rows: Iterable[BadRowLike], fsync: bool = False
) -> str:
    """Shard ``index``'s malformed rows as JSON lines (file, line, reason, text); returns the
    file's path relative to the output, as its commit record carries it."""
    path = quarantine_name(index)
    lines = "".join(
        json.dumps({"file": r.file, "line": r.line, "reason": r.reason, "text": r.text}) + "\n" for r in rows
    )
    as_store(directory).put(path, lines.encode(), fsync)
    return path


def put_error_log(directory: str | Store, index: ShardKey, stage: str, text: str) -> str:
    """The details of shard ``index``'s failure (``stage``: transform or fit) in the output;
    returns the file's path (absolute, or its URI), which the one-line error names."""
    store = as_store(directory)
    name = error_log_name(index, stage)
    store.put(name, text.encode("utf-8", "backslashreplace"))
    return store.path(name)


class OutputLock:
    """The lock a run holds on its output directory: ``flock`` on ``_lock``, which also holds who
    holds it (job, identity, host, pid, since) for the refusal message. The kernel drops the lock
    when the holder's process ends, so a killed run never leaves the directory locked. (On
    network storage, as a ReadWriteMany volume, the lock is as good as the file system's locks;
    object storage will need a lease here instead.)"""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self, holder: dict[str, Any]) -> None:
        """Take the lock and record ``holder`` in it, or OutputError naming the current holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot open the output's lock ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputError(f"{self.path}: cannot lock the output ({exc.strerror})") from None
            raise OutputError(
                f"{os.path.dirname(self.path)}: in use by {describe_holder(other)}; "
                "a second run on the same output is refused while it runs"
            ) from None
        record = json.dumps(
            {
                **holder,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            sort_keys=True,
        )
        # written over the last holder's record, then cut to length: a truncation to zero first
        # makes ext4 flush the file's blocks on close (its replace-by-truncate heuristic), about
        # 10 ms of every run on a busy disk
        data = record.encode() + b"\n"
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        self._fd = fd

    def check(self) -> None:
        """Nothing to check: the kernel holds the lock until this process ends."""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Redone:
    """A committed shard that did not match its record when the run opened the output."""

    shard: int
    reason: str


class OutputWriter:
    """The driver's side of the contract: holds the output for one job, records commits.
    Use it as a context manager (or call :meth:`close`): the lock is held until then.
    ``directory``: a local path or an object store URI."""

    def __init__(self, directory: str | Store, fsync: bool = False):
        self.store = as_store(directory)
        self.directory = self.store.location
        self.fsync = fsync
        self.ledger = ledger_of(self.store, fsync)
        #: where the ledger is (a file, or an object store folder), for messages
        self.path = self.ledger.path
        #: committed shards by index (filled by :meth:`open`, then by :meth:`commit`)
        self.commits: dict[int, CommitRecord] = {}
        #: committed shards that did not match their records when the output was opened
        self.redone: list[Redone] = []
        #: bytes of a torn last ledger line cut off when the output was opened
        self.repaired_bytes = 0
        self._lock: OutputLock | ObjectLease = (
            OutputLock(self.directory) if isinstance(self.store, LocalStore) else ObjectLease(self.store)
        )

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, job: JobRecord, overwrite: bool) -> None:
        """Take the output for ``job``: lock it, resume the same job (committed shards checked),
        refuse (or with ``overwrite`` clear) another job's shards, write ``_job.json``, sweep
        temporaries."""
        self._lock.acquire({"job": job.name, "identity": job.identity})
        try:
            self._open(job, overwrite)
        except OSError as exc:
            self._lock.release()
            raise OutputError(
                f"{self.directory}: cannot open the job output ({exc.strerror or exc})"
            ) from None
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        """Release the output (the lock)."""
        self._lock.release()

    def _open(self, job: JobRecord, overwrite: bool) -> None:
        existing = read_job_if_any(self.store)
        if existing is not None and existing.identity != job.identity:
            if not overwrite:
                raise OutputError(
                    f"{self.directory}: holds shards of a different job (job {existing.name!r}, "
                    f"identity {existing.identity[:12]}); pass --overwrite to replace them"
                )
            self._clear()
            existing = None
        elif existing is None and not overwrite and self._has_shards():
            raise OutputError(
                f"{self.directory}: holds {SHARD_PREFIX}NNNNN.parquet files but no {JOB_FILE}; "
                "pass --overwrite to replace them"
            )
        elif overwrite:
            self._clear()
            existing = None
        if existing is None and job.shards is not None:  # else: record_job, once they are planned
            self._write_json(JOB_FILE, job.to_dict())
        self.repaired_bytes = self.ledger.repair()
        self.commits = self._checked_commits()
        self._sweep_temporaries()

    def _checked_commits(self) -> dict[int, CommitRecord]:
        """The ledger's commits whose file is there and matches the record; the others redone.
        The files are read ``CHECK_THREADS`` at a time (an object store answers each read after a
        round trip), and the outcome taken in the ledger's order."""
        commits: dict[int, CommitRecord] = {}
        records = list(read_records(self.store).values())
        with ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="recprep-check") as pool:
            reasons = list(pool.map(self._mismatch, records))  # the first read error is raised
        for record, reason in zip(records, reasons):
            if reason is not None:
                self.redone.append(Redone(record.shard, reason))
                log.warning("shard %d is redone: %s", record.shard, reason)
                self.ledger.drop(record.shard)
                continue
            commits[record.shard] = record
        return commits

    def _mismatch(self, record: CommitRecord) -> str | None:
        """Why a committed shard is redone (its file is gone, or holds other bytes than its record
        says), or None when it matches. A file that is there but cannot be read (access denied,
        the store unreachable) is an OutputError naming it, and its record stays: a read error is
        no lost shard, and dropping its commit would take the shard from readers."""
        try:
            read_shard(self.store, record, verify=True)
        except ShardMismatch as exc:
            return str(exc)
        return None

    def commit(self, record: CommitRecord) -> CommitRecord:
        """Record ``record`` in the ledger: from now on the shard is committed. Returns the record
        that stands (in an object store, an earlier run's record of the same bytes)."""
        self._lock.check()
        try:
            record = self.ledger.commit(record)
        except OSError as exc:
            raise OutputError(
                f"{self.path}: cannot record shard {record.shard} ({exc.strerror or exc})"
            ) from None
        self.commits[record.shard] = record
        return record

    def record_job(self, job: JobRecord) -> None:
        """Write ``_job.json`` for a job whose shard count is known only after a first pass (a
        session job's), or, with ``shards`` None, before it commits shards of an unknown count (a
        job decoding its files once); kept as it is when the same job's record is there (with a
        count, if this one has none)."""
        self._lock.check()
        existing = read_job_if_any(self.store)
        if (
            existing is None
            or existing.identity != job.identity
            or (existing.shards != job.shards and job.shards is not None)
        ):
            self._write_json(JOB_FILE, job.to_dict())

    def load_fit(self, identity: str) -> dict[tuple[int, str], Any] | None:
        return read_fit(self.store, identity)

    def save_fit(self, identity: str, states: dict[tuple[int, str], Any]) -> None:
        self._write_json(FIT_FILE, {"identity": identity, "states": encode_fit_states(states)})

    def save_accounting(self, document: dict[str, Any]) -> None:
        """The run's accounting beside the shards (replaced by each run)."""
        self._write_json(ACCOUNTING_FILE, document)

    def _write_json(self, name: str, data: Any) -> None:
        payload = json.dumps(data, indent=1, sort_keys=True, default=str).encode()
        self.store.put(name, payload, self.fsync)

    def _has_shards(self) -> bool:
        return any(is_shard_file(n) for n in self.store.names())

    def _clear(self) -> None:
        """Remove the previous job's files: only names of recprep's layout."""
        self.ledger.clear()
        for name in self.store.names():
            if is_shard_file(name) or name in CONTRACT_FILES or is_temporary(name):
                self.store.remove(name)
        self._clear_sessions()
        for folder, ours in ((QUARANTINE_DIR, is_quarantine_file), (ERRORS_DIR, is_error_log)):
            for name in self.store.names(folder):
                if ours(name) or is_temporary(name):
                    self.store.remove(f"{folder}/{name}")
            if not self.store.names(folder):
                self.store.remove_folder_if_empty(folder)

    def _clear_sessions(self) -> None:
        """A session job's staging (``_sessions/``: partitions of Arrow pieces, the plan)."""
        for name in self.store.names(SESSIONS_DIR):
            path = f"{SESSIONS_DIR}/{name}"
            for inner in self.store.names(path):
                self.store.remove(f"{path}/{inner}")
            self.store.remove_folder_if_empty(path)
            self.store.remove(path)
        self.store.remove_folder_if_empty(SESSIONS_DIR)

    def _sweep_temporaries(self) -> None:
        for folder in ("", QUARANTINE_DIR, ERRORS_DIR):
            for name in self.store.names(folder):
                if is_temporary(name):
                    self.store.remove(f"{folder}/{name}" if folder else name)
