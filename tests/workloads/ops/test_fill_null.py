"""fill_null(value): nulls become ``value`` (cast to the column's type); element-wise on lists."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._support import (
    PROPERTY,
    check_elementwise,
    check_list_elementwise,
    finite_floats,
    floats_with_inf,
    int64s,
    int_column,
    list_column,
    make,
    nullable,
    same_float,
)


def reference(fill):
    """Per value: a null becomes ``fill``, anything else is kept."""
    return lambda v: fill if v is None else v


@PROPERTY
@given(column=int_column(), data=st.data())
def test_int_columns(column, data):
    arrow_type, values = column
    lo, hi = {True: (0, 100), False: (-100, 100)}[
        arrow_type.id in (pa.uint8().id, pa.uint32().id, pa.uint64().id)
    ]
    fill = data.draw(st.integers(lo, hi))
    op = make("fill_null", value=fill)
    check_elementwise(op, values, arrow_type, reference(fill), out_type=arrow_type)


@PROPERTY
@given(
    values=st.lists(nullable(floats_with_inf), max_size=40),
    fill=st.one_of(finite_floats, st.integers(-(2**40), 2**40)),
)
def test_float_columns(values, fill):
    op = make("fill_null", value=fill)
    check_elementwise(op, values, pa.float64(), reference(float(fill)), eq=same_float, out_type=pa.float64())


@PROPERTY
@given(
    values=st.lists(nullable(st.text(max_size=6)), max_size=40),
    fill=st.text(max_size=6),
    arrow_type=st.sampled_from([pa.string(), pa.large_string()]),
)
def test_string_columns(values, fill, arrow_type):
    op = make("fill_null", value=fill)
    check_elementwise(op, values, arrow_type, reference(fill), out_type=arrow_type)


@PROPERTY
@given(lists=list_column(nullable(int64s)), fill=st.integers(-(2**62), 2**62))
def test_list_elements_filled_null_lists_kept(lists, fill):
    op = make("fill_null", value=fill)
    check_list_elementwise(op, lists, pa.int64(), reference(fill), out_value_type=pa.int64())


def test_default_value_is_zero_and_empty_arrays():
    op = make("fill_null")
    assert op.params.value == 0
    assert op.transform(pa.array([None, 5, None], pa.int64())).to_pylist() == [0, 5, 0]
    assert op.transform(pa.array([None, "a"], pa.string())).to_pylist() == ["0", "a"]
    for t in (pa.int64(), pa.float64(), pa.string()):
        empty = pa.array([], t)
        assert op.transform(empty).to_pylist() == []
        assert op.transform(empty.dictionary_encode()).to_pylist() == []
    assert op.transform(pa.array([], pa.list_(pa.int64()))).to_pylist() == []


@pytest.mark.parametrize(
    "params", [{"value": [1]}, {"value": {"a": 1}}, {"value": None}, {"fill": 0}, {"value": 0, "extra": 1}]
)
def test_bad_params_rejected(params):
    with pytest.raises(ValidationError):
        make("fill_null", **params)


@pytest.mark.parametrize(
    "value, kinds",
    [
        (0, {"int", "float", "string", "list"}),
        ("abc", {"string", "list"}),  # not a number: no int or float column takes it
        ("1.5", {"float", "string", "list"}),
        (0.5, {"float", "string", "list"}),  # would be truncated in an int column
        (2**63, {"float", "string", "list"}),  # beyond int64
        (2**70, {"float", "string", "list"}),
    ],
)
def test_the_plan_refuses_columns_the_value_cannot_fill(value, kinds):
    # a value the column's type cannot hold used to pass the plan and fail the shard at run time
    assert make("fill_null", value=value).accepts == kinds


def test_large_integers_fill_float_and_string_columns():
    # Arrow refuses an int64 beyond 2**53 as a float64, and any integer beyond 64 bits
    for value in (2**53 + 1, 2**63, 2**70):
        op = make("fill_null", value=value)
        assert op.transform(pa.array([None, 1.5])).to_pylist() == [float(value), 1.5]
        assert op.transform(pa.array([None, "a"])).to_pylist() == [str(value), "a"]
