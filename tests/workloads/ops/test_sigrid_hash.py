"""sigrid_hash(salt, maxValue): splitmix64(uint64(id) + salt * 0x9E3779B97F4A7C15) % maxValue,
element-wise on lists; nulls stay null."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from recprep.workloads.ops.hashing import mix64, reduce_range

from . import _reference_hash as ref
from ._support import (
    INT64_MAX,
    INT64_MIN,
    PROPERTY,
    check_elementwise,
    check_list_elementwise,
    int64s,
    int_column,
    list_column,
    make,
    nullable,
)

salts = st.one_of(st.integers(0, 100), st.integers(0, 2**64 - 1))
max_values = st.one_of(st.integers(1, 1000), st.just(1_000_000), st.integers(1, 2**63 - 1))


def reference(salt, max_value):
    return lambda x: None if x is None else ref.sigrid_hash(x, salt, max_value)


@PROPERTY
@given(column=int_column(), salt=salts, max_value=max_values)
def test_matches_reference(column, salt, max_value):
    arrow_type, values = column
    op = make("sigrid_hash", salt=salt, maxValue=max_value)
    check_elementwise(op, values, arrow_type, reference(salt, max_value), out_type=pa.int64())


@PROPERTY
@given(lists=list_column(nullable(int64s)), salt=salts, max_value=max_values)
def test_list_elements(lists, salt, max_value):
    op = make("sigrid_hash", salt=salt, maxValue=max_value)
    check_list_elementwise(op, lists, pa.int64(), reference(salt, max_value), out_value_type=pa.int64())


@PROPERTY
@given(ids=st.lists(int64s, min_size=1, max_size=40), salt=salts, max_value=max_values)
def test_results_in_range(ids, salt, max_value):
    got = make("sigrid_hash", salt=salt, maxValue=max_value).transform(pa.array(ids)).to_pylist()
    assert all(0 <= h < max_value for h in got)


@PROPERTY
@given(s1=salts, s2=salts)
def test_different_salts_change_results(s1, s2):
    assume(s1 != s2)
    ids = pa.array(range(-16, 16), pa.int64())
    a = make("sigrid_hash", salt=s1, maxValue=2**63 - 1).transform(ids).to_pylist()
    b = make("sigrid_hash", salt=s2, maxValue=2**63 - 1).transform(ids).to_pylist()
    assert a != b
    assert sum(x == y for x, y in zip(a, b)) <= 1


# Pinned outputs (computed with the plain-Python reference): a change of the hash changes every
# hashed ID of every trained model, so it must fail here.
IDS = [0, 1, -1, 2**62]
PINNED = {
    (0, 2**63 - 1): [0, 6238072747940578789, 3805636230021627260, 1360429390938723525],
    (0, 1_000_000): [0, 578789, 403067, 723525],
    (7, 2**63 - 1): [3207296026000306913, 6960854651289091238, 8164794093143605158, 90685944760712632],
    (7, 1_000_000): [306913, 867045, 380965, 712632],
}


@pytest.mark.parametrize("salt, max_value", sorted(PINNED))
def test_pinned_values(salt, max_value):
    op = make("sigrid_hash", salt=salt, maxValue=max_value)
    assert op.transform(pa.array(IDS, pa.int64())).to_pylist() == PINNED[salt, max_value]
    assert [ref.sigrid_hash(i, salt, max_value) for i in IDS] == PINNED[salt, max_value]


def test_empty_and_nulls():
    op = make("sigrid_hash", maxValue=10)
    assert op.params.salt == 0
    assert op.transform(pa.array([], pa.int64())).to_pylist() == []
    assert op.transform(pa.array([None, None], pa.int64())).to_pylist() == [None, None]
    assert op.transform(pa.array([None, [], [None, 1]], pa.list_(pa.int64()))).to_pylist() == [
        None,
        [],
        [None, ref.sigrid_hash(1, 0, 10)],
    ]
    with pytest.raises(TypeError):
        op.transform(pa.array([1.5]))


def test_booleans_hash_as_the_integers_0_and_1():
    # a boolean column is of kind int (the plan lets it through): it used to fail the shard
    op = make("sigrid_hash", salt=7, maxValue=1000)
    want = op.transform(pa.array([1, None, 0])).to_pylist()
    assert op.transform(pa.array([True, None, False])).to_pylist() == want
    assert op.transform(pa.array([[True, False], None], pa.list_(pa.bool_()))).to_pylist() == [
        [want[0], want[2]],
        None,
    ]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"salt": 1},
        {"maxValue": 0},
        {"maxValue": -5},
        {"maxValue": 2**63},
        {"maxValue": 10, "salt": -1},
        {"maxValue": 10, "salt": 2**64},
        {"maxValue": 1.5},
        {"maxValue": 10, "seed": 1},
        {"max": 10},
    ],
)
def test_bad_params_rejected(params):
    with pytest.raises(ValidationError):
        make("sigrid_hash", **params)


@PROPERTY
@given(
    ids=st.lists(st.integers(INT64_MIN, INT64_MAX), max_size=300),
    salt=st.one_of(st.sampled_from([0, 1, 2**64 - 1]), st.integers(0, 2**64 - 1)),
    max_value=st.one_of(
        st.sampled_from([1, 2, 3, 2**32, 2**62, 2**63 - 1, 10**6]), st.integers(1, 2**63 - 1)
    ),
)
def test_kernel_equals_the_numpy_reference(ids, salt, max_value):
    """The C kernel's reciprocal remainder equals numpy's modulo for every input."""
    kernel = pytest.importorskip("recprep.workloads.ops._kernels")
    raw = np.array(ids, dtype=np.int64)
    out = np.empty(len(raw), dtype=np.int64)
    kernel.sigrid_hash(raw, out, salt, max_value)
    assert out.tolist() == reduce_range(mix64(raw, salt), max_value).tolist()
