"""The driver's progress document and its publisher (a recording client stands in for Dask)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from recprep import progress


class RecordingClient:
    def __init__(self, fail: bool = False):
        self.published, self.fail = [], fail

    def set_metadata(self, key, value):
        if self.fail:
            raise OSError("scheduler gone")
        assert key == list(progress.KEY)
        self.published.append(value)


class RecordingBar:
    def __init__(self):
        self.calls = []

    def phase(self, name):
        self.calls.append(("phase", name))

    def start(self, *args):
        self.calls.append(("start", *args))

    def advance(self, result):
        self.calls.append(("advance", result.rows))

    def fitted(self, est_rows):
        self.calls.append(("fitted", est_rows))

    def warn(self, message):
        self.calls.append(("warn", message))


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def shard(rows, bad=0):
    return SimpleNamespace(rows=rows, bad_rows=bad)


def test_a_run_is_published_from_plan_to_done_and_passed_on_to_the_bar():
    client, bar, clock = RecordingClient(), RecordingBar(), Clock()
    reporter = progress.SchedulerProgress(client, bar, clock=clock)
    reporter.phase("fit 1/2")
    reporter.fitted(500)  # the bar moves through the fit; the document keeps the transform's counts
    reporter.phase("transform")
    reporter.start(3, 3000, 1, 1000, 10)  # one shard committed by an earlier attempt (10 bad rows)
    clock.t += 0.1
    reporter.advance(shard(900, 100))  # within MIN_INTERVAL: not published
    clock.t += progress.MIN_INTERVAL
    reporter.advance(shard(1000))  # the last shard: always published
    reporter.warn("spec.transforms[0] (hex_to_int on C1) made 10 of 10 values null (100.0%)")
    reporter.finish()
    stages = [
        (d["stage"], d["detail"], d["shardsDone"], d["shardsTotal"], d["rows"]) for d in client.published
    ]
    assert stages == [
        ("plan", "plan", 0, None, 0),
        ("fit", "fit 1/2", 0, None, 0),
        ("transform", "transform", 0, None, 0),
        ("transform", "transform", 1, 3, 1000),
        ("transform", "transform", 3, 3, 3000),
        ("transform", "transform", 3, 3, 3000),
        ("done", "done", 3, 3, 3000),
    ]
    assert client.published[-1]["rowsEstimated"] == 3000
    assert client.published[-1]["rowsQuarantined"] == 110  # the earlier attempt's and this one's
    assert client.published[-1]["warnings"] == [
        "spec.transforms[0] (hex_to_int on C1) made 10 of 10 values null (100.0%)"
    ]
    assert bar.calls == [
        ("phase", "fit 1/2"),
        ("fitted", 500),
        ("phase", "transform"),
        ("start", 3, 3000, 1, 1000, 10),
        ("advance", 900),
        ("advance", 1000),
        ("warn", "spec.transforms[0] (hex_to_int on C1) made 10 of 10 values null (100.0%)"),
    ]


def test_a_failed_publication_is_logged_and_the_run_goes_on(caplog):
    reporter = progress.SchedulerProgress(RecordingClient(fail=True))
    with caplog.at_level(logging.WARNING, logger="recprep.progress"):
        reporter.start(2, 10, 0, 0)
        reporter.advance(shard(5))
    assert "cannot publish progress to the scheduler: scheduler gone" in caplog.text
    assert reporter.document()["shardsDone"] == 1


def test_parse_takes_documents_and_refuses_anything_else():
    good = progress.document("transform", shards_done=2, shards_total=4, rows=10, rows_estimated=20)
    assert progress.parse(good) == good
    assert progress.parse(None) is None
    assert progress.parse({"stage": "other"}) is None
    assert progress.parse({**good, "shardsDone": 5}) is None  # more done than total
    assert progress.parse({**good, "rows": "many"}) is None
    assert progress.parse({**good, "rowsQuarantined": 11}) is None  # more bad rows than rows read
    assert progress.parse({**good, "warnings": ["a", 3]})["warnings"] == ["a"]
    old = {k: v for k, v in good.items() if k not in ("rowsQuarantined", "warnings")}  # an older driver's
    assert progress.parse(old) == good
    assert progress.parse({"stage": "plan"}) == progress.document("plan")
    with pytest.raises(ValueError, match="stage must be one of"):
        progress.document("fitting")


#: An accounting document as ``recprep.isp_nodes.accounting.Account.to_json`` writes it.
ACCOUNTING = {
    "placement": "isp",
    "shards": 4,
    "shardsByPool": {"isp": 4},
    "rows": 20000,
    "storedBytes": 2_000_000,
    "networkBytes": {"raw": 0, "handoff": 0, "shard": 600_000, "total": 600_000},
    "busySeconds": {"isp": 1.92, "cpu": 0.0},
    "workers": {"isp": 1, "cpu": 1},
    "wallSeconds": 2.1,
    "modelled": {"joules": 48.0, "dollars": 1.2e-05, "rowsPerJoule": 416.667, "rowsPerDollar": None},
    "ispWorkers": {
        f"isp/node-{i}/job-worker-isp-{i}": {"rows": 5000, "busySeconds": 0.48, "rowsPerSecond": 10416.7}
        for i in range(50)
    },
}


def test_the_accounting_is_published_without_the_per_worker_details_and_passed_on():
    client, bar = RecordingClient(), RecordingBar()
    bar.accounted = lambda document: bar.calls.append(("accounted", document["shards"]))
    reporter = progress.SchedulerProgress(client, bar)
    reporter.start(4, 20000, 0, 0)
    assert client.published[-1]["accounting"] is None  # nothing before the transform is over
    reporter.accounted(ACCOUNTING)
    reporter.finish()
    summary = {k: v for k, v in ACCOUNTING.items() if k != "ispWorkers"}
    summary["modelled"] = {k: v for k, v in ACCOUNTING["modelled"].items() if v is not None}
    assert [d["accounting"] for d in client.published[-2:]] == [summary, summary]  # accounted, finish
    assert len(json.dumps(client.published[-1]["accounting"])) < 1024
    assert bar.calls[-1] == ("accounted", 4)
    assert progress.parse(client.published[-1]) == client.published[-1]


def test_accounting_summary_keeps_only_the_typed_fields():
    assert progress.accounting_summary(None) is None
    assert progress.accounting_summary({"ispWorkers": {}}) is None
    assert progress.accounting_summary(
        {
            "placement": "x" * 100,
            "shards": -1,  # a negative count would fail the CRD's minimum: left out
            "rows": True,
            "storedBytes": 1.5,  # not an int
            "wallSeconds": float("nan"),
            "workers": {"isp": 2, "cpu": "many", 3: 1},
            "busySeconds": {f"pool-{i}": i for i in range(20)},
            "networkBytes": [1, 2],
        }
    ) == {
        "placement": "x" * progress.MAX_ACCOUNTING_TEXT,
        "workers": {"isp": 2},
        "busySeconds": {f"pool-{i}": i for i in range(progress.MAX_ACCOUNTING_ENTRIES)},
    }
    published = progress.document("done", accounting={"shards": 3, "other": "dropped"})
    assert published["accounting"] == {"shards": 3}
    assert progress.parse({**published, "accounting": "lots"})["accounting"] is None


def test_each_pool_publishes_the_rows_and_seconds_of_the_shards_it_ran_in_one_task():
    client, clock = RecordingClient(), Clock()
    reporter = progress.SchedulerProgress(client, clock=clock)
    reporter.phase("transform")
    reporter.start(4, 4000, 0, 0)

    def ran(node, seconds):
        return SimpleNamespace(node=node, seconds=seconds, steps=(0, 2))

    reporter.advance(SimpleNamespace(rows=900, bad_rows=100, ran=[ran(None, 2.0)]))
    reporter.advance(SimpleNamespace(rows=1000, bad_rows=0, ran=[ran("node-a", 0.5)]))
    # split between an ISP and a CPU task: neither pool's rate
    reporter.advance(SimpleNamespace(rows=1000, bad_rows=0, ran=[ran("node-a", 0.2), ran(None, 0.3)]))
    reporter.advance(SimpleNamespace(rows=1000, bad_rows=0, ran=[ran(None, 2.0)]))
    pools = client.published[-1]["pools"]
    assert pools == {
        "cpu": {"rows": 2000, "seconds": 4.0, "shards": 2},
        "isp": {"rows": 1000, "seconds": 0.5, "shards": 1},
    }
    assert progress.parse(client.published[-1])["pools"] == pools


def test_parse_keeps_only_well_typed_pool_rates():
    good = progress.document("transform", pools={"cpu": {"rows": 10, "seconds": 1.5, "shards": 1}})
    assert progress.parse(good)["pools"] == {"cpu": {"rows": 10, "seconds": 1.5, "shards": 1}}
    odd = {
        **good,
        "pools": {
            "cpu": {"rows": -1, "seconds": 1.0},
            "isp": {"rows": 5, "seconds": float("inf")},
            "gpu": {"rows": 5, "seconds": 1.0},
        },
    }
    assert progress.parse(odd)["pools"] == {}
    assert progress.parse({**good, "pools": "many"})["pools"] == {}
    assert progress.parse({**good, "pools": {"isp": {"rows": 5, "seconds": 2}}})["pools"] == {
        "isp": {"rows": 5, "seconds": 2.0, "shards": 0}
    }
    del good["pools"]  # an older driver's
    assert progress.parse(good)["pools"] == {}


def test_the_trainers_consumption_is_published_and_parsed():
    from recprep.progress import SchedulerProgress, parse

    class Client:
        def __init__(self):
            self.docs = []

        def set_metadata(self, key, value):
            self.docs.append(value)

    client = Client()
    progress = SchedulerProgress(client, clock=iter(range(0, 1000, 10)).__next__)
    assert client.docs[-1]["consumedRows"] is None
    progress.consumed(1234)
    assert client.docs[-1]["consumedRows"] == 1234 and parse(client.docs[-1])["consumedRows"] == 1234
    assert parse({**client.docs[-1], "consumedRows": -5})["consumedRows"] is None
