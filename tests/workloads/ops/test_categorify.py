"""categorify(minCount): vocabulary of values seen >= minCount times, ordered by descending count
then ascending value; the i-th value maps to i + 1, rarer/unseen values and nulls to 0. The fit
(partial/combine/finalize) does not depend on how the data is split."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._support import (
    PROPERTY,
    assert_lists,
    assert_values,
    dictionary_layouts,
    int64s,
    list_column,
    make,
    nullable,
)

# few distinct values so that counts tie and exceed minCount
int_values = st.one_of(st.integers(-3, 3), int64s)
str_values = st.one_of(st.sampled_from(["", "a", "b", "B", "ab", "é"]), st.text(max_size=3))
columns = st.one_of(
    st.lists(nullable(int_values), max_size=40).map(lambda v: (pa.int64(), v)),
    st.lists(nullable(str_values), max_size=40).map(lambda v: (pa.string(), v)),
)
min_counts = st.integers(1, 4)


def reference_fit(values, min_count):
    counts = Counter(v for v in values if v is not None)
    kept = sorted(((v, c) for v, c in counts.items() if c >= min_count), key=lambda vc: (-vc[1], vc[0]))
    return {"vocabulary": [v for v, _ in kept], "counts": [c for _, c in kept]}


def reference_transform(vocabulary):
    ids = {v: i + 1 for i, v in enumerate(vocabulary)}
    return lambda v: 0 if v is None else ids.get(v, 0)


def fit(op, *parts):
    state = op.partial(parts[0])
    for part in parts[1:]:
        state = op.combine(state, op.partial(part))
    return op.finalize(state)


@PROPERTY
@given(column=columns, min_count=min_counts, data=st.data())
def test_fit_matches_reference_for_any_split(column, min_count, data):
    arrow_type, values = column
    op = make("categorify", minCount=min_count)
    array = pa.array(values, arrow_type)
    want = reference_fit(values, min_count)
    assert fit(op, array) == want
    i = data.draw(st.integers(0, len(values)))
    j = data.draw(st.integers(i, len(values)))
    a, b, c = array.slice(0, i), array.slice(i, j - i), array.slice(j)
    assert fit(op, a, array.slice(i)) == want
    assert op.finalize(op.combine(op.combine(op.partial(a), op.partial(b)), op.partial(c))) == want
    assert op.finalize(op.combine(op.partial(a), op.combine(op.partial(b), op.partial(c)))) == want
    # shards of different layouts (dictionary-encoded, plain) combine to the same vocabulary
    for layout in dictionary_layouts(a).values():
        assert fit(op, layout, array.slice(i)) == want


@PROPERTY
@given(column=columns, min_count=min_counts, data=st.data())
def test_transform_matches_reference(column, min_count, data):
    arrow_type, values = column
    op = make("categorify", minCount=min_count)
    fit_values = data.draw(st.lists(st.sampled_from(values), max_size=40) if values else st.just([]))
    state = fit(op, pa.array(fit_values, arrow_type))  # includes values unseen in the fit
    ref = reference_transform(state["vocabulary"])
    want = [ref(v) for v in values]
    array = pa.array(values, arrow_type)
    got = op.transform(array, state)
    assert got.type == pa.int64()
    assert_values(got.to_pylist(), want, what="plain")
    for name, layout in dictionary_layouts(array).items():
        got = op.transform(layout, state)
        assert_values(got.dictionary.take(got.indices).to_pylist(), want, what=name)


@PROPERTY
@given(lists=list_column(nullable(st.integers(-3, 3))), min_count=min_counts, data=st.data())
def test_lists_fit_and_transform_elements(lists, min_count, data):
    op = make("categorify", minCount=min_count)
    array = pa.array(lists, pa.list_(pa.int64()))
    flat = [v for lst in lists if lst is not None for v in lst]
    state = fit(op, array)
    assert state == reference_fit(flat, min_count)
    i = data.draw(st.integers(0, len(lists)))
    assert fit(op, array.slice(0, i), array.slice(i)) == state
    ref = reference_transform(state["vocabulary"])
    want = [None if lst is None else [ref(v) for v in lst] for lst in lists]
    assert_lists(op.transform(array, state).to_pylist(), want, what="list")
    if len(lists) > 2:
        assert_lists(
            op.transform(array.slice(1, len(lists) - 2), state).to_pylist(), want[1:-1], what="sliced list"
        )


def test_one_op_many_states():
    """The same op instance used with successive (short-lived) states must use each state's own
    vocabulary, however Python reuses the states' memory."""
    op = make("categorify")
    for k in range(30):
        values = [k, k, k + 1, None]
        got = op.transform(pa.array(values), op.finalize(op.partial(pa.array(values))))
        assert got.to_pylist() == [1, 1, 2, 0], k
    # and the same state on columns of different types
    state = {"vocabulary": ["x", "y"], "counts": [2, 1]}
    assert op.transform(pa.array(["y", "x", "z"]), state).to_pylist() == [2, 1, 0]
    assert op.transform(pa.array(["y", "x"], pa.large_string()), state).to_pylist() == [2, 1]


def test_examples():
    op = make("categorify", minCount=2)
    state = fit(op, pa.array(["b", "a", "c", "a", "b", None, None, "d", "a", "e", "e"]))
    assert state == {"vocabulary": ["a", "b", "e"], "counts": [3, 2, 2]}
    assert op.transform(pa.array(["e", "c", None, "a", "zz"]), state).to_pylist() == [3, 0, 0, 1, 0]
    empty = fit(op, pa.array([], pa.int64()))
    assert empty == {"vocabulary": [], "counts": []}
    assert op.transform(pa.array([1, None], pa.int64()), empty).to_pylist() == [0, 0]
    with pytest.raises(RuntimeError):
        op.transform(pa.array([1]))


@pytest.mark.parametrize(
    "params", [{"minCount": 0}, {"minCount": -1}, {"minCount": 1.5}, {"minCount": 1, "maxSize": 10}]
)
def test_bad_params_rejected(params):
    with pytest.raises(ValidationError):
        make("categorify", **params)
