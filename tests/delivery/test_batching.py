"""Batches cut from shard streams: the KeyedJaggedTensor layout against a per-row Python reference,
batches across shard boundaries, which shards each batch completes, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recprep.delivery.batching import FeatureChoice, Features, iter_batches
from recprep.delivery.shards import LocalShards, read_ledger
from recprep.errors import SourceError

from ..shard_outputs import criteo_output, layout_table, write_output


def reference_rows(directory) -> tuple[list[dict], list[tuple[int, int]]]:
    """Every row of the committed shards in ledger order, read with plain pyarrow and json, and
    (shard, rows) in that order."""
    rows, shards = [], []
    for line in (directory / "_ledger.jsonl").read_text().splitlines():
        e = json.loads(line)
        part = pq.read_table(directory / e["file"]).to_pylist()
        rows.extend(part)
        shards.append((e["shard"], len(part)))
    return rows, shards


def reference_batch(rows: list[dict], label: str, dense: list[str], sparse: list[str]):
    values, lengths = [], []
    for key in sparse:
        for r in rows:
            v = r[key]
            ids = [] if v is None else (list(v) if isinstance(v, list) else [v])
            lengths.append(len(ids))
            values.extend(ids)
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    dense_rows = [[r[c] for c in dense] for r in rows]
    return values, lengths, offsets, dense_rows, [r[label] for r in rows]


def check_against_reference(directory, batch_size: int):
    rows, shards = reference_rows(directory)
    batches = list(iter_batches(LocalShards(str(directory)).open(), batch_size))
    features = Features.infer(pq.read_schema(directory / "part-00000.parquet"))
    assert sum(b.size for b in batches) == len(rows)
    assert all(b.size == batch_size for b in batches[:-1]) and 0 < batches[-1].size <= batch_size
    start = 0
    for b in batches:
        values, lengths, offsets, dense, labels = reference_batch(
            rows[start : start + b.size], features.label, list(features.dense), list(features.sparse)
        )
        assert b.keys == features.sparse
        assert b.values.dtype == np.int64 and b.values.tolist() == values
        assert b.lengths.dtype == np.int64 and b.lengths.tolist() == lengths
        assert b.offsets.tolist() == offsets
        assert b.dense.dtype == np.float32 and b.dense.shape == (b.size, len(features.dense))
        np.testing.assert_allclose(b.dense, np.array(dense, dtype=np.float32).reshape(b.size, -1))
        assert b.labels.tolist() == [float(x) for x in labels]
        start += b.size
    # each shard is listed by the batch that holds its last row, in ledger order
    ends, cum = [], 0
    for index, n in shards:
        cum += n
        ends.append((index, (cum - 1) // batch_size if n else None))
    listed = {i: k for k, b in enumerate(batches) for i in b.shards}
    assert [i for b in batches for i in b.shards] == [i for i, _ in shards]
    for index, k in ends:
        if k is not None:
            assert listed[index] == k
    return batches


def test_layout_on_the_criteo_sample(tmp_path_factory, criteo_tsv, dask_client):
    out = criteo_output(tmp_path_factory, criteo_tsv, dask_client)
    assert len(read_ledger(str(out))) >= 3
    batches = check_against_reference(out, 1000)
    schema = pq.read_schema(out / "part-00000.parquet")
    assert batches[0].keys == tuple(f"C{i}" for i in range(1, 27)) + ("I1_bucket",)
    assert Features.infer(schema).dense == tuple(f"I{i}" for i in range(1, 14))


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_layout_with_every_sparse_kind_across_shards(tmp_path, batch_size):
    sizes = [50, 0, 13, 91, 5]
    tables, start = [], 0
    for i, n in enumerate(sizes):
        tables.append(layout_table(n, seed=i, start=start))
        start += n
    out = write_output(tmp_path / "out", tables, order=[2, 0, 1, 4, 3])  # commit order != shard order
    batches = check_against_reference(out, batch_size)
    # rows come in ledger order: shard 2, 0, 1 (empty), 4, 3
    order = np.concatenate([b.dense[:, 0] for b in batches])
    expected = np.concatenate([np.arange(sum(sizes[:i]), sum(sizes[: i + 1])) for i in [2, 0, 1, 4, 3]])
    assert order.tolist() == expected.tolist()


def test_feature_accessor_matches_the_layout(tmp_path):
    out = write_output(tmp_path / "out", [layout_table(40, seed=1)])
    (b,) = iter_batches(LocalShards(str(out)).open(), 40)
    for i in range(len(b.keys)):
        ids, bag_offsets = b.feature(i)
        lengths = b.lengths[i * 40 : (i + 1) * 40]
        assert bag_offsets.tolist() == np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
        assert ids.tolist() == b.values[b.offset_per_key()[i] : b.offset_per_key()[i + 1]].tolist()


def test_only_empty_shards_give_one_empty_batch_that_lists_them(tmp_path):
    out = write_output(tmp_path / "out", [layout_table(0, 1), layout_table(0, 2)])
    acked = []
    batches = list(iter_batches(LocalShards(str(out)).open(), 8, ack=acked.append))
    assert [(b.size, b.shards) for b in batches] == [(0, (0, 1))]
    batches[0].acknowledge()
    assert acked == [0, 1]


def test_ranks_and_parts_split_the_ledger(tmp_path):
    out = write_output(tmp_path / "out", [layout_table(3, i) for i in range(7)])
    seen = []
    for rank in range(2):
        for part in range(2):
            seen += [d.index for d in LocalShards(str(out), rank, 2).open(part=part, parts=2)]
    assert sorted(seen) == list(range(7))


def test_bad_sources_get_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        LocalShards(str(tmp_path / "missing")).open()
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="not a recprep job output"):
        LocalShards(str(tmp_path / "plain")).open()
    out = write_output(tmp_path / "out", [layout_table(10, 1)])
    with open(out / "part-00000.parquet", "ab") as f:
        f.write(b"x")
    with pytest.raises(SourceError, match="part-00000.parquet: content does not match its sha256"):
        list(LocalShards(str(out)).open())
    t = layout_table(5, 1).append_column("name", pa.array(["a"] * 5))
    with pytest.raises(SourceError, match="column 'name' has type string"):
        list(iter_batches(LocalShards(str(write_output(tmp_path / "s", [t]))).open(), 2))
    t = layout_table(5, 1).set_column(2, "d", pa.array([1.0, None, 2.0, 3.0, 4.0]))
    with pytest.raises(SourceError, match="column 'd' holds nulls"):
        list(iter_batches(LocalShards(str(write_output(tmp_path / "n", [t]))).open(), 2))
    t = layout_table(5, 1).drop_columns(["label"])
    with pytest.raises(SourceError, match="no label column 'label'"):
        list(iter_batches(LocalShards(str(write_output(tmp_path / "l", [t]))).open(), 2))
    first, second = layout_table(5, 1), layout_table(5, 2).drop_columns(["small"])
    with pytest.raises(SourceError, match="shard 1: no column 'small'"):
        list(iter_batches(LocalShards(str(write_output(tmp_path / "m", [first, second]))).open(), 2))


def _shard_schema(roles) -> pa.Schema:
    schema = pa.schema(
        [("click", pa.int64()), ("price", pa.float64()), ("site", pa.int64()), ("id", pa.string())]
    )
    return schema.with_metadata(roles.metadata()) if roles is not None else schema


def test_roles_come_from_the_shards_and_the_trainer_may_replace_them():
    from recprep.workloads.output import FeatureRoles

    schema = _shard_schema(FeatureRoles("click", ("price",), ("site",)))
    assert Features.of(schema) == Features("click", ("price",), ("site",))  # id: in no role
    assert FeatureChoice(dense=()).resolve(schema) == Features("click", (), ("site",))
    assert FeatureChoice(label="site").resolve(schema) == Features("site", ("price",), ())
    with pytest.raises(SourceError, match="label column 'id' has type string"):
        FeatureChoice(label="id").resolve(schema)
    with pytest.raises(SourceError, match="sparse column 'id' has type string.*sigrid_hash takes strings"):
        FeatureChoice(sparse=("id",)).resolve(schema)
    # a job without a label: the trainer must name one
    no_label = _shard_schema(FeatureRoles(None, ("price",), ("site",)))
    with pytest.raises(SourceError, match="the job has no label column"):
        Features.of(no_label)
    assert FeatureChoice(label="click").resolve(no_label).label == "click"


def test_a_column_in_two_roles_is_refused_naming_it():
    """``recprep train --sparse C1,C1`` or ``--dense label``: one line naming the column, not
    pyarrow's KeyError from selecting a column twice."""
    from recprep.workloads.output import FeatureRoles

    schema = _shard_schema(FeatureRoles("click", ("price",), ("site",)))
    with pytest.raises(SourceError, match="column 'site' is named twice .as sparse and as sparse."):
        FeatureChoice(sparse=("site", "site")).resolve(schema)
    with pytest.raises(SourceError, match="column 'click' is named twice .as label and as dense."):
        FeatureChoice(dense=("click",)).resolve(schema)
    with pytest.raises(SourceError, match="column 'price' is named twice .as dense and as sparse."):
        FeatureChoice(sparse=("price",)).resolve(schema)  # the shards' dense feature


def test_shards_without_roles_fall_back_to_the_label_column_and_the_types():
    schema = pa.schema([("label", pa.int64()), ("I1", pa.float32()), ("C1", pa.list_(pa.int64()))])
    assert Features.of(schema) == Features("label", ("I1",), ("C1",))
    with pytest.raises(SourceError, match="no label column 'label'"):
        Features.of(_shard_schema(None))
