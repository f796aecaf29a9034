"""Compressed files decompressed once: each file's shards made by one task, from one pass.

A compressed input read by splits is decompressed twice: once by the planning pass that finds
its cuts (``sources.compressed``), once more, split by split, by the shard tasks. Where each
worker thread has a file of its own to take, the split tasks' parallelism is worth nothing, and
the second decompression is all cost (a gzip Criteo file: 0.7 s of every 3.4 s of a shard's
work). Then each file is given to one task (``tasks.transform_file``) that decompresses it from
its start and makes each split's shard as soon as the pass has found the split's end; its text
is read once.

The policy (:func:`files_to_decode`): a job whose source is compressed text files only, with
nothing that needs every split before the first shard (no fitted op, no session, no join), on
the CPU pool alone (no ISP pool, no autoscaler: they place and size by splits), whose files that
have no seekable plan yet are at least as many as the worker threads the job has. Else the
splits are planned and given out one by one, as for any source.

The mechanism (:func:`run_files`): a file's shards are named by (file, split in the file)
(``output.layout``): their numbers among the job's shards follow from the split counts of the
files before, known when those files' tasks end (or from the plans an earlier run kept). Each
task puts every shard's result on a Dask queue as it writes it; the driver commits it once its
number is known, so a file's shards are committed while its pass goes on, and a resumed run
passes over the splits committed (by their text offsets: ``CommitRecord.source``). A file task
keeps its file's plan when it ends (its bounds only: ``Layout.seekable`` False).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import time
import uuid
from dataclasses import dataclass, field

from ..errors import SpecError
from ..isp_nodes.accounting import Account, placement_record
from ..spec import PreprocessJob
from .landing import accounted, land, landed_before
from .output import OutputWriter
from .plan import Plan
from .sources.files import is_compressed
from .tasks import FileDone, ShardResult, transform_file

log = logging.getLogger(__name__)

#: seconds between two looks at the tasks and the queue of shards written
LOOK = 0.25
#: why the shards of each file are made by one task
REASON = "decoded once: one task per compressed file, each shard made as its pass goes"


def compressed_text(source) -> bool:
    """The source is text files, compressed every one (what a file task reads)."""
    files = getattr(source, "files", None) if hasattr(source, "one_pass") else None
    return bool(files) and all(is_compressed(p) for p in files)


def why_not(job: PreprocessJob, source, plan: Plan, sessions: bool, isp_workers: int) -> str | None:
    """Why ``job`` cannot have its files decoded once, or None when it can."""
    if not compressed_text(source):
        text = hasattr(source, "one_pass") and getattr(source, "files", None)
        return (
            "the source has uncompressed files" if text else "the source is not compressed text files alone"
        )
    if plan.needs_fit:
        return "a fitted op needs every split before the first shard"
    if sessions or job.spec.source.session is not None:
        return "session jobs group rows across splits"
    if "isp" in job.spec.pools.model_fields_set or isp_workers:
        return "the ISP pool places shards by split"
    if "autoscale" in job.spec.model_fields_set:
        return "the autoscaler sizes the pools by splits"
    return None


#: ``decode`` (``recprep run --decode``): the policy's choice; each file once; by splits
AUTO, ONCE, SPLITS = "auto", "once", "splits"


def files_to_decode(
    job, source, plan: Plan, sessions: bool, threads: int, isp_workers: int = 0, decode: str = AUTO
) -> bool:
    """Whether each file is decoded once by a task of its own: the policy (see the module), or
    what ``decode`` asks (``ONCE`` of a job that cannot: an error saying why)."""
    if decode == SPLITS:
        return False
    why = why_not(job, source, plan, sessions, isp_workers)
    if why is not None:
        if decode == ONCE:
            raise SpecError(f"--decode once: the files of this job cannot be decoded once: {why}")
        return False
    if decode == ONCE:
        return True
    rows = job.spec.output.rows_per_shard
    unplanned = [p for p in source.files if not _seekable(source.kept_plan(p, rows))]
    return bool(unplanned) and len(unplanned) >= max(threads, 1)


def _seekable(layout) -> bool:
    return layout is not None and layout.seekable


def _starts(layout) -> list[int]:
    """Where the splits of a file's plan that hold text begin (one shard each)."""
    return [a for a, b in zip(layout.bounds, layout.bounds[1:]) if b > a]


def _count(layout) -> int:
    """The shards of a file's plan."""
    return len(_starts(layout))


def description(source) -> list[dict]:
    """What the job's identity says of a source of compressed files: each file's path and
    compressed size (the same whether its splits are planned yet or not: a run decoding its
    files once and one reading by splits are the same job)."""
    return [{"path": p, "stored": int(source.fs.size(p))} for p in source.files]


@dataclass
class Files:
    """The driver's account of the files: split counts known, shards written not yet committed."""

    paths: list[str]
    stored: list[int]  #: compressed bytes of each
    counts: dict[int, int] = field(default_factory=dict)
    held: dict[tuple[int, int], ShardResult] = field(default_factory=dict)
    seen: set[tuple[int, int]] = field(default_factory=set)
    #: shards, rows and compressed bytes of the shards this run wrote (for the estimates)
    made: list[int] = field(default_factory=lambda: [0, 0, 0])

    def offset(self, file: int) -> int | None:
        """The number of file ``file``'s first shard, once the files before it are counted."""
        if any(f not in self.counts for f in range(file)):
            return None
        return sum(self.counts[f] for f in range(file))

    def hold(self, result: ShardResult) -> None:
        key = result.piece[:2]
        if key not in self.seen:
            self.seen.add(key)
            self.held[key] = result
            for i, n in enumerate((1, result.rows + result.bad_rows, result.stored)):
                self.made[i] += n

    def ready(self) -> list[ShardResult]:
        """The shards held whose numbers are known, numbered (``index``), in order."""
        out = []
        for key in sorted(self.held):
            offset = self.offset(key[0])
            if offset is not None:
                result = self.held.pop(key)
                result.index = offset + key[1]
                out.append(result)
        return out

    @property
    def total(self) -> int | None:
        return sum(self.counts.values()) if len(self.counts) == len(self.paths) else None

    def estimate(self) -> tuple[int, int]:
        """(shards, rows) of the job: the files counted, and the others at the shards and rows
        per compressed byte of the shards written so far (0 while none is)."""
        shards, rows, stored = self.made
        per = (shards / stored, rows / stored) if stored else (0.0, 0.0)
        counted = sum(self.counts.values())
        rest = sum(b for n, b in enumerate(self.stored) if n not in self.counts)
        rows_per_shard = rows / shards if shards else 0.0
        est_rows = round(counted * rows_per_shard + rest * per[1])
        return counted + round(rest * per[0]), est_rows


def run_files(
    c, job, source, directory: str, ledger: OutputWriter, summary, progress, fsync: bool, result, look=None
) -> int:
    """Make the shards of every file not yet wholly committed (see the module) and commit them;
    returns the job's shard count. ``result(future)``: a task's value or its error raised as
    the driver's one line (``runner._result``); ``look(est_rows)``: called at every look, with
    the job's rows as estimated (the runner's checks: too many bad rows, the dashboard)."""
    rows = job.spec.output.rows_per_shard
    files = Files(list(source.files), [int(source.fs.size(p)) for p in source.files])
    done: dict[str, set[int]] = {}
    for record in ledger.commits.values():
        if isinstance(record.source, dict) and isinstance(record.source.get("start"), int):
            done.setdefault(record.source.get("path"), set()).add(record.source["start"])
    todo = []
    for number, path in enumerate(files.paths):
        layout = source.kept_plan(path, rows)
        if layout is not None:
            files.counts[number] = _count(layout)
            if all(a in done.get(path, ()) for a in _starts(layout)):
                continue
        todo.append(number)
    _started(summary, ledger, progress, files)
    account = Account(job.spec.pools.isp.model, job.spec.pools.cpu.preemptible)
    started = time.perf_counter()
    if todo:
        _run(c, job, files, todo, done, directory, ledger, summary, account, progress, fsync, result, look)
    account.wall_seconds = time.perf_counter() - started
    account.workers = {"isp": 0, "cpu": summary.cores}
    accounted(account, summary, ledger, progress)
    return files.total


def _run(
    c, job, files: Files, todo, done, directory, ledger, summary, account, progress, fsync, result, look
):
    from distributed import Queue, wait

    queue = Queue(f"recprep-{uuid.uuid4().hex}", client=c)
    args = (directory, job.spec.output.compression, fsync)
    futures = {}
    for n in todo:
        skip = frozenset(done.get(files.paths[n], ()))
        task = c.submit(transform_file, job, n, files.paths[n], {}, *args, skip, queue.name, pure=False)
        futures[task] = n
    log.info("decoding %d compressed file(s) once, a task each", len(todo))
    counted, shown = len(files.counts), files.estimate()
    try:
        while True:
            failure = None
            for future in [f for f in futures if f.status != "pending"]:
                number = futures.pop(future)
                try:
                    out: FileDone = result(future)
                except Exception as exc:  # commit what is done first, then say why it stopped
                    failure = failure or exc
                    continue
                files.counts[number] = _count(out.layout)
                for r in out.results:
                    files.hold(r)
            # after the tasks that ended: what each put on the queue before it ended is there
            for blob in queue.get(batch=True):
                files.hold(pickle.loads(blob))
            estimate = files.estimate()
            if progress and (len(files.counts) != counted or (estimate[0] and not shown[0])):
                # a file counted, or the first shards to estimate by (a restart of the bar's rate)
                counted, shown = len(files.counts), estimate
                rows_read = summary.rows_read
                progress.start(
                    estimate[0],
                    max(estimate[1], rows_read),
                    len(ledger.commits),
                    rows_read,
                    summary.rows_quarantined,
                )
            for r in files.ready():
                _commit(ledger, files, r, summary, account, progress)
            if failure is not None:
                raise failure
            if look is not None:
                look(estimate[1])
            if not futures:
                return
            with contextlib.suppress(TimeoutError):
                wait(list(futures), timeout=LOOK, return_when="FIRST_COMPLETED")
    except BaseException:
        c.cancel(list(futures))
        raise
    finally:
        queue.close()


def _started(summary, ledger: OutputWriter, progress, files: Files) -> None:
    """The summary and progress of what earlier runs committed."""
    landed_before(summary, list(ledger.commits.values()))
    if progress:
        progress.phase("transform")
        shards, rows = files.estimate()
        progress.start(
            shards,
            max(rows, summary.rows_read),
            len(ledger.commits),
            summary.rows_read,
            summary.rows_quarantined,
        )


def _commit(ledger: OutputWriter, files: Files, r: ShardResult, summary, account: Account, progress) -> None:
    number, _, start, stop = r.piece
    source = {"path": files.paths[number], "start": start, "stop": stop}
    land(ledger, r, source, placement_record(r, None, REASON), summary, account, {}, progress)
