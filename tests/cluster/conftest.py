"""
Fixtures for tests against the emulated cluster (see README.md in this directory).

* ``cluster``  — a fresh emulated API server per test (``harness.Cluster``): ``.url``,
  ``.kubeconfig``, ``.env``, ``.kubectl(...)``, ``.apply(...)``, ``.request(...)``, ``.get(...)``,
  ``.watch(...)``, ``.emulator`` (the kmock-based ``ClusterEmulator``), ``.call(fn, ...)``.
* ``kubectl``  — ``cluster.kubectl``: ``kubectl(*args, input=None, check=True)``.
* ``kubelet``  — a started ``kubelet.ProcessKubelet`` running this cluster's pods.
* ``wait_for`` — ``harness.wait_for(predicate, timeout=10, interval=0.05, ignore=())``.

The test modules import nothing from this package at import time, so that a machine
without kmock skips these tests (with a reason) instead of failing their collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("kmock", reason='the emulated cluster is built on kmock (pip install "kmock==0.8")')
    from .harness import Cluster

    with Cluster(tmp_path / "cluster") as started:
        yield started


@pytest.fixture()
def kubectl(cluster: Any) -> Callable[..., Any]:
    return cluster.kubectl


@pytest.fixture()
def kubelet(cluster: Any) -> Iterator[Any]:
    kubelet = cluster.start_kubelet()
    try:
        yield kubelet
    finally:
        kubelet.stop()
        assert not kubelet.errors, f"the kubelet failed to reconcile: {kubelet.errors!r}"


@pytest.fixture()
def wait_for() -> Callable[..., Any]:
    from .harness import wait_for as wait_for_fn

    return wait_for_fn
