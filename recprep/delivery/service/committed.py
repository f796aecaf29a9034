"""A job's output (a directory or an object store prefix), followed while the driver commits
shards into it.

``_job.json`` gives the job's identity and its planned shard count (``shards``, written by the
driver before any shard); the ledger gets one record per committed shard, recorded after the
shard was put in place whole. :class:`CommittedShards` reads the new records as they appear
(through the output contract's follower, :func:`~recprep.workloads.output.follow`) and wakes the
streams waiting for a shard. The job is *complete* when every planned shard is
committed. A job replaced by a different one (``recprep run --overwrite``) fails every waiting
stream with a message saying so.
"""

from __future__ import annotations

import logging
import threading

from ...errors import OutputError
from ...workloads.output import JOB_FILE, CommitRecord, JobRecord, follow, open_store, read_job
from .errors import ShardServiceError

log = logging.getLogger(__name__)

#: Seconds between two looks at an object store's ledger, at least.
OBJECT_POLL = 1.0


def read_served_job(directory: str) -> JobRecord:
    """The job record of an output the service can serve (one with a planned shard count);
    ShardServiceError naming the directory or the file otherwise."""
    try:
        store = open_store(directory)
        job = read_job(store)
    except OutputError as exc:
        raise ShardServiceError(str(exc)) from None
    if job.shards is None:
        raise ShardServiceError(
            f"{store.path(JOB_FILE)}: no planned shard count ('shards'; written by recprep run "
            "since the shard service exists): run the job again with --overwrite"
        )
    return job


class CommittedShards:
    """The committed shards of one job output, refreshed by :meth:`refresh` (a poller thread
    calls it every ``poll_interval`` seconds once :meth:`start` ran)."""

    def __init__(self, directory: str, poll_interval: float = 0.2):
        self.directory = directory
        self.store = open_store(directory)
        job = read_served_job(directory)
        self.identity: str = job.identity
        self.name: str = job.name
        self.total: int = job.shards
        #: the job's spec as the driver wrote it (what trainers size their tables from)
        self.spec: dict | None = job.spec
        # an object store is listed at each look: at most once a second (each LIST is billed)
        self.poll_interval = poll_interval if self.store.local else max(poll_interval, OBJECT_POLL)
        #: each committed shard's latest record (see the output contract's rules)
        self.entries: dict[int, CommitRecord] = {}
        self.order: list[int] = []  #: shard indices in commit order (append-only)
        self.error: str | None = None  #: set when the output was replaced by a different job
        self.changed = threading.Condition()
        self._tail = follow(directory, total=self.total)
        #: where the ledger is, for messages
        self.ledger_path: str = self._tail.path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    @property
    def complete(self) -> bool:
        return len(self.entries) == self.total

    def path(self, shard: int) -> str:
        return self.store.path(self.entries[shard].file)

    def refresh(self) -> bool:
        """Read what the driver appended since the last look; True when a shard was added."""
        with self.changed:
            if self.error:
                return False
            if self._tail.changed_underneath():
                if not self._same_job():
                    self.changed.notify_all()
                    return False
                self._tail.restart()
            added = False
            for record in self._tail.read():
                if record.shard not in self.entries:
                    self.order.append(record.shard)
                    added = True
                self.entries[record.shard] = record
            if added:
                self.changed.notify_all()
            return added

    def _same_job(self) -> bool:
        """Called when the ledger shrank or was replaced: still the same job (same bytes)?"""
        try:
            job = read_served_job(self.directory)
        except ShardServiceError as exc:
            self.error = f"{self.directory}: the job output was removed or replaced ({exc})"
            return False
        if job.identity != self.identity:
            self.error = (
                f"{self.directory}: the job output was replaced by another job "
                f"({job.name!r}, identity {job.identity[:12]}); restart the shard server"
            )
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="recprep-ledger-follower", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.refresh()
            except OSError as exc:  # a transient read error: try again at the next look
                log.warning("%s: %s", self._tail.path, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
