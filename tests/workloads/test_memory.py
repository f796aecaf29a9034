"""tune_allocator: under Dask's nanny setting (MALLOC_TRIM_THRESHOLD_=65536) a process that
allocates and frees shard-sized buffers stops page-faulting for each of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import resource, sys
import numpy as np
from recprep.workloads.memory import tune_allocator

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):  # ten shards of 40 columns of 65,536 float64 values (512 KiB each)
        columns = [np.empty(1 << 16) for _ in range(40)]
        for c in columns:
            c.fill(1.0)
        del columns
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

plain = faults()
tuned = tune_allocator()
if tuned:
    faults()  # the heap grows once to the working set
after = faults() if tuned else None
print(plain, tuned, after)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_process_reuses_freed_buffers():
    env = {"MALLOC_TRIM_THRESHOLD_": "65536", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    plain, tuned, after = out.stdout.split()
    if tuned != "True":
        pytest.skip("this C library has no mallopt")
    assert int(plain) > 10 * 40 * 64  # each buffer faulted in anew (at least half its 4 KiB pages)
    assert int(after) < int(plain) / 20
