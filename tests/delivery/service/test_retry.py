"""A trainer's client rides out a service it cannot reach: started before the service listens,
or across a restart of the service mid-stream, it gets every shard once; an outage longer than
its ``retry`` seconds is one line."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from recprep.delivery.service import ShardClient, ShardServer, ShardServiceError, ShardServiceUnavailable
from recprep.delivery.service.client import FIRST_WAIT, LONGEST_WAIT, _Outage

from .conftest import ROWS, ROWS_PER_SHARD
from .test_server import copy_output, digests

SHARDS = ROWS // ROWS_PER_SHARD
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(job_output, state, port: int) -> ShardServer:
    return ShardServer(str(job_output), state_dir=str(state), port=port, seed=3, batch_rows=700)


def test_a_client_started_before_the_service_listens_waits_for_it(job_output, tmp_path, output_digests):
    port = _free_port()
    c = ShardClient(f"grpc://127.0.0.1:{port}", "g", 0, 1, retry=30)
    servers: list[ShardServer] = []
    late = threading.Timer(1.0, lambda: servers.append(_serve(job_output, tmp_path / "state", port)))
    late.start()
    try:
        t0 = time.monotonic()
        got = []
        for shard in c:
            got.append(shard)
            c.ack(shard.index)
        assert time.monotonic() - t0 >= 1.0 and c.reopened >= 1
        assert sorted(s.index for s in got) == list(range(SHARDS))
        assert (digests([s.table for s in got]) == output_digests).all()
    finally:
        late.join()
        for s in servers:
            s.close()


def test_a_service_restarted_mid_stream_delivers_every_shard_once(job_output, tmp_path, output_digests):
    """The job is running (4 shards committed) when the service restarts under a trainer that
    waits for the next commit; the driver goes on committing while it is down."""
    out, port, state = tmp_path / "out", _free_port(), tmp_path / "state"
    lines = copy_output(job_output, out, committed=4)
    servers = [_serve(out, state, port)]

    def restart():  # the service's pod goes (its streams cut) and comes back on the same address
        servers[0].close()
        with (out / "_ledger.jsonl").open("a") as f:
            f.writelines(lines[4:])
        servers.append(_serve(out, state, port))

    c = ShardClient(f"grpc://127.0.0.1:{port}", "g", 0, 1, retry=30)
    got, restarter = [], threading.Thread(target=restart)
    try:
        for shard in c:
            got.append(shard)
            if len(got) != 3:  # the third is not acknowledged: the new server sends it again
                c.ack(shard.index)
            if len(got) == 4:
                restarter.start()
    finally:
        restarter.join()
        for s in servers:
            s.close()
    indices = [s.index for s in got]
    assert len(servers) == 2 and c.reopened >= 1
    assert sorted(indices) == list(range(SHARDS)), indices  # each once, none lost
    assert (digests([s.table for s in got]) == output_digests).all()


def test_an_outage_longer_than_retry_is_one_line(tmp_path):
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(
        ShardServiceUnavailable, match=rf"127.0.0.1:{port}: shard service unavailable .* for 1 s"
    ):
        list(ShardClient(f"grpc://127.0.0.1:{port}", "g", 0, 1, retry=1.0))
    assert 1.0 <= time.monotonic() - t0 < 10
    with pytest.raises(ShardServiceUnavailable, match="shard service unavailable"):
        ShardClient(f"grpc://127.0.0.1:{port}", "g", 0, 1, retry=0).status()
    with pytest.raises(ShardServiceError, match="retry: expected seconds >= 0"):
        ShardClient(f"grpc://127.0.0.1:{port}", retry=-1)


def test_the_outage_backs_off_and_starts_again_once_the_service_answered():
    now, slept = [0.0], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    outage = _Outage(20.0, clock=lambda: now[0], sleep=sleep)
    error = ShardServiceUnavailable("x: shard service unavailable (refused)")
    with pytest.raises(ShardServiceUnavailable, match=r"refused\) for 20 s"):
        while True:
            outage.wait(error)
    assert slept[0] == FIRST_WAIT and max(slept) == LONGEST_WAIT and sum(slept) == pytest.approx(20.0)
    assert slept == sorted(slept[:-1]) + slept[-1:]  # doubling up to the longest, the rest last
    outage.over()
    slept.clear()
    outage.wait(error)
    assert slept == [FIRST_WAIT]
