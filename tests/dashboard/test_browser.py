"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against
``recprep run --dashboard`` on a running job whose shards a paced consumer reads (``--serve``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, job_doc, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Where the test also saves its screenshot, when set (README's image: docs/images/dashboard.png).
SCREENSHOT_ENV = "RECPREP_DASHBOARD_SCREENSHOT"


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _consume(url: str, stop: threading.Event, rows_per_second: float) -> None:
    """A trainer's reads: every shard in order, acknowledged, held to ``rows_per_second``."""
    from recprep.delivery.service import ShardClient, ShardServiceError
    from recprep.train.pace import Pace, Pacer

    client = ShardClient(url, "browser", retry=60)
    pacer, started, consumed = Pacer(Pace.parse(f"{rows_per_second:g}")), time.monotonic(), 0
    try:
        for shard in client:
            if stop.is_set():
                return
            rows = shard.table.num_rows
            stop.wait(pacer.hold(time.monotonic() - started, consumed, rows))
            consumed += rows
            client.ack(shard.index)
    except ShardServiceError:
        if not stop.is_set():
            raise  # (once the test is over, the service it read from is gone: that is the end)


#: What the page shows, read in the browser: each chart's points (non-null y values over its
#: traces), the decisions' rows and the job list's rows column.
READ_PAGE = """() => ({
  points: Object.fromEntries([...document.querySelectorAll('.chart')].map(el => [el.id,
    (el.data || []).reduce((n, tr) => n + (tr.y || []).filter(v => v !== null && v !== undefined).length,
                           0)])),
  decisions: [...document.querySelectorAll('#decisions tbody tr')].map(tr => tr.innerText),
  rows: (document.querySelector('#jobs tbody tr td:nth-child(4)') || {}).innerText,
})"""


def test_the_page_of_a_running_job_in_a_real_browser(tmp_path: Path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("no chromium (apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("plotly")
    doc = job_doc("synthetic://criteo?rows=2000000&seed=2", str(tmp_path / "out"))
    doc["metadata"]["name"] = "watched"
    doc["spec"]["output"]["rowsPerShard"] = 20_000
    doc["spec"]["pools"] = {"cpu": {"min": 1, "max": 2}}
    doc["spec"]["autoscale"] = {"policy": "predictive", "interval": 1}
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(doc))
    board, shards = _port(), _port()
    env = {k: v for k, v in os.environ.items() if k != "RECPREP_SHARD_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recprep.cli", "run", str(job), "--dashboard", f"127.0.0.1:{board}"]
        + ["--serve", f"127.0.0.1:{shards}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    stop = threading.Event()
    url = f"http://127.0.0.1:{board}/"
    try:
        wait_for(lambda: _up(url + "healthz") or proc.poll() is not None, 60, message="the dashboard")
        assert proc.poll() is None, "".join(stderr)
        consumer = threading.Thread(
            target=_consume, args=(f"grpc://127.0.0.1:{shards}", stop, 30_000.0), daemon=True
        )
        consumer.start()
        errors: list[str] = []
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("#job:not([hidden])", timeout=60_000)
            # a scaling decision with its reason (the pool goes to its limit before trainers read)
            page.wait_for_selector("#decisions tbody tr", timeout=60_000)
            first = page.evaluate(READ_PAGE)
            # every chart has data: demand and backlog come once the consumer's reads are measured
            page.wait_for_function(
                "() => [...document.querySelectorAll('.chart')].every(el => (el.data || []).some("
                "tr => (tr.y || []).filter(v => v !== null && v !== undefined).length >= 2))",
                timeout=90_000,
            )
            second = page.evaluate(READ_PAGE)
            assert proc.poll() is None, "the job ended before the page was read twice"
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            if os.environ.get(SCREENSHOT_ENV):  # for the README: later, with more of the run drawn
                page.wait_for_function(
                    "() => parseFloat(document.querySelector('#jobs tbody tr td:nth-child(3)')"
                    ".innerText) >= 70",
                    timeout=120_000,
                )
                page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)
            browser.close()
        print(f"first read: {first}\nsecond read: {second}")
        assert not errors, errors
        assert all(n >= 2 for n in second["points"].values()), second["points"]
        assert set(second["points"]) == {
            "chart-demand",
            "chart-backlog",
            "chart-workers",
            "chart-desired",
            "chart-cost",
        }
        moved = int(second["rows"].replace(",", "")) - int(first["rows"].replace(",", ""))
        assert moved > 0, (first, second)  # the progress moved between two reads, without a reload
        assert any("cpu" in d and "1 → 2" in d and "no trainers" in d for d in second["decisions"]), second
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            reader.join(10)
