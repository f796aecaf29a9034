"""to_list: scalar -> [x], null -> []; firstx(k): the first min(k, len) elements of each list,
null lists stay null."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._support import (
    PROPERTY,
    assert_lists,
    dictionary_layouts,
    floats_with_inf,
    int64s,
    int_column,
    list_column,
    make,
    nullable,
    same_float,
    value_type_of,
)


def to_list_reference(values):
    return [[] if v is None else [v] for v in values]


def firstx_reference(lists, k):
    return [None if lst is None else lst[: min(k, len(lst))] for lst in lists]


@PROPERTY
@given(
    column=st.one_of(
        int_column(), st.lists(nullable(floats_with_inf), max_size=40).map(lambda v: (pa.float64(), v))
    )
)
def test_to_list(column):
    arrow_type, values = column
    op = make("to_list")
    want = to_list_reference(values)
    array = pa.array(values, arrow_type)
    eq = same_float if pa.types.is_floating(arrow_type) else None
    for name, layout in {"plain": array, **dictionary_layouts(array)}.items():
        got = op.transform(layout)
        assert pa.types.is_list(got.type) and value_type_of(got.values) == arrow_type, name
        # dictionary layouts stay dictionary-encoded inside the lists (no expansion)
        assert pa.types.is_dictionary(got.type.value_type) == (name != "plain"), name
        assert got.null_count == 0 and got.values.null_count == 0, name
        if name != "plain":
            assert got.values.dictionary.null_count == 0, name
        assert_lists(got.to_pylist(), want, eq, what=name)


@PROPERTY
@given(lists=list_column(nullable(int64s)))
def test_to_list_keeps_lists(lists):
    array = pa.array(lists, pa.list_(pa.int64()))
    assert make("to_list").transform(array).to_pylist() == lists


@PROPERTY
@given(
    lists=list_column(nullable(int64s), max_len=12),
    k=st.integers(1, 14),
    list_type=st.sampled_from([pa.list_, pa.large_list]),
    data=st.data(),
)
def test_firstx(lists, k, list_type, data):
    op = make("firstx", k=k)
    array = pa.array(lists, list_type(pa.int64()))
    got = op.transform(array)
    assert got.type == array.type
    assert_lists(got.to_pylist(), firstx_reference(lists, k), what="firstx")
    # a slice of the column (offsets not starting at 0)
    start = data.draw(st.integers(0, len(lists)))
    stop = data.draw(st.integers(start, len(lists)))
    got = op.transform(array.slice(start, stop - start))
    assert_lists(got.to_pylist(), firstx_reference(lists[start:stop], k), what="sliced")


@PROPERTY
@given(values=st.lists(nullable(int64s), max_size=30), k=st.integers(1, 3))
def test_to_list_then_firstx_is_criteo_recipe(values, k):
    lists = make("to_list").transform(pa.array(values, pa.int64()))
    assert make("firstx", k=k).transform(lists).to_pylist() == to_list_reference(values)


def test_examples():
    op = make("firstx", k=2)
    array = pa.array([[1, 2, 3], [], None, [None, 5, 6], [7]], pa.list_(pa.int64()))
    assert op.transform(array).to_pylist() == [[1, 2], [], None, [None, 5], [7]]
    assert op.transform(pa.array([], pa.list_(pa.int64()))).to_pylist() == []
    assert op.transform(pa.array([None, None], pa.list_(pa.int64()))).to_pylist() == [None, None]
    assert make("to_list").transform(pa.array([5, None], pa.int64())).to_pylist() == [[5], []]
    assert make("to_list").transform(pa.array([], pa.int64())).to_pylist() == []


@pytest.mark.parametrize(
    "name, params",
    [
        ("firstx", {}),
        ("firstx", {"k": 0}),
        ("firstx", {"k": -1}),
        ("firstx", {"k": 1.5}),
        ("firstx", {"k": 1, "n": 2}),
        ("to_list", {"k": 1}),
    ],
)
def test_bad_params_rejected(name, params):
    with pytest.raises(ValidationError):
        make(name, **params)
