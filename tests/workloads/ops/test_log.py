"""log(offset=3): y = ln(x + offset), with inputs below 1 - offset first raised to 1 - offset;
float64 output; nulls stay null."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._support import PROPERTY, check_elementwise, make, numeric_column, same_float

offsets = st.one_of(st.just(3.0), st.integers(-100, 100).map(float), st.floats(-1e6, 1e6, allow_nan=False))


def reference(offset):
    floor = 1.0 - offset

    def ref(x):
        if x is None:
            return None
        x = float(x)
        if x < floor:
            x = floor
        return math.log(x + offset)

    return ref


@PROPERTY
@given(column=numeric_column(), offset=offsets)
def test_matches_reference(column, offset):
    arrow_type, values = column
    op = make("log", offset=offset)
    check_elementwise(op, values, arrow_type, reference(offset), eq=same_float, out_type=pa.float64())


@PROPERTY
@given(column=numeric_column())
def test_default_offset_is_3_and_output_never_negative(column):
    arrow_type, values = column
    op = make("log")
    assert op.params.offset == 3.0
    got = op.transform(pa.array(values, type=arrow_type)).to_pylist()
    assert_same = [same_float(g, w) for g, w in zip(got, map(reference(3.0), values))]
    assert all(assert_same)
    assert all(g is None or g >= 0 for g in got)


def test_examples():
    op = make("log", offset=3)
    got = op.transform(pa.array([None, -10, -2, 0, 1, 2**62], pa.int64())).to_pylist()
    assert got[0] is None
    assert got[1] == 0.0 and got[2] == 0.0  # raised to 1 - 3 = -2 first: ln(1) == 0
    assert got[3] == math.log(3) and got[4] == math.log(4)
    assert math.isclose(got[5], math.log(2.0**62 + 3), rel_tol=1e-12)
    assert op.transform(pa.array([math.inf, -math.inf])).to_pylist() == [math.inf, 0.0]
    for t in (pa.int64(), pa.float64()):
        out = op.transform(pa.array([], t))
        assert out.type == pa.float64() and len(out) == 0
    assert op.transform(pa.array([None, None], pa.int32())).to_pylist() == [None, None]


def test_does_not_accept_lists_or_strings():
    from recprep.workloads.ops.base import FLOAT, INT

    assert make("log").accepts == {INT, FLOAT}


@pytest.mark.parametrize(
    "params", [{"offset": "three"}, {"offset": [3]}, {"base": 10}, {"offset": 3, "extra": True}]
)
def test_bad_params_rejected(params):
    with pytest.raises(ValidationError):
        make("log", **params)
