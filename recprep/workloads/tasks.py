"""The functions Dask runs on workers: one shard's fit partials, one shard's transform + write.

Workers rebuild the source and the plan from the job (cached per process), so a task carries
only the job, its split and the fitted states.

A task that fails returns a :class:`ShardFailure` (one line naming the shard and its input)
instead of raising: Dask would print the exception with its traceback in the worker's log, and
the user is to see one line. An error of recprep's own (bad data the source cannot read, say)
is that line; anything else (a bug) adds the path of a log file in the output's ``_errors/``
holding the traceback. The driver raises the line as a :class:`ShardError`.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field

from ..errors import RecprepError
from ..failpoints import failpoint
from ..isp_nodes.worker import PACED, here, pace
from ..spec import PreprocessJob
from ..uris import local_path, output_location
from .grouped_sessions import GroupedSessionSource
from .memory import tune_allocator
from .output import put_error_log, put_quarantine, put_shard
from .output.layout import INDEX_DIR
from .plan import Plan, States, compile_plan
from .sessions import STAGE_SHARDS, Cut, SessionSource, Staged, cut_partition, stage_split
from .sources import Split, open_source
from .sources.files import reading
from .writer import shard_bytes


@dataclass
class Ran:
    """Where one task of a shard ran and what it took."""

    worker: str  #: the Dask worker's name
    node: str | None  #: the storage node of an ISP worker (None: a CPU worker)
    steps: tuple[int, int]  #: the transforms it ran, [start, stop)
    started: float  #: wall-clock time (epoch seconds) it began
    seconds: float  #: how long it took (paced ISP tasks: the modelled time when it was kept)
    read: bool  #: it read the shard's raw data
    wrote: bool  #: it wrote the shard
    #: paced ISP tasks: the time the ISP model gives it on one unit, and whether the real work
    #: took longer than that
    model_seconds: float | None = None
    behind: bool = False

    @property
    def pool(self) -> str:
        return "isp" if self.node else "cpu"


@dataclass
class Handoff:
    """What an ISP task passes to the CPU task that finishes its shard: the table after the
    offloaded steps (its Arrow size is what crosses the network), the rows it set aside."""

    index: int
    table: object  #: pa.Table
    bad: list
    nulled: dict
    source_nulled: dict
    stored: int
    ran: Ran


@dataclass
class ShardResult:
    index: int
    file: str
    rows: int
    bad_rows: int
    bytes: int
    sha256: str
    quarantine: str | None
    #: per "<step>:<column>": [values the step made null, values it saw] (``plan.NullCounts``)
    nulled: dict[str, list[int]] = field(default_factory=dict)
    #: bytes of raw data read from storage for the shard
    stored: int = 0
    #: bytes handed from an ISP task to the CPU task that finished the shard (0: one task)
    handoff: int = 0
    #: the shard's tasks, in order
    ran: list[Ran] = field(default_factory=list)
    #: a grouped session job's keys of the split's rows (``grouped_sessions.SplitKeys``)
    keys: object = None
    #: a split of a file decoded once (``transform_file``): (file, split in the file, start,
    #: stop); ``index`` is then the split's number in its file
    piece: tuple[int, int, int, int] | None = None


class ShardError(RecprepError):
    """A shard failed; the message names the file and the byte/row range."""


@dataclass(frozen=True)
class ShardFailure:
    """What a failed task returns: the shard and one line saying why."""

    index: int
    message: str


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces folded (an error is one line)."""
    return " ".join(str(text).split())


def _failure(
    job: PreprocessJob, split: Split, stage: str, exc: Exception, what: str | None = None, key=None
) -> ShardFailure:
    """``what``: the failing work as the line names it (default: the shard); ``key``: its error
    log's (default: the shard's number)."""
    what = what or f"{'fit of ' if stage == 'fit' else ''}shard {split.index} ({_where(split)})"
    if isinstance(exc, RecprepError):
        return ShardFailure(split.index, one_line(f"{what}: {exc}"))
    line = one_line(f"{what}: {type(exc).__name__}: {exc}")
    try:
        details = "".join(traceback.format_exception(exc))
        path = put_error_log(
            output_location(job.spec.output.uri),
            split.index if key is None else key,
            stage,
            line + "\n\n" + details,
        )
    except (OSError, RecprepError) as log_exc:  # the error line matters more than its log
        return ShardFailure(split.index, f"{line} (its details could not be written: {log_exc})")
    return ShardFailure(split.index, f"{line}; details in {path}")


_PREPARED: dict[str, tuple] = {}


def _prepared(job: PreprocessJob):
    key = job.model_dump_json()
    if key not in _PREPARED:
        tune_allocator()  # once per process: the first shard task on a worker
        if len(_PREPARED) > 8:
            _PREPARED.clear()
        # the output's _index/, where the driver's planning put it (a directory or an object store)
        index = f"{output_location(job.spec.output.uri)}/{INDEX_DIR}"
        _PREPARED[key] = _open(job, index)
    return _PREPARED[key]


def _open(job: PreprocessJob, index_dir: str | None):
    """(source, plan) of ``job``, compressed inputs planned into ``index_dir``; a session job's
    source also reads its shards from the staged partitions (``sessions``), or, a grouped one,
    from its own splits and their neighbours (``grouped_sessions``)."""
    output = local_path(job.spec.output.uri)
    made = frozenset(str(t.params()["output"]) for t in job.spec.transforms if t.params().get("output"))
    source = open_source(job.spec.source, exclude=output, generated=made, index_dir=index_dir)
    session = job.spec.source.session
    if session is not None and session.grouped:
        source = GroupedSessionSource(source, session, job.spec.output.rows_per_shard)
    elif session is not None:
        source = SessionSource(source, session, output_location(job.spec.output.uri))
    plan = compile_plan(job, source.schema(), source.roles)
    if isinstance(source, GroupedSessionSource):
        source.context = history_context(plan)
    return source, plan


def _where(split: Split) -> str:
    return f"{split.path} [{split.start}:{split.stop}]"


def fit_shard(job: PreprocessJob, split: Split, stage: int, states: States) -> dict | ShardFailure:
    try:
        source, plan = _prepared(job)
        read = source.read(split, plan.scan_hex)
        return plan.fit_partials(read.table, stage, states, read.context)
    except Exception as exc:  # name the shard: the user needs to know which input broke
        return _failure(job, split, "fit", exc)


def stage_shard(job: PreprocessJob, split: Split, partitions: int, fsync: bool) -> Staged | ShardFailure:
    """A session job's first step for one source split (``sessions.stage_split``)."""
    try:
        source, _ = _prepared(job)
        directory = output_location(job.spec.output.uri)
        return stage_split(source.inner, job.spec.source.session, split, partitions, directory, fsync)
    except Exception as exc:
        return _failure(job, split, "sessions", exc)


def split_rows(job: PreprocessJob) -> int:
    """Rows of the source's splits: a shard's, or a session job's staging task's (``STAGE_SHARDS``
    shards' rows: ``sessions``; a grouped one's splits are its shards)."""
    rows = job.spec.output.rows_per_shard
    return rows * STAGE_SHARDS if staged_sessions(job) else rows


def staged_sessions(job: PreprocessJob) -> bool:
    """A session job that groups its events itself: staging and cutting (``sessions``)."""
    session = job.spec.source.session
    return session is not None and not session.grouped


def history_context(plan: Plan) -> int:
    """Rows of earlier events a session shard reads before its own: the longest history."""
    return max((s.op.params.k for s in plan.steps if s.op.per_session), default=0)


def cut_shards(
    job: PreprocessJob, partition: int, pieces: list[tuple[int, int, int]], context: int, fsync: bool
) -> Cut | ShardFailure:
    """A session job's second step for one partition (``sessions.cut_partition``) from its staged
    ``pieces``: its shards' rows written, each with ``context`` events of history before it."""
    try:
        directory = output_location(job.spec.output.uri)
        session, rows = job.spec.source.session, job.spec.output.rows_per_shard
        return cut_partition(session, partition, pieces, rows, directory, context, fsync)
    except Exception as exc:
        return _failure(job, Split(partition, f"session partition {partition}", 0, 0, 0), "sessions", exc)


def combine_partials(
    job: PreprocessJob, left: dict | ShardFailure, right: dict | ShardFailure
) -> dict | ShardFailure:
    for side in (left, right):
        if isinstance(side, ShardFailure):
            return side  # the first failure travels up the tree to the driver
    _, plan = _prepared(job)
    ops = {s.index: s.op for s in plan.steps}
    return {key: ops[key[0]].combine(left[key], right[key]) for key in left}


def _read(job: PreprocessJob, split: Split):
    """(source, plan, read, stored bytes, parsed bytes) of a split."""
    source, plan = _prepared(job)
    read = source.read(split, plan.scan_hex)
    raw = getattr(source, "raw_bytes", None)
    sizes = raw(split) if raw else None
    # a source with no stored form (synthetic): the Arrow size of what it made stands in
    stored, parsed = sizes if sizes else (read.table.nbytes, 0)
    return source, plan, read, stored, parsed


def _ran(job, plan, started: float, wall: float, steps, rows: int, stored: int, parsed: int, **kw) -> Ran:
    """The record of a task that began at ``started`` (perf_counter) and ``wall`` (epoch); an ISP
    worker of a paced job first waits out the rest of the modelled time of the offloaded work."""
    name, node = here()
    modelled, behind = None, False
    if node and job.spec.pools.isp.mode == PACED and kw["read"]:
        # the ISP part of a shard: its read, its parse and its offloaded steps, at the model's rates
        # (a part that does not read, or steps that are not offloaded, run at the node's own speed)
        values = plan.offload_values(rows, min(steps[1], plan.offloadable))
        paced = pace(started, job.spec.pools.isp.model.unit_seconds(stored, parsed, values))
        modelled, behind = paced.model_seconds, paced.behind
    return Ran(
        name,
        node,
        tuple(steps),
        wall,
        time.perf_counter() - started,
        model_seconds=modelled,
        behind=behind,
        **kw,
    )


def transform_shard(
    job: PreprocessJob, split: Split, states: States, directory: str, compression: str, fsync: bool
) -> ShardResult | ShardFailure:
    """A whole shard on one worker: read, every transform, write."""
    started, wall = time.perf_counter(), time.time()
    try:
        _, plan, read, stored, parsed = _read(job, split)
        args = (directory, compression, fsync, stored, parsed, started, wall)
        return _whole(job, plan, split, read, states, *args)
    except Exception as exc:
        return _failure(job, split, "transform", exc)


def _whole(
    job, plan, split, read, states, directory, compression, fsync, stored, parsed, started, wall, key=None
):
    """Every transform of a split read, then its write (as shard ``key``, default its number)."""
    nulled: dict = {}
    table = plan.apply(read.table, states, nulled=nulled, source_nulled=read.nulled, context=read.context)
    result = _write(job, split, directory, compression, fsync, table, read.bad, nulled, stored, key)
    result.keys = read.keys
    steps = (0, len(plan.steps))
    result.ran.append(
        _ran(job, plan, started, wall, steps, table.num_rows, stored, parsed, read=True, wrote=True)
    )
    return result


#: the failpoint (``recprep.failpoints``) in a file task, after a shard is written and reported:
#: its worker dies mid-file
DECODE_FAILPOINT = "decode-once-shard"


@dataclass
class FileDone:
    """What :func:`transform_file` returns: the file's plan (its bounds: how many shards it
    makes) and the shards it wrote."""

    file: int
    layout: object  #: ``compressed.Layout``
    results: list[ShardResult]


def transform_file(
    job: PreprocessJob,
    number: int,
    path: str,
    states: States,
    directory: str,
    compression: str,
    fsync: bool,
    skip: frozenset[int] = frozenset(),
    queue: str | None = None,
) -> FileDone | ShardFailure:
    """Every shard of compressed file ``path`` (the source's file ``number``) from one pass over
    it (``compressed.OnePass``, ``decode_once``): each split's text, as the pass finds it, read,
    transformed and written as shard ``(number, split)``; the splits that begin at a text offset
    in ``skip`` (committed by an earlier run) are passed over. Each shard's result is also put,
    pickled, on the Dask queue named ``queue`` as it is written, for the driver to commit before
    the file is done (the returned results hold them all). At the end the file's plan is kept."""
    import pickle

    from distributed import Queue

    source, plan = _prepared(job)
    stream = source.one_pass(path, job.spec.output.rows_per_shard)
    sink = Queue(queue) if queue else None
    results: list[ShardResult] = []
    split, header = None, bool(job.spec.source.header)  # the split being worked on
    started, wall = time.perf_counter(), time.time()  # a split's time: its decompression's too
    try:
        for piece in _decoded(stream, path):
            if piece.start in skip:
                started, wall = time.perf_counter(), time.time()
                continue
            rows = max(piece.rows - (1 if header and piece.number == 0 else 0), 1)
            split = Split(piece.number, path, piece.start, piece.stop, rows, header and piece.number == 0)
            read = source.read_text(split, piece.text, piece.lines + 1, plan.scan_hex)
            args = (directory, compression, fsync, piece.stored, len(piece.text), started, wall)
            result = _whole(job, plan, split, read, states, *args, key=(number, piece.number))
            result.piece = (number, piece.number, piece.start, piece.stop)
            results.append(result)
            if sink is not None:
                sink.put(pickle.dumps(result))
            failpoint(DECODE_FAILPOINT)
            # the split's text and table are let go before the pass makes the next split's
            read = piece = result = None
            split, started, wall = None, time.perf_counter(), time.time()
        stream.keep(source.store)
    except Exception as exc:
        if split is None:  # the pass's own (it names the file): decompressing, keeping the plan
            what, whole = f"file {number} ({path})", Split(-1, path, 0, 0, 0)
            return _failure(job, whole, "transform", exc, what=what, key=(number, 0))
        what = f"split {split.index} of file {number} ({_where(split)})"
        return _failure(job, split, "transform", exc, what=what, key=(number, split.index))
    finally:
        if sink is not None:  # the scheduler drops the queue once every holder let it go
            with contextlib.suppress(Exception):  # (the shards are the task's result)
                sink.close()
    return FileDone(number, stream.layout, results)


def offloaded_part(job: PreprocessJob, split: Split, states: States, stop: int) -> Handoff | ShardFailure:
    """The ISP part of a shard: read it where it lies and run transforms ``[0, stop)``."""
    started, wall = time.perf_counter(), time.time()
    try:
        _, plan, read, stored, parsed = _read(job, split)
        nulled: dict = {}
        table = plan.apply(read.table, states, stop=stop, nulled=nulled, source_nulled=read.nulled)
        ran = _ran(
            job, plan, started, wall, (0, stop), table.num_rows, stored, parsed, read=True, wrote=False
        )
    except Exception as exc:
        return _failure(job, split, "transform", exc)
    return Handoff(split.index, table, read.bad, nulled, read.nulled, stored, ran)


def finish_shard(
    job: PreprocessJob,
    split: Split,
    states: States,
    directory: str,
    compression: str,
    fsync: bool,
    handoff: Handoff | ShardFailure,
) -> ShardResult | ShardFailure:
    """The CPU part of a shard an ISP task began: the remaining transforms, then the write."""
    if isinstance(handoff, ShardFailure):
        return handoff
    started, wall = time.perf_counter(), time.time()
    try:
        _, plan = _prepared(job)
        start = handoff.ran.steps[1]
        nulled = dict(handoff.nulled)
        table = plan.apply(
            handoff.table, states, nulled=nulled, source_nulled=handoff.source_nulled, start=start
        )
        result = _write(job, split, directory, compression, fsync, table, handoff.bad, nulled, handoff.stored)
        result.handoff = handoff.table.nbytes
        steps = (start, len(plan.steps))
        result.ran += [
            handoff.ran,
            _ran(job, plan, started, wall, steps, table.num_rows, 0, 0, read=False, wrote=True),
        ]
    except Exception as exc:
        return _failure(job, split, "transform", exc)
    return result


def _decoded(stream, path: str):
    """The pieces of a one-pass stream, its decompression's errors as SourceErrors naming the file
    (and not the errors of the work done between two pieces)."""
    pieces = iter(stream)
    while True:
        with reading(path, "decompress"):
            piece = next(pieces, None)
        if piece is None:
            return
        yield piece


def _write(job, split, directory, compression, fsync, table, bad, nulled, stored, key=None) -> ShardResult:
    key = split.index if key is None else key
    quarantine = put_quarantine(directory, key, bad, fsync) if bad else None
    written = put_shard(directory, key, shard_bytes(table, compression), fsync)
    return ShardResult(
        split.index,
        written.name,
        table.num_rows,
        len(bad),
        written.bytes,
        written.sha256,
        quarantine,
        {f"{i}:{col}": counts for (i, col), counts in nulled.items() if counts[0]},
        stored,
    )


def prepare(job: PreprocessJob, index_dir: str | None = None) -> tuple[object, Plan]:
    """Source and plan for ``job`` (the driver's checks run the same code as the workers).
    ``index_dir``: plan compressed inputs there instead of in the job's output (``recprep
    validate``, which writes nothing where the job will)."""
    return _prepared(job) if index_dir is None else _open(job, index_dir)
