"""Cache planning against independent references: an OrderedDict LRU, and a replay that checks
the look-ahead guarantee (every lookup resident at its step, nothing inside the window evicted)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from recprep.train.cache_plan import (
    CacheTooSmallError,
    LookaheadPlanner,
    LRUPlanner,
    SlotMirror,
    plan_ahead,
)


def zipf_batches(n_batches: int, batch: int, rows: int, seed: int, a: float = 1.2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(rows)  # hot rows scattered over the table
    return [perm[np.minimum(rng.zipf(a, batch) - 1, rows - 1)] for _ in range(n_batches)]


def reference_lru(batches, capacity):
    """LRU at batch granularity: a batch's rows are all used at once (none of them can evict
    another), recency among one batch's rows by row id. Returns (hits per ID, rows fetched)."""
    cache: OrderedDict[int, None] = OrderedDict()
    hits = fetched = 0
    for b in batches:
        rows = sorted({int(x) for x in b})
        present = {r for r in rows if r in cache}
        hits += sum(int(x) in present for x in b)
        for r in present:
            del cache[r]
        missing = len(rows) - len(present)
        while len(cache) + len(rows) > capacity:
            cache.popitem(last=False)
        for r in rows:
            cache[r] = None
        fetched += missing
    return hits, fetched


@pytest.mark.parametrize("capacity, seed", [(64, 0), (150, 1), (400, 2), (5000, 3)])
def test_lru_matches_an_ordered_dict_reference(capacity, seed):
    batches = zipf_batches(150, 48, 2000, seed)
    planner, mirror = LRUPlanner(2000, capacity), SlotMirror(min(capacity, 2000))
    hits = fetched = 0
    for b in batches:
        plan = planner.access(b)
        assert mirror.resident(plan) == plan.hits  # what is resident before the fetch = the hits
        mirror.apply(plan)
        assert mirror.resident(plan) == b.size  # after it, every lookup finds its row
        assert np.array_equal(mirror.row_of_slot[plan.slots], b)
        hits += plan.hits
        fetched += plan.fetch_rows.size
    ref_hits, ref_fetched = reference_lru(batches, capacity)
    assert (hits, fetched) == (ref_hits, ref_fetched)
    assert 0 < hits < sum(b.size for b in batches) or capacity >= 2000


@pytest.mark.parametrize("window", [0, 1, 3, 6])
def test_lookahead_every_lookup_hits_and_nothing_in_the_window_is_evicted(window):
    batches = zipf_batches(120, 40, 3000, seed=window, a=1.1)
    capacity = 40 * (window + 1)  # always enough: at most 40 distinct rows per batch
    planner, mirror = LookaheadPlanner(3000, capacity, window), SlotMirror(capacity)
    resident = lookups = fetched = 0
    step = 0
    for batch, plan, due in plan_ahead(batches, planner.admit, window):
        assert plan.step == step
        assert [p.step for p in due] == (
            list(range(window + 1))
            if step == 0
            else ([step + window] if step + window < len(batches) else [])
        )
        for p in due:
            # rows used by batches step..p.step are never evicted
            window_rows = np.unique(np.concatenate(batches[step : p.step + 1]))
            assert not np.isin(p.evict_rows, window_rows).any()
            mirror.apply(p)
            fetched += p.fetch_rows.size
        assert np.array_equal(mirror.row_of_slot[plan.slots], batch)
        resident += mirror.resident(plan)
        lookups += batch.size
        step += 1
    assert step == len(batches) and resident == lookups
    assert fetched < lookups  # reuse: the Zipf head stays cached


def test_lookahead_with_window_zero_moves_what_lru_moves():
    batches = zipf_batches(100, 32, 1000, seed=5)
    la, lru = LookaheadPlanner(1000, 100, 0), LRUPlanner(1000, 100)
    for b in batches:
        p, q = la.admit(b), lru.access(b)
        assert np.array_equal(p.fetch_rows, q.fetch_rows) and np.array_equal(p.evict_rows, q.evict_rows)


def test_a_cache_too_small_for_the_window_is_refused_when_planned():
    batches = [np.arange(i * 10, i * 10 + 10) for i in range(10)]  # 10 new rows per batch
    planner = LookaheadPlanner(1000, 35, window=3)  # the window needs 40
    with pytest.raises(
        CacheTooSmallError,
        match="a cache of 35 rows cannot hold the 40 distinct rows that "
        r"batches 0\.\.3 reference \(look-ahead window 3\)",
    ):
        list(plan_ahead(batches, planner.admit, 3))
    planner = LookaheadPlanner(1000, 40, window=3)
    assert len(list(plan_ahead(batches, planner.admit, 3))) == 10
    with pytest.raises(CacheTooSmallError, match="cannot hold the 10 distinct rows of batch 0"):
        LRUPlanner(1000, 9).access(batches[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one row"):
        LookaheadPlanner(10, 0, 1)
    with pytest.raises(ValueError, match="window must be >= 0"):
        LookaheadPlanner(10, 5, -1)
    with pytest.raises(ValueError, match="row 10 is outside the table's 10 rows"):
        LRUPlanner(10, 5, "C1").access(np.array([1, 10]))
    assert LRUPlanner(10, 500).capacity == 10


def test_mirror_refuses_plans_out_of_order():
    planner = LRUPlanner(100, 2)
    first, second = planner.access(np.array([1, 2])), planner.access(np.array([3, 4]))
    mirror = SlotMirror(2)
    with pytest.raises(RuntimeError, match="out of order"):
        mirror.apply(second)
    mirror.apply(first)
    mirror.apply(second)


def reference_lookahead(batches, capacity, window, horizon):
    """Set-based replay: keep every row of batches t-window..t; evict rows no batch of the next
    ``horizon`` references first, then those referenced last, then least recently used, then
    lowest row. Returns the rows fetched."""
    sets = [set(b.tolist()) for b in batches]
    cache: dict[int, int] = {}  # row: last step referencing it
    fetched = 0
    for t, rows in enumerate(sets):
        for r in rows & cache.keys():
            cache[r] = t
        missing = rows - cache.keys()
        excess = len(cache) + len(missing) - capacity
        if excess > 0:
            keep = set().union(*sets[max(0, t - window) : t + 1])
            next_use: dict[int, int] = {}
            for j in range(min(len(sets) - 1, t + horizon), t, -1):
                next_use.update(dict.fromkeys(sets[j], j))
            victims = sorted(
                (r for r in cache if r not in keep), key=lambda r: (-next_use.get(r, 10**9), cache[r], r)
            )[:excess]
            for r in victims:
                del cache[r]
        cache.update(dict.fromkeys(missing, t))
        fetched += len(missing)
    return fetched


@pytest.mark.parametrize("window, horizon, capacity", [(2, 0, 150), (2, 5, 150), (4, 16, 300), (0, 8, 60)])
def test_lookahead_with_a_horizon_matches_a_set_based_reference(window, horizon, capacity):
    batches = zipf_batches(80, 40, 2000, seed=horizon, a=1.1)
    planner, mirror = LookaheadPlanner(2000, capacity, window), SlotMirror(capacity)
    fetched = 0
    for batch, plan, due in plan_ahead(batches, planner.admit, window, horizon):
        for p in due:
            mirror.apply(p)
            fetched += p.fetch_rows.size
        assert mirror.resident(plan) == batch.size
    assert fetched == reference_lookahead(batches, capacity, window, horizon)
    if horizon:
        assert fetched < reference_lookahead(batches, capacity, window, 0)  # the horizon saves copies


def test_plan_ahead_reads_window_plus_horizon_items_ahead():
    read = []

    def items():
        for i in range(10):
            read.append(i)
            yield i

    seen = []
    for item, upcoming_plan, _due in plan_ahead(items(), lambda x, upcoming: (x, list(upcoming)), 2, 3):
        seen.append(item)
        assert max(read) == min(item + 5, 9)  # window 2 + horizon 3 ahead of the step
        assert upcoming_plan == (item, list(range(item + 1, min(item + 4, 10))))
    assert seen == list(range(10))
