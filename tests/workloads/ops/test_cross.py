"""cross: a row's cross is ngram's salted fold of its values' 64-bit keys (an int's bit pattern,
a string's FNV-1a 64) modulo maxValue; a null or empty string in any input -> null. Exact against
the plain-Python reference on any mix of int and string columns, plain or dictionary-encoded,
sliced; and through the plan (several columns at once, one new column, nulls reported)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from recprep.errors import SpecError
from recprep.spec import load_job_dict
from recprep.workloads.ops import cross as cross_module
from recprep.workloads.ops import strings
from recprep.workloads.plan import compile_plan
from recprep.workloads.sources import Roles

from . import _reference_ids as ref
from ._support import INT_TYPES, PROPERTY, ints_in, make, nullable

salts = st.one_of(st.integers(0, 100), st.integers(0, 2**64 - 1))
max_values = st.one_of(st.integers(1, 1000), st.integers(1, 2**63 - 1))
LAYOUTS = ["plain", "dict-mask", "dict-encode"]


@st.composite
def column(draw, n: int):
    """(arrow type, n nullable values, layout) of an int or string column."""
    kind = draw(st.sampled_from(["int", "string", "binary"]))
    if kind == "int":
        t = draw(st.sampled_from([pa.int64(), pa.int32(), pa.uint8(), pa.uint64()]))
        lo, hi = INT_TYPES[t]
        values = draw(st.lists(nullable(ints_in(lo, hi)), min_size=n, max_size=n))
    elif kind == "string":
        t = draw(st.sampled_from([pa.string(), pa.large_string()]))
        # few distinct values, so dictionaries repeat
        values = draw(
            st.lists(nullable(st.sampled_from(["", "a", "b", "é", "196", "x" * 20])), min_size=n, max_size=n)
        )
    else:
        t = pa.binary()
        values = draw(st.lists(nullable(st.binary(max_size=4)), min_size=n, max_size=n))
    return t, values, draw(st.sampled_from(LAYOUTS))


def build(t, values, layout) -> pa.Array:
    array = pa.array(values, type=t)
    if layout == "dict-mask":
        return array.dictionary_encode()
    if layout == "dict-encode":
        return pc.dictionary_encode(array, null_encoding="encode")
    return array


@st.composite
def columns(draw):
    n = draw(st.integers(0, 25))
    return [draw(column(n)) for _ in range(draw(st.integers(2, 4)))]


@PROPERTY
@given(cols=columns(), salt=salts, max_value=max_values, use_kernel=st.booleans())
def test_matches_reference(cols, salt, max_value, use_kernel):
    op = make("cross", output="x", salt=salt, maxValue=max_value)
    rows = list(zip(*[values for _, values, _ in cols]))
    want = [ref.cross(row, salt, max_value) for row in rows]
    arrays = [build(*c) for c in cols]
    saved = strings._fnv_kernel, cross_module._fold
    if not use_kernel:  # the numpy fallbacks
        strings._fnv_kernel = cross_module._fold = None
    try:
        got = op.transform_many(arrays)
        sliced = op.transform_many([a.slice(1, max(len(a) - 2, 0)) for a in arrays])
    finally:
        strings._fnv_kernel, cross_module._fold = saved
    assert got.type == pa.int64() and got.to_pylist() == want
    assert sliced.to_pylist() == want[1:-1]
    made = op.nulls_made(arrays, got)
    assert made == sum(
        1 for row, w in zip(rows, want) if w is None and all(v is not None for v in row)
    )  # empty strings


def test_pinned_and_equal_to_the_2gram_of_int_ids():
    op = make("cross", output="x", salt=5, maxValue=2**63 - 1)
    got = op.transform_many([pa.array([1, -7, None]), pa.array(["a", "b", "c"])]).to_pylist()
    assert got == [ref.cross((1, "a"), 5, 2**63 - 1), ref.cross((-7, "b"), 5, 2**63 - 1), None]
    assert got[:2] == [5111144702903633740, 8844807878119137881]  # pinned: never change
    # for int IDs a cross of (a, b) is the 2-gram of [a, b]
    pairs = make("ngram", n=2, salt=5, maxValue=1000).transform(pa.array([[3, 4]])).to_pylist()
    cross = make("cross", output="x", salt=5, maxValue=1000).transform_many([pa.array([3]), pa.array([4])])
    assert pairs == [cross.to_pylist()]
    # order matters
    ab = make("cross", output="x", maxValue=10**9).transform_many([pa.array([3]), pa.array([4])])
    ba = make("cross", output="x", maxValue=10**9).transform_many([pa.array([4]), pa.array([3])])
    assert ab.to_pylist() != ba.to_pylist()


def test_bad_inputs_and_params():
    op = make("cross", output="x", maxValue=10)
    with pytest.raises(ValueError, match="at least 2"):
        op.transform_many([pa.array([1])])
    with pytest.raises(ValueError, match="same length"):
        op.transform_many([pa.array([1]), pa.array([1, 2])])
    with pytest.raises(TypeError):
        op.transform_many([pa.array([1.5]), pa.array([1])])
    with pytest.raises(TypeError, match="transform_many"):
        op.transform(pa.array([1]))
    bad = [
        {"maxValue": 10},
        {"output": "", "maxValue": 10},
        {"output": "{column}_x", "maxValue": 10},
        {"output": "x"},
        {"output": "x", "maxValue": 0},
        {"output": "x", "maxValue": 10, "salt": -1},
        {"output": "x", "maxValue": 10, "seed": 1},
    ]
    for params in bad:
        with pytest.raises(ValidationError):
            make("cross", **params)


def job(transforms) -> object:
    return load_job_dict(
        {
            "apiVersion": "recprep.io/v1alpha1",
            "kind": "PreprocessJob",
            "metadata": {"name": "cross"},
            "spec": {
                "source": {"uri": "synthetic://criteo?rows=10"},
                "transforms": transforms,
                "output": {"uri": "unused"},
            },
        }
    )


TABLE = pa.table(
    {
        "label": [0, 1, 0, 1],
        "user": pa.array(["u1", "u2", None, "u1"]).dictionary_encode(),
        "item": pa.array([10, 11, 12, 13], pa.int64()),
        "cat": pa.array(["a", "", "b", "c"]),
        "price": [1.0, 2.0, 3.0, 4.0],
    }
)
ROLES = Roles("label", ("price",), ("user", "item", "cat"))


def test_the_plan_gives_a_cross_all_its_columns_and_adds_one_sparse_feature():
    plan = compile_plan(
        job(
            [
                {
                    "op": "cross",
                    "columns": ["item", "user"],
                    "output": "user_item",
                    "maxValue": 1000,
                    "salt": 1,
                },
                {"op": "cross", "columns": "sparse", "output": "all3", "maxValue": 50},
                {"op": "sigrid_hash", "columns": "sparse", "maxValue": 100},
            ]
        ),
        TABLE.schema,
        ROLES,
    )
    assert plan.steps[0].inputs == ["user", "item"] and plan.steps[0].outputs == ["user_item"]
    assert plan.steps[1].inputs == ["user", "item", "cat"] and plan.steps[1].outputs == ["all3"]
    assert plan.roles.sparse[-2:] == ("user_item", "all3") and plan.schema_kinds["user_item"] == "int"
    nulled: dict = {}
    out = plan.apply(TABLE, {}, nulled=nulled)
    users, items, cats = TABLE["user"].to_pylist(), TABLE["item"].to_pylist(), TABLE["cat"].to_pylist()
    # schema order: user before item, whatever the order of the list
    assert out["user_item"].to_pylist() == [ref.cross((u, i), 1, 1000) for u, i in zip(users, items)]
    assert out["all3"].to_pylist() == [ref.cross(r, 0, 50) for r in zip(users, items, cats)]
    assert out["user_item"].to_pylist()[2] is None and out["all3"].to_pylist()[1] is None
    # the inputs are hashed afterwards by sigrid_hash; the crosses are new columns
    assert out["item"].to_pylist() == [ref.sigrid_hash(i, 0, 100) for i in items]
    # made null: rows whose inputs are all valid (the empty string "" of cat)
    assert nulled[(0, "user_item")] == [0, 4] and nulled[(1, "all3")] == [1, 4]


def test_the_plan_refuses_a_cross_of_fewer_than_two_columns_or_of_floats_or_an_existing_name():
    with pytest.raises(SpecError, match=r"spec\.transforms\[0\]\.columns: op cross combines 2 or more"):
        compile_plan(
            job([{"op": "cross", "columns": ["item"], "output": "c", "maxValue": 9}]), TABLE.schema, ROLES
        )
    with pytest.raises(SpecError, match=r"cannot take column 'price' of kind float"):
        compile_plan(
            job([{"op": "cross", "columns": ["item", "price"], "output": "c", "maxValue": 9}]),
            TABLE.schema,
            ROLES,
        )
    with pytest.raises(SpecError, match=r"\.output: column 'cat' already exists"):
        compile_plan(
            job([{"op": "cross", "columns": ["item", "user"], "output": "cat", "maxValue": 9}]),
            TABLE.schema,
            ROLES,
        )
    with pytest.raises(SpecError, match=r"spec\.transforms\[0\]\.output: .*plain name"):
        job([{"op": "cross", "columns": "sparse", "output": "{column}_x", "maxValue": 9}])


def test_multi_chunk_columns_are_crossed_whole():
    table = pa.concat_tables([TABLE.slice(0, 2), TABLE.slice(2)])
    assert table["user"].num_chunks == 2
    plan = compile_plan(
        job([{"op": "cross", "columns": ["user", "cat"], "output": "uc", "maxValue": 77}]),
        table.schema,
        ROLES,
    )
    out = plan.apply(table, {})
    assert out["uc"].to_pylist() == [
        ref.cross(r, 0, 77) for r in zip(TABLE["user"].to_pylist(), TABLE["cat"].to_pylist())
    ]
