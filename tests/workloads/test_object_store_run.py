"""Jobs whose output is in S3 (a real S3 API: moto's server, through s3fs, the client users have).

The bucket keeps every version of every object (S3 versioning), so "committed once" is checked
by the store itself: each shard's commit record has exactly one version, whatever was killed,
resumed or raced. The shards are byte-identical to a local run of the same job."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from recprep.delivery.shards import LocalShards
from recprep.spec import load_job_dict
from recprep.workloads.output import read_commits
from recprep.workloads.runner import run_job

from ..conftest import REPO, job_doc, wait_for
from ..s3 import environments, moto_s3

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
pytestmark = pytest.mark.integration

ROWS = 120_000
PER_SHARD = 8192
SHARDS = -(-ROWS // PER_SHARD)  # 15


@pytest.fixture(scope="module")
def s3():
    with moto_s3("out") as (fs, env):
        fs.make_bucket_versioned("out")
        yield fs, env


def doc_for(output: str) -> dict:
    doc = job_doc(f"synthetic://criteo?rows={ROWS}&seed=5", output)
    doc["spec"]["output"]["rowsPerShard"] = PER_SHARD
    return doc


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The shards of the job run on a local path."""
    out = tmp_path_factory.mktemp("local") / "out"
    run_job(load_job_dict(doc_for(str(out))), workers=1)
    return {p.name: p.read_bytes() for p in sorted(out.glob("part-*.parquet"))}


def shards_in(fs, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {p.rsplit("/", 1)[1]: fs.cat(p) for p in sorted(fs.glob(f"{prefix}/part-*.parquet"))}


def record_versions(fs, prefix: str) -> dict[str, int]:
    """How many times each commit record was written (every version the bucket kept)."""
    import s3fs

    versioned = s3fs.S3FileSystem(version_aware=True, skip_instance_cache=True)
    return {
        p.rsplit("/", 1)[1]: len(versioned.object_version_info(p)) for p in versioned.ls(f"{prefix}/_ledger")
    }


def command(tmp_path, output: str, name: str = "job.yaml") -> list[str]:
    job = tmp_path / name
    job.write_text(yaml.safe_dump(doc_for(output)))
    return [sys.executable, "-m", "recprep.cli", "run", str(job), "--workers", "1"]


def test_the_same_job_on_s3_writes_the_shards_of_a_local_run(s3, reference):
    fs, _ = s3
    summary = run_job(load_job_dict(doc_for("s3://out/same/")), workers=1)
    assert summary.shards == SHARDS and summary.rows_written == ROWS
    assert shards_in(fs, "out/same") == reference
    assert set(record_versions(fs, "out/same").values()) == {1}
    assert not fs.exists("out/same/_lock")  # the lease is given back
    # trainers read it where it is: the committed shards, in full
    commits = read_commits("s3://out/same")
    assert [r.rows for r in commits] == [
        pq.read_metadata(pa.BufferReader(reference[r.file])).num_rows for r in commits
    ]
    tables = [d.table for d in LocalShards("s3://out/same").open()]
    assert sum(t.num_rows for t in tables) == ROWS
    # a second run finds every shard committed and commits none again
    again = run_job(load_job_dict(doc_for("s3://out/same")), workers=1)
    assert again.shards_skipped == SHARDS and set(record_versions(fs, "out/same").values()) == {1}


def test_a_run_killed_halfway_and_resumed_commits_every_shard_once(s3, reference, tmp_path):
    fs, env = s3
    cmd = command(tmp_path, "s3://out/killed")
    lease = {**os.environ, **env, "RECPREP_OUTPUT_LEASE": "3"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=lease, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def committed() -> int:
        fs.invalidate_cache()
        return len(fs.ls("out/killed/_ledger")) if fs.exists("out/killed/_ledger") else 0

    try:
        wait_for(lambda: committed() >= 3, 120, message="a few committed shards")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-job
        proc.wait(30)
    before = committed()
    assert before < SHARDS, "the job finished before it could be killed"
    assert fs.exists("out/killed/_lock")  # killed: nobody gave the lease back
    # resumed at once: it waits out the dead run's lease (3 s), then takes it over
    resumed = subprocess.run(cmd, cwd=REPO, env=lease, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "already committed" in resumed.stdout
    assert shards_in(fs, "out/killed") == reference
    versions = record_versions(fs, "out/killed")
    assert len(versions) == SHARDS and set(versions.values()) == {1}, versions


def test_two_drivers_racing_on_one_output_commit_each_shard_once(s3, reference, tmp_path):
    fs, env = s3
    cmd = command(tmp_path, "s3://out/raced")
    procs = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, **env, "RECPREP_OUTPUT_LEASE": "4"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(300), *p.communicate()) for p in procs]
    finished = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] != 0]
    assert finished, results
    for _, out, err in refused:
        # the loser says it waits for the holder's lease, and is refused in one line naming it
        # (stderr also holds the progress bar's last frame, drawn with "━")
        lines = [line for line in (out + err).splitlines() if line.strip() and "━" not in line]
        assert "Traceback" not in out + err and len(lines) == 2, lines
        assert (
            "s3://out/raced: held by job 'test-job'" in lines[0] and "s for it to renew or expire" in lines[0]
        )
        assert lines[1].startswith("error: s3://out/raced: in use by job 'test-job' (identity"), lines
    assert shards_in(fs, "out/raced") == reference
    versions = record_versions(fs, "out/raced")
    assert len(versions) == SHARDS and set(versions.values()) == {1}, versions


def test_a_missing_bucket_or_missing_credentials_fail_before_any_work(s3, tmp_path):
    keys, nothing = environments(s3[1], tmp_path)
    cases = [
        (keys, "s3://no-such-bucket/out", "The specified bucket does not exist"),
        (nothing, "s3://out/nocreds", "NoCredentialsError"),
    ]
    for environment, uri, expected in cases:
        proc = subprocess.run(
            command(tmp_path, uri), cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
        )
        lines = [
            line for line in (proc.stdout + proc.stderr).splitlines() if line.strip() and "━" not in line
        ]
        assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
        assert f"spec.output.uri: cannot write to '{uri}'" in lines[0] and expected in lines[0], lines[0]


def test_a_missing_bucket_fails_before_a_compressed_source_is_planned(
    s3, tmp_path, criteo_lines, monkeypatch
):
    """Planning a compressed input is work (a pass over the file, its plan kept in the output):
    the output is checked first (it was checked after, and the error was the plan's)."""
    import gzip

    from recprep.errors import OutputError
    from recprep.workloads.sources import compressed

    source = tmp_path / "day.tsv.gz"
    source.write_bytes(gzip.compress(b"".join(criteo_lines[:2000])))
    monkeypatch.setattr(compressed, "_gzip_pass", lambda *a, **k: pytest.fail("planned before the check"))
    uri = "s3://no-such-bucket/out"
    with pytest.raises(OutputError, match=rf"^spec.output.uri: cannot write to '{uri}'"):
        run_job(load_job_dict(job_doc(str(source), uri)), workers=1)


def test_a_reader_of_an_output_in_a_missing_bucket_says_the_bucket_is_missing(s3):
    from recprep.errors import OutputError
    from recprep.workloads.output import read_job

    with pytest.raises(OutputError, match=r"^s3://no-such-bucket/x: its bucket does not exist$"):
        read_job("s3://no-such-bucket/x")  # (it said: not a recprep job output, no _job.json)
    with pytest.raises(OutputError, match=r"^s3://out/nothing-here: not a recprep job output"):
        read_job("s3://out/nothing-here")


def test_an_output_uri_with_an_empty_segment_is_refused_before_any_work(s3, tmp_path):
    """``s3://out//doubled``: s3fs would write keys starting with ``/`` but list nothing below
    that prefix, so a resumed run would redo every shard and a reader would see none."""
    import boto3

    _, env = s3
    for uri in ("s3://out//doubled", "s3://out/a//doubled/", "s3:///doubled"):
        proc = subprocess.run(
            command(tmp_path, uri), cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True
        )
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        assert proc.returncode == 1 and lines == [
            f"error: spec.output.uri: an empty segment ('//') in {uri!r}"
        ], proc.stdout + proc.stderr
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="out").get("Contents", [])]
    assert not [k for k in keys if "doubled" in k], keys  # nothing written


def test_the_shard_service_streams_an_s3_output_while_its_driver_commits_and_keeps_its_acks_there(
    s3, reference
):
    from contextlib import closing

    from recprep.delivery.service import ShardClient, ShardServer
    from recprep.workloads.output import JobRecord, OutputWriter, put_shard, read_job

    fs, _ = s3
    done = run_job(load_job_dict(doc_for("s3://out/served-source")), workers=1)
    assert done.shards == SHARDS
    committed = {r.shard: r for r in read_commits("s3://out/served-source")}
    # a driver that commits the shards one by one while a trainer streams them
    with OutputWriter("s3://out/served") as driver:
        driver.open(JobRecord("served", "served", None, SHARDS), overwrite=False)
        put_shard("s3://out/served", 0, reference["part-00000.parquet"])
        driver.commit(committed[0])
        with ShardServer("s3://out/served", poll_interval=0.2) as server:  # its state: in the bucket
            client = ShardClient(server.location, group="train", rank=0, world_size=1)
            rows, seen = 0, []
            with closing(iter(client)) as stream:
                for shard in stream:
                    seen.append(shard.index)
                    rows += shard.table.num_rows
                    client.ack(shard.index)
                    following = len(seen)
                    if following < SHARDS:  # the next shard is committed only now
                        put_shard("s3://out/served", following, reference[f"part-{following:05d}.parquet"])
                        driver.commit(committed[following])
            assert sorted(seen) == list(range(SHARDS)) and rows == ROWS
            assert server.status()["complete"] and server.consumed() == ROWS
    # the acknowledgements are objects beside the shards: a replaced server (another pod, nothing
    # on its disk) delivers none of them again, and a driver anywhere reads the consumption
    identity = read_job("s3://out/served").identity
    fs.invalidate_cache()
    assert len(fs.ls(f"out/served/_service/{identity[:16]}/train.acks/epoch-00000")) == SHARDS
    with ShardServer("s3://out/served", poll_interval=0.2) as again:
        client = ShardClient(again.location, group="train", rank=0, world_size=1)
        with closing(iter(client)) as stream:
            assert [shard.index for shard in stream] == []
        assert again.consumed() == ROWS


@pytest.mark.parametrize(
    "name, decode, kept",
    [
        ("day.tsv.gz", "splits", ["gzidx", "json"]),  # the plan and the gzip index
        ("day.tsv.zst", "splits", ["json", "zst"]),  # the plan and the splits written again as frames
        ("day.tsv.gz", "once", ["json"]),  # decoded once (one file, one worker): its plan's bounds
    ],
)
def test_a_compressed_input_is_planned_into_the_s3_output_where_its_tasks_read_the_plan(
    s3, criteo_lines, tmp_path, name, decode, kept
):
    import gzip

    import zstandard

    fs, _ = s3
    src = tmp_path / name
    text = b"".join(criteo_lines) * 3  # 30,000 real rows
    compress = gzip.compress if name.endswith(".gz") else zstandard.ZstdCompressor().compress  # one frame
    src.write_bytes(compress(text))
    outs = {}
    prefix = f"out/{name}-{decode}"  # one output per case: the bucket outlives a test
    for uri in (f"s3://{prefix}", str(tmp_path / "local")):
        doc = job_doc(str(src), uri)
        doc["spec"]["output"]["rowsPerShard"] = 4096
        assert run_job(load_job_dict(doc), workers=1, decode=decode).rows_written == 30_000
    outs["s3"] = shards_in(fs, prefix)
    outs["local"] = {p.name: p.read_bytes() for p in sorted((tmp_path / "local").glob("part-*.parquet"))}
    assert len(outs["s3"]) >= 6 and outs["s3"] == outs["local"]
    assert sorted(p.rsplit(".", 1)[1] for p in fs.ls(f"{prefix}/_index")) == kept  # beside the shards


@contextlib.contextmanager
def iam_user(s3, monkeypatch, name: str, statements: list[dict]):
    """Within the block, this process talks to the server as a new IAM user allowed
    ``statements`` (the server checks IAM from then on)."""
    import boto3
    import moto.settings
    import s3fs

    _, env = s3
    iam = boto3.client("iam", endpoint_url=env["AWS_ENDPOINT_URL"])
    iam.create_user(UserName=name)
    document = json.dumps({"Version": "2012-10-17", "Statement": statements})
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=document)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    with monkeypatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        patch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        patch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem.clear_instance_cache()


def test_access_denied_fails_before_any_work_naming_the_uri(s3, monkeypatch):
    from recprep.errors import OutputError

    fs, _ = s3
    fs.pipe("out/denied/notes.txt", b"kept")
    # may read and list the bucket, not write to it
    reader = [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]
    with iam_user(s3, monkeypatch, "reader", reader), pytest.raises(OutputError) as failed:
        run_job(load_job_dict(doc_for("s3://out/denied")), workers=1)
    message = str(failed.value)
    assert (
        message.startswith("spec.output.uri: cannot write to 's3://out/denied' (")
        and "Access Denied" in message
    )
    assert "\n" not in message
    assert fs.ls("out/denied", refresh=True) == ["out/denied/notes.txt"]  # nothing written, nothing lost


def test_a_resumed_run_that_cannot_read_its_committed_shards_fails_and_drops_no_commit(s3, monkeypatch):
    """A read error (access denied, the store unreachable) is not a lost shard: the run that
    checks the committed shards stops naming the file, and every commit record stays."""
    from recprep.errors import OutputError

    fs, _ = s3
    assert run_job(load_job_dict(doc_for("s3://out/unreadable")), workers=1).shards == SHARDS
    statements = [  # may do anything but read the shards
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::out/unreadable/part-*"},
    ]
    with iam_user(s3, monkeypatch, "no-shards", statements), pytest.raises(OutputError) as failed:
        run_job(load_job_dict(doc_for("s3://out/unreadable")), workers=1)
    message = str(failed.value)
    assert message.startswith("s3://out/unreadable/part-00000.parquet: cannot read the committed shard (")
    assert "\n" not in message
    versions = record_versions(fs, "out/unreadable")
    assert len(versions) == SHARDS and set(versions.values()) == {1}, versions  # none dropped, none redone
    assert len(read_commits("s3://out/unreadable")) == SHARDS and not fs.exists("out/unreadable/_lock")


def test_a_session_job_stages_and_deduplicates_in_s3_as_on_a_local_path(s3, tmp_path):
    from recprep.workloads.sources.session_events import write_session_events

    from .test_sessions import doc as session_doc

    fs, _ = s3
    events = write_session_events(tmp_path / "log.csv", 30, 4, 6, items=200, seed=8)
    outs = {}
    for uri in ("s3://out/sessions", str(tmp_path / "local")):
        summary = run_job(load_job_dict(session_doc(events, uri, rows_per_shard=200, dedup=True)), workers=1)
        assert summary.rows_written == 720
    outs["s3"] = shards_in(fs, "out/sessions")
    outs["local"] = {p.name: p.read_bytes() for p in sorted((tmp_path / "local").glob("part-*.parquet"))}
    assert len(outs["s3"]) >= 3 and outs["s3"] == outs["local"]
    fs.invalidate_cache()
    # the plan stays; the staged rows are gone once every shard is committed
    assert fs.find("out/sessions/_sessions") == ["out/sessions/_sessions/plan.json"]
    # a shard lost: the next run stages again (the store may still list the emptied folders)
    fs.rm("out/sessions/part-00001.parquet")
    again = run_job(
        load_job_dict(session_doc(events, "s3://out/sessions", rows_per_shard=200, dedup=True)), workers=1
    )
    assert again.shards_skipped == len(outs["s3"]) - 1 and shards_in(fs, "out/sessions") == outs["local"]


def test_the_driver_of_an_s3_job_reads_the_trainers_consumption_from_the_bucket(s3):
    """The autoscaler's demand signal: what the shard service's groups acknowledged, read by the
    driver from the output's ``_service`` in the bucket (on Kubernetes, the driver and the shard
    service are different pods with nothing on a shared disk)."""
    from types import SimpleNamespace

    from recprep.delivery.service.acks import open_group
    from recprep.workloads.runner import _consumption

    identity = "c" * 64
    ledger = SimpleNamespace(commits={i: SimpleNamespace(rows=100 * (i + 1)) for i in range(3)})
    consumed = _consumption("s3://out/consumption", ledger, identity)
    assert consumed() is None  # no group has joined
    group = open_group(
        f"s3://out/consumption/_service/{identity[:16]}",
        "train",
        identity=identity,
        seed=0,
        world_size=1,
        total=3,
    )
    group.add(0, 0, 0)
    group.add(0, 0, 2)
    assert consumed() == 100 + 300
