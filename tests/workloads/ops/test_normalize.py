"""normalize: fitted mean and population std of the non-null values (split-independent, up to
float rounding); transform (x - mean) / std, only centred when std == 0; nulls stay null."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._support import (
    PROPERTY,
    check_elementwise,
    dictionary_layouts,
    int_column,
    make,
    nullable,
    same_float,
)

moderate = st.one_of(st.integers(-5, 5).map(float), st.floats(-1e6, 1e6, allow_nan=False))
columns = st.one_of(
    st.lists(nullable(moderate), max_size=40).map(lambda v: (pa.float64(), v)),
    int_column(),  # every integer type, int64 extremes included
)


def non_null(values):
    return [float(v) for v in values if v is not None]


def fit(op, *parts):
    state = op.partial(parts[0])
    for part in parts[1:]:
        state = op.combine(state, op.partial(part))
    return op.finalize(state)


def assert_state_close(got, want, scale):
    assert got["count"] == want["count"]
    tol = 1e-9 * scale
    assert math.isclose(got["mean"], want["mean"], rel_tol=1e-9, abs_tol=tol), (got, want)
    assert math.isclose(got["std"], want["std"], rel_tol=1e-9, abs_tol=tol), (got, want)


@PROPERTY
@given(column=columns, data=st.data())
def test_fit_equals_numpy_for_any_split(column, data):
    arrow_type, values = column
    op = make("normalize")
    array = pa.array(values, arrow_type)
    x = non_null(values)
    scale = max((abs(v) for v in x), default=0.0)
    whole = fit(op, array)
    if x:
        want = {"count": len(x), "mean": float(np.mean(x)), "std": float(np.std(x))}
    else:
        want = {"count": 0, "mean": 0.0, "std": 0.0}
    assert_state_close(whole, want, scale)
    i = data.draw(st.integers(0, len(values)))
    j = data.draw(st.integers(i, len(values)))
    a, b, c = array.slice(0, i), array.slice(i, j - i), array.slice(j)
    assert_state_close(fit(op, a, array.slice(i)), whole, scale)
    assert_state_close(fit(op, a, b, c), whole, scale)
    assert_state_close(
        op.finalize(op.combine(op.partial(a), op.combine(op.partial(b), op.partial(c)))), whole, scale
    )
    for layout in dictionary_layouts(array).values():
        assert_state_close(fit(op, layout), whole, scale)


def reference(state):
    mean, std = state["mean"], state["std"]

    def ref(x):
        if x is None:
            return None
        y = float(x) - mean
        return y / std if std > 0 else y

    return ref


@PROPERTY
@given(column=columns)
def test_transform_matches_reference(column):
    arrow_type, values = column
    op = make("normalize")
    state = fit(op, pa.array(values, arrow_type))
    check_elementwise(
        op, values, arrow_type, reference(state), eq=same_float, out_type=pa.float64(), state=state
    )


@PROPERTY
@given(
    values=st.lists(nullable(moderate), max_size=30),
    mean=moderate,
    std=st.one_of(st.just(0.0), st.floats(1e-3, 1e6)),
)
def test_transform_with_any_state(values, mean, std):
    state = {"count": 1, "mean": mean, "std": std}
    check_elementwise(
        make("normalize"),
        values,
        pa.float64(),
        reference(state),
        eq=same_float,
        out_type=pa.float64(),
        state=state,
    )


def test_examples():
    op = make("normalize")
    state = fit(op, pa.array([1.0, None, 3.0]))
    assert state == {"count": 2, "mean": 2.0, "std": 1.0}
    assert op.transform(pa.array([1.0, None, 3.0, 5]), state).to_pylist() == [-1.0, None, 1.0, 3.0]
    constant = fit(op, pa.array([4, 4, 4], pa.int32()))
    assert constant == {"count": 3, "mean": 4.0, "std": 0.0}
    assert op.transform(pa.array([4, 6], pa.int32()), constant).to_pylist() == [0.0, 2.0]
    assert fit(op, pa.array([], pa.float64())) == {"count": 0, "mean": 0.0, "std": 0.0}
    assert fit(op, pa.array([None], pa.float64())) == {"count": 0, "mean": 0.0, "std": 0.0}
    with pytest.raises(RuntimeError):
        op.transform(pa.array([1.0]))


def test_unknown_params_rejected():
    with pytest.raises(ValidationError):
        make("normalize", ddof=1)
