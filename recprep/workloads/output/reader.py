"""Reading a job output: the one reader of ``_job.json``, ``_ledger.jsonl`` and ``_fit.json``.

Everything that reads a job output goes through here: the driver resuming a run, a trainer
reading shards from a directory (``recprep.delivery.shards``), the shard service following a
running job (``recprep.delivery.service.committed``, with :class:`LedgerTail`) and ``recprep
train`` sizing its tables. Errors are :class:`~recprep.errors.OutputError` naming the directory
or the file; callers that speak to someone else (a trainer, a gRPC client) re-raise them as
their own errors with the same message.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ...errors import OutputError
from .layout import FIT_FILE, JOB_FILE, LEDGER_FILE
from .records import CommitRecord, JobRecord, decode_fit_states, parse_commit, parse_job


def read_job(directory: str) -> JobRecord:
    """``_job.json`` of the job output ``directory``; OutputError naming what is missing or broken."""
    if not os.path.isdir(directory):
        raise OutputError(f"{directory}: the job output directory does not exist")
    path = os.path.join(directory, JOB_FILE)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise OutputError(f"{directory}: not a recprep job output (no {JOB_FILE})") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: unreadable ({exc})") from None
    job = parse_job(data)
    if job is None:
        raise OutputError(f"{path}: not a recprep job file (no identity)")
    return job


def read_job_if_any(directory: str) -> JobRecord | None:
    """The job record, or None when the directory holds no ``_job.json`` yet (a corrupt one is
    an error: it must not be taken for an empty directory and overwritten)."""
    if not os.path.exists(os.path.join(directory, JOB_FILE)):
        return None
    return read_job(directory)


def read_commits(
    directory: str, *, require_files: bool = True, total: int | None = None
) -> list[CommitRecord]:
    """The committed shards of ``directory`` in commit order (see ``records`` for the rules).

    ``require_files``: leave out records whose file is gone (the driver then redoes the shard; a
    trainer does not see it). ``total``: leave out shards outside ``[0, total)``."""
    path = os.path.join(directory, LEDGER_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(f"{path}: unreadable ({exc.strerror or exc})") from None
    commits: dict[int, CommitRecord] = {}
    for line in data.splitlines():
        record = parse_commit(line, total)
        if record is not None:
            commits[record.shard] = record  # first position in the dict, last record's contents
    return [
        r for r in commits.values() if not require_files or os.path.exists(os.path.join(directory, r.file))
    ]


def read_shard(directory: str, record: CommitRecord, verify: bool = True) -> bytes:
    """The bytes of a committed shard, checked against the sha256 its commit record carries
    (``verify``); OutputError naming the file when it cannot be read or does not match."""
    path = os.path.join(directory, record.file)
    try:
        with open(path, "rb") as f:
            payload = f.read()
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the committed shard ({exc.strerror or exc})") from None
    if verify and record.sha256 and hashlib.sha256(payload).hexdigest() != record.sha256:
        raise OutputError(f"{path}: content does not match its sha256 in {LEDGER_FILE}")
    return payload


def read_fit(directory: str, identity: str) -> dict[tuple[int, str], Any] | None:
    """The fitted states of job ``identity``, or None when ``_fit.json`` is missing, unreadable or
    another job's (the fit pass then runs again)."""
    try:
        with open(os.path.join(directory, FIT_FILE)) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("identity") != identity
        or not isinstance(data.get("states"), dict)
    ):
        return None
    return decode_fit_states(data["states"])


def read_vocabulary_sizes(directory: str, identity: str) -> dict[str, int]:
    """Sizes of the vocabularies fitted for job ``identity`` (categorify), keyed
    ``"<step>:<column>"``; {} without a fit file of that job."""
    states = read_fit(directory, identity) or {}
    return {
        f"{step}:{column}": len(v["vocabulary"])
        for (step, column), v in states.items()
        if isinstance(v, dict) and isinstance(v.get("vocabulary"), list)
    }


_MARK = 256  #: bytes compared at both ends of what was read, to notice a rewritten ledger


@dataclass
class LedgerTail:
    """Follows ``_ledger.jsonl`` as the driver appends to it: each :meth:`read` returns the
    commits of the complete lines added since the last one.

    A ledger that was removed, truncated or rewritten (``recprep run --overwrite``; a new file
    may even reuse the inode number and already be longer) is noticed by its inode, its size and
    the bytes at both ends of what was read (:meth:`changed_underneath`); the caller decides
    whether it is still the same job and then reads it again from its start (:meth:`restart`)."""

    directory: str
    total: int | None = None
    _offset: int = 0
    _inode: int | None = None
    _marks: tuple[bytes, bytes] = (b"", b"")
    path: str = field(init=False)

    def __post_init__(self):
        self.path = os.path.join(self.directory, LEDGER_FILE)

    def changed_underneath(self) -> bool:
        """True when the ledger is no longer the file read so far (nothing is read)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._offset > 0
        return bool(self._offset) and (
            st.st_ino != self._inode or st.st_size < self._offset or self._read_marks() != self._marks
        )

    def read(self) -> list[CommitRecord]:
        """Commits appended since the last call (from the start after :meth:`restart`)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if st.st_ino != self._inode:
            self._offset, self._inode = 0, st.st_ino
        if st.st_size <= self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(st.st_size - self._offset)
        end = data.rfind(b"\n") + 1  # a line still being appended waits for the next look
        self._offset += end
        self._marks = self._read_marks()
        return [
            r for r in (parse_commit(line, self.total) for line in data[:end].splitlines()) if r is not None
        ]

    def restart(self) -> None:
        """Read the ledger from its start at the next :meth:`read`."""
        self._offset, self._inode, self._marks = 0, None, (b"", b"")

    def _read_marks(self) -> tuple[bytes, bytes]:
        """The first and the last bytes read so far."""
        n = min(self._offset, _MARK)
        try:
            with open(self.path, "rb") as f:
                head = f.read(n)
                f.seek(self._offset - n)
                return head, f.read(n)
        except FileNotFoundError:
            return b"", b""
