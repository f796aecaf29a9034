"""ngram(n, maxValue): for each list, the hashed n-grams of consecutive IDs (len - n + 1 of them,
none when the list is shorter than n); null lists stay null."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from . import _reference_hash as ref
from ._support import PROPERTY, assert_lists, int64s, list_column, make

ns = st.integers(1, 5)
max_values = st.one_of(st.integers(1, 1000), st.integers(1, 2**63 - 1))
salts = st.one_of(st.just(0), st.integers(0, 2**64 - 1))
id_lists = st.one_of(
    list_column(int64s, max_len=10), list_column(st.integers(0, 3), max_len=10)
)  # few IDs: repeated n-grams


def reference(lists, n, max_value, salt):
    out = []
    for lst in lists:
        if lst is None:
            out.append(None)
            continue
        out.append([ref.ngram_hash(lst[i : i + n], salt, max_value) for i in range(len(lst) - n + 1)])
    return out


@PROPERTY
@given(
    lists=id_lists,
    n=ns,
    max_value=max_values,
    salt=salts,
    list_type=st.sampled_from([pa.list_, pa.large_list]),
)
def test_matches_reference(lists, n, max_value, salt, list_type):
    op = make("ngram", n=n, maxValue=max_value, salt=salt)
    got = op.transform(pa.array(lists, list_type(pa.int64()))).to_pylist()
    want = reference(lists, n, max_value, salt)
    assert_lists(got, want, what="ngram")
    for lst, g in zip(lists, got):
        if lst is not None:
            assert len(g) == max(len(lst) - n + 1, 0)
            assert all(0 <= h < max_value for h in g)


@PROPERTY
@given(lists=id_lists, n=ns, max_value=max_values, data=st.data())
def test_sliced_column_and_determinism(lists, n, max_value, data):
    array = pa.array(lists, pa.list_(pa.int64()))
    first = make("ngram", n=n, maxValue=max_value).transform(array).to_pylist()
    assert make("ngram", n=n, maxValue=max_value).transform(array).to_pylist() == first
    start = data.draw(st.integers(0, len(lists)))
    stop = data.draw(st.integers(start, len(lists)))
    got = make("ngram", n=n, maxValue=max_value).transform(array.slice(start, stop - start))
    assert got.to_pylist() == first[start:stop]


@PROPERTY
@given(lists=list_column(st.integers(0, 2), max_len=10, null_lists=False), n=st.integers(1, 3))
def test_equal_ngrams_get_equal_hashes(lists, n):
    got = make("ngram", n=n, maxValue=2**63 - 1).transform(pa.array(lists, pa.list_(pa.int64()))).to_pylist()
    seen: dict[tuple, int] = {}
    for lst, hashes in zip(lists, got):
        for i, h in enumerate(hashes):
            gram = tuple(lst[i : i + n])
            assert seen.setdefault(gram, h) == h, gram
    # and (with 63-bit hashes) different n-grams get different ones
    assert len(set(seen.values())) == len(seen)


def test_examples():
    op = make("ngram", n=2, maxValue=1000)
    got = op.transform(pa.array([[1, 2, 3, 4], [5], [], None, [1, 2]], pa.list_(pa.int64())))
    h = [ref.ngram_hash(g, 0, 1000) for g in ([1, 2], [2, 3], [3, 4])]
    assert got.to_pylist() == [h, [], [], None, h[:1]]
    assert make("ngram", n=1, maxValue=2**63 - 1).transform(
        pa.array([[0, 1, -1, 2**62]], pa.list_(pa.int64()))
    ).to_pylist() == [[0, 6238072747940578789, 3805636230021627260, 1360429390938723525]]
    assert op.transform(pa.array([], pa.list_(pa.int64()))).to_pylist() == []
    assert op.transform(pa.array([None], pa.list_(pa.int64()))).to_pylist() == [None]
    with pytest.raises(TypeError):
        op.transform(pa.array([["a"]]))


@pytest.mark.parametrize(
    "params",
    [
        {"n": 2},
        {"maxValue": 10},
        {"n": 0, "maxValue": 10},
        {"n": 17, "maxValue": 10},
        {"n": 2, "maxValue": 0},
        {"n": 2, "maxValue": 2**63},
        {"n": 2, "maxValue": 10, "salt": -1},
        {"n": 2, "maxValue": 10, "width": 3},
    ],
)
def test_bad_params_rejected(params):
    with pytest.raises(ValidationError):
        make("ngram", **params)
