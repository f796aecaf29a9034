"""`recprep serve` and `recprep run --serve` as a user runs them: exit codes, one-line errors,
SIGTERM ends the server cleanly, and the driver serves its shards while the job runs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import yaml

from recprep.delivery.service import ShardClient, ShardServer, ShardServiceError
from recprep.delivery.service.running import check_port_free, parse_listen, resolve_token

from ...conftest import REPO, wait_for
from .conftest import ROWS, synthetic_doc


def recprep(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "recprep.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve", "{tmp}"], r"not a recprep job output \(no _job.json\)"),
        (
            ["serve", "{out}", "--token-env", "RECPREP_TEST_UNSET_VAR"],
            "--token-env RECPREP_TEST_UNSET_VAR: the environment variable is not set",
        ),
        (["run", "{job}", "--serve", "localhost:http"], "--serve: expected PORT or HOST:PORT"),
    ],
)
def test_bad_arguments_get_one_clear_line(job_output, tmp_path, args, message):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(synthetic_doc(tmp_path / "out", rows=100)))
    args = [a.format(tmp=tmp_path, out=job_output, job=job) for a in args]
    res = recprep(*args)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert re.search(message, lines[0]), lines[0]


def test_options_are_checked_with_the_option_named(job_output, monkeypatch):
    monkeypatch.setenv("RECPREP_SHARD_TOKEN", "from-env")
    assert resolve_token(None, None) == "from-env" and resolve_token("given", None) == "given"
    with pytest.raises(ShardServiceError, match="give --token or --token-env, not both"):
        resolve_token("a", "X")
    with pytest.raises(ShardServiceError, match="--token: the token is empty"):
        resolve_token("", None)
    assert parse_listen("8815") == ("127.0.0.1", 8815) and parse_listen("0.0.0.0:9") == ("0.0.0.0", 9)
    assert parse_listen("[::1]:7") == ("::1", 7)
    with pytest.raises(ShardServiceError, match="port 70000 is not in 0..65535"):
        parse_listen("70000")
    for option in ("batch_rows", "buffer_batches"):
        with pytest.raises(ShardServiceError, match=f"{option}: expected a positive integer, got 0"):
            ShardServer(str(job_output), **{option: 0})
    with pytest.raises(ShardServiceError, match="wait_timeout: expected a positive number"):
        ShardServer(str(job_output), wait_timeout=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(
            ShardServiceError, match=f"--serve 127.0.0.1:{s.getsockname()[1]}: cannot listen there"
        ):
            check_port_free("127.0.0.1", s.getsockname()[1])


@pytest.mark.integration
def test_serve_streams_with_a_token_from_the_environment_and_exits_on_sigterm(job_output, tmp_path):
    port = free_port()
    env = {**os.environ, "MY_TOKEN": "t0ken"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recprep.cli",
            "serve",
            str(job_output),
            "--port",
            str(port),
            "--token-env",
            "MY_TOKEN",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = ShardClient(f"grpc://127.0.0.1:{port}", "cli", token="t0ken")
        wait_for(lambda: _reachable(client), timeout=60, message="recprep serve to listen")
        rows = 0
        for shard in client:
            rows += shard.table.num_rows
            client.ack(shard.index)
        assert rows == ROWS
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "serving job service-test (18/18 shards committed)" in err and "bearer token required" in err


def _reachable(client: ShardClient) -> bool:
    try:
        client.status()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def run_serving(job, group: str):
    """``recprep run JOB --workers 1 --serve`` on a free port, with a client of ``group`` once its
    server answers: (process, its stderr lines so far, the client). SIGTERM at the end; the
    process's stdout is left to read."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recprep.cli",
            "run",
            str(job),
            "--workers",
            "1",
            "--serve",
            f"127.0.0.1:{port}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "RECPREP_SHARD_TOKEN"},
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        client = ShardClient(f"grpc://127.0.0.1:{port}", group)
        wait_for(
            lambda: _reachable(client) or proc.poll() is not None,
            timeout=120,
            message="the driver's shard server",
        )
        assert proc.poll() is None, "".join(stderr)
        yield proc, stderr, client
        # the last shard reaches the client before the driver has finished its job (ledger,
        # summary, cluster): a SIGTERM then interrupts the run, not the serving after it
        wait_for(
            lambda: any("done: still serving" in line for line in stderr) or proc.poll() is not None,
            timeout=60,
            message="the job to end",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(10)  # the reader owns stderr until its end (communicate() would close it under it)


@pytest.mark.integration
def test_run_serve_delivers_shards_while_the_job_runs(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(synthetic_doc(tmp_path / "out", rows=600_000, rows_per_shard=4000))
    )  # long enough to be joined mid-run
    with run_serving(job, "live") as (proc, stderr, client):
        during = []  # for each shard: was the job still running when it arrived?
        rows = 0
        for shard in client:
            during.append(not any("done: still serving" in line for line in stderr))
            rows += shard.table.num_rows
            client.ack(shard.index)
        assert rows == 600_000 and len(during) == 150
        assert during[0], "the first shard arrived only after the job ended"
    out = proc.stdout.read()
    assert proc.returncode == 0, "".join(stderr)
    assert "rows written" in out and "600,000" in out


@pytest.mark.integration
def test_run_serve_of_a_session_job_serves_once_its_sessions_are_cut(tmp_path):
    """A session job writes _job.json only after grouping its events: the driver's server starts
    then, not at the grouping phase (where it found no job output and the run failed)."""
    from recprep.workloads.sources.session_events import write_session_events

    from ...workloads.test_sessions import doc

    events = write_session_events(tmp_path / "log.csv", 30, 4, 5, items=200, seed=1)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(doc(events, tmp_path / "out", rows_per_shard=100, dedup=True)))
    with run_serving(job, "sessions") as (proc, stderr, client):
        rows = 0
        for shard in client:
            rows += shard.table.num_rows
            client.ack(shard.index)
        assert rows == 30 * 4 * 5
    assert proc.returncode == 0, "".join(stderr)
