"""What this process may use of its machine: cores and memory, as its CPU affinity and its
cgroup (a pod's limits, ``resources.limits`` in the chart's values) allow, not as the node has.

A pod on a 64-core node with a limit of 2 CPUs and 2 GiB sees 64 cores in ``os.cpu_count()``;
work sized by that would run 32 threads on 2 CPUs' time, or hold 32 buffers in 2 GiB.
"""

from __future__ import annotations

import math
import os

#: cgroup v2 (unified) and v1 files, as a container sees its own cgroup at the root
CPU_MAX = "/sys/fs/cgroup/cpu.max"
CPU_V1 = ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")
MEMORY_MAX = "/sys/fs/cgroup/memory.max"
MEMORY_V1 = "/sys/fs/cgroup/memory/memory.limit_in_bytes"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, within its cgroup's CPU quota (rounded
    up: a quota of 1.5 CPUs runs two threads half the time each)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = None
    v2 = _read(CPU_MAX)
    if v2:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            quota = (parts[0], parts[1])
    else:
        v1 = [_read(p) for p in CPU_V1]
        if all(v1) and not v1[0].startswith("-"):
            quota = (v1[0], v1[1])
    if quota is not None:
        try:
            cores = min(cores, math.ceil(int(quota[0]) / int(quota[1])))
        except (ValueError, ZeroDivisionError):
            pass
    return max(1, cores)


def memory_limit() -> int:
    """Bytes of memory this process may have: its cgroup's limit where one is set, else the
    machine's physical memory (0 where neither is known)."""
    for path in (MEMORY_MAX, MEMORY_V1):
        value = _read(path)
        if value and value.isdigit() and int(value) < 1 << 60:  # v1 says "no limit" as ~2^63
            return int(value)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0
