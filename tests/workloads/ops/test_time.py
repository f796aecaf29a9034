"""time: hour (0-23), weekday (0-6, Monday 0), day of the month (1-31) and bucketized age of a
timestamp, in UTC; unix seconds / milliseconds (ints or decimal strings) or a strptime pattern
(canonical round trip); unparseable or outside years 1-9999 -> null. Exact against Python's
datetime on plain, dictionary-encoded and sliced columns."""

from __future__ import annotations

import bisect
import re
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from recprep.errors import SpecError
from recprep.spec import TransformSpec, validate_params
from recprep.workloads.ops.time import fixed_width

from ._support import PROPERTY, check_elementwise, make, nullable

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PARTS = ["hour", "weekday", "day", "age"]
UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


def reference(part, fmt="unix", reference=None, unit="days", borders=None):
    """The feature of one value, with Python's datetime (None when it is not a time)."""
    if isinstance(reference, str):
        ref_dt = datetime.fromisoformat(reference)
        ref_dt = ref_dt if ref_dt.tzinfo else ref_dt.replace(tzinfo=UTC)
        ref_ms = (ref_dt - EPOCH) // timedelta(milliseconds=1)
    elif reference is not None:
        ref_ms = reference * 1000

    def when(value):
        """(datetime, unix milliseconds) or None."""
        if value is None:
            return None
        if fmt in ("unix", "unix_ms"):
            if isinstance(value, str | bytes):
                text = value.decode() if isinstance(value, bytes) else value
                if not re.fullmatch(r"[+-]?[0-9]+", text):
                    return None
                value = int(text)
            ms = value * 1000 if fmt == "unix" else value
            try:
                dt = EPOCH + timedelta(milliseconds=ms)
            except OverflowError:
                return None
            return dt, ms
        if isinstance(value, int):
            width = fixed_width(fmt)
            value = str(value).zfill(width) if width and value >= 0 else str(value)
        try:
            dt = datetime.strptime(value, fmt)
        except ValueError:
            return None
        if dt.strftime(fmt) != value:  # the canonical text only
            return None
        dt = dt.replace(tzinfo=UTC)
        return dt, (dt - EPOCH) // timedelta(milliseconds=1)

    def feature(value):
        got = when(value)
        if got is None:
            return None
        dt, ms = got
        if part == "hour":
            return dt.hour
        if part == "weekday":
            return dt.weekday()
        if part == "day":
            return dt.day
        return bisect.bisect_left(borders, (ms - ref_ms) / (UNITS[unit] * 1000))

    return feature


def params(part, **extra):
    if part == "age":
        extra.setdefault("reference", "2017-11-25T00:00:00")
        extra.setdefault("borders", [-1, 0, 1, 2, 7, 30])
    return {"part": part, **extra}


def age_args(p):
    return {k: p[k] for k in ("reference", "unit", "borders") if k in p}


DAY = 86400
unix_seconds = st.one_of(
    st.integers(1_500_000_000, 1_520_000_000),  # Taobao's weeks
    st.integers(-(10**10), 10**10),
    st.integers(-62135596800 - 5, -62135596800 + 5),  # year 1 starts
    st.integers(253402300800 - 5, 253402300800 + 5),  # year 9999 ends
    st.integers(-(2**63), 2**63 - 1),
)


@PROPERTY
@given(
    values=st.lists(nullable(unix_seconds), max_size=30),
    part=st.sampled_from(PARTS),
    unit=st.sampled_from(list(UNITS)),
    as_text=st.booleans(),
)
def test_unix_seconds(values, part, unit, as_text):
    p = params(part, **({"unit": unit} if part == "age" else {}))
    op = make("time", **p)
    ref = reference(part, "unix", **age_args(p))
    if as_text:
        values = [None if v is None else str(v) for v in values]
    check_elementwise(op, values, pa.string() if as_text else pa.int64(), ref, out_type=pa.int64())


@PROPERTY
@given(values=st.lists(nullable(st.integers(-(2**63), 2**63 - 1)), max_size=30), part=st.sampled_from(PARTS))
def test_unix_milliseconds(values, part):
    p = params(part, format="unix_ms", **({"reference": 1511568000} if part == "age" else {}))
    op = make("time", **p)
    check_elementwise(op, values, pa.int64(), reference(part, "unix_ms", **age_args(p)), out_type=pa.int64())


hours = st.datetimes(datetime(1969, 1, 1), datetime(2068, 12, 31, 23)).map(
    lambda d: d.replace(minute=0, second=0, microsecond=0)
)
avazu_text = st.one_of(
    hours.map(lambda d: d.strftime("%y%m%d%H")),
    st.text("0123456789", max_size=10),  # Feb 29 of a common year, month 13, short or long ...
    st.sampled_from(["14102100", "14022900", "16022900", "1410210", "141021001", "14102124", "", "x"]),
    st.text(max_size=9),
)


@PROPERTY
@given(values=st.lists(nullable(avazu_text), max_size=30), part=st.sampled_from(PARTS))
def test_avazu_hour_strings(values, part):
    p = params(
        part, format="%y%m%d%H", **({"reference": "2014-10-21", "unit": "hours"} if part == "age" else {})
    )
    check_elementwise(make("time", **p), values, pa.string(), reference(part, "%y%m%d%H", **age_args(p)))


@PROPERTY
@given(
    values=st.lists(
        nullable(st.one_of(hours.map(lambda d: int(d.strftime("%y%m%d%H"))), st.integers())), max_size=20
    ),
    part=st.sampled_from(["hour", "weekday", "day"]),
)
def test_avazu_hour_ints_are_zero_padded_to_the_pattern(values, part):
    values = [v if v is None or -(2**63) <= v < 2**63 else v % 2**63 for v in values]
    check_elementwise(
        make("time", part=part, format="%y%m%d%H"), values, pa.int64(), reference(part, "%y%m%d%H")
    )


@PROPERTY
@given(
    values=st.lists(
        nullable(
            st.one_of(
                st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)).map(
                    lambda d: d.strftime("%Y-%m-%d %H:%M:%S")
                ),
                st.sampled_from(["2017-02-29 00:00:00", "2017-11-25T10:00:00", "2017-11-25 10:00"]),
            )
        ),
        max_size=20,
    ),
    part=st.sampled_from(PARTS),
)
def test_a_datetime_pattern(values, part):
    fmt = "%Y-%m-%d %H:%M:%S"
    p = params(part, format=fmt, **({"unit": "minutes"} if part == "age" else {}))
    check_elementwise(make("time", **p), values, pa.string(), reference(part, fmt, **age_args(p)))


def test_examples():
    # 2017-11-25 00:00:00 UTC, a Saturday; 14102100 = 2014-10-21 00:00 (a Tuesday)
    ts = pa.array([1511568000, 1511568000 + 13 * 3600 + 59, -1, None])
    assert make("time", part="hour").transform(ts).to_pylist() == [0, 13, 23, None]
    assert make("time", part="weekday").transform(ts).to_pylist() == [
        5,
        5,
        2,
        None,
    ]  # 1969-12-31 was a Wednesday
    assert make("time", part="day").transform(ts).to_pylist() == [25, 25, 31, None]
    avazu = pa.array(["14102100", "14102113", "14022900", "bad"]).dictionary_encode()
    got = make("time", part="weekday", format="%y%m%d%H").transform(avazu)
    assert [got.dictionary[i.as_py()].as_py() for i in got.indices] == [1, 1, None, None]
    age = make("time", part="age", reference="2017-11-25", borders=[0, 1, 7], unit="days")
    days = pa.array(
        [1511568000 - DAY, 1511568000, 1511568000 + DAY // 2, 1511568000 + 3 * DAY, 1511568000 + 8 * DAY]
    )
    assert age.transform(days).to_pylist() == [0, 0, 1, 2, 3]
    with pytest.raises(TypeError):
        make("time", part="hour").transform(pa.array([1.5]))


def test_uint64_beyond_int64_is_null_not_an_error():
    # Times outside years 1-9999 are null; a uint64 above 2**63 - 1 used to fail the shard
    values = pa.array([2**64 - 1, None, 3600, 2**63], pa.uint64())
    assert make("time", part="hour").transform(values).to_pylist() == [None, None, 1, None]
    assert make("time", part="hour", format="unix_ms").transform(values).to_pylist() == [None, None, 0, None]
    hours = pa.array([14102113, 2**64 - 1], pa.uint64())
    assert make("time", part="hour", format="%y%m%d%H").transform(hours).to_pylist() == [13, None]


def test_fixed_width():
    assert fixed_width("%y%m%d%H") == 8 and fixed_width("%Y-%m-%d") == 10 and fixed_width("%j%%") == 4
    assert fixed_width("%b %d") is None


@pytest.mark.parametrize(
    "bad, field",
    [
        ({}, "part"),
        ({"part": "minute"}, "part"),
        ({"part": "hour", "format": "seconds"}, "format"),
        ({"part": "hour", "format": ""}, "format"),
        ({"part": "age", "borders": [1]}, "reference"),
        ({"part": "age", "reference": "2017-11-25"}, "borders"),
        ({"part": "age", "reference": "2017-11-25", "borders": []}, "borders"),
        ({"part": "age", "reference": "2017-11-25", "borders": [2, 1]}, "borders"),
        ({"part": "age", "reference": "25/11/2017", "borders": [1]}, "reference"),
        ({"part": "age", "reference": True, "borders": [1]}, "reference"),
        ({"part": "age", "reference": 10**15, "borders": [1]}, "reference"),
        ({"part": "age", "reference": 0, "borders": [1], "unit": "months"}, "unit"),
        ({"part": "hour", "borders": [1]}, "borders"),
        ({"part": "weekday", "reference": 0}, "reference"),
        ({"part": "day", "unit": "days"}, "unit"),
        ({"part": "hour", "zone": "UTC"}, "zone"),
    ],
)
def test_bad_params_are_refused_naming_the_field(bad, field):
    with pytest.raises(ValidationError):
        make("time", **bad)
    with pytest.raises(SpecError, match=rf"spec\.transforms\[4\].*{field}"):
        validate_params(TransformSpec(op="time", columns="ts", **bad), 4)


def test_references():
    p = make("time", part="age", reference="2017-11-25T01:00:00+01:00", borders=[1]).params
    assert p.reference_ms == 1511568000 * 1000 and p.unit_ms == 86_400_000
    assert (
        make("time", part="age", reference=1511568000, borders=[1], unit="hours").params.unit_ms == 3_600_000
    )
