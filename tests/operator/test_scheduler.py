"""The operator's line to a Dask scheduler, against a real one: what the workers hold, graceful
retirement, the driver's progress, and an unreachable scheduler."""

from __future__ import annotations

import socket

import pytest

from recprep import progress
from recprep.operator import scheduler as link
from recprep.workloads.locality import scheduler_workers

# wait_for: the deadline-bounded poll of the cluster tests.
from tests.cluster.conftest import wait_for  # noqa: F401

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_state_names_workers_by_pod_with_their_pool_and_what_they_hold(dask_workers):
    cluster, client = dask_workers(
        {"job-worker-cpu-a": {"cpu": 1}, "job-worker-cpu-b": {"cpu": 1}, "job-worker-isp-c": {"isp": 1}}
    )
    addr_a = next(a for a, w in scheduler_workers(client).items() if w["name"] == "job-worker-cpu-a")
    held = client.scatter(b"x" * 1_000_000, workers=[addr_a])
    state = link.state(cluster.scheduler_address)
    assert set(state.workers) == {"job-worker-cpu-a", "job-worker-cpu-b", "job-worker-isp-c"}
    assert {n: w.pool for n, w in state.workers.items()} == {
        "job-worker-cpu-a": "cpu",
        "job-worker-cpu-b": "cpu",
        "job-worker-isp-c": "isp",
    }
    assert state.workers["job-worker-cpu-a"].stored_bytes >= 1_000_000
    assert state.workers["job-worker-cpu-b"].stored_bytes == 0
    assert state.running_per_pool() == {"cpu": 2, "isp": 1}
    assert state.progress is None
    del held

    client.set_metadata(list(progress.KEY), progress.document("transform", shards_done=2, shards_total=5))
    assert link.state(cluster.scheduler_address).progress["shardsDone"] == 2


def test_isp_workers_are_known_by_their_pod_and_pool_whatever_their_units(dask_workers):
    # recprep isp-worker names its worker isp/<node>/<pod> and advertises isp=<units>
    cluster, _ = dask_workers({"job-worker-cpu-a": {"cpu": 1}, "isp/node-1/job-worker-isp-b": {"isp": 4}})
    state = link.state(cluster.scheduler_address)
    assert {n: (w.name, w.pool) for n, w in state.workers.items()} == {
        "job-worker-cpu-a": ("job-worker-cpu-a", "cpu"),
        "job-worker-isp-b": ("isp/node-1/job-worker-isp-b", "isp"),
    }
    assert state.running_per_pool() == {"cpu": 1, "isp": 1}


def test_pod_of():
    assert link.pod_of("job-worker-cpu-a") == "job-worker-cpu-a"
    assert link.pod_of("isp/node-1/job-worker-isp-b") == "job-worker-isp-b"
    for other in ("isp/node-1", "isp//pod", "isp/node/pod/x", "dask/node/pod"):
        assert link.pod_of(other) == other


def test_state_survives_a_key_released_between_its_calls(dask_workers):
    """The driver releases each shard's result once the ledger has it, so a key the scheduler
    listed a moment ago may be gone by the next call (CI saw a KeyError from the scheduler)."""
    cluster, client = dask_workers({"job-worker-cpu-a": {"cpu": 1}})
    held = client.scatter(b"x" * 1000)
    has_what = cluster.scheduler.handlers["has_what"]

    def has_what_then_release(*args, **kwargs):
        answer = has_what(*args, **kwargs)
        return {addr: [*keys, "transform_shard-released-meanwhile"] for addr, keys in answer.items()}

    cluster.scheduler.handlers["has_what"] = has_what_then_release
    state = link.state(cluster.scheduler_address)
    assert state.workers["job-worker-cpu-a"].stored_bytes >= 1000
    del held


def test_retire_moves_the_data_and_leaves_the_worker_taking_no_work(dask_workers):
    cluster, client = dask_workers({"a": {"cpu": 1}, "b": {"cpu": 1}})
    workers = {w["name"]: a for a, w in scheduler_workers(client).items()}
    held = client.scatter(b"z" * 10_000, workers=[workers["a"]])
    retired = link.retire(cluster.scheduler_address, [workers["a"]], timeout=20)
    assert retired == {workers["a"]}
    state = link.state(cluster.scheduler_address)
    assert state.workers["a"].status == link.RETIRING
    assert state.running_per_pool() == {"cpu": 1, "isp": 0}
    assert workers["b"] in client.who_has(held)[held.key]  # copied: a can go without a loss
    assert held.result() == b"z" * 10_000
    new = client.submit(sum, [1, 2, 3], pure=False)
    assert new.result(timeout=10) == 6 and set(client.who_has(new)[new.key]) == {workers["b"]}
    assert link.wait_idle(cluster.scheduler_address, ["a"], timeout=10)
    assert link.retire(cluster.scheduler_address, [], timeout=5) == set()


def test_a_worker_whose_data_has_nowhere_to_go_is_not_retired(dask_workers, wait_for):
    cluster, client = dask_workers({"only": {"cpu": 1}})
    (addr,) = scheduler_workers(client)
    held = client.scatter(b"y" * 1000)
    assert link.retire(cluster.scheduler_address, [addr], timeout=10) == set()
    # The scheduler gives the worker its status back (one round trip to the worker).
    wait_for(lambda: link.state(cluster.scheduler_address).workers["only"].status == "running", timeout=10)
    assert held.result() == b"y" * 1000


def test_an_unreachable_scheduler_is_reported_not_raised_as_a_crash():
    with pytest.raises(link.SchedulerUnavailable):
        link.state(f"tcp://127.0.0.1:{_free_port()}", timeout=3)


def test_the_driver_s_progress_of_a_real_run_reaches_the_operator(dask_workers, tmp_path):
    from recprep.spec import load_job_dict
    from recprep.workloads.runner import run_job

    cluster, client = dask_workers({"w": {"cpu": 1}})
    job = load_job_dict(
        {
            "apiVersion": "recprep.io/v1alpha1",
            "kind": "PreprocessJob",
            "metadata": {"name": "p"},
            "spec": {
                "source": {"uri": "synthetic://criteo?rows=3000&seed=2", "format": "criteo"},
                "transforms": [{"op": "fill_null", "columns": "dense", "value": 0}],
                "output": {"uri": str(tmp_path / "out"), "rowsPerShard": 1000},
            },
        }
    )
    reporter = progress.SchedulerProgress(client)
    run_job(job, client=client, progress=reporter)
    reporter.finish()
    doc = link.state(cluster.scheduler_address).progress
    assert (doc["stage"], doc["shardsDone"], doc["shardsTotal"], doc["rows"]) == ("done", 3, 3, 3000)
