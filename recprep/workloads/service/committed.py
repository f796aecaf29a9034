"""A job's output directory, followed while the driver commits shards into it.

``_job.json`` gives the job's identity and its planned shard count (``shards``, written by the
driver before any shard); ``_ledger.jsonl`` gets one line per committed shard, appended after
the shard file was renamed into place. :class:`CommittedShards` reads the ledger's complete lines
as they appear (a line still being written, without its newline, waits for the next look) and
wakes the streams waiting for a shard. The job is *complete* when every planned shard is
committed. A job replaced by a different one (``recprep run --overwrite``) fails every waiting
stream with a message saying so.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass

from ..ledger import FIT_FILE, JOB_FILE, LEDGER_FILE
from .errors import ShardServiceError

log = logging.getLogger(__name__)
_MARK = 256  #: bytes compared at both ends of what was read, to notice a rewritten ledger


@dataclass(frozen=True)
class Committed:
    shard: int
    file: str
    rows: int
    sha256: str | None


def read_job(directory: str) -> dict:
    """``_job.json`` of a recprep job output, checked; ShardServiceError naming the file otherwise."""
    if not os.path.isdir(directory):
        raise ShardServiceError(f"{directory}: the job output directory does not exist")
    path = os.path.join(directory, JOB_FILE)
    try:
        with open(path) as f:
            job = json.load(f)
    except FileNotFoundError:
        raise ShardServiceError(f"{directory}: not a recprep job output (no {JOB_FILE})") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardServiceError(f"{path}: unreadable ({exc})") from None
    if not isinstance(job, dict) or not isinstance(job.get("identity"), str):
        raise ShardServiceError(f"{path}: not a recprep job file (no identity)")
    shards = job.get("shards")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 0:
        raise ShardServiceError(
            f"{path}: no planned shard count ('shards'; written by recprep run since the shard service "
            "exists): run the job again with --overwrite")
    return job


def read_vocabulary_sizes(directory: str, identity: str) -> dict[str, int]:
    """Sizes of the vocabularies fitted for the job ``identity`` (categorify), by
    ``"<step>:<column>"`` as ``_fit.json`` keys its states; {} without a fit file of that job."""
    try:
        with open(os.path.join(directory, FIT_FILE)) as f:
            fit = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    states = fit.get("states") if isinstance(fit, dict) and fit.get("identity") == identity else None
    if not isinstance(states, dict):
        return {}
    return {key: len(v["vocabulary"]) for key, v in states.items()
            if isinstance(v, dict) and isinstance(v.get("vocabulary"), list)}


class CommittedShards:
    """The committed shards of one job output, refreshed by :meth:`refresh` (a poller thread
    calls it every ``poll_interval`` seconds once :meth:`start` ran)."""

    def __init__(self, directory: str, poll_interval: float = 0.2):
        self.directory = directory
        job = read_job(directory)
        self.identity: str = job["identity"]
        self.name: str = str(job.get("name", "?"))
        self.total: int = job["shards"]
        #: the job's spec as the driver wrote it (what trainers size their tables from)
        self.spec: dict | None = job.get("spec") if isinstance(job.get("spec"), dict) else None
        self.poll_interval = poll_interval
        self.entries: dict[int, Committed] = {}
        self.order: list[int] = []  #: shard indices in commit order (append-only)
        self.error: str | None = None  #: set when the output was replaced by a different job
        self.changed = threading.Condition()
        self._ledger = os.path.join(directory, LEDGER_FILE)
        self._offset = 0
        self._inode: int | None = None
        self._marks = (b"", b"")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    @property
    def complete(self) -> bool:
        return len(self.entries) == self.total

    def path(self, shard: int) -> str:
        return os.path.join(self.directory, self.entries[shard].file)

    def refresh(self) -> bool:
        """Read what the driver appended since the last look; True when a shard was added."""
        try:
            st = os.stat(self._ledger)
        except FileNotFoundError:
            st = None
        with self.changed:
            if self.error:
                return False
            if st is None or st.st_ino != self._inode or st.st_size < self._offset or not self._unchanged():
                if self._offset and not self._same_job():
                    self.changed.notify_all()
                    return False
                self._offset, self._inode = 0, st.st_ino if st else None
            if st is None or st.st_size == self._offset:
                return False
            with open(self._ledger, "rb") as f:
                f.seek(self._offset)
                data = f.read(st.st_size - self._offset)
            end = data.rfind(b"\n") + 1  # a line still being appended waits for the next look
            self._offset += end
            self._marks = self._read_marks()
            added = False
            for line in data[:end].splitlines():
                entry = self._entry(line)
                if entry is not None and entry.shard not in self.entries:
                    self.entries[entry.shard] = entry
                    self.order.append(entry.shard)
                    added = True
            if added:
                self.changed.notify_all()
            return added

    def _read_marks(self) -> tuple[bytes, bytes]:
        """The first and the last bytes read so far: a ledger removed and written anew (maybe
        under the same inode number, maybe longer already) no longer starts and continues so."""
        n = min(self._offset, _MARK)
        try:
            with open(self._ledger, "rb") as f:
                head = f.read(n)
                f.seek(self._offset - n)
                return head, f.read(n)
        except FileNotFoundError:
            return b"", b""

    def _unchanged(self) -> bool:
        return not self._offset or self._read_marks() == self._marks

    def _entry(self, line: bytes) -> Committed | None:
        try:
            e = json.loads(line)
            shard, file, rows = e["shard"], e["file"], e["rows"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            return None  # a line torn by a crashed driver: that shard is committed again on resume
        if not (isinstance(shard, int) and 0 <= shard < self.total and isinstance(rows, int)
                and isinstance(file, str) and "/" not in file and file.startswith("part-")):
            log.warning("%s: ignoring ledger line %r", self._ledger, line[:200])
            return None
        return Committed(shard, file, rows, e.get("sha256"))

    def _same_job(self) -> bool:
        """Called when the ledger shrank or was replaced: still the same job (same bytes)?"""
        try:
            job = read_job(self.directory)
        except ShardServiceError as exc:
            self.error = f"{self.directory}: the job output was removed or replaced ({exc})"
            return False
        if job["identity"] != self.identity:
            self.error = (f"{self.directory}: the job output was replaced by another job "
                          f"({job.get('name')!r}, identity {job['identity'][:12]}); restart the shard server")
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
                log.warning("%s: %s", self._ledger, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
