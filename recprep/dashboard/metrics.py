"""The dashboard's figures as Prometheus metrics (``prometheus-client``), read from the same
:class:`~.history.JobHistory` objects as the JSON API at each scrape.

Labels: ``namespace`` and ``job`` (the PreprocessJob), ``pool`` (cpu | isp): bounded by the jobs
the board keeps. Units follow Prometheus' conventions (seconds, bytes, joules, ``_total`` for
counters); money is in US dollars, from the ISP model's prices (``docs/isp.md``).

What scaling systems export, for the pools: desired, actual and pending workers (Dask's
``dask_scheduler_workers``, Ray's autoscaler ``pending_nodes``/``active_nodes``, Karpenter's
``nodeclaims``), worker start-up seconds as a histogram, interruptions received; and for the job:
rows, shards, demand, forecast, production, backlog, starvation, cost and energy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .history import POOLS, STARTUP_BUCKETS, JobHistory


def _family(kind: str, name: str, doc: str, labels: list[str], unit: str = ""):
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}[
        kind
    ]
    return cls(name, doc, labels=labels, unit=unit)


#: Per job (labels namespace, job): name, kind, help, the figure or series it reads.
JOB_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("recprep_job_rows", "counter", "Rows read into committed shards (quarantined rows included).", "rows"),
    ("recprep_job_shards_committed", "counter", "Shards committed.", "shardsDone"),
    ("recprep_job_shards_planned", "gauge", "Shards the job plans.", "shardsTotal"),
    ("recprep_job_progress_ratio", "gauge", "Share of the job done (0 to 1).", "progress"),
    ("recprep_job_demand_rows_per_second", "gauge", "Trainers' consumption (rows/s).", "demand"),
    (
        "recprep_job_forecast_rows_per_second",
        "gauge",
        "The autoscaler's demand forecast at its quantile (rows/s).",
        "forecast",
    ),
    ("recprep_job_forecast_quantile", "gauge", "The quantile of the forecast.", "quantile"),
    ("recprep_job_production_rows_per_second", "gauge", "Rows committed per second.", "production"),
    (
        "recprep_job_backlog_seconds",
        "gauge",
        "Rows committed and not consumed, in seconds of the trainers' demand.",
        "backlogSeconds",
    ),
    (
        "recprep_job_starved_ratio",
        "gauge",
        "Share of the time trainers read with nothing committed left for them.",
        "starvedShare",
    ),
    (
        "recprep_job_cost_dollars",
        "counter",
        "Modelled cost so far (USD): workers asked for x price.",
        "costSoFar",
    ),
    (
        "recprep_job_projected_cost_dollars",
        "gauge",
        "Modelled cost at completion (USD), at the recent production.",
        "costProjected",
    ),
    ("recprep_job_eta_seconds", "gauge", "Seconds to completion at the recent production.", "etaSeconds"),
    (
        "recprep_job_deadline_margin_seconds",
        "gauge",
        "Seconds to spare before spec.autoscale.deadline at the ETA (negative: late).",
        "deadlineMarginSeconds",
    ),
    ("recprep_job_offload_ratio", "gauge", "Share of the shards an ISP worker ran.", "offloadShare"),
    (
        "recprep_job_network_saved_bytes",
        "gauge",
        "Raw bytes read where they are stored (not carried over the network).",
        "networkBytesSaved",
    ),
)


class BoardCollector:
    """A ``prometheus_client`` collector over the jobs ``jobs()`` returns."""

    def __init__(self, jobs: Callable[[], Iterable[JobHistory]]):
        self.jobs = jobs

    def describe(self):
        return []  # collected on each scrape only (the jobs come and go)

    def collect(self):
        histories = list(self.jobs())
        figures = {id(h): h.figures() for h in histories}
        job_labels = ["namespace", "job"]
        for name, kind, doc, key in JOB_METRICS:
            family = _family(kind, name, doc, job_labels)
            for h in histories:
                value = figures[id(h)].get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    family.add_metric([h.namespace, h.name], float(value))
            yield family
        energy = _family("counter", "recprep_job_energy_joules", "Modelled energy so far (J).", job_labels)
        for h in histories:
            energy.add_metric([h.namespace, h.name], figures[id(h)]["energySoFarWh"] * 3600.0)
        yield energy
        pool_labels = ["namespace", "job", "pool"]
        gauges = (
            ("recprep_pool_workers", "Workers joined to the scheduler.", "workers"),
            ("recprep_pool_desired_workers", "Workers asked for (replicas).", "desired"),
            ("recprep_pool_pending_workers", "Workers asked for and not joined yet.", "pending"),
        )
        for name, doc, key in gauges:
            family = _family("gauge", name, doc, pool_labels)
            for h in histories:
                for pool in POOLS:
                    family.add_metric([h.namespace, h.name, pool], float(figures[id(h)][key][pool]))
            yield family
        counters = (
            ("recprep_pool_interruptions", "Workers preempted (notices received).", "interruptions"),
            ("recprep_pool_scaling_decisions", "Scaling actions taken by the autoscaler.", "decisions_total"),
        )
        for name, doc, attr in counters:
            family = _family("counter", name, doc, pool_labels)
            for h in histories:
                for pool in POOLS:
                    family.add_metric([h.namespace, h.name, pool], float(getattr(h, attr)[pool]))
            yield family
        startup = _family(
            "histogram", "recprep_pool_worker_startup_seconds", "Worker asked for -> joined.", pool_labels
        )
        for h in histories:
            for pool in POOLS:
                hist = h.startup[pool]
                buckets = [(str(b), float(n)) for b, n in zip(STARTUP_BUCKETS, hist["buckets"])]
                buckets.append(("+Inf", float(hist["count"])))
                startup.add_metric([h.namespace, h.name, pool], buckets, hist["sum"])
        yield startup


def exposition(jobs: Callable[[], Iterable[JobHistory]]) -> tuple[bytes, str]:
    """The text exposition of the board's metrics, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(jobs))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    """Sample name and labels -> value, read with ``prometheus_client``'s own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found
