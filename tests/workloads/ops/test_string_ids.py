"""String IDs: sigrid_hash of strings (FNV-1a 64 of the UTF-8 / raw bytes, then the salted mix and
the reduction of int IDs; null or empty -> null) and to_int (decimal strings -> int64; anything
else -> null), exact against the plain-Python references of ``_reference_ids`` on plain,
dictionary-encoded (both null layouts), sliced and list columns, with the C kernels and without."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recprep.workloads.ops import strings

from . import _reference_ids as ref
from ._support import PROPERTY, check_elementwise, check_list_elementwise, make, nullable

#: property tests that take the ``kernels`` fixture (it sets the same thing for every example)
KERNEL_PROPERTY = settings(
    PROPERTY, suppress_health_check=[*PROPERTY.suppress_health_check, HealthCheck.function_scoped_fixture]
)

STRING_TYPES = [pa.string(), pa.large_string()]
BINARY_TYPES = [pa.binary(), pa.large_binary()]

salts = st.one_of(st.integers(0, 100), st.integers(0, 2**64 - 1))
max_values = st.one_of(st.integers(1, 1000), st.just(1_000_000), st.integers(1, 2**63 - 1))
texts = st.one_of(
    st.text(max_size=12),
    st.text("0123456789abcdef", min_size=17, max_size=40),  # wider than 64 bits: just a string
    st.sampled_from(["", "a", "0", "00", "é", "\x00", "196", "-1"]),
)


@pytest.fixture(params=["kernel", "numpy"])
def kernels(request, monkeypatch):
    """Every test runs with the C kernels and with the numpy/pyarrow fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(strings, "_fnv_kernel", None)
        monkeypatch.setattr(strings, "_decimal_kernel", None)
    elif strings._fnv_kernel is None:
        pytest.skip("the C extension is not built")
    return request.param


@st.composite
def string_column(draw, max_size: int = 30):
    if draw(st.booleans()):
        return draw(st.sampled_from(STRING_TYPES)), draw(st.lists(nullable(texts), max_size=max_size))
    return draw(st.sampled_from(BINARY_TYPES)), draw(
        st.lists(nullable(st.binary(max_size=12)), max_size=max_size)
    )


# -- FNV-1a 64 ------------------------------------------------------------------------------------
def test_fnv1a64_is_the_specified_hash():
    # the FNV specification's test vectors (draft-eastlake-fnv): "", "a", "foobar"
    for data, want in [
        (b"", 0xCBF29CE484222325),
        (b"a", 0xAF63DC4C8601EC8C),
        (b"foobar", 0x85944171F73967E8),
    ]:
        assert strings.fnv1a64(data) == ref.fnv1a64(data) == want


@PROPERTY
@given(column=string_column())
def test_hash_strings_kernel_equals_numpy_equals_reference(column):
    arrow_type, values = column
    array = pa.array(values, type=arrow_type)
    want = [ref.key(v) for v in values]
    got = []
    for kernel in (strings._fnv_kernel, None):
        saved = strings._fnv_kernel
        strings._fnv_kernel = kernel
        try:
            keys, valid = strings.hash_strings(array)
        finally:
            strings._fnv_kernel = saved
        valid = np.ones(len(values), bool) if valid is None else valid
        got.append([int(k) if ok else None for k, ok in zip(keys, valid)])
    assert got[0] == got[1] == want


# -- sigrid_hash on strings -----------------------------------------------------------------------
@KERNEL_PROPERTY
@given(column=string_column(), salt=salts, max_value=max_values)
def test_sigrid_hash_of_strings_matches_reference(kernels, column, salt, max_value):
    arrow_type, values = column
    op = make("sigrid_hash", salt=salt, maxValue=max_value)
    check_elementwise(
        op, values, arrow_type, lambda v: ref.sigrid_hash(v, salt, max_value), out_type=pa.int64()
    )


@KERNEL_PROPERTY
@given(lists=st.lists(nullable(st.lists(nullable(texts), max_size=6)), max_size=10), salt=salts)
def test_sigrid_hash_of_string_lists(kernels, lists, salt):
    op = make("sigrid_hash", salt=salt, maxValue=1000)
    check_list_elementwise(
        op, lists, pa.string(), lambda v: ref.sigrid_hash(v, salt, 1000), out_value_type=pa.int64()
    )
    # lists of dictionary-encoded strings: hashed on the dictionary, offsets and null lists kept
    array = pa.array(lists, pa.list_(pa.string()))
    encoded = pa.ListArray.from_arrays(
        array.offsets, array.values.dictionary_encode(), mask=array.is_null() if array.null_count else None
    )
    want = [None if lst is None else [ref.sigrid_hash(v, salt, 1000) for v in lst] for lst in lists]
    assert _decoded_lists(op.transform(encoded)) == want


def _decoded_lists(array):
    values = array.values
    if isinstance(values, pa.DictionaryArray):
        values = values.dictionary.take(values.indices)
    flat = values.to_pylist()
    offsets = array.offsets.to_pylist()
    return [None if not array[i].is_valid else flat[offsets[i] : offsets[i + 1]] for i in range(len(array))]


# Pinned outputs (computed with the plain-Python reference): a change of FNV-1a 64, the mix or the
# reduction changes every hashed string ID of every trained model, so it must fail here.
PINNED_STRINGS = ["a", "196", "68fd1e64", "0123456789abcdef0123456789abcdef", "é"]
PINNED = {
    (0, 2**63 - 1): [
        198367012849983736,
        8361138021448012147,
        1469794369386453850,
        5920963041630715914,
        2536656207217688990,
    ],
    (7, 1_000_000): [107602, 669259, 499815, 227948, 671733],
}


@pytest.mark.parametrize("salt, max_value", sorted(PINNED))
def test_pinned_string_hashes(kernels, salt, max_value):
    op = make("sigrid_hash", salt=salt, maxValue=max_value)
    want = PINNED[salt, max_value]
    assert op.transform(pa.array(PINNED_STRINGS)).to_pylist() == want
    assert op.transform(pa.array([s.encode() for s in PINNED_STRINGS], pa.binary())).to_pylist() == want
    assert [ref.sigrid_hash(s, salt, max_value) for s in PINNED_STRINGS] == want


def test_strings_null_and_empty_are_null_and_dictionary_hashes_once(kernels):
    op = make("sigrid_hash", salt=3, maxValue=97)
    got = op.transform(pa.array(["x", "", None, "x"]))
    assert got.to_pylist() == [ref.sigrid_hash("x", 3, 97), None, None, ref.sigrid_hash("x", 3, 97)]
    encoded = pa.array(["x", "", None, "x", "y"] * 3).dictionary_encode()
    out = op.transform(encoded)
    assert isinstance(out, pa.DictionaryArray) and len(out.dictionary) == len(encoded.dictionary) + 1
    assert out.dictionary.type == pa.int64()
    assert op.transform(pa.array([], pa.string())).to_pylist() == []
    assert op.transform(pa.array([None, None], pa.string())).to_pylist() == [None, None]


def test_an_int_id_and_its_decimal_string_differ_but_to_int_first_agrees():
    """Strings are hashed as strings (FNV-1a 64 first); to_int then sigrid_hash gives the int's hash."""
    op = make("sigrid_hash", maxValue=1000)
    as_string = op.transform(pa.array(["196"])).to_pylist()
    as_int = op.transform(make("to_int").transform(pa.array(["196"]))).to_pylist()
    assert as_string == [ref.sigrid_hash("196", 0, 1000)]
    assert as_int == op.transform(pa.array([196])).to_pylist() == [ref.sigrid_hash(196, 0, 1000)]
    assert as_int != as_string


# -- to_int ---------------------------------------------------------------------------------------
decimal_texts = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(-(2**70), 2**70).map(str),  # out of range too
    st.tuples(
        st.sampled_from(["", "+", "-"]), st.text("0", max_size=25), st.text("0123456789", max_size=21)
    ).map("".join),
    st.sampled_from(
        ["", "+", "-", "0", "-0", "+0", "0007", " 1", "1 ", "1.5", "1e3", "0x1f", "١٢", "--1", "9" * 19]
    ),
    st.sampled_from(
        ["9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809"]
    ),
    st.text(max_size=8),
)


@KERNEL_PROPERTY
@given(values=st.lists(nullable(decimal_texts), max_size=30), arrow_type=st.sampled_from(STRING_TYPES))
def test_to_int_matches_reference(kernels, values, arrow_type):
    check_elementwise(make("to_int"), values, arrow_type, ref.to_int, out_type=pa.int64())


@KERNEL_PROPERTY
@given(values=st.lists(nullable(decimal_texts.map(lambda s: s.encode())), max_size=20))
def test_to_int_on_binary(kernels, values):
    check_elementwise(make("to_int"), values, pa.binary(), ref.to_int, out_type=pa.int64())


def test_to_int_examples(kernels):
    got = make("to_int").transform(
        pa.array(["196", "-1", "0007", "", None, "x", "99999999999999999999", "+5"])
    )
    assert got.to_pylist() == [196, -1, 7, None, None, None, None, 5]
    with pytest.raises(TypeError):
        make("to_int").transform(pa.array([1, 2]))


def test_to_int_nulls_are_counted_by_the_plan():
    from recprep.spec import load_job_dict
    from recprep.workloads.plan import compile_plan
    from recprep.workloads.sources import Roles

    job = load_job_dict(
        {
            "apiVersion": "recprep.io/v1alpha1",
            "kind": "PreprocessJob",
            "metadata": {"name": "ids"},
            "spec": {
                "source": {"uri": "synthetic://criteo?rows=10"},
                "transforms": [{"op": "to_int", "columns": "sparse"}],
                "output": {"uri": "unused"},
            },
        }
    )
    table = pa.table({"label": [0, 1, 0], "user": pa.array(["7", "x", None]).dictionary_encode()})
    plan = compile_plan(job, table.schema, Roles("label", (), ("user",)))
    nulled: dict = {}
    out = plan.apply(table, {}, nulled=nulled)
    assert out["user"].to_pylist() == [7, None, None]
    assert nulled == {(0, "user"): [1, 3]}
