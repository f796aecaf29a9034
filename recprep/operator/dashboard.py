"""The operator's dashboard: every PreprocessJob it follows, on the page, JSON API and metrics of
``recprep.dashboard`` (``RECPREP_DASHBOARD=[HOST:]PORT``; the chart's ``dashboard.enabled``, with a
ClusterIP Service that ``kubectl port-forward`` reaches).

The follower hands it each job at every pass (``look``): the status it is about to write (phase,
workers, ``status.autoscaler``, ``status.preemptions``), the driver's progress document when the
scheduler answered (else the status's counts), and the worker Deployments' replicas (the
workers asked for). It reads nothing else and changes nothing: the dashboard is read only.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..errors import SpecError
from ..spec import load_job_dict
from . import kube, labels
from .builders import DASHBOARD_PORT

log = logging.getLogger(__name__)


def progress_of(status: dict[str, Any], document: dict[str, Any] | None) -> dict[str, Any]:
    """The driver's progress document, or what the status keeps of it (its counts) when the
    scheduler did not answer this pass (or the job is over)."""
    if document:
        return document
    shards, rows = status.get("shards") or {}, status.get("rows") or {}
    stage = "done" if status.get("phase") == "Succeeded" else None
    return {
        "stage": stage,
        "shardsDone": shards.get("done") or 0,
        "shardsTotal": shards.get("total"),
        "rows": rows.get("done") or 0,
        "rowsEstimated": rows.get("estimated"),
        "rowsQuarantined": rows.get("quarantined") or 0,
        "accounting": status.get("accounting"),
    }


class OperatorDashboard:
    """The board of the jobs the operator follows and its server (started at once)."""

    def __init__(self, address: str, clock=time.time):
        from ..dashboard.server import Board, DashboardServer, parse_address

        host, port = parse_address(address)
        self.board = Board()
        self.server = DashboardServer(self.board, host, port)
        self.clock = clock
        self._lock = threading.Lock()
        log.info("dashboard on %s", self.server.url)

    def look(self, api: Any, body: dict, status: dict[str, Any], progress: dict[str, Any] | None) -> None:
        """One look at a job (from the follower's thread for it)."""
        from ..dashboard.history import FINISHED

        meta = body["metadata"]
        namespace, name = meta.get("namespace") or "default", meta["name"]
        history = self._history(namespace, name, body)
        phase = status.get("phase") or "Pending"
        desired = dict.fromkeys(labels.POOLS, 0)
        if phase not in FINISHED:
            for pool in labels.POOLS:
                deployment = kube.read_worker_deployment(api, namespace, name, pool)
                if deployment is not None:
                    desired[pool] = int(deployment.spec.replicas or 0)
        history.record(
            self.clock(),
            {
                "phase": phase,
                "progress": progress_of(status, progress),
                "workers": status.get("workers") or {},
                "desired": desired,
                "autoscaler": status.get("autoscaler") or {},
                "preemptions": status.get("preemptions") or {},
                "message": status.get("message"),
            },
        )

    def _history(self, namespace: str, name: str, body: dict) -> Any:
        from ..dashboard.history import JobHistory, Prices

        with self._lock:
            history = self.board.get(namespace, name)
            if history is not None:
                return history
            prices, deadline = Prices(), None
            try:
                job = load_job_dict({k: v for k, v in body.items() if k != "status"}, f"{namespace}/{name}")
                prices = Prices.of(job)
                if "autoscale" in job.spec.model_fields_set and job.spec.autoscale.deadline is not None:
                    deadline = float(job.spec.autoscale.deadline)
            except SpecError:
                pass  # an invalid job: shown with its phase, without prices
            scheduler = labels.scheduler_name(name)
            return self.board.add(
                JobHistory(
                    namespace,
                    name,
                    prices,
                    deadline=deadline,
                    dask_dashboard=f"http://{scheduler}.{namespace}.svc:{DASHBOARD_PORT}/status",
                )
            )

    def retain(self, keys: set[tuple[str, str]]) -> None:
        """Forget the jobs not in ``keys`` (namespace, name): deleted ones."""
        for history in self.board.jobs():
            if (history.namespace, history.name) not in keys:
                self.board.remove(history.namespace, history.name)

    def close(self) -> None:
        self.server.close()
