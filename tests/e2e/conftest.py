"""The end-to-end setup: the chart rendered by the real helm, applied with kubectl to the emulated
cluster (tests/cluster), and the process kubelet running *everything* from its manifests: the
operator pod from the chart's Deployment, then the scheduler, workers and driver from the
operator's own manifests. Nothing is started by hand.

Pods are local processes that share this machine's filesystem, so a job's output directory
under ``tmp_path`` is where the workers write and where the tests read.

Every pod talks to the API as its ServiceAccount (the kubelet gives it a token) and the emulator
enforces RBAC, so the operator can do exactly what the chart's Role (or, with
``rbac.clusterWide``, ClusterRole) grants; the tests themselves are the cluster admin.
``deploy(values=..., edit=..., authorization=...)`` installs a variant of the chart.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# The emulated cluster's fixtures (they skip without kmock).
from tests.cluster.conftest import cluster, kubectl, wait_for  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
RELEASE = "rp"
OPERATOR_DEPLOYMENT = f"{RELEASE}-recprep-operator"
PPJ = f"/apis/recprep.io/v1alpha1/namespaces/{NAMESPACE}/preprocessjobs"
CHILD_KINDS = {
    "configmap": f"/api/v1/namespaces/{NAMESPACE}/configmaps",
    "service": f"/api/v1/namespaces/{NAMESPACE}/services",
    "deployment": f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
    "job": f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
    "pod": f"/api/v1/namespaces/{NAMESPACE}/pods",
}


def chart_values(token: str) -> dict[str, Any]:
    """Values with a placement per pool that only this run uses (``token``), so the worker pods
    can only carry it if it went values -> RECPREP_POD_DEFAULTS -> operator -> manifests."""
    return {
        "pools": {
            "cpu": {
                "nodeSelector": {"cloud.google.com/gke-spot": "true", "e2e.recprep.io/run": token},
                "tolerations": [
                    {
                        "key": "cloud.google.com/gke-spot",
                        "operator": "Equal",
                        "value": "true",
                        "effect": "NoSchedule",
                    },
                    {"key": f"spot-{token}", "operator": "Exists", "effect": "NoSchedule"},
                ],
                "affinity": {
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 10,
                                "preference": {
                                    "matchExpressions": [
                                        {"key": "e2e.recprep.io/zone", "operator": "In", "values": [token]}
                                    ]
                                },
                            }
                        ]
                    }
                },
            },
            "isp": {
                "nodeSelector": {"recprep.io/storage-node": "true", "e2e.recprep.io/run": token},
                "tolerations": [{"key": "recprep.io/storage", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {},
            },
        },
        # Small requests: nothing schedules on them here, but the values must reach the pods.
        "worker": {
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
        },
        # Pods here share the machine's filesystem; on a real cluster this is the shared volume.
        "storage": {
            "volumes": [
                {"name": "data", "hostPath": {"path": "/var/lib/recprep", "type": "DirectoryOrCreate"}}
            ],
            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/recprep"}],
        },
        "operator": {"env": {"RECPREP_RETIRE_TIMEOUT": "20"}},
        # the operator's dashboard (on the operator pod's address: see Deployed.dashboard_url)
        "dashboard": {"enabled": True},
    }


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Deployed:
    """The chart installed on the emulated cluster, with helpers to look at it."""

    def __init__(self, cluster, kubelet, wait_for, values: dict[str, Any], manifests: list[dict]):
        self.cluster, self.kubelet, self.wait_for = cluster, kubelet, wait_for
        self.kubectl = cluster.kubectl
        self.values, self.manifests = values, manifests
        (account,) = [m for m in manifests if m["kind"] == "ServiceAccount"]
        #: Who the operator is to the API server: its ServiceAccount.
        self.operator_user = f"system:serviceaccount:{NAMESPACE}:{account['metadata']['name']}"

    # --- the operator ---

    def operator_pod(self) -> dict:
        pods = [
            p
            for p in self.cluster.get(f"{CHILD_KINDS['pod']}?labelSelector=recprep.io/component=operator")[
                "items"
            ]
        ]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        return pods[0]

    @property
    def dashboard_url(self) -> str:
        """The operator's dashboard on its pod's address (what `kubectl port-forward` reaches; the
        process kubelet's pods have addresses of this machine)."""
        port = self.values["dashboard"].get("port", 8090)
        return f"http://{self.operator_pod()['status']['podIP']}:{port}/"

    def operator_ready(self) -> bool:
        deployment = self.cluster.get(f"{CHILD_KINDS['deployment']}/{OPERATOR_DEPLOYMENT}")
        return (deployment.get("status") or {}).get("readyReplicas") == 1

    def operator_log(self) -> str:
        try:
            return self.kubelet.logs(self.operator_pod()["metadata"]["name"])
        except (AssertionError, LookupError) as exc:
            return f"<no operator log: {exc}>"

    def operator_restarts(self) -> int:
        """How many times the kubelet restarted the operator's container."""
        return self.operator_pod()["status"]["containerStatuses"][0]["restartCount"]

    def operator_pid(self) -> int:
        """The pid of the operator's process (its container's)."""
        statuses = self.operator_pod()["status"]["containerStatuses"]
        return int(statuses[0]["containerID"].removeprefix("process://"))

    # --- the API server's view ---

    def denials(self) -> list[str]:
        """The 403 messages the API server answered so far (RBAC)."""
        emulator = self.cluster.emulator
        return self.cluster.call(lambda: list(emulator.denials))

    def creations(self, name: str) -> dict[str, int]:
        """``kind/name`` -> how many times it was created, for the children of job ``name``
        (named ``<name>-...``; pods left out)."""
        emulator = self.cluster.emulator
        # a snapshot; with twenty jobs' processes on two cores the emulator's loop may be starved
        counts = self.cluster.call(lambda: dict(emulator.creations), timeout=60)
        return {
            f"{kind.rsplit('/', 1)[1].lower()}/{obj}": n
            for (kind, namespace, obj), n in counts.items()
            if namespace == NAMESPACE and obj.startswith(f"{name}-") and not kind.endswith("/Pod")
        }

    def kill(self, pod: dict) -> int:
        """SIGKILL the (first) container process of ``pod``; its pid."""
        statuses = pod["status"]["containerStatuses"]
        pid = int(statuses[0]["containerID"].removeprefix("process://"))
        os.kill(pid, signal.SIGKILL)
        return pid

    # --- jobs ---

    def ppj(self, name: str) -> dict:
        return self.cluster.get(f"{PPJ}/{name}")

    def status(self, name: str) -> dict:
        return self.ppj(name).get("status") or {}

    def children(self, name: str) -> list[str]:
        found = []
        for kind, path in CHILD_KINDS.items():
            items = self.cluster.get(f"{path}?labelSelector=recprep.io/job={name}")["items"]
            found += [f"{kind}/{item['metadata']['name']}" for item in items]
        return sorted(found)

    def pods(self, name: str, component: str, pool: str | None = None) -> list[dict]:
        selector = f"recprep.io/job={name},recprep.io/component={component}"
        if pool:
            selector += f",recprep.io/pool={pool}"
        return self.cluster.get(f"{CHILD_KINDS['pod']}?labelSelector={selector}")["items"]

    def diagnostics(self, name: str) -> str:
        driver = self.kubectl("logs", f"job/{name}-driver", check=False).stdout
        try:
            status = self.status(name)
        except LookupError:
            status = "<gone>"
        return (
            f"status: {status}\nchildren: {self.children(name)}\n"
            f"operator log:\n{_tail(self.operator_log())}\ndriver log:\n{_tail(driver, 30)}"
        )

    def wait_phase(self, name: str, phase: str, timeout: float) -> dict:
        """Wait until job ``name`` is in ``phase``; fail at once (with diagnostics) if it ends
        in another terminal phase."""

        def reached():
            status = self.status(name)
            if status.get("phase") in ("Succeeded", "Failed") and status["phase"] != phase:
                raise AssertionError(
                    f"{name} is {status['phase']}, expected {phase}\n{self.diagnostics(name)}"
                )
            return status if status.get("phase") == phase else None

        try:
            return self.wait_for(reached, timeout=timeout, interval=0.25, ignore=(LookupError,))
        except TimeoutError:
            pytest.fail(f"{name} did not reach {phase} in {timeout}s\n{self.diagnostics(name)}")

    def apply_job(self, manifest: dict) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, mappings recursively (as helm merges values)."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


@contextlib.contextmanager
def _installed(
    cluster,
    wait_for,
    tmp_path: Path,
    *,
    values: dict[str, Any] | None = None,
    edit: Callable[[list[dict]], list[dict]] | None = None,
    authorization: str = "RBAC",
    containers: Any = None,
) -> Iterator[Deployed]:
    pytest.importorskip("kopf")
    from tests.charts import tools

    # a string to YAML and helm alike
    chart = _merged(chart_values("run-" + secrets.token_hex(4)), values or {})
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(chart))
    manifests = tools.helm_template(
        release=RELEASE, namespace=NAMESPACE, values_file=values_file, include_crds=True
    )
    if edit is not None:
        manifests = edit(manifests)

    # `recprep` is the image's entrypoint; here pods are local processes, so put a `recprep`
    # on their PATH that runs this checkout with the test's interpreter, and let the Dask
    # processes (which unpickle recprep's tasks) find the checkout through PYTHONPATH.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "recprep"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m recprep.cli "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    path = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)

    # The operator pod talks to the API with its ServiceAccount's token (the kubelet requests
    # one per pod); with RBAC it gets exactly what the chart's Role (or ClusterRole) grants.
    cluster.set_authorization(authorization)
    crds = [m for m in manifests if m["kind"] == "CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == ["preprocessjobs.recprep.io"]
    cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(crds))
    cluster.kubectl("wait", "--for=condition=Established", "crd/preprocessjobs.recprep.io", "--timeout=10s")
    rest = [m for m in manifests if m["kind"] != "CustomResourceDefinition"]
    role = "ClusterRole" if chart.get("rbac", {}).get("clusterWide") else "Role"
    kinds = {"ServiceAccount", role, f"{role}Binding", "Deployment"}
    if chart.get("dashboard", {}).get("enabled"):
        kinds.add("Service")
    if role == "Role" and chart.get("rbac", {}).get("nodes", True):
        kinds |= {"ClusterRole", "ClusterRoleBinding"}  # reading Nodes (spot-interruption taints)
    assert {m["kind"] for m in rest} == kinds
    # containers (tests/cluster/containers.Podman): every pod runs as a container of its image
    # instead, and PATH and PYTHONPATH do not reach it
    kubelet = cluster.start_kubelet(env={"PATH": path, "PYTHONPATH": pythonpath}, containers=containers)
    result = Deployed(cluster, kubelet, wait_for, chart, manifests)
    try:
        cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(rest))
        try:
            wait_for(result.operator_ready, timeout=90, interval=0.25, ignore=(LookupError,))
        except TimeoutError:
            pytest.fail(f"the operator pod did not become ready\n{_tail(result.operator_log())}")
        yield result
    finally:
        kubelet.stop()
    assert not kubelet.errors, f"the kubelet failed to reconcile: {kubelet.errors!r}"


@pytest.fixture()
def deploy(cluster, wait_for, tmp_path) -> Iterator[Callable[..., Deployed]]:
    """Install the chart (once per test): ``deploy(values=..., edit=..., authorization=...)``;
    ``values`` are merged into ``chart_values``, ``edit`` changes the rendered manifests before
    they are applied, ``authorization`` is the emulator's mode (RBAC by default), ``containers``
    a ``tests.cluster.containers.Podman`` to run the pods as containers of their image."""
    with contextlib.ExitStack() as stack:

        def install(**options: Any) -> Deployed:
            return stack.enter_context(_installed(cluster, wait_for, tmp_path, **options))

        yield install


@pytest.fixture()
def deployed(deploy) -> Deployed:
    """The chart installed with the e2e values, RBAC enforced for the operator."""
    return deploy()
