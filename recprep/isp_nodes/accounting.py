"""What a job cost, per pool: bytes read from storage and carried over the network, busy
seconds, modelled energy and money, and how closely paced ISP workers kept the model.

Built from the placement records the driver keeps per shard (the ledger's ``placement``) and
the ISP model (``spec.pools.isp.model``). Measured: bytes, seconds, rows. Modelled: joules
(busy seconds x the model's watts) and dollars (the pools' workers for the job's wall time x
the model's hourly prices). The document (:meth:`Account.to_json`) goes in the run summary, in
``<output>/_accounting.json``, and in the progress document the operator copies into
``status.accounting``.

Network: a shard read by a worker that does not hold its raw data (a CPU worker, in
CPU-centric placement) moves its raw bytes over the network; an ISP task that hands its table
to a CPU task moves that table's Arrow bytes; every written shard moves once, to the trainers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import IspModel


def _span(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of ``(start, end)`` intervals."""
    total, reach = 0.0, None
    for a, b in sorted(intervals):
        if reach is None or a > reach:
            total += b - a
            reach = b
        elif b > reach:
            total += b - reach
            reach = b
    return total


@dataclass
class WorkerPace:
    """One ISP worker's measured throughput against its model's.

    ``rowsPerSecond`` is the worker's rate while its units work: rows x units / the seconds its
    tasks took (each task holds one unit); ``modelRowsPerSecond`` the same with the seconds the
    model gives those tasks. ``elapsedRowsPerSecond`` divides by the wall time during which any
    unit was busy instead (lower when units idle, between tasks or at the end)."""

    rows: int = 0
    busy: list[tuple[float, float]] = field(default_factory=list)
    model_seconds: float = 0.0
    units: int = 1
    behind: int = 0  #: tasks whose real work took longer than the model gave them

    def to_json(self) -> dict:
        span = _span(self.busy)
        task_seconds = sum(b - a for a, b in self.busy)
        measured = self.rows * self.units / task_seconds if task_seconds else 0.0
        out = {
            "rows": self.rows,
            "units": self.units,
            "taskSeconds": round(task_seconds, 4),
            "busySeconds": round(span, 4),
            "rowsPerSecond": round(measured, 1),
            "elapsedRowsPerSecond": round(self.rows / span, 1) if span else 0.0,
        }
        if self.model_seconds:
            modelled = self.rows * self.units / self.model_seconds
            out |= {
                "modelRowsPerSecond": round(modelled, 1),
                "ratio": round(measured / modelled, 4),
                "tasksBehind": self.behind,
            }
        return out


@dataclass
class Account:
    """The accounting of one run (shards committed by an earlier run are not in it)."""

    model: IspModel
    preemptible: bool = True
    shards: int = 0
    rows: int = 0
    stored_bytes: int = 0
    raw_network: int = 0
    handoff_network: int = 0
    shard_network: int = 0
    busy: dict[str, float] = field(default_factory=lambda: {"isp": 0.0, "cpu": 0.0})
    shards_by_pool: dict[str, int] = field(default_factory=lambda: {"isp": 0, "cpu": 0, "isp+cpu": 0})
    isp_workers: dict[str, WorkerPace] = field(default_factory=dict)
    wall_seconds: float = 0.0
    #: workers of each pool for the run (ISP: storage nodes)
    workers: dict[str, int] = field(default_factory=lambda: {"isp": 0, "cpu": 0})

    def add(self, rows: int, shard_bytes: int, placement: dict, units: dict[str, int]) -> None:
        """One committed shard: its rows, its file's size and its placement record."""
        self.shards += 1
        self.rows += rows
        self.stored_bytes += placement["storedBytes"]
        net = placement["networkBytes"]
        self.raw_network += net["raw"]
        self.handoff_network += net["handoff"]
        self.shard_network += net["shard"]
        self.shards_by_pool[placement["pool"]] = self.shards_by_pool.get(placement["pool"], 0) + 1
        for task in placement["tasks"]:
            pool = "isp" if task.get("node") else "cpu"
            self.busy[pool] += task["seconds"]
            if pool == "isp":
                pace = self.isp_workers.setdefault(
                    task["worker"], WorkerPace(units=units.get(task["worker"], 1))
                )
                if task["steps"][0] == 0:
                    pace.rows += rows
                pace.busy.append((task["started"], task["started"] + task["seconds"]))
                if task.get("modelSeconds") is not None:
                    pace.model_seconds += task["modelSeconds"]
                    pace.behind += bool(task.get("behind"))

    @property
    def network_bytes(self) -> int:
        return self.raw_network + self.handoff_network + self.shard_network

    @property
    def joules(self) -> float:
        return self.busy["isp"] * self.model.isp_unit_watts + self.busy["cpu"] * self.model.cpu_core_watts

    @property
    def dollars(self) -> float:
        hourly = self.workers["isp"] * self.model.isp_node_hourly
        hourly += self.workers["cpu"] * self.model.cpu_core_hourly(self.preemptible)
        return hourly * self.wall_seconds / 3600

    @property
    def placement(self) -> str:
        used = [p for p, n in self.shards_by_pool.items() if n]
        if not used:
            return "none"
        if used == ["cpu"]:
            return "cpu-centric"
        return "isp" if "cpu" not in used else "mixed"

    def to_json(self) -> dict:
        dollars, joules = self.dollars, self.joules
        return {
            "placement": self.placement,
            "shards": self.shards,
            "shardsByPool": {k: v for k, v in self.shards_by_pool.items() if v},
            "rows": self.rows,
            "storedBytes": self.stored_bytes,
            "networkBytes": {
                "raw": self.raw_network,
                "handoff": self.handoff_network,
                "shard": self.shard_network,
                "total": self.network_bytes,
            },
            "busySeconds": {k: round(v, 3) for k, v in self.busy.items()},
            "workers": dict(self.workers),
            "wallSeconds": round(self.wall_seconds, 3),
            "modelled": {
                "joules": round(joules, 3),
                "dollars": round(dollars, 8),
                "rowsPerJoule": round(self.rows / joules, 3) if joules else None,
                "rowsPerDollar": round(self.rows / dollars, 1) if dollars else None,
            },
            "ispWorkers": {name: pace.to_json() for name, pace in sorted(self.isp_workers.items())},
        }


def placement_record(result, holder: str | None, reason: str) -> dict:
    """The ledger's placement of one shard from its ``tasks.ShardResult``: where each of its tasks
    ran, why the shard went there, and the bytes it moved."""
    tasks = []
    read_on = None
    for ran in result.ran:
        task = {
            "worker": ran.worker,
            "node": ran.node,
            "steps": list(ran.steps),
            "started": round(ran.started, 6),
            "seconds": round(ran.seconds, 6),
        }
        if ran.model_seconds is not None:
            task["modelSeconds"] = round(ran.model_seconds, 6)
            task["behind"] = ran.behind
        tasks.append(task)
        if ran.read:
            read_on = ran.node
    pools = {("isp" if r.node else "cpu") for r in result.ran}
    pool = "isp+cpu" if len(pools) > 1 else pools.pop()
    local = read_on is not None and read_on == holder
    return {
        "pool": pool,
        "holder": holder,
        "reason": reason,
        "tasks": tasks,
        "storedBytes": result.stored,
        "networkBytes": {
            "raw": 0 if local else result.stored,
            "handoff": result.handoff,
            "shard": result.bytes,
        },
    }
