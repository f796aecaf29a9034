"""History lists stored only where the session before does not give them (output.derived), and
the deduplicated layout's version 2 around them (output.dedup: pack, materialize, expand)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recprep.op_params import HistoryParams
from recprep.workloads.ops.history import History
from recprep.workloads.output.dedup import DEDUP_KEY, Unique, expand, first_rows, groups_of, materialize, pack
from recprep.workloads.output.derived import Derivation, flags, rebuild, stored


def sessions(seed: int, n: int, null_share: float = 0.0, keys: float = 0.1, starts: float = 0.3):
    """A session shard's rows: key and session runs, a per-sample ID column (some nulls), the
    ID's history per session as the history op makes it, and the inverse index."""
    rng = np.random.default_rng(seed)
    key_run = np.cumsum(rng.random(n) < keys).astype(np.int32) + 1
    new_key = np.r_[True, key_run[1:] != key_run[:-1]]
    session_run = np.cumsum((rng.random(n) < starts) | new_key).astype(np.int32)
    ids = [None if rng.random() < null_share else int(v) for v in rng.integers(0, 1 << 40, n)]
    source = pa.array(ids, pa.int64())
    return source, key_run, session_run


def history(source, key_run, session_run, k: int):
    lists = History(HistoryParams(k=k, output="h")).session_lists(source, key_run, session_run)
    _, inverse = first_rows(session_run)
    return lists, inverse


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 300),
    k=st.integers(1, 12),
    null_share=st.sampled_from([0.0, 0.0, 0.1, 0.5]),
    keys=st.sampled_from([0.01, 0.1, 0.5]),
    starts=st.sampled_from([0.05, 0.3, 1.0]),
)
def test_every_history_list_reads_back_exactly(seed, n, k, null_share, keys, starts):
    source, key_run, session_run = sessions(seed, n, null_share, keys, starts)
    lists, inverse = history(source, key_run, session_run, k)
    row_flags = flags(lists, source, inverse, k)
    assert len(row_flags) == len(lists) and not (len(row_flags) and row_flags[0])
    kept = stored(lists, row_flags)
    assert kept.null_count == int(row_flags.sum())
    assert rebuild(kept, row_flags, source, inverse, k).equals(lists)
    if null_share == 0.0 and len(lists) > 1:
        # without nulls every session but a key's first follows from the one before
        key_of_session = key_run[np.flatnonzero(np.r_[True, session_run[1:] != session_run[:-1]])]
        later = np.r_[False, key_of_session[1:] == key_of_session[:-1]]
        assert row_flags[later].all() and not row_flags[~later].any()


def test_a_list_the_rule_does_not_give_is_stored_whole():
    source = pa.array([1, 2, 3, 4, 5, 6, 100, 101, 102], pa.int64())
    inverse = np.array([0, 0, 0, 1, 1, 2, 3, 3, 4])
    lists = pa.array([[9, 8], [1, 2, 3], [3, 4, 5], [], [100, 101]], pa.list_(pa.int64()))
    assert flags(lists, source, inverse, 3).tolist() == [False, True, True, False, True]
    # a value changed after the history op (row 1), a list cut to other lengths (row 2)
    changed = pa.array([[9, 8], [1, 2, 7], [4, 5], [], [100, 101]], pa.list_(pa.int64()))
    assert flags(changed, source, inverse, 3).tolist() == [False, False, False, False, True]
    # a null sample that would enter a window: the window is stored
    with_null = pa.array([1, 2, None, 4, 5, 6, 100, 101, 102], pa.int64())
    assert flags(lists, with_null, inverse, 3).tolist() == [False, False, True, False, True]
    # rows not in session order, lists of strings, a source of floats: nothing is derived
    assert not flags(lists, source, inverse[::-1].copy(), 3).any()
    assert not flags(pa.array([["a"]] * 5), source, inverse, 3).any()
    assert not flags(lists, pa.array(np.arange(9.0)), inverse, 3).any()


def test_a_dictionary_source_and_large_lists_read_back():
    source, key_run, session_run = sessions(3, 200)
    lists, inverse = history(source, key_run, session_run, 4)
    large = lists.cast(pa.large_list(pa.int64()))
    coded = source.dictionary_encode()
    row_flags = flags(large, coded, inverse, 4)
    assert row_flags.sum() > 0
    assert rebuild(stored(large, row_flags), row_flags, coded, inverse, 4).equals(large)


def _shard(k: int = 4, n: int = 120):
    source, key_run, session_run = sessions(11, n)
    lists, inverse = history(source, key_run, session_run, k)
    starts, _ = first_rows(session_run)
    users = pa.array(key_run[starts].astype(np.int64))
    table = pa.table({"label": pa.array(np.arange(n) % 2), "item": source})
    rows = pa.table({"user": users, "item_hist": lists})
    uniques = [Unique("u", rows, inverse)]
    derive = [Derivation("item_hist", "item", k)]
    whole = pack(table, uniques, order=["label", "item", "user", "item_hist"])
    return pack(table, uniques, order=["label", "item", "user", "item_hist"], derive=derive), whole


def test_pack_records_the_derived_lists_and_materialize_gives_the_whole_layout_back():
    packed, whole = _shard()
    doc = json.loads(packed.schema.metadata[DEDUP_KEY])
    assert doc["version"] == 2
    assert doc["groups"][0]["derived"] == [
        {"column": "item_hist", "from": "item", "k": 4, "flags": "_derived.item_hist"}
    ]
    assert packed.column_names == ["label", "item", "user", "item_hist", "_inverse.u", "_derived.item_hist"]
    (group,) = groups_of(packed.schema)
    assert group.bookkeeping == ("_inverse.u", "_derived.item_hist")
    flagged = packed["_derived.item_hist"].slice(0, group.unique)
    assert packed["item_hist"].slice(0, group.unique).null_count == int(np.sum(flagged.to_numpy())) > 0
    back = materialize(packed)
    assert back.equals(whole) and back.schema.metadata == whole.schema.metadata
    assert expand(packed).equals(expand(whole))
    assert materialize(whole) is whole  # nothing derived: as it is


def test_a_shard_whose_flags_contradict_it_is_an_error_naming_the_group_and_column():
    packed, _ = _shard()
    i = packed.schema.get_field_index("_derived.item_hist")
    first_flagged = packed.set_column(
        i, "_derived.item_hist", pa.chunked_array([pa.array([1], pa.int32()), packed[i].slice(1)])
    )
    with pytest.raises(
        ValueError, match="dedup group 'u', column 'item_hist': the first unique row is flagged"
    ):
        materialize(first_flagged)
    no_source = packed.drop_columns(["item"])
    with pytest.raises(ValueError, match="dedup group 'u': the shard has no column 'item'"):
        materialize(no_source)
