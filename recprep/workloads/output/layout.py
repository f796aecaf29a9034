"""The names in a job's output directory: one place that says what lives where.

::

    <output>/
      _job.json                   which job owns the directory (identity, name, spec, planned shards)
      _ledger.jsonl               one commit record per line, appended after the shard is in place
      _ledger/part-NNNNN.json     (object stores, which cannot append) one commit record per shard
      _fit.json                   the fitted statistics of the job's fitted ops
      _accounting.json            the last run's accounting: bytes, busy seconds, energy, cost
      part-NNNNN.parquet          shard NNNNN, numbered in source order
      part-FFFFF-SSSSS.parquet    split SSSSS of the source's compressed file FFFFF, written while
                                  that file was decompressed once (``decode_once``): its number
                                  among the job's shards, in its commit record, is known only
                                  once the files before it are counted
      _quarantine/part-NNNNN.jsonl  the malformed input rows of shard NNNNN
      _service/                   the shard service's acknowledgements (recprep serve; in an object
                                  store too)
      _lock                       held by the run that writes the directory (who, since when)
      _errors/part-NNNNN.log      why shard NNNNN failed, with the traceback (its .fit.log: the fit)
      _errors/workers.log         what the embedded cluster's workers printed (other libraries' warnings)
      _index/                     plans, gzip indexes and frames written again of compressed inputs
                                  (sources.compressed): made once by the run that plans the job,
                                  read by every shard task
      .<name>.tmp-<random>        a file being written (renamed into place when complete)

recprep deletes and overwrites only names of this layout: a shard is ``part-`` and five or more
digits (or two such numbers joined by ``-``) and ``.parquet``, a quarantine file the same with
``.jsonl``, a temporary the mark below. Readers find a shard's file by its commit record.
"""

from __future__ import annotations

import re

JOB_FILE = "_job.json"
LEDGER_FILE = "_ledger.jsonl"
#: An object store's ledger: one object per committed shard (``ledger.ObjectLedger``).
LEDGER_DIR = "_ledger"
FIT_FILE = "_fit.json"
#: The last run's accounting (``recprep.isp_nodes.accounting``).
ACCOUNTING_FILE = "_accounting.json"
QUARANTINE_DIR = "_quarantine"
#: Default state directory of the shard service (``recprep serve --state-dir``).
SERVICE_DIR = "_service"
#: The lock the writing run holds (``writer.OutputLock``).
LOCK_FILE = "_lock"
#: Plans, indexes and frames of compressed inputs (``workloads.sources.compressed.IndexStore``).
INDEX_DIR = "_index"
#: Details of shards that failed (the error line names the file).
ERRORS_DIR = "_errors"
#: a session job's staging: the source's rows by key partition, and the plan of its shards
SESSIONS_DIR = "_sessions"
SHARD_PREFIX = "part-"
#: Marks a file still being written: never read, swept when a run opens the directory.
TEMPORARY_MARK = ".tmp-"
#: The files a directory holds besides shards and quarantine (cleared by --overwrite).
CONTRACT_FILES = (JOB_FILE, LEDGER_FILE, FIT_FILE, ACCOUNTING_FILE)


#: A shard's name: its number among the job's shards, or (file, split in the file) for a split
#: written before that number is known (``decode_once``)
ShardKey = int | tuple[int, int]


def _label(key: ShardKey) -> str:
    return f"{key:05d}" if isinstance(key, int) else f"{key[0]:05d}-{key[1]:05d}"


def shard_name(index: ShardKey) -> str:
    """File name of shard ``index``, e.g. ``part-00012.parquet`` (``part-00002-00013.parquet``:
    split 13 of the source's file 2)."""
    return f"{SHARD_PREFIX}{_label(index)}.parquet"


def quarantine_name(index: ShardKey) -> str:
    """Path (relative to the output) of shard ``index``'s malformed rows."""
    return f"{QUARANTINE_DIR}/{SHARD_PREFIX}{_label(index)}.jsonl"


_NUMBER = "[0-9]{5,}(-[0-9]{5,})?"
_SHARD = re.compile(rf"{SHARD_PREFIX}{_NUMBER}\.parquet")
_QUARANTINE = re.compile(rf"{SHARD_PREFIX}{_NUMBER}\.jsonl")
_ERROR_LOG = re.compile(rf"{SHARD_PREFIX}{_NUMBER}(\.fit)?\.log|workers\.log")
#: What the workers of ``recprep run``'s embedded cluster print (kept out of the progress bar).
WORKER_LOG = f"{ERRORS_DIR}/workers.log"


def is_shard_file(name: str) -> bool:
    """A shard's file name as recprep writes it (and a commit record may carry it): directly in
    the output, no path."""
    return _SHARD.fullmatch(name) is not None


def is_quarantine_file(name: str) -> bool:
    """A quarantine file's name inside ``QUARANTINE_DIR``."""
    return _QUARANTINE.fullmatch(name) is not None


def error_log_name(index: ShardKey, stage: str) -> str:
    """Path (relative to the output) of the details of shard ``index``'s failure in ``stage``
    (``transform`` or ``fit``)."""
    suffix = ".fit" if stage == "fit" else ""
    return f"{ERRORS_DIR}/{SHARD_PREFIX}{_label(index)}{suffix}.log"


def is_error_log(name: str) -> bool:
    """An error log's name inside ``ERRORS_DIR``."""
    return _ERROR_LOG.fullmatch(name) is not None


def temporary_name(name: str, token: str) -> str:
    """The name ``name`` is written under before it is renamed into place."""
    return f".{name}{TEMPORARY_MARK}{token}"


def is_temporary(name: str) -> bool:
    """A file recprep was writing (``temporary_name`` of one of its own names)."""
    base, mark, token = name.partition(TEMPORARY_MARK)
    if not (name.startswith(".") and mark and token):
        return False
    base = base[1:]
    return is_shard_file(base) or is_quarantine_file(base) or is_error_log(base) or base in CONTRACT_FILES
