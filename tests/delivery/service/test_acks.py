"""The acknowledgement log and the state lock, on a real file system."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recprep.delivery.service.acks import AckLog, StateLock
from recprep.delivery.service.errors import ShardServiceError

JOB = dict(identity="a" * 64, seed=0, world_size=2, total=10)


def test_acks_survive_a_reopen_and_are_idempotent(tmp_path):
    log = AckLog.open(str(tmp_path), "train", **JOB)
    assert log.add(0, 0, 3) and log.add(0, 1, 4) and log.add(1, 0, 3)
    assert not log.add(0, 0, 3)
    log.close()
    again = AckLog.open(str(tmp_path), "train", **JOB)
    assert again.acked(0) == {3, 4} and again.acked(1) == {3} and again.acked(2) == frozenset()
    assert again.counts() == {0: 2, 1: 1}
    lines = (tmp_path / "train.acks.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["worldSize"] == 2 and len(lines) == 4  # header + 3 acks, no duplicate


def test_a_torn_last_line_is_cut_off_and_forgotten(tmp_path):
    log = AckLog.open(str(tmp_path), "train", **JOB)
    log.add(0, 0, 1)
    log.close()
    path = tmp_path / "train.acks.jsonl"
    with path.open("ab") as f:
        f.write(b'{"epoch": 0, "rank": 0, "sh')  # a crash mid-append: never confirmed
    again = AckLog.open(str(tmp_path), "train", **JOB)
    assert again.acked(0) == {1}
    again.add(0, 0, 2)  # the next append starts on a line of its own
    again.close()
    assert AckLog.open(str(tmp_path), "train", **JOB).acked(0) == {1, 2}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"world_size": 3}, "group 'train' has world_size 2"),
        ({"seed": 9}, "group 'train' has seed 0"),
        ({"identity": "b" * 64}, "acknowledgements of a different job"),
    ],
)
def test_a_group_keeps_its_parameters(tmp_path, change, message):
    AckLog.open(str(tmp_path), "train", **JOB).close()
    with pytest.raises(ShardServiceError, match=message):
        AckLog.open(str(tmp_path), "train", **{**JOB, **change})


def test_a_corrupt_line_is_reported_with_its_number(tmp_path):
    AckLog.open(str(tmp_path), "train", **JOB).close()
    with (tmp_path / "train.acks.jsonl").open("a") as f:
        f.write('{"epoch": 0, "rank": 0, "shard": 99}\n')
    with pytest.raises(ShardServiceError, match=r"line 2: shard 99 is not in \[0, 10\)"):
        AckLog.open(str(tmp_path), "train", **JOB)


def test_a_second_server_cannot_take_the_state_directory(tmp_path):
    lock = StateLock(str(tmp_path))
    code = (
        "import sys; from recprep.delivery.service.acks import StateLock\n"
        "try:\n    StateLock(sys.argv[1])\nexcept Exception as e:\n    print(e); sys.exit(7)\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert other.returncode == 7 and "another shard server" in other.stdout
    lock.release()
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=60).returncode == 0


def test_the_trainers_consumption_is_read_without_touching_a_servers_files(tmp_path):
    from recprep.delivery.service.acks import consumed_rows, read_acknowledged

    identity = "f" * 64
    state = tmp_path / "_service"
    (state / identity[:16]).mkdir(parents=True)
    a = AckLog.open(str(state / identity[:16]), "a", identity=identity, seed=0, world_size=1, total=4)
    b = AckLog.open(str(state / identity[:16]), "b", identity=identity, seed=0, world_size=1, total=4)
    for shard in (0, 2):
        a.add(0, 0, shard)
    b.add(0, 0, 1)
    a.add(1, 0, 3)  # a later epoch re-reads: not production's demand
    path = state / identity[:16] / "b.acks.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"epoch": 0, "ra')  # a server mid-append
    size = path.stat().st_size
    assert read_acknowledged(str(state), identity) == {"a": {0: {0, 2}, 1: {3}}, "b": {0: {1}}}
    assert path.stat().st_size == size  # read only: the torn line is the server's to cut
    rows = {0: 10, 1: 20, 2: 30, 3: 40}
    assert consumed_rows(str(state), identity, rows) == 40  # group a: shards 0 and 2
    assert consumed_rows(str(state), "e" * 64, rows) is None  # another job: no group
    assert consumed_rows(str(tmp_path / "nowhere"), identity, rows) is None
    a.close()
    b.close()


# -- in an object store (a real S3 API: moto's server, through s3fs) ----------------------------
@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from ...s3 import moto_s3

    with moto_s3("out") as (fs, _):
        yield fs


def test_in_an_object_store_acks_are_one_object_each_and_survive_a_reopen(s3, request):
    from recprep.delivery.service.acks import ObjectAckLog, open_group

    state = f"s3://out/{request.node.name}/_service/{'a' * 16}"
    log = open_group(state, "train", **JOB)
    assert isinstance(log, ObjectAckLog)
    assert log.add(0, 0, 3) and log.add(0, 1, 4) and log.add(1, 0, 3)
    assert not log.add(0, 0, 3)
    log.close()
    with pytest.raises(ShardServiceError, match="shutting down"):
        log.add(0, 0, 5)
    again = open_group(state, "train", **JOB)  # a new server (a replaced pod)
    assert again.acked(0) == {3, 4} and again.acked(1) == {3} and again.counts() == {0: 2, 1: 1}
    key = state[len("s3://") :]
    assert sorted(s3.ls(f"{key}/train.acks/epoch-00000", refresh=True)) == [
        f"{key}/train.acks/epoch-00000/00003.json",
        f"{key}/train.acks/epoch-00000/00004.json",
    ]
    # a record made by another server meanwhile (its create won): taken as recorded, not an error
    s3.pipe(f"{key}/train.acks/epoch-00000/00007.json", b'{"rank": 1}')
    assert not again.add(0, 1, 7) and again.acked(0) == {3, 4, 7}
    for change, message in [
        ({"world_size": 3}, "group 'train' has world_size 2"),
        ({"seed": 9}, "group 'train' has seed 0"),
        ({"identity": "b" * 64}, "acknowledgements of a different job"),
    ]:
        with pytest.raises(ShardServiceError, match=message):
            open_group(state, "train", **{**JOB, **change})
    s3.pipe(f"{key}/train.acks/epoch-00002/00099.json", b"{}")
    with pytest.raises(ShardServiceError, match=r"epoch-00002/00099.json: not an acknowledgement of a shard"):
        open_group(state, "train", **JOB)


def test_in_an_object_store_a_second_server_is_refused_and_consumption_is_read(s3, request, monkeypatch):
    from recprep.delivery.service.acks import consumed_rows, lock_state, open_group, read_acknowledged

    monkeypatch.setenv("RECPREP_OUTPUT_LEASE", "1.5")
    identity = "f" * 64
    root = f"s3://out/{request.node.name}/_service"
    state = f"{root}/{identity[:16]}"
    lock = lock_state(state)
    try:
        with pytest.raises(ShardServiceError, match="another shard server serves this job's state"):
            lock_state(state)  # the holder renews its lease: refused
    finally:
        lock.release()
    lock_state(state).release()  # released: the next server takes it at once
    a = open_group(state, "a", identity=identity, seed=0, world_size=1, total=4)
    b = open_group(state, "b", identity=identity, seed=0, world_size=1, total=4)
    for shard in (0, 2):
        a.add(0, 0, shard)
    b.add(0, 0, 1)
    a.add(1, 0, 3)  # a later epoch re-reads: not production's demand
    assert read_acknowledged(root, identity) == {"a": {0: {0, 2}, 1: {3}}, "b": {0: {1}}}
    assert read_acknowledged(root, identity, epoch=0) == {"a": {0: {0, 2}}, "b": {0: {1}}}
    rows = {0: 10, 1: 20, 2: 30, 3: 40}
    assert consumed_rows(root, identity, rows) == 40  # group a: shards 0 and 2, from any host
    assert consumed_rows(root, "e" * 64, rows) is None
    assert consumed_rows(f"s3://out/{request.node.name}/nowhere", identity, rows) is None
