"""``recprep run --dashboard``: the run as one job of a :class:`~.server.Board` (namespace
``local``), looked at as the operator looks at a PreprocessJob's status.

The run feeds it through two channels it already has:

- the progress document (``recprep.progress.ProgressPublisher``, this monitor's :meth:`sink`):
  shards, rows, the pools' rates, the trainers' consumption (``--serve``), the accounting;
- the driver's monitor hooks (``workloads.runner.run_job(monitor=...)``), called from the
  driver's thread: :meth:`connected` (the Dask client: its dashboard link), :meth:`autoscaled`
  (the embedded autoscaler: its policy, decisions and replicas) and :meth:`observed` (the
  workers that take tasks, every pass of the shard loop).

Every call records a look (at most one per ``MIN_LOOK`` seconds, and always the last), so the
page and ``/metrics`` read what the run did, never the run's objects.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from .history import JobHistory, Prices
from .server import Board

#: Least seconds between two looks recorded from the shard loop.
MIN_LOOK = 0.5
#: The namespace a local run shows under.
NAMESPACE = "local"


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalMonitor:
    def __init__(self, job: Any, board: Board, clock=time.time):
        autoscale = job.spec.autoscale if "autoscale" in job.spec.model_fields_set else None
        self.history = board.add(
            JobHistory(
                NAMESPACE,
                job.metadata.name,
                Prices.of(job),
                deadline=None
                if autoscale is None or autoscale.deadline is None
                else float(autoscale.deadline),
            )
        )
        self.clock = clock
        self.phase = "Running"
        self.progress: dict[str, Any] = {}
        self.workers = {"cpu": 0, "isp": 0}
        self.scaler: Any = None
        self._looked = -float("inf")

    # --- the run's channels ----------------------------------------------------------------------

    def sink(self, document: dict[str, Any]) -> None:
        """A progress document (a ``ProgressPublisher`` sink)."""
        self.progress = document
        self._look(force=True)

    def connected(self, client: Any) -> None:
        """The run's Dask client: its dashboard's link, and the workers it starts with."""
        link = getattr(client, "dashboard_link", None)
        self.history.dask_dashboard = link if isinstance(link, str) and link.startswith("http") else None
        # fetched here: client.scheduler_info()'s answer is an attribute the client's periodic
        # refresh overwrites with no worker (``workloads.locality.scheduler_workers``)
        workers = client.sync(client.scheduler.identity, n_workers=-1)["workers"].values()
        isp = sum(1 for w in workers if str(w.get("name", "")).startswith("isp/"))
        self.workers = {"cpu": len(workers) - isp, "isp": isp}
        self._look(force=True)

    def autoscaled(self, scaler: Any) -> None:
        self.scaler = scaler

    def observed(self, topology: Any) -> None:
        self.workers = {"cpu": len(topology.cpu), "isp": sum(len(w) for w in topology.isp.values())}
        self._look()

    def finished(self, ok: bool, message: str | None = None) -> None:
        """The run is over (``run_job`` returned, or failed with ``message``)."""
        if self.phase in ("Succeeded", "Failed"):
            return
        self.phase = "Succeeded" if ok else "Failed"
        if ok and self.progress:
            self.progress = {**self.progress, "stage": "done"}
        self.workers, self.scaler = {"cpu": 0, "isp": 0}, None  # the run's cluster goes with it
        self._look(force=True, message=message)

    # --- one look --------------------------------------------------------------------------------

    def _look(self, force: bool = False, message: str | None = None) -> None:
        now = self.clock()
        if not force and now - self._looked < MIN_LOOK:
            return
        self._looked = now
        desired = dict(self.workers)
        if self.scaler is not None:
            desired["cpu"] = self.scaler.replicas()
        snapshot = {
            "phase": self.phase,
            "progress": self.progress,
            "workers": self.workers,
            "desired": desired,
            "autoscaler": self._autoscaler(),
            "message": message,
        }
        self.history.record(now, snapshot)

    def _autoscaler(self) -> dict[str, Any]:
        scaler = self.scaler
        if scaler is None:
            return {}
        decision = scaler.decision
        return {
            "policy": scaler.policy.name,
            "quantile": getattr(scaler.policy, "quantile", None),
            "forecast": None if decision is None or not scaler.trainers else decision.forecast,
            "message": None if decision is None else decision.reasons.get("cpu"),
            "lastDecisions": [
                {
                    "time": _rfc3339(d.wall),
                    "pool": d.pool,
                    "from": d.before,
                    "to": d.after,
                    "reason": d.reason,
                }
                for d in scaler.decisions
            ],
        }
