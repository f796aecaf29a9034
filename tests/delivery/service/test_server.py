"""The shard service over real Arrow Flight (server and clients in this process) on a job output
made by recprep: assignment, acknowledgements across restarts, takeover, backpressure, errors."""

from __future__ import annotations

import json
import shutil
from contextlib import closing

import numpy as np
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

from recprep.delivery.service import ShardAuthError, ShardClient, ShardServer, ShardServiceError
from recprep.delivery.service.assignment import rank_shards
from recprep.workloads.output import parse_roles

from ...conftest import wait_for
from .conftest import ROWS, ROWS_PER_SHARD
from .rows import row_digests

SHARDS = ROWS // ROWS_PER_SHARD
pytestmark = pytest.mark.integration


@pytest.fixture
def server(job_output, tmp_path):
    with ShardServer(
        str(job_output), state_dir=str(tmp_path / "state"), token="s3cret", seed=11, batch_rows=700
    ) as s:
        yield s


def client(server, rank=0, world_size=1, group="train", epoch=0, token="s3cret"):
    return ShardClient(
        server.location, group=group, rank=rank, world_size=world_size, token=token, epoch=epoch
    )


def consume(c, ack=True, limit=None):
    """(indices, tables) of what ``c`` delivers, acknowledging each when ``ack``."""
    indices, tables = [], []
    with closing(iter(c)) as stream:
        for shard in stream:
            indices.append(shard.index)
            tables.append(shard.table)
            if ack:
                c.ack(shard.index)
            if limit is not None and len(indices) == limit:
                break
    return indices, tables


def digests(tables) -> np.ndarray:
    return np.sort(np.concatenate([row_digests(t) for t in tables])) if tables else np.array([], np.uint64)


def test_two_ranks_get_disjoint_shards_that_together_are_the_job(server, output_digests):
    got = {rank: consume(client(server, rank, 2)) for rank in (0, 1)}
    i0, i1 = set(got[0][0]), set(got[1][0])
    assert not i0 & i1 and i0 | i1 == set(range(SHARDS))
    assert abs(len(i0) - len(i1)) <= 1
    # the job is complete, so each rank's order is exactly the epoch's seeded order
    for rank in (0, 1):
        assert got[rank][0] == rank_shards(SHARDS, 11, 0, rank, 2).tolist()
    assert (digests(got[0][1] + got[1][1]) == output_digests).all()
    # every row arrived as the job wrote it (values, not only counts)
    one = got[0][0][0]
    assert got[0][1][0].equals(pq.read_table(server.shards.path(one)).replace_schema_metadata(None))
    # the job's feature roles reach the trainer with the stream's schema, and nothing else of the file's
    roles = parse_roles(pq.read_schema(server.shards.path(one)).metadata)
    assert roles is not None and roles.label == "label" and roles.dense
    assert got[0][1][0].schema.metadata == roles.metadata()
    status = server.status()
    assert status["complete"] and status["groups"]["train"] == {"worldSize": 2, "acked": {"0": SHARDS}}


def test_epochs_have_their_own_seeded_order_and_acks(server):
    e0, _ = consume(client(server, epoch=0))
    e1, _ = consume(client(server, epoch=1), ack=False)
    assert sorted(e0) == sorted(e1) == list(range(SHARDS)) and e0 != e1
    assert consume(client(server, epoch=0))[0] == []  # epoch 0 all acknowledged
    assert consume(client(server, epoch=1))[0] == e1  # epoch 1 nothing acknowledged: all again


def test_unacknowledged_shards_come_again_whole_and_acknowledged_ones_never(
    job_output, tmp_path, output_digests
):
    state = str(tmp_path / "state")
    with ShardServer(str(job_output), state_dir=state, batch_rows=700) as s:
        c = ShardClient(s.location, "g", 0, 1)
        first, tables = consume(c, ack=False, limit=5)
        for i in first[:3]:
            c.ack(i)
        c.ack(first[0])  # idempotent
    # the server restarts: acknowledgements were on disk
    with ShardServer(str(job_output), state_dir=state, batch_rows=700) as s:
        rest, rest_tables = consume(ShardClient(s.location, "g", 0, 1))
    assert rest[:2] == first[3:5]  # unacknowledged shards first again, in order, whole
    assert not set(rest) & set(first[:3]) and set(rest) | set(first[:3]) == set(range(SHARDS))
    assert (digests(tables[:3] + rest_tables) == output_digests).all()


def test_a_new_consumer_of_the_same_rank_takes_over(server):
    old = client(server)
    stream = iter(old)
    shard = next(stream)
    new = client(server)
    new_stream = iter(new)
    taken = next(new_stream)
    assert taken.index == shard.index  # not acknowledged: the new consumer gets it again
    with pytest.raises(ShardServiceError, match="taken over by a newer consumer"):
        old.ack(shard.index)
    with pytest.raises(ShardServiceError, match="taken over by a newer consumer"):
        for _ in stream:
            pass
    new.ack(taken.index)
    new_stream.close()
    stream.close()


def test_bearer_token_is_required(server):
    with pytest.raises(ShardAuthError, match="unauthenticated: wrong bearer token"):
        list(client(server, token="guess"))
    with pytest.raises(ShardAuthError, match="needs a bearer token .* none was sent"):
        list(client(server, token=None))
    with pytest.raises(ShardAuthError):
        client(server, token="guess").ack(0)
    raw = flight.connect(server.location)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(raw.do_action(flight.Action("status", b"")))


def test_group_parameters_are_checked_by_the_server(server):
    consume(client(server, 0, 2), limit=1)
    with pytest.raises(ShardServiceError, match="group 'train' has world_size 2; got world_size 3"):
        list(client(server, 0, 3))
    mine = rank_shards(SHARDS, 11, 0, 0, 2).tolist()
    theirs = rank_shards(SHARDS, 11, 0, 1, 2).tolist()
    c = client(server, 0, 2)
    consume(c, ack=False, limit=1)
    with pytest.raises(ShardServiceError, match=f"shard {theirs[0]} belongs to rank 1 of group 'train'"):
        c.ack(theirs[0])
    with pytest.raises(ShardServiceError, match=rf"shard {SHARDS} is not in \[0, {SHARDS}\)"):
        c.ack(SHARDS)
    c.ack(mine[1])


def test_the_buffer_is_bounded_when_the_trainer_stops_reading(job_output, tmp_path):
    # 200 shards (one shard file of the job under 200 names, ~170 MB of Arrow data): far more
    # than the stream's queue and gRPC's flow-control window hold
    out = tmp_path / "big"
    out.mkdir()
    entry = json.loads((job_output / "_ledger.jsonl").read_text().splitlines()[0])
    lines = []
    for i in range(200):
        shutil.copyfile(job_output / entry["file"], out / f"part-{i:05d}.parquet")
        lines.append(json.dumps({**entry, "shard": i, "file": f"part-{i:05d}.parquet"}) + "\n")
    (out / "_ledger.jsonl").write_text("".join(lines))
    (out / "_job.json").write_text(json.dumps({"identity": "b" * 64, "name": "big", "shards": 200}))
    with ShardServer(str(out), state_dir=str(tmp_path / "state"), batch_rows=1000, buffer_batches=2) as s:
        c = ShardClient(s.location, "slow", 0, 1)
        consumed = 0
        with closing(iter(c)) as stream:
            for _ in range(2):
                consumed += next(stream).nbytes
                (st,) = wait_for(
                    lambda: [x for x in s.status()["streams"] if x["bufferedBatches"] == 2],
                    timeout=30,
                    message="the stream's buffer to fill",
                )
                # the reader waits with a full queue; what the trainer has not read is in that
                # queue and in gRPC's flow-control window: megabytes, not the job
                assert st["shardsSent"] < 200 and st["bytesSent"] - consumed < 64e6
        # the trainer went away: the stream ends and the server stops at once
        wait_for(lambda: not s.status()["streams"], timeout=30, message="the stream to end")
        assert s.close(grace=10)


def test_not_a_job_output(tmp_path):
    with pytest.raises(ShardServiceError, match=r"not a recprep job output \(no _job.json\)"):
        ShardServer(str(tmp_path))
    with pytest.raises(ShardServiceError, match="does not exist"):
        ShardServer(str(tmp_path / "nope"))


def test_a_port_it_cannot_listen_on_is_one_line_saying_why(server, job_output, tmp_path):
    """gRPC says only "Server did not start properly" for a busy port or an unknown host; the
    state lock is released, and a second server's refusal does not blame a read-only output."""
    state = str(tmp_path / "other")
    with pytest.raises(
        ShardServiceError, match=rf"cannot listen on 127.0.0.1:{server.port} \(Address already in use\)"
    ):
        ShardServer(str(job_output), port=server.port, state_dir=state)
    with pytest.raises(ShardServiceError, match=r"port: expected 0 to 65535 \(0: any free port\), got 99999"):
        ShardServer(str(job_output), port=99999, state_dir=state)
    with pytest.raises(ShardServiceError, match="another shard server") as refused:
        ShardServer(str(job_output), state_dir=server.state_root)
    assert "read-only" not in str(refused.value)
    ShardServer(str(job_output), state_dir=state).close()  # the failed tries left no lock behind


def copy_output(src, dst, committed: int):
    """A job output as it is while the driver runs: ``committed`` ledger lines so far."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_service"))
    lines = (src / "_ledger.jsonl").read_text().splitlines(keepends=True)
    (dst / "_ledger.jsonl").write_text("".join(lines[:committed]))
    return lines


def test_a_stream_waits_for_commits_then_times_out_naming_the_progress(job_output, tmp_path):
    out = tmp_path / "out"
    lines = copy_output(job_output, out, committed=4)
    with ShardServer(str(out), state_dir=str(tmp_path / "state"), wait_timeout=1.0, poll_interval=0.05) as s:
        c = ShardClient(s.location, "g", 0, 1)
        got = []
        with pytest.raises(
            ShardServiceError, match=rf"no shard committed for 1 s: job 'service-test' has 4/{SHARDS} shards"
        ):
            for shard in c:
                got.append(shard.index)
                c.ack(shard.index)
        assert sorted(got) == sorted(json.loads(x)["shard"] for x in lines[:4])
        with (out / "_ledger.jsonl").open("a") as f:  # the driver goes on
            f.writelines(lines[4:])
        rest, _ = consume(c)
        assert sorted(got + rest) == list(range(SHARDS))


def test_a_corrupt_shard_is_reported_with_its_file(job_output, tmp_path):
    out = tmp_path / "out"
    lines = copy_output(job_output, out, committed=SHARDS)
    name = json.loads(lines[0])["file"]
    data = bytearray((out / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / name).write_bytes(bytes(data))
    with ShardServer(str(out), state_dir=str(tmp_path / "state")) as s:
        with pytest.raises(
            ShardServiceError, match=f"{name}: content does not match its sha256 in _ledger.jsonl"
        ):
            consume(ShardClient(s.location, "g", 0, 1))


def test_an_empty_shard_is_delivered_and_acknowledged(job_output, tmp_path):
    out = tmp_path / "out"
    lines = copy_output(job_output, out, committed=SHARDS)
    entry = json.loads(lines[0])
    table = pq.read_table(out / entry["file"]).slice(0, 0)
    pq.write_table(table, out / entry["file"])
    entry.update(rows=0, sha256=None)
    lines[0] = json.dumps(entry) + "\n"
    (out / "_ledger.jsonl").write_text("".join(lines))
    with ShardServer(str(out), state_dir=str(tmp_path / "state")) as s:
        c = ShardClient(s.location, "g", 0, 1)
        rows = {}
        for shard in c:
            rows[shard.index] = shard.table.num_rows
            c.ack(shard.index)
    assert rows[entry["shard"]] == 0 and len(rows) == SHARDS


def test_out_of_range_members_and_bugs_reach_a_raw_client_as_one_line(server, monkeypatch):
    """What bypasses the client's own checks is refused by the server, in one line, with no
    traceback or server path in it."""
    options = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer s3cret")])
    raw = flight.connect(server.location)
    member = {"group": "g", "rank": 0, "world_size": 2**70, "epoch": 0, "session": "s"}
    with pytest.raises(flight.FlightServerError) as refused:
        list(raw.do_get(flight.Ticket(json.dumps(member).encode()), options).read_all())
    assert "world_size: expected 1 to 1048576" in str(refused.value)
    assert "Traceback" not in str(refused.value) and "\n" not in str(refused.value).split(". Detail")[0]

    def broken(*_a, **_k):
        raise OverflowError("a bug")

    monkeypatch.setattr(type(server), "status", broken)
    with pytest.raises(flight.FlightInternalError) as bug:
        list(raw.do_action(flight.Action("status", b""), options))
    assert "internal error in the shard service: OverflowError: a bug" in str(bug.value)
    assert "Traceback" not in str(bug.value) and ".py" not in str(bug.value)


def test_consumed_counts_the_rows_a_group_acknowledged_in_its_first_epoch(server):
    assert server.consumed() is None  # no group has joined
    indices, tables = consume(client(server), limit=5)
    assert server.consumed() == sum(t.num_rows for t in tables) == 5 * ROWS_PER_SHARD
    consume(client(server, group="other"), limit=2)  # the most over the groups
    assert server.consumed() == 5 * ROWS_PER_SHARD
