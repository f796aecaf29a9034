"""The torch loader: KeyedJaggedTensor layout (against a per-row reference, and the KJT-shaped
accessors), DataLoader with worker processes, and acknowledgements only after consumption on a
stream shaped like the Flight client's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from recprep.delivery.batching import iter_batches  # noqa: E402
from recprep.delivery.shards import LocalShards, ServiceShards  # noqa: E402
from recprep.errors import RecprepError  # noqa: E402
from recprep.train.loader import (  # noqa: E402
    Batch,
    KeyedJagged,
    Prefetcher,
    ShardDataset,
    ShardLoader,
    to_torch,
)

from ..delivery.test_batching import reference_batch, reference_rows  # noqa: E402
from ..shard_outputs import criteo_output, layout_table, write_output  # noqa: E402


def test_batches_match_the_reference_on_the_criteo_sample(tmp_path_factory, criteo_tsv, dask_client):
    out = criteo_output(tmp_path_factory, criteo_tsv, dask_client)
    rows, _ = reference_rows(out)
    keys = [f"C{i}" for i in range(1, 27)] + ["I1_bucket"]
    dense = [f"I{i}" for i in range(1, 14)]
    start = 0
    for batch in ShardLoader(LocalShards(str(out)), 2048, device="cpu"):
        values, lengths, offsets, dense_rows, labels = reference_batch(
            rows[start : start + len(batch)], "label", dense, keys
        )
        kjt = batch.sparse
        assert kjt.keys() == keys and kjt.stride() == len(batch)
        assert kjt.values().dtype == torch.int64 and kjt.values().tolist() == values
        assert kjt.lengths().tolist() == lengths and kjt.offsets().tolist() == offsets
        assert batch.dense.dtype == torch.float32 and batch.dense.shape == (len(batch), 13)
        torch.testing.assert_close(batch.dense, torch.tensor(dense_rows, dtype=torch.float32))
        assert batch.labels.tolist() == [float(x) for x in labels]
        start += len(batch)
    assert start == len(rows) == 10_000


def test_keyed_jagged_accessors_follow_the_kjt_layout(tmp_path):
    t = layout_table(30, seed=3)
    (ab,) = iter_batches(LocalShards(str(write_output(tmp_path / "o", [t]))).open(), 30)
    kjt = to_torch(ab).sparse
    rows = t.to_pylist()
    per_key = []
    for key in kjt.keys():
        jt = kjt[key]
        expected = [
            r[key] if isinstance(r[key], list) else ([] if r[key] is None else [r[key]]) for r in rows
        ]
        expected = [[] if e is None else e for e in expected]
        assert jt.lengths.tolist() == [len(e) for e in expected]
        assert jt.values.tolist() == [x for e in expected for x in e]
        assert jt.offsets.tolist() == np.concatenate([[0], np.cumsum([len(e) for e in expected])]).tolist()
        per_key.append(sum(len(e) for e in expected))
    assert kjt.length_per_key() == per_key
    assert kjt.offset_per_key() == np.concatenate([[0], np.cumsum(per_key)]).tolist()
    assert kjt.inverse_indices_or_none() is None
    with pytest.raises(ValueError, match="not deduplicated"):
        kjt.inverse_indices()
    # RecD: inverse indices travel with the batch (device moves, pinning)
    inv = (kjt.keys(), torch.zeros(len(kjt.keys()), 30, dtype=torch.int64))
    deduped = KeyedJagged(kjt.keys(), kjt.values(), kjt.lengths(), inverse_indices=inv)
    assert torch.equal(deduped.offsets(), kjt.offsets())
    assert deduped.to("cpu").inverse_indices()[1].shape == (len(kjt.keys()), 30)


def test_dataloader_workers_read_disjoint_shards_that_cover_the_output(tmp_path):
    tables, start = [], 0
    for i, n in enumerate([40, 25, 33, 8, 51, 12]):
        tables.append(layout_table(n, seed=i, start=start))
        start += n
    out = write_output(tmp_path / "o", tables)
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(
            ShardDataset(LocalShards(str(out)), 16), batch_size=None, num_workers=workers
        )
        batches = list(loader)
        assert all(isinstance(b, Batch) for b in batches)
        ids = torch.cat([b.dense[:, 0] for b in batches]).to(torch.int64).tolist()
        assert sorted(ids) == list(range(start)) and len(ids) == start
        assert sorted(i for b in batches for i in b.shards) == list(range(6))
        if workers:
            assert all(b.ack is None for b in batches)  # acks stay with the process owning the stream


@dataclass
class Delivery:
    index: int
    table: pa.Table


class FakeClient:
    """Shaped like recprep.delivery.service.ShardClient: deliveries with .index/.table, ack()."""

    def __init__(self, tables, log):
        self.tables, self.log = tables, log

    def __iter__(self):
        for i, t in enumerate(self.tables):
            self.log.append(("deliver", i))
            yield Delivery(i, t)

    def ack(self, index):
        self.log.append(("ack", index))


@dataclass(frozen=True)
class FakeService:
    tables: tuple
    log: list

    def open(self, epoch=0, part=0, parts=1):
        return FakeClient(self.tables, self.log)

    def describe(self):
        return "fake service"


def test_a_shard_is_acknowledged_only_after_its_last_batch_was_consumed():
    tables = tuple(layout_table(n, seed=n) for n in (10, 10, 5))  # batches of 8 span shards
    log: list = []
    consumed = 0
    for batch in ShardLoader(FakeService(tables, log), 8, device="cpu", prefetch=2):
        consumed += len(batch)
        log.append(("consumed", consumed))
        batch.acknowledge()
    assert [i for kind, i in log if kind == "ack"] == [0, 1, 2]
    # shard 0's last row is in the batch of rows 8..15, shard 1's in 16..23, shard 2's in 24:
    # each ack comes right after that batch was consumed, not before, not a batch later
    for shard, rows_consumed in ((0, 16), (1, 24), (2, 25)):
        before = [c for kind, c in log[: log.index(("ack", shard))] if kind == "consumed"]
        assert before[-1] == rows_consumed


def test_prefetcher_hands_producer_errors_to_the_consumer():
    def items():
        yield 1
        raise RecprepError("shard 3: broken")

    with Prefetcher(items(), 2) as pre:
        assert next(pre) == 1
        with pytest.raises(RecprepError, match="shard 3: broken"):
            next(pre)


def test_service_streams_cannot_be_split_among_dataloader_workers():
    with pytest.raises(RecprepError, match="use num_workers=0"):
        ServiceShards("grpc://localhost:1").open(part=1, parts=2)


def test_batches_pin_and_move():
    t = layout_table(6, seed=1)
    (ab,) = iter_batches([Delivery(0, t)], 6)
    b = to_torch(ab).to("cpu", non_blocking=True)
    assert b.dense.device.type == "cpu" and len(b) == 6
    if torch.cuda.is_available():  # pragma: no cover - no GPU on these machines
        assert b.pin_memory().dense.is_pinned()
