"""``recprep run``'s autoscaler: the policy of ``spec.autoscale`` (``recprep.predictor``) sizing
the embedded cluster's CPU pool while the transform pass runs.

The policy decides (what to do); this module observes the run and carries the decision out on
the embedded :class:`distributed.SpecCluster` (how): a grown pool gets new single-threaded CPU
worker processes, a shrunk one retires its idlest workers through the scheduler first (their
tasks go back to the driver's queues, see ``locality``) and then stops them. The ISP pool is
the storage nodes: the policy counts its capacity, and nothing adds or removes a storage node.

What the policy sees (``predictor.signals.Observation``), all measured by this run: each pool's
rows per worker-second (rows of the shards it finished over their task seconds), the start-up
lag of the workers it asked for (request to join), the rows left (estimated rows of the
planned shards minus the rows read), the deadline (``spec.autoscale.deadline`` seconds after
the transform pass began), and with ``recprep run --serve`` the trainers' demand: the rows of the
shards they acknowledged (``delivery.service.acks.consumed_rows``) per second, one bin per
decision, and the backlog, committed rows not yet consumed in seconds of that demand. Without
trainers the policy sizes for the deadline, or without one for the pools' limits at the best
cost per row. Every decision, with
its reason, is kept (:attr:`EmbeddedAutoscaler.decisions`) for the run summary.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Seconds a CPU worker process of the embedded cluster is assumed to take to join until measured.
STARTUP_PRIOR = 3.0
#: Decisions kept for the summary (the first and the last ones).
MAX_DECISIONS = 50


@dataclass(frozen=True)
class Scaling:
    """One change the autoscaler made: when (seconds into the transform pass), the pool, from
    and to how many workers, and the policy's reason."""

    at: float
    pool: str
    before: int
    after: int
    reason: str
    #: When, on the wall clock (seconds since the epoch).
    wall: float = 0.0

    def line(self) -> str:
        return f"{self.at:.1f} s: {self.reason}"


class EmbeddedAutoscaler:
    """Runs ``policy`` every ``policy.interval`` seconds against ``cluster`` (a SpecCluster whose
    CPU workers are named ``cpu-<i>``); :meth:`tick` is called by the driver's shard loop."""

    def __init__(self, cluster, client, job, policy, est_rows: int, cores: int, clock=time.monotonic):
        """``cores``: the CPU workers this machine can run at once (its cores the ISP units
        leave): the CPU pool's limit is also that, whatever ``spec.pools.cpu.max`` says."""
        from ..predictor.signals import BinnedSeries, LagTracker

        self.cluster, self.client, self.job, self.policy = cluster, client, job, policy
        self.clock = clock
        self.started = clock()
        self.est_rows = est_rows
        self.cores = max(1, cores)
        self.lag = LagTracker(STARTUP_PRIOR)
        self.demand = BinnedSeries(max(policy.interval, 1.0))
        self.last = -math.inf
        self.decisions: list[Scaling] = []
        #: the policy's latest decision (``predictor.policies.Decision``), and whether trainers
        #: were attached when it was made
        self.decision = None
        self.trainers = False
        #: (when, rows) the trainers had consumed at the last decision; None: no trainer yet
        self.consumed: tuple[float, int] | None = None
        #: the most worker threads (cores) the cluster had at once
        self.peak_threads = 0
        self.requested: dict[str, float] = {}  # cpu worker name -> when it was asked for
        self.rows = {"cpu": 0, "isp": 0}
        self.seconds = {"cpu": 0.0, "isp": 0.0}
        self.model = job.spec.pools.isp.model
        self.next_index = 1 + max(
            (int(n.split("-", 1)[1]) for n in cluster.worker_spec if str(n).startswith("cpu-")), default=-1
        )

    # -- what the driver tells it ----------------------------------------------------------------
    def landed(self, result) -> None:
        """A finished shard: its rows and its tasks' seconds, per pool (whole-shard tasks only)."""
        if len(result.ran) == 1:
            pool = result.ran[0].pool
            self.rows[pool] += result.rows + result.bad_rows
            self.seconds[pool] += result.ran[0].seconds

    def rows_per_worker(self, pool: str) -> float | None:
        return self.rows[pool] / self.seconds[pool] if self.seconds[pool] > 0 else None

    # -- the loop ----------------------------------------------------------------------------------
    def tick(self, topology, rows_read: int, rows_written: int = 0, consumed=None) -> None:
        """Decide (at most once per interval) and apply. ``consumed()``: the rows the trainers
        have consumed so far (``delivery.service.acks.consumed_rows``), None without trainers."""
        now = self.clock()
        self._joined(topology, now)
        self.peak_threads = max(self.peak_threads, topology.cpu_threads + sum(topology.units.values()))
        if now - self.last < self.policy.interval:
            return
        cpu_rate = self.rows_per_worker("cpu") or self.rows_per_worker("isp")
        if cpu_rate is None:
            return  # nothing measured yet: no decision on a guess
        self.last = now
        self._consumption(now, consumed() if consumed is not None else None)
        obs = self._observe(topology, rows_read, rows_written, now, cpu_rate)
        decision = self.policy.decide(now - self.started, obs)
        self.decision, self.trainers = decision, obs.trainers
        current = obs.pools["cpu"].replicas
        target = decision.targets.get("cpu", current)
        if target != current:
            reason = decision.reasons.get("cpu", "")
            self._apply(topology, current, target)
            change = Scaling(round(now - self.started, 3), "cpu", current, target, reason, time.time())
            log.info("autoscaler: %s", change.line())
            if len(self.decisions) < MAX_DECISIONS:
                self.decisions.append(change)
            else:
                self.decisions[-1] = change

    def _joined(self, topology, now: float) -> None:
        names = set(topology.cpu_names)
        for name in [n for n in self.requested if n in names]:
            self.lag.record(self.requested.pop(name), now)

    def _cpu_specs(self) -> list[str]:
        return sorted((n for n in self.cluster.worker_spec if str(n).startswith("cpu-")), key=_index)

    def _consumption(self, now: float, rows: int | None) -> None:
        """One bin of the demand series: the trainers' rows/s since the last decision (a gap
        while no trainer has joined)."""
        if rows is None:
            self.demand.record(now, math.nan)
            return
        if self.consumed is not None:
            then, before = self.consumed
            # one bin per step since the last record (decisions come late under load)
            self.demand.record(now, max(0.0, rows - before) / max(now - then, 1e-3))
        self.consumed = (now, rows)

    def _observe(self, topology, rows_read: int, rows_written: int, now: float, cpu_rate: float):
        from ..predictor.signals import Observation, PoolState

        pools = self.job.spec.pools
        floor = 0 if topology.isp else 1  # some worker must run the shards
        isp_rate = self.rows_per_worker("isp") or cpu_rate
        cpu_pool = PoolState(
            "cpu",
            replicas=len(self._cpu_specs()),
            ready=len(topology.cpu),
            min=max(floor, min(pools.cpu.min, self.cores)),
            max=max(floor, min(pools.cpu.max, self.cores)),
            rows_per_worker=cpu_rate,
            price_per_hour=self.model.cpu_core_hourly(pools.cpu.preemptible),
            startup_lag=self.lag.quantile(),
        )
        nodes = len(topology.isp)
        states = {"cpu": cpu_pool}
        if nodes:
            units = sum(topology.units.values()) / nodes
            states["isp"] = PoolState(
                "isp",
                replicas=nodes,
                ready=nodes,
                min=nodes,
                max=nodes,
                rows_per_worker=isp_rate * units,
                price_per_hour=self.model.isp_node_hourly,
                startup_lag=self.lag.quantile(),
                hosts=nodes,
            )
        trainers = self.consumed is not None and len(self.demand) > 0
        backlog = math.inf
        if trainers:
            rate = float(self.demand.array()[-1]) if not math.isnan(self.demand.array()[-1]) else 0.0
            unread = max(0, rows_written - self.consumed[1])
            backlog = unread / rate if rate > 0 else math.inf
        return Observation(
            now=now - self.started,
            pools=states,
            demand=self.demand,
            backlog=backlog,
            queued_work=0.0,
            batch_time=math.nan,
            rows_left=max(0.0, float(self.est_rows - rows_read)),
            trainers=trainers,
        )

    def _apply(self, topology, current: int, target: int) -> None:
        from distributed import Nanny

        if target > current:
            for _ in range(target - current):
                name = f"cpu-{self.next_index}"
                self.next_index += 1
                self.cluster.worker_spec[name] = {
                    "cls": Nanny,
                    "options": {"nthreads": 1, "name": name, "silence_logs": logging.ERROR},
                }
                self.requested[name] = self.clock()
        else:
            # the newest first: retired through the scheduler (Dask hands their tasks to the
            # other workers, or the driver queues them again), then their processes stop
            victims = self._cpu_specs()[target - current :]
            self.client.retire_workers(names=victims, close_workers=True)
            for name in victims:
                self.cluster.worker_spec.pop(name, None)
                self.requested.pop(name, None)
        self.cluster.loop.add_callback(self.cluster._correct_state)

    def replicas(self) -> int:
        """CPU workers asked for (joined or starting)."""
        return len(self._cpu_specs())

    def summary(self) -> list[str]:
        return [d.line() for d in self.decisions]


def _index(name: str) -> int:
    return int(str(name).split("-", 1)[1])
