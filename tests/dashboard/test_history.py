"""What the dashboard derives from its looks at a job (pure)."""

from __future__ import annotations

import pytest

from recprep.dashboard.history import MAX_EVENTS, RATE_WINDOW, JobHistory, Prices, clean
from recprep.spec import load_job_dict

from ..conftest import job_doc

PRICES = Prices(cpu_hourly=0.036, isp_hourly=0.72, cpu_watts=7.0, isp_watts=25.0)


def look(rows=0, consumed=None, workers=(1, 0), desired=(1, 0), phase="Running", **extra):
    progress = {
        "stage": "transform",
        "shardsDone": rows // 1000,
        "shardsTotal": 100,
        "rows": rows,
        "rowsEstimated": 100_000,
        "rowsQuarantined": 0,
        "consumedRows": consumed,
        "pools": {"cpu": {"rows": rows, "seconds": 1.0, "shards": rows // 1000}},
    }
    return {
        "phase": phase,
        "progress": progress,
        "workers": {"cpu": workers[0], "isp": workers[1]},
        "desired": {"cpu": desired[0], "isp": desired[1]},
        **extra,
    }


def test_rates_backlog_and_starvation_come_from_the_looks():
    h = JobHistory("ns", "job", PRICES)
    for t in range(0, 21):
        # production 1,000 rows/s; trainers take 400 rows/s from t=5 on
        h.record(1000.0 + t, look(rows=1000 * t, consumed=None if t < 5 else 400 * (t - 5)))
    doc = h.document()
    series = doc["series"]
    assert series["production"][: int(RATE_WINDOW)] == [None] * int(RATE_WINDOW)  # not measurable yet
    assert series["production"][-1] == pytest.approx(1000.0)
    assert series["demand"][-1] == pytest.approx(400.0)
    assert series["demand"][5:10] == [None] * 5  # a trainer joined at 5 s: measured 5 s later
    # 20,000 written, 6,000 consumed: 14,000 rows ahead at 400 rows/s
    assert series["backlog"][-1] == pytest.approx(14_000 / 400)
    assert series["starved"][-1] == 0 and doc["figures"]["starvedShare"] == 0.0
    assert doc["start"] == 1000.0 and series["t"][-1] == 20.0
    f = doc["figures"]
    assert f["progress"] == 0.2 and f["rows"] == 20_000
    assert f["etaSeconds"] == pytest.approx(80.0)  # 80,000 rows left at 1,000 rows/s


def test_trainers_with_nothing_left_for_them_count_as_starved():
    h = JobHistory("ns", "job", PRICES)
    for t, (rows, consumed) in enumerate([(0, 0), (1000, 1000), (2000, 2000), (3000, 2500), (4000, 3000)]):
        h.record(float(t), look(rows=rows, consumed=consumed))
    assert h.document()["series"]["starved"] == [1, 1, 1, 0, 0]
    assert h.figures()["starvedShare"] == pytest.approx(3 / 4)


def test_cost_and_energy_integrate_the_workers_asked_for_and_running():
    h = JobHistory("ns", "job", PRICES)
    h.record(0.0, look(workers=(0, 1), desired=(2, 1)))
    h.record(1800.0, look(workers=(2, 1), desired=(2, 1)))  # half an hour: cpu billed from the request
    h.record(3600.0, look(workers=(2, 1), desired=(2, 1)))
    f = h.figures()
    # cost: 2 cpu x 0.036 + 1 isp x 0.72 per hour, for an hour
    assert f["costSoFar"] == pytest.approx(2 * 0.036 + 0.72)
    # energy: the first half hour 1 isp (25 W), the second 2 cpu + 1 isp (39 W)
    assert f["energySoFarWh"] == pytest.approx(25 * 0.5 + 39 * 0.5)


def test_start_ups_go_to_the_histogram_oldest_request_first():
    h = JobHistory("ns", "job", PRICES)
    h.record(0.0, look(workers=(1, 0), desired=(1, 0)))
    h.record(10.0, look(workers=(1, 0), desired=(3, 0)))  # two asked for at 10 s
    h.record(14.0, look(workers=(2, 0), desired=(3, 0)))  # one joined after 4 s
    h.record(40.0, look(workers=(3, 0), desired=(3, 0)))  # the other after 30 s
    h.record(50.0, look(workers=(3, 0), desired=(4, 0)))  # asked for, then withdrawn
    h.record(60.0, look(workers=(3, 0), desired=(3, 0)))
    h.record(70.0, look(workers=(4, 0), desired=(3, 0)))  # a worker nobody asked for: no start-up
    hist = h.startup["cpu"]
    assert hist["count"] == 2 and hist["sum"] == pytest.approx(34.0)
    assert hist["buckets"][:4] == [0, 0, 1, 1]  # <= 1, 2.5, 5, 10 s
    assert hist["buckets"][-1] == 2
    assert h.document()["series"]["pending"]["cpu"][:3] == [0, 2, 1]


def test_decisions_and_notices_are_kept_once_newest_first_and_counted():
    h = JobHistory("ns", "job", PRICES)
    first = {"time": "2026-12-03T10:00:00Z", "pool": "cpu", "from": 1, "to": 2, "reason": "more"}
    second = {"time": "2026-12-03T10:01:00Z", "pool": "isp", "from": 1, "to": 0, "reason": "less"}
    notice = {"node": "n1", "noticeTime": "2026-12-03T10:00:30Z", "pods": ["job-worker-cpu-a", "x"]}
    h.record(0.0, look(autoscaler={"lastDecisions": [first]}))
    h.record(
        1.0,
        look(
            autoscaler={"lastDecisions": [first, second]},
            preemptions={"last": [notice]},
        ),
    )
    h.record(
        2.0,
        look(
            autoscaler={"lastDecisions": [second]}, preemptions={"last": [{**notice, "drainedSeconds": 1.5}]}
        ),
    )
    doc = h.document()
    assert [d["reason"] for d in doc["decisions"]] == ["less", "more"]
    assert h.decisions_total == {"cpu": 1, "isp": 1}
    assert doc["preemptions"] == [{**notice, "drainedSeconds": 1.5}]  # updated in place, not twice
    assert h.interruptions == {"cpu": 1, "isp": 0}
    many = [{**first, "time": f"2026-12-03T11:{i:02d}:00Z"} for i in range(MAX_EVENTS + 5)]
    h.record(3.0, look(autoscaler={"lastDecisions": many}))
    assert len(h.document()["decisions"]) == MAX_EVENTS


def test_a_long_history_is_thinned_but_keeps_its_span():
    h = JobHistory("ns", "job", PRICES, maxlen=100)
    for t in range(1000):
        h.record(float(t), look(rows=t))
    t = h.document()["series"]["t"]
    assert len(t) <= 100 and t[0] == 0.0 and t[-1] == 999.0 and t == sorted(t)


def test_prices_come_from_the_jobs_isp_model():
    doc = job_doc("synthetic://criteo?rows=10&seed=1", "/tmp/out")
    doc["spec"]["pools"] = {"cpu": {"preemptible": False}, "isp": {"units": 4}}
    job = load_job_dict(doc)
    model = job.spec.pools.isp.model
    prices = Prices.of(job)
    assert prices.cpu_hourly == model.cpu_core_hourly(False) and prices.isp_hourly == model.isp_node_hourly
    assert prices.isp_watts == 4 * model.isp_unit_watts and prices.cpu_watts == model.cpu_core_watts


def test_json_has_no_infinity():
    assert clean({"a": [float("inf"), 1.0, float("nan")], "b": {"c": -float("inf")}}) == {
        "a": [None, 1.0, None],
        "b": {"c": None},
    }
