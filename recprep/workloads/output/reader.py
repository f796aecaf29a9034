"""Reading a job output: the one reader of ``_job.json``, the ledger and ``_fit.json``, in a
local directory or an object store (``store``; every function takes the output's path or URI).

Everything that reads a job output goes through here: the driver resuming a run, a trainer
reading shards from a directory (``recprep.delivery.shards``), the shard service following a
running job (``recprep.delivery.service.committed``, with :func:`follow`) and ``recprep
train`` sizing its tables. Errors are :class:`~recprep.errors.OutputError` naming the directory
or the file; callers that speak to someone else (a trainer, a gRPC client) re-raise them as
their own errors with the same message.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ...errors import OutputError
from .layout import FIT_FILE, JOB_FILE, LEDGER_FILE
from .ledger import LedgerTail, ObjectLedgerTail, follow, read_records, record_name
from .records import CommitRecord, JobRecord, decode_fit_states, parse_job
from .store import Store, open_store, storage_error

__all__ = ["LedgerTail", "ObjectLedgerTail", "follow"]


def as_store(output: str | Store) -> Store:
    """The store of a job output given by its location (a path or a URI), or the store itself."""
    return open_store(output) if isinstance(output, str) else output


def read_job(directory: str | Store) -> JobRecord:
    """``_job.json`` of the job output ``directory`` (a path or a URI); OutputError naming what
    is missing or broken."""
    store = as_store(directory)
    if store.local and not os.path.isdir(store.location):
        raise OutputError(f"{store.location}: the job output directory does not exist")
    path = store.path(JOB_FILE)
    try:
        data = json.loads(store.read(JOB_FILE))
    except FileNotFoundError:
        if not store.local and not _bucket_exists(store):
            raise OutputError(f"{store.location}: its bucket does not exist") from None
        raise OutputError(f"{store.location}: not a recprep job output (no {JOB_FILE})") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: unreadable ({getattr(exc, 'strerror', None) or exc})") from None
    job = parse_job(data)
    if job is None:
        raise OutputError(f"{path}: not a recprep job file (no identity)")
    return job


def _bucket_exists(store: Store) -> bool:
    """Whether the bucket (container) of an object store output is there: True when the store
    cannot tell (no right to look, say)."""
    try:
        return bool(store.fs.exists(store.root.split("/", 1)[0]))
    except (OSError, ValueError):
        return True


def read_job_if_any(directory: str | Store) -> JobRecord | None:
    """The job record, or None when the directory holds no ``_job.json`` yet (a corrupt one is
    an error: it must not be taken for an empty directory and overwritten)."""
    store = as_store(directory)
    try:
        if not store.exists(JOB_FILE):
            return None
    except OSError as exc:
        raise OutputError(f"{store.path(JOB_FILE)}: unreadable ({exc.strerror or exc})") from None
    return read_job(store)


def read_commits(
    directory: str | Store, *, require_files: bool = True, total: int | None = None
) -> list[CommitRecord]:
    """The committed shards of ``directory`` in commit order (see ``records`` for the rules).

    ``require_files``: leave out records whose file is gone (the driver then redoes the shard; a
    trainer does not see it). ``total``: leave out shards outside ``[0, total)``."""
    store = as_store(directory)
    commits = read_records(store, total)
    if not require_files or not commits:
        return list(commits.values())
    try:
        present = set(store.names())
    except OSError as exc:
        raise OutputError(f"{store.location}: cannot list the job output ({exc.strerror or exc})") from None
    return [r for r in commits.values() if r.file in present]


class ShardMismatch(OutputError):
    """A committed shard whose file is gone, or holds other bytes than its record says (a run
    redoes it; a file that cannot be read, access denied say, is an OutputError alone)."""


def read_shard(directory: str | Store, record: CommitRecord, verify: bool = True) -> bytes:
    """The bytes of a committed shard, checked against the sha256 its commit record carries
    (``verify``); OutputError naming the file when it cannot be read, ShardMismatch when it is
    missing or does not match."""
    store = as_store(directory)
    path = store.path(record.file)
    try:
        payload = store.read(record.file)
    except FileNotFoundError:
        raise ShardMismatch(f"{path}: cannot read the committed shard (it is missing)") from None
    except OSError as exc:
        raise OutputError(f"{path}: cannot read the committed shard ({storage_error(exc)})") from None
    if verify and record.sha256 and hashlib.sha256(payload).hexdigest() != record.sha256:
        where = LEDGER_FILE if store.local else record_name(record.shard)
        raise ShardMismatch(f"{path}: content does not match its sha256 in {where}")
    return payload


def read_fit(directory: str | Store, identity: str) -> dict[tuple[int, str], Any] | None:
    """The fitted states of job ``identity``, or None when ``_fit.json`` is missing, unreadable or
    another job's (the fit pass then runs again)."""
    try:
        data = json.loads(as_store(directory).read(FIT_FILE))
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
