"""The bad-data half of the fault suite (property-based): for any input file, in any format,
every non-empty line is a row of the shard or a quarantined row (rows are conserved), no
non-finite number and no silently emptied feature is written, and anything that cannot be read
is a SourceError naming the file; for any crash (a ledger cut at any byte, shards damaged or
gone), the next run leaves every committed shard in the ledger and matching its line.

In CI the examples are derandomized (the same ones every run); ``RECPREP_EXPLORE=N`` runs N
fresh random examples per test instead.
"""

from __future__ import annotations

import gzip
import json
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recprep.errors import RecprepError, SourceError, SpecError
from recprep.spec import load_job_dict
from recprep.workloads.output import (
    CommitRecord,
    JobRecord,
    OutputWriter,
    put_shard,
    read_commits,
    read_shard,
    shard_name,
)
from recprep.workloads.output.layout import LEDGER_FILE
from recprep.workloads.runner import run_job
from recprep.workloads.tasks import prepare
from recprep.workloads.writer import shard_bytes


def profile(ci_examples: int) -> settings:
    explore = os.environ.get("RECPREP_EXPLORE")
    if explore:
        return settings(
            max_examples=int(explore), deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
    return settings(
        max_examples=ci_examples, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
    )


COLUMNS = ["label", "d1", "d2", "s1", "s2"]

good_hex = st.text("0123456789abcdef", min_size=1, max_size=8)
wide_hex = st.text("0123456789abcdefABCDEF", min_size=17, max_size=40)
numbers = st.one_of(st.integers(-1000, 1000).map(str), st.floats(-1e6, 1e6).map(repr), st.just(""))
bad_fields = st.sampled_from(
    ["inf", "-inf", "1e309", "-1e400", "nan", "NaN", "x", "1.2.3", "0x1f", "\u00e9", " 5", "+5", "--1"]
)


@st.composite
def good_row(draw) -> bytes:
    fields = [
        draw(st.sampled_from(["0", "1"])),
        draw(numbers),
        draw(numbers),
        draw(st.one_of(good_hex, wide_hex, st.just(""))),
        draw(st.one_of(good_hex, st.just(""), st.text("ghijk", max_size=5))),
    ]
    return "\t".join(fields).encode()


@st.composite
def bad_row(draw) -> bytes:
    row = draw(good_row()).split(b"\t")
    kind = draw(st.sampled_from(["field", "count", "bytes", "utf8", "cr", "quote", "nul", "empty"]))
    if kind == "field":
        row[draw(st.integers(0, 2))] = draw(bad_fields).encode()
    elif kind == "count":
        row = row[: draw(st.integers(1, 4))] if draw(st.booleans()) else [*row, b"extra"]
    elif kind == "bytes":
        return draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ")
    elif kind == "utf8":
        row[draw(st.integers(0, 4))] += b"\xff\xfe"
    elif kind == "cr":
        row[draw(st.integers(0, 4))] += b"\r"
    elif kind == "quote":
        row[draw(st.integers(3, 4))] = b'"' + row[3] + draw(st.sampled_from([b'"', b"", b'\t"']))
    elif kind == "nul":
        row[draw(st.integers(0, 4))] += b"\0"
    else:
        return b""
    return b"\t".join(row)


rows_st = st.lists(st.one_of(good_row(), good_row(), bad_row()), min_size=0, max_size=60)


def non_empty_lines(body: bytes) -> int:
    return sum(1 for line in body.split(b"\n") if line.rstrip(b"\r"))


def source_doc(path: str, output: str, fmt: str = "tsv", **source) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "props"},
        "spec": {
            "source": {
                "uri": path,
                "format": fmt,
                "header": True,
                "dense": ["d1", "d2"],
                "sparse": ["s1", "s2"],
                "maxBadFraction": 1.0,
                **source,
            },
            "transforms": [
                {"op": "fill_null", "columns": "dense", "value": 0},
                {"op": "log", "columns": "dense"},
                {"op": "hex_to_int", "columns": "sparse"},
                {"op": "sigrid_hash", "columns": "sparse", "maxValue": 1000},
                {"op": "to_list", "columns": "sparse"},
            ],
            "output": {"uri": output, "rowsPerShard": 7},
        },
    }


def check_read(doc: dict, expected_rows: int | None) -> None:
    """Read every split as the workers do: conserved rows, finite values, shards that encode."""
    try:
        job = load_job_dict(doc)
        source, plan = prepare(job)
        splits = source.splits(job.spec.output.rows_per_shard)
    except SourceError as exc:  # the file cannot be read: named
        assert doc["spec"]["source"]["uri"] in str(exc) and "\n" not in str(exc)
        return
    except SpecError as exc:  # the file's header lacks a column the job names: the field named
        assert str(exc).startswith("spec.source.") and "\n" not in str(exc)
        return
    kept = bad = 0
    for split in splits:
        try:
            read = source.read(split, plan.scan_hex)
        except SourceError as exc:
            assert split.path in str(exc) and "\n" not in str(exc)
            return
        nulled: dict = {}
        table = plan.apply(read.table, {}, nulled=nulled, source_nulled=read.nulled)
        shard_bytes(table, "snappy")
        kept += table.num_rows
        bad += len(read.bad)
        json.dumps([b.text for b in read.bad])  # what the quarantine writes is JSON-safe
        for name in ("d1", "d2"):
            values = table[name].to_numpy(zero_copy_only=False)
            assert np.all(np.isfinite(values)), name
        for name in ("s1", "s2"):  # an emptied feature is counted (so reported), never silent
            empties = sum(1 for ids in table[name].to_pylist() if not ids)
            if empties:
                step = next(s.index for s in plan.steps if s.op.name == "hex_to_int")
                assert nulled[(step, name)][0] >= empties - read.table[name].null_count
    if expected_rows is not None:
        assert kept + bad == expected_rows


@profile(200)
@given(rows=rows_st, fmt=st.sampled_from(["tsv", "csv", "tsv.gz"]), crlf=st.booleans())
def test_any_text_input_is_read_with_every_row_kept_or_quarantined(tmp_path_factory, rows, fmt, crlf):
    delimiter = b"," if fmt == "csv" else b"\t"
    end = b"\r\n" if crlf else b"\n"
    body = end.join(r.replace(b"\t", delimiter) for r in rows) + (end if rows else b"")
    data = delimiter.join(c.encode() for c in COLUMNS) + end + body
    path = tmp_path_factory.mktemp("text") / f"data.{fmt}"
    path.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)
    check_read(source_doc(str(path), str(path.parent / "out"), fmt.split(".")[0]), non_empty_lines(body))


@profile(60)
@given(data=st.binary(max_size=600), fmt=st.sampled_from(["tsv", "csv", "tsv.gz", "parquet"]))
def test_any_bytes_as_an_input_file_are_read_or_refused_naming_it(tmp_path_factory, data, fmt):
    path = tmp_path_factory.mktemp("bytes") / f"data.{fmt}"
    path.write_bytes(b"label\td1\td2\ts1\ts2\n" + data if fmt == "tsv" else data)
    check_read(source_doc(str(path), str(path.parent / "out"), fmt.split(".")[0]), None)


floats = st.floats(allow_nan=True, allow_infinity=True) | st.none()


@profile(60)
@given(
    d1=st.lists(floats, min_size=1, max_size=40),
    s1=st.lists(st.one_of(good_hex, wide_hex, st.text(max_size=6), st.none()), min_size=40, max_size=40),
    group=st.integers(1, 16),
)
def test_any_parquet_values_are_read_with_every_row_kept_or_quarantined(tmp_path_factory, d1, s1, group):
    n = len(d1)
    table = pa.table(
        {
            "label": pa.array([i % 2 for i in range(n)], pa.int64()),
            "d1": pa.array(d1, pa.float64()),
            "d2": pa.array([float(i) for i in range(n)]),
            "s1": pa.array(s1[:n], pa.string()),
            "s2": pa.array(["ab"] * n),
        }
    )
    path = tmp_path_factory.mktemp("parquet") / "data.parquet"
    pq.write_table(table, path, row_group_size=group)
    check_read(source_doc(str(path), str(path.parent / "out"), "parquet"), n)


@pytest.mark.integration
@profile(8)
@given(rows=st.lists(st.one_of(good_row(), bad_row()), min_size=1, max_size=40))
def test_a_whole_job_on_any_input_conserves_rows_and_commits_valid_shards(
    tmp_path_factory, dask_client, rows
):
    body = b"\n".join(rows) + b"\n"
    folder = tmp_path_factory.mktemp("job")
    path = folder / "data.tsv"
    path.write_bytes(b"\t".join(c.encode() for c in COLUMNS) + b"\n" + body)
    out = folder / "out"
    doc = source_doc(str(path), str(out))
    try:
        summary = run_job(load_job_dict(doc), client=dask_client)
    except RecprepError as exc:
        assert "\n" not in str(exc)
        return
    assert summary.rows_conserved and summary.rows_read == non_empty_lines(body)
    commits = read_commits(str(out))
    for record in commits:
        read_shard(str(out), record, verify=True)
    if not summary.rows_written:
        return
    table = pq.read_table(out, columns=["d1", "d2", "s1", "s2"])
    assert all(math.isfinite(x) for name in ("d1", "d2") for x in table[name].to_pylist())
    # no feature emptied silently: every empty ID list is an empty input field or a value that
    # hex_to_int made null, and those are counted in the ledger (what the warnings are made of)
    source, plan = prepare(load_job_dict(doc))
    step = next(s.index for s in plan.steps if s.op.name == "hex_to_int")
    for name in ("s1", "s2"):
        empty_inputs = 0
        for split in source.splits(doc["spec"]["output"]["rowsPerShard"]):
            read = source.read(split, plan.scan_hex)
            empty_inputs += read.table[name].null_count - read.nulled.get(name, 0)
        made_null = sum((c.nulled or {}).get(f"{step}:{name}", [0])[0] for c in commits)
        assert sum(1 for ids in table[name].to_pylist() if not ids) == empty_inputs + made_null, name


@profile(150)
@given(
    shards=st.integers(1, 12),
    cut=st.floats(0, 1),
    damaged=st.sets(st.integers(0, 11), max_size=4),
    gone=st.sets(st.integers(0, 11), max_size=3),
    garbage=st.binary(max_size=30),
)
def test_after_any_crash_every_committed_shard_is_in_the_ledger_and_matches_it(
    tmp_path_factory, shards, cut, damaged, gone, garbage
):
    out = str(tmp_path_factory.mktemp("crash"))
    job = JobRecord("c" * 64, "crash", None, shards)

    def commit_missing(writer: OutputWriter) -> None:
        for i in range(shards):
            if i not in writer.commits:
                written = put_shard(out, i, f"shard {i} ".encode() * (i + 1))
                writer.commit(
                    CommitRecord(i, written.name, i + 1, bytes=written.bytes, sha256=written.sha256)
                )

    with OutputWriter(out) as writer:
        writer.open(job, overwrite=False)
        commit_missing(writer)
    ledger = os.path.join(out, LEDGER_FILE)
    with open(ledger, "rb") as f:
        content = f.read()
    with open(ledger, "wb") as f:  # the crash: the ledger cut at any byte, maybe garbage after it
        f.write(content[: int(len(content) * cut)] + garbage.replace(b"\n", b""))
    for i in damaged & set(range(shards)):
        path = os.path.join(out, shard_name(i))
        with open(path, "r+b") as f:
            f.write(b"X")
    for i in gone & set(range(shards)):
        os.remove(os.path.join(out, shard_name(i)))
    with OutputWriter(out) as writer:  # the next run
        writer.open(job, overwrite=False)
        commit_missing(writer)
    commits = read_commits(out)
    assert sorted(c.shard for c in commits) == list(range(shards))
    for record in commits:
        read_shard(out, record, verify=True)
    with open(ledger, "rb") as f:
        assert f.read().endswith(b"\n")
