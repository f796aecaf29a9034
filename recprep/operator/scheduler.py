"""The operator's line to a job's Dask scheduler: what the workers hold, graceful retirement,
and the driver's published progress (``recprep.progress``).

A mechanism only: it reads and retires what it is told to; which workers go is decided by
``scaling.choose_retirements``. Every call opens one RPC connection (``distributed.core.rpc``,
no Client is registered on the scheduler), bounded by a deadline, and is synchronous so the
handlers and the follower can call it from their worker threads. An unreachable scheduler is a
``SchedulerUnavailable`` (the callers retry later); nothing here transforms data.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .. import progress as progress_doc
from . import labels
from .builders import POOL_RESOURCES, SCHEDULER_PORT

#: Seconds one scheduler call may take before it counts as unavailable.
CALL_TIMEOUT = 10.0
#: Seconds between two looks while waiting for retired workers to finish their tasks.
POLL_INTERVAL = 0.25
#: Status of a worker the scheduler is retiring (it accepts no new tasks).
RETIRING = "closing_gracefully"


class SchedulerUnavailable(Exception):
    """The scheduler did not answer (not up yet, gone, or the call timed out)."""


@dataclass(frozen=True)
class DaskWorker:
    """One worker as the scheduler sees it."""

    address: str
    #: Its Dask name (``pod_of`` gives its pod's).
    name: str
    status: str
    pool: str | None
    #: Tasks running right now (the worker's last heartbeat): lost and recomputed if it goes.
    executing: int = 0
    #: Tasks assigned to it, running or queued (queued ones move elsewhere if it goes).
    processing: int = 0
    stored_bytes: int = 0


@dataclass(frozen=True)
class SchedulerState:
    """The scheduler's workers by the name of their pod (``pod_of``) and the driver's last
    progress document (None when nothing was published)."""

    workers: dict[str, DaskWorker] = field(default_factory=dict)
    progress: dict[str, Any] | None = None

    def running_per_pool(self) -> dict[str, int]:
        """Workers accepting work, per pool (``status.workers``)."""
        counts = {pool: 0 for pool in labels.POOLS}
        for worker in self.workers.values():
            if worker.pool in counts and worker.status == "running":
                counts[worker.pool] += 1
        return counts


def address(job_name: str, namespace: str) -> str:
    """The scheduler's address from the operator's pod (which may be in another namespace)."""
    return f"tcp://{labels.scheduler_name(job_name)}.{namespace}.svc:{SCHEDULER_PORT}"


#: First part of an ISP worker's name, ``isp/<node>/<pod>``.
ISP_WORKER_PREFIX = "isp"


def pod_of(worker_name: str) -> str:
    """The pod a worker runs in, from its Dask name: a CPU worker is named after its pod
    (``dask worker --name $(POD_NAME)``), an ISP worker ``isp/<node>/<pod>`` (``recprep
    isp-worker --name $(POD_NAME)``: ``recprep.isp_nodes.placement.worker_name``, read back
    here without loading the data plane)."""
    parts = worker_name.split("/")
    if len(parts) == 3 and parts[0] == ISP_WORKER_PREFIX and parts[1] and parts[2]:
        return parts[2]
    return worker_name


def _pool_of(resources: dict[str, Any] | None) -> str | None:
    """The pool whose Dask resource the worker advertises (``builders.POOL_RESOURCES``)."""
    for pool, resource in POOL_RESOURCES.items():
        if resource in (resources or {}):
            return pool
    return None


def _run(coroutine_fn, *args, timeout: float | None = None):
    timeout = CALL_TIMEOUT if timeout is None else timeout

    async def bounded():
        try:
            return await asyncio.wait_for(coroutine_fn(*args), timeout)
        except (TimeoutError, OSError) as exc:
            raise SchedulerUnavailable(f"{args[0]}: {type(exc).__name__}: {exc}") from None

    return asyncio.run(bounded())


async def _state(addr: str) -> SchedulerState:
    from distributed.core import rpc

    async with rpc(addr) as scheduler:
        identity = await scheduler.identity()
        has_what = await scheduler.has_what()
        processing = await scheduler.processing()
        # Every task's size in one call, not the sizes of has_what's keys: a key released between
        # the two calls (the driver drops each shard's result once the ledger has it) would make
        # the scheduler's lookup fail. A key gone by then counts 0 bytes below.
        nbytes = await scheduler.nbytes(summary=False)
        published = await scheduler.get_metadata(keys=list(progress_doc.KEY), default=None)
    workers = {}
    for addr_, info in identity.get("workers", {}).items():
        name = str(info.get("name", addr_))
        counts = (info.get("metrics") or {}).get("task_counts") or {}
        workers[pod_of(name)] = DaskWorker(
            address=addr_,
            name=name,
            status=str(info.get("status", "")),
            pool=_pool_of(info.get("resources")),
            executing=int(counts.get("executing", 0)) + int(counts.get("long-running", 0)),
            processing=len(processing.get(addr_, ())),
            stored_bytes=sum(int(nbytes.get(k, 0)) for k in has_what.get(addr_, ())),
        )
    return SchedulerState(workers=workers, progress=progress_doc.parse(published))


def state(addr: str, timeout: float | None = None) -> SchedulerState:
    """The workers and the driver's progress, in one connection."""
    return _run(_state, addr, timeout=timeout)


async def _retire(addr: str, worker_addresses: list[str]) -> set[str]:
    from distributed.core import rpc

    async with rpc(addr) as scheduler:
        # close_workers=False, remove=False: the scheduler copies every key held only by these
        # workers elsewhere and marks them closing_gracefully (no new tasks), and leaves them
        # connected; their pods' deletion then stops them. Workers whose data could not be
        # placed anywhere are not in the answer and keep running.
        retired = await scheduler.retire_workers(
            workers=list(worker_addresses), close_workers=False, remove=False
        )
    return set(retired or ())


def retire(addr: str, worker_addresses: list[str], timeout: float) -> set[str]:
    """Retire the workers at ``worker_addresses``; the addresses actually retired."""
    if not worker_addresses:
        return set()
    return _run(_retire, addr, worker_addresses, timeout=timeout)


def wait_idle(addr: str, names: list[str], timeout: float) -> bool:
    """Wait until the (retired) workers of the pods ``names`` execute no task, up to
    ``timeout`` seconds; True if they are idle. A retiring worker starts nothing new: the tasks
    queued on it move to other workers when it goes, and one still running at the deadline is
    recomputed elsewhere (outputs are deterministic, and only the driver commits a shard)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = state(addr).workers
        if all(workers[n].executing == 0 for n in names if n in workers):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
