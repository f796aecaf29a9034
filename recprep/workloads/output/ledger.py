"""The ledger: the commit records of a job output, in the form its store allows.

- **A local directory** has ``_ledger.jsonl``: one record per line, appended (and fsync'ed on
  request) after the shard's file was renamed into place. A line torn by a crash is cut off when
  the next run opens the output (:meth:`FileLedger.repair`); its shard is simply redone. A
  follower reads the complete lines added since its last look (:class:`LedgerTail`).
- **An object store** has no append. Its ledger is a folder, ``_ledger/``, with one object per
  committed shard, ``_ledger/part-NNNNN.json``, holding the same record. A commit is a
  conditional create (:meth:`ObjectLedger.commit`): the first run to commit a shard wins, and a
  second (a resumed run, a racing driver, a retried task) finds the record there and takes it,
  so a shard is never committed twice. The record is created only after the shard's object was
  PUT whole, so a reader that lists ``_ledger/`` sees only shards whose object is complete. A
  shard redone because its object went missing or changed has its record removed first
  (:meth:`ObjectLedger.drop`). Records are read back in shard order; a follower lists the folder
  (:class:`ObjectLedgerTail`).

Both read back through :func:`ledger_lines`, and :mod:`.records` parses each record.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ...errors import OutputError
from .layout import LEDGER_DIR, LEDGER_FILE, SHARD_PREFIX
from .records import CommitRecord, parse_commit
from .store import LocalStore, ObjectStore, Store

log = logging.getLogger(__name__)


def record_name(shard: int) -> str:
    """The object of shard ``shard``'s commit record in an object store's ledger."""
    return f"{LEDGER_DIR}/{SHARD_PREFIX}{shard:05d}.json"


class FileLedger:
    """``_ledger.jsonl`` in a local directory."""

    def __init__(self, store: LocalStore, fsync: bool = False):
        self.store = store
        self.fsync = fsync
        self.path = store.path(LEDGER_FILE)

    def lines(self) -> list[bytes]:
        """The ledger's lines in commit order (the last one possibly torn)."""
        try:
            return self.store.read(LEDGER_FILE).splitlines()
        except FileNotFoundError:
            return []

    def repair(self) -> int:
        """Cut a torn last line (a crash mid-append) off the ledger; the bytes cut."""
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return 0
        if size == 0:
            return 0
        with open(self.path, "rb+") as f:
            f.seek(max(size - 1, 0))
            if f.read(1) == b"\n":
                return 0
            f.seek(0)
            data = f.read()
            keep = data.rfind(b"\n") + 1
            f.truncate(keep)
            if self.fsync:
                os.fsync(f.fileno())
        log.warning(
            "%s: cut a torn last line (%d bytes) left by a crash; its shard is redone", self.path, size - keep
        )
        return size - keep

    def commit(self, record: CommitRecord) -> CommitRecord:
        """Append ``record``: from now on the shard is committed. Returns it."""
        with open(self.path, "a") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        return record

    def drop(self, shard: int) -> None:
        """Nothing to remove: a later line for the shard replaces its record."""

    def clear(self) -> None:
        self.store.remove(LEDGER_FILE)


class ObjectLedger:
    """``_ledger/part-NNNNN.json`` objects in an object store."""

    def __init__(self, store: ObjectStore, fsync: bool = False):
        self.store = store
        self.path = store.path(LEDGER_DIR)

    def lines(self) -> list[bytes]:
        """The records, one per committed shard, in shard order."""
        names = [f"{LEDGER_DIR}/{n}" for n in self.store.names(LEDGER_DIR) if n.endswith(".json")]
        found = self.store.read_many(names)  # one dropped meanwhile (a shard being redone) is absent
        return [found[n] for n in names if n in found]

    def repair(self) -> int:
        """Nothing is ever torn: an object is whole or absent."""
        return 0

    def commit(self, record: CommitRecord) -> CommitRecord:
        """Create shard ``record.shard``'s record unless a run committed it already; the record
        that stands (``record``, or the earlier one when it describes the same bytes). A record
        of other bytes is an OutputError: the same job writes the same bytes."""
        name = record_name(record.shard)
        if self.store.create(name, record.to_json().encode() + b"\n"):
            return record
        try:
            earlier = parse_commit(self.store.read(name))
        except FileNotFoundError:  # dropped between the two calls: try once more
            return self.commit(record)
        if earlier is None or earlier.sha256 != record.sha256 or earlier.file != record.file:
            raise OutputError(
                f"{self.store.path(name)}: shard {record.shard} is committed with other contents "
                "(another run of a different job on this output?)"
            )
        log.info("shard %d was committed by another run already; its record stands", record.shard)
        return earlier

    def drop(self, shard: int) -> None:
        """Remove shard ``shard``'s record (its object is gone or changed: the shard is redone)."""
        self.store.remove(record_name(shard))

    def clear(self) -> None:
        for name in self.store.names(LEDGER_DIR):
            self.store.remove(f"{LEDGER_DIR}/{name}")


Ledger = FileLedger | ObjectLedger


def ledger_of(store: Store, fsync: bool = False) -> Ledger:
    return FileLedger(store, fsync) if isinstance(store, LocalStore) else ObjectLedger(store, fsync)


def read_records(store: Store, total: int | None = None) -> dict[int, CommitRecord]:
    """Each committed shard's record, in commit order (the first record's position, the last
    one's contents: see ``records``)."""
    try:
        lines = ledger_of(store).lines()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        where = store.path(LEDGER_FILE if store.local else LEDGER_DIR)
        raise OutputError(f"{where}: unreadable ({exc.strerror or exc})") from None
    commits: dict[int, CommitRecord] = {}
    for line in lines:
        record = parse_commit(line, total)
        if record is not None:
            commits[record.shard] = record
    return commits


# -- following a ledger as it grows ------------------------------------------------------------
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


class ObjectLedgerTail:
    """Follows an object store's ``_ledger/`` folder: each :meth:`read` returns the records of
    the shards committed since the last one. One listing per look (:meth:`changed_underneath`
    lists, :meth:`read` uses that listing when it comes right after); a record that disappeared
    (``--overwrite``, or a shard being redone) is a change underneath."""

    def __init__(self, store: ObjectStore, total: int | None = None):
        self.store = store
        self.total = total
        self.path = store.path(LEDGER_DIR)
        self._seen: set[str] = set()
        self._listed: list[str] | None = None

    def _list(self) -> list[str]:
        return [n for n in self.store.names(LEDGER_DIR) if n.endswith(".json")]

    def changed_underneath(self) -> bool:
        self._listed = self._list()
        return not self._seen <= set(self._listed)

    def read(self) -> list[CommitRecord]:
        names, self._listed = (self._listed if self._listed is not None else self._list()), None
        new = [n for n in names if n not in self._seen]
        found = self.store.read_many([f"{LEDGER_DIR}/{n}" for n in new])
        out = []
        for name in new:
            data = found.get(f"{LEDGER_DIR}/{name}")
            if data is None:
                continue
            self._seen.add(name)
            record = parse_commit(data, self.total)
            if record is not None:
                out.append(record)
        return out

    def restart(self) -> None:
        self._seen.clear()
        self._listed = None


def follow(directory: str, total: int | None = None) -> LedgerTail | ObjectLedgerTail:
    """A follower of the ledger of the job output at ``directory`` (a path or a URI)."""
    from .store import open_store

    store = open_store(directory)
    if isinstance(store, LocalStore):
        return LedgerTail(store.location, total)
    return ObjectLedgerTail(store, total)
