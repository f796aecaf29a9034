"""The driver's locality scheduler when the CPU pool is replaced under it mid-job: one worker
retired through the scheduler and the other killed at once, new workers joining (a node
preempted on notice). Nothing is lost, nothing committed twice, the bytes are the plain run's."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from pathlib import Path

import pytest

from recprep.spec import load_job_dict
from recprep.workloads.locality import scheduler_workers
from recprep.workloads.runner import run_job

from ..conftest import job_doc

pytestmark = pytest.mark.integration

SOURCE = "synthetic://criteo?rows=400000&seed=11"


def _doc(out: Path) -> dict:
    doc = job_doc(SOURCE, str(out))
    doc["spec"]["output"]["rowsPerShard"] = 10000
    return doc


def _shards(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("part-*.parquet"))}


class _After:
    """A run's progress that calls ``then`` once ``shards`` shards have landed."""

    def __init__(self, shards: int, then):
        self.left, self.then = shards, then

    def start(self, *_args) -> None:
        pass

    def fitted(self, *_args) -> None:
        pass

    def phase(self, *_args) -> None:
        pass

    def warn(self, *_args) -> None:
        pass

    def advance(self, _result) -> None:
        self.left -= 1
        if self.left == 0:
            self.then()


def test_a_cpu_pool_replaced_mid_job_loses_nothing(tmp_path):
    from distributed import Client, Nanny, Scheduler, SpecCluster

    def spec(name: str) -> dict:
        return {"cls": Nanny, "options": {"nthreads": 1, "name": name, "silence_logs": logging.ERROR}}

    with (
        SpecCluster(
            workers={"old-0": spec("old-0"), "old-1": spec("old-1")},
            scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        pids = {w["name"]: a for a, w in scheduler_workers(client).items()}
        pid = client.run(os.getpid, workers=[pids["old-1"]])[pids["old-1"]]

        def preempt() -> None:
            # new workers are asked for at notice time; one old worker retires, the other dies
            cluster.worker_spec["new-0"] = spec("new-0")
            cluster.worker_spec["new-1"] = spec("new-1")
            cluster.loop.add_callback(cluster._correct_state)
            client.retire_workers(names=["old-0"], close_workers=True)
            os.kill(pid, signal.SIGKILL)
            cluster.worker_spec.pop("old-0", None)
            cluster.worker_spec.pop("old-1", None)  # its nanny is closed with it: no restart
            cluster.loop.add_callback(cluster._correct_state)

        # mid-job whatever the machine's speed: when the fourth shard lands (a timer of 1.5 s
        # came after the last one on a fast, idle machine), the driver waiting meanwhile
        summary = run_job(load_job_dict(_doc(tmp_path / "run")), client=client, progress=_After(4, preempt))
    lines = [json.loads(line) for line in (tmp_path / "run" / "_ledger.jsonl").read_text().splitlines()]
    assert sorted(line["shard"] for line in lines) == list(range(40))
    workers = {t["worker"] for line in lines for t in line["placement"]["tasks"]}
    assert {"new-0", "new-1"} & workers, workers  # the replacements took shards
    assert summary.rows_written == 400000
    plain = tmp_path / "plain"
    run_job(load_job_dict(_doc(plain)), workers=1)
    assert _shards(tmp_path / "run") == _shards(plain)


def test_a_result_lost_with_its_worker_is_given_up_at_once_not_after_the_fetch_timeout(monkeypatch):
    """The driver fetches a finished shard's record; when the worker holding it dies first, the
    client is told (the future is no longer finished) and the shard is requeued at the next
    look, not after ``FETCH_TIMEOUT`` (30 s each, one after another, stalled a preempted run)."""
    from recprep.workloads import locality

    class Future:
        def __init__(self, statuses, value=None):
            self.statuses, self.value = list(statuses), value
            self.calls = 0

        @property
        def status(self):
            return self.statuses[min(self.calls, len(self.statuses) - 1)]

        def result(self, timeout):
            self.calls += 1
            if self.value is None:
                raise TimeoutError
            return self.value

    def fetch(fut, timeout):
        assert timeout == locality.FETCH_POLL
        return fut.result(timeout)

    monkeypatch.setattr(locality, "FETCH_TIMEOUT", 600.0)
    assert locality._fetch(Future(["finished"], value="record"), fetch) == "record"
    lost = Future(["finished", "finished", "lost"])  # the scheduler noticed after two looks
    with pytest.raises(TimeoutError):
        locality._fetch(lost, fetch)
    assert lost.calls == 2
    monkeypatch.setattr(locality, "FETCH_TIMEOUT", 0.0)
    with pytest.raises(TimeoutError):  # still finished, never arriving: the timeout bounds it
        locality._fetch(Future(["finished"]), fetch)


def test_short_shards_are_kept_deeper_in_flight_so_a_thread_never_waits_on_the_driver():
    from recprep.workloads.locality import DEPTH, MAX_DEPTH, TURNAROUND, depth

    assert depth(None) == depth(0.0) == DEPTH == 2  # not measured yet
    assert depth(0.3) == DEPTH  # a Criteo shard: two ahead cover the driver's turnaround
    # 11 ms shards (the deduplicated Taobao job's): the turnaround covered by the ones queued
    assert depth(0.011) == 1 + math.ceil(TURNAROUND / 0.011) == 6
    assert depth(1e-4) == MAX_DEPTH
