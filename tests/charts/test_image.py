"""The default image as `docker/build-image.sh` builds it, run with podman: non-root on a read-only
root, and a job run in it writes the shards a local run writes.

Skipped where podman or the image is missing (the script builds it, as root; ``.ci/run`` runs the
script); ``RECPREP_IMAGE`` names another image to check."""

from __future__ import annotations

import os
import subprocess

import pytest

from ..cluster.containers import Podman
from ..conftest import REPO, recprep

IMAGE = os.environ.get("RECPREP_IMAGE", "localhost/recprep:0.1.0")
#: As a pod of the chart runs: its uid and gid, a read-only root, no capabilities.
HARDENED = ("--read-only", "--user", "10001:10001", "--cap-drop=ALL")
#: podman with the configuration docker/build-image.sh builds with (no images mapped: plain runs).
ENGINE = Podman({}, workdir=".")


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return ENGINE.run(*args, timeout=300)


@pytest.fixture(scope="module")
def image() -> str:
    if (why := ENGINE.unavailable(IMAGE)) is not None:
        pytest.skip(why)
    return IMAGE


def test_recprep_runs_as_10001_and_the_read_only_root_is_enforced(image):
    ran = podman("run", "--rm", *HARDENED, image, "--help")
    assert ran.returncode == 0 and "usage: recprep" in ran.stdout, ran.stderr
    who = podman("run", "--rm", *HARDENED, "--entrypoint", "id", image, "-u")
    assert who.stdout.strip() == "10001", who.stderr
    # a write outside /tmp fails as it would under readOnlyRootFilesystem; /tmp is writable
    script = "touch /opt/recprep/written; echo root=$?; touch /tmp/written; echo tmp=$?"
    probe = podman("run", "--rm", *HARDENED, "--entrypoint", "sh", image, "-c", script)
    assert "Read-only file system" in probe.stderr and "root=1" in probe.stdout, probe
    assert "tmp=0" in probe.stdout, probe


def test_a_job_run_in_the_image_writes_the_shards_of_a_local_run(image, tmp_path):
    demo = (REPO / "examples" / "demo.yaml").read_text()
    small = demo.replace("rows=500000", "rows=40000").replace("rowsPerShard: 65536", "rowsPerShard: 10000")
    assert small != demo
    container_out = tmp_path / "container"
    container_out.mkdir()
    container_out.chmod(0o777)  # the container writes as uid 10001
    manifest = tmp_path / "job.yaml"
    manifest.write_text(small.replace("uri: ./out/demo", "uri: /out/demo"))
    ran = podman(
        "run",
        "--rm",
        *HARDENED,
        "-v",
        f"{container_out}:/out",
        "-v",
        f"{manifest}:/job/job.yaml:ro",
        image,
        "run",
        "/job/job.yaml",
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    local = tmp_path / "local.yaml"
    local.write_text(small.replace("uri: ./out/demo", f"uri: {tmp_path / 'local'}"))
    done = recprep("run", str(local))
    assert done.returncode == 0, done.stderr
    shards = sorted(p.name for p in (container_out / "demo").glob("part-*.parquet"))
    assert shards == [f"part-{i:05d}.parquet" for i in range(4)]
    for name in shards:
        assert (container_out / "demo" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
