"""clamp(min, max): values (or list elements) limited to [min, max]; integer columns keep their
integer type, with the bounds rounded inwards (ceil(min), floor(max)) and, when a bound lies
outside the column type's range, saturated to that range."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._support import (
    INT_TYPES,
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

#: bounds: small, huge, fractional, and around the int64 limits (never infinite: the spec
#: refuses inf and NaN in every op parameter; an open side is an omitted bound)
bound = st.one_of(
    st.integers(-1000, 1000).map(float),
    st.floats(-1000, 1000, allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2.0**63, -(2.0**63), 2.0**31, -(2.0**31) - 0.5, 127.5, -128.0]),
)


@st.composite
def bounds(draw):
    lo, hi = draw(st.none() | bound), draw(st.none() | bound)
    assume(lo is not None or hi is not None)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    return lo, hi


def float_reference(lo, hi):
    def ref(x):
        if x is None:
            return None
        if lo is not None and x < lo:
            x = lo
        if hi is not None and x > hi:
            x = hi
        return x

    return ref


def _inward(b, rounding, tmin, tmax):
    """A bound rounded to an integer (inwards) and saturated to [tmin, tmax]."""
    if b == math.inf:
        return tmax
    if b == -math.inf:
        return tmin
    return min(max(rounding(b), tmin), tmax)


def int_reference(lo, hi, arrow_type):
    tmin, tmax = INT_TYPES[arrow_type]
    lo_i = None if lo is None else _inward(lo, math.ceil, tmin, tmax)
    hi_i = None if hi is None else _inward(hi, math.floor, tmin, tmax)

    def ref(x):
        if x is None:
            return None
        if lo_i is not None and x < lo_i:
            x = lo_i
        if hi_i is not None and x > hi_i:
            x = hi_i
        return x

    return ref


@PROPERTY
@given(column=int_column(), b=bounds())
def test_int_columns_keep_type(column, b):
    arrow_type, values = column
    op = make("clamp", min=b[0], max=b[1])
    check_elementwise(op, values, arrow_type, int_reference(*b, arrow_type), out_type=arrow_type)


@PROPERTY
@given(values=st.lists(nullable(floats_with_inf), max_size=40), b=bounds())
def test_float_columns(values, b):
    op = make("clamp", min=b[0], max=b[1])
    check_elementwise(op, values, pa.float64(), float_reference(*b), eq=same_float, out_type=pa.float64())


@PROPERTY
@given(lists=list_column(nullable(int64s)), b=bounds())
def test_int_list_elements(lists, b):
    op = make("clamp", min=b[0], max=b[1])
    check_list_elementwise(op, lists, pa.int64(), int_reference(*b, pa.int64()), out_value_type=pa.int64())


@PROPERTY
@given(lists=list_column(nullable(finite_floats)), b=bounds())
def test_float_list_elements(lists, b):
    op = make("clamp", min=b[0], max=b[1])
    check_list_elementwise(
        op, lists, pa.float64(), float_reference(*b), eq=same_float, out_value_type=pa.float64()
    )


def test_examples():
    op = make("clamp", min=-1.5, max=2.5)
    assert op.transform(pa.array([-9, -1, 0, 2, 3, None])).to_pylist() == [-1, -1, 0, 2, 2, None]
    assert op.transform(pa.array([-9.0, 2.4, 3.0])).to_pylist() == [-1.5, 2.4, 2.5]
    # bounds beyond the column type's range: no error, values saturate
    assert make("clamp", max=1e10).transform(pa.array([1, 2**31 - 1], pa.int32())).to_pylist() == [
        1,
        2**31 - 1,
    ]
    assert make("clamp", max=2**63 - 1).transform(pa.array([5, 2**63 - 1])).to_pylist() == [5, 2**63 - 1]
    assert make("clamp", min=1000).transform(pa.array([1, -3], pa.int8())).to_pylist() == [127, 127]
    for t in (pa.int64(), pa.float64()):
        assert op.transform(pa.array([], t)).to_pylist() == []


@pytest.mark.parametrize(
    "params",
    [
        {},  # neither bound
        {"min": None, "max": None},
        {"min": 2, "max": 1},  # min > max
        {"min": 0.5, "max": -math.inf},
        {"min": math.nan},  # NaN bounds compare false with everything
        {"min": -math.inf, "max": math.inf},  # no infinite bound: omit the side instead
        {"max": math.nan},
        {"min": 0, "max": math.nan},
        {"min": "low"},
        {"min": 0, "maximum": 1},  # unknown parameter names
        {"lo": 0},
    ],
)
def test_bad_params_rejected(params):
    with pytest.raises(ValidationError):
        make("clamp", **params)


def test_boolean_and_half_float_columns():
    # neither has min/max kernels in Arrow: they used to fail the shard
    assert make("clamp", max=0.5).transform(pa.array([True, None, False])).to_pylist() == [False, None, False]
    assert make("clamp", min=1).transform(pa.array([[True], None, [False]])).to_pylist() == [
        [True],
        None,
        [True],
    ]
    half = pa.array([1.5, None, -3.0, 0.25], pa.float32()).cast(pa.float16())
    out = make("clamp", min=-1, max=1).transform(half)
    assert out.type == pa.float16() and out.to_pylist() == [1.0, None, -1.0, 0.25]


def test_equal_bounds_accepted():
    op = make("clamp", min=3, max=3)
    assert op.transform(pa.array([1, 5, None])).to_pylist() == [3, 3, None]
