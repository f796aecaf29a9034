"""The bar: a trainer killed (SIGKILL) mid-stream and restarted consumes every row exactly once;
row count and per-row digests match the job's output. Trainers are real processes
(``trainer_proc.py``), the server runs in this process and is itself restarted once."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from recprep.delivery.service import ShardServer
from recprep.delivery.service.assignment import rank_shards

from ...conftest import REPO
from .conftest import ROWS, ROWS_PER_SHARD

SHARDS = ROWS // ROWS_PER_SHARD
BATCH_ROWS = 500  # 4 record batches per shard
pytestmark = pytest.mark.integration


class Trainer:
    def __init__(self, location: str, state: Path, *args: str):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.delivery.service.trainer_proc",
                location,
                "--state",
                str(state),
                *args,
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_line(self, prefix: str, timeout: float = 120) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"trainer printed no {prefix!r} line within {timeout}s") from None
            if line is None:
                raise AssertionError(
                    f"trainer ended (rc {self.proc.wait()}) before {prefix!r}: {self.proc.stderr.read()}"
                )
            if line.startswith(prefix):
                return line

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def result(self) -> dict:
        line = self.wait_line("{")
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()
        return json.loads(line)


def held(state: Path) -> dict[int, np.ndarray]:
    return {int(p.stem.split("-")[1]): np.load(p) for p in state.glob("shard-*.npy")}


def acked(state_dir: Path, group: str) -> list[int]:
    (path,) = state_dir.glob(f"*/{group}.acks.jsonl")
    return [json.loads(line)["shard"] for line in path.read_text().splitlines()[1:]]


def test_a_trainer_killed_twice_and_a_server_restart_lose_and_repeat_nothing(
    job_output, tmp_path, output_digests
):
    state_dir, trainer_state = tmp_path / "service", tmp_path / "trainer"
    order = rank_shards(SHARDS, 0, 0, 0, 1).tolist()
    server = ShardServer(str(job_output), state_dir=str(state_dir), batch_rows=BATCH_ROWS)
    try:
        # 1. killed in the middle of its third shard: two shards saved and acknowledged
        t = Trainer(server.location, trainer_state, "--block-mid-shard", "10")
        assert t.wait_line("BLOCKED").split() == ["BLOCKED", "mid-shard", str(order[2])]
        t.sigkill()
        assert sorted(held(trainer_state)) == sorted(order[:2]) and acked(state_dir, "train") == order[:2]
        # the server restarts too: the acknowledgements are on disk
        server.close()
        server = ShardServer(str(job_output), state_dir=str(state_dir), batch_rows=BATCH_ROWS)
        # 2. killed after saving its third shard of this run, before acknowledging it
        t = Trainer(server.location, trainer_state, "--block-before-ack", "3")
        assert t.wait_line("BLOCKED").split() == ["BLOCKED", "before-ack", str(order[4])]
        t.sigkill()
        assert acked(state_dir, "train") == order[:4] and sorted(held(trainer_state)) == sorted(order[:5])
        # 3. runs to the end
        result = Trainer(server.location, trainer_state).result()
    finally:
        server.close()
    # the shard saved but not acknowledged came again (and was not counted again); nothing
    # acknowledged came again; the half-consumed shard came again whole
    assert result["received"] == order[4:] and result["already"] == [order[4]]
    assert sorted(acked(state_dir, "train")) == list(range(SHARDS))  # each once
    state = held(trainer_state)
    assert sorted(state) == list(range(SHARDS))
    digests = np.sort(np.concatenate(list(state.values())))
    assert len(digests) == ROWS and (digests == output_digests).all()


def test_two_ranks_one_killed_mid_stream_cover_the_job_once(job_output, tmp_path, output_digests):
    with ShardServer(
        str(job_output), state_dir=str(tmp_path / "service"), batch_rows=BATCH_ROWS, seed=3
    ) as server:
        common = ("--world-size", "2", "--group", "pair")
        steady = Trainer(server.location, tmp_path / "rank0", "--rank", "0", *common)
        killed = Trainer(
            server.location, tmp_path / "rank1", "--rank", "1", "--block-mid-shard", "6", *common
        )
        killed.wait_line("BLOCKED")
        killed.sigkill()
        restarted = Trainer(server.location, tmp_path / "rank1", "--rank", "1", *common)
        r0, r1 = steady.result(), restarted.result()
    s0, s1 = held(tmp_path / "rank0"), held(tmp_path / "rank1")
    assert not set(s0) & set(s1) and sorted(set(s0) | set(s1)) == list(range(SHARDS))
    assert sorted(s0) == sorted(rank_shards(SHARDS, 3, 0, 0, 2).tolist())
    assert r1["already"] == [] and len(r1["received"]) == len(s1) - 1  # one shard was done before the kill
    assert r0["rows"] + sum(len(d) for d in s1.values()) == ROWS
    digests = np.sort(np.concatenate([*s0.values(), *s1.values()]))
    assert (digests == output_digests).all()
