"""Running a PreprocessJob on a Dask cluster: plan, fit pass, transform pass, ledger, summary.

The driver (this module) lists the source into splits, checks the plan and the output before
any work, fits the fitted ops (partials per shard combined in a fixed binary tree, so results do
not depend on the number of workers), then submits one transform task per uncommitted shard and
records each in the ledger as it lands.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

import dask
from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import BadDataError, RecprepError
from ..isp_nodes.placement import holder, split_key
from ..spec import PreprocessJob
from ..uris import output_location
from . import decode_once
from .grouped_sessions import GroupedSessionSource, GroupingCheck, GroupingError, recall, remember
from .landing import accounted, land, landed_before
from .locality import scheduler_workers
from .machine import usable_cores
from .output import (
    QUARANTINE_DIR,
    WORKER_LOG,
    JobRecord,
    OutputWriter,
    check_writable,
)
from .plan import Plan, States
from .sessions import (
    PLAN_FILE,
    SessionPlan,
    partition_pieces,
    partitions_for,
    read_plan,
    remove_pieces,
    staged,
)
from .sources import Split
from .sources.compressed import passes_run_by
from .tasks import (
    ShardError,
    ShardFailure,
    ShardResult,
    combine_partials,
    cut_shards,
    fit_shard,
    history_context,
    one_line,
    prepare,
    split_rows,
    stage_shard,
    staged_sessions,
)

log = logging.getLogger(__name__)


class Progress(Protocol):
    def start(
        self, total_shards: int, est_rows: int, done_shards: int, done_rows: int, done_quarantined: int
    ) -> None: ...
    def advance(self, result: ShardResult) -> None: ...
    def fitted(self, est_rows: int) -> None: ...
    def phase(self, name: str) -> None: ...
    def warn(self, message: str) -> None: ...


#: An op that makes more than this fraction of a column's values null (over the whole job) is
#: reported: in the summary, in the driver's progress and so in the job's status.
NULLED_WARNING = 0.01


@dataclass
class RunSummary:
    job: str
    output: str
    shards: int = 0
    shards_skipped: int = 0  #: already committed by an earlier run
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    rows_processed: int = 0  #: read by this run (committed shards of an earlier run excluded)
    seconds: float = 0.0
    workers: int = 0
    cores: int = 0
    quarantine_files: list[str] = field(default_factory=list)
    #: what the user should know about the run (one line each): ops that made many values null,
    #: committed shards redone because they no longer matched their records, a repaired ledger
    warnings: list[str] = field(default_factory=list)
    #: the run's accounting (``isp_nodes.accounting.Account.to_json``): bytes, busy seconds per
    #: pool, modelled energy and cost; also in ``<output>/_accounting.json``
    accounting: dict = field(default_factory=dict)
    #: what the autoscaler changed (``spec.autoscale``, embedded cluster): one line each, with
    #: when and why
    scaling: list[str] = field(default_factory=list)

    @property
    def rows_conserved(self) -> bool:
        """Every row read was written or quarantined."""
        return self.rows_read == self.rows_written + self.rows_quarantined

    @property
    def rows_per_second_per_core(self) -> float:
        return self.rows_processed / self.seconds / max(self.cores, 1) if self.seconds else 0.0


def _identity(job: PreprocessJob, source, splits: list[Split], plan: Plan) -> str:
    """The job's identity with its split plan (a source of compressed text files alone: each
    file's path and compressed size, ``decode_once.description``: the same whether its files
    are decoded once or planned into splits); and, when the source has columns in no role, the
    columns that are left out: shards once kept every column, so an output written before that
    is another job's and is not resumed into shards of another schema. Likewise the history
    lists a deduplicated shard leaves out (its flag columns: ``output.derived``)."""
    if decode_once.compressed_text(source):
        described = json.dumps(decode_once.description(source), sort_keys=True)
    else:
        described = json.dumps([s.describe() for s in splits], sort_keys=True)
    dropped = f"dropped:{json.dumps(plan.dropped)}" if plan.dropped else ""
    derived = f"derived:{json.dumps([d.to_json() for d in plan.derived])}" if plan.derived else ""
    return hashlib.sha256((job.identity() + described + dropped + derived).encode()).hexdigest()


#: Dask settings for the embedded cluster. The statistical profiler samples every worker thread's
#: stack every 10 ms while holding the GIL: a few percent of a CPU-bound shard task for a
#: dashboard view recprep does not use.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


class WorkerLog(WorkerPlugin):
    """A worker plugin for the embedded cluster: what a worker process prints on its standard
    error (other libraries' warnings, C++ ones included) goes to ``path`` instead of the
    terminal, where it would cut through the progress bar. Python warnings become log records."""

    name = "recprep-worker-log"

    def __init__(self, path: str):
        self.path = path

    def setup(self, worker) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        logging.captureWarnings(True)


@contextlib.contextmanager
def _client(
    workers: int | None,
    scheduler: str | None,
    client,
    log_path: str | None = None,
    isp: tuple[int, int] = (0, 1),
):
    """(client, embedded cluster or None): the client given, one of ``scheduler``, or one of an
    embedded cluster of ``workers`` single-threaded CPU workers (default: one per core the ISP
    workers leave) and ``isp = (nodes, units)`` ISP workers (one per storage node,
    ``isp_nodes.worker``)."""
    if client is not None:
        yield client, None
        return
    from distributed import Client, Nanny, Scheduler, SpecCluster

    if scheduler:
        with Client(scheduler, timeout="30s") as c:
            yield c, None
        return
    from ..isp_nodes.placement import local_nodes
    from ..isp_nodes.worker import embedded_specs

    n = local_cpu_workers(isp) if workers is None else workers
    specs = {f"cpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "name": f"cpu-{i}"}} for i in range(n)}
    specs |= embedded_specs(local_nodes(isp[0]), isp[1])
    for spec in specs.values():
        spec["options"]["silence_logs"] = logging.ERROR
    with (
        dask.config.set(WORKER_CONFIG),
        SpecCluster(
            workers=specs,
            scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
            silence_logs=logging.ERROR,
            name="recprep",
        ) as cluster,
        Client(cluster) as c,
    ):
        if log_path:
            c.register_plugin(WorkerLog(log_path))
        yield c, cluster


def local_cpu_workers(isp: tuple[int, int]) -> int:
    """The CPU workers this machine runs beside ``isp = (nodes, units)`` ISP workers: the cores
    their units leave (at least one), of the cores this process may use (``machine``: in a
    container, its CPU limit, not the node's cores)."""
    return max(1, usable_cores() - isp[0] * isp[1])


def run_job(
    job: PreprocessJob,
    *,
    workers: int | None = None,
    output: str | None = None,
    overwrite: bool = False,
    scheduler: str | None = None,
    client=None,
    progress: Progress | None = None,
    fsync: bool = False,
    isp_workers: int | None = None,
    monitor=None,
    decode: str = "auto",
    threads: int | None = None,
) -> RunSummary:
    """Run ``job`` to completion and return what it did. Raises RecprepError subclasses with
    messages naming the field, file or line; committed shards are never removed by a failure.
    ``isp_workers``: ISP workers (storage nodes) of the embedded cluster; default: a job that
    names ``spec.pools.isp`` gets max(1, min) of them (at most its max), any other none.
    ``monitor`` (``recprep.dashboard.local.LocalMonitor``) is told, from this thread, of the
    client (``connected``), the autoscaler (``autoscaled``) and the workers that take tasks at
    every pass of the shard loop (``observed``). ``decode``: how compressed files are read
    (``decode_once``: "auto", "once" or "splits"); ``threads``: the worker threads its policy
    counts on (default: the cluster's, see ``_threads``)."""
    if output:
        job = job.model_copy(
            update={
                "spec": job.spec.model_copy(
                    update={"output": job.spec.output.model_copy(update={"uri": output})}
                )
            }
        )
    directory = output_location(job.spec.output.uri)
    source, plan = prepare(job)  # source exists, plan type-checks: before any work
    sessions = staged_sessions(job)
    # before the splits: planning a compressed input is work (a pass over each file), and it
    # keeps its plan in the output's _index/
    check_writable(directory)
    if threads is None:
        threads = _threads(job, workers, scheduler, client, isp_workers)
    once = decode_once.files_to_decode(job, source, plan, sessions, threads, isp_workers or 0, decode)
    splits = [] if once else _splits(source, job, client)
    identity = _identity(job, source, splits, plan)
    summary = RunSummary(job.metadata.name, directory)
    started = time.perf_counter()
    # the directory is this run's until it returns: a second run on it is refused meanwhile
    record = JobRecord(
        identity, job.metadata.name, job.spec.model_dump(mode="json", by_alias=True), len(splits)
    )
    with OutputWriter(directory, fsync=fsync) as ledger:
        # "shards": the planned shard count, how the shard service knows the job is complete (a
        # session job knows it once its sessions are cut, a job decoding its files once when
        # they are counted: _job.json is written then)
        ledger.open(replace(record, shards=None) if sessions or once else record, overwrite)
        if once:  # its shards are committed before they are counted: the output is the job's now
            ledger.record_job(replace(record, shards=None))
        if isinstance(source, GroupedSessionSource):
            recall(directory, identity)
        _opening_warnings(ledger, summary, progress)
        isp = (embedded_isp_workers(job, isp_workers), job.spec.pools.isp.units)
        if workers is None and _names(job, "autoscale"):  # the autoscaler grows the pool from its min
            floor = 0 if isp[0] else 1
            workers = max(floor, min(job.spec.pools.cpu.min, local_cpu_workers(isp)))
        worker_log = os.path.join(directory, WORKER_LOG) if ledger.store.local else None
        with _client(workers, scheduler, client, worker_log, isp) as (c, cluster):
            if monitor is not None:
                monitor.connected(c)
            info = scheduler_workers(c)
            summary.workers = len(info)
            summary.cores = sum(w.get("nthreads", 1) for w in info.values()) or 1
            if once:
                look = _looking(c, job, summary, directory, monitor)
                shards = decode_once.run_files(
                    c, job, source, directory, ledger, summary, progress, fsync, _result, look
                )
                ledger.record_job(replace(record, shards=shards))
                summary.shards = shards
            else:
                shards = _by_splits(
                    c,
                    cluster,
                    job,
                    source,
                    plan,
                    splits,
                    isp,
                    record,
                    directory,
                    ledger,
                    summary,
                    progress,
                    fsync,
                    monitor,
                    sessions,
                    identity,
                )
        _nulled_warnings(plan, ledger, shards, summary, progress)
    summary.seconds = time.perf_counter() - started
    _check_bad_fraction(job, summary)
    if monitor is not None:
        monitor.finished(True)
    return summary


def _by_splits(
    c,
    cluster,
    job,
    source,
    plan: Plan,
    splits,
    isp,
    record,
    directory,
    ledger,
    summary,
    progress,
    fsync,
    monitor,
    sessions,
    identity,
) -> int:
    """The shards of a job planned into splits (every job but one decoding its files once):
    a session job's sessions first, the fit if any, then a task per shard; returns the job's
    shard count."""
    session_plan = None
    if sessions:
        session_plan = _sessions(c, job, plan, splits, directory, ledger, identity, progress, fsync)
        splits = session_plan.splits(history_context(plan))
        ledger.record_job(replace(record, shards=len(splits)))
        summary.rows_quarantined = session_plan.bad_rows
        summary.quarantine_files += session_plan.quarantine
    states: States = {}
    if plan.needs_fit:
        states = _fit(c, job, plan, splits, ledger, identity, progress)
    wanted = isp[0] if cluster is not None else job.spec.pools.isp.min
    scaler = None
    if cluster is not None and _names(job, "autoscale"):
        from ..predictor.policies import policy_from
        from .autoscaling import EmbeddedAutoscaler

        scaler = EmbeddedAutoscaler(
            cluster,
            c,
            job,
            policy_from(job.spec.autoscale),
            sum(s.est_rows for s in splits),
            local_cpu_workers(isp),
        )
    if monitor is not None and scaler is not None:
        monitor.autoscaled(scaler)
    _transform(
        c,
        job,
        plan,
        splits,
        states,
        directory,
        ledger,
        summary,
        progress,
        fsync,
        wanted,
        scaler,
        identity,
        monitor,
        _grouping(job, source),
    )
    if scaler is not None:
        summary.scaling = scaler.summary()
        summary.cores = max(summary.cores, scaler.peak_threads)
    if session_plan is not None and len(ledger.commits) >= len(splits):
        remove_pieces(directory)
    return len(splits)


def _threads(
    job: PreprocessJob, workers: int | None, scheduler: str | None, client, isp_workers: int | None
) -> int:
    """The worker threads the job will have (``decode_once``'s policy weighs them against its
    files): a client's cluster's now; a scheduler's (the operator's driver: its CPU pool grows
    up to ``spec.pools.cpu.max``), that most; the embedded cluster's, its CPU workers."""
    if client is not None:
        return sum(int(w.get("nthreads", 1)) for w in scheduler_workers(client).values())
    if scheduler:
        return max(job.spec.pools.cpu.max, 1)
    isp = (embedded_isp_workers(job, isp_workers), job.spec.pools.isp.units)
    return workers if workers is not None else local_cpu_workers(isp)


def _looking(c, job: PreprocessJob, summary: RunSummary, directory: str, monitor):
    """What the driver does at each look while files are decoded once: stop on more bad rows
    than the source allows (of its rows as estimated), show the workers on the local dashboard."""
    from .locality import Topology

    looked = [-math.inf]

    def look(est_rows: int) -> None:
        limit = job.spec.source.max_bad_fraction * est_rows
        if est_rows and summary.rows_quarantined > limit and summary.rows_quarantined > 0:
            raise BadDataError(_bad_message(job, summary, directory, estimated=True))
        if monitor is not None and time.monotonic() - looked[0] >= 1.0:
            looked[0] = time.monotonic()
            monitor.observed(Topology.read(c))

    return look


def _splits(source, job: PreprocessJob, client) -> list[Split]:
    """The source's splits. On a cluster the driver was given (``recprep run --scheduler``: the
    operator's driver), the planning passes of compressed files run on its workers
    (``planning``); the embedded cluster's workers share this machine's cores, so its driver
    runs them itself, as ``recprep validate`` does."""
    if client is None:
        return source.splits(split_rows(job))
    from .planning import WorkerPasses

    with passes_run_by(WorkerPasses(client)):
        return source.splits(split_rows(job))


def embedded_isp_workers(job: PreprocessJob, override: int | None) -> int:
    """ISP workers of the embedded cluster (see ``run_job``)."""
    if override is not None:
        return override
    pool = job.spec.pools.isp
    return min(max(1, pool.min), pool.max) if _names_isp(job) else 0


def _names_isp(job: PreprocessJob) -> bool:
    """The job file configures the ISP pool (a job that does not gets no ISP worker locally,
    and no word about it)."""
    return "isp" in job.spec.pools.model_fields_set


def _names(job: PreprocessJob, field: str) -> bool:
    """The job file sets ``spec.<field>``."""
    return field in job.spec.model_fields_set


#: Seconds between two reads of the trainers' consumption for the progress document.
CONSUMPTION_INTERVAL = 5.0
#: Seconds the driver waits for the ISP workers it expects (``spec.pools.isp.min`` on a cluster,
#: the embedded cluster's own) to join before it places shards (the ISP pods start beside the
#: driver); shards then go to the storage nodes that joined, or all to the CPU pool.
ISP_WAIT = 120.0


def _warn(summary: RunSummary, progress: Progress | None, message: str) -> None:
    summary.warnings.append(message)
    log.warning("%s", message)
    if progress is not None:
        progress.warn(message)


def _opening_warnings(ledger: OutputWriter, summary: RunSummary, progress: Progress | None) -> None:
    if ledger.repaired_bytes:
        _warn(
            summary,
            progress,
            f"{ledger.path}: a torn last line ({ledger.repaired_bytes} bytes, a crash "
            "mid-commit) was cut off; its shard is done again",
        )
    if ledger.redone:
        shards = ", ".join(str(r.shard) for r in ledger.redone[:10])
        more = f" and {len(ledger.redone) - 10} more" if len(ledger.redone) > 10 else ""
        _warn(
            summary,
            progress,
            f"{len(ledger.redone)} committed shard(s) no longer matched their ledger "
            f"records and are done again: {shards}{more} (first: {ledger.redone[0].reason})",
        )


def _consumption(directory: str, ledger: OutputWriter, identity: str):
    """What the trainers have consumed so far, as a function for the autoscaler: the rows of the
    shards the shard service's groups acknowledged in their first epoch (a shard service keeps
    them in ``<output>/_service``, in the object store too for an object store output, so a driver
    on another host reads them); None while no group has joined."""
    from ..delivery.service.acks import consumed_rows, default_state_dir

    state = default_state_dir(directory)

    def consumed() -> int | None:
        return consumed_rows(state, identity, {i: r.rows for i, r in ledger.commits.items()})

    return consumed


def _nulled_warnings(
    plan: Plan, ledger: OutputWriter, shards: int, summary: RunSummary, progress: Progress | None
) -> None:
    """An op that made more than NULLED_WARNING of a column's values null, over every
    committed shard of the job (earlier runs' included: the counts are in the ledger)."""
    totals: dict[str, list[int]] = {}
    for index, record in ledger.commits.items():
        for key, (made, seen) in (record.nulled or {}).items() if index < shards else ():
            entry = totals.setdefault(key, [0, 0])
            entry[0] += made
            entry[1] += seen
    ops = {s.index: s.op.name for s in plan.steps}
    for key, (made, seen) in sorted(totals.items(), key=lambda kv: (int(kv[0].split(":", 1)[0]), kv[0])):
        if seen and made / seen > NULLED_WARNING:
            step, column = key.split(":", 1)
            _warn(
                summary,
                progress,
                f"spec.transforms[{step}] ({ops.get(int(step), '?')} on {column}) made "
                f"{made:,} of {seen:,} values null ({made / seen:.1%}): check the input or the op",
            )


def _near(split: Split, holders: dict[str, list[str]]) -> dict:
    """Dask restrictions that read a split on the ISP worker of its storage node, if any (only
    the fit's partial statistics then leave the node); loose, so any worker takes it otherwise."""
    node = holder(split_key(split.path, split.start, split.stop), holders)
    return {"workers": holders[node], "allow_other_workers": True} if node else {}


def _sessions(c, job, plan: Plan, splits, directory: str, ledger, identity: str, progress, fsync: bool):
    """A session job's staging and cutting (``sessions``), or the plan an earlier run of the
    same job kept (while every shard's file the cut wrote is there, or nothing is left to do)."""
    saved = read_plan(directory, identity)
    if saved is not None and (len(ledger.commits) >= len(saved.shards) or staged(directory, saved)):
        return saved
    partitions = partitions_for(sum(s.est_rows for s in splits), job.spec.output.rows_per_shard)
    context = history_context(plan)
    if progress:  # the source's splits grouped so far (as the fit shows the splits it read)
        progress.phase("sessions")
        progress.start(len(splits), sum(s.est_rows for s in splits), 0, 0, 0)
    found = SessionPlan(identity, partitions)
    staged_splits = []
    for future in [c.submit(stage_shard, job, s, partitions, fsync, pure=False) for s in splits]:
        done = _result(future)  # in split order
        if progress:
            progress.fitted(done.rows + done.bad_rows)
        found.rows += done.rows
        found.bad_rows += done.bad_rows
        if done.quarantine:
            found.quarantine.append(done.quarantine)
        staged_splits.append(done)
    pieces = partition_pieces(staged_splits, partitions)
    cuts = [c.submit(cut_shards, job, p, pieces[p], context, fsync, pure=False) for p in range(partitions)]
    for future in cuts:
        cut = _result(future)
        found.shards += [(cut.partition, a, b) for a, b in zip(cut.cuts, cut.cuts[1:])]
        found.sessions += cut.sessions
    ledger.store.put(PLAN_FILE, found.to_json(), fsync)
    return found


def _fit(c, job, plan: Plan, splits, ledger: OutputWriter, identity: str, progress) -> States:
    from distributed import as_completed

    from .locality import Topology

    saved = ledger.load_fit(identity)
    if saved is not None:
        return saved
    states: States = {}
    holders = Topology.read(c).isp if plan.offloadable else {}
    for stage in range(len(plan.fit_stages)):
        if progress:
            progress.phase(f"fit {stage + 1}/{len(plan.fit_stages)}")
        leaves = [
            c.submit(fit_shard, job, s, stage, dict(states), pure=False, **_near(s, holders)) for s in splits
        ]
        level = leaves
        while len(level) > 1:  # a binary tree over shard order: same shape for any worker count
            nxt = [c.submit(combine_partials, job, a, b, pure=False) for a, b in zip(level[::2], level[1::2])]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        if progress:  # the shards read so far (their rows as estimated: a partial holds no count)
            progress.start(len(splits), sum(s.est_rows for s in splits), 0, 0, 0)
            rows = {leaf.key: s.est_rows for leaf, s in zip(leaves, splits)}
            for leaf in as_completed(leaves):
                progress.fitted(rows[leaf.key])
        partials = _result(level[0])
        ops = {s.index: s.op for s in plan.steps}
        for key, partial in partials.items():
            try:
                states[key] = ops[key[0]].finalize(partial)
            except ValueError as exc:
                raise RecprepError(
                    f"spec.transforms[{key[0]}] ({ops[key[0]].name} on {key[1]}): {exc}"
                ) from None
    ledger.save_fit(identity, states)
    return states


def _transform(
    c,
    job,
    plan: Plan,
    splits: list[Split],
    states,
    directory,
    ledger: OutputWriter,
    summary: RunSummary,
    progress,
    fsync,
    wanted_isp: int = 0,
    scaler=None,
    identity: str = "",
    monitor=None,
    grouping: GroupingCheck | None = None,
):
    from ..isp_nodes.accounting import Account, placement_record
    from .locality import Topology, run_shards, wait_for_isp

    done = {i: e for i, e in ledger.commits.items() if i < len(splits)}
    summary.shards = len(splits)
    landed_before(summary, list(done.values()))
    todo = [s for s in splits if s.index not in done]
    est_total = sum(s.est_rows for s in splits)
    if progress:
        progress.phase("transform")
        progress.start(len(splits), est_total, len(done), summary.rows_read, summary.rows_quarantined)
    if not todo:
        return
    pool = job.spec.pools.isp
    topology = wait_for_isp(c, wanted_isp, ISP_WAIT) if wanted_isp else Topology.read(c)
    offload, why_not = plan.offloadable > 0, ""
    if not offload:
        op = plan.steps[0].op.name if plan.steps else None
        why_not = (
            f"spec.transforms[0] ({op}) is not offloaded to ISP units: the CPU pool runs the shard"
            if op
            else "the job has no transform to offload: the CPU pool runs the shard"
        )
    account = Account(pool.model, job.spec.pools.cpu.preemptible)
    account.workers = {"isp": len(topology.isp), "cpu": topology.cpu_threads}
    limit = job.spec.source.max_bad_fraction * max(est_total, 1)
    started = time.perf_counter()
    consumed = _consumption(directory, ledger, identity)
    publish = progress is not None and hasattr(progress, "consumed")
    looked = [-math.inf]

    def tick(topo) -> None:
        if scaler is not None:
            scaler.tick(topo, summary.rows_read, summary.rows_written, consumed)
        if monitor is not None:
            monitor.observed(topo)
        if publish and time.monotonic() - looked[0] >= CONSUMPTION_INTERVAL:
            looked[0] = time.monotonic()
            progress.consumed(consumed())

    landed_shards = run_shards(
        c, job, plan, todo, states, directory, fsync, topology, offload, why_not, _result, tick
    )
    for landed in landed_shards:
        r = landed.result
        if scaler is not None:
            scaler.landed(r)
        placement = placement_record(r, landed.holder, landed.reason)
        if grouping is not None:
            grouping.add(r.index, r.keys)
        described = splits[r.index].describe()
        land(ledger, r, described, placement, summary, account, topology.worker_units, progress)
        if summary.rows_quarantined > limit and summary.rows_quarantined > 0:
            landed_shards.close()
            raise BadDataError(_bad_message(job, summary, directory, estimated=True))
        if grouping is not None and grouping.due():
            _check_grouping(grouping, directory, identity, fsync, landed_shards)
    if grouping is not None:
        _check_grouping(grouping, directory, identity, fsync)
    account.wall_seconds = time.perf_counter() - started
    accounted(account, summary, ledger, progress)
    if _names_isp(job) and not topology.isp:
        _warn(
            summary,
            progress,
            f"spec.pools.isp: no ISP worker joined; all {len(todo)} shards ran on the CPU pool "
            "(CPU-centric: their raw data crossed the network)",
        )
    elif _names_isp(job) and not offload:
        _warn(summary, progress, f"spec.pools.isp: {why_not}; all {len(todo)} shards ran on the CPU pool")


def _check_grouping(grouping: GroupingCheck, directory: str, identity: str, fsync: bool, landed=None) -> None:
    """The grouped source's check of the splits landed so far; when it fails, the tasks still
    running (``landed``, the shards' generator) are stopped, the committed shards kept, and the
    failure kept in the output for a later run (``grouped_sessions.remember``)."""
    try:
        grouping.check()
    except GroupingError as exc:
        if landed is not None:
            landed.close()
        remember(directory, identity, exc, fsync)
        raise


def _grouping(job: PreprocessJob, source) -> GroupingCheck | None:
    """The driver's check of a grouped session source (``grouped_sessions``), or None."""
    if not isinstance(source, GroupedSessionSource):
        return None
    return GroupingCheck(job.spec.source.session, source.where_key)


def _result(future, timeout: float | None = None):
    """A task's result; a failed shard (or a worker lost under it) as one ShardError line.
    ``timeout``: seconds to wait for it (``TimeoutError`` after them)."""
    from distributed import KilledWorker

    try:
        result = future.result(timeout=timeout)
    except KilledWorker as exc:
        raise ShardError(
            one_line(
                f"a worker died while it ran {exc.task!r} ({exc}): out of memory? each worker needs about "
                "ten times a shard's size in memory; try a smaller spec.output.rowsPerShard"
            )
        ) from None
    if isinstance(result, ShardFailure):
        raise ShardError(result.message)
    return result


def _bad_message(job, summary: RunSummary, directory: str, estimated: bool = False) -> str:
    frac = summary.rows_quarantined / max(summary.rows_read, 1)
    return (
        f"{summary.rows_quarantined} malformed rows ({frac:.2%} of {summary.rows_read} read"
        f"{', more than the whole source allows' if estimated else ''}) exceed "
        f"spec.source.maxBadFraction={job.spec.source.max_bad_fraction}; they are listed in "
        f"{os.path.join(directory, QUARANTINE_DIR)}; committed shards are kept"
    )


def _check_bad_fraction(job: PreprocessJob, summary: RunSummary) -> None:
    if summary.rows_read and summary.rows_quarantined / summary.rows_read > job.spec.source.max_bad_fraction:
        raise BadDataError(_bad_message(job, summary, summary.output))
