"""The kopf handlers, called directly: the invalid-spec path, idempotent creation of the
children, and spec updates (live pool bounds, refused and ignored changes) against the emulated
API server (tests/cluster)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest

kopf = pytest.importorskip("kopf")
pytest.importorskip("kubernetes")

from recprep.operator import handlers, labels  # noqa: E402
from recprep.operator import status as st  # noqa: E402
from recprep.operator.settings import Settings  # noqa: E402

# The emulated cluster's fixtures (they skip without kmock).
from tests.cluster.conftest import cluster, kubectl  # noqa: E402,F401

from .conftest import job_document  # noqa: E402

LOGGER = logging.getLogger("test.handlers")


def body_of(doc: dict, namespace: str = "default", uid: str = "uid-1") -> dict:
    body = copy.deepcopy(doc)
    body["metadata"].update(namespace=namespace, uid=uid, generation=1)
    return body


@pytest.fixture()
def memo() -> kopf.Memo:
    """The operator's state as the handlers get it from kopf (the API client set per test)."""
    return handlers.operator_memo(Settings(namespace="default", image="unused"))


def test_startup_tunes_kopf_and_keeps_the_operator_state_in_the_memo(memo):
    import asyncio

    class NoApi:  # the follower's pass fails on it: logged, and the loop goes on
        def __getattr__(self, name):
            raise AssertionError(f"API used: {name}")

    memo.api = NoApi()
    kopf_settings = kopf.OperatorSettings()
    handlers.startup_fn(settings=kopf_settings, memo=memo)
    assert kopf_settings.watching.server_timeout == memo.settings.watch_server_timeout
    assert kopf_settings.posting.level == logging.WARNING
    assert isinstance(memo.api, NoApi) and memo.namespace is None  # kept as main.run set them

    async def lifecycle():
        await handlers.start_follower(memo=memo)
        follower = memo.follower
        assert not follower.done()
        await asyncio.sleep(0.05)  # one failing pass: the follower survives it
        assert not follower.done()
        await handlers.stop_follower(memo=memo)
        return follower

    follower = asyncio.run(lifecycle())
    assert follower.cancelled() and memo.follower is None


def test_the_dashboard_starts_with_the_follower_and_a_taken_port_only_loses_the_page(caplog):
    import asyncio
    import dataclasses
    import socket
    import urllib.request

    pytest.importorskip("prometheus_client")

    async def lifecycle(memo):
        await handlers.start_follower(memo=memo)
        board = memo.dashboard
        await handlers.stop_follower(memo=memo)
        return board

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(namespace="default", image="unused", dashboard=f"127.0.0.1:{port}")
        busy = handlers.operator_memo(settings, api=object())
        with caplog.at_level(logging.ERROR):
            assert asyncio.run(lifecycle(busy)) is None  # the follower ran; no page
        assert f"RECPREP_DASHBOARD=127.0.0.1:{port}: cannot listen" in caplog.text
    free = handlers.operator_memo(dataclasses.replace(settings, dashboard="127.0.0.1:0"), api=object())

    async def serving(memo):
        await handlers.start_follower(memo=memo)
        url = memo.dashboard.server.url
        with urllib.request.urlopen(url + "healthz", timeout=5) as response:
            answer = response.read()
        await handlers.stop_follower(memo=memo)
        return answer

    assert asyncio.run(serving(free)) == b"ok\n" and free.dashboard is None  # closed with the follower


def test_invalid_spec_patches_failed_and_raises_permanent_error(memo):
    doc = job_document(
        transforms=[
            {"op": "fill_null", "columns": "dense", "value": 0},
            {"op": "firstx", "columns": "sparse", "k": 0},
        ]
    )

    class NoApi:  # the invalid path must not touch the cluster
        def __getattr__(self, name):
            raise AssertionError(f"API used: {name}")

    memo.api = NoApi()
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError, match=r"spec\.transforms\[1\]\.k"):
        handlers.create_fn(body=body_of(doc), patch=patch, logger=LOGGER, memo=memo)
    status = patch["status"]
    assert status["phase"] == st.FAILED
    assert "spec.transforms[1].k" in status["message"]
    failed = st.get_condition(status["conditions"], st.FAILED_CONDITION)
    assert failed["status"] == "True" and failed["reason"] == st.INVALID_SPEC


def _api_client(cluster):
    from kubernetes import config as k8s_config

    return k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))


def _children(cluster, name: str) -> dict[str, list[str]]:
    selector = labels.selector_string(name)
    paths = {
        "ConfigMap": "/api/v1/namespaces/default/configmaps",
        "Service": "/api/v1/namespaces/default/services",
        "Deployment": "/apis/apps/v1/namespaces/default/deployments",
        "Job": "/apis/batch/v1/namespaces/default/jobs",
    }
    return {
        kind: sorted(
            item["metadata"]["name"] for item in cluster.get(f"{path}?labelSelector={selector}")["items"]
        )
        for kind, path in paths.items()
    }


def test_valid_spec_creates_children_idempotently(cluster, memo):
    memo.api = _api_client(cluster)
    body = body_of(job_document(name="clicks"))
    patch = kopf.Patch()
    handlers.create_fn(body=body, patch=patch, logger=LOGGER, memo=memo)
    assert patch["status"]["phase"] == st.PENDING
    expected = {
        "ConfigMap": ["clicks-spec"],
        "Service": ["clicks-scheduler"],
        "Deployment": ["clicks-scheduler", "clicks-worker-cpu", "clicks-worker-isp"],
        "Job": ["clicks-driver"],
    }
    assert _children(cluster, "clicks") == expected

    # A second run (an operator restart before kopf recorded success): no duplicates, no error,
    # and a job that already has a phase is not moved back to Pending.
    body["status"] = {"phase": st.RUNNING}
    again = kopf.Patch()
    handlers.create_fn(body=body, patch=again, logger=LOGGER, memo=memo)
    assert "status" not in again
    assert _children(cluster, "clicks") == expected

    deployment = cluster.get("/apis/apps/v1/namespaces/default/deployments/clicks-worker-cpu")
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["uid"] == "uid-1" and owner["kind"] == "PreprocessJob" and owner["controller"]


CRD = Path(__file__).resolve().parents[2] / "charts" / "recprep" / "crds" / "preprocessjobs.recprep.io.yaml"
PPJ = "/apis/recprep.io/v1alpha1/namespaces/default/preprocessjobs"


def _running_job(cluster, memo: kopf.Memo, doc: dict) -> dict:
    """A PreprocessJob stored in the API whose create handler has run (children, Pending)."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/preprocessjobs.recprep.io", "--timeout=10s")
    cluster.request("POST", PPJ, doc)
    name = doc["metadata"]["name"]
    patch = kopf.Patch()
    handlers.create_fn(body=cluster.get(f"{PPJ}/{name}"), patch=patch, logger=LOGGER, memo=memo)
    cluster.request(
        "PATCH",
        f"{PPJ}/{name}/status",
        {"status": dict(patch["status"])},
        content_type="application/merge-patch+json",
    )
    return cluster.get(f"{PPJ}/{name}")


def _update(cluster, memo: kopf.Memo, name: str, spec_patch: dict, diff: list) -> tuple[dict, kopf.Patch]:
    cluster.request(
        "PATCH", f"{PPJ}/{name}", {"spec": spec_patch}, content_type="application/merge-patch+json"
    )
    body, patch = cluster.get(f"{PPJ}/{name}"), kopf.Patch()
    handlers.update_fn(body=body, diff=diff, patch=patch, logger=LOGGER, memo=memo)
    return body, patch


def _spec_applied(cluster, name: str) -> dict:
    status = cluster.get(f"{PPJ}/{name}")["status"]
    return st.get_condition(status["conditions"], st.SPEC_APPLIED)


def test_update_applies_pool_bounds_live_refuses_invalid_ones_and_reports_the_rest(cluster, memo):
    memo.api = _api_client(cluster)
    job = _running_job(cluster, memo, job_document(name="live"))

    def replicas() -> int:
        return cluster.get("/apis/apps/v1/namespaces/default/deployments/live-worker-cpu")["spec"]["replicas"]

    assert replicas() == 1

    # Raising the minimum scales up at once (no worker to retire, so no scheduler needed).
    body, patch = _update(
        cluster,
        memo,
        "live",
        {"pools": {"cpu": {"min": 3, "max": 6}}},
        [("change", ("pools", "cpu", "min"), 1, 3)],
    )
    assert replicas() == 3
    assert (
        patch["status"]["observedGeneration"]
        == body["metadata"]["generation"]
        == job["metadata"]["generation"] + 1
    )
    applied = _spec_applied(cluster, "live")
    assert applied["status"] == "True" and applied["message"] == "applied: spec.pools.cpu.min"

    # min > max: refused with the field named; nothing moves, the generation is not observed.
    cluster.request(
        "PATCH",
        f"{PPJ}/live",
        {"spec": {"pools": {"cpu": {"min": 9, "max": 2}}}},
        content_type="application/merge-patch+json",
    )
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError, match=r"spec\.pools\.cpu"):
        handlers.update_fn(
            body=cluster.get(f"{PPJ}/live"),
            patch=patch,
            logger=LOGGER,
            memo=memo,
            diff=[("change", ("pools", "cpu", "min"), 3, 9)],
        )
    assert "observedGeneration" not in patch.get("status", {})
    refused = _spec_applied(cluster, "live")
    assert refused["status"] == "False" and refused["reason"] == st.INVALID_SPEC
    assert "min (9) must not exceed max (2)" in refused["message"]
    assert replicas() == 3

    # A change the running job cannot take is reported, not applied.
    body, patch = _update(
        cluster,
        memo,
        "live",
        {"pools": {"cpu": {"min": 3, "max": 6}}, "backoffLimit": 7},
        [("change", ("backoffLimit",), 4, 7)],
    )
    assert patch["status"]["observedGeneration"] == body["metadata"]["generation"]
    note = _spec_applied(cluster, "live")
    assert note["status"] == "True" and "not applied to a running job: spec.backoffLimit" in note["message"]
    assert cluster.get("/apis/batch/v1/namespaces/default/jobs/live-driver")["spec"]["backoffLimit"] == 4


def test_update_of_a_finished_job_changes_nothing(cluster, memo):
    memo.api = _api_client(cluster)
    _running_job(cluster, memo, job_document(name="over"))
    cluster.request(
        "PATCH",
        f"{PPJ}/over/status",
        {"status": {"phase": st.SUCCEEDED}},
        content_type="application/merge-patch+json",
    )
    body, patch = _update(
        cluster,
        memo,
        "over",
        {"pools": {"cpu": {"min": 4, "max": 6}}},
        [("change", ("pools", "cpu", "min"), 1, 4)],
    )
    assert dict(patch["status"]) == {"observedGeneration": body["metadata"]["generation"]}
    assert (
        cluster.get("/apis/apps/v1/namespaces/default/deployments/over-worker-cpu")["spec"]["replicas"] == 1
    )


def test_the_follower_creates_the_shard_service_once_from_the_spec_in_effect(cluster, memo):
    from recprep.operator import follow

    api = memo.api = _api_client(cluster)
    settings = memo.settings
    shards = "/apis/apps/v1/namespaces/default/deployments/feed-shards"
    finished = {"phase": st.SUCCEEDED, "completionTime": "2026-01-01T00:00:00Z", "schedulerDeleted": True}

    # spec.serve added after the driver got its spec: the spec in effect has none, so no service
    _running_job(cluster, memo, job_document(name="late"))
    cluster.request(
        "PATCH",
        f"{PPJ}/late",
        {"spec": {"serve": {"port": 9000}}},
        content_type="application/merge-patch+json",
    )
    body = {**cluster.get(f"{PPJ}/late"), "status": finished}
    changes = follow.reconcile_one(api, body, settings, LOGGER)
    assert "spec.serve was added after the job started" in changes["shardService"]["message"]
    assert not cluster.exists("/apis/apps/v1/namespaces/default/deployments/late-shards")
    assert follow.reconcile_one(api, {**body, "status": {**finished, **changes}}, settings, LOGGER) == {}

    # a job that finished while the operator was down gets its service on the next pass
    _running_job(cluster, memo, job_document(name="feed", serve={"port": 9000, "tokenSecret": "feed-token"}))
    assert not cluster.exists(shards)  # not with the other children: the output is not opened yet
    body = {**cluster.get(f"{PPJ}/feed"), "status": finished}
    changes = follow.reconcile_one(api, body, settings, LOGGER)
    assert changes == {"shardService": {"name": "feed-shards", "url": "grpc://feed-shards.default.svc:9000"}}
    deployment = cluster.get(shards)
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["kind"] == "PreprocessJob" and owner["name"] == "feed" and owner["controller"]
    assert cluster.get("/api/v1/namespaces/default/services/feed-shards")["spec"]["ports"][0]["port"] == 9000
    # recorded in the status: nothing more to do; a lost status write is harmless (AlreadyExists)
    assert follow.reconcile_one(api, {**body, "status": {**finished, **changes}}, settings, LOGGER) == {}
    assert follow.reconcile_one(api, body, settings, LOGGER) == changes
    assert cluster.get(shards)["metadata"]["uid"] == deployment["metadata"]["uid"]
