"""Bad input at the source: every non-empty line is a row of the table or a quarantined row with
its file, line and reason; nothing else is raised but a SourceError naming the file; no
non-finite number reaches the table unless the spec says it becomes a null."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recprep.errors import SourceError
from recprep.spec import load_job_dict
from recprep.workloads.sources import open_source

from ...conftest import job_doc

HEADER = ["label", "d1", "d2", "s1", "s2"]


def source_of(path, **source):
    doc = job_doc(str(path), "unused", transforms=[], **source)
    spec = doc["spec"]["source"]
    spec.pop("format")
    spec.update({"header": True, "dense": ["d1", "d2"], "sparse": ["s1", "s2"]})
    spec.update(source)
    return open_source(load_job_dict(doc).spec.source)


def read_all(source):
    tables, bad = [], []
    for split in source.splits(3):
        result = source.read(split)
        tables.append(result.table)
        bad += result.bad
    return pa.concat_tables(tables), bad


def tsv(tmp_path, lines: list[bytes], name="data.tsv"):
    path = tmp_path / name
    path.write_bytes(
        b"\t".join(h.encode() for h in HEADER) + b"\n" + b"".join(line + b"\n" for line in lines)
    )
    return path


def test_non_finite_dense_values_are_bad_rows_naming_column_and_line(tmp_path):
    path = tsv(
        tmp_path,
        [
            b"1\t1.5\t2\tab\tcd",
            b"0\tinf\t2\tab\tcd",
            b"",
            b"1\t3\t-inf\tab\tcd",
            b"0\t1e309\t1\tab\tcd",
            b"1\t2\t-Infinity\tx\ty",
            b"0\t4\t5\tef\tgh",
        ],
    )
    table, bad = read_all(source_of(path))
    assert table["d1"].to_pylist() == [1.5, 4.0] and table.num_rows + len(bad) == 6
    assert [(b.line, b.reason) for b in sorted(bad, key=lambda b: b.line)] == [
        (3, "column d1: non-finite value inf"),
        (5, "column d2: non-finite value -inf"),
        (6, "column d1: non-finite value inf"),
        (7, "column d2: non-finite value -inf"),
    ]
    assert all(b.file == str(path) for b in bad)
    assert sorted(bad, key=lambda b: b.line)[1].text == "1\t3\t-inf\tab\tcd"


def test_non_finite_values_become_nulls_when_the_spec_says_so(tmp_path):
    path = tsv(tmp_path, [b"1\tinf\t2\tab\tcd", b"0\t1\tnan\tab\tcd", b"1\t1e309\t3\tab\tcd"])
    table, bad = read_all(source_of(path, nonFinite="null"))
    assert bad == [] and table["d1"].to_pylist() == [None, 1.0, None]
    assert table["d2"].to_pylist() == [2.0, None, 3.0]  # "nan" is a null token, as pyarrow reads it


def test_lines_that_are_not_utf8_are_bad_rows_and_the_rest_is_kept(tmp_path):
    good = [f"{i % 2}\t{i}\t{i}\t{i:08x}\tx{i}".encode() for i in range(1000)]
    lines = list(good)
    lines[500] = b"1\t2\t3\t\xff\xfe\tx"  # one non-UTF-8 byte pair in a sparse column (0.1%)
    lines.insert(700, b"\x80\x81 not\ttext")  # a line of bytes, also the wrong field count
    table, bad = read_all(source_of(tsv(tmp_path, lines)))
    assert table.num_rows == 999 and len(bad) == 2
    assert [(b.line, b.reason.split(" (")[0]) for b in sorted(bad, key=lambda b: b.line)] == [
        (502, "not UTF-8 text"),
        (702, "not UTF-8 text"),
    ]
    assert sorted(bad, key=lambda b: b.line)[0].text == "1\t2\t3\t\\xff\\xfe\tx"  # escaped, JSON-safe
    json.dumps([b.text for b in bad])
    assert table["s2"].to_pylist()[499:501] == ["x499", "x501"]


def test_line_numbers_count_empty_lines(tmp_path):
    path = tsv(tmp_path, [b"1\t1\t1\ta\tb", b"", b"", b"1\tone\t1\ta\tb", b"", b"2\t2", b"0\t2\t2\ta\tb"])
    table, bad = read_all(source_of(path))
    assert table.num_rows == 2
    assert sorted((b.line, b.reason) for b in bad) == [
        (5, "column d1: not a valid number"),
        (7, "expected 5 fields, found 2"),
    ]


def test_random_bytes_are_quarantined_or_refused_naming_the_file(tmp_path):
    rng = np.random.default_rng(7)
    for case in range(40):
        body = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
        path = tmp_path / f"random{case}.tsv"
        path.write_bytes(b"\t".join(h.encode() for h in HEADER) + b"\n" + body)
        try:
            table, bad = read_all(source_of(path))
        except SourceError as exc:
            assert str(path) in str(exc)
            continue
        lines = [line for line in body.split(b"\n") if line.rstrip(b"\r")]
        assert table.num_rows + len(bad) == len(lines), case  # every row kept or quarantined


def test_a_plain_file_named_gz_and_a_truncated_gzip_are_one_error_naming_the_file(tmp_path):
    plain = tmp_path / "plain.tsv.gz"
    plain.write_bytes(b"label\td1\td2\ts1\ts2\n1\t2\t3\ta\tb\n")
    with pytest.raises(SourceError, match=r"plain.tsv.gz: cannot .* \(Not a gzipped file"):
        read_all(source_of(plain))
    whole = gzip.compress(b"label\td1\td2\ts1\ts2\n" + b"1\t2\t3\ta\tb\n" * 2000)
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceError, match=r"cut.tsv.gz: cannot .*(end-of-stream|ended)"):
        read_all(source_of(cut))


def test_parquet_non_finite_rows_are_quarantined_by_row_number(tmp_path):
    path = tmp_path / "data.parquet"
    table = pa.table(
        {
            "label": [1, 0, 1, 0],
            "d1": [1.0, float("inf"), 2.0, float("nan")],
            "d2": [1.0, 2.0, 3.0, 4.0],
            "s1": ["a", "b", "c", "d"],
            "s2": ["a", "b", "c", "d"],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    doc = job_doc(str(path), "unused", transforms=[])
    doc["spec"]["source"] = {"uri": str(path), "dense": ["d1", "d2"], "sparse": ["s1", "s2"]}
    source = open_source(load_job_dict(doc).spec.source)
    read, bad = read_all(source)
    assert read["d1"].to_pylist() == [1.0, 2.0]
    assert [(b.line, b.reason) for b in bad] == [
        (2, "column d1: non-finite value inf"),
        (4, "column d1: non-finite value nan"),
    ]
    assert json.loads(bad[0].text)["s1"] == "b"
