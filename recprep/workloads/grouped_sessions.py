"""Sessions of a source that already holds each key's events together and in time order
(``spec.source.session.grouped``): a log clustered by key, as RecD's logging writes it, or an
export sorted by key and time. Such a source needs no staging and no sort (``sessions``): every
shard is cut from one of the source's own splits, read where it lies.

The source's rows, all its splits one after another, are one sequence. A *boundary* is a row that
starts a session (``sessions.session_starts``: a new key, or the rule's gap or day), or the first
row of a split that holds no session start when the session running through it has more than
``rowsPerShard`` rows up to that split's end (**the only place a session is cut**: at the first
row of each split it covers whole, once it is longer than a shard). Shard ``i`` holds the rows
from the first boundary at or after split ``i``'s first row to the first boundary at or after
split ``i + 1``'s: the sessions that start in split ``i``, whole, the last one read on into the
next split. A split inside a session of at most ``rowsPerShard`` rows (one whose byte range
held fewer rows than it estimated) makes an empty shard.

A shard's task reads its split, then as little of its neighbours as it needs: the last rows of
the splits before it (the row before its first, whose key and time say whether its first row
starts a session, and its first session's history context: the key's events before it, up to the
longest history's ``k``, as ``sessions`` reads them), and the first rows of the splits after it
(the rest of its last session). A text source reads those as byte ranges of whole lines that
double until they hold enough (``TextSource.read_piece``); any other source reads the
neighbouring split whole. The shards depend only on the data, the splits and the spec: the same
bytes whatever the number of workers.

The declaration is checked. Within what a task reads: a key's events must be one run of rows,
in time order (an earlier time than its key's previous event fails the job naming the column
and the line). Across splits: each task returns its rows' keys (:class:`SplitKeys`) and the
driver (:class:`GroupingCheck`), once every shard has landed, fails the job when a key's events
are in two splits with other keys between them. The shards are committed by then, and kept; the
output remembers the failure (``NOT_GROUPED``), so that a later run of the same job, which would
not read those shards' keys again, fails at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import SourceError
from ..spec import SessionSpec
from .output.layout import SESSIONS_DIR
from .output.reader import as_store
from .sessions import KEY_RUN, SESSION_RUN, event_times, key_hashes, locator, one_chunk, session_starts
from .sources.base import ReadResult, Split

#: where a run that found the source not grouped says so, for a later run of the same job
NOT_GROUPED = f"{SESSIONS_DIR}/not-grouped.json"
#: bytes of a neighbour's first look: this many of the split's average rows (doubled as needed)
_FIRST_LOOK_ROWS = 64


@dataclass(frozen=True)
class SplitKeys:
    """The keys of one split's rows (64-bit hashes, ``ops.cross.keys_of``), for the driver's
    check that the source is grouped: its first and last key and all of them (sorted, unique)."""

    first: int
    last: int
    keys: np.ndarray

    @property
    def single(self) -> bool:
        return len(self.keys) == 1


class GroupingError(SourceError):
    """The source is not grouped by the session key, as ``grouped`` declares."""


class GroupingCheck:
    """The driver's check that no key's events are in two splits with another key between them:
    a key in splits ``a < b`` (two that hold it, with none between that does) is fine when it is
    ``a``'s last key and ``b``'s first, and every split between holds that key alone. All the
    splits' keys are sorted at once (16 bytes a key and split it is in). A split between whose
    keys are not known (its shard not landed yet, or committed by an earlier run) is not held
    against the pair, so a look at some of the splits never finds a fault that all of them would
    not: the driver looks while the shards land (:meth:`due`: at 8, 16, 32, ... splits, each key
    sorted about twice over all the looks), so that a source grouped per file but not across
    files fails once splits of both places have landed, and once more at the end."""

    #: Splits landed before the first look while the job runs; each later one waits for twice as many.
    FIRST_LOOK = 8

    def __init__(self, session: SessionSpec, where: Callable[[int, int], str]):
        self.session = session
        self.where = where  # (split, key) -> where the split's first event of the key is
        self.splits: dict[int, SplitKeys] = {}
        self._next = self.FIRST_LOOK

    def add(self, index: int, keys: SplitKeys | None) -> None:
        if keys is not None:
            self.splits[index] = keys

    def due(self) -> bool:
        """Whether the splits landed since the last look are enough for another."""
        return len(self.splits) >= self._next

    def check(self) -> None:
        """Look at the splits known so far; GroupingError naming both places of a key that is
        not grouped."""
        self._next = 2 * max(len(self.splits), self.FIRST_LOOK // 2)
        if not self.splits:
            return
        order = sorted(self.splits)
        keys = np.concatenate([self.splits[i].keys for i in order])
        holder = np.repeat(np.array(order), [len(self.splits[i].keys) for i in order])
        by_key = np.argsort(keys, kind="stable")  # a key's splits in split order
        keys, holder = keys[by_key], holder[by_key]
        for j in np.flatnonzero(keys[1:] == keys[:-1]).tolist():  # one pair per boundary, if grouped
            self._pair(int(keys[j]), int(holder[j]), int(holder[j + 1]))

    def _pair(self, key: int, a: int, b: int) -> None:
        ok = self.splits[a].last == key and self.splits[b].first == key
        for between in range(a + 1, b):
            known = self.splits.get(between)
            if not ok:
                break
            ok = known is None or (known.single and known.first == key)
        if not ok:
            raise GroupingError(
                f"spec.source.session.grouped: the source is not grouped by {self.session.key!r}: the key "
                f"at {self.where(a, key)} has events again at {self.where(b, key)}, with other keys "
                "between them; leave grouped out and the job groups the events itself"
            )


def remember(directory: str, identity: str, error: GroupingError, fsync: bool) -> None:
    """Keep ``error`` in the output: a later run of the same job, which would not read the
    committed shards' keys again, fails at once with it (:func:`recall`)."""
    doc = {"identity": identity, "error": str(error)}
    as_store(directory).put(NOT_GROUPED, json.dumps(doc).encode(), fsync)


def recall(directory: str, identity: str) -> None:
    """GroupingError when an earlier run of the same job found its source not grouped."""
    store = as_store(directory)
    try:
        doc = json.loads(store.read(NOT_GROUPED))
    except (FileNotFoundError, ValueError):
        return
    if doc.get("identity") == identity:
        raise GroupingError(f"{doc['error']} (found by an earlier run: {store.path(NOT_GROUPED)})")


@dataclass
class _Rows:
    """Rows of the source sequence: their table and their keys and times."""

    tables: list[pa.Table]  #: one after another (put together once, by :meth:`table`)
    keys: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def empty_like(cls, table: pa.Table) -> _Rows:
        return cls([table.slice(0, 0)], np.empty(0, np.uint64), np.empty(0, np.int64))

    def slice(self, a: int, b: int | None = None) -> _Rows:
        b = len(self) if b is None else b
        tables, offset = [], 0
        for t in self.tables:
            lo, hi = max(a - offset, 0), min(b - offset, t.num_rows)
            if hi > lo or not tables and t is self.tables[-1]:
                tables.append(t.slice(lo, max(hi - lo, 0)))
            offset += t.num_rows
        return _Rows(tables, self.keys[a:b], self.times[a:b])

    def table(self) -> pa.Table:
        """The rows as one table, each column in one chunk."""
        tables = [t for t in self.tables if t.num_rows] or self.tables[:1]
        return tables[0] if len(tables) == 1 else one_chunk(pa.concat_tables(tables))


def _concat(parts: list[_Rows]) -> _Rows:
    parts = [p for p in parts if len(p)] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    return _Rows(
        [t for p in parts for t in p.tables],
        np.concatenate([p.keys for p in parts]),
        np.concatenate([p.times for p in parts]),
    )


class GroupedSessionSource:
    """A source whose shards are its own splits, each read with the neighbours' rows its
    sessions need (see the module docstring)."""

    def __init__(self, source, session: SessionSpec, rows_per_shard: int):
        self.inner = source
        self.session = session
        self.rows_per_shard = rows_per_shard
        self.roles = source.roles
        #: events of history a shard's first session reads before it (set once the plan is known)
        self.context = 0
        self._splits: list[Split] | None = None

    def schema(self) -> pa.Schema:
        return self.inner.schema()

    def splits(self, rows_per_shard: int) -> list[Split]:
        self._splits = self.inner.splits(rows_per_shard)
        return self._splits

    def raw_bytes(self, split: Split):
        raw = getattr(self.inner, "raw_bytes", None)
        return raw(split) if raw else None

    def locate(self, split: Split, bad: list, row: int) -> str:
        return locator(self.inner, split, bad)(row)

    def where_key(self, index: int, key: int) -> str:
        """Where split ``index``'s first event of ``key`` (its hash) is, with the key's value, for
        the driver's error (it reads the split again: only a failing job pays for it)."""
        split = self._all()[index]
        read = self.inner.read(split)
        hit = np.flatnonzero(key_hashes(read.table, self.session, _somewhere(split)) == np.uint64(key))
        if not len(hit):
            return f"{split.path} [{split.start}:{split.stop}]"
        value = read.table[self.session.key][int(hit[0])].as_py()
        return f"{locator(self.inner, split, read.bad)(int(hit[0]))} ({self.session.key} {value!r})"

    # -- the session rule -----------------------------------------------------------------------
    def _starts(self, rows: _Rows, prev: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(new key, new session) of each of ``rows`` (``sessions.session_starts``), following
        the row ``prev`` (key, time), or beginning the source (None)."""
        if prev is None:
            return session_starts(rows.keys, rows.times, self.session)
        keys = np.concatenate([np.array([prev[0]], np.uint64), rows.keys])
        times = np.concatenate([np.array([prev[1]], np.int64), rows.times])
        new_key, new_session = session_starts(keys, times, self.session)
        return new_key[1:], new_session[1:]

    # -- reading the sequence -------------------------------------------------------------------
    def _all(self) -> list[Split]:
        if self._splits is None:
            self._splits = self.inner.splits(self.rows_per_shard)
        return self._splits

    def _rows(self, split: Split, table: pa.Table, where: Callable[[int], str]) -> _Rows:
        return _Rows([table], key_hashes(table, self.session, where), event_times(table, self.session, where))

    def _neighbour(self, split: Split, table: pa.Table) -> _Rows:
        """Rows of a piece of a neighbouring split. An event without a key or time there fails
        the task as the split's own read does, naming its line: the split is read again whole
        for that (only a failing job pays for it)."""
        try:
            return self._rows(split, table, _somewhere(split))
        except SourceError:
            whole = self.inner.read(split)
            self._rows(split, whole.table, locator(self.inner, split, whole.bad))  # raises, with the line
            raise

    def _piece(self, split: Split, nbytes: int, tail: bool, decode: frozenset[str]) -> tuple[_Rows, bool]:
        """Rows of the first (last) ``nbytes`` bytes of a neighbouring split, and whether that is
        all of it."""
        size = split.stop - split.start
        read_piece = getattr(self.inner, "read_piece", None)
        if read_piece is not None and nbytes < size:
            table, whole = read_piece(split, nbytes, tail, decode), False
        else:
            table, whole = self.inner.read(split, decode).table, True
        return self._neighbour(split, table), whole

    def _read_around(self, split: Split, decode: frozenset[str]):
        """The split's own read, and the first looks at its neighbours (``(rows, whole)``, or
        None): a text source reads them with the split, in one read of the file (for a
        compressed file, one decompression), when they are next to it in the same file."""
        read_around = getattr(self.inner, "read_around", None)
        splits = self._all()
        i = split.index
        prev = splits[i - 1] if i > 0 else None
        after = splits[i + 1] if i + 1 < len(splits) else None
        if prev is not None and (prev.path != split.path or prev.stop != split.start):
            prev = None
        if after is not None and (after.path != split.path or after.start != split.stop):
            after = None
        if read_around is None or (prev is None and after is None):
            return self.inner.read(split, decode), None, None, None
        before_bytes = self._first_look(prev, self.context + 1) if prev else 0
        after_bytes = self._first_look(after, 0) if after else 0
        own, back, ahead, together = read_around(split, prev, before_bytes, after, after_bytes, decode)
        looks = []
        for neighbour, table, nbytes in ((prev, back, before_bytes), (after, ahead, after_bytes)):
            if neighbour is None:
                looks.append(None)
                continue
            rows = self._neighbour(neighbour, table)
            looks.append((rows, nbytes >= neighbour.stop - neighbour.start))
        return own, looks[0], looks[1], together

    def _first_look(self, split: Split, rows: int) -> int:
        """Bytes of a neighbour's first look: about ``rows`` (at least ``_FIRST_LOOK_ROWS``) rows
        at the split's own average size."""
        per_row = (split.stop - split.start) / max(split.est_rows, 1)
        return max(int(per_row * max(rows, _FIRST_LOOK_ROWS)), 4096)

    def _before(self, index: int, own: _Rows, decode: frozenset[str], looked) -> tuple[_Rows, bool]:
        """The rows before split ``index``'s first, as many as :meth:`_enough` needs, and whether
        they reach the source's first row: each earlier split's last bytes (``looked``: the first
        look at split ``index - 1``, read with the split), doubled while not enough, then the
        split before it."""
        splits = self._all()
        got: list[_Rows] = []  # earliest first
        for j in range(index - 1, -1, -1):
            nbytes = self._first_look(splits[j], self.context + 1)
            while True:
                if j == index - 1 and looked is not None:
                    (piece, whole), looked = looked, None
                else:
                    piece, whole = self._piece(splits[j], nbytes, True, decode)
                rows, at_start = _concat([piece, *got]), whole and j == 0
                enough = self._enough(rows, own, at_start)
                if whole or enough:
                    break
                nbytes *= 2
            got.insert(0, piece)
            if enough:
                return rows, at_start
        return (_concat(got) if got else _Rows.empty_like(own.table)), True

    def _enough(self, back: _Rows, own: _Rows, at_start: bool) -> bool:
        """Whether ``back`` (rows just before the split's own) holds all a shard needs: the row
        before its first, the start of the session running into it (when it holds no start of its
        own), and the history context of its first session (``context`` events of its key
        before that session's start, or the key's first event)."""
        if at_start:
            return True
        nb = len(back)
        if not nb:
            return False
        new_key, new_session = self._starts(_concat([back, own]), None)  # back[0]: not known
        own_starts = np.flatnonzero(new_session[nb:])
        if len(own_starts):
            anchor = nb + int(own_starts[0])
        else:
            found = np.flatnonzero(new_session[1:nb])
            if not len(found):
                return False
            anchor = int(found[-1]) + 1
            if nb - anchor + len(own) <= self.rows_per_shard:
                return True  # the session is not cut: the shard holds none of this split's rows
        if anchor - self.context >= 0:
            return True
        return bool(new_key[1 : anchor + 1].any())  # the key's first event is in ``back``

    def _ahead(
        self, index: int, last: tuple[int, int], run: int, decode: frozenset[str], looked
    ) -> tuple[_Rows | None, bool]:
        """The rows after split ``index`` that its shard takes: the next splits' first rows up to
        their first boundary (``last``: the split's last row, key and time; ``run``: rows of the
        session running at its end, so far; ``looked``: the first look at split ``index + 1``,
        read with the split), and whether they are the first rows of that look."""
        splits = self._all()
        got: list[_Rows] = []
        only_looked = looked is not None
        for j in range(index + 1, len(splits)):
            nbytes = self._first_look(splits[j], 0)
            while True:
                if j == index + 1 and looked is not None:
                    (piece, whole), looked = looked, None
                else:
                    only_looked = False
                    piece, whole = self._piece(splits[j], nbytes, False, decode)
                starts = np.flatnonzero(self._starts(piece, last)[1])
                if len(starts) or whole:
                    break
                nbytes *= 2
            if len(starts):
                got.append(piece.slice(0, int(starts[0])))
                break
            if run + len(piece) > self.rows_per_shard:
                break  # split j is cut at its first row: the session is longer than a shard
            got.append(piece)
            run += len(piece)
            if len(piece):
                last = (int(piece.keys[-1]), int(piece.times[-1]))
        return (_concat(got) if got else None), only_looked

    # -- a shard --------------------------------------------------------------------------------
    def read(self, split: Split, decode_hex: frozenset[str] = frozenset()) -> ReadResult:
        """Shard ``split.index``: its context rows, then its own (see the module docstring),
        with the hidden key run and session columns; its keys for the driver's check."""
        own_read, before, after, together = self._read_around(split, decode_hex)
        where = locator(self.inner, split, own_read.bad)
        own = self._rows(split, own_read.table, where)
        runs = self._check_order(own, where)
        back, at_start = (
            self._before(split.index, own, decode_hex, before)
            if split.index > 0
            else (_Rows.empty_like(own_read.table), True)
        )
        nb = len(back)
        if nb and len(own) and own.keys[0] == back.keys[-1] and own.times[0] < back.times[-1]:
            raise self._disorder(where(0), own.times[0], back.times[-1])
        rows = _concat([back, own])
        new_key, new_session = self._starts(rows, None)
        own_starts = np.flatnonzero(new_session[nb:])
        if len(own_starts):
            first = nb + int(own_starts[0])
        else:  # no session starts in the split: cut at its first row, or no row of its own
            running = np.flatnonzero(new_session[:nb])
            begun = int(running[-1]) if len(running) else 0
            if nb - begun + len(own) <= self.rows_per_shard:
                empty = own_read.table.slice(0, 0)
                return ReadResult(self._hidden(empty, np.zeros(0, bool), np.zeros(0, bool)), own_read.bad)
            first = nb
        # the context: the key's events before the shard's first session, at most ``context``
        key_start = int(np.flatnonzero(new_key[: first + 1])[-1])
        session_start = int(np.flatnonzero(new_session[: first + 1])[-1])
        begin = max(key_start, session_start - self.context) if self.context else first
        last = (int(rows.keys[-1]), int(rows.times[-1]))
        running = len(rows) - int(np.flatnonzero(new_session)[-1])
        ahead, only_looked = self._ahead(split.index, last, running, decode_hex, after)
        shard = rows.slice(begin)
        flags_key, flags_session = new_key[begin:], new_session[begin:]
        taken = len(ahead) if ahead is not None else 0
        if taken:
            ak, asess = self._starts(ahead, last)
            shard = _concat([shard, ahead])
            flags_key = np.concatenate([flags_key, ak])
            flags_session = np.concatenate([flags_session, asess])
        looked_back = len(before[0]) if before is not None else 0
        if together is not None and nb == looked_back and (only_looked or not taken):
            # the rows before, the split's and the rows after that the shard takes are one run of
            # the table read with the neighbours' first looks: a slice of it, no copy
            table = together.slice(begin, len(rows) + taken - begin)
        else:
            table = shard.table()
        table = self._hidden(table, flags_key, flags_session)
        keys = SplitKeys(int(own.keys[0]), int(own.keys[-1]), np.unique(own.keys[runs])) if len(own) else None
        return ReadResult(table, own_read.bad, own_read.nulled, context=first - begin, keys=keys)

    def _hidden(self, table: pa.Table, new_key: np.ndarray, new_session: np.ndarray) -> pa.Table:
        """``table`` with the hidden key run and session columns a session read carries."""
        key_run = np.cumsum(new_key, dtype=np.int32)
        session_run = np.cumsum(new_session, dtype=np.int32)
        return table.append_column(KEY_RUN, pa.array(key_run)).append_column(
            SESSION_RUN, pa.array(session_run)
        )

    def _check_order(self, rows: _Rows, where: Callable[[int], str]) -> np.ndarray:
        """A key's events one run of rows, in time order, within what one read holds; the rows
        where its runs begin."""
        if not len(rows):
            return np.empty(0, np.int64)
        new_key = np.ones(len(rows), bool)
        new_key[1:] = rows.keys[1:] != rows.keys[:-1]
        back = np.flatnonzero(~new_key[1:] & (rows.times[1:] < rows.times[:-1])) + 1
        if len(back):
            r = int(back[0])
            raise self._disorder(where(r), rows.times[r], rows.times[r - 1])
        firsts = np.flatnonzero(new_key)
        run_keys = rows.keys[firsts]
        order = np.argsort(run_keys, kind="stable")  # a key's runs in row order
        again = np.flatnonzero(run_keys[order][1:] == run_keys[order][:-1]) + 1
        if len(again):  # the first run whose key had a run before it, and that run
            j = int(again[np.argmin(order[again])])
            a, b = int(order[j - 1]), int(order[j])
            raise GroupingError(
                f"{where(int(firsts[b]))}: spec.source.session.grouped: the source is not grouped by "
                f"{self.session.key!r}: this key's events also come before, at {where(int(firsts[a]))}, "
                "with other keys between them; leave grouped out and the job groups the events itself"
            )
        return firsts

    def _disorder(self, here: str, time: int, previous: int) -> GroupingError:
        return GroupingError(
            f"{here}: spec.source.session.grouped: column {self.session.time!r} goes back in time "
            f"({int(time)} after {int(previous)}) within one key's events; a grouped source holds each "
            "key's events in time order (leave grouped out and the job sorts them)"
        )


def _somewhere(split: Split) -> Callable[[int], str]:
    """Where a row of a neighbouring split's piece is, for an error: the split's range (its own
    task names the line)."""
    return lambda n: f"{split.path} [{split.start}:{split.stop}]"


__all__ = ["GroupedSessionSource", "GroupingCheck", "GroupingError", "SplitKeys", "recall", "remember"]
