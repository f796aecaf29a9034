"""What the dashboard costs a job: the same job run with and without ``--dashboard``'s machinery,
in the same process, alternating, on the same embedded cluster.

  plain       ``run_job(job)``, the run's progress going nowhere
  dashboard   ``run_job`` with the dashboard's monitor (``recprep.dashboard.local.LocalMonitor``
              fed by a ``ProgressPublisher`` and the driver's hooks) and its server, read by a
              poller that asks for the job list, the job's document and ``/metrics`` every
              ``--poll`` seconds (the page asks for the first two every 2 s)

Each run rewrites the same output (``overwrite``) from ``synthetic://criteo?rows=N`` through the
Criteo recipe, timed from submission to the last committed shard; the cluster's workers are
started once, before timing. The rows/s of each run, the medians and their ratio are printed, with
the spread of the plain runs (the noise a ratio must stand out of). Timings are only printed.

    python bench/dashboard.py                      # 1,000,000 rows, 5 runs of each
    python bench/dashboard.py --rows 300000 --runs 3 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from recipe import criteo_transforms

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # benchmark the recprep of this working tree
    sys.path.insert(0, str(REPO_ROOT))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def poller(url: str, name: str, every: float, stop: threading.Event, counts: list[int]) -> None:
    """What a watching page (and a scraping Prometheus) asks for, every ``every`` seconds."""
    while not stop.wait(every):
        for path in ("api/jobs", f"api/jobs/local/{name}", "metrics"):
            with urllib.request.urlopen(url + path, timeout=10) as response:
                response.read()
            counts[0] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rows-per-shard", type=int, default=32_768)
    parser.add_argument("--runs", type=int, default=5, help="runs of each (alternating)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between the poller's reads")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    from recprep.dashboard.local import LocalMonitor
    from recprep.dashboard.server import Board, DashboardServer
    from recprep.progress import ProgressPublisher
    from recprep.spec import load_job_dict
    from recprep.workloads.runner import run_job

    work = Path(tempfile.mkdtemp(prefix="recprep-bench-dashboard-"))
    doc = {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "watched"},
        "spec": {
            "source": {"uri": f"synthetic://criteo?rows={args.rows}&seed=0", "format": "criteo"},
            "transforms": criteo_transforms(),
            "output": {"uri": str(work / "out"), "rowsPerShard": args.rows_per_shard},
        },
    }
    job = load_job_dict(doc)
    rates: dict[str, list[float]] = {"plain": [], "dashboard": []}
    requests = [0]
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        run_job(job, client=client, overwrite=True)  # warm-up, untimed
        for i in range(args.runs):
            for kind in ("plain", "dashboard") if i % 2 == 0 else ("dashboard", "plain"):
                stop, server, thread = threading.Event(), None, None
                options = {}
                if kind == "dashboard":
                    board = Board()
                    server = DashboardServer(board)
                    monitor = LocalMonitor(job, board)
                    progress = ProgressPublisher(sinks={"the dashboard": monitor.sink})
                    options = {"progress": progress, "monitor": monitor}
                    thread = threading.Thread(
                        target=poller, args=(server.url, "watched", args.poll, stop, requests), daemon=True
                    )
                    thread.start()
                started = time.perf_counter()
                summary = run_job(job, client=client, overwrite=True, **options)
                seconds = time.perf_counter() - started
                stop.set()
                if thread is not None:
                    thread.join()
                    server.close()
                rates[kind].append(summary.rows_read / seconds)
                log(f"run {i + 1} {kind:9s}: {summary.rows_read / seconds:12,.0f} rows/s ({seconds:.2f} s)")
    plain, board_ = statistics.median(rates["plain"]), statistics.median(rates["dashboard"])
    spread = (max(rates["plain"]) - min(rates["plain"])) / plain
    result = {
        "rows": args.rows,
        "runs": args.runs,
        "rows_per_second": rates,
        "median_plain": plain,
        "median_dashboard": board_,
        "ratio": board_ / plain,
        "plain_spread": spread,
        "requests_served": requests[0],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"dashboard / plain: {board_ / plain:.3f} (medians {board_:,.0f} / {plain:,.0f} rows/s over "
            f"{args.runs} runs each; the plain runs spread {spread:.1%}; {requests[0]} requests served)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
