"""Planning passes on the job's workers.

A compressed input is planned by one pass over its decompressed text (``sources.compressed``).
In the driver, the passes of a source's files share the driver's cores and memory: on
Kubernetes a small pod (the chart gives it a quarter of a core and 2 GiB, enough for one pass
at a time), while the job's workers wait for the plan with a core and 4 GiB each. On a cluster
the driver connects to (``recprep run --scheduler``, the operator's driver), the passes run on
the workers instead, one task per file, as many at once as the workers have threads: a Criteo
Terabyte month (24 gzip days) is planned in about the time of one day on 24 workers. Each pass
keeps its plan in the job output's ``_index/``, where the driver and the shard tasks read it (as
when the driver planned it); the plans already kept are read by the driver, not planned again.

The passes are given out at once, also to a cluster whose workers are still starting (they take
them as they join: the operator starts each pool with at least one worker). When the cluster has
no worker for ``ORPHANED`` seconds in a row, the driver runs the passes left itself, as it does
for the embedded cluster, whose workers share its machine's cores.
"""

from __future__ import annotations

import contextlib
import logging
import time

from ..errors import SourceError
from ..failpoints import failpoint
from .locality import scheduler_workers
from .machine import usable_cores
from .memory import tune_allocator
from .sources.compressed import IndexStore, Layout, plan_file
from .sources.files import reading

log = logging.getLogger(__name__)

#: seconds the passes wait for a worker while the cluster has none (its first workers may still
#: be starting: a node can take a minute or two to come) before the driver takes them
ORPHANED = 120.0
#: the failpoint (``recprep.failpoints``) in a pass, before it reads: its worker dies running it
FAILPOINT = "planning-pass"
#: seconds between two looks at the passes running (and at the cluster's workers)
LOOK = 0.5


def _pass(fs, path: str, header: bool, rows_per_shard: int, directory: str, info: dict) -> Layout:
    """One file's planning pass, in a worker, on the threads the worker runs tasks on."""
    from distributed import get_worker

    failpoint(FAILPOINT)
    tune_allocator()  # (as a shard task does) the nanny's setting made each pass 0.5 s slower of 1.0
    cores = max(1, min(usable_cores(), get_worker().state.nthreads))
    with reading(path, "plan the splits of"):
        return plan_file(fs, path, header, rows_per_shard, IndexStore(directory), cores, None, info)


def _raise(future, path: str) -> None:
    """The error of a pass that failed: its own (it names the file), or the file named when the
    pass took its workers down (``KilledWorker``: each died running it, out of memory say)."""
    from distributed import KilledWorker

    try:
        future.result()
    except KilledWorker:
        raise SourceError(
            f"{path}: cannot plan its splits: every worker that ran its planning pass died "
            "(out of memory? a pass holds up to 256 MiB and the file's index)"
        ) from None


class WorkerPasses:
    """``compressed.passes_run_by``'s runner for a Dask client: the passes as tasks on its
    workers (see the module's docstring)."""

    def __init__(self, client, orphaned: float = ORPHANED):
        self.client, self.orphaned = client, orphaned

    def _workers(self) -> int:
        return len(scheduler_workers(self.client))

    def __call__(self, fs, paths, infos, header, rows_per_shard, directory) -> list[Layout] | None:
        from distributed import wait

        futures = [
            self.client.submit(_pass, fs, p, header, rows_per_shard, directory, info, pure=False)
            for p, info in zip(paths, infos)
        ]
        log.info("planning %d compressed file(s) on the cluster's workers", len(paths))
        alone = None  # since when the cluster has had no worker
        try:
            while True:
                pending = [f for f in futures if f.status == "pending"]
                for f, path in zip(futures, paths):
                    if f.status in ("error", "cancelled"):
                        _raise(f, path)  # the first error, whichever file's (it names its file)
                if not pending:
                    return [f.result() for f in futures]
                with contextlib.suppress(TimeoutError):
                    wait(pending, timeout=LOOK, return_when="FIRST_COMPLETED")
                if self._workers():
                    alone = None
                elif alone is None:
                    alone = time.monotonic()
                elif time.monotonic() - alone > self.orphaned:
                    self.client.cancel(futures)
                    log.warning(
                        "no worker joined the cluster for %.0f s: the driver plans the compressed files",
                        self.orphaned,
                    )
                    return None  # the driver plans them (those made meanwhile are kept)
        except BaseException:  # an error, or the user's interrupt: the other passes stop too
            self.client.cancel(futures)
            raise
