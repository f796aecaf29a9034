"""The driver's locality scheduler: shards go to the ISP worker of the storage node that holds
their raw data, or to the CPU pool, as ``isp_nodes.placement.LocalityQueues`` decides.

The mechanism: the cluster's workers are read from the scheduler (an ISP worker is named
``isp/<node>/<id>``, every other worker is the CPU pool); each pool is kept at most
``depth`` tasks per thread ahead (so a thread never waits on the driver, and the queues keep
deciding who takes the rest); every task is restricted to its pool's workers. A shard whose
offloadable transforms are only a prefix of the job's runs in two tasks: the ISP task reads it
and runs the prefix (``tasks.offloaded_part``), a CPU task finishes and writes it
(``tasks.finish_shard``); Dask carries the table between them.

Workers that leave are noticed at the next refresh: the tasks restricted to them are cancelled
and their shards queued again (redone elsewhere, committed once: only a finished shard is
committed), a storage node with no worker left gives its queued shards to the others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..isp_nodes.placement import CPU, LocalityQueues, node_of, split_key
from .sources import Split
from .tasks import Handoff, ShardResult, finish_shard, offloaded_part, transform_shard

#: Tasks kept in flight per worker thread, at least.
DEPTH = 2
#: At most, for shards that take little time (``depth``).
MAX_DEPTH = 8
#: Seconds, about, from a task's end on a worker to the next one the driver sends reaching it:
#: the result fetched, the shard committed, the next submitted (a few Dask round trips).
TURNAROUND = 0.05
#: Seconds between two reads of the cluster's workers while shards land.
REFRESH = 1.0
#: Seconds to fetch a finished task's result (small: a shard's record, or a table handed over)
#: before it counts as lost with its worker.
FETCH_TIMEOUT = 30.0
#: Seconds between two looks, while fetching, at whether the result was lost with its worker
#: (the scheduler tells the client: the future is no longer finished).
FETCH_POLL = 0.25
#: Worker states (distributed's ``Status``) of a worker that takes tasks (paused: memory
#: pressure, it resumes).
TAKING = ("running", "paused")


def scheduler_workers(client) -> dict[str, dict]:
    """The scheduler's workers now, by address. Not ``client.scheduler_info()``: it fetches them
    into an attribute that the client's periodic refresh overwrites with totals and no worker
    (distributed 2026.8), so between its fetch and its return it gave no worker now and then (a
    job's summary said 0 workers; a look at the cluster took every task's worker for gone)."""
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]


@dataclass
class Topology:
    """The workers of the two pools (addresses), and their threads."""

    isp: dict[str, list[str]] = field(default_factory=dict)  #: storage node -> ISP workers
    units: dict[str, int] = field(default_factory=dict)  #: storage node -> threads of its workers
    worker_units: dict[str, int] = field(default_factory=dict)  #: ISP worker name -> units
    cpu: list[str] = field(default_factory=list)
    cpu_names: list[str] = field(default_factory=list)
    cpu_threads: int = 0

    @classmethod
    def read(cls, client) -> Topology:
        """The workers that take tasks: a worker being retired (``closing_gracefully``, a
        scale-down or a preemption notice) or closing is left out, so the tasks restricted to
        it are queued again for the others (``run_shards``) instead of waiting on it."""
        t = cls()
        for addr, w in scheduler_workers(client).items():
            if w.get("status", "running") not in TAKING:
                continue
            node = node_of(w.get("name"))
            threads = int(w.get("nthreads", 1))
            if node:
                t.isp.setdefault(node, []).append(addr)
                t.units[node] = t.units.get(node, 0) + threads
                t.worker_units[str(w.get("name"))] = threads
            else:
                t.cpu.append(addr)
                t.cpu_names.append(str(w.get("name")))
                t.cpu_threads += threads
        return t

    @property
    def addresses(self) -> set[str]:
        return {a for addrs in self.isp.values() for a in addrs} | set(self.cpu)


@dataclass
class _Flight:
    index: int
    pool: str  #: CPU, or the storage node
    workers: list[str]
    reason: str
    holder: str | None


@dataclass
class Landed:
    """A committed-to-be shard: its result and why it went where it went."""

    result: ShardResult
    holder: str | None
    reason: str


def wait_for_isp(client, wanted: int, seconds: float, clock=time.monotonic) -> Topology:
    """The topology once ``wanted`` ISP workers have joined (two pods may share a storage node),
    or after ``seconds``."""
    deadline = clock() + seconds
    topology = Topology.read(client)
    while len(topology.worker_units) < wanted and clock() < deadline:
        time.sleep(0.5)  # polling the scheduler for joining workers
        topology = Topology.read(client)
    return topology


def depth(seconds: float | None) -> int:
    """Tasks to keep in flight per thread of a pool whose shards take ``seconds`` (None: not
    measured yet): ``DEPTH``, and more when a shard takes less than the driver's turnaround, so
    that the thread still has one to start while the driver answers the one it finished."""
    if not seconds or seconds <= 0:
        return DEPTH
    return min(MAX_DEPTH, max(DEPTH, 1 + math.ceil(TURNAROUND / seconds)))


def _fetch(fut, result: Callable):
    """A finished task's value, by ``result(future, timeout)``; TimeoutError as soon as the
    client learns that the value went with its worker (a preempted node: the future is no
    longer finished, and the tasks it was restricted to may have no worker left to run it
    again), or after ``FETCH_TIMEOUT``. One long wait would cost that timeout for every result
    lost with a worker, one after another."""
    deadline = time.monotonic() + FETCH_TIMEOUT
    while True:
        if fut.status not in ("finished", "error"):
            raise TimeoutError
        try:
            return result(fut, FETCH_POLL)
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise


def run_shards(
    client,
    job,
    plan,
    splits: list[Split],
    states,
    directory: str,
    fsync: bool,
    topology: Topology,
    offload: bool,
    why_not: str,
    result: Callable,
    tick: Callable[[Topology], None] | None = None,
) -> Iterator[Landed]:
    """Run ``splits`` (the shards still to do) on the cluster; yields each finished shard as it
    lands. ``result(future, timeout)`` gives a task's value or raises its error (the driver's one
    line), or ``TimeoutError``;
    ``tick(topology)`` is called at every look at the cluster (the autoscaler's hook)."""
    from distributed import wait

    queues = LocalityQueues(
        [(s.index, split_key(s.path, s.start, s.stop)) for s in splits], list(topology.isp), offload, why_not
    )
    by_index = {s.index: s for s in splits}
    stop = plan.offloadable
    whole = stop >= len(plan.steps)
    args = (job.spec.output.compression, fsync)
    flights: dict = {}  # future -> _Flight
    refreshed = time.monotonic()

    def submit(fn: Callable, *a, flight: _Flight):
        fut = client.submit(fn, *a, workers=flight.workers or None, pure=False)
        flights[fut] = flight
        return fut

    def in_flight(pool: str) -> int:
        return sum(1 for f in flights.values() if f.pool == pool)

    def fill() -> None:
        for node, addrs in topology.isp.items():
            while in_flight(node) < depth(queues.seconds.get(node)) * topology.units[node]:
                took = queues.take_isp(node) or (queues.take_any() if not topology.cpu else None)
                if took is None:
                    break
                index, reason = took
                split = by_index[index]
                holder = queues.holder.get(index)
                flight = _Flight(index, node, list(addrs), reason, holder)
                if whole or not topology.cpu or holder != node:
                    submit(transform_shard, job, split, states, directory, *args, flight=flight)
                else:
                    flight.reason += (
                        f"; spec.transforms[{stop}:] ran on the CPU pool "
                        f"({plan.steps[stop].op.name} is not offloaded to ISP units)"
                    )
                    submit(offloaded_part, job, split, states, stop, flight=flight)
        while topology.cpu and in_flight(CPU) < depth(queues.seconds.get(CPU)) * topology.cpu_threads:
            took = queues.take_cpu(topology.units)
            if took is None:
                break
            index, reason = took
            flight = _Flight(index, CPU, list(topology.cpu), reason, queues.holder.get(index))
            submit(transform_shard, job, by_index[index], states, directory, *args, flight=flight)

    def refresh() -> None:
        nonlocal topology, refreshed
        topology = Topology.read(client)
        refreshed = time.monotonic()
        if tick is not None:
            tick(topology)
        for node in [n for n in queues.nodes if n not in topology.isp]:
            queues.lose(node)
        alive = topology.addresses
        for fut, flight in list(flights.items()):
            if flight.workers and not alive.intersection(flight.workers):
                fut.cancel()
                del flights[fut]
                queues.requeue(flight.index, "its worker left before it finished: done again")

    try:
        fill()
        while flights or len(queues):
            if not flights:  # work left and no worker to take it: wait for one to join
                time.sleep(REFRESH)  # polling the scheduler for joining workers
                refresh()
                fill()
                continue
            try:
                done, _ = wait(list(flights), timeout=REFRESH, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for fut in done:
                flight = flights.pop(fut)
                try:
                    value = _fetch(fut, result)
                except TimeoutError:
                    # done, but its result went with its worker before it was fetched: Dask would
                    # compute it again only on the workers it was restricted to, maybe all gone
                    fut.cancel()
                    queues.requeue(flight.index, "its result was lost with its worker: done again")
                    continue
                fut.release()
                if isinstance(value, Handoff):
                    queues.observe(flight.pool, value.ran.seconds)
                    # the rest of the shard on the CPU pool (its table travels there)
                    follow = _Flight(flight.index, CPU, list(topology.cpu), flight.reason, flight.holder)
                    submit(
                        finish_shard,
                        job,
                        by_index[flight.index],
                        states,
                        directory,
                        *args,
                        value,
                        flight=follow,
                    )
                    continue
                if len(value.ran) == 1:  # a whole shard: how long one takes on this pool
                    queues.observe(flight.pool, value.ran[0].seconds)
                yield Landed(value, flight.holder, flight.reason)
            if time.monotonic() - refreshed >= REFRESH:
                refresh()
            fill()
    finally:
        for fut in flights:
            if not fut.done():
                fut.cancel()
