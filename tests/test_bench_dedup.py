"""bench/dedup.py at a tiny size: its JSON object (dataset, then measure), gains computed from the
measured figures, the exactness check, and the Taobao part skipped when the sample is absent."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import statistics
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .conftest import REPO, SHARED_DATA

TAOBAO = SHARED_DATA / "taobao_userbehavior_84k.csv.gz"
#: --min-seconds of the tiny bench: the smallest log's runs take a few hundredths of a second
MIN_SECONDS = 0.2
USERS, SESSIONS, EVENTS = 12, 3, (1, 4)


@pytest.fixture(scope="module")
def bench():
    """The bench module, loaded from its file (it pins thread pools in os.environ on import: the
    environment is restored for the tests after this one)."""
    saved = dict(os.environ)
    spec = importlib.util.spec_from_file_location("bench_dedup", REPO / "bench" / "dedup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.environ.clear()
    os.environ.update(saved)
    return module


def _main(bench, capsys, *argv) -> tuple[int, dict]:
    """The bench's main with --json; the process-wide settings it changes (torch's threads, the
    distributed logger's level) are put back for the tests that follow."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    level = logging.getLogger("distributed").level
    try:
        code = bench.main([*argv, "--json"])
    finally:
        logging.getLogger("distributed").setLevel(level)
        if threads is not None or "torch" in sys.modules:
            import torch

            torch.set_num_threads(threads or os.cpu_count() or 1)
    return code, json.loads(capsys.readouterr().out)


def _torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _approx(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-9)


def _check_stats(s: dict) -> None:
    assert s["runs"] and s["median"] == statistics.median(s["runs"])
    assert s["min"] == min(s["runs"]) and s["max"] == max(s["runs"])


def _check_dataset(r: dict, codecs: list[str], repeat: int, trained: bool, max_runs: int) -> None:
    assert r["exact"]["exact"] and r["exact"]["difference"] is None
    assert (
        r["exact"]["shards"] == r["shards"] >= 1 and r["exact"]["rows"] == r["rows"] - r["rows_quarantined"]
    )
    assert r["exact"]["unique_rows"] == r["sessions"]  # one group row per session of each shard
    assert r["storage_deterministic"]
    assert list(r["storage"]) == codecs
    for s in r["storage"].values():
        assert s["plain_bytes"] > 0 and s["dedup_bytes"] > 0
        assert _approx(s["gain"], s["plain_bytes"] / s["dedup_bytes"])
        assert _approx(s["group_gain"], s["plain_group_bytes"] / s["dedup_group_bytes"])
        assert 0 < s["plain_group_bytes"] < s["plain_bytes"] and 0 < s["dedup_group_bytes"] < s["dedup_bytes"]
    pre = r["preprocess"]
    for v in ("plain", "dedup"):
        # at least --repeat runs, and more until the variant has run --min-seconds (MIN_SECONDS)
        runs = pre[v]["seconds"]["runs"]
        assert len(runs) >= repeat and len(pre[v]["rows_per_second"]["runs"]) == len(runs)
        assert sum(runs) >= MIN_SECONDS or len(runs) == max_runs
        _check_stats(pre[v]["rows_per_second"])
        _check_stats(pre[v]["seconds"])
        for rate, seconds in zip(pre[v]["rows_per_second"]["runs"], pre[v]["seconds"]["runs"]):
            assert _approx(rate, r["rows"] / seconds)
        # a grouped source's job has no grouping phase
        phases = {"setup", "transform"} | ({"sessions"} if r["grouping"] != "grouped source" else set())
        assert phases <= set(pre[v]["phase_seconds"]) and ("sessions" in phases) == (
            "sessions" in pre[v]["phase_seconds"]
        )
        assert sum(pre[v]["phase_seconds"].values()) == pytest.approx(pre[v]["seconds"]["median"], rel=0.5)
        one = pre["one_core"][v]
        _check_stats(one["rows_per_second"])
        assert list(one["phase_seconds"]) == ["stage", "cut", "read", "apply", "write"]
        if r["grouping"] == "grouped source":
            assert one["phase_seconds"]["stage"] == one["phase_seconds"]["cut"] == 0
    # no round more than needed: before the last one, a variant had run less than --min-seconds
    runs = [pre[v]["seconds"]["runs"] for v in ("plain", "dedup")]
    assert len(runs[0]) == len(runs[1])
    assert len(runs[0]) == repeat or min(sum(r[:-1]) for r in runs) < MIN_SECONDS
    gain = pre["dedup"]["rows_per_second"]["median"] / pre["plain"]["rows_per_second"]["median"]
    assert _approx(pre["gain"], gain)
    for phase, g in pre["phase_gain"].items():
        assert _approx(g, pre["plain"]["phase_seconds"][phase] / pre["dedup"]["phase_seconds"][phase])
    one = pre["one_core"]
    assert _approx(
        one["gain"], one["dedup"]["rows_per_second"]["median"] / one["plain"]["rows_per_second"]["median"]
    )
    if trained:
        t = r["train"]
        for v in ("plain", "dedup"):
            _check_stats(t[v]["samples_per_second"])
            assert t[v]["samples"] > 0 and t[v]["steps"] > 0
        assert t["same_samples"] and t["plain"]["samples"] == t["dedup"]["samples"]
        gain = t["dedup"]["samples_per_second"]["median"] / t["plain"]["samples_per_second"]["median"]
        assert _approx(t["gain"], gain)
    else:
        assert "train" not in r


def test_tiny_bench_prints_one_json_object_of_measured_gains(bench, capsys, tmp_path):
    trained = _torch()
    args = ["--users", str(USERS), "--sessions", str(SESSIONS), "--events", ",".join(map(str, EVENTS))]
    args += ["--k", "5", "--repeat", "2", "--compression", "snappy,none", "--workers", "1"]
    args += ["--min-seconds", str(MIN_SECONDS)]
    args += ["--steps", "3", "--table-rows", "1000", "--batch-size", "64", "--workdir", str(tmp_path / "w")]
    args += ["--taobao-copies", "2"]
    if not trained:
        args += ["--skip", "train"]
    code, doc = _main(bench, capsys, *args)
    assert code == 0
    names = [f"generated-e{e}" for e in EVENTS]
    scaled = {"taobao-x2"} if TAOBAO.exists() else set()
    assert set(doc) == {"settings", "published", "taobao", *names, *scaled}
    assert doc["published"] == {"storage": 3.71, "preprocess": 1.79, "train": 2.48}
    assert doc["settings"]["repeat"] == 2 and doc["settings"]["statistic"] == "median"
    assert doc["settings"]["min_seconds"] == MIN_SECONDS
    # the smallest log's runs take a few hundredths of a second: it runs more than --repeat times
    assert len(doc[names[0]]["preprocess"]["plain"]["seconds"]["runs"]) > 2
    for e, name in zip(EVENTS, names):
        r = doc[name]
        assert r["rows"] == USERS * SESSIONS * e and r["rows_quarantined"] == 0
        assert r["sessions"] == USERS * SESSIONS and r["events_per_session"] == e
        assert r["grouping"] == "staged and cut by the job"  # a log in time order
        _check_dataset(r, ["snappy", "none"], 2, trained, bench.MAX_RUNS)
        assert "bars" not in r
    # no compression (no codec hides repeats): a history but a key's first in a shard follows from
    # the session before, so even sessions of one event store less; more events per session, more
    # repeats of the session's own features to remove
    none = [doc[n]["storage"]["none"]["group_gain"] for n in names]
    assert 1 < none[0] < none[1], none
    taobao = doc["taobao"]
    if not TAOBAO.exists():
        assert "missing" in taobao["skipped"]
        return
    assert taobao["rows_quarantined"] == 1  # the sample's malformed last line
    assert taobao["grouping"] == doc["taobao-x2"]["grouping"] == "grouped source"
    _check_dataset(taobao, ["snappy", "none"], 2, trained, bench.MAX_RUNS)
    # the sample twice over, each copy its own users: the same sessions twice, the malformed line left out
    twice = doc["taobao-x2"]
    assert twice["rows"] == 2 * (taobao["rows"] - 1) and twice["rows_quarantined"] == 0
    assert twice["sessions"] == 2 * taobao["sessions"]
    _check_dataset(twice, ["snappy", "none"], 2, False, bench.MAX_RUNS)  # training is the sample's measure
    for r, trains in ((taobao, trained), (twice, False)):
        bars = r["bars"]
        assert _approx(bars["storage"]["gain"], r["storage"]["snappy"]["gain"])
        assert _approx(bars["preprocess"]["gain"], r["preprocess"]["gain"])
        assert [bars[m]["bar"] for m in ("storage", "preprocess", "train")] == [2.0, 1.5, 1.0]
        for b in bars.values():
            if b["gain"] is None:
                assert b["pass"] is None and not trains
            else:
                assert b["pass"] == (b["gain"] > b["bar"] if b["strict"] else b["gain"] >= b["bar"])


def test_without_the_sample_the_taobao_part_is_skipped(bench, capsys, tmp_path):
    code, doc = _main(bench, capsys, "--data", str(tmp_path), "--skip", "generated")
    assert code == 0
    assert set(doc) == {"settings", "published", "taobao"}
    assert str(tmp_path) in doc["taobao"]["skipped"]


def test_exactness_check_compares_expanded_shards_with_plain_ones(bench, tmp_path):
    from recprep.workloads.output.dedup import Unique, pack

    sessions = np.array([0, 0, 0, 1, 1, 2], np.int32)
    users = pa.array([7, 9, 4], pa.int64())
    hist = pa.array([[], [1, 2], [3]], pa.list_(pa.int64()))
    take = pa.array(sessions)
    plain = pa.table(
        {
            "user_id": users.take(take),
            "item_id": pa.array(np.arange(6), pa.int64()),
            "item_id_history": hist.take(take),
            "category_id_history": hist.take(take),
        }
    )
    rows = pa.table({"user_id": users, "item_id_history": hist, "category_id_history": hist})
    dedup = pack(plain.select(["item_id"]), [Unique("user", rows, sessions)], order=plain.column_names)
    for d in ("plain", "dedup", "wrong"):
        (tmp_path / d).mkdir()
    pq.write_table(plain, tmp_path / "plain" / "part-00000.parquet")
    pq.write_table(dedup, tmp_path / "dedup" / "part-00000.parquet")
    ok = bench.check_exact(tmp_path / "plain", tmp_path / "dedup")
    assert ok == {"exact": True, "shards": 1, "rows": 6, "unique_rows": 3, "difference": None}
    wrong = pack(
        plain.select(["item_id"]),
        [Unique("user", rows, np.array([0, 0, 1, 1, 1, 2], np.int32))],
        order=plain.column_names,
    )
    pq.write_table(wrong, tmp_path / "wrong" / "part-00000.parquet")
    bad = bench.check_exact(tmp_path / "plain", tmp_path / "wrong")
    assert not bad["exact"] and "user_id" in bad["difference"]
    assert not bench.check_exact(tmp_path / "plain", tmp_path / "plain")["exact"]  # no dedup group
