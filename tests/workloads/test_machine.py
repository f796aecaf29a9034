"""What a process may use: cores within its CPU affinity and cgroup quota, memory within its
cgroup limit (a pod's ``resources.limits``), read from cgroup files written as v2 and v1 write
them."""

from __future__ import annotations

import os

import pytest

from recprep.workloads import machine


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """Point the module at files of a fake cgroup (none of them present until written)."""
    paths = {
        "CPU_MAX": tmp_path / "cpu.max",
        "MEMORY_MAX": tmp_path / "memory.max",
        "MEMORY_V1": tmp_path / "memory.limit_in_bytes",
    }
    for name, path in paths.items():
        monkeypatch.setattr(machine, name, str(path))
    quota, period = tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us"
    monkeypatch.setattr(machine, "CPU_V1", (str(quota), str(period)))
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(range(16)))
    return paths | {"quota": quota, "period": period}


def test_cores_are_the_affinity_within_the_quota(cgroup):
    assert machine.usable_cores() == 16  # no cgroup files: the affinity
    cgroup["CPU_MAX"].write_text("max 100000\n")
    assert machine.usable_cores() == 16
    cgroup["CPU_MAX"].write_text("150000 100000\n")  # limits.cpu: 1.5
    assert machine.usable_cores() == 2
    cgroup["CPU_MAX"].write_text("25000 100000\n")  # 250m: still one
    assert machine.usable_cores() == 1
    os.remove(cgroup["CPU_MAX"])
    cgroup["quota"].write_text("-1\n")  # v1, no quota
    cgroup["period"].write_text("100000\n")
    assert machine.usable_cores() == 16
    cgroup["quota"].write_text("400000\n")
    assert machine.usable_cores() == 4


def test_memory_is_the_cgroup_limit_or_the_machine(cgroup):
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert machine.memory_limit() == physical
    cgroup["MEMORY_MAX"].write_text("max\n")
    cgroup["MEMORY_V1"].write_text(f"{(1 << 63) - 4096}\n")  # v1's "no limit"
    assert machine.memory_limit() == physical
    cgroup["MEMORY_V1"].write_text(f"{1 << 30}\n")
    assert machine.memory_limit() == 1 << 30
    cgroup["MEMORY_MAX"].write_text(f"{2 << 30}\n")  # limits.memory: 2Gi
    assert machine.memory_limit() == 2 << 30
