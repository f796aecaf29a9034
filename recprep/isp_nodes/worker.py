"""The ISP worker: a Dask worker that stands for one storage node with N ISP units.

It advertises the Dask resource ``isp=N`` and N threads (one task per unit at a time), and is
named ``isp/<node>/<id>`` (``placement.worker_name``) so the driver knows which splits it holds
(``placement.holder``). The same worker runs in ``recprep run``'s embedded cluster
(``embedded_specs``) and in the operator's ``<job>-worker-isp`` pods (``recprep isp-worker``,
:func:`run_worker`).

Two modes (``spec.pools.isp.mode``):

- ``native``: the tasks run at the storage node's own speed (near-data processing on its cores);
- ``paced``: every offloaded task is held to the time the ISP model gives for it
  (:func:`pace`): the real work is done first, at full speed, and the task then waits out the
  rest of the modelled time. A machine can only emulate hardware slower than itself: when the
  real work takes longer than the model allows, the task is marked ``behind`` (and the
  accounting says the model was not kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .placement import node_of, worker_name

NATIVE, PACED = "native", "paced"


@dataclass(frozen=True)
class Paced:
    """What pacing did to one task."""

    model_seconds: float  #: the time the model gives the task on one ISP unit
    behind: bool  #: the real work took longer than that


def pace(started: float, modelled: float, clock=time.perf_counter, wait=time.sleep) -> Paced:
    """Hold a task that began at ``started`` (``clock`` time) until ``modelled`` seconds passed."""
    remaining = modelled - (clock() - started)
    if remaining > 0:
        wait(remaining)
    return Paced(modelled, remaining < 0)


def here() -> tuple[str, str | None]:
    """(name, storage node or None) of the Dask worker running the calling task; ("local", None)
    outside a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:
        return "local", None
    return str(worker.name), node_of(worker.name)


def embedded_specs(nodes: list[str], units: int) -> dict[str, dict]:
    """SpecCluster worker specs of one ISP worker per storage node in ``nodes``."""
    from distributed import Nanny

    return {
        worker_name(node, 0): {
            "cls": Nanny,
            "options": {"nthreads": units, "resources": {"isp": units}, "name": worker_name(node, 0)},
        }
        for node in nodes
    }


def run_worker(scheduler: str, node: str, ident: str, units: int) -> int:
    """Run an ISP worker for storage node ``node`` until the scheduler closes it (the pods'
    ``recprep isp-worker``). Returns the exit status."""
    import asyncio

    from distributed import Worker

    async def main() -> None:
        async with Worker(
            scheduler,
            nthreads=units,
            resources={"isp": units},
            name=worker_name(node, ident),
        ) as worker:
            await worker.finished()

    asyncio.run(main())
    return 0
