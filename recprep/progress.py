"""The driver's progress as one small document on the Dask scheduler, for the operator.

``recprep run --scheduler`` (the operator's driver Job) publishes where it is under the
scheduler's metadata key ``KEY`` (``Client.set_metadata``); the operator reads it back with one
``get_metadata`` call (``recprep.operator.scheduler``). The scheduler is the one place both can
reach on any cluster, whatever holds the output (a local path, a shared volume, object
storage), and it outlives a driver retry or an operator restart, so neither loses the count.

The document (all counts are of the whole job, shards committed by an earlier attempt included)::

    {"stage": "plan" | "fit" | "transform" | "done", "detail": "fit 1/2",
     "shardsDone": 3, "shardsTotal": 8, "rows": 15000, "rowsEstimated": 40000,
     "rowsQuarantined": 12, "warnings": ["spec.transforms[3] (hex_to_int on C3) made ..."]}

``rows`` counts the rows read (written or quarantined: every row is one of the two);
``warnings`` are the run's one-line warnings (at most ``MAX_WARNINGS``, each at most
``MAX_WARNING`` characters). Once the transform has landed every shard, the document also
holds ``accounting``: the run's accounting (``recprep.isp_nodes.accounting``, also in
``<output>/_accounting.json``) without its per-ISP-worker details, a few hundred bytes
(:func:`accounting_summary`); null before that::

    "accounting": {"placement": "isp", "shards": 4, "shardsByPool": {"isp": 4}, "rows": 20000,
                   "storedBytes": ..., "networkBytes": {"raw": 0, "handoff": 0, "shard": ..., "total": ...},
                   "busySeconds": {"isp": 1.9, "cpu": 0.0}, "workers": {"isp": 1, "cpu": 1},
                   "wallSeconds": 2.1, "modelled": {"joules": ..., "dollars": ..., "rowsPerJoule": ...}}

``pools`` is what the operator's autoscaler sizes the pools from: per pool (``cpu``: a CPU
worker ran the shard, ``isp``: an ISP worker did), the rows and the task seconds of the shards
this driver attempt finished in one task (a shard split between an ISP and a CPU task counts in
neither), and how many: one worker of the pool produces ``rows / seconds`` rows per second, and
``seconds / shards`` is its time per shard::

    "pools": {"cpu": {"rows": 30000, "seconds": 4.2, "shards": 3}, "isp": {...}}

``consumedRows`` is the trainers' consumption: the rows of the shards the shard service's
consumer groups acknowledged in their first epoch (the most over the groups), null while no
group has joined; the operator's autoscaler takes the demand from how fast it grows.

This module imports neither Kubernetes nor the data plane: the driver wraps its progress
reporter in :class:`SchedulerProgress`; the operator calls :func:`parse`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

#: The scheduler metadata key (one scheduler per job, so no job name in it).
KEY = ("recprep", "progress")
PLAN, FIT, TRANSFORM, DONE = "plan", "fit", "transform", "done"
STAGES = (PLAN, FIT, TRANSFORM, DONE)


def stage_of(phase: str) -> str:
    """The stage of a driver's phase (``Progress.phase``): "fit 1/2" and "transform" name theirs;
    any other ("sessions": grouping a session job's events) is still planning, before the driver
    has written the output's ``_job.json``."""
    return FIT if phase.startswith(FIT) else TRANSFORM if phase.startswith(TRANSFORM) else PLAN


#: Least seconds between two publications while shards land (start, stage changes and the
#: last shard are always published).
MIN_INTERVAL = 0.5
#: Warnings kept in the document (the first ones), and their longest length.
MAX_WARNINGS, MAX_WARNING = 20, 500

#: The fields of the run's accounting the document keeps, and what each holds: an int (>= 0), a
#: number (>= 0), a string, or a mapping of names (pools, bytes' kinds...) to ints or numbers.
#: Left out: ``ispWorkers``, one entry per ISP worker (``<output>/_accounting.json`` has it).
ACCOUNTING_FIELDS: dict[str, str] = {
    "placement": "str",
    "shards": "int",
    "shardsByPool": "ints",
    "rows": "int",
    "storedBytes": "int",
    "networkBytes": "ints",
    "busySeconds": "numbers",
    "workers": "ints",
    "wallSeconds": "number",
    "modelled": "numbers",
}
#: Longest string, and most entries of one mapping, kept in the accounting summary.
MAX_ACCOUNTING_TEXT, MAX_ACCOUNTING_ENTRIES = 40, 8
#: The pools of ``pools`` (a task record's ``node``: None for a CPU worker, its storage node for
#: an ISP worker).
POOLS = ("cpu", "isp")


def document(
    stage: str,
    *,
    detail: str = "",
    shards_done: int = 0,
    shards_total: int | None = None,
    rows: int = 0,
    rows_estimated: int | None = None,
    rows_quarantined: int = 0,
    warnings: list[str] | tuple[str, ...] = (),
    accounting: Mapping[str, Any] | None = None,
    pools: Mapping[str, Any] | None = None,
    consumed_rows: int | None = None,
) -> dict[str, Any]:
    """The progress document (checked: a bad value is a bug in the driver, raise at once;
    ``accounting`` is cut down to :func:`accounting_summary`, ``pools`` to :func:`pool_rates`)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    return {
        "stage": stage,
        "detail": detail or stage,
        "shardsDone": int(shards_done),
        "shardsTotal": None if shards_total is None else int(shards_total),
        "rows": int(rows),
        "rowsEstimated": None if rows_estimated is None else int(rows_estimated),
        "rowsQuarantined": int(rows_quarantined),
        "warnings": [str(w)[:MAX_WARNING] for w in list(warnings)[:MAX_WARNINGS]],
        "accounting": accounting_summary(accounting),
        "pools": pool_rates(pools),
        "consumedRows": _number(consumed_rows, "int"),
    }


def pool_rates(value: Any) -> dict[str, dict[str, int | float]]:
    """The ``pools`` member: for each of :data:`POOLS` present with ``rows`` (an int >= 0),
    ``seconds`` (a finite number >= 0) and ``shards`` (an int >= 0, 0 when absent) of the right
    types, those three; anything else left out."""
    if not isinstance(value, Mapping):
        return {}
    rates: dict[str, dict[str, int | float]] = {}
    for pool in POOLS:
        item = value.get(pool)
        if not isinstance(item, Mapping):
            continue
        rows = _number(item.get("rows"), "int")
        seconds = _number(item.get("seconds"), "number")
        shards = _number(item.get("shards", 0), "int")
        if rows is not None and seconds is not None and shards is not None:
            rates[pool] = {"rows": rows, "seconds": float(seconds), "shards": shards}
    return rates


def _number(value: Any, kind: str) -> int | float | None:
    """``value`` if it is a non-negative int (``kind`` "int") or finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind == "int" and not isinstance(value, int):
        return None
    return value if value >= 0 and math.isfinite(value) else None


def accounting_summary(value: Any) -> dict[str, Any] | None:
    """The part of a run's accounting document the progress document carries (and the operator
    copies into ``status.accounting``): the ``ACCOUNTING_FIELDS`` of the right type, anything
    else left out (the CRD types these fields, so a value off its type would fail the status
    write). None when ``value`` is not a mapping or has none of them."""
    if not isinstance(value, Mapping):
        return None
    summary: dict[str, Any] = {}
    for key, kind in ACCOUNTING_FIELDS.items():
        item = value.get(key)
        if kind == "str":
            if isinstance(item, str):
                summary[key] = item[:MAX_ACCOUNTING_TEXT]
        elif kind in ("int", "number"):
            if (number := _number(item, kind)) is not None:
                summary[key] = number
        elif isinstance(item, Mapping):
            each = "int" if kind == "ints" else "number"
            entries = {
                str(k)[:MAX_ACCOUNTING_TEXT]: n
                for k, v in item.items()
                if isinstance(k, str) and (n := _number(v, each)) is not None
            }
            summary[key] = dict(list(entries.items())[:MAX_ACCOUNTING_ENTRIES])
    return summary or None


def parse(value: Any) -> dict[str, Any] | None:
    """A published document as the operator uses it, or None when there is none (nothing
    published yet) or it is not one (another program's metadata under the key)."""
    if not isinstance(value, Mapping) or value.get("stage") not in STAGES:
        return None
    try:
        doc = document(
            value["stage"],
            detail=str(value.get("detail") or ""),
            shards_done=value.get("shardsDone") or 0,
            shards_total=value.get("shardsTotal"),
            rows=value.get("rows") or 0,
            rows_estimated=value.get("rowsEstimated"),
            rows_quarantined=value.get("rowsQuarantined") or 0,
            warnings=_strings(value.get("warnings")),
            accounting=value.get("accounting"),
            pools=value.get("pools"),
            consumed_rows=value.get("consumedRows"),
        )
    except (TypeError, ValueError):
        return None
    total = doc["shardsTotal"]
    if (
        doc["shardsDone"] < 0
        or doc["rows"] < 0
        or not 0 <= doc["rowsQuarantined"] <= doc["rows"]
        or (total is not None and not 0 <= doc["shardsDone"] <= total)
    ):
        return None
    return doc


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        return []
    return [w for w in value if isinstance(w, str)]


class ProgressPublisher:
    """A progress reporter (``recprep.workloads.runner.Progress``) that keeps the progress
    document, hands it to each of ``sinks`` (where it goes -> a callable taking the document: the
    scheduler's metadata, a dashboard) as it changes, at most every ``MIN_INTERVAL`` unless forced, and
    passes every call on to ``inner`` (the terminal's bar).

    Publishing is best effort: a sink that fails is logged and the run goes on (the operator's
    count lags; the shards and the ledger are what matters).
    """

    def __init__(self, inner=None, *, sinks: Mapping[str, Any] | None = None, clock=time.monotonic):
        self.inner, self.clock = inner, clock
        self.sinks = dict(sinks or {})
        self.stage, self.detail = PLAN, PLAN
        self.shards_done, self.shards_total = 0, None
        self.rows, self.rows_estimated = 0, None
        self.rows_quarantined = 0
        self.warnings: list[str] = []
        #: The run's accounting (``accounted``), None until the transform is over.
        self.accounting: dict[str, Any] | None = None
        #: pool -> rows, task seconds and shards of the shards it finished in one task
        self.pools: dict[str, dict[str, int | float]] = {}
        #: rows the trainers have consumed (``consumed``), None while no consumer group joined
        self.consumed_rows: int | None = None
        self._last = None
        self.publish(force=True)

    # --- the Progress protocol ---

    def phase(self, name: str) -> None:
        self.stage = stage_of(name)
        self.detail = name
        if self.inner is not None:
            self.inner.phase(name)
        self.publish(force=True)

    def start(
        self, total_shards: int, est_rows: int, done_shards: int, done_rows: int, done_quarantined: int = 0
    ) -> None:
        self.shards_total, self.shards_done = total_shards, done_shards
        self.rows, self.rows_estimated = done_rows, max(est_rows, done_rows)
        self.rows_quarantined = done_quarantined
        if self.inner is not None:
            self.inner.start(total_shards, est_rows, done_shards, done_rows, done_quarantined)
        self.publish(force=True)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.inner is not None:
            self.inner.warn(message)
        self.publish(force=True)

    def advance(self, result) -> None:
        self.shards_done += 1
        self.rows += result.rows + result.bad_rows
        self.rows_quarantined += result.bad_rows
        ran = getattr(result, "ran", None) or ()
        if len(ran) == 1:  # a whole shard in one task: its rows over its seconds is the pool's rate
            pool = "isp" if getattr(ran[0], "node", None) else "cpu"
            seconds = float(getattr(ran[0], "seconds", 0.0) or 0.0)
            if seconds > 0 and math.isfinite(seconds):
                entry = self.pools.setdefault(pool, {"rows": 0, "seconds": 0.0, "shards": 0})
                entry["rows"] += result.rows + result.bad_rows
                entry["seconds"] += seconds
                entry["shards"] += 1
        if self.rows_estimated is not None:
            self.rows_estimated = max(self.rows_estimated, self.rows)
        if self.inner is not None:
            self.inner.advance(result)
        self.publish(force=self.shards_done == self.shards_total)

    def fitted(self, est_rows: int) -> None:
        """A fit task is done: the terminal's bar moves; the document keeps its counts (of the
        transform: shards committed and rows read into them) and says the stage."""
        if self.inner is not None:
            self.inner.fitted(est_rows)

    def accounted(self, document: Mapping[str, Any]) -> None:
        """The run's accounting (``recprep.isp_nodes.accounting.Account.to_json``), once every
        shard has landed: published with the progress (:func:`accounting_summary` of it)."""
        self.accounting = dict(document)
        if self.inner is not None and hasattr(self.inner, "accounted"):
            self.inner.accounted(document)
        self.publish(force=True)

    def consumed(self, rows: int | None) -> None:
        """The rows the trainers have consumed so far (``delivery.service.acks.consumed_rows``;
        None while no consumer group has joined): the operator's autoscaler reads the demand
        from it. Published with the next document (at most every ``MIN_INTERVAL``)."""
        if rows != self.consumed_rows:
            self.consumed_rows = rows
            self.publish()

    # --- publishing ---

    def finish(self) -> None:
        """The run is over: every shard is committed (called after ``run_job`` returned)."""
        self.stage = self.detail = DONE
        if self.shards_total is not None:
            self.shards_done = self.shards_total
        self.rows_estimated = self.rows
        self.publish(force=True)

    def document(self) -> dict[str, Any]:
        return document(
            self.stage,
            detail=self.detail,
            shards_done=self.shards_done,
            shards_total=self.shards_total,
            rows=self.rows,
            rows_estimated=self.rows_estimated,
            rows_quarantined=self.rows_quarantined,
            warnings=self.warnings,
            accounting=self.accounting,
            pools=self.pools,
            consumed_rows=self.consumed_rows,
        )

    def publish(self, force: bool = False) -> None:
        now = self.clock()
        if not force and self._last is not None and now - self._last < MIN_INTERVAL:
            return
        self._last = now
        doc = self.document()
        for where, sink in self.sinks.items():
            try:
                sink(doc)
            except Exception as exc:
                log.warning("cannot publish progress to %s: %s", where, exc)


class SchedulerProgress(ProgressPublisher):
    """A :class:`ProgressPublisher` whose first sink is the scheduler of ``client`` (its
    metadata ``KEY``, where the operator reads it)."""

    def __init__(self, client, inner=None, *, sinks: Mapping[str, Any] | None = None, clock=time.monotonic):
        self.client = client
        super().__init__(inner, sinks={"the scheduler": self._to_scheduler, **(sinks or {})}, clock=clock)

    def _to_scheduler(self, doc: dict[str, Any]) -> None:
        self.client.set_metadata(list(KEY), doc)
