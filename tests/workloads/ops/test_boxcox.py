"""boxcox: lambda fitted (scikit-learn, i.e. scipy's Box-Cox MLE) on a deterministic sample of the
positive values of x + shift; transform ((x + shift)**lambda - 1) / lambda (ln when lambda == 0),
null where x + shift <= 0 or x is null."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from ._support import PROPERTY, check_elementwise, make, nullable, same_float

# degenerate samples make scipy constrain lambda (and warn); huge powers overflow to inf (and warn)
pytestmark = pytest.mark.filterwarnings(
    "ignore:The optimal lambda:UserWarning", "ignore:overflow encountered:RuntimeWarning"
)

positive = st.one_of(st.floats(1e-3, 1e3), st.integers(1, 50).map(float))
# samples the fit is well-conditioned on: mostly positive, some nulls and non-positive values
values_st = st.lists(
    nullable(st.one_of(positive, positive, positive, st.floats(-10, 0))), min_size=2, max_size=40
)


def sample_of(values, shift):
    """The fit sample while nothing is thinned: positive x + shift, in order."""
    return [v + shift for v in values if v is not None and v + shift > 0]


def fit(op, *parts):
    state = op.partial(parts[0])
    for part in parts[1:]:
        state = op.combine(state, op.partial(part))
    return op.finalize(state)


@PROPERTY
@given(values=values_st, shift=st.sampled_from([0.0, 1.0, 0.5]), data=st.data())
def test_fit_split_independent_and_equal_to_scipy(values, shift, data):
    x = sample_of(values, shift)
    assume(len(set(x)) >= 2)
    op = make("boxcox", shift=shift, sampleSize=100)  # larger than any sample: nothing thinned
    array = pa.array(values, pa.float64())
    sample = op.partial(array)
    assert sample.tolist() == x
    state = op.finalize(sample)
    i = data.draw(st.integers(0, len(values)))
    a, b = array.slice(0, i), array.slice(i)
    assert np.array_equal(op.combine(op.partial(a), op.partial(b)), sample)
    assert fit(op, a, b) == state
    assert state["sampleSize"] == len(x)
    _, lam = scipy.stats.boxcox(np.array(x))
    assert math.isclose(state["lambda"], lam, rel_tol=1e-9, abs_tol=1e-9)


@PROPERTY
@given(values=st.lists(positive, min_size=30, max_size=80, unique=True), size=st.integers(10, 25))
def test_sample_is_thinned_deterministically(values, size):
    op = make("boxcox", sampleSize=size)
    sample = op.partial(pa.array(values)).tolist()
    assert len(sample) == size
    # an evenly strided subsequence that keeps the first and the last value
    where = {v: i for i, v in enumerate(values)}
    idx = [where[v] for v in sample]
    assert idx[0] == 0 and idx[-1] == len(values) - 1
    assert all(a < b for a, b in zip(idx, idx[1:]))
    stride = (len(values) - 1) / (size - 1)
    assert all(abs(i - k * stride) < 1 for k, i in enumerate(idx))
    # merging shards thins back to sampleSize, the same way every time
    parts = [op.partial(pa.array(values[:7])), op.partial(pa.array(values[7:]))]
    merged = op.combine(*parts)
    assert len(merged) == size
    assert np.array_equal(merged, op.combine(*parts))


def reference(lam, shift):
    def ref(x):
        if x is None:
            return None
        x = float(x) + shift
        if x <= 0:
            return None
        if lam == 0:
            return math.log(x)
        try:
            power = math.pow(x, lam)
        except OverflowError:  # tiny x, negative lambda: x**lambda is +inf (as in IEEE floats)
            power = math.inf
        return (power - 1.0) / lam

    return ref


def closeness(lam):
    """(x**lam - 1) / lam cancels when x**lam is near 1: a rounding error of a few ulps in the power
    becomes an absolute error of about eps * x**lam / |lam| in the result, so allow that much."""
    eps = 2.0**-52

    def close(got, want):
        if got is None or want is None or not math.isfinite(want) or lam == 0:
            return same_float(got, want, rel_tol=1e-12)
        conditioning = 8 * eps * max(1.0, abs(want * lam + 1.0)) / abs(lam)
        return same_float(got, want, rel_tol=1e-12, abs_tol=1e-12 + conditioning)

    return close


@PROPERTY
@given(
    values=st.lists(nullable(st.one_of(positive, st.floats(-10, 10), st.just(0.0))), max_size=40),
    lam=st.one_of(st.just(0.0), st.floats(-3, 3)),
    shift=st.sampled_from([0.0, 1.0, 2.5]),
)
def test_transform_matches_formula(values, lam, shift):
    op = make("boxcox", shift=shift)
    state = {"lambda": lam, "sampleSize": 10}
    check_elementwise(
        op, values, pa.float64(), reference(lam, shift), eq=closeness(lam), out_type=pa.float64(), state=state
    )


@PROPERTY
@given(
    values=st.lists(nullable(st.integers(-5, 10**6)), max_size=40),
    lam=st.floats(-2, 2),
    arrow_type=st.sampled_from([pa.int32(), pa.int64()]),
)
def test_transform_int_columns(values, lam, arrow_type):
    op = make("boxcox")
    check_elementwise(
        op,
        values,
        arrow_type,
        reference(lam, 0.0),
        eq=closeness(lam),
        out_type=pa.float64(),
        state={"lambda": lam, "sampleSize": 10},
    )


def test_fitted_transform_end_to_end():
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=500)
    op = make("boxcox", sampleSize=1000)
    state = fit(op, pa.array(x[:200]), pa.array(x[200:]))
    transformed, lam = scipy.stats.boxcox(x)
    assert math.isclose(state["lambda"], lam, rel_tol=1e-9)
    got = op.transform(pa.array(x), state).to_numpy()
    assert np.allclose(got, transformed, rtol=1e-12, atol=1e-12)


def test_examples_and_errors():
    op = make("boxcox")
    out = op.transform(pa.array([None, -1.0, 0.0, 1.0, math.e]), {"lambda": 0.0, "sampleSize": 10})
    assert out.to_pylist() == [None, None, None, 0.0, 1.0]
    assert op.transform(pa.array([], pa.float64()), {"lambda": 1.0}).to_pylist() == []
    with pytest.raises(ValueError):
        fit(op, pa.array([1.0, 1.0, -3.0, None]))  # fewer than two distinct positive values
    with pytest.raises(ValueError):
        fit(op, pa.array([], pa.float64()))
    with pytest.raises(RuntimeError):
        op.transform(pa.array([1.0]))


@pytest.mark.parametrize("params", [{"sampleSize": 9}, {"sampleSize": 0}, {"shift": "x"}, {"lambda": 0.5}])
def test_bad_params_rejected(params):
    with pytest.raises(ValidationError):
        make("boxcox", **params)
