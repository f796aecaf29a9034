"""The output contract: the one parser of commit records and job files, the snapshot reader and
the tail that follows a growing ledger, and the writer's claim on a directory."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from recprep.errors import OutputError
from recprep.workloads.output import (
    JOB_FILE,
    LEDGER_FILE,
    CommitRecord,
    JobRecord,
    LedgerTail,
    OutputWriter,
    put_quarantine,
    put_shard,
    read_commits,
    read_fit,
    read_job,
    read_shard,
    read_vocabulary_sizes,
    shard_name,
)
from recprep.workloads.output.records import parse_commit, parse_job


def line(shard, file=None, rows=10, **extra) -> str:
    return json.dumps({"shard": shard, "file": file or shard_name(shard), "rows": rows, **extra})


@pytest.mark.parametrize(
    "text",
    [
        '{"shard": 1, "file": "part-00001.parquet", "rows"',  # torn by a crash mid-append
        line(-1),
        line(True),
        line(1, rows="10"),
        line(1, rows=None),
        line(1, file="../part-00001.parquet"),
        line(1, file="sub/part-00001.parquet"),
        line(1, file="_job.json"),
        '["not", "an", "object"]',
        "\xff\xfe",
    ],
)
def test_a_line_that_records_no_commit_is_skipped(text):
    assert parse_commit(text) is None


def test_a_commit_record_round_trips_and_optional_fields_default():
    record = CommitRecord(
        3,
        shard_name(3),
        7,
        bad_rows=2,
        bytes=99,
        sha256="ab",
        quarantine="_quarantine/x",
        source={"path": "a.tsv", "start": 0, "stop": 10},
    )
    assert parse_commit(record.to_json()) == record
    assert parse_commit(line(4)) == CommitRecord(4, shard_name(4), 10)
    assert parse_commit(line(4), total=4) is None and parse_commit(line(3), total=4) is not None


def test_job_records():
    assert parse_job({"identity": "x", "name": "j", "shards": 3}) == JobRecord("x", "j", None, 3)
    assert parse_job({"identity": "x", "shards": True}).shards is None  # not a count
    assert parse_job({"name": "j"}) is None and parse_job([1]) is None


def test_read_job_names_what_is_wrong(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        read_job(str(tmp_path / "missing"))
    with pytest.raises(OutputError, match=r"not a recprep job output \(no _job.json\)"):
        read_job(str(tmp_path))
    (tmp_path / JOB_FILE).write_text("{not json")
    with pytest.raises(OutputError, match="_job.json: unreadable"):
        read_job(str(tmp_path))
    (tmp_path / JOB_FILE).write_text("{}")
    with pytest.raises(OutputError, match="no identity"):
        read_job(str(tmp_path))


def test_commit_order_is_the_first_record_and_contents_the_last(tmp_path):
    for s in (2, 0, 1):
        (tmp_path / shard_name(s)).write_bytes(b"")
    (tmp_path / LEDGER_FILE).write_text(
        "\n".join(
            [
                line(2, rows=1),
                "garbage",
                line(0),
                line(2, rows=5),
                line(1),
                line(9),  # shard 9: no file
                '{"shard": 1, "file": "part-0',  # the driver is mid-append
            ]
        )
    )
    commits = read_commits(str(tmp_path))
    assert [c.shard for c in commits] == [2, 0, 1] and commits[0].rows == 5
    assert [c.shard for c in read_commits(str(tmp_path), require_files=False)] == [2, 0, 1, 9]
    assert [c.shard for c in read_commits(str(tmp_path), total=2)] == [0, 1]


def test_the_tail_reads_complete_lines_only_and_notices_a_rewritten_ledger(tmp_path):
    ledger = tmp_path / LEDGER_FILE
    tail = LedgerTail(str(tmp_path))
    assert tail.read() == [] and not tail.changed_underneath()
    ledger.write_text(line(0) + "\n" + '{"shard": 1, ')
    assert [c.shard for c in tail.read()] == [0]
    with ledger.open("a") as f:
        f.write('"file": "part-00001.parquet", "rows": 3}\n')
    assert [c.shard for c in tail.read()] == [1] and tail.read() == []
    ledger.write_text(line(5) + "\n" + line(6) + "\n" + line(7) + "\n")  # rewritten in place, longer
    assert tail.changed_underneath()
    tail.restart()
    assert [c.shard for c in tail.read()] == [5, 6, 7] and not tail.changed_underneath()
    ledger.unlink()
    assert tail.changed_underneath()


def job(identity="a" * 64, name="j") -> JobRecord:
    return JobRecord(identity, name, {"source": {}}, 2)


def test_the_writer_resumes_its_job_and_refuses_another(tmp_path):
    out = str(tmp_path / "out")
    (tmp_path / "out").mkdir()
    with OutputWriter(out) as writer:
        writer.open(job(), overwrite=False)
        assert read_job(out) == job()
        written = put_shard(out, 0, b"shard bytes")
        writer.commit(CommitRecord(0, written.name, 4, sha256=written.sha256, bytes=written.bytes))
    (tmp_path / "out" / ".part-00001.parquet.tmp-123").write_bytes(b"half")  # a crashed worker's
    with OutputWriter(out) as again:
        again.open(job(), overwrite=False)
        assert list(again.commits) == [0] and again.commits[0].sha256 == written.sha256
        assert not list((tmp_path / "out").glob("*.tmp-*"))  # swept
    with pytest.raises(
        OutputError,
        match=r"holds shards of a different job \(job 'j', identity aaaaaaaaaaaa\); pass --overwrite",
    ):
        OutputWriter(out).open(job("b" * 64, "other"), overwrite=False)
    with OutputWriter(out) as other:
        other.open(job("b" * 64, "other"), overwrite=True)
    assert read_job(out).identity == "b" * 64 and read_commits(out) == []
    assert not (tmp_path / "out" / shard_name(0)).exists()


def test_fit_states_and_quarantine(tmp_path):
    out = str(tmp_path)
    with OutputWriter(out) as writer:
        writer.open(job(), overwrite=False)
        states = {(3, "C1"): {"vocabulary": ["a", "b"], "counts": [2, 1]}, (0, "I1"): [1, 2.0, 3.0]}
        writer.save_fit(job().identity, states)
    assert read_fit(out, job().identity) == states and read_fit(out, "other") is None
    assert read_vocabulary_sizes(out, job().identity) == {"3:C1": 2}

    @dataclass
    class Bad:
        file: str
        line: int
        reason: str
        text: str

    path = put_quarantine(out, 4, [Bad("a.tsv", 7, "3 fields, expected 40", "x\ty")])
    assert path == "_quarantine/part-00004.jsonl"
    assert json.loads((tmp_path / path).read_text()) == {
        "file": "a.tsv",
        "line": 7,
        "reason": "3 fields, expected 40",
        "text": "x\ty",
    }


def test_a_committed_shard_is_read_checked_against_its_record(tmp_path):
    written = put_shard(str(tmp_path), 2, b"the shard")
    record = CommitRecord(2, written.name, 1, sha256=written.sha256)
    assert read_shard(str(tmp_path), record) == b"the shard"
    (tmp_path / written.name).write_bytes(b"changed!!")
    with pytest.raises(
        OutputError, match=r"part-00002.parquet: content does not match its sha256 in _ledger"
    ):
        read_shard(str(tmp_path), record)
    assert read_shard(str(tmp_path), record, verify=False) == b"changed!!"
    (tmp_path / written.name).unlink()
    with pytest.raises(OutputError, match=r"part-00002.parquet: cannot read the committed shard"):
        read_shard(str(tmp_path), record)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    out = str(tmp_path)
    with OutputWriter(out) as first:
        first.open(job(name="first"), overwrite=False)
        with pytest.raises(
            OutputError, match=r"in use by job 'first' \(identity aaaaaaaaaaaa, pid \d+ on .*since"
        ):
            OutputWriter(out).open(job("b" * 64, "second"), overwrite=True)
        assert read_job(out).name == "first"  # the refused --overwrite cleared nothing
    with OutputWriter(out) as again:  # released when the first run ended
        again.open(job(name="first"), overwrite=False)


def test_the_lock_holds_exactly_its_holder_record(tmp_path):
    """A holder's record is written over the last one's and cut to its length: a shorter record
    after a longer one leaves nothing of it behind (the refusal message reads it back)."""
    from recprep.workloads.output.writer import OutputLock

    path = tmp_path / "_lock"
    for name in ("a-long-job-name-" * 8, "b"):
        lock = OutputLock(str(tmp_path))
        lock.acquire({"job": name})
        held = json.loads(path.read_text())
        assert held["job"] == name and path.read_text().count("\n") == 1
        lock.release()


def test_a_killed_holder_leaves_the_directory_unlocked(tmp_path):
    import signal
    import subprocess
    import sys

    code = (
        "import sys, time; from recprep.workloads.output import OutputWriter, JobRecord\n"
        "w = OutputWriter(sys.argv[1]); w.open(JobRecord('a' * 64, 'holder', None, 1), overwrite=False)\n"
        "print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match="in use by job 'holder'"):
            OutputWriter(str(tmp_path)).open(job(), overwrite=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with OutputWriter(str(tmp_path)) as w:
        w.open(job(name="holder"), overwrite=False)


def test_a_torn_ledger_tail_is_cut_before_anything_is_appended(tmp_path):
    out = str(tmp_path)
    with OutputWriter(out) as w:
        w.open(job(), overwrite=False)
        written = put_shard(out, 0, b"zero")
        w.commit(CommitRecord(0, written.name, 1, sha256=written.sha256))
    with (tmp_path / LEDGER_FILE).open("a") as f:
        f.write('{"shard": 1, "file": "part-0')  # a crash in the middle of the next commit
    with OutputWriter(out) as w:
        w.open(job(), overwrite=False)
        assert w.repaired_bytes == len('{"shard": 1, "file": "part-0') and list(w.commits) == [0]
        written = put_shard(out, 1, b"one")
        w.commit(CommitRecord(1, written.name, 1, sha256=written.sha256))
    assert [c.shard for c in read_commits(out)] == [0, 1]  # the new record is a line of its own


def test_a_committed_shard_that_no_longer_matches_is_redone(tmp_path):
    out = str(tmp_path)
    with OutputWriter(out) as w:
        w.open(job(), overwrite=False)
        for i in range(3):
            written = put_shard(out, i, f"shard {i}".encode())
            w.commit(CommitRecord(i, written.name, 1, sha256=written.sha256))
    (tmp_path / shard_name(1)).write_bytes(b"shard X")  # same size, other bytes
    (tmp_path / shard_name(2)).unlink()
    with OutputWriter(out) as w:
        w.open(job(), overwrite=False)
        assert sorted(w.commits) == [0]
        assert [(r.shard, "sha256" in r.reason or "cannot read" in r.reason) for r in w.redone] == [
            (1, True),
            (2, True),
        ]


def test_overwrite_clears_only_what_recprep_wrote(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mine = ["notes.txt", "part-1.parquet", "part-00001-spark.snappy.parquet", ".hidden.tmp-x", "_SUCCESS"]
    for name in mine:
        (out / name).write_text("keep")
    (out / "_quarantine").mkdir()
    (out / "_quarantine" / "mine.jsonl").write_text("keep")
    with OutputWriter(str(out)) as w:
        w.open(job(), overwrite=False)
        put_shard(str(out), 0, b"x")
        put_quarantine(str(out), 0, [])
    with OutputWriter(str(out)) as w:
        w.open(job("b" * 64, "other"), overwrite=True)
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted([*mine, "_job.json", "_lock", "_quarantine"])
    assert [p.name for p in (out / "_quarantine").iterdir()] == ["mine.jsonl"]


def test_feature_roles_round_trip_and_a_malformed_record_is_none():
    from recprep.workloads.output import FEATURES_KEY, FeatureRoles, parse_roles

    roles = FeatureRoles("click", ("price",), ("site", "hour_of_day"))
    assert parse_roles(roles.metadata()) == roles
    assert parse_roles(FeatureRoles(None, (), ("a",)).metadata()) == FeatureRoles(None, (), ("a",))
    for raw in (
        b"",
        b"{",
        b"[]",
        b'{"label": 1, "dense": [], "sparse": []}',
        b'{"label": "x", "dense": "a"}',
    ):
        assert parse_roles({FEATURES_KEY: raw}) is None, raw
    assert parse_roles(None) is None and parse_roles({b"other": b"1"}) is None
