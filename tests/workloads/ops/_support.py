"""Shared helpers for the op tests: building ops, the three column layouts, comparisons and
hypothesis strategies. Everything here is plain Python so the references stay independent of the
vectorised op code."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from recprep.workloads.ops import REGISTRY

#: the budget of every property test (the whole directory must stay fast on 2 shared cores)
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: integer Arrow types with their value ranges
INT_TYPES = {
    pa.int8(): (-(2**7), 2**7 - 1),
    pa.int16(): (-(2**15), 2**15 - 1),
    pa.int32(): (-(2**31), 2**31 - 1),
    pa.int64(): (INT64_MIN, INT64_MAX),
    pa.uint8(): (0, 2**8 - 1),
    pa.uint32(): (0, 2**32 - 1),
    pa.uint64(): (0, 2**64 - 1),
}


def make(name: str, **params: Any):
    """An op built the way the spec builds it: ``REGISTRY[name](Params.model_validate(params))``."""
    cls = REGISTRY[name]
    return cls(cls.Params.model_validate(params))


# -- layouts ------------------------------------------------------------------------------------
def plain_values(array: pa.Array) -> list:
    """Python values of any (plain or dictionary-encoded) array."""
    if isinstance(array, pa.DictionaryArray):
        array = array.dictionary.take(array.indices)
    return array.to_pylist()


def dictionary_layouts(array: pa.Array) -> dict[str, pa.DictionaryArray]:
    """The array dictionary-encoded with nulls as null indices and as a null dictionary entry."""
    out = {
        "dict-mask": array.dictionary_encode(),
        "dict-encode": pc.dictionary_encode(array, null_encoding="encode"),
    }
    for layout in out.values():
        assert plain_values(layout) == array.to_pylist()
    return out


def value_type_of(array: pa.Array) -> pa.DataType:
    t = array.type
    return t.value_type if pa.types.is_dictionary(t) else t


# -- comparisons --------------------------------------------------------------------------------
def same_float(got, want, rel_tol: float = 1e-12, abs_tol: float = 0.0) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want):
        return got == want
    return math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol)


def assert_values(got: list, want: list, eq: Callable[[Any, Any], bool] | None = None, what=""):
    assert len(got) == len(want), f"{what}: length {len(got)} != {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        ok = (g == w and (g is None) == (w is None)) if eq is None else eq(g, w)
        assert ok, f"{what}: row {i}: got {g!r}, want {w!r}"


def assert_lists(got: list, want: list, eq=None, what=""):
    assert len(got) == len(want), f"{what}: length {len(got)} != {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None, f"{what}: row {i}: null list became {g!r}"
            continue
        assert g is not None, f"{what}: row {i}: list became null, want {w!r}"
        assert_values(g, w, eq, what=f"{what} row {i}")


def check_elementwise(
    op,
    values: list,
    arrow_type: pa.DataType,
    reference: Callable[[Any], Any],
    eq=None,
    out_type: pa.DataType | None = None,
    state=None,
) -> None:
    """``op.transform`` equals the per-value ``reference`` on the plain array, both dictionary
    layouts and a slice of the plain array."""
    array = pa.array(values, type=arrow_type)
    want = [reference(v) for v in values]
    got = op.transform(array, state)
    assert not isinstance(got, pa.DictionaryArray)
    assert len(got) == len(array)
    if out_type is not None:
        assert got.type == out_type, f"plain: type {got.type} != {out_type}"
    assert_values(got.to_pylist(), want, eq, what="plain")
    for name, layout in dictionary_layouts(array).items():
        got = op.transform(layout, state)
        if out_type is not None:
            assert value_type_of(got) == out_type, f"{name}: type {got.type} != {out_type}"
        assert_values(plain_values(got), want, eq, what=name)
    if len(values) > 2:  # a slice (non-zero array offset) of the plain column
        got = op.transform(array.slice(1, len(values) - 2), state)
        assert_values(got.to_pylist(), want[1:-1], eq, what="sliced")


def check_list_elementwise(
    op,
    lists: list,
    value_type: pa.DataType,
    reference: Callable[[Any], Any],
    eq=None,
    out_value_type: pa.DataType | None = None,
    state=None,
) -> None:
    """On list columns: each element goes through ``reference``; null lists stay null. Checked on
    list and large_list arrays, and on a slice (whose offsets do not start at 0)."""
    want = [None if lst is None else [reference(v) for v in lst] for lst in lists]
    for list_type in (pa.list_, pa.large_list):
        array = pa.array(lists, type=list_type(value_type))
        got = op.transform(array, state)
        assert pa.types.is_list(got.type) or pa.types.is_large_list(got.type)
        if out_value_type is not None:
            assert got.type.value_type == out_value_type
        assert_lists(got.to_pylist(), want, eq, what=str(array.type))
    if len(lists) > 2:
        sliced = pa.array(lists, type=pa.list_(value_type)).slice(1, len(lists) - 2)
        assert_lists(op.transform(sliced, state).to_pylist(), want[1:-1], eq, what="sliced list")


# -- strategies ---------------------------------------------------------------------------------
def nullable(strategy, null_weight: int = 1):
    return st.one_of(*([st.none()] * null_weight), strategy)


def ints_in(lo: int, hi: int):
    """Integers in [lo, hi], biased towards small values and the extremes."""
    small = st.integers(max(lo, -1000), min(hi, 1000))
    return st.one_of(small, st.integers(lo, hi), st.sampled_from([lo, hi, lo + 1, hi - 1]))


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
floats_with_inf = st.floats(allow_nan=False, allow_infinity=True)
int64s = ints_in(INT64_MIN, INT64_MAX)


@st.composite
def int_column(draw, max_size: int = 40, types=None):
    """(arrow integer type, list of nullable values in its range)."""
    t = draw(st.sampled_from(list(types or INT_TYPES)))
    lo, hi = INT_TYPES[t]
    return t, draw(st.lists(nullable(ints_in(lo, hi)), max_size=max_size))


@st.composite
def float_column(draw, elements=floats_with_inf, max_size: int = 40):
    return pa.float64(), draw(st.lists(nullable(elements), max_size=max_size))


def numeric_column(int_types=None, float_elements=floats_with_inf):
    return st.one_of(int_column(types=int_types), float_column(elements=float_elements))


def list_column(elements, max_lists: int = 12, max_len: int = 8, null_lists: bool = True):
    one = st.lists(elements, max_size=max_len)
    return st.lists(nullable(one) if null_lists else one, max_size=max_lists)
