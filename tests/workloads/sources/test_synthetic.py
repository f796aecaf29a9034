"""Tests of the synthetic Criteo-schema generator (recprep.workloads.sources.synthetic)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recprep.workloads.sources import synthetic as syn
from recprep.workloads.sources.synthetic import (
    BLOCK_ROWS,
    CRITEO_COLUMNS,
    CRITEO_DENSE,
    CRITEO_LABEL,
    CRITEO_SPARSE,
    LABEL_POSITIVE_RATE,
    NULL_GROUPS,
    NULL_RATES,
    SPARSE_COUNTS,
    SPARSE_SPECS,
    criteo_schema,
    generate_criteo,
)

HEX8 = "^[0-9a-f]{8}$"
N_STATS = 200_000


@pytest.fixture(scope="module")
def big() -> pa.Table:
    return generate_criteo(0, N_STATS, seed=0)


def decoded(table: pa.Table) -> pa.Table:
    """The table with dictionary columns decoded to plain strings, one chunk per column."""
    cols = []
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def concat(*tables: pa.Table) -> pa.Table:
    return pa.concat_tables([decoded(t) for t in tables])


def assert_same_values(a: pa.Table, b: pa.Table) -> None:
    a, b = decoded(a), decoded(b)
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        assert a.column(name).equals(b.column(name)), name


# --- schema -------------------------------------------------------------------------------------


def test_column_lists():
    assert CRITEO_LABEL == "label"
    assert CRITEO_DENSE == [f"I{i}" for i in range(1, 14)]
    assert CRITEO_SPARSE == [f"C{i}" for i in range(1, 27)]
    assert CRITEO_COLUMNS == ["label", *CRITEO_DENSE, *CRITEO_SPARSE]
    assert len(CRITEO_COLUMNS) == 40


def test_schema():
    schema = criteo_schema()
    assert schema.names == CRITEO_COLUMNS
    label = schema.field("label")
    assert label.type == pa.int64() and not label.nullable
    for c in CRITEO_DENSE:
        assert schema.field(c).type == pa.float64() and schema.field(c).nullable
    for c in CRITEO_SPARSE:
        assert schema.field(c).type == pa.dictionary(pa.int32(), pa.string()) and schema.field(c).nullable


def test_table_has_schema_and_one_chunk_per_column():
    t = generate_criteo(100, 5_100, seed=3)
    assert t.schema.equals(criteo_schema())
    assert t.num_rows == 5_000
    assert all(t.column(c).num_chunks == 1 for c in t.column_names)


def test_empty_range():
    t = generate_criteo(7, 7)
    assert t.num_rows == 0 and t.schema.equals(criteo_schema())


@pytest.mark.parametrize(("start", "stop", "seed"), [(-1, 5, 0), (5, 4, 0), (0, 5, -1)])
def test_bad_arguments(start, stop, seed):
    with pytest.raises(ValueError):
        generate_criteo(start, stop, seed)


def test_numpy_integers_accepted():
    assert_same_values(generate_criteo(np.int64(10), np.int32(20), np.uint8(4)), generate_criteo(10, 20, 4))


# --- determinism --------------------------------------------------------------------------------


def test_repeatable():
    assert_same_values(generate_criteo(0, 3_000, 5), generate_criteo(0, 3_000, 5))


@pytest.mark.parametrize(
    "cuts",
    [
        [30_000],
        [BLOCK_ROWS],
        [BLOCK_ROWS - 1, BLOCK_ROWS + 1],
        [1, 2, 99_999],
        [12_345, 65_000, 70_000, 99_000],
    ],
)
def test_split_invariance(cuts):
    seed = 11
    whole = generate_criteo(0, 100_000, seed)
    bounds = [0, *cuts, 100_000]
    parts = [generate_criteo(a, b, seed) for a, b in zip(bounds, bounds[1:])]
    assert_same_values(whole, concat(*parts))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(0, 3 * BLOCK_ROWS),
    len1=st.integers(0, 3_000),
    len2=st.integers(0, 3_000),
    seed=st.integers(0, 2**64),
)
def test_split_invariance_property(start, len1, len2, seed):
    mid, stop = start + len1, start + len1 + len2
    whole = generate_criteo(start, stop, seed)
    assert_same_values(whole, concat(generate_criteo(start, mid, seed), generate_criteo(mid, stop, seed)))


def test_single_rows_match_a_slice():
    ref = decoded(generate_criteo(BLOCK_ROWS - 3, BLOCK_ROWS + 3, 2))
    for i in range(6):
        assert decoded(generate_criteo(BLOCK_ROWS - 3 + i, BLOCK_ROWS - 2 + i, 2)).equals(ref.slice(i, 1))


def test_all_null_column_in_a_small_range():
    ref = generate_criteo(0, 200, 0).column("C22").combine_chunks()
    i = int(np.flatnonzero(ref.is_null().to_numpy(zero_copy_only=False))[0])
    col = generate_criteo(i, i + 1, 0).column("C22").combine_chunks()
    assert col.null_count == 1 and len(col.dictionary) == 0
    col.validate(full=True)


def test_far_rows():
    start = 10**12
    ref = decoded(generate_criteo(start - 5, start + 20, 1))
    assert decoded(generate_criteo(start, start + 10, 1)).equals(ref.slice(5, 10))


def test_seeds_differ():
    a, b = decoded(generate_criteo(0, 2_000, 0)), decoded(generate_criteo(0, 2_000, 1))
    for name in CRITEO_COLUMNS:
        assert not a.column(name).equals(b.column(name)), name
    # the vocabularies differ too, not just the order of draws
    values_a = set(a.column("C9").drop_null().to_pylist())
    values_b = set(b.column("C9").drop_null().to_pylist())
    assert values_a and values_b and not values_a & values_b


# --- statistics (200k rows) ---------------------------------------------------------------------


def test_label(big):
    label = big.column("label").combine_chunks()
    assert label.null_count == 0
    values = label.to_numpy()
    assert set(np.unique(values)) <= {0, 1}
    assert abs(values.mean() - LABEL_POSITIVE_RATE) < 0.006
    assert abs(LABEL_POSITIVE_RATE - 0.22) < 0.01


def test_null_rates(big):
    for name in CRITEO_COLUMNS:
        rate = big.column(name).null_count / big.num_rows
        assert abs(rate - NULL_RATES[name]) < 0.006, (name, rate, NULL_RATES[name])
    assert NULL_RATES["label"] == 0.0
    assert NULL_RATES["I12"] > 0.7 and NULL_RATES["C22"] > 0.8  # the sparsest columns of the real data


def test_null_groups_missing_together(big):
    for _, cols in NULL_GROUPS:
        masks = [big.column(c).combine_chunks().is_null().to_numpy(zero_copy_only=False) for c in cols]
        for m in masks[1:]:
            assert np.array_equal(m, masks[0]), cols


def test_dense_values(big):
    for name in CRITEO_DENSE:
        values = big.column(name).combine_chunks().drop_null().to_numpy()
        assert np.all(values == np.round(values)), name
        assert not np.isnan(values).any()
        if name == "I2":
            assert (values < 0).mean() > 0.05 and values.min() >= -2
        else:
            assert values.min() >= 0, name
    i1 = big.column("I1").combine_chunks().drop_null().to_numpy()
    assert abs((i1 == 0).mean() - 0.4753) < 0.01  # zero share of I1 in the sample
    i5 = big.column("I5").combine_chunks().drop_null().to_numpy()
    assert 1_500 < np.median(i5) < 4_000 and i5.max() > 100_000  # heavy tail, like the sample


def test_sparse_values_are_hex(big):
    for name in CRITEO_SPARSE:
        col = big.column(name).combine_chunks()
        assert col.type == pa.dictionary(pa.int32(), pa.string())
        dictionary = col.dictionary
        assert pc.all(pc.match_substring_regex(dictionary, HEX8)).as_py(), name
        assert pc.count_distinct(dictionary).as_py() == len(dictionary), name  # no duplicate entries
        # every dictionary entry is used by a non-null row
        used = np.unique(col.indices.drop_null().to_numpy())
        assert len(used) == len(dictionary), name
        values = col.dictionary_decode().drop_null()
        assert pc.all(pc.match_substring_regex(values, HEX8)).as_py(), name


def _sorted_counts(table: pa.Table, name: str) -> np.ndarray:
    counts = pc.value_counts(table.column(name).combine_chunks().drop_null()).field("counts").to_numpy()
    return np.sort(counts)[::-1]


def test_zipf_skew_large_column(big):
    counts = _sorted_counts(big, "C3")  # cap ~10.1M IDs in the full data
    assert len(counts) > 50_000  # long tail: many distinct IDs ...
    top = counts[: len(counts) // 100].sum() / counts.sum()
    assert top > 0.35  # ... yet the top 1% of them cover a large share of the rows (uniform: ~1%)
    assert (counts == 1).mean() > 0.5  # and most IDs are rare


@pytest.mark.parametrize(("name", "share"), [("C1", 0.500), ("C9", 0.887), ("C10", 0.276), ("C20", 0.362)])
def test_top1_share_like_sample(big, name, share):
    counts = _sorted_counts(big, name)
    assert abs(counts[0] / counts.sum() - share) < 0.02


def test_cardinality_bounds(big):
    for name in CRITEO_SPARSE:
        n = len(_sorted_counts(big, name))
        cap = SPARSE_SPECS[name][0] if name in SPARSE_SPECS else len(SPARSE_COUNTS[name])
        assert 1 <= n <= cap, name
    assert set(SPARSE_SPECS) | set(SPARSE_COUNTS) == set(CRITEO_SPARSE)
    assert not set(SPARSE_SPECS) & set(SPARSE_COUNTS)


# --- internals ----------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=200), st.sampled_from(CRITEO_SPARSE)
)
def test_guide_matches_searchsorted(us, name):
    u = np.array(us, dtype=np.float64)
    ranks = syn._RANKS[name]
    expect = np.searchsorted(ranks.guide.cum, u * ranks.guide.total, side="right")
    assert np.array_equal(ranks.guide.search(u), expect)
    r = ranks.sample(u)
    assert r.min() >= 0 and r.max() < ranks.cap


def test_guide_edges():
    u = np.array([0.0, 1.0 - 2.0**-53, 0.5, 0.0507, 0.0626, 0.9895, 0.995])
    for dense in syn._DENSE.values():
        expect = np.searchsorted(dense.guide.cum, u, side="right")
        assert np.array_equal(dense.guide.search(u), expect)


def test_hex_ids_are_a_bijection():
    ranks = np.arange(1 << 20)
    ids = syn._hex_ids(ranks, syn._vocab_keys(0, 17))
    assert pc.count_distinct(ids).as_py() == len(ranks)
    assert pc.all(pc.match_substring_regex(ids, HEX8)).as_py()


if __name__ == "__main__":  # timing only, never asserted
    import time

    generate_criteo(0, 1_000)
    t0 = time.perf_counter()
    generate_criteo(0, 1_000_000)
    dt = time.perf_counter() - t0
    print(f"1,000,000 rows in {dt:.3f} s ({1e6 / dt:,.0f} rows/s)")
