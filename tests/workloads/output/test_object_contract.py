"""The output contract in an object store (a real S3 API: moto's server, through s3fs; a real
Azure Blob API: Azurite, through adlfs): objects are put whole, a commit is a conditional create
that no second run repeats, the lease refuses a live holder, is taken over when it expires
unrenewed, and a holder that lost it stops; readers see only committed shards."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from recprep.errors import OutputError
from recprep.workloads.output import (
    CommitRecord,
    JobRecord,
    ObjectStore,
    OutputWriter,
    follow,
    open_store,
    put_shard,
    read_commits,
    read_job,
    read_shard,
)
from recprep.workloads.output.lease import ObjectLease
from recprep.workloads.output.ledger import ObjectLedger, record_name

from ...azurite import available as azurite_missing
from ...azurite import azurite
from ...s3 import moto_s3


@pytest.fixture(scope="module", params=["s3", "az"])
def store_fs(request):
    """(scheme, the client's file system) of a fresh store with a bucket (container) ``out``."""
    if request.param == "s3":
        pytest.importorskip("s3fs")
        pytest.importorskip("moto.server")
        with moto_s3("out") as (fs, _):
            yield "s3", fs
    else:
        if why := azurite_missing():
            pytest.skip(why)
        with azurite("out") as (fs, _):
            yield "az", fs


@pytest.fixture
def location(store_fs, request):
    """A fresh prefix per test."""
    return f"{store_fs[0]}://out/{request.node.originalname}"


def record(shard: int, payload: bytes) -> CommitRecord:
    return CommitRecord(shard, f"part-{shard:05d}.parquet", 10, sha256=hashlib.sha256(payload).hexdigest())


def test_the_store_of_a_uri_puts_reads_lists_and_creates_once(store_fs, location):
    store = open_store(location + "/")
    assert isinstance(store, ObjectStore) and store.location == location
    store.put("a/b.json", b"1")
    assert store.read("a/b.json") == b"1" and store.names("a") == ["b.json"]
    assert store.create("a/c.json", b"2") and not store.create("a/c.json", b"3")
    assert store.read("a/c.json") == b"2"
    tag = store.etag("a/c.json")
    assert store.replace("a/c.json", b"4", tag) and not store.replace("a/c.json", b"5", tag)
    assert store.read("a/c.json") == b"4"
    with pytest.raises(FileNotFoundError):
        store.read("a/none")
    assert store.names("nothing") == [] and store.read_many(["a/b.json", "a/none"]) == {"a/b.json": b"1"}


def test_a_replace_is_refused_by_the_store_itself_when_the_object_changed(store_fs, location, monkeypatch):
    """The lease's renewal: on S3 and Azure the store checks the version (If-Match), so a write
    between a writer's look and its replace is never overwritten, even when the look saw no
    change (a read, a compare, then a write would lose it)."""
    store = open_store(location)
    store.put("_lock", b"mine")
    seen = store.etag("_lock")
    store.put("_lock", b"theirs")  # another writer, after the look
    monkeypatch.setattr(store, "etag", lambda name: seen)  # the look itself would not notice
    assert not store.replace("_lock", b"renewed", seen)
    assert store.read("_lock") == b"theirs"
    monkeypatch.undo()
    assert store.replace("_lock", b"renewed", store.etag("_lock")) and store.read("_lock") == b"renewed"


def test_a_commit_is_made_once_whoever_makes_it(store_fs, location):
    store = open_store(location)
    a, b = ObjectLedger(store), ObjectLedger(open_store(location))
    first = record(3, b"shard three")
    assert a.commit(first) == first
    # a second run (or a retried task) committing the same bytes finds the record there
    again = CommitRecord(3, first.file, 10, sha256=first.sha256, placement={"worker": "other"})
    assert b.commit(again) == first
    fs, key = store_fs[1], location.split("://", 1)[1]
    assert fs.ls(f"{key}/_ledger", detail=False, refresh=True) == [f"{key}/{record_name(3)}"]
    # other bytes under the same shard: never silently replaced
    with pytest.raises(OutputError, match="shard 3 is committed with other contents"):
        b.commit(record(3, b"something else"))


def test_readers_see_only_committed_shards(store_fs, location):
    with OutputWriter(location) as w:
        w.open(JobRecord("id-1", "job", None, 3), overwrite=False)
        for shard in range(3):
            payload = f"shard {shard}".encode()
            put_shard(location, shard, payload)
            if shard != 1:  # shard 1 is in place but its driver died before recording it
                w.commit(record(shard, payload))
    assert read_job(location).shards == 3
    committed = read_commits(location)
    assert [r.shard for r in committed] == [0, 2]
    assert read_shard(location, committed[1]) == b"shard 2"
    # a record whose object is gone is not offered to readers, and the next run redoes it
    open_store(location).remove("part-00002.parquet")
    assert [r.shard for r in read_commits(location)] == [0]
    with OutputWriter(location) as w:
        w.open(JobRecord("id-1", "job", None, 3), overwrite=False)
        assert sorted(w.commits) == [0] and [r.shard for r in w.redone] == [2]
        assert not open_store(location).exists(record_name(2))  # dropped: its redo can commit
        # a changed object fails its check against the record
    open_store(location).put("part-00000.parquet", b"tampered")
    with pytest.raises(OutputError, match="content does not match its sha256 in _ledger/part-00000.json"):
        read_shard(location, committed[0])


def test_a_follower_sees_each_new_commit_once_and_notices_a_replaced_output(store_fs, location):
    ledger = ObjectLedger(open_store(location))
    tail = follow(location)
    ledger.commit(record(0, b"a"))
    assert not tail.changed_underneath() and [r.shard for r in tail.read()] == [0]
    ledger.commit(record(1, b"b"))
    ledger.commit(record(2, b"c"))
    assert [r.shard for r in tail.read()] == [1, 2] and tail.read() == []
    ledger.drop(1)  # --overwrite, or a shard being redone
    assert tail.changed_underneath()
    tail.restart()
    assert [r.shard for r in tail.read()] == [0, 2]


def test_a_second_run_waits_for_a_live_lease_and_is_refused(store_fs, location):
    holder = ObjectLease(open_store(location), seconds=1.5)
    holder.acquire({"job": "first", "identity": "abc"})
    try:
        started = time.monotonic()
        with pytest.raises(OutputError, match=r"in use by job 'first' \(identity abc"):
            ObjectLease(open_store(location), seconds=1.5).acquire({"job": "second", "identity": "def"})
        assert time.monotonic() - started < 3  # refused once it saw the holder renew
        holder.check()
    finally:
        holder.release()
    assert not open_store(location).exists("_lock")


def test_an_expired_lease_is_taken_over_and_its_old_holder_stops(store_fs, location):
    old = ObjectLease(open_store(location), seconds=1)
    old.acquire({"job": "job", "identity": "abc"})
    old._stop.set()  # the old holder stops renewing: its process paused, or was killed
    old._thread.join()
    started = time.monotonic()
    new = ObjectLease(open_store(location), seconds=30)
    new.acquire({"job": "job", "identity": "abc"})  # waits out the old lease, then takes it over
    assert time.monotonic() - started < 5
    held = json.loads(open_store(location).read("_lock"))
    assert held["lease"] == 30 and held["pid"]
    assert not old.renew()  # the old holder wakes up: its renewal fails
    with pytest.raises(OutputError, match="lease was taken over by job 'job'"):
        old.check()
    old.release()  # does not remove the new holder's lease
    assert open_store(location).exists("_lock")
    new.release()
    assert not open_store(location).exists("_lock")


def test_a_holder_whose_lease_was_taken_over_and_given_back_meanwhile_says_so(store_fs, location):
    old = ObjectLease(open_store(location), seconds=1)
    old.acquire({"job": "job", "identity": "abc"})
    old._stop.set()  # paused past its lease
    old._thread.join()
    new = ObjectLease(open_store(location), seconds=30)
    new.acquire({"job": "job", "identity": "abc"})
    new.release()  # the run that took it over is done: no _lock names it any more
    assert not old.renew()
    with pytest.raises(
        OutputError, match="lease was taken over by another run, which has released it since;"
    ):
        old.check()
    old.release()


@pytest.mark.parametrize("value", ["soon", "inf", "nan", "1e300"])
def test_a_lease_length_that_is_no_number_of_seconds_is_refused_naming_the_variable(
    store_fs, location, monkeypatch, value
):
    monkeypatch.setenv("RECPREP_OUTPUT_LEASE", value)  # inf: the renewing thread died of it
    with pytest.raises(OutputError, match=f"^RECPREP_OUTPUT_LEASE: not a number of seconds: '{value}'$"):
        OutputWriter(location)


def test_a_lease_taken_but_not_readable_is_given_back(store_fs, location, monkeypatch):
    """Credentials that may write but not read objects (no s3:GetObject): the lease is created,
    its version cannot be read, and the run fails; the lease is not left for the next run to
    wait out."""
    store = open_store(location)

    def denied(name):
        raise PermissionError(13, "Access Denied")

    monkeypatch.setattr(store, "etag", denied)
    with pytest.raises(OutputError, match=r"_lock: cannot take the output's lease \(Access Denied\)"):
        ObjectLease(store, seconds=30).acquire({"job": "job", "identity": "abc"})
    assert not open_store(location).exists("_lock")


def test_a_writer_that_lost_its_lease_commits_nothing_more(store_fs, location, monkeypatch):
    monkeypatch.setenv("RECPREP_OUTPUT_LEASE", "1")
    a = OutputWriter(location)
    a.open(JobRecord("id-1", "job", None, 2), overwrite=False)
    a._lock._stop.set()
    a._lock._thread.join()
    b = OutputWriter(location)
    b.open(JobRecord("id-1", "job", None, 2), overwrite=False)
    try:
        put_shard(location, 0, b"zero")
        b.commit(record(0, b"zero"))
        a._lock.renew()
        with pytest.raises(OutputError, match="taken over"):
            a.commit(record(1, b"one"))
        assert [r.shard for r in read_commits(location)] == [0]
    finally:
        a.close()
        b.close()
