"""End to end: ``recprep operator`` (a subprocess) against the emulated API server, with the process
kubelet running the scheduler, the workers and the driver as local processes.

Needs kmock (the emulator) and kubectl; skipped with a reason without them.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "charts" / "recprep" / "crds" / "preprocessjobs.recprep.io.yaml"

# The emulated cluster's fixtures (they skip without kmock).
from tests.cluster.conftest import cluster, kubectl, wait_for  # noqa: E402,F401

CRITEO_TRANSFORMS = [
    {"op": "fill_null", "columns": "dense", "value": 0},
    {"op": "log", "columns": "dense", "offset": 3},
    {"op": "hex_to_int", "columns": "sparse"},
    {"op": "sigrid_hash", "columns": "sparse", "salt": 0, "maxValue": 1000},
    {"op": "to_list", "columns": "sparse"},
    {"op": "firstx", "columns": "sparse", "k": 1},
]


def preprocess_job(name: str, output: Path, transforms=CRITEO_TRANSFORMS) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": "synthetic://criteo?rows=20000&seed=1", "format": "criteo"},
            "transforms": transforms,
            "output": {"uri": str(output), "rowsPerShard": 5000},
            "pools": {"cpu": {"min": 1, "max": 1}, "isp": {"min": 0, "max": 0}},
            "ttlSecondsAfterFinished": 0,
        },
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<{path}: {exc}>"


class Operator:
    """``python -m recprep.cli operator`` as a subprocess in its own session."""

    def __init__(self, cluster, workdir: Path, env: dict[str, str]):
        self.port = _free_port()
        self.log = workdir / "operator.log"
        self._file = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recprep.cli", "operator", "--standalone",
             "--namespace", "default", "--liveness", f"http://127.0.0.1:{self.port}/healthz"],
            cwd=REPO, env={**cluster.env, **env}, stdout=self._file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.proc.returncode}:\n{_tail(self.log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._file.close()


@pytest.fixture()
def operator(cluster, kubectl, wait_for, tmp_path):
    pytest.importorskip("kopf")
    # `recprep` is the image's entrypoint; here the pods are local processes, so put a
    # `recprep` on their PATH that runs this checkout with the test's interpreter.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "recprep"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m recprep.cli "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    path = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"

    kubectl("apply", "--server-side", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/preprocessjobs.recprep.io", "--timeout=10s")
    # The image has recprep installed; this checkout is not, so the scheduler and the workers
    # (which unpickle recprep's tasks) find it through PYTHONPATH.
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    kubelet = cluster.start_kubelet(env={"PATH": path, "PYTHONPATH": pythonpath})
    op = Operator(cluster, tmp_path, {"PATH": path, "RECPREP_IMAGE": "unused",
                                      "RECPREP_NAMESPACE": "default",
                                      "RECPREP_IMAGE_PULL_POLICY": "Never"})
    try:
        wait_for(op.healthy, timeout=30, interval=0.2, message="the operator did not become live")
        yield op
    finally:
        op.stop()
        kubelet.stop()
    assert not kubelet.errors, f"the kubelet failed to reconcile: {kubelet.errors!r}"


def _ppj(cluster, name: str) -> dict:
    return cluster.get(f"/apis/recprep.io/v1alpha1/namespaces/default/preprocessjobs/{name}")


def _phase(cluster, name: str) -> str | None:
    return (_ppj(cluster, name).get("status") or {}).get("phase")


def _children(cluster, name: str) -> list[str]:
    selector = f"recprep.io/job={name}"
    found = []
    for kind, path in (("configmap", "/api/v1/namespaces/default/configmaps"),
                       ("service", "/api/v1/namespaces/default/services"),
                       ("deployment", "/apis/apps/v1/namespaces/default/deployments"),
                       ("job", "/apis/batch/v1/namespaces/default/jobs"),
                       ("pod", "/api/v1/namespaces/default/pods")):
        items = cluster.get(f"{path}?labelSelector={selector}")["items"]
        found += [f"{kind}/{item['metadata']['name']}" for item in items]
    return found


def test_job_runs_to_succeeded_and_deletion_removes_children(cluster, kubectl, wait_for, operator,
                                                               tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "out"
    kubectl("apply", "-f", "-", input=yaml.safe_dump(preprocess_job("clicks", out)))

    def succeeded():
        phase = _phase(cluster, "clicks")
        if phase == "Failed":
            raise AssertionError(f"job failed: {_ppj(cluster, 'clicks')['status']}\ndriver log:\n"
                                 f"{kubectl('logs', 'job/clicks-driver', check=False).stdout[-3000:]}")
        return phase == "Succeeded"

    try:
        wait_for(succeeded, timeout=120, interval=0.5, ignore=(LookupError,))
    except TimeoutError:
        pytest.fail(f"not Succeeded: {_ppj(cluster, 'clicks').get('status')}\n"
                    f"operator log:\n{_tail(operator.log)}\n"
                    f"driver: {kubectl('logs', 'job/clicks-driver', check=False).stdout[-3000:]}")

    done = _ppj(cluster, "clicks")
    assert "finalizers" not in done["metadata"]  # children go through ownerReferences alone
    status = done["status"]
    assert status["progressText"] == "4/4"
    assert status["workers"] == {"cpu": 0, "isp": 0}
    assert status["completionTime"]
    assert status["observedGeneration"] == 1
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    assert kinds == {"Progressing": "False", "Complete": "True"}

    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 4, parts
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 20_000

    table = kubectl("get", "ppj").stdout.split("\n")
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "CPU", "ISP", "AGE"], table
    assert table[1].split()[:5] == ["clicks", "Succeeded", "4/4", "0", "0"], table

    # ttlSecondsAfterFinished: 0 -> the scheduler and the workers go at once; driver and
    # ConfigMap stay with the PreprocessJob.
    wait_for(lambda: sorted(c for c in _children(cluster, "clicks") if not c.startswith("pod/"))
             == ["configmap/clicks-spec", "job/clicks-driver"], timeout=15, interval=0.2,
             message=f"the runtime was not cleaned up: {_children(cluster, 'clicks')}")

    kubectl("delete", "ppj", "clicks", "--timeout=20s")
    wait_for(lambda: not _children(cluster, "clicks"), timeout=20, interval=0.2,
             message="children survived the deletion of their PreprocessJob")


def test_invalid_job_fails_with_the_field_named(cluster, kubectl, wait_for, operator, tmp_path):
    transforms = [*CRITEO_TRANSFORMS[:-1], {"op": "firstx", "columns": "sparse", "k": 0}]
    kubectl("apply", "-f", "-",
            input=yaml.safe_dump(preprocess_job("broken", tmp_path / "out", transforms)))
    wait_for(lambda: _phase(cluster, "broken") == "Failed", timeout=30, interval=0.2,
             ignore=(LookupError,), message="the invalid job did not reach Failed")
    status = _ppj(cluster, "broken")["status"]
    assert "spec.transforms[5].k" in status["message"]
    failed = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert failed and failed[0]["reason"] == "InvalidSpec"
    assert not _children(cluster, "broken")
    assert not (tmp_path / "out").exists()
    assert "finalizers" not in _ppj(cluster, "broken")["metadata"]
