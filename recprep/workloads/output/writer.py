"""Writing a job output: the one writer of shard files, quarantine files and the ledger.

The commit protocol: a worker writes a shard under a temporary name and renames it into place
(:func:`put_shard`; its malformed rows likewise, :func:`put_quarantine`), then the driver
appends the shard's :class:`~.records.CommitRecord` to the ledger (:meth:`OutputWriter.commit`).
A shard is committed once its record is in the ledger, never before its file is in place; a
crash in between leaves a file that a resumed run writes again, byte for byte. A storage
without an atomic rename (object stores) changes this module only.

The driver opens the directory first (:meth:`OutputWriter.open`): a directory of the same job
resumes (committed shards are skipped), one of another job is refused unless the run may
overwrite it, and leftover temporaries are swept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import OutputError
from .layout import (
    CONTRACT_FILES,
    FIT_FILE,
    JOB_FILE,
    LEDGER_FILE,
    QUARANTINE_DIR,
    SHARD_PREFIX,
    is_temporary,
    quarantine_name,
    shard_name,
    temporary_name,
)
from .reader import read_commits, read_fit, read_job_if_any
from .records import CommitRecord, JobRecord, encode_fit_states


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


def check_writable(directory: str) -> None:
    """Create ``directory`` and prove a file can be written there, before any work."""
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".recprep-probe-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.remove(probe)
    except OSError as exc:
        raise OutputError(f"spec.output.uri: cannot write to {directory!r} ({exc.strerror or exc})") from None


def _put(directory: str, name: str, payload: bytes, fsync: bool) -> None:
    """``payload`` under ``directory/name``, complete or not at all (temporary name, rename)."""
    tmp = os.path.join(directory, temporary_name(name, uuid.uuid4().hex[:12]))
    with open(tmp, "wb") as f:
        f.write(payload)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, name))


def put_shard(directory: str, index: int, payload: bytes, fsync: bool = False) -> WrittenFile:
    """Shard ``index``'s file put in place (not yet committed: the driver records it)."""
    name = shard_name(index)
    _put(directory, name, payload, fsync)
    return WrittenFile(name, len(payload), hashlib.sha256(payload).hexdigest())


def put_quarantine(directory: str, index: int, rows: Iterable[BadRowLike], fsync: bool = False) -> str:
    """Shard ``index``'s malformed rows as JSON lines (file, line, reason, text); returns the
    file's path relative to the output, as its commit record carries it."""
    path = quarantine_name(index)
    qdir, name = os.path.split(os.path.join(directory, path))
    os.makedirs(qdir, exist_ok=True)
    lines = "".join(
        json.dumps({"file": r.file, "line": r.line, "reason": r.reason, "text": r.text}) + "\n" for r in rows
    )
    _put(qdir, name, lines.encode(), fsync)
    return path


class OutputWriter:
    """The driver's side of the contract: owns the directory for one job, records commits."""

    def __init__(self, directory: str, fsync: bool = False):
        self.directory = directory
        self.fsync = fsync
        self.path = os.path.join(directory, LEDGER_FILE)
        #: committed shards by index (filled by :meth:`open`, then by :meth:`commit`)
        self.commits: dict[int, CommitRecord] = {}

    def open(self, job: JobRecord, overwrite: bool) -> None:
        """Take the directory for ``job``: resume the same job, refuse (or with ``overwrite``
        clear) another job's shards, write ``_job.json``, load the commits, sweep temporaries."""
        existing = read_job_if_any(self.directory)
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
                f"{self.directory}: holds {SHARD_PREFIX}*.parquet files but no {JOB_FILE}; "
                "pass --overwrite to replace them"
            )
        elif overwrite:
            self._clear()
            existing = None
        if existing is None:
            self._write_json(JOB_FILE, job.to_dict())
        self.commits = {r.shard: r for r in read_commits(self.directory)}
        self._sweep_temporaries()

    def commit(self, record: CommitRecord) -> None:
        """Append ``record`` to the ledger: from now on the shard is committed."""
        with open(self.path, "a") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self.commits[record.shard] = record

    def load_fit(self, identity: str) -> dict[tuple[int, str], Any] | None:
        return read_fit(self.directory, identity)

    def save_fit(self, identity: str, states: dict[tuple[int, str], Any]) -> None:
        self._write_json(FIT_FILE, {"identity": identity, "states": encode_fit_states(states)})

    def _write_json(self, name: str, data: Any) -> None:
        payload = json.dumps(data, indent=1, sort_keys=True, default=str).encode()
        _put(self.directory, name, payload, self.fsync)

    def _has_shards(self) -> bool:
        return any(n.startswith(SHARD_PREFIX) for n in os.listdir(self.directory))

    def _clear(self) -> None:
        for name in os.listdir(self.directory):
            if name.startswith(SHARD_PREFIX) or name in CONTRACT_FILES or is_temporary(name):
                os.remove(os.path.join(self.directory, name))
        shutil.rmtree(os.path.join(self.directory, QUARANTINE_DIR), ignore_errors=True)

    def _sweep_temporaries(self) -> None:
        for root in (self.directory, os.path.join(self.directory, QUARANTINE_DIR)):
            if os.path.isdir(root):
                for name in os.listdir(root):
                    if is_temporary(name):
                        os.remove(os.path.join(root, name))
