"""The device cache: rows and optimizer state move with the plans; trained through a cache
(look-ahead or LRU, small enough to evict), a DLRM ends with the embeddings, the optimizer state
and the dense weights of an uncached run; the look-ahead cache hits every lookup."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recprep.delivery.shards import LocalShards  # noqa: E402
from recprep.errors import RecprepError  # noqa: E402
from recprep.train.cache import DeviceCache  # noqa: E402
from recprep.train.cache_plan import CacheTooSmallError, LRUPlanner  # noqa: E402
from recprep.train.loop import TrainConfig, train  # noqa: E402
from recprep.train.model import init_table  # noqa: E402

from ..shard_outputs import criteo_output, layout_table, write_output  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks")


def test_rows_and_optimizer_state_travel_with_the_plans():
    host = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    cache = DeviceCache(host.clone(), 3, "cpu", name="t")
    opt = torch.optim.Adagrad([cache.table.weight], lr=0.1, initial_accumulator_value=0.5)
    cache.attach_optimizer(opt)
    planner = LRUPlanner(10, 3)
    p = planner.access(np.array([7, 2, 7]))
    cache.apply(p)
    assert torch.equal(cache.table.weight.data[p.unique_slots], host[[2, 7]])
    cache.table.weight.data[p.unique_slots] += 100.0  # "training" changes the cached rows
    opt.state[cache.table.weight]["sum"][p.unique_slots] = 9.0
    q = planner.access(np.array([1, 3]))  # slot 2 is free: one row evicted (row 2: older by id)
    cache.apply(q)
    assert q.evict_rows.tolist() == [2]
    assert torch.equal(cache.host[2], host[2] + 100.0)
    assert torch.equal(cache.host_state("sum")[2], torch.full((4,), 9.0))
    assert torch.equal(cache.host[7], host[7])  # still cached: host copy not yet written
    table = cache.flush()
    assert torch.equal(table[7], host[7] + 100.0) and torch.equal(
        cache.host_state("sum")[7], torch.full((4,), 9.0)
    )
    assert torch.equal(cache.host_state("sum")[5], torch.full((4,), 0.5))  # never cached: initial state
    assert cache.stats.rows_h2d == 4 and cache.stats.evictions == 1 and cache.stats.rows_d2h == 1 + 3


def test_unsupported_optimizers_are_refused():
    cache = DeviceCache(torch.zeros(10, 2), 3, "cpu", name="C7")
    with pytest.raises(ValueError, match="C7: SGD momentum"):
        cache.attach_optimizer(torch.optim.SGD([cache.table.weight], lr=0.1, momentum=0.9))
    with pytest.raises(ValueError, match="C7: the cache supports SGD and Adagrad, not SparseAdam"):
        cache.attach_optimizer(torch.optim.SparseAdam([cache.table.weight]))


def _run(source, cache, optimizer="adagrad", batch_size=200, **kw):
    return train(
        TrainConfig(
            source,
            batch_size=batch_size,
            epochs=1,
            table_rows=4000,
            embedding_dim=8,
            optimizer=optimizer,
            lr=0.05,
            cache=cache,
            device="cpu",
            seed=7,
            **kw,
        )
    )


def _assert_same_training(a, b, n_tables):
    for i in range(n_tables):
        torch.testing.assert_close(b.tables[i], a.tables[i], rtol=1e-5, atol=1e-6)
    for p, q in zip(a.model.dense_parameters(), b.model.dense_parameters()):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=1e-5, atol=1e-6)


def test_cached_training_ends_where_uncached_training_ends(tmp_path_factory, criteo_tsv, dask_client):
    """Adagrad: its per-row state must travel with the rows for this to hold."""
    source = LocalShards(str(criteo_output(tmp_path_factory, criteo_tsv, dask_client)))
    plain = _run(source, "none", steps=30)
    ahead = _run(source, "lookahead", cache_rows=600, window=2, steps=30)  # <= 600 rows in 3 batches of 200
    lru = _run(source, "lru", cache_rows=600, steps=30)
    n = len(plain.tables)
    assert n == 27 and plain.report.steps == ahead.report.steps == lru.report.steps == 30
    for cached in (ahead, lru):
        _assert_same_training(plain, cached, n)
        assert cached.report.cache_stats.evictions > 5_000  # the cache is far smaller than the tables' use
        for i in range(n):
            torch.testing.assert_close(
                cached.optimizer_state(i), plain.optimizer_state(i), rtol=1e-5, atol=1e-6
            )
    assert ahead.report.cache_stats.hit_rate == 1.0
    assert ahead.report.cache_stats.lookups == lru.report.cache_stats.lookups
    assert 0.5 < lru.report.cache_stats.hit_rate < 1.0
    assert plain.report.loss_last < plain.report.loss_first
    changed = [not torch.equal(plain.tables[i], init_table(4000, 8, seed=7 * 1000 + i)) for i in range(n)]
    assert all(changed)  # every table was trained, so equal tables say something


def test_sgd_through_the_look_ahead_cache_matches_too(tmp_path):
    tables, start = [], 0
    for i, n in enumerate([300, 200, 250]):
        tables.append(layout_table(n, seed=i, start=start))
        start += n
    source = LocalShards(str(write_output(tmp_path / "o", tables)))
    plain = _run(source, "none", "sgd", batch_size=20)
    # at most 3 IDs per sample: a window of 3 batches never needs more than 180 rows of a table
    ahead = _run(source, "lookahead", "sgd", batch_size=20, cache_rows=180, window=2)
    assert ahead.report.cache_stats.evictions > 0 and ahead.report.cache_stats.hit_rate == 1.0
    _assert_same_training(plain, ahead, 3)
    far = _run(source, "lookahead", "sgd", batch_size=20, cache_rows=180, window=2, horizon=6)
    assert far.report.cache_stats.hit_rate == 1.0 and far.report.horizon == 6
    assert far.report.cache_stats.rows_h2d < ahead.report.cache_stats.rows_h2d  # evictions chosen by next use
    _assert_same_training(plain, far, 3)


def test_a_cache_too_small_for_the_window_stops_before_training(tmp_path):
    out = write_output(tmp_path / "o", [layout_table(500, seed=1)])
    with pytest.raises(CacheTooSmallError, match="multi: a cache of 40 rows cannot hold"):
        train(
            TrainConfig(
                LocalShards(str(out)),
                batch_size=50,
                table_rows=1000,
                cache="lookahead",
                cache_rows=40,
                window=2,
                device="cpu",
            )
        )


def test_an_output_without_shards_is_an_error(tmp_path):
    out = write_output(tmp_path / "o", [])
    with pytest.raises(RecprepError, match="no committed shards to train on"):
        train(TrainConfig(LocalShards(str(out)), device="cpu"))
