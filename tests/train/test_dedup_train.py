"""The trainer on deduplicated (RecD) shards: the loader's per-group KJTs with TorchRec's inverse
indices (and a real torchrec KJT an EmbeddingBagCollection expands by itself), and ``recprep
train`` on a deduplicated output against the same rows as plain shards: the same tables in the
same order, sized the same from the job, the same model outputs and losses, with and without the
embedding caches."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recprep.delivery.batching import iter_batches  # noqa: E402
from recprep.delivery.shards import LocalShards  # noqa: E402
from recprep.train.config import TrainConfig  # noqa: E402
from recprep.train.loader import KeyedJagged, ShardLoader, to_torch, torchrec_available  # noqa: E402
from recprep.train.loop import train  # noqa: E402
from recprep.train.model import init_table  # noqa: E402
from recprep.train.tables import resolve_table_rows  # noqa: E402

from ..delivery.dedup_shards import ROLES, session_table, with_spec, write_pair  # noqa: E402

SPEC = {
    "source": {
        "uri": "events.parquet",
        "label": "label",
        "dense": ["d", "row_id"],
        "sparse": list(ROLES.sparse),
    },
    "transforms": [{"op": "sigrid_hash", "columns": "sparse", "salt": 0, "maxValue": 1000}],
    "dedup": [{"name": "user", "features": ["user", "age"]}, {"name": "ctx", "features": ["ctx"]}],
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """(plain, deduplicated) outputs of the same 900 rows in three shards, with the job's spec."""
    tables, start = [], 0
    for i, n in enumerate([300, 250, 350]):
        tables.append(session_table(n, seed=i + 1, start=start))
        start += n
    plain, deduped = write_pair(tmp_path_factory.mktemp("dedup-train"), tables)
    return with_spec(plain, SPEC), with_spec(deduped, SPEC)


def _first_batch(directory, batch_size=64):
    return next(iter_batches(LocalShards(str(directory)).open(), batch_size))


def test_each_group_is_a_kjt_of_its_unique_rows_with_torchrec_inverse_indices(outputs):
    ab = _first_batch(outputs[1])
    batch = to_torch(ab)
    assert batch.sparse.keys() == ["item", "small"] and batch.sparse.stride() == 64
    assert batch.sparse_keys == ROLES.sparse and list(batch.groups) == ["user", "ctx"]
    for g in ab.groups:
        kjt = batch.groups[g.name]
        assert isinstance(kjt, KeyedJagged) and kjt.keys() == list(g.keys) and kjt.stride() == g.unique < 64
        keys, inverse = kjt.inverse_indices()
        assert keys == list(g.keys) and inverse.dtype == torch.int64 and inverse.shape == (len(g.keys), 64)
        assert all(torch.equal(row, torch.from_numpy(g.inverse)) for row in inverse)
        expanded = ab.expanded()
        for i, key in enumerate(g.keys):  # sample j's bag is unique row inverse[j]'s
            jt, k = kjt[key], expanded.sparse_keys.index(key)
            assert len(jt.lengths) == g.unique
            values, lengths = expanded.feature(k)[0], expanded.lengths[k * 64 : (k + 1) * 64]
            assert jt.lengths[inverse[i]].tolist() == lengths.tolist()
            bags = [jt.values[jt.offsets[u] : jt.offsets[u + 1]].tolist() for u in inverse[i].tolist()]
            assert sum(bags, []) == values.tolist()
    moved = batch.to("cpu")
    assert moved.sparse_keys == batch.sparse_keys
    for name, kjt in moved.groups.items():
        assert torch.equal(kjt.inverse_indices()[1], batch.groups[name].inverse_indices()[1])
        assert (
            torch.equal(kjt.values(), batch.groups[name].values())
            and kjt.stride() == batch.groups[name].stride()
        )


def test_pin_memory_pins_the_groups_too(outputs, monkeypatch):
    batch = to_torch(_first_batch(outputs[1]))
    pinned_ids = []

    def pin(t):  # a CPU-only machine cannot pin: record what is pinned instead
        copy = t.clone()
        pinned_ids.append(id(copy))
        return copy

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    pinned = batch.pin_memory()
    for name, kjt in pinned.groups.items():
        assert id(kjt.inverse_indices()[1]) in pinned_ids and id(kjt.values()) in pinned_ids
        assert torch.equal(kjt.inverse_indices()[1], batch.groups[name].inverse_indices()[1])


@pytest.mark.skipif(not torchrec_available(), reason="torchrec does not import (docs/torchrec.md)")
def test_torchrec_embedding_bag_collections_expand_the_groups_by_their_inverse_indices(outputs):
    """docs/torchrec.md's recipe: an EBC per group and one for the per-sample features, regrouped in
    ``sparse_keys`` order, pool exactly what one EBC pools from the same rows' plain batch."""
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

    torch.manual_seed(0)

    def collection(keys):
        configs = [
            EmbeddingBagConfig(name=f"t_{k}", embedding_dim=4, num_embeddings=1000, feature_names=[k])
            for k in keys
        ]
        return EmbeddingBagCollection(tables=configs)

    whole = collection(ROLES.sparse)

    def part(keys):  # an EBC of some of the features, with whole's tables
        ebc = collection(keys)
        for k in keys:
            ebc.embedding_bags[f"t_{k}"].weight.data.copy_(whole.embedding_bags[f"t_{k}"].weight.data)
        return ebc

    loaders = [ShardLoader(LocalShards(str(o)), 64, device="cpu", kjt="torchrec") for o in outputs]
    for plain, batch in zip(*loaders):
        assert isinstance(batch.sparse, KeyedJaggedTensor) and batch.sparse.inverse_indices_or_none() is None
        for kjt in batch.groups.values():
            assert isinstance(kjt, KeyedJaggedTensor) and kjt.stride() <= len(batch)
            keys, inverse = kjt.inverse_indices()
            assert (
                keys == kjt.keys()
                and inverse.shape == (len(keys), len(batch))
                and inverse.dtype == torch.int64
            )
        pooled = [part(batch.sparse.keys())(batch.sparse)]
        pooled += [part(kjt.keys())(kjt) for kjt in batch.groups.values()]
        embeddings = KeyedTensor.regroup(pooled, [list(batch.sparse_keys)])[0]
        assert embeddings.shape == (len(batch), 4 * len(ROLES.sparse))
        assert torch.equal(embeddings, whole(plain.sparse).values())


def _train(source, optimizer="sgd", lr=0.5, **kw):
    return train(
        TrainConfig(
            LocalShards(str(source)),
            batch_size=64,
            epochs=2,
            embedding_dim=8,
            optimizer=optimizer,
            lr=lr,
            device="cpu",
            seed=3,
            **kw,
        )
    )


def _lookups(ab, table_rows):
    """What the uncached loop feeds the model: per feature its distinct rows, each ID's position
    among them, the bag offsets and, for a group's feature, the group's inverse index."""
    out = []
    for key in ab.sparse_keys:
        ids, offsets, group = ab.lookup(key)
        unique, inverse = np.unique(np.remainder(ids, table_rows), return_inverse=True)
        expand = None if group is None else torch.from_numpy(group.inverse)
        out.append((torch.from_numpy(unique), torch.from_numpy(inverse), torch.from_numpy(offsets), expand))
    return out


def _assert_close_training(plain, deduped, rtol, atol):
    assert len(deduped.tables) == len(plain.tables) == len(ROLES.sparse)
    for a, b in zip(plain.tables, deduped.tables):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)
    for p, q in zip(plain.model.dense_parameters(), deduped.model.dense_parameters()):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(deduped.losses, plain.losses, rtol=rtol, atol=atol)


def test_training_on_deduplicated_shards_ends_where_plain_training_ends(outputs):
    plain_out, dedup_out = outputs
    plain, deduped = _train(plain_out), _train(dedup_out)
    assert deduped.report.steps == plain.report.steps == 30 and deduped.report.samples == 1800
    # sized from the job, as a plain run: the _inverse.* columns are no features
    assert deduped.report.table_rows == plain.report.table_rows == 1000
    assert resolve_table_rows(LocalShards(str(dedup_out)), ROLES.sparse).rows == 1000
    assert deduped.report.acknowledged == plain.report.acknowledged == [0, 1, 2, 0, 1, 2]
    _assert_close_training(plain, deduped, rtol=1e-6, atol=1e-7)
    for i, t in enumerate(plain.tables):  # every table trained, far beyond the tolerance
        assert float((t - init_table(1000, 8, seed=3 * 1000 + i)).abs().max()) > 1e-3
    assert plain.report.loss_last < plain.report.loss_first
    # the model outputs: the same parameters give the same logits bit for bit from either batch;
    # the two trained models agree to the tolerance
    ab_plain, ab_dedup = _first_batch(plain_out), _first_batch(dedup_out)
    dense = torch.from_numpy(ab_plain.dense)
    with torch.no_grad():
        logits = plain.model(dense, _lookups(ab_plain, 1000))
        assert torch.equal(plain.model(dense, _lookups(ab_dedup, 1000)), logits)
        torch.testing.assert_close(
            deduped.model(dense, _lookups(ab_dedup, 1000)), logits, rtol=1e-6, atol=1e-7
        )


@pytest.mark.parametrize("cache", ["none", "lookahead", "lru"])
def test_adagrad_with_and_without_the_caches_matches_plain_training(outputs, cache):
    """Adagrad (recprep train's default) scales each row's step by its gradient history: a
    gradient summed in another order moves a row by up to a few 1e-6 after 30 steps."""
    plain_out, dedup_out = outputs
    kw = {} if cache == "none" else {"cache": cache, "cache_rows": 400, "window": 2}
    plain = _train(plain_out, "adagrad", 0.05, steps=30, **kw)
    deduped = _train(dedup_out, "adagrad", 0.05, steps=30, **kw)
    _assert_close_training(plain, deduped, rtol=0, atol=1e-5)
    for i in range(len(plain.tables)):
        torch.testing.assert_close(deduped.optimizer_state(i), plain.optimizer_state(i), rtol=1e-4, atol=1e-6)
    if cache != "none":
        stats = deduped.report.cache_stats
        assert stats.evictions > 0 and (stats.hit_rate == 1.0) == (cache == "lookahead")
        # a group's IDs are looked up once per unique row: far fewer lookups than per sample
        assert stats.lookups < 0.75 * plain.report.cache_stats.lookups
