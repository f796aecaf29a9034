"""Batches cut from deduplicated (RecD) shards: expanded, they are exactly the batches the same rows
cut from plain shards give (across shard boundaries, with empty shards, shuffled sessions, a
trainer's own feature choice, shards without roles); each group holds only the unique rows its
samples use, in order of first use, with an inverse index; history lists left out where the
session before gives them are made again; a stream mixing layouts or a broken dedup record is a
SourceError naming the shard."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recprep.delivery.batching import FeatureChoice, iter_batches
from recprep.delivery.shards import LocalShards
from recprep.errors import SourceError
from recprep.workloads.output.dedup import DEDUP_KEY
from recprep.workloads.output.records import FeatureRoles

from ..shard_outputs import write_output
from .dedup_shards import GROUPS, ROLES, dedup, session_table, write_pair


def _batches(directory, batch_size, features=None):
    return list(iter_batches(LocalShards(str(directory)).open(), batch_size, features))


def assert_same_batches(plain: list, deduped: list) -> None:
    """The deduplicated batches, expanded, are the plain ones to the byte."""
    assert len(plain) == len(deduped)
    for p, d in zip(plain, deduped):
        e = d.expanded()
        assert e.keys == p.keys == d.sparse_keys
        for name in ("values", "lengths", "offsets", "dense", "labels"):
            a, b = getattr(p, name), getattr(e, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        assert d.shards == p.shards


def assert_unique_rows(batch) -> None:
    """Every group holds U unique rows, each used by a sample, in order of first use."""
    for g in batch.groups:
        assert g.inverse.dtype == np.int64 and g.inverse.shape == (batch.size,)
        assert g.lengths.shape == (len(g.keys) * g.unique,) and g.offsets.shape == (
            len(g.keys) * g.unique + 1,
        )
        used, first = np.unique(g.inverse, return_index=True)
        assert np.array_equal(used, np.arange(g.unique))  # every row is used, none is out of range
        assert np.all(np.diff(first) > 0)  # row u is first used before row u + 1


@pytest.mark.parametrize("batch_size", [1, 16, 64, 300, 1000])
def test_batches_expand_to_the_plain_batches(tmp_path, batch_size):
    sizes = [120, 0, 90, 200, 0]  # an empty shard inside the stream and one at its end
    tables, start = [], 0
    for i, n in enumerate(sizes):
        tables.append(session_table(n, seed=i + 1, start=start))
        start += n
    plain_out, dedup_out = write_pair(tmp_path, tables)
    plain, deduped = _batches(plain_out, batch_size), _batches(dedup_out, batch_size)
    assert_same_batches(plain, deduped)
    assert sum(b.size for b in deduped) == sum(sizes)
    for b in deduped:
        assert b.keys == ("item", "small") and b.sparse_keys == ROLES.sparse
        assert [(g.name, g.keys) for g in b.groups] == [("user", ("user", "age")), ("ctx", ("ctx",))]
        assert_unique_rows(b)
    # the groups carry fewer rows than the samples: sessions average 4 samples
    unique = sum(b.groups[0].unique for b in deduped)
    assert unique < sum(sizes) / 2 if batch_size > 1 else unique == sum(sizes)


def test_a_batch_spanning_shards_holds_the_rows_of_both(tmp_path):
    tables = [session_table(50, seed=1), session_table(50, seed=2, start=50)]
    _, dedup_out = write_pair(tmp_path, tables)
    shard_unique = [pq.read_schema(dedup_out / f"part-0000{i}.parquet").metadata[DEDUP_KEY] for i in (0, 1)]
    u0, u1 = (json.loads(m)["groups"][0]["unique"] for m in shard_unique)
    first, second = _batches(dedup_out, 70)
    # rows 0-69: all of shard 0's sessions, then the sessions of shard 1's first 20 samples
    user = first.groups[0]
    sessions_1 = len(np.unique(tables[1]["session"].to_numpy()[:20]))
    assert user.unique == u0 + sessions_1
    assert user.inverse[49] == u0 - 1 and user.inverse[50] == u0  # the second shard's rows follow
    # rows 70-99: the rest of shard 1, from its session that the first batch cut, re-based to 0
    assert second.groups[0].inverse[0] == 0 and second.groups[0].unique == u1 - sessions_1 + 1
    assert first.shards == (0,) and second.shards == (1,)


def test_shuffled_sessions_take_the_unique_rows_they_use(tmp_path):
    """Samples of a session need not be adjacent: the inverse index is then not monotonic."""
    table = session_table(200, seed=4)
    shuffled = table.take(pa.array(np.random.default_rng(0).permutation(200)))
    plain_out, dedup_out = write_pair(tmp_path, [shuffled, session_table(60, seed=5)])
    inverse = pq.read_table(dedup_out / "part-00000.parquet")["_inverse.user"].to_numpy()
    assert np.any(np.diff(inverse) < 0)
    for batch_size in (7, 64, 250):
        deduped = _batches(dedup_out, batch_size)
        assert_same_batches(_batches(plain_out, batch_size), deduped)
        for b in deduped:
            assert_unique_rows(b)


def test_the_trainer_may_choose_a_part_of_a_group(tmp_path):
    plain_out, dedup_out = write_pair(tmp_path, [session_table(80, seed=6)])
    choice = FeatureChoice(dense=("d",), sparse=("age", "item"))
    deduped = _batches(dedup_out, 32, choice)
    assert_same_batches(_batches(plain_out, 32, choice), deduped)
    assert deduped[0].sparse_keys == ("age", "item") and deduped[0].keys == ("item",)
    assert [(g.name, g.keys) for g in deduped[0].groups] == [("user", ("age",))]  # ctx is not read
    with pytest.raises(SourceError, match="shard 0: column 'age' is in dedup group 'user': .* not the label"):
        _batches(dedup_out, 32, FeatureChoice(dense=("d", "age"), sparse=("item",)))
    # dense given, sparse left to the shards' roles, which name age too: two roles for one column
    with pytest.raises(SourceError, match="column 'age' is named twice .as dense and as sparse."):
        _batches(dedup_out, 32, FeatureChoice(dense=("d", "age")))


def test_shards_without_roles_leave_the_inverse_columns_out(tmp_path):
    tables = [session_table(70, seed=7).drop_columns(["session"]).replace_schema_metadata(None)]
    tables[0] = tables[0].append_column("session", session_table(70, seed=7)["session"])
    packed = dedup(tables[0])
    meta = {k: v for k, v in packed.schema.metadata.items() if k == DEDUP_KEY}  # no roles
    dedup_out = write_output(tmp_path / "d", [packed.replace_schema_metadata(meta)])
    plain_out = write_output(tmp_path / "p", tables)
    choice = FeatureChoice(sparse=("item", "user", "ctx", "age", "small"))  # the session is an int column
    deduped = _batches(dedup_out, 25, choice)
    assert_same_batches(_batches(plain_out, 25, choice), deduped)
    inferred = _batches(dedup_out, 25)[0]
    assert "_inverse.user" not in inferred.sparse_keys and "user" in inferred.sparse_keys


def test_a_stream_mixing_plain_and_deduplicated_shards_is_an_error(tmp_path):
    a, b, empty = session_table(40, seed=1), session_table(40, seed=2), session_table(0, seed=3)
    out = write_output(tmp_path / "m1", [dedup(a), b])
    with pytest.raises(
        SourceError, match=r"shard 1 is plain, shard 0 is deduplicated \(groups user: user, age"
    ):
        _batches(out, 16)
    out = write_output(tmp_path / "m2", [a, dedup(b)])
    with pytest.raises(
        SourceError, match="shard 1 is deduplicated .*, shard 0 is plain: .* all plain or all"
    ):
        _batches(out, 16)
    out = write_output(tmp_path / "m3", [dedup(a), dedup(b, {"user": ["user", "age", "ctx"]})])
    with pytest.raises(SourceError, match="shard 1 is deduplicated \\(groups user: user, ctx, age\\)"):
        _batches(out, 16)
    # a shard with no rows has no layout to disagree with
    out = write_output(tmp_path / "m4", [empty, dedup(a), empty, dedup(b)])
    assert sum(x.size for x in _batches(out, 16)) == 80


def test_a_broken_dedup_record_is_an_error_naming_the_shard(tmp_path):
    good = dedup(session_table(40, seed=1))

    def broken(**change):
        doc = json.loads(good.schema.metadata[DEDUP_KEY])
        doc["groups"][0].update(change)
        return good.replace_schema_metadata({**good.schema.metadata, DEDUP_KEY: json.dumps(doc).encode()})

    cases = [
        (broken(unique=1000), "shard 1: dedup group 'user' records 1000 unique rows in a shard of 40"),
        (broken(columns=["user", "nope"]), "shard 1: dedup group 'user': the shard has no column 'nope'"),
        (broken(unique="many"), "shard 1: schema metadata recprep.dedup: malformed"),
        (
            broken(unique=2),
            "shard 1: inverse column '_inverse.user' holds 2, outside the group's 2 unique rows",
        ),
    ]
    for i, (table, message) in enumerate(cases):
        out = write_output(tmp_path / f"b{i}", [good, table])
        with pytest.raises(SourceError, match=message):
            _batches(out, 16)
    roles_only = good.replace_schema_metadata(ROLES.metadata())  # the dedup record dropped
    with pytest.raises(
        SourceError, match="shard 1: column '_inverse.user' is a deduplicated shard's inverse"
    ):
        _batches(write_output(tmp_path / "r", [good, roles_only]), 16)
    nulls = good.set_column(
        good.schema.get_field_index("_inverse.ctx"), "_inverse.ctx", pa.nulls(40, pa.int32())
    )
    with pytest.raises(
        SourceError, match="shard 0: inverse column '_inverse.ctx' must hold integers without nulls"
    ):
        _batches(write_output(tmp_path / "n", [nulls]), 16)


def test_only_empty_deduplicated_shards_give_one_empty_batch(tmp_path):
    _, out = write_pair(tmp_path, [session_table(0, seed=1), session_table(0, seed=2)])
    (batch,) = _batches(out, 8)
    assert batch.size == 0 and batch.shards == (0, 1) and batch.sparse_keys == ROLES.sparse
    # a stream whose last shards are empty: their batch has the layout's groups, with no rows
    _, out = write_pair(tmp_path / "x", [session_table(16, seed=1), session_table(0, seed=2)])
    *_, last = _batches(out, 8)
    assert last.size == 0 and last.shards == (1,) and [g.unique for g in last.groups] == [0] * len(GROUPS)
    assert last.expanded().sparse_keys == ROLES.sparse and last.expanded().lengths.size == 0


def test_a_session_slack_ends_batches_where_sessions_begin(tmp_path):
    sizes = [200, 150, 170]
    tables, start = [], 0
    for i, n in enumerate(sizes):
        tables.append(session_table(n, seed=i + 11, start=start))
        start += n
    _, dedup_out = write_pair(tmp_path, tables)
    exact = _batches(dedup_out, 32)
    slack = list(iter_batches(LocalShards(str(dedup_out)).open(), 32, session_slack=6))
    # every row once, in order; each batch at most 6 rows short (the last may be shorter still)
    rows = [r for b in slack for r in b.dense[:, 1].tolist()]
    assert rows == [float(i) for i in range(sum(sizes))]
    assert all(26 <= b.size <= 32 for b in slack[:-1]) and any(b.size < 32 for b in slack)
    for b in slack:
        assert_unique_rows(b)
    # a batch ends where a session begins whenever one begins within the slack
    session = pa.concat_tables(tables)["session"].to_numpy()
    starts = set(np.flatnonzero(np.r_[True, np.diff(session) != 0]).tolist())
    end = 0
    for b in slack[:-1]:
        full = end + 32
        end += b.size
        options = [s for s in starts if full - 6 < s <= full]
        assert end == (max(options) if options else full)
    # so fewer sessions are split between two batches, each of which stored its row twice
    assert sum(b.groups[0].unique for b in slack) < sum(b.groups[0].unique for b in exact)
    with pytest.raises(ValueError, match="session_slack"):
        next(iter_batches(LocalShards(str(dedup_out)).open(), 32, session_slack=32))


def _history_shard(seed: int) -> tuple[pa.Table, pa.Table]:
    """(whole, derived): one shard of users' sessions with a 4-item history per session in the
    ``user`` group, stored whole and with the lists the session before gives left out."""
    from recprep.op_params import HistoryParams
    from recprep.workloads.ops.history import History
    from recprep.workloads.output.dedup import Unique, first_rows, pack
    from recprep.workloads.output.derived import Derivation

    rng = np.random.default_rng(seed)
    n = 300
    key_run = np.cumsum(rng.random(n) < 0.05).astype(np.int32)
    session = np.cumsum((rng.random(n) < 0.25) | np.r_[True, key_run[1:] != key_run[:-1]])
    item = pa.array(rng.integers(0, 1000, n), pa.int64())
    hist = History(HistoryParams(k=4, output="hist")).session_lists(item, key_run, session)
    starts, inverse = first_rows(session)
    samples = pa.table({"label": pa.array(rng.integers(0, 2, n)), "item": item})
    samples = samples.replace_schema_metadata(FeatureRoles("label", (), ("item", "user", "hist")).metadata())
    rows = pa.table({"user": pa.array(key_run[starts].astype(np.int64)), "hist": hist})
    order = ["label", "item", "user", "hist"]
    whole = pack(samples, [Unique("u", rows, inverse)], order=order)
    derived = pack(samples, [Unique("u", rows, inverse)], order=order, derive=[Derivation("hist", "item", 4)])
    return whole, derived


def test_shards_with_derived_history_lists_give_the_batches_of_the_lists_stored_whole(tmp_path):
    pairs = [_history_shard(seed) for seed in (1, 2)]
    assert all(d["_derived.hist"].to_numpy(zero_copy_only=False)[:10].any() for _, d in pairs)
    whole = write_output(tmp_path / "whole", [w for w, _ in pairs])
    derived = write_output(tmp_path / "derived", [d for _, d in pairs])
    for size in (7, 64):
        a, b = _batches(whole, size), _batches(derived, size)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_batches([x.expanded()], [y])
            for gx, gy in zip(x.groups, y.groups):
                assert np.array_equal(gx.values, gy.values) and np.array_equal(gx.inverse, gy.inverse)
