"""One torch thread for the in-process training tests: on a shared 2-core machine, torch's
default of one OpenMP thread per core spins against the other processes and runs 2-3x slower.
(The look-ahead planning tests need no torch; the tests that do skip themselves without it.)"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
