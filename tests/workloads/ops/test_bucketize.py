"""bucketize(borders): int32 bucket index equal to numpy.searchsorted(borders, x, side="left"),
i.e. the number of borders strictly below x; nulls stay null."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._support import PROPERTY, check_elementwise, make, numeric_column

# borders are finite (the spec refuses inf and NaN in every op parameter)
border_values = st.one_of(
    st.integers(-50, 50).map(float),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 1.0, 1.5, -0.0, 2.0**62]),
)
borders_st = st.lists(border_values, min_size=1, max_size=10).map(sorted)


def reference(borders):
    def ref(x):
        if x is None:
            return None
        x = float(x)  # the op compares in float64, as numpy.searchsorted does for these inputs
        if math.isnan(x):
            return len(borders)  # numpy sorts NaN after everything
        return sum(1 for b in borders if b < x)

    return ref


@PROPERTY
@given(column=numeric_column(), borders=borders_st)
def test_matches_reference(column, borders):
    arrow_type, values = column
    op = make("bucketize", borders=borders)
    check_elementwise(op, values, arrow_type, reference(borders), out_type=pa.int32())


@PROPERTY
@given(values=st.lists(st.floats(allow_nan=True), max_size=30), borders=borders_st)
def test_equals_numpy_searchsorted(values, borders):
    op = make("bucketize", borders=borders)
    got = op.transform(pa.array(values, pa.float64())).to_pylist()
    want = np.searchsorted(np.array(borders), np.array(values, dtype=np.float64), side="left")
    assert got == want.tolist()


def test_examples():
    op = make("bucketize", borders=[0.5, 1.0, 1.0, 1.5])
    got = op.transform(pa.array([None, -3, 0.5, 0.75, 1.0, 1.2, 1.5, 99, math.inf])).to_pylist()
    assert got == [None, 0, 0, 1, 1, 3, 3, 4, 4]
    assert op.transform(pa.array([2**62 + 1, -(2**63)], pa.int64())).to_pylist() == [4, 0]
    for t in (pa.int64(), pa.float64()):
        out = op.transform(pa.array([], t))
        assert out.type == pa.int32() and len(out) == 0
    assert make("bucketize", borders=[1], output="b").params.output == "b"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"borders": []},
        {"borders": [2.0, 1.0]},
        {"borders": [0, 1, 0.5]},
        {"borders": [0, math.nan]},
        {"borders": [math.nan]},
        {"borders": [0, math.inf]},
        {"borders": [-math.inf, 0]},
        {"borders": ["a"]},
        {"borders": 1.0},
        {"borders": [1], "bins": [2]},
        {"borders": [1], "output": ""},  # used to pass as no output: the column replaced in place
    ],
)
def test_bad_params_rejected(params):
    with pytest.raises(ValidationError):
        make("bucketize", **params)
