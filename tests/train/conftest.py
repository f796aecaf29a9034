"""One torch thread for the in-process training tests: on a shared 2-core machine, torch's
default of one OpenMP thread per core spins against the other processes and runs 2-3x slower."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
