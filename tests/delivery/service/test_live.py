"""The bar: shards committed while the job runs are delivered before the job ends. The real driver
(run_job on a Dask cluster) is held after its 4th commit, through its progress hook, while a
trainer reads from the shard service."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

from recprep.delivery.service import ShardClient, ShardServer
from recprep.delivery.service.assignment import rank_shards
from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job

from ...conftest import wait_for
from .conftest import synthetic_doc
from .rows import row_digests

pytestmark = pytest.mark.integration
SHARDS, HOLD_AFTER = 12, 4


class HeldProgress:
    """The driver's progress: after ``hold_after`` commits, waits until released."""

    def __init__(self, hold_after: int):
        self.hold_after, self.committed = hold_after, 0
        self.held, self.release = threading.Event(), threading.Event()

    def start(self, *args):
        pass

    def phase(self, name):
        pass

    def warn(self, message):
        pass

    def advance(self, result):
        self.committed += 1
        if self.committed == self.hold_after:
            self.held.set()
            self.release.wait(120)


def test_shards_committed_while_the_job_runs_are_delivered_before_it_ends(tmp_path, dask_client):
    out = tmp_path / "out"
    job = load_job_dict(synthetic_doc(out, rows=SHARDS * 2000, rows_per_shard=2000, seed=5))
    progress = HeldProgress(HOLD_AFTER)
    outcome = {}

    def drive():
        try:
            outcome["summary"] = run_job(job, client=dask_client, progress=progress)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        wait_for(
            lambda: (out / "_job.json").exists() or "error" in outcome,
            timeout=120,
            message="the driver to open the output",
        )
        with ShardServer(str(out), state_dir=str(tmp_path / "state"), poll_interval=0.05) as server:
            assert progress.held.wait(120), outcome
            wait_for(
                lambda: len(server.shards.order) >= HOLD_AFTER,
                timeout=30,
                message="the server to see the commits",
            )
            committed_before = set(server.shards.order)
            assert len(committed_before) == HOLD_AFTER and not server.shards.complete
            client = ShardClient(server.location, "live", 0, 1)
            got, tables = [], []
            for shard in client:
                got.append(shard.index)
                tables.append(shard.table)
                client.ack(shard.index)
                if len(got) == HOLD_AFTER:
                    # every shard committed so far arrived while the driver is still held
                    assert set(got) == committed_before and driver.is_alive()
                    assert len(server.shards.entries) == HOLD_AFTER
                    progress.release.set()
            driver.join(120)
    finally:
        progress.release.set()
    assert "error" not in outcome and outcome["summary"].shards == SHARDS
    # the held shards came in the epoch's order among themselves; all 12 came, each once
    order = [s for s in rank_shards(SHARDS, 0, 0, 0, 1).tolist() if s in committed_before]
    assert got[:HOLD_AFTER] == order and sorted(got) == list(range(SHARDS))
    expected = np.sort(row_digests(pq.read_table(out)))
    assert (np.sort(np.concatenate([row_digests(t) for t in tables])) == expected).all()
