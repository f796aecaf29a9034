"""Shared fixtures: the real samples in ../shared/data (skipped when absent), job documents,
and one Dask cluster per test session for tests that do not care about the worker count."""

from __future__ import annotations

import copy
import gzip
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

#: This process's environment before any test started a Dask cluster.
_CLEAN_ENVIRON = dict(os.environ)


def _nanny_environ() -> list[str]:
    """What Dask's nanny puts in the environment of the process that starts its workers
    (``distributed.nanny.pre-spawn-environ``: MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, ...);
    nothing before distributed is imported, when no nanny can have run."""
    if "distributed" not in sys.modules:
        return []
    import dask

    return list(dask.config.get("distributed.nanny.pre-spawn-environ", {}))


@pytest.fixture(autouse=True)
def _without_the_nannys_environment():
    """Each test starts, and ends, with the nanny's variables as the session began: every
    process a later test starts (the test cluster's pods, a CLI run) inherits this process's
    environment, and real pods and shells do not have them (under the trim threshold alone the
    trainers of the e2e tests ran 1.4x slower after any test that had started a Dask cluster)."""

    def restore():
        for key in _nanny_environ():
            if key in _CLEAN_ENVIRON:
                os.environ[key] = _CLEAN_ENVIRON[key]
            else:
                os.environ.pop(key, None)

    restore()
    yield
    restore()


def recprep(*args, cwd=REPO, timeout=300) -> subprocess.CompletedProcess:
    """``recprep ARGS`` as a user runs it (a fresh interpreter), with its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "recprep.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


SHARED_DATA = REPO.parent / "shared" / "data"
CRITEO_SAMPLE = SHARED_DATA / "criteo_kaggle_train_10k.tsv.gz"

#: the README's recipe, as examples/criteo-sample.yaml has it (tests and example cannot drift)
CRITEO_TRANSFORMS = yaml.safe_load((REPO / "examples" / "criteo-sample.yaml").read_text())["spec"][
    "transforms"
]


def job_doc(source_uri: str, output_uri: str, transforms=None, **source) -> dict:
    """A PreprocessJob document like the README's, with overridable source fields."""
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "test-job"},
        "spec": {
            "source": {"uri": source_uri, "format": "criteo", **source},
            "transforms": copy.deepcopy(CRITEO_TRANSFORMS if transforms is None else transforms),
            "output": {"uri": output_uri, "format": "parquet", "rowsPerShard": 65536},
        },
    }


@pytest.fixture(scope="session")
def criteo_sample() -> Path:
    if not CRITEO_SAMPLE.exists():
        pytest.skip(f"real sample data not present at {CRITEO_SAMPLE}")
    return CRITEO_SAMPLE


@pytest.fixture(scope="session")
def criteo_lines(criteo_sample) -> list[bytes]:
    return gzip.open(criteo_sample).read().splitlines(keepends=True)


@pytest.fixture(scope="session")
def criteo_tsv(criteo_lines, tmp_path_factory) -> Path:
    """The real sample, uncompressed (so it splits into byte ranges)."""
    path = tmp_path_factory.mktemp("criteo") / "criteo.tsv"
    path.write_bytes(b"".join(criteo_lines))
    return path


@pytest.fixture(scope="session")
def dask_client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def failpoint_cluster(tmp_path, failpoint: str, allowed_failures: int):
    """A local cluster of 2 single-threaded worker processes whose first to reach ``failpoint``
    (``recprep.failpoints``) dies there; a task may kill ``allowed_failures`` workers before it
    fails (``KilledWorker``). The mark is ``tmp_path / "fired"``."""
    import dask
    from distributed import LocalCluster

    from recprep.failpoints import ENV, MARK_ENV

    env = {ENV: failpoint, MARK_ENV: str(tmp_path / "fired")}
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        return LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
            env=env,
        )
