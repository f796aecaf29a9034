"""is_in: 1 where a value is one of ``values``, else 0 (null -> 0), exact against plain Python for
plain and dictionary-encoded strings and for integers; and a label made by it (Taobao's
behaviour type) is the job's label."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from recprep.errors import SpecError
from recprep.spec import load_job_dict
from recprep.workloads.plan import compile_plan
from recprep.workloads.sources import Roles

from ._support import PROPERTY, dictionary_layouts, make

WORDS = st.sampled_from(["pv", "cart", "fav", "buy", "", "PV"])


def reference(values: list, wanted: list) -> list[int]:
    return [1 if v is not None and v in wanted else 0 for v in values]


@PROPERTY
@given(st.lists(st.none() | WORDS, max_size=40), st.lists(WORDS, min_size=1, max_size=3))
def test_strings_plain_and_dictionary_match_the_reference(values, wanted):
    op = make("is_in", values=wanted)
    array = pa.array(values, pa.string())
    for layout in [array, *dictionary_layouts(array).values()]:
        got = op.transform(layout)
        if isinstance(got, pa.DictionaryArray):
            got = got.dictionary.take(got.indices)
        assert got.type == pa.int64()
        assert got.to_pylist() == reference(values, wanted)


@PROPERTY
@given(st.lists(st.none() | st.integers(-3, 6), max_size=40), st.lists(st.integers(-3, 6), min_size=1))
def test_integers_match_the_reference(values, wanted):
    got = make("is_in", values=wanted).transform(pa.array(values, pa.int64()))
    assert got.to_pylist() == reference(values, wanted)


def test_values_of_the_other_kind_are_refused_and_an_empty_list_is_invalid():
    with pytest.raises(TypeError, match="give values of the same kind"):
        make("is_in", values=[4, 5]).transform(pa.array(["4", "5"]))
    with pytest.raises(ValidationError):
        make("is_in", values=[])


def test_a_label_made_by_is_in_is_the_jobs_label():
    doc = {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "taobao"},
        "spec": {
            "source": {"uri": "x.csv", "format": "csv", "label": "engaged", "sparse": ["user_id"]},
            "transforms": [
                {"op": "is_in", "columns": ["behavior_type"], "values": ["buy"], "output": "engaged"},
                {"op": "bucketize", "columns": ["price"], "borders": [1, 10]},
            ],
            "output": {"uri": "/tmp/out"},
        },
    }
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("behavior_type", pa.string()),
            ("price", pa.float64()),
            ("ts", pa.string()),
        ]
    )
    plan = compile_plan(load_job_dict(doc), schema, Roles(None, ("price",), ("user_id",)))
    assert plan.roles.label == "engaged"
    # price, bucketized in place, is an ID now: a sparse feature; ts and the raw type are left out
    assert plan.roles.dense == () and plan.roles.sparse == ("user_id", "price")
    assert plan.columns == ["user_id", "price", "engaged"] and plan.dropped == ["behavior_type", "ts"]


def _plan_with(transform: dict, schema: pa.Schema):
    doc = {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "kinds"},
        "spec": {
            "source": {"uri": "x.parquet", "label": None, "sparse": ["id"]},
            "transforms": [transform],
            "output": {"uri": "/tmp/out"},
        },
    }
    return compile_plan(load_job_dict(doc), schema, Roles(None, (), ("id",)))


@pytest.mark.parametrize(
    "values, column_type, kind",
    [(["buy"], pa.int64(), "int"), ([1, 2], pa.string(), "string"), ([1], pa.large_string(), "string")],
)
def test_values_of_the_other_kind_are_an_invalid_job_before_any_data_is_read(values, column_type, kind):
    # strings for an integer column (or integers for a string one) used to pass the plan and
    # fail the first shard at run time
    transform = {"op": "is_in", "columns": ["id"], "values": values, "output": "flag"}
    with pytest.raises(
        SpecError, match=rf"spec\.transforms\[0\]: op is_in cannot take column 'id' of kind {kind}"
    ):
        _plan_with(transform, pa.schema([("id", column_type)]))


def test_booleans_and_values_beyond_the_column_types_range():
    op = make("is_in", values=[1])
    assert op.transform(pa.array([True, None, False])).to_pylist() == [1, 0, 0]
    # a value the column's type cannot hold matches no row (it used to fail the shard)
    op = make("is_in", values=[-1, 2**70, 3])
    assert op.transform(pa.array([3, None, 255], pa.uint8())).to_pylist() == [1, 0, 0]
    assert op.transform(pa.array([3, None, -1, 7]).dictionary_encode()).to_pylist() == [1, 0, 1, 0]
