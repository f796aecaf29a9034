"""hashing.mix64 / reduce_range (behind sigrid_hash and ngram) against plain-Python splitmix64."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from recprep.workloads.ops.hashing import mix64, reduce_range

from . import _reference_hash as ref
from ._support import PROPERTY, int64s

salts = st.one_of(st.integers(0, 100), st.integers(0, 2**64 - 1))


@PROPERTY
@given(ids=st.lists(int64s, max_size=30), salt=salts)
def test_mix64_int64(ids, salt):
    got = mix64(np.array(ids, dtype=np.int64), salt)
    assert got.dtype == np.uint64
    assert got.tolist() == [ref.mix64(i, salt) for i in ids]


@PROPERTY
@given(ids=st.lists(st.integers(0, 2**64 - 1), max_size=30), salt=salts)
def test_mix64_uint64_same_bits_as_int64(ids, salt):
    unsigned = np.array(ids, dtype=np.uint64)
    assert mix64(unsigned, salt).tolist() == [ref.mix64(i, salt) for i in ids]
    assert mix64(unsigned.view(np.int64), salt).tolist() == mix64(unsigned, salt).tolist()


@PROPERTY
@given(
    hashes=st.lists(st.integers(0, 2**64 - 1), max_size=30),
    max_value=st.one_of(st.integers(1, 1000), st.integers(1, 2**63 - 1)),
)
def test_reduce_range(hashes, max_value):
    got = reduce_range(np.array(hashes, dtype=np.uint64), max_value)
    assert got.dtype == np.int64
    assert got.tolist() == [h % max_value for h in hashes]


def test_pinned_mix64():
    ids = np.array([0, 1, -1, 2**62], dtype=np.int64)
    assert mix64(ids, 0).tolist() == [0, 6238072747940578789, 13029008266876403067, 1360429390938723525]
    assert mix64(ids, 7).tolist() == [
        3207296026000306913,
        16184226688143867045,
        17388166129998380965,
        90685944760712632,
    ]
