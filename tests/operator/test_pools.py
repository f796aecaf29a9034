"""Scale-down as carried out against a real API (the emulator, without a kubelet: the test plays
the ReplicaSet controller) and a real Dask scheduler whose workers are named after the pods."""

from __future__ import annotations

import logging
import socket

import pytest

pytest.importorskip("kubernetes")

from recprep.operator import builders, labels, pools, scaling
from recprep.operator import scheduler as link
from recprep.operator.settings import Settings
from recprep.workloads.locality import scheduler_workers

# The emulated cluster's fixtures (they skip without kmock).
from tests.cluster.conftest import cluster  # noqa: F401

from .conftest import job_document

pytestmark = pytest.mark.integration

LOGGER = logging.getLogger("test.pools")
PODS = "/api/v1/namespaces/default/pods"
DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/clicks-worker-cpu"
SETTINGS = Settings(namespace="default", image="unused", retire_timeout=10)


def _api(cluster):
    from kubernetes import config as k8s_config

    return k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))


def _pool(cluster, replicas: int, pods: dict[str, bool]):
    """The cpu pool's Deployment and its pods (name -> ready), as a controller would leave them."""
    from recprep.spec import load_job_dict

    job = load_job_dict(job_document(name="clicks"))
    deployment = builders.build_worker_deployment(job, labels.CPU, SETTINGS, replicas)
    deployment["spec"]["replicas"] = replicas  # beyond the spec bounds if the test says so
    cluster.request("POST", "/apis/apps/v1/namespaces/default/deployments", deployment)
    for name, ready in pods.items():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": labels.component_labels("clicks", labels.WORKER, labels.CPU),
            },
            "spec": deployment["spec"]["template"]["spec"],
        }
        cluster.request("POST", PODS, pod)
        cluster.request(
            "PATCH",
            f"{PODS}/{name}/status",
            {
                "status": {
                    "phase": "Running" if ready else "Pending",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                }
            },
            content_type="application/merge-patch+json",
        )
    return job


def _cost(cluster, pod: str) -> str | None:
    return (cluster.get(f"{PODS}/{pod}")["metadata"].get("annotations") or {}).get(
        scaling.DELETION_COST_ANNOTATION
    )


def test_scale_down_retires_the_cheapest_workers_first_and_never_one_whose_data_would_be_lost(
    cluster, dask_workers
):
    api = _api(cluster)
    job = _pool(cluster, 4, {"w-a": True, "w-b": True, "w-c": True, "w-d": False})
    dask, client = dask_workers({"w-a": {"cpu": 1}, "w-b": {"cpu": 1}, "w-c": {"cpu": 1}})
    addresses = {w["name"]: a for a, w in scheduler_workers(client).items()}
    small = client.scatter(b"s" * 1_000, workers=[addresses["w-a"]])
    big = client.scatter(b"B" * 1_000_000, workers=[addresses["w-b"]])

    def resize(target):
        return pools.resize_pool(
            api,
            job,
            "default",
            labels.CPU,
            target,
            SETTINGS,
            LOGGER,
            scheduler_address=dask.scheduler_address,
        )

    # 4 -> 3: the pod that is not ready goes; no worker is touched.
    change = resize(3)
    assert [r.pod for r in change.retired] == ["w-d"] and change.complete
    assert cluster.get(DEPLOYMENT)["spec"]["replicas"] == 3
    assert _cost(cluster, "w-d") == scaling.DELETION_COST
    assert {w.status for w in link.state(dask.scheduler_address).workers.values()} == {"running"}
    cluster.request("DELETE", f"{PODS}/w-d")  # the controller deletes the lowest-ranked pod

    # 3 -> 2: the idle worker, retired through the scheduler before its pod is marked.
    change = resize(2)
    assert [r.pod for r in change.retired] == ["w-c"]
    assert link.state(dask.scheduler_address).workers["w-c"].status == link.RETIRING
    assert _cost(cluster, "w-c") == scaling.DELETION_COST and _cost(cluster, "w-a") is None
    assert cluster.get(DEPLOYMENT)["spec"]["replicas"] == 2
    cluster.request("DELETE", f"{PODS}/w-c")

    # 2 -> 1: the worker holding less data; what it held is copied to the one that stays.
    change = resize(1)
    assert [r.pod for r in change.retired] == ["w-a"] and "1000 bytes held" in change.retired[0].reason
    assert addresses["w-b"] in client.who_has(small)[small.key]
    assert cluster.get(DEPLOYMENT)["spec"]["replicas"] == 1
    assert "pool cpu: 2 -> 1 workers; retired w-a (" in change.describe()
    cluster.request("DELETE", f"{PODS}/w-a")

    # 1 -> 0: the last worker's data has nowhere to go: it keeps its pod, the caller retries.
    change = resize(0)
    assert change.kept == ["w-b"] and not change.retired and not change.complete
    assert cluster.get(DEPLOYMENT)["spec"]["replicas"] == 1
    assert _cost(cluster, "w-b") is None
    assert big.result() == b"B" * 1_000_000


def test_no_ready_pod_goes_unseen_when_the_scheduler_cannot_be_asked(cluster, monkeypatch):
    monkeypatch.setattr(link, "CALL_TIMEOUT", 2.0)
    api = _api(cluster)
    job = _pool(cluster, 2, {"w-a": True, "w-b": True})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(link.SchedulerUnavailable):
        pools.resize_pool(
            api, job, "default", labels.CPU, 1, SETTINGS, LOGGER, scheduler_address=f"tcp://127.0.0.1:{port}"
        )
    assert cluster.get(DEPLOYMENT)["spec"]["replicas"] == 2
    assert _cost(cluster, "w-a") is None and _cost(cluster, "w-b") is None


def test_scale_up_and_replicas_without_pods(cluster):
    api = _api(cluster)
    job = _pool(cluster, 3, {"w-a": True})  # two replicas not created yet
    change = pools.resize_pool(
        api, job, "default", labels.CPU, 1, SETTINGS, LOGGER, scheduler_address="tcp://127.0.0.1:1"
    )  # not asked: no pod goes
    assert change.after == 1 and not change.retired  # the unborn replicas went, w-a stays
    assert cluster.get(DEPLOYMENT)["spec"]["replicas"] == 1
    change = pools.resize_pool(api, job, "default", labels.CPU, 4, SETTINGS, LOGGER)
    assert (change.before, change.after) == (1, 4) and change.complete
    assert cluster.get(DEPLOYMENT)["spec"]["replicas"] == 4
