"""The kopf handlers, called directly: the invalid-spec path, idempotent creation of the
children, and spec updates (live pool bounds, refused and ignored changes) against the emulated
API server (tests/cluster)."""

from __future__ import annotations

import copy
import logging

import pytest

kopf = pytest.importorskip("kopf")
pytest.importorskip("kubernetes")

from recprep.operator import handlers, kube, labels  # noqa: E402
from recprep.operator import status as st  # noqa: E402
from recprep.operator.settings import Settings  # noqa: E402

from .conftest import job_document  # noqa: E402

# The emulated cluster's fixtures (they skip without kmock).
from tests.cluster.conftest import cluster, kubectl  # noqa: E402,F401

LOGGER = logging.getLogger("test.handlers")


def body_of(doc: dict, namespace: str = "default", uid: str = "uid-1") -> dict:
    body = copy.deepcopy(doc)
    body["metadata"].update(namespace=namespace, uid=uid, generation=1)
    return body


@pytest.fixture(autouse=True)
def _isolated_handlers():
    handlers.use_settings(Settings(namespace="default", image="unused"))
    yield
    handlers.use_settings(None)
    kube.use_api_client(None)


def test_invalid_spec_patches_failed_and_raises_permanent_error():
    doc = job_document(transforms=[{"op": "fill_null", "columns": "dense", "value": 0},
                                   {"op": "firstx", "columns": "sparse", "k": 0}])

    class NoApi:  # the invalid path must not touch the cluster
        def __getattr__(self, name):
            raise AssertionError(f"API used: {name}")

    kube.use_api_client(NoApi())
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError, match=r"spec\.transforms\[1\]\.k"):
        handlers.create_fn(body=body_of(doc), patch=patch, logger=LOGGER)
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
    return {kind: sorted(item["metadata"]["name"]
                         for item in cluster.get(f"{path}?labelSelector={selector}")["items"])
            for kind, path in paths.items()}


def test_valid_spec_creates_children_idempotently(cluster):
    kube.use_api_client(_api_client(cluster))
    body = body_of(job_document(name="clicks"))
    patch = kopf.Patch()
    handlers.create_fn(body=body, patch=patch, logger=LOGGER)
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
    handlers.create_fn(body=body, patch=again, logger=LOGGER)
    assert "status" not in again
    assert _children(cluster, "clicks") == expected

    deployment = cluster.get("/apis/apps/v1/namespaces/default/deployments/clicks-worker-cpu")
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["uid"] == "uid-1" and owner["kind"] == "PreprocessJob" and owner["controller"]
