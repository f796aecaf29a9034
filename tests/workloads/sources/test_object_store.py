"""Sources in object storage: an ``s3://`` input (plain or gzip) read through s3fs, the client users
have, from a real S3 API server in this process (moto's server mode, as s3fs's own tests do). Its
splits and bytes are those of the same file on a local path, a job on it writes the same shards,
and a missing bucket or missing credentials are one line naming the URI, before any work."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest
import yaml

from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job
from recprep.workloads.sources import open_source

from ...conftest import job_doc
from ...s3 import environments, moto_s3

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server with the bucket ``data``; the environment points the AWS clients at it."""
    with moto_s3("data") as (fs, env):
        yield fs, env


@pytest.fixture(scope="module")
def text(criteo_lines) -> bytes:
    return b"".join(criteo_lines) * 4  # 40,000 real Criteo rows


def source(uri, index_dir):
    doc = job_doc(uri, "unused", transforms=[])
    return open_source(load_job_dict(doc).spec.source, index_dir=str(index_dir))


@pytest.mark.parametrize("name", ["day.tsv", "day.tsv.gz"])
def test_an_s3_source_splits_and_reads_as_the_same_local_file(s3, text, tmp_path, name):
    fs, _ = s3
    local = tmp_path / name
    local.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    fs.put(str(local), f"data/{name}")
    ours, theirs = source(f"s3://data/{name}", tmp_path / "i1"), source(str(local), tmp_path / "i2")
    a, b = ours.splits(4096), theirs.splits(4096)
    assert len(a) == len(b) >= 8 and all(s.path == f"s3://data/{name}" for s in a)
    assert [(s.start, s.stop, s.est_rows) for s in a] == [(s.start, s.stop, s.est_rows) for s in b]
    for x, y in zip(a, b):
        assert ours._bytes(x) == theirs._bytes(y)


def test_several_s3_gzip_files_planned_at_once_split_as_the_same_local_files(s3, text, tmp_path, monkeypatch):
    """Three passes at once, each reading its own object through s3fs from its own thread."""
    from recprep.workloads.sources import compressed

    fs, _ = s3
    (tmp_path / "days").mkdir()
    for i in range(3):
        day = text[i * 1000 :] + text[: i * 1000]
        (tmp_path / "days" / f"day_{i}.tsv.gz").write_bytes(gzip.compress(day))
        fs.put(str(tmp_path / "days" / f"day_{i}.tsv.gz"), f"data/days/day_{i}.tsv.gz")
    monkeypatch.setattr(compressed, "usable_cores", lambda: 3)
    at_once = []
    real = compressed.concurrent_passes
    monkeypatch.setattr(
        compressed, "concurrent_passes", lambda stored: at_once.append(real(stored)) or at_once[-1]
    )
    ours = source("s3://data/days/", tmp_path / "i1")
    a = ours.splits(4096)
    assert at_once == [3]
    b = source(str(tmp_path / "days"), tmp_path / "i2").splits(4096)
    assert len(a) == len(b) >= 24
    assert [(s.start, s.stop, s.est_rows) for s in a] == [(s.start, s.stop, s.est_rows) for s in b]
    assert ours._bytes(a[-1]) == (text[2000:] + text[:2000])[a[-1].start :]  # day_2's last


def test_a_damaged_s3_file_is_one_error_naming_its_uri(s3, text, tmp_path):
    from recprep.errors import SourceError

    fs, _ = s3
    fs.pipe("data/cut.tsv.gz", gzip.compress(text)[:-5000])
    with pytest.raises(
        SourceError,
        match=r"^s3://data/cut.tsv.gz: cannot plan the splits of it \(compressed data ends before",
    ):
        source("s3://data/cut.tsv.gz", tmp_path / "i").splits(4096)


@pytest.mark.integration
def test_a_job_on_an_s3_gzip_source_writes_the_shards_of_the_local_file(s3, text, tmp_path):
    fs, _ = s3
    local = tmp_path / "day.tsv.gz"
    local.write_bytes(gzip.compress(text))
    fs.put(str(local), "data/job/day.tsv.gz")
    outs = {}
    for where, uri in (("s3", "s3://data/job/"), ("local", str(local))):
        doc = job_doc(uri, str(tmp_path / f"out-{where}"))
        doc["spec"]["output"]["rowsPerShard"] = 8192
        # an embedded cluster of its own: its workers inherit the environment that reaches the server
        summary = run_job(load_job_dict(doc), workers=1)
        assert summary.rows_written == 40_000
        outs[where] = sorted((tmp_path / f"out-{where}").glob("part-*.parquet"))
    assert len(outs["s3"]) == len(outs["local"]) == 5
    assert [p.read_bytes() for p in outs["s3"]] == [p.read_bytes() for p in outs["local"]]


def validate(tmp_path, uri: str, env: dict) -> subprocess.CompletedProcess:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(job_doc(uri, str(tmp_path / "out"))))
    return subprocess.run(
        [sys.executable, "-m", "recprep.cli", "validate", str(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_missing_bucket_or_credentials_is_one_line_naming_the_uri(s3, tmp_path):
    keys, nothing = environments(s3[1], tmp_path)
    cases = [
        (keys, "s3://no-such-bucket/day.tsv", "does not exist"),
        (nothing, "s3://data/day.tsv", "cannot list 's3://data/day.tsv' (NoCredentialsError"),
    ]
    for environment, uri, expected in cases:
        proc = validate(tmp_path, uri, environment)
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
        assert uri in lines[0] and expected in lines[0], lines[0]
        assert not (tmp_path / "out").exists()
