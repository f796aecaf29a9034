"""Sessions (``spec.source.session``, RecD): shards that hold whole sessions, each in time order.

A session is a run of one key's events (a user's) in time order: rule ``gap`` cuts a key's events
where two consecutive events are more than ``gap`` seconds apart; rule ``day`` cuts them at each
UTC calendar day. A session job groups before it fits and transforms:

1. **stage** (one task per source split of ``STAGE_SHARDS`` shards' rows): read the split, hash
   each row's key (``ops.cross.keys_of``: an integer's bit pattern, a string's FNV-1a 64) with
   ``mix64`` into one of ``P`` partitions, and write the split's rows of each partition as one
   Arrow IPC piece, with two columns added: the key's 64-bit hash and the time as int64 seconds;
   a split's pieces go one after another into one file, ``_sessions/staged/s<split>.arrows`` in
   the output, and the task returns where each is. Malformed rows go to the split's quarantine
   file, as in any job. ``P = ceil(estimated rows / (rowsPerShard * PARTITION_FILL *
   SHARDS_PER_PARTITION))``: every key's events, hence its history, are in one partition, and a
   partition makes about ``SHARDS_PER_PARTITION`` shards. Staging makes splits x partitions
   pieces; the two sizes keep that product ``STAGE_SHARDS * SHARDS_PER_PARTITION`` times below
   one piece per shard and partition (a 1.7M-row log in 16,384-row shards made 9,800 pieces of
   about 170 rows each, a file each, and staging cost ten times the transform).
2. **cut** (one task per partition): read the partition's pieces (in split order, a byte range
   of each split's file), sort by (key hash, time) with a stable sort (ties keep source order),
   find the sessions, and cut the sorted rows into shards: a shard takes whole sessions while it
   holds at most ``rowsPerShard`` rows; a session of more than ``rowsPerShard`` rows starts a
   shard and is cut every ``rowsPerShard`` rows of its time order (the only case where a session
   spans shards). Each shard's rows are
   written as ``_sessions/p<P>/r<start>.arrow``, preceded by the first key's earlier events its
   history needs: the rest of a session cut by the shard's start, and up to ``context`` (the
   longest history's ``k``) events before that session; they carry each row's key run and
   session ordinal as hidden columns. Shards are numbered partition by partition, in order.
3. **read** (the fit and transform tasks): a shard's file, as the cut wrote it. The plan drops
   the context rows and the hidden columns.

Everything depends only on the data and the spec: the same shards, byte for byte, whatever the
number of workers. The plan of step 2 is kept in ``_sessions/plan.json`` (a resumed run reuses it);
the pieces are removed once every shard is committed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from ..errors import SourceError, SpecError
from ..spec import SessionSpec
from .ops.cross import keys_of
from .ops.hashing import mix64
from .output import put_quarantine
from .output.layout import SESSIONS_DIR
from .output.reader import as_store
from .sources.base import ReadResult, Split

PLAN_FILE = f"{SESSIONS_DIR}/plan.json"
#: partitions are sized for this fraction of SHARDS_PER_PARTITION shards, so few make one more
PARTITION_FILL = 0.8
#: shards a partition makes, about: its cut holds that many shards' rows at once
SHARDS_PER_PARTITION = 4
#: shards' rows in one staging task's source split: its task holds them at once
STAGE_SHARDS = 4
#: hidden columns of a staged piece and of a session read
KEY_HASH, TIME = "__session_key", "__session_time"
KEY_RUN, SESSION_RUN = "__key_run", "__session_run"
HIDDEN = (KEY_HASH, TIME, KEY_RUN, SESSION_RUN)
_DAY = 86_400
#: salt of the partition hash (apart from any hash a transform makes of the same key)
_SALT = 0x5E55
#: the folder of the staged splits' files
STAGE_DIR = "staged"
#: a shard file's schema metadata: its context rows, and the sorted row it stops before
_CONTEXT, _STOP = b"recprep.context", b"recprep.stop"


@dataclass(frozen=True)
class SessionSplit:
    """One shard of a session job: rows ``[start, stop)`` of partition ``partition`` sorted, and
    before them the first key's earlier rows its history reads (see the module docstring)."""

    index: int
    partition: int
    start: int
    stop: int
    context: int = 0
    header: bool = False

    @property
    def est_rows(self) -> int:
        return self.stop - self.start

    @property
    def path(self) -> str:
        return f"{SESSIONS_DIR}/{partition_dir(self.partition)}"

    def describe(self) -> dict:
        return {"path": self.path, "start": self.start, "stop": self.stop}


def partition_dir(p: int) -> str:
    return f"p{p:05d}"


def _is_partition(name: str) -> bool:
    return name[:1] == "p" and name[1:].isdigit()


def stage_name(split: int) -> str:
    """The file of a source split's pieces: an Arrow IPC file per partition, one after another."""
    return f"{SESSIONS_DIR}/{STAGE_DIR}/s{split:05d}.arrows"


def shard_name(p: int, start: int) -> str:
    """The file of the shard whose rows start at sorted row ``start`` of partition ``p``."""
    return f"{SESSIONS_DIR}/{partition_dir(p)}/r{start:010d}.arrow"


def partitions_for(est_rows: int, rows_per_shard: int) -> int:
    return max(1, math.ceil(est_rows / (rows_per_shard * PARTITION_FILL * SHARDS_PER_PARTITION)))


# -- the columns a session is made of ---------------------------------------------------------------
def check_schema(session: SessionSpec, schema: pa.Schema) -> None:
    """SpecError naming the field when the key or time column is missing or of a wrong type."""
    for what, name in (("key", session.key), ("time", session.time)):
        if name not in schema.names:
            raise SpecError(
                f"spec.source.session.{what}: no column {name!r}; columns are: {', '.join(schema.names)}"
            )
    key_type = schema.field(session.key).type
    if pa.types.is_dictionary(key_type):
        key_type = key_type.value_type
    if not (
        pa.types.is_integer(key_type) or pa.types.is_string(key_type) or pa.types.is_large_string(key_type)
    ):
        raise SpecError(
            f"spec.source.session.key: column {session.key!r} is {key_type}; a key is an integer or a string"
        )
    t = schema.field(session.time).type
    if not (pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_floating(t)):
        raise SpecError(
            f"spec.source.session.time: column {session.time!r} is {t}; times are integer unix seconds "
            "(or a timestamp)"
        )


def locator(source, split: Split, bad: list) -> Callable[[int], str]:
    """Where row ``n`` of ``split``'s table is, for an error: the file and line (or row) when the
    source can say (``locate``), else the split's byte or row range and the row's number in it."""

    def where(n: int) -> str:
        locate = getattr(source, "locate", None)
        if locate is not None:
            return locate(split, bad, n)
        return f"{split.path} [{split.start}:{split.stop}], row {n + 1} of the split's rows"

    return where


def _first_null(col: pa.ChunkedArray) -> int:
    return int(np.flatnonzero(~np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool))[0])


def key_hashes(table: pa.Table, session: SessionSpec, where: Callable[[int], str]) -> np.ndarray:
    """Each row's 64-bit key (uint64); a null key is an error naming the column and, by
    ``where``, the row's file and line."""
    col = table[session.key]
    chunks = [keys_of(c) for c in col.chunks]
    for n, (_, valid) in enumerate(chunks):
        if valid is not None and not valid.all():
            row = sum(len(c) for c in col.chunks[:n]) + int(np.flatnonzero(~valid)[0])
            raise SourceError(
                f"{where(row)}: spec.source.session.key: column {session.key!r} is empty "
                "(every event needs a key)"
            )
    return np.concatenate([k for k, _ in chunks]) if chunks else np.empty(0, np.uint64)


def event_times(table: pa.Table, session: SessionSpec, where: Callable[[int], str]) -> np.ndarray:
    """Each row's time as int64 unix seconds; a null or non-finite time is an error naming the
    column and, by ``where``, the row's file and line."""
    col = table[session.time]
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("s")).cast(pa.int64())
    elif pa.types.is_floating(col.type):
        col = pa.chunked_array(
            [pa.array(np.floor(c.to_numpy(zero_copy_only=False)), pa.float64()) for c in col.chunks]
        )
    if col.null_count:
        raise SourceError(
            f"{where(_first_null(col))}: spec.source.session.time: column {session.time!r} is empty "
            "(every event needs a time)"
        )
    values = col.to_numpy(zero_copy_only=False) if len(col) else np.empty(0)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise SourceError(
            f"{where(row)}: spec.source.session.time: column {session.time!r} holds a non-finite "
            f"time ({values[row]})"
        )
    return values.astype(np.int64)


def session_starts(
    keys: np.ndarray, times: np.ndarray, session: SessionSpec
) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (key, time): (a key starts here, a session starts here), both bool."""
    n = len(keys)
    new_key = np.ones(n, bool)
    new_key[1:] = keys[1:] != keys[:-1]
    new_session = new_key.copy()
    if n > 1:
        if session.rule == "gap":
            new_session[1:] |= (times[1:] - times[:-1]) > session.gap
        else:
            day = np.floor_divide(times, _DAY)
            new_session[1:] |= day[1:] != day[:-1]
    return new_key, new_session


def sort_order(keys: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The stable order by (key, time): equal keys and times keep their order (source order)."""
    return np.lexsort((times, keys))


def cut_points(starts: np.ndarray, rows: int, rows_per_shard: int) -> list[int]:
    """Row positions that cut ``rows`` sorted rows into shards (see the module docstring):
    ``starts`` are the sorted positions where sessions begin."""
    bounds = np.append(starts, rows)
    cuts, pos = [0], 0
    while pos < rows:
        limit = pos + rows_per_shard
        if limit >= rows:
            cut = rows
        else:
            cut = int(bounds[np.searchsorted(bounds, limit, side="right") - 1])
            if cut <= pos:  # the session at pos alone is longer than a shard: cut inside it
                cut = limit
        cuts.append(cut)
        pos = cut
    return cuts


# -- the tasks ------------------------------------------------------------------------------------
@dataclass
class Staged:
    """What staging one source split did."""

    index: int
    rows: int
    bad_rows: int
    quarantine: str | None
    #: partition -> (offset, length) of its piece in the split's staged file
    pieces: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Cut:
    """The shards of one partition: row cut points of its sorted rows, and its sessions."""

    partition: int
    cuts: list[int]
    sessions: int


def stage_split(
    source, session: SessionSpec, split: Split, partitions: int, directory: str, fsync: bool
) -> Staged:
    """Step 1 for one source split (see the module docstring): its pieces, one file."""
    read = source.read(split)
    table = read.table
    where = locator(source, split, read.bad)
    keys = key_hashes(table, session, where)
    times = event_times(table, session, where)
    part = (mix64(keys, _SALT) % np.uint64(partitions)).astype(np.int64)
    table = table.append_column(KEY_HASH, pa.array(keys, pa.uint64())).append_column(
        TIME, pa.array(times, pa.int64())
    )
    blobs, pieces, offset = [], {}, 0
    for p, piece in split_by_partition(table, part, partitions):
        blob = _ipc(piece)
        pieces[p] = (offset, len(blob))
        blobs.append(blob)
        offset += len(blob)
    if blobs:
        as_store(directory).put(stage_name(split.index), blobs, fsync)
    quarantine = put_quarantine(directory, split.index, read.bad, fsync) if read.bad else None
    return Staged(split.index, table.num_rows, len(read.bad), quarantine, pieces)


def partition_pieces(staged: list[Staged], partitions: int) -> list[list[tuple[int, int, int]]]:
    """Per partition, where its pieces are: ``(split, offset, length)`` of each, in the order of
    ``staged`` (split order), from what the staging tasks returned."""
    pieces: list[list[tuple[int, int, int]]] = [[] for _ in range(partitions)]
    for done in staged:
        for p, (offset, length) in done.pieces.items():
            pieces[p].append((done.index, offset, length))
    return pieces


def split_by_partition(table: pa.Table, part: np.ndarray, partitions: int) -> list[tuple[int, pa.Table]]:
    """``table``'s rows of each partition ``part`` names, in their order, for every partition
    that has rows: each column in one chunk, each dictionary pruned to the values the piece's rows
    use (as :func:`take` of those rows makes it), all pieces' entries found by one sort per column."""
    # numpy sorts 16-bit integers by radix: linear
    order = np.argsort(part.astype(np.uint16) if partitions <= 1 << 16 else part, kind="stable")
    counts = np.bincount(part, minlength=partitions)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    present = np.flatnonzero(counts)
    sorted_part = part[order]
    columns: list[list[pa.Array]] = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type) and len(col):
            columns.append(_dictionary_pieces(col, order, sorted_part, bounds, present))
        else:
            taken = col.take(pa.array(order)).combine_chunks() if len(col) else col.combine_chunks()
            columns.append([taken.slice(bounds[p], counts[p]) for p in present])
    return [(int(p), pa.table([c[i] for c in columns], schema=table.schema)) for i, p in enumerate(present)]


def _dictionary_pieces(
    col: pa.ChunkedArray, order: np.ndarray, sorted_part: np.ndarray, bounds: np.ndarray, present: np.ndarray
) -> list[pa.Array]:
    """A dictionary column's pieces: the rows ``order`` picks, piece ``present[i]`` being rows
    ``bounds[p]:bounds[p + 1]`` of them (``sorted_part`` names each row's piece, ascending). Every
    piece's dictionary holds only the entries its rows use, in index order, all found at once
    from the rows' (piece, index) pairs (:func:`_used`)."""
    col = col.unify_dictionaries() if col.num_chunks > 1 else col
    array = col.combine_chunks() if col.num_chunks > 1 else col.chunk(0)
    size = max(len(array.dictionary), 1)
    indices = array.indices.fill_null(0).to_numpy()[order].astype(np.int64)
    valid = None
    if array.indices.null_count:
        valid = np.asarray(array.indices.is_valid().to_numpy(zero_copy_only=False), bool)[order]
    pairs = sorted_part * size + indices
    used, remapped = _used(pairs, valid, (int(present[-1]) + 1) * size)
    # the used entries of piece p are a block of ``used``: renumbered from the block's start
    block = np.searchsorted(used, np.arange(int(present[-1]) + 2) * size)
    # every piece's indices and entries made at once, then sliced (a slice is written compactly
    # to Arrow IPC): a take and a cast per piece cost more than the pieces' rows at 34 partitions
    index_type = array.indices.type
    remapped = np.maximum(remapped - block[sorted_part], 0).astype(index_type.to_pandas_dtype())
    entries = array.dictionary.take(pa.array(used % size, pa.int64()))
    out = []
    for p in present:
        a, b = bounds[p], bounds[p + 1]
        mask = None if valid is None or valid[a:b].all() else ~valid[a:b]
        new_indices = pa.array(remapped[a:b], index_type, mask=mask)
        out.append(
            pa.DictionaryArray.from_arrays(new_indices, entries.slice(block[p], block[p + 1] - block[p]))
        )
    return out


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _pieces(directory: str, pieces: list[tuple[int, int, int]]) -> pa.Table | None:
    """A partition's staged rows: its piece of each split, ``(split, offset, length)`` in split
    order."""
    store = as_store(directory)
    tables = []
    for split, offset, length in pieces:
        blob = store.read_range(stage_name(split), offset, length)
        tables.append(pa.ipc.open_file(pa.py_buffer(blob)).read_all())
    if not tables:
        return None
    return pa.concat_tables(tables)


def cut_partition(
    session: SessionSpec,
    partition: int,
    pieces: list[tuple[int, int, int]],
    rows_per_shard: int,
    directory: str,
    context: int,
    fsync: bool,
) -> Cut:
    """Step 2 for one partition, from its ``pieces`` (``(split, offset, length)`` of each, in
    split order): its cut points, and each shard's rows written (see the module docstring)."""
    table = _pieces(directory, pieces)
    if table is None:
        return Cut(partition, [0], 0)
    keys, times = _column(table, KEY_HASH), _column(table, TIME)
    order = sort_order(keys, times)
    new_key, new_session = session_starts(keys[order], times[order], session)
    starts = np.flatnonzero(new_session)
    cuts = cut_points(starts, len(keys), rows_per_shard)
    rows = one_chunk(table.drop_columns([KEY_HASH, TIME]))
    key_starts = np.flatnonzero(new_key)
    store = as_store(directory)
    for start, stop in zip(cuts, cuts[1:]):
        first = start
        if context and start > 0:  # the first key's events that the first session's history reads
            key_start = int(key_starts[np.searchsorted(key_starts, start, side="right") - 1])
            session_start = int(starts[np.searchsorted(starts, start, side="right") - 1])
            first = max(key_start, session_start - context)
        out = take(rows, order[first:stop])
        key_run = np.cumsum(new_key[first:stop], dtype=np.int32)
        session_run = np.cumsum(new_session[first:stop], dtype=np.int32)
        out = out.append_column(KEY_RUN, pa.array(key_run)).append_column(SESSION_RUN, pa.array(session_run))
        meta = {_CONTEXT: str(start - first), _STOP: str(stop)}
        store.put(shard_name(partition, start), _ipc(out.replace_schema_metadata(meta)), fsync)
    return Cut(partition, cuts, len(starts))


def one_chunk(table: pa.Table) -> pa.Table:
    """``table`` with each column in one chunk, the pieces' dictionaries unified (once for all
    the shards :func:`take` makes of it, not once per shard)."""
    columns = []
    for col in table.columns:
        if col.num_chunks > 1:
            if pa.types.is_dictionary(col.type):
                col = col.unify_dictionaries()
            col = pa.chunked_array([col.combine_chunks()], type=col.type)
        columns.append(col)
    return pa.table(columns, schema=table.schema)


def _column(table: pa.Table, name: str) -> np.ndarray:
    col = table[name]
    return col.to_numpy() if len(col) else np.empty(0, np.uint64 if name == KEY_HASH else np.int64)


def read_session_split(split: SessionSplit, directory: str) -> ReadResult:
    """Step 3: the shard's rows as its partition's cut wrote them (context rows first), with the
    hidden key run and session columns."""
    store = as_store(directory)
    name = shard_name(split.partition, split.start)
    meta = {}
    try:  # one request in an object store (no existence check before it)
        table = pa.ipc.open_file(pa.py_buffer(store.read(name))).read_all()
        meta = table.schema.metadata or {}
    except FileNotFoundError:
        pass
    if meta.get(_STOP) != str(split.stop).encode() or meta.get(_CONTEXT) is None:
        raise SourceError(
            f"{store.path(name)}: the staged rows of shard {split.index} are missing "
            "(removed while the job ran?); run the job again"
        )
    context = int(meta[_CONTEXT])
    return ReadResult(table.replace_schema_metadata(None), context=context)


def take(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The ``rows`` of ``table`` (a partition: one chunk per staged piece), each column in one
    chunk; a dictionary-encoded column's dictionary holds only the values those rows use (in the
    order of the pieces' dictionaries, deduplicated): rows taken from a partition would
    otherwise carry every piece's whole dictionary into the shard. The pieces' dictionaries are
    unified once and the rows taken from its indices (pyarrow's take of a chunked dictionary
    column unifies them itself, and did so again for the pruning)."""
    rows = np.asarray(rows, np.int64)
    columns = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type) and len(col):  # one piece: every row
            one = np.zeros(len(rows), np.int64)
            (array,) = _dictionary_pieces(col, rows, one, np.array([0, len(rows)]), np.array([0]))
            col = pa.chunked_array([array])
        else:
            taken = col.take(pa.array(rows))
            col = (
                pa.chunked_array([taken.combine_chunks()], type=col.type) if taken.num_chunks != 1 else taken
            )
        columns.append(col)
    return pa.table(columns, schema=table.schema)


def _used(keys: np.ndarray, valid: np.ndarray | None, span: int) -> tuple[np.ndarray, np.ndarray]:
    """The values in ``[0, span)`` that ``keys`` hold (where ``valid``), ascending, and each key
    renumbered into them (an invalid one to some number >= 0): by a bitmap over the span, or by
    sorting the keys when the span is much larger than they are many."""
    if span > max(8 * len(keys), 1 << 20):
        used, inverse = np.unique(keys if valid is None else keys[valid], return_inverse=True)
        if valid is None:
            return used, inverse.reshape(-1)
        renumbered = np.zeros(len(keys), np.int64)
        renumbered[valid] = inverse.reshape(-1)
        return used, renumbered
    seen = np.zeros(span, bool)
    seen[keys if valid is None else keys[valid]] = True
    used = np.flatnonzero(seen)
    renumber = np.cumsum(seen, dtype=np.int64) - 1
    return used, np.maximum(renumber[keys], 0)


def compact(table: pa.Table) -> pa.Table:
    """``table`` whole, through :func:`take` (each column in one chunk, each dictionary pruned
    to the values its rows use)."""
    return take(table, np.arange(table.num_rows))


# -- the plan of a job's sessions -----------------------------------------------------------------------
@dataclass
class SessionPlan:
    """What steps 1 and 2 found: kept in ``_sessions/plan.json``."""

    identity: str
    partitions: int
    #: per shard: (partition, start, stop)
    shards: list[tuple[int, int, int]] = field(default_factory=list)
    sessions: int = 0
    rows: int = 0
    bad_rows: int = 0
    quarantine: list[str] = field(default_factory=list)

    def splits(self, context: int) -> list[SessionSplit]:
        return [SessionSplit(i, p, a, b, context if a > 0 else 0) for i, (p, a, b) in enumerate(self.shards)]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> SessionPlan | None:
        try:
            doc = json.loads(data)
            plan = cls(**doc)
            plan.shards = [tuple(int(v) for v in s) for s in plan.shards]
        except (ValueError, TypeError):
            return None
        return plan


def read_plan(directory: str, identity: str) -> SessionPlan | None:
    store = as_store(directory)
    if not store.exists(PLAN_FILE):
        return None
    plan = SessionPlan.parse(store.read(PLAN_FILE))
    return plan if plan is not None and plan.identity == identity else None


def staged(directory: str, plan: SessionPlan) -> bool:
    """Whether the output holds the file of every shard of ``plan``, as its cut wrote them."""
    store = as_store(directory)
    wanted: dict[int, set[str]] = {}
    for p, start, _ in plan.shards:
        wanted.setdefault(p, set()).add(shard_name(p, start).rsplit("/", 1)[1])
    # listed, not just a folder seen: an object store may list a prefix whose objects are deleted
    return all(names <= set(store.names(f"{SESSIONS_DIR}/{partition_dir(p)}")) for p, names in wanted.items())


class SessionSource:
    """A source whose shards are a session job's (:class:`SessionSplit`): the source's own
    splits are read as before (the staging step reads them), a session split from the staged
    partitions."""

    def __init__(self, source, session: SessionSpec, directory: str):
        self.inner = source
        self.session = session
        self.directory = directory
        self.roles = source.roles

    def schema(self) -> pa.Schema:
        return self.inner.schema()

    def splits(self, rows_per_shard: int) -> list[Split]:
        return self.inner.splits(rows_per_shard)

    def read(self, split, decode_hex: frozenset[str] = frozenset()) -> ReadResult:
        if isinstance(split, SessionSplit):
            return read_session_split(split, self.directory)
        return self.inner.read(split, decode_hex)


def remove_pieces(directory: str) -> None:
    """Remove the staged pieces and the shards' files (the plan stays: a later run that finds a
    shard to redo stages again)."""
    store = as_store(directory)
    for folder in store.names(SESSIONS_DIR):
        if _is_partition(folder) or folder == STAGE_DIR:
            path = f"{SESSIONS_DIR}/{folder}"
            for name in store.names(path):
                store.remove(f"{path}/{name}")
            store.remove_folder_if_empty(path)


__all__ = [
    "HIDDEN",
    "SESSIONS_DIR",
    "SessionPlan",
    "SessionSplit",
    "check_schema",
    "cut_partition",
    "cut_points",
    "partition_pieces",
    "partitions_for",
    "read_plan",
    "read_session_split",
    "session_starts",
    "shard_name",
    "stage_split",
]
