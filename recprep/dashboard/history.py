"""A job as the dashboard sees it: looks at the job over time -> the series, figures and decisions
of its page, of the JSON API and of the Prometheus metrics. Pure: no HTTP, no Kubernetes, no Dask.

One look (a *snapshot*) has the shape of the PreprocessJob's status, so that the operator passes
the status it keeps and ``recprep run --dashboard`` builds the same from its run
(``dashboard.local``)::

    {"phase": "Running",
     "progress": {...},                    # the driver's progress document (recprep.progress)
     "workers": {"cpu": 2, "isp": 1},      # workers joined to the scheduler, per pool
     "desired": {"cpu": 3, "isp": 1},      # replicas asked for, per pool
     "autoscaler": {"policy": ..., "quantile": 0.9, "forecast": 12000.0, "message": ...,
                    "lastDecisions": [{"time": ..., "pool": ..., "from": 1, "to": 2, "reason": ...}]},
     "preemptions": {"count": 1, "last": [{"noticeTime": ..., "pods": [...], ...}]}}

What :class:`JobHistory` derives, one value per look (``series``):

- **production** (rows/s): rows read into committed shards, over the last ``RATE_WINDOW`` seconds;
- **demand** (rows/s): the rows the trainers acknowledged (``consumedRows``), the same way; None
  while no trainer reads;
- **forecast**: the autoscaler's forecast of the demand at its quantile (None without one);
- **backlog** (seconds of training): rows committed and not consumed over the demand;
- **starved** (0/1): trainers read and nothing committed is left for them: they wait for the
  next shard (the trainers' own wait is on their side; this is what the job can see);
- **workers**, **desired** and **pending** (desired less joined) per pool;
- **cost** (USD) and **energy** (Wh) so far: the workers asked for (billed from the request)
  times the pools' hourly prices, the workers joined times their power, from the ISP model
  (``spec.pools.isp.model``: ``docs/isp.md``), integrated over time.

Figures: progress, the ETA at the recent production, cost and energy projected to completion,
the deadline's margin, the ISP offload share (shards an ISP worker ran) and the network bytes
ISP placement saved (raw bytes read where they are stored, from the run's accounting).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

#: Seconds the rates (production, demand) are measured over.
RATE_WINDOW = 5.0
#: Seconds of production the ETA is projected from.
ETA_WINDOW = 30.0
#: Looks kept per job (at one a second: an hour; older ones are thinned, not lost: see ``record``).
MAX_POINTS = 1800
#: Decisions and preemptions kept per job.
MAX_EVENTS = 50
POOLS = ("cpu", "isp")
#: Phases of a job that is over.
FINISHED = ("Succeeded", "Failed")
#: Upper bounds (seconds) of the worker start-up histogram's buckets.
STARTUP_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True)
class Prices:
    """What a worker of each pool costs per hour (USD) and draws (W) while it runs."""

    cpu_hourly: float = 0.0
    isp_hourly: float = 0.0
    cpu_watts: float = 0.0
    isp_watts: float = 0.0

    @classmethod
    def of(cls, job: Any) -> Prices:
        """From a PreprocessJob's ISP model: a CPU worker is one core; an ISP worker is one
        storage node with ``units`` ISP units."""
        pools = job.spec.pools
        model = pools.isp.model
        return cls(
            cpu_hourly=model.cpu_core_hourly(pools.cpu.preemptible),
            isp_hourly=model.isp_node_hourly,
            cpu_watts=model.cpu_core_watts,
            isp_watts=model.isp_unit_watts * pools.isp.units,
        )

    def hourly(self, pool: str) -> float:
        return self.isp_hourly if pool == "isp" else self.cpu_hourly

    def watts(self, pool: str) -> float:
        return self.isp_watts if pool == "isp" else self.cpu_watts


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _counts(value: Any) -> dict[str, int]:
    value = value if isinstance(value, dict) else {}
    return {pool: max(0, _int(value.get(pool)) or 0) for pool in POOLS}


def _rate(points: deque, now: float, value: float | None, key: str) -> float | None:
    """Growth of ``key`` per second from the newest look at least ``RATE_WINDOW`` old to ``value``
    at ``now`` (None: not measurable yet)."""
    if value is None:
        return None
    for point in reversed(points):
        if now - point["t"] >= RATE_WINDOW and point.get(key) is not None:
            return max(0.0, (value - point[key]) / (now - point["t"]))
    return None


class JobHistory:
    """The looks at one job (``record``) and what the dashboard shows of them (``document``,
    ``summary``). Thread-safe: one thread records, the server's threads read."""

    def __init__(
        self,
        namespace: str,
        name: str,
        prices: Prices,
        *,
        deadline: float | None = None,
        dask_dashboard: str | None = None,
        maxlen: int = MAX_POINTS,
    ):
        self.namespace, self.name, self.prices = namespace, name, prices
        self.deadline, self.dask_dashboard = deadline, dask_dashboard
        self.maxlen = maxlen
        self._points: deque[dict[str, Any]] = deque()
        self._start: float | None = None
        self._last: dict[str, Any] = {}
        self._decisions: list[dict[str, Any]] = []
        self._preemptions: list[dict[str, Any]] = []
        self._cost = self._energy = 0.0
        #: per pool: when the workers asked for and not joined yet were asked for (oldest first),
        #: the measured start-ups (bucket counts, their sum and count), preempted workers, decisions
        self._asked: dict[str, list[float]] = {p: [] for p in POOLS}
        self.startup = {p: {"buckets": [0] * len(STARTUP_BUCKETS), "sum": 0.0, "count": 0} for p in POOLS}
        self.interruptions = dict.fromkeys(POOLS, 0)
        self.decisions_total = dict.fromkeys(POOLS, 0)
        self._lock = threading.Lock()

    # --- recording ------------------------------------------------------------------------------

    def record(self, now: float, snapshot: dict[str, Any]) -> None:
        """One look at the job at ``now`` (seconds since the epoch: the page puts the series on
        the wall clock, beside the decisions' and notices' times)."""
        progress = snapshot.get("progress") or {}
        workers, desired = _counts(snapshot.get("workers")), _counts(snapshot.get("desired"))
        autoscaler = snapshot.get("autoscaler") or {}
        with self._lock:
            if self._start is None:
                self._start = now
            t = now - self._start
            if self._points:
                dt = max(0.0, t - self._points[-1]["t"])
                before_w, before_d = self._points[-1]["workers"], self._points[-1]["desired"]
                for pool in POOLS:
                    self._cost += before_d[pool] * self.prices.hourly(pool) * dt / 3600.0
                    self._energy += before_w[pool] * self.prices.watts(pool) * dt / 3600.0
                    self._startups(pool, t, desired[pool] - before_d[pool], workers[pool] - before_w[pool])
            rows = _int(progress.get("rows")) or 0
            written = rows - (_int(progress.get("rowsQuarantined")) or 0)
            consumed = _int(progress.get("consumedRows"))
            demand = _rate(self._points, t, consumed, "consumed")
            backlog = None
            if consumed is not None:
                ahead = max(0, written - consumed)
                backlog = ahead / demand if demand else (0.0 if ahead == 0 else None)
            point = {
                "t": round(t, 3),
                "rows": rows,
                "consumed": consumed,
                "production": _rate(self._points, t, rows, "rows"),
                "demand": demand,
                "forecast": autoscaler.get("forecast"),
                "backlog": backlog,
                "starved": None if consumed is None else int(written <= consumed),
                "workers": workers,
                "desired": desired,
                "pending": {p: max(0, desired[p] - workers[p]) for p in POOLS},
                "cost": self._cost,
                "energy": self._energy,
            }
            self._points.append(point)
            if len(self._points) > self.maxlen:
                self._thin()
            self._last = {
                "phase": snapshot.get("phase") or "Pending",
                "progress": progress,
                "autoscaler": autoscaler,
                "message": snapshot.get("message"),
            }
            for record in self._merge(
                self._decisions, autoscaler.get("lastDecisions"), ("time", "pool", "from", "to")
            ):
                if record.get("pool") in self.decisions_total:
                    self.decisions_total[record["pool"]] += 1
            prefixes = {pool: f"{self.name}-worker-{pool}-" for pool in POOLS}
            for record in self._merge(
                self._preemptions, (snapshot.get("preemptions") or {}).get("last"), ("node", "noticeTime")
            ):
                for pod in record.get("pods") or []:
                    for pool, prefix in prefixes.items():
                        self.interruptions[pool] += str(pod).startswith(prefix)

    def _thin(self) -> None:
        """Every other look of the older half goes: the series keeps its whole span."""
        points = list(self._points)
        half = len(points) // 2
        self._points = deque(points[:half:2] + points[half:])

    def _startups(self, pool: str, t: float, asked: int, joined: int) -> None:
        """Workers asked for (``asked`` more replicas at ``t``) and joined (``joined`` more): each
        join ends the oldest request, its start-up goes to the histogram."""
        self._asked[pool].extend([t] * max(0, asked))
        if asked < 0:  # fewer wanted: the newest requests are withdrawn
            del self._asked[pool][max(0, len(self._asked[pool]) + asked) :]
        for _ in range(min(max(0, joined), len(self._asked[pool]))):
            seconds = t - self._asked[pool].pop(0)
            hist = self.startup[pool]
            for i, bound in enumerate(STARTUP_BUCKETS):
                hist["buckets"][i] += seconds <= bound
            hist["sum"] += seconds
            hist["count"] += 1

    def _merge(self, kept: list[dict], new: Any, key: tuple[str, ...]) -> list[dict]:
        """Add the records of ``new`` not kept yet (by ``key``), or update them in place; keep the
        last ``MAX_EVENTS`` (more than the status keeps, so one never comes back). Returns the
        records added."""
        if not isinstance(new, list):
            return []
        index = {tuple(r.get(k) for k in key): i for i, r in enumerate(kept)}
        added = []
        for record in new:
            if not isinstance(record, dict):
                continue
            at = index.get(tuple(record.get(k) for k in key))
            if at is not None:
                kept[at] = dict(record)
            else:
                kept.append(dict(record))
                added.append(record)
        del kept[:-MAX_EVENTS]
        return added

    # --- reading --------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._last.get("phase") in FINISHED

    def figures(self) -> dict[str, Any]:
        """The job's figures now (see the module's docstring)."""
        with self._lock:
            return self._figures()

    def _figures(self) -> dict[str, Any]:
        progress = self._last.get("progress") or {}
        last = self._points[-1] if self._points else None
        rows = _int(progress.get("rows")) or 0
        estimated = _int(progress.get("rowsEstimated"))
        done, total = _int(progress.get("shardsDone")) or 0, _int(progress.get("shardsTotal"))
        fraction = None
        if total:
            fraction = min(1.0, done / total)
        elif estimated:
            fraction = min(1.0, rows / estimated)
        recent = [p for p in self._points if last is not None and last["t"] - p["t"] <= ETA_WINDOW]
        speed = None
        if len(recent) >= 2 and recent[-1]["t"] > recent[0]["t"]:
            speed = (recent[-1]["rows"] - recent[0]["rows"]) / (recent[-1]["t"] - recent[0]["t"])
        left = max(0, estimated - rows) if estimated is not None else None
        eta = 0.0 if self.finished or left == 0 else (left / speed if speed and left is not None else None)
        cost_rate = sum(last["desired"][p] * self.prices.hourly(p) for p in POOLS) if last else 0.0
        watts = sum(last["workers"][p] * self.prices.watts(p) for p in POOLS) if last else 0.0
        cost, energy = (last["cost"], last["energy"]) if last else (0.0, 0.0)
        pools = progress.get("pools") or {}
        accounting = progress.get("accounting") or {}
        by_pool = accounting.get("shardsByPool") or {p: (pools.get(p) or {}).get("shards", 0) for p in POOLS}
        shards_run = sum(v for v in by_pool.values() if isinstance(v, int | float))
        isp_shards = sum(v for k, v in by_pool.items() if k.startswith("isp") and isinstance(v, int | float))
        network = accounting.get("networkBytes") or {}
        saved = None
        if isinstance(accounting.get("storedBytes"), int) and isinstance(network.get("raw"), int):
            saved = max(0, accounting["storedBytes"] - network["raw"])
        elapsed = last["t"] if last else 0.0
        return {
            "phase": self._last.get("phase", "Pending"),
            "stage": progress.get("stage"),
            "shardsDone": done,
            "shardsTotal": total,
            "rows": rows,
            "rowsEstimated": estimated,
            "progress": fraction,
            "elapsedSeconds": round(elapsed, 1),
            "etaSeconds": None if eta is None else round(eta, 1),
            "costSoFar": round(cost, 6),
            "costProjected": None if eta is None else round(cost + cost_rate * eta / 3600.0, 6),
            "energySoFarWh": round(energy, 4),
            "energyProjectedWh": None if eta is None else round(energy + watts * eta / 3600.0, 4),
            "deadlineSeconds": self.deadline,
            "deadlineMarginSeconds": (
                None if self.deadline is None or eta is None else round(self.deadline - elapsed - eta, 1)
            ),
            "offloadShare": None if not shards_run else round(isp_shards / shards_run, 4),
            "networkBytesSaved": saved,
            "workers": dict(last["workers"]) if last else dict.fromkeys(POOLS, 0),
            "desired": dict(last["desired"]) if last else dict.fromkeys(POOLS, 0),
            "pending": dict(last["pending"]) if last else dict.fromkeys(POOLS, 0),
            "demand": last["demand"] if last else None,
            "production": last["production"] if last else None,
            "forecast": last["forecast"] if last else None,
            "quantile": (self._last.get("autoscaler") or {}).get("quantile"),
            "policy": (self._last.get("autoscaler") or {}).get("policy"),
            "backlogSeconds": last["backlog"] if last else None,
            "starvedShare": self._starved_share(),
            "message": (self._last.get("autoscaler") or {}).get("message") or self._last.get("message"),
        }

    def _starved_share(self) -> float | None:
        """Share of the time since trainers began to read that nothing committed was left for them."""
        looks = [p for p in self._points if p["starved"] is not None]
        if len(looks) < 2:
            return None
        total = looks[-1]["t"] - looks[0]["t"]
        if total <= 0:
            return None
        waited = sum(b["t"] - a["t"] for a, b in zip(looks, looks[1:]) if a["starved"])
        return round(waited / total, 4)

    def summary(self) -> dict[str, Any]:
        """One row of the job list."""
        figures = self.figures()
        keep = ("phase", "progress", "rows", "workers", "desired", "costSoFar", "etaSeconds")
        return {"namespace": self.namespace, "name": self.name, **{k: figures[k] for k in keep}}

    def document(self) -> dict[str, Any]:
        """The JSON API's document of this job: its figures, series, decisions (newest first) and
        preemptions (newest first)."""
        with self._lock:
            figures = self._figures()
            points = list(self._points)
            decisions = list(reversed(self._decisions))
            preemptions = list(reversed(self._preemptions))
        series: dict[str, Any] = {
            key: [p[key] for p in points]
            for key in (
                "t",
                "rows",
                "production",
                "demand",
                "forecast",
                "backlog",
                "starved",
                "cost",
                "energy",
            )
        }
        for key in ("workers", "desired", "pending"):
            series[key] = {pool: [p[key][pool] for p in points] for pool in POOLS}
        return {
            "namespace": self.namespace,
            "name": self.name,
            "start": self._start,
            "figures": figures,
            "series": series,
            "decisions": decisions,
            "preemptions": preemptions,
            "links": {"dask": self.dask_dashboard},
            "prices": {
                "cpuHourly": self.prices.cpu_hourly,
                "ispHourly": self.prices.isp_hourly,
                "cpuWatts": self.prices.cpu_watts,
                "ispWatts": self.prices.isp_watts,
            },
        }


def clean(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no NaN or infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
