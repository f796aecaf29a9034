"""The output contract: what a job's output directory holds, and the one reader and the one
writer of it.

- :mod:`.store`: where the bytes live (a local directory, an object store prefix);
- :mod:`.layout`: the names (``_job.json``, ``_ledger.jsonl``, ``_fit.json``, shards,
  quarantine, the shard service's state, temporaries);
- :mod:`.records`: the job record, the commit record and the feature roles every shard's schema
  carries, and the one parser of each;
- :mod:`.reader`: reading a job output (snapshot, or following the ledger as it grows);
- :mod:`.ledger`: the commit records as the store allows (appended lines, or one object per
  shard), and following them as they grow;
- :mod:`.lease`: the lock of an output in an object store;
- :mod:`.writer`: the commit protocol (shard in place, then its record in the ledger).

The data plane writes it, delivery to trainers reads it; nothing else parses these files.
"""

from __future__ import annotations

from .layout import FIT_FILE, JOB_FILE, LEDGER_FILE, QUARANTINE_DIR, SERVICE_DIR, WORKER_LOG, shard_name
from .reader import (
    LedgerTail,
    as_store,
    follow,
    read_commits,
    read_fit,
    read_job,
    read_shard,
    read_vocabulary_sizes,
)
from .records import FEATURES_KEY, CommitRecord, FeatureRoles, JobRecord, parse_roles
from .store import LocalStore, ObjectStore, Store, open_store
from .writer import OutputWriter, WrittenFile, check_writable, put_error_log, put_quarantine, put_shard

__all__ = [
    "FIT_FILE",
    "JOB_FILE",
    "LEDGER_FILE",
    "QUARANTINE_DIR",
    "SERVICE_DIR",
    "WORKER_LOG",
    "FEATURES_KEY",
    "CommitRecord",
    "FeatureRoles",
    "JobRecord",
    "LedgerTail",
    "LocalStore",
    "ObjectStore",
    "Store",
    "as_store",
    "follow",
    "open_store",
    "OutputWriter",
    "WrittenFile",
    "check_writable",
    "put_error_log",
    "put_quarantine",
    "put_shard",
    "read_commits",
    "read_fit",
    "read_job",
    "read_shard",
    "parse_roles",
    "read_vocabulary_sizes",
    "shard_name",
]
