"""A trainer uses what its container has, not what the node has: torch's threads within the CPU
quota, embedding tables within the memory limit (cgroup files written as a pod's limits write
them, read through ``recprep.workloads.machine``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from recprep.delivery.shards import LocalShards  # noqa: E402
from recprep.train import loop  # noqa: E402
from recprep.train.config import TrainConfigError  # noqa: E402
from recprep.train.loop import TrainConfig, train  # noqa: E402
from recprep.workloads import machine  # noqa: E402

from ..shard_outputs import write_output  # noqa: E402


def table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "label": pa.array(rng.integers(0, 2, rows), pa.int64()),
            "d": pa.array(rng.normal(size=rows)),
            "ids": pa.array([[int(x)] for x in rng.integers(0, 100, rows)], pa.list_(pa.int64())),
        }
    )


@pytest.fixture
def shards(tmp_path):
    return LocalShards(str(write_output(tmp_path / "out", [table(100, 1), table(100, 2)])))


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def config(source, **kw) -> TrainConfig:
    return TrainConfig(source, batch_size=50, epochs=1, embedding_dim=4, device="cpu", **kw)


def test_torch_threads_stay_within_the_cores_the_process_may_use(shards, threads, monkeypatch):
    torch.set_num_threads(2)  # as torch starts on a node of 2 or more cores
    monkeypatch.setattr(loop, "usable_cores", lambda: 1)  # a CPU limit of 1 (cgroup quota)
    assert train(config(shards, table_rows=100)).report.threads == 1
    assert torch.get_num_threads() == 1
    assert train(config(shards, table_rows=100, threads=2)).report.threads == 2  # --threads wins


def test_tables_beyond_the_containers_memory_limit_are_refused(shards, tmp_path, monkeypatch):
    limit = tmp_path / "memory.max"
    limit.write_text(f"{64 << 20}\n")  # limits.memory: 64Mi, far below this machine's memory
    monkeypatch.setattr(machine, "MEMORY_MAX", str(limit))
    # 1 table of 4M rows x 4 floats: 64 MiB, twice that with adagrad's state
    with pytest.raises(
        TrainConfigError, match=r"--table-rows: --table-rows asks for 4,000,000 rows.* 0\.1 GiB"
    ):
        train(config(shards, table_rows=4_000_000, optimizer="adagrad"))
    limit.write_text("max\n")  # no limit: the machine's memory, which holds them
    monkeypatch.setattr(machine, "MEMORY_V1", str(tmp_path / "absent"))
    assert train(config(shards, table_rows=4_000_000, optimizer="adagrad")).report.steps == 4
