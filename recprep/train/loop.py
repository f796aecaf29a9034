"""The training loop behind ``recprep train``: a DLRM fed by the shard loader, with the embedding
tables uncached, or behind a look-ahead (ScratchPipe) or LRU device cache.

Pipeline: a background thread cuts numpy batches from the shard stream, maps each sparse ID to a
table row (``id % table_rows``, the DLRM reference's hashing of IDs into its tables), and, for
the look-ahead cache, plans every batch ``window`` batches before it trains; the training thread
carries out the due plans, trains (BCE loss on the logit; the dense MLPs and the embeddings each
get the chosen optimizer, the embeddings with sparse gradients) and acknowledges the shards a
batch completes once its step is done. The LRU cache plans and fetches on the training thread,
when the step needs the rows, as a backward-looking cache does.

Deduplicated shards (RecD): one table per sparse feature in the roles' order, as for plain shards
(``ArrayBatch.sparse_keys``), so the tables of a deduplicated output compare one to one with the
plain output's. A dedup group's feature is looked up once per unique row of the batch (its IDs
are what ``table_rows`` reduces and the caches plan and count) and the pooled vectors are
expanded with the group's inverse index (``recprep.train.model``).

Reported: samples/s over the steps, the fraction of that time the training thread waited for
its next batch, the loss, and per cache the train-time hit rate and the rows moved.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from ..delivery.batching import ArrayBatch
from ..errors import RecprepError
from ..workloads.machine import usable_cores
from .cache import CacheStats, DeviceCache
from .cache_plan import LookaheadPlanner, LRUPlanner, TablePlan, plan_ahead
from .config import TrainConfig, TrainConfigError
from .loader import Prefetcher, default_device, epoch_batches
from .model import DLRM, init_table
from .pace import Pacer
from .tables import TableRows, check_fits, host_memory, resolve_table_rows

log = logging.getLogger(__name__)


@dataclass
class TrainReport:
    source: str
    device: str
    cache: str
    threads: int = 0  #: torch's intra-op threads (--threads, else one per core the process may use)
    table_rows: int = 0  #: rows per embedding table
    table_rows_note: str = ""  #: where table_rows comes from (the option, the job, the default)
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    data_wait_seconds: float = 0.0
    #: held back by --rows-per-second (its schedule in ``pace``)
    held_seconds: float = 0.0
    pace: str | None = None
    cache_seconds: float = 0.0  #: carrying out cache plans on the training thread
    shards_acknowledged: int = 0
    acknowledged: list[int] = field(default_factory=list)  #: the shards acknowledged, in order
    loss_first: float | None = None  #: mean loss of the first 10 steps
    loss_last: float | None = None  #: mean loss of the last 10 steps
    cache_rows: int | None = None
    window: int | None = None
    horizon: int | None = None
    cache_stats: CacheStats | None = None

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def data_wait_fraction(self) -> float:
        return self.data_wait_seconds / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["samples_per_second"] = self.samples_per_second
        d["data_wait_fraction"] = self.data_wait_fraction
        if self.cache_stats is not None:
            d["cache_stats"]["hit_rate"] = self.cache_stats.hit_rate
        return d


@dataclass
class TrainResult:
    report: TrainReport
    model: DLRM
    tables: list[torch.Tensor]  #: every embedding table in full (host copies when cached)
    sparse_optimizer: torch.optim.Optimizer
    caches: list[DeviceCache] = field(default_factory=list)
    losses: torch.Tensor | None = None  #: every step's loss, in order (CPU; None: no step)

    def optimizer_state(self, i: int, key: str = "sum") -> torch.Tensor:
        """Table ``i``'s row-aligned optimizer state in full (host copy when cached)."""
        if self.caches:
            return self.caches[i].host_state(key)
        return self.sparse_optimizer.state[self.model.embeddings[i].weight][key].detach().to("cpu")


@dataclass
class _Step:
    """One batch ready for the training thread (CPU tensors, pinned for a GPU)."""

    batch: ArrayBatch
    rows: list[np.ndarray]  #: table rows of each feature's IDs
    dense: torch.Tensor
    labels: torch.Tensor
    offsets: list[torch.Tensor | None]  #: None: one ID in every bag
    lookups: list[tuple[torch.Tensor, torch.Tensor]] | None = None  #: (distinct rows or slots, inverse)
    #: per feature, its dedup group's index in ``inverses`` (None: per-sample bags)
    expand: list[int | None] = field(default_factory=list)
    inverses: list[torch.Tensor] = field(default_factory=list)  #: per dedup group, (B,) int64
    plans: list[TablePlan] | None = None  #: look-ahead: this batch's plan per table
    due: list[list[TablePlan]] = field(default_factory=list)  #: look-ahead: carry out before this step


def one_each(ids: np.ndarray, offsets: np.ndarray) -> bool:
    """Whether every bag holds one ID: as many IDs as bags, each bag starting one after the one
    before (a bag's offset is where it starts in ``ids``, the first 0). The model then takes the
    IDs as the bags (``offsets`` None)."""
    return len(ids) == len(offsets) and bool((np.diff(offsets) == 1).all())


def _prepare(batch: ArrayBatch, table_rows: int, pin: bool) -> _Step:
    """Every sparse feature's table rows and bag offsets, in ``sparse_keys`` order (a dedup
    group's feature: of its unique rows, with the group's inverse index to expand them)."""
    rows, offsets, expand = [], [], []
    group_index = {g.name: k for k, g in enumerate(batch.groups)}
    for key in batch.sparse_keys:
        ids, bag_offsets, group = batch.lookup(key)
        rows.append(np.remainder(ids, table_rows))
        offsets.append(None if one_each(ids, bag_offsets) else torch.from_numpy(bag_offsets))
        expand.append(None if group is None else group_index[group.name])
    step = _Step(batch, rows, torch.from_numpy(batch.dense), torch.from_numpy(batch.labels), offsets)
    step.expand, step.inverses = expand, [torch.from_numpy(g.inverse) for g in batch.groups]
    if pin:
        step.dense, step.labels = step.dense.pin_memory(), step.labels.pin_memory()
        step.offsets = [None if o is None else o.pin_memory() for o in step.offsets]
        step.inverses = [i.pin_memory() for i in step.inverses]
    return step


def _lookups(pairs, pin: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = [
        (torch.from_numpy(np.ascontiguousarray(u)), torch.from_numpy(np.ascontiguousarray(i)))
        for u, i in pairs
    ]
    return [(u.pin_memory(), i.pin_memory()) for u, i in out] if pin else out


def _with_lookups(step: _Step, pairs, pin: bool) -> _Step:
    step.lookups = _lookups(pairs, pin)
    return step


class NonFiniteLossError(RecprepError):
    """The loss became inf or NaN: training stops before the model takes the step."""


def _non_finite_message(step: int, loss, dense, labels) -> str:
    bad_dense = int((~torch.isfinite(dense)).sum())
    cause = (
        f"the batch holds {bad_dense} non-finite dense values"
        if bad_dense
        else "the inputs are finite: the model diverged (try a lower --lr)"
    )
    return (
        f"training stopped at step {step + 1}: the loss is {float(loss.detach())} ({cause}); "
        "the shards of the batches trained so far are acknowledged, this batch's are not"
    )


def _cache_step(step: _Step, caches: list[DeviceCache], lru: list[LRUPlanner] | None):
    """Carry out the plans due before this step and return what the tables look up. Counts the
    lookups whose row is on the device as the step starts, and checks that every lookup hits
    once the step's own plans (LRU: its misses) are carried out."""
    for plans in step.due:  # look-ahead: the rows of the batch `window` steps ahead
        for c, p in zip(caches, plans):
            c.apply(p)
    plans = [p.access(r) for p, r in zip(lru, step.rows)] if lru is not None else step.plans
    for c, rows, p in zip(caches, step.rows, plans):
        c.stats.hits += c.resident(p)
        c.stats.lookups += rows.size
        if lru is not None:  # the misses are fetched now, on the training step's critical path
            c.apply(p)
        if c.resident(p) != rows.size:
            raise RuntimeError(f"{c.name}: a lookup missed the cache at step {p.step} (a bug)")
    return step.lookups if lru is None else _lookups((p.unique_slots, p.inverse) for p in plans)


def _optimizer(kind: str, params, lr: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adagrad(params, lr=lr)


def train(config: TrainConfig) -> TrainResult:
    """Train on ``config.source`` and return the report, the model and the full tables."""
    config.check()
    device = torch.device(config.device) if config.device else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainConfigError("--device cuda: no GPU is available")
    pin = device.type == "cuda"
    # torch's default is a thread per core of the node, even in a container limited to fewer:
    # threads beyond the CPU quota spin against each other (``machine.usable_cores``)
    torch.set_num_threads(
        config.threads if config.threads is not None else min(torch.get_num_threads(), usable_cores())
    )
    report = TrainReport(config.source.describe(), str(device), config.cache)
    report.threads = torch.get_num_threads()
    if config.pace is not None:
        report.pace = config.pace.describe()

    batches = epoch_batches(
        config.source,
        config.batch_size,
        config.epochs,
        config.features,
        session_slack=config.session_slack,
    )
    first = next(batches, None)
    if first is None:
        raise RecprepError(f"{config.source.describe()}: no committed shards to train on")
    keys = first.sparse_keys  # one table per sparse feature, in the roles' order
    if not keys:  # a DLRM without embedding tables has nothing to look up
        if config.features is not None and config.features.sparse is not None:
            raise TrainConfigError("--sparse: names no column; a DLRM needs at least one sparse feature")
        raise RecprepError(
            f"{config.source.describe()}: the shards have no sparse features (the job's "
            "spec.source.sparse is empty): a DLRM needs at least one; name integer columns with --sparse"
        )
    n_tables = len(keys)
    if config.table_rows is None:
        sized = resolve_table_rows(config.source, keys)
        check_fits(sized, n_tables, config.embedding_dim, config.optimizer, host_memory())
        config = replace(config, table_rows=sized.rows)
        report.table_rows, report.table_rows_note = sized.rows, sized.note
    else:
        check_fits(
            TableRows(config.table_rows, "--table-rows"),
            n_tables,
            config.embedding_dim,
            config.optimizer,
            host_memory(),
        )
        report.table_rows, report.table_rows_note = config.table_rows, "--table-rows"
    log.info("embedding tables of %d rows (%s)", report.table_rows, report.table_rows_note)
    stream: Iterator[_Step] = (_prepare(b, config.table_rows, pin) for b in itertools.chain([first], batches))

    torch.manual_seed(config.seed)
    tables = [
        init_table(config.table_rows, config.embedding_dim, config.seed * 1000 + i) for i in range(n_tables)
    ]
    caches: list[DeviceCache] = []
    if config.cache == "none":
        embeddings = [
            torch.nn.Embedding(config.table_rows, config.embedding_dim, sparse=True, _weight=t.to(device))
            for t in tables
        ]
        stream = (_with_lookups(s, [np.unique(r, return_inverse=True) for r in s.rows], pin) for s in stream)
    else:
        caches = [DeviceCache(t, config.cache_rows, device, name=k) for t, k in zip(tables, keys)]
        embeddings = [c.table for c in caches]
        report.cache_rows = caches[0].capacity
        if config.cache == "lookahead":
            report.window, report.horizon = config.window, config.horizon
    model = DLRM(
        first.dense.shape[1], embeddings, config.embedding_dim, config.bottom_mlp, config.top_mlp
    ).to(device)
    dense_opt = _optimizer(config.optimizer, model.dense_parameters(), config.lr)
    sparse_opt = _optimizer(config.optimizer, model.embedding_parameters(), config.lr)
    for c in caches:
        c.attach_optimizer(sparse_opt)

    planners: list = []
    if config.cache == "lookahead":
        planners = [LookaheadPlanner(config.table_rows, config.cache_rows, config.window, k) for k in keys]

        def plan(step: _Step, upcoming: list[_Step]) -> list[TablePlan]:
            step.plans = [
                p.admit(rows, [u.rows[i] for u in upcoming])
                for i, (p, rows) in enumerate(zip(planners, step.rows))
            ]
            return step.plans

        def planned(steps: Iterator[_Step]) -> Iterator[_Step]:
            for s, plans, due in plan_ahead(steps, plan, config.window, config.horizon):
                s.due = due
                yield _with_lookups(s, [(p.unique_slots, p.inverse) for p in plans], pin)

        stream = planned(stream)
    elif config.cache == "lru":
        planners = [LRUPlanner(config.table_rows, config.cache_rows, k) for k in keys]

    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses: list[torch.Tensor] = []
    pacer = Pacer(config.pace) if config.pace is not None else None
    started = time.perf_counter()
    with Prefetcher(stream, config.prefetch, name="recprep-train-loader") as items:
        while config.steps is None or report.steps < config.steps:
            while pacer is not None:  # not faster than the schedule allows the next batch
                hold = pacer.hold(time.perf_counter() - started, report.samples, config.batch_size)
                if hold <= 0:
                    break
                time.sleep(hold)  # pacing: the demand a model of that speed would make
                report.held_seconds += hold
            t0 = time.perf_counter()
            step = next(items, None)
            report.data_wait_seconds += time.perf_counter() - t0
            if step is None:
                break
            lookups = step.lookups
            if caches:
                t1 = time.perf_counter()
                lookups = _cache_step(step, caches, planners if config.cache == "lru" else None)
                report.cache_seconds += time.perf_counter() - t1
            if step.batch.size:
                dense = step.dense.to(device, non_blocking=True)
                labels = step.labels.to(device, non_blocking=True)
                inverses = [t.to(device, non_blocking=True) for t in step.inverses]
                feats = [
                    (
                        u.to(device, non_blocking=True),
                        i.to(device, non_blocking=True),
                        None if o is None else o.to(device, non_blocking=True),
                        None if e is None else inverses[e],
                    )
                    for (u, i), o, e in zip(lookups, step.offsets, step.expand)
                ]
                loss = loss_fn(model(dense, feats), labels)
                if not torch.isfinite(loss):  # before the step: the tables never take a NaN update
                    raise NonFiniteLossError(_non_finite_message(report.steps, loss, dense, labels))
                dense_opt.zero_grad(set_to_none=True)
                sparse_opt.zero_grad(set_to_none=True)
                loss.backward()
                dense_opt.step()
                sparse_opt.step()
                losses.append(loss.detach())
                report.steps += 1
                report.samples += step.batch.size
            step.batch.acknowledge()
            report.acknowledged.extend(step.batch.shards)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        report.seconds = time.perf_counter() - started
    report.shards_acknowledged = len(report.acknowledged)
    values = None
    if losses:
        values = torch.stack(losses).float().cpu()
        report.loss_first = float(values[:10].mean())
        report.loss_last = float(values[-10:].mean())
    if caches:
        full = [c.flush() for c in caches]
        stats = CacheStats()
        for c in caches:
            stats.add(c.stats)
        report.cache_stats = stats
    else:
        full = [b.weight.detach().to("cpu") for b in embeddings]
    return TrainResult(report, model, full, sparse_opt, caches, values)
