"""The chart and a job with every pod a container of the image `docker/build-image.sh` builds: the
operator, the Dask scheduler, the workers and the driver run as ``podman run`` of it, with the pod
specs' user, read-only root, dropped capabilities, env and volumes (tests/cluster/containers.py).

Skipped where podman or the image is missing (``.ci/run`` builds the image first)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from tests.cluster.containers import Podman
from tests.conftest import recprep

from .test_operator_e2e import assert_committed_exactly_once, preprocess_job

LOCAL_IMAGE = "localhost/recprep:0.1.0"
#: The chart's default image (values.yaml: image.repository, image.tag).
CHART_IMAGE = "ghcr.io/recprep/recprep:0.1.0"
#: The chart's storage volume in the e2e values (a hostPath mounted at the same path).
SHARED = Path("/var/lib/recprep")


@pytest.fixture()
def podman(tmp_path) -> Podman:
    engine = Podman({CHART_IMAGE: LOCAL_IMAGE}, tmp_path / "containers")
    if (why := engine.unavailable(LOCAL_IMAGE)) is not None:
        pytest.skip(why)
    return engine


@pytest.fixture()
def shared_dir():
    """A directory on the pods' shared volume that the pods' user (10001) may write."""
    SHARED.mkdir(parents=True, exist_ok=True)
    path = SHARED / f"e2e-{secrets.token_hex(4)}"
    path.mkdir()
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_job_whose_pods_are_all_containers_of_the_image_writes_the_shards_of_a_local_run(
    deploy, podman, shared_dir, tmp_path
):
    deployed = deploy(containers=podman)
    operator = deployed.operator_pod()
    assert operator["spec"]["containers"][0]["image"] == CHART_IMAGE
    out = shared_dir / "out"
    deployed.apply_job(preprocess_job("boxed", out, rows=20000, rows_per_shard=5000))
    status = deployed.wait_phase("boxed", "Succeeded", timeout=180)
    assert status["shards"] == {"done": 4, "total": 4}
    assert_committed_exactly_once(out, 4)
    # the operator, the scheduler, the worker and the driver each ran as a container of the image
    started = {name.rsplit("-", 2)[1] for name, image in podman.started if image == LOCAL_IMAGE}
    print("containers started:", podman.started)
    assert {"operator", "scheduler", "worker", "driver"} <= started, podman.started
    running = podman.run("ps", "--format", "{{.Names}} {{.Image}}").stdout
    assert f"{operator['metadata']['name']}-operator-0 {LOCAL_IMAGE}" in running, running
    # the same job run here, as a user runs it
    local = tmp_path / "local.yaml"
    import yaml

    local.write_text(
        yaml.safe_dump(preprocess_job("boxed", tmp_path / "local-out", rows=20000, rows_per_shard=5000))
    )
    done = recprep("run", str(local))
    assert done.returncode == 0, done.stderr
    for i in range(4):
        name = f"part-{i:05d}.parquet"
        assert (out / name).read_bytes() == (tmp_path / "local-out" / name).read_bytes(), name


def test_a_pod_that_writes_outside_its_volumes_fails_as_on_a_cluster(deploy, podman, shared_dir):
    """The read-only root is enforced: a pod of the image that writes to /opt fails, naming the
    read-only file system, while a write to its /tmp emptyDir succeeds."""
    deployed = deploy(containers=podman)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "writer"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True},
            "containers": [
                {
                    "name": "main",
                    "image": CHART_IMAGE,
                    "command": ["sh", "-c", "touch /tmp/ok && touch /opt/recprep/nope"],
                    "securityContext": {"readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    deployed.cluster.apply(pod)
    path = "/api/v1/namespaces/default/pods/writer"
    deployed.wait_for(
        lambda: deployed.cluster.get(path).get("status", {}).get("phase") == "Failed",
        timeout=60,
        interval=0.25,
        message="the pod writing to its read-only root did not fail",
    )
    log = deployed.kubelet.logs("writer")
    assert "Read-only file system" in log and "/opt/recprep/nope" in log, log
    assert "/tmp/ok" not in log, log
