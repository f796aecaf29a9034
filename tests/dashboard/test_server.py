"""The dashboard's server: its routes, read only, and /metrics against the ledger of a real run."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from recprep.dashboard.history import JobHistory, Prices
from recprep.dashboard.local import LocalMonitor
from recprep.dashboard.metrics import parse
from recprep.dashboard.server import Board, DashboardServer, parse_address, plotly_path
from recprep.progress import ProgressPublisher
from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job

from ..conftest import job_doc

pytest.importorskip("prometheus_client")


def get(url: str, method: str = "GET") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture()
def server():
    board = Board()
    with DashboardServer(board) as started:
        yield started


def test_the_page_its_files_and_the_api_are_served_read_only(server):
    history = server.board.add(JobHistory("ns", "clicks", Prices()))
    history.record(0.0, {"phase": "Running", "progress": {"rows": 10, "shardsDone": 1, "shardsTotal": 4}})
    status, headers, body = get(server.url)
    assert status == 200 and b"recprep autoscaler" in body and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]  # no CDN, no other host
    assert get(server.url + "static/app.js")[0] == 200 and get(server.url + "static/style.css")[0] == 200
    if plotly_path() is not None:
        status, _, body = get(server.url + "static/plotly.min.js")
        assert status == 200 and len(body) > 1_000_000  # the installed package's bundle
    status, _, body = get(server.url + "api/jobs")
    (row,) = json.loads(body)["jobs"]
    assert (row["namespace"], row["name"], row["phase"], row["progress"]) == ("ns", "clicks", "Running", 0.25)
    status, _, body = get(server.url + "api/jobs/ns/clicks")
    assert status == 200 and json.loads(body)["figures"]["shardsDone"] == 1
    assert get(server.url + "api/jobs/ns/other")[0] == 404
    assert get(server.url + "static/../server.py")[0] == 404
    assert get(server.url + "api/jobs", method="POST")[0] == 405
    assert get(server.url + "api/jobs/ns/clicks", method="DELETE")[0] == 405
    status, headers, body = get(server.url + "api/jobs", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert get(server.url + "healthz")[2] == b"ok\n"


def test_addresses_are_host_and_port():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9") == ("0.0.0.0", 9)
    assert parse_address("[::1]:9") == ("::1", 9)
    for bad in ("", "host:", "host:http", "99999"):
        with pytest.raises(ValueError, match="expected \\[HOST:\\]PORT"):
            parse_address(bad)


@pytest.mark.integration
def test_the_metrics_of_a_real_run_parse_and_agree_with_its_ledger(tmp_path: Path, server):
    doc = job_doc("synthetic://criteo?rows=60000&seed=3", str(tmp_path / "out"))
    doc["metadata"]["name"] = "metered"
    doc["spec"]["output"]["rowsPerShard"] = 10_000
    doc["spec"]["pools"] = {"cpu": {"min": 1, "max": 2}}
    doc["spec"]["autoscale"] = {"interval": 1}
    job = load_job_dict(doc)
    monitor = LocalMonitor(job, server.board)
    summary = run_job(job, progress=ProgressPublisher(sinks={"the dashboard": monitor.sink}), monitor=monitor)
    status, headers, body = get(server.url + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    samples = parse(body.decode())
    labels = (("job", "metered"), ("namespace", "local"))
    commits = [json.loads(line) for line in (tmp_path / "out" / "_ledger.jsonl").read_text().splitlines()]
    commits = {c["shard"]: c for c in commits if "shard" in c}.values()
    assert samples[("recprep_job_shards_committed_total", labels)] == len(commits) == 6
    assert samples[("recprep_job_rows_total", labels)] == sum(c["rows"] + c["badRows"] for c in commits)
    assert samples[("recprep_job_rows_total", labels)] == summary.rows_read == 60_000
    assert samples[("recprep_job_progress_ratio", labels)] == 1.0
    assert samples[("recprep_job_cost_dollars_total", labels)] > 0
    cpu = tuple(sorted((*labels, ("pool", "cpu"))))
    assert samples[("recprep_pool_workers", cpu)] == 0  # the run is over: its cluster is gone
    # the page's document of the finished run
    doc = json.loads(get(server.url + "api/jobs/local/metered")[2])
    assert doc["figures"]["phase"] == "Succeeded" and doc["figures"]["stage"] == "done"
    assert max(doc["series"]["workers"]["cpu"]) >= 1 and doc["links"]["dask"].startswith("http")


def test_a_bad_dashboard_address_or_a_taken_port_is_one_line_naming_the_option(tmp_path: Path):
    import socket

    from ..conftest import REPO, recprep

    job = str(REPO / "examples" / "demo.yaml")
    bad = recprep("run", job, "--output", str(tmp_path / "out"), "--dashboard", "nowhere")
    assert bad.returncode == 1 and "--dashboard: expected [HOST:]PORT" in bad.stderr, bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = recprep("run", job, "--output", str(tmp_path / "out"), "--dashboard", str(port))
    assert busy.returncode == 1 and f"--dashboard {port}: cannot listen" in busy.stderr, busy.stderr
    assert "Traceback" not in bad.stderr + busy.stderr
    assert not (tmp_path / "out").exists()  # refused before any work
