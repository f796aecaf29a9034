"""The names in a job's output directory: one place that says what lives where.

::

    <output>/
      _job.json                   which job owns the directory (identity, name, spec, planned shards)
      _ledger.jsonl               one commit record per line, appended after the shard is in place
      _fit.json                   the fitted statistics of the job's fitted ops
      part-NNNNN.parquet          shard NNNNN, numbered in source order
      _quarantine/part-NNNNN.jsonl  the malformed input rows of shard NNNNN
      _service/                   the shard service's acknowledgements (recprep serve)
      .<name>.tmp-<random>        a file being written (renamed into place when complete)
"""

from __future__ import annotations

JOB_FILE = "_job.json"
LEDGER_FILE = "_ledger.jsonl"
FIT_FILE = "_fit.json"
QUARANTINE_DIR = "_quarantine"
#: Default state directory of the shard service (``recprep serve --state-dir``).
SERVICE_DIR = "_service"
SHARD_PREFIX = "part-"
#: Marks a file still being written: never read, swept when a run opens the directory.
TEMPORARY_MARK = ".tmp-"
#: The files a directory holds besides shards and quarantine (cleared by --overwrite).
CONTRACT_FILES = (JOB_FILE, LEDGER_FILE, FIT_FILE)


def shard_name(index: int) -> str:
    """File name of shard ``index``, e.g. ``part-00012.parquet``."""
    return f"{SHARD_PREFIX}{index:05d}.parquet"


def quarantine_name(index: int) -> str:
    """Path (relative to the output) of shard ``index``'s malformed rows."""
    return f"{QUARANTINE_DIR}/{SHARD_PREFIX}{index:05d}.jsonl"


def is_shard_file(name: str) -> bool:
    """A shard's file name as a commit record may carry it: directly in the output, no path."""
    return name.startswith(SHARD_PREFIX) and "/" not in name and "\\" not in name


def temporary_name(name: str, token: str) -> str:
    """The name ``name`` is written under before it is renamed into place."""
    return f".{name}{TEMPORARY_MARK}{token}"


def is_temporary(name: str) -> bool:
    return TEMPORARY_MARK in name
