"""bench/autoscale.py end to end on a small --trace file (the built-in traces are 6 h each)."""

import json
import subprocess
import sys

from ..conftest import REPO


def test_bench_replays_a_csv_trace_and_prints_json(tmp_path):
    csv = tmp_path / "small.csv"
    rows = ["seconds,demand"] + [f"{t},{3 if 400 <= t < 800 else 1}" for t in range(0, 1200, 60)]
    csv.write_text("\n".join(rows) + "\n")
    out = subprocess.run(
        [sys.executable, "bench/autoscale.py", "--traces", "--trace", str(csv), "--json", "--no-forecast"]
        + ["--plot", str(tmp_path / "plots")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(out.stdout)
    runs = doc["small"]
    assert set(runs) == {
        "predictive",
        "reactive",
        "adaptive",
        "hill-climbing",
        "moving-window",
        "static-peak",
        "oracle",
    }
    for r in runs.values():
        assert r["shards_lost"] == 0 and r["ledger_ok"] and 0 <= r["stall_fraction"] <= 1
    assert any("rescaled so its peak" in n for n in doc["_notes"])
    assert any("small.csv: 20 points over 1141 s" in n for n in doc["_notes"])
    image = tmp_path / "plots" / "small.png"  # --plot: one image per trace, a panel per policy
    assert doc["_plots"] == {"small": str(image)} and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.stat().st_size > 20_000
