"""The operator's autoscaler: what the policy sees, what it may do, and what status keeps of it
(pure parts; the e2e test runs it against the emulated cluster)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from recprep.operator import autoscaler as au
from recprep.operator import status as st
from recprep.spec import load_job_dict

# The emulated cluster's fixture (it skips without kmock).
from tests.cluster.conftest import cluster  # noqa: F401

from .conftest import job_document

pytest.importorskip("sklearn")


def progress_doc(rows=20_000, estimated=400_000, pools=None, stage="transform"):
    return {
        "stage": stage,
        "detail": stage,
        "shardsDone": rows // 10_000,
        "shardsTotal": 40,
        "rows": rows,
        "rowsEstimated": estimated,
        "rowsQuarantined": 0,
        "warnings": [],
        "accounting": None,
        "pools": {"cpu": {"rows": 20_000, "seconds": 2.0, "shards": 2}} if pools is None else pools,
    }


def autoscaled_job(cpu=(1, 2), isp=(0, 0), **autoscale):
    doc = job_document(autoscale={"interval": 2, **autoscale})
    doc["spec"]["pools"] = {"cpu": {"min": cpu[0], "max": cpu[1]}, "isp": {"min": isp[0], "max": isp[1]}}
    return load_job_dict(doc)


def demand():
    from recprep.predictor.signals import BinnedSeries

    return BinnedSeries(2.0)


def test_rates_come_from_the_whole_shard_tasks_the_driver_published():
    doc = progress_doc(pools={"cpu": {"rows": 30_000, "seconds": 3.0, "shards": 3}})
    assert au.rows_per_worker(doc) == {"cpu": 10_000.0}
    assert au.task_seconds(doc) == 1.0
    assert au.rows_left(doc) == 380_000
    assert au.rows_left({**doc, "rowsEstimated": None}) is None
    assert (
        au.rows_per_worker(progress_doc(pools={})) == {} and au.task_seconds(progress_doc(pools={})) is None
    )
    assert au.rows_per_worker(None) == {}


def test_a_pool_without_a_measurement_borrows_the_others_rate_and_isp_counts_its_units():
    job = load_job_dict(job_document())
    units = job.spec.pools.isp.units
    assert au.pool_rates(job, {"cpu": 100.0}) == {"cpu": 100.0, "isp": 100.0 * units}
    assert au.pool_rates(job, {"isp": 50.0}) == {"cpu": 50.0, "isp": 50.0 * units}
    assert au.pool_rates(job, {}) == {}


def test_the_observation_has_the_pools_bounds_prices_lags_rows_left_and_deadline():
    job = autoscaled_job(cpu=(0, 3), deadline=30)
    views = {"cpu": au.PoolView(1, 1), "isp": au.PoolView(0, 0)}
    obs = au.observation(job, 5.0, views, progress_doc(), {"cpu": 12.0}, demand())
    cpu = obs.pools["cpu"]
    assert set(obs.pools) == {"cpu"}  # no ISP worker: the pool is left out
    assert (cpu.replicas, cpu.ready, cpu.min, cpu.max) == (1, 1, 1, 3)  # min 0, but one must run
    assert cpu.rows_per_worker == 10_000.0 and cpu.startup_lag == 12.0
    model = job.spec.pools.isp.model
    assert cpu.price_per_hour == model.cpu_core_hourly(True)
    assert obs.now == 5.0 and obs.deadline == 30.0 and obs.rows_left == 380_000
    assert obs.trainers is False and math.isinf(obs.backlog)


def test_the_isp_pool_is_sized_within_its_spec_and_its_storage_nodes():
    job = autoscaled_job(cpu=(0, 4), isp=(1, 3))
    views = {"cpu": au.PoolView(1, 1), "isp": au.PoolView(2, 2)}
    doc = progress_doc(pools={"isp": {"rows": 10_000, "seconds": 1.0, "shards": 1}})
    obs = au.observation(job, 1.0, views, doc, {}, demand(), hosts=2)
    isp = obs.pools["isp"]
    assert (isp.replicas, isp.min, isp.max, isp.hosts, isp.limit) == (2, 1, 3, 2, 2)
    assert isp.price_per_hour == job.spec.pools.isp.model.isp_node_hourly
    assert isp.rows_per_worker == 10_000.0 * job.spec.pools.isp.units
    assert obs.pools["cpu"].min == 0  # ISP workers run whole shards: the CPU pool may be empty
    assert obs.pools["isp"].startup_lag == au.STARTUP_PRIOR
    # more than the storage nodes: held to them; fewer: retired down to spec min
    assert au.actions(job, views, {"isp": 9}, {}, hosts=2) == []  # already at its 2 nodes
    (up,) = au.actions(job, views, {"isp": 9}, {}, hosts=None)  # nodes unknown: spec max
    assert (up.pool, up.target) == ("isp", 3) and "held to spec.pools.isp [min 1, max 3]" in up.reason
    (down,) = au.actions(job, views, {"isp": 0}, {}, hosts=2)
    assert (down.before, down.target) == (2, 1)
    # a pool the spec allows none and that has none is left out
    none = autoscaled_job(cpu=(1, 4), isp=(0, 0))
    bare = {"cpu": au.PoolView(1, 1), "isp": au.PoolView(0, 0)}
    assert "isp" not in au.observation(none, 1.0, bare, doc, {}, demand()).pools
    assert au.actions(none, bare, {"isp": 2}, {}) == []


def test_the_cpu_pool_may_be_empty_only_while_isp_workers_stay_and_run_whole_shards():
    job = autoscaled_job(cpu=(0, 4), isp=(0, 2))
    views = {"cpu": au.PoolView(2, 2), "isp": au.PoolView(1, 1)}
    # both to 0 in one decision: the ISP pool goes first, so the CPU pool keeps one worker
    isp_down, cpu_down = au.actions(job, views, {"isp": 0, "cpu": 0}, {})
    assert (isp_down.pool, isp_down.target, cpu_down.pool, cpu_down.target) == ("isp", 0, "cpu", 1)
    (cpu_only,) = au.actions(job, views, {"isp": 1, "cpu": 0}, {})  # ISP stays: CPU may go
    assert (cpu_only.pool, cpu_only.target) == ("cpu", 0)
    starting = {"cpu": au.PoolView(2, 2), "isp": au.PoolView(1, 0)}  # its worker not joined yet
    assert au.actions(job, starting, {"isp": 1, "cpu": 0}, {})[0].target == 1
    # a transform ISP units do not run (categorify): the CPU pool finishes every shard
    doc = job_document(autoscale={"interval": 2})
    doc["spec"]["pools"] = {"cpu": {"min": 0, "max": 4}, "isp": {"min": 0, "max": 2}}
    doc["spec"]["transforms"].append({"op": "categorify", "columns": "sparse"})
    partial = load_job_dict(doc)
    assert not partial.spec.isp_runs_whole_shards and job.spec.isp_runs_whole_shards
    assert au.actions(partial, views, {"isp": 1, "cpu": 0}, {})[0].target == 1


def test_nothing_measured_means_no_observation():
    job = autoscaled_job()
    views = {"cpu": au.PoolView(1, 0)}
    assert au.observation(job, 1.0, views, progress_doc(pools={}), {}, demand()) is None


def test_the_predictive_policy_grows_the_pool_for_a_deadline_one_worker_misses():
    from recprep.predictor.policies import policy_from

    job = autoscaled_job(cpu=(1, 3), deadline=200)
    views = {"cpu": au.PoolView(1, 1)}
    policy = policy_from(job.spec.autoscale)
    # 2000 rows/s per worker; 380000 rows in the 185 s left after start-up need 2054 rows/s
    doc = progress_doc(pools={"cpu": {"rows": 20_000, "seconds": 10.0, "shards": 2}})
    obs = au.observation(job, 10.0, views, doc, {"cpu": 5.0}, demand())
    decision = policy.decide(obs.now, obs)
    (action,) = au.actions(job, views, decision.targets, decision.reasons)
    assert (action.pool, action.before, action.target) == ("cpu", 1, 2)
    assert "deadline" in action.reason


def test_actions_hold_targets_to_the_bounds_and_skip_what_the_deployment_already_has():
    job = autoscaled_job(cpu=(1, 3))
    views = {"cpu": au.PoolView(2, 2)}
    (up,) = au.actions(job, views, {"cpu": 9}, {"cpu": "cpu 2 -> 9: more"})
    assert (up.before, up.target) == (2, 3) and "held to spec.pools.cpu [min 1, max 3]" in up.reason
    (down,) = au.actions(job, views, {"cpu": 0}, {"cpu": "cpu 2 -> 0: less"})
    assert down.target == 1  # the floor: one worker while no ISP worker runs shards
    assert au.actions(job, views, {"cpu": 2}, {}) == []  # already there: nothing to do (a restart)
    assert au.actions(job, views, {}, {}) == []


def test_no_scaling_action_within_the_interval_of_the_last_one():
    now = datetime(2025, 1, 1, 12, 0, 10, tzinfo=UTC)
    assert au.may_scale(None, now, 15)
    assert not au.may_scale(st.now_rfc3339(now - timedelta(seconds=5)), now, 15)
    assert au.may_scale(st.now_rfc3339(now - timedelta(seconds=15)), now, 15)
    assert au.may_scale("garbage", now, 15)


def test_a_pending_action_is_kept_only_if_the_deployment_shows_it_carried_out():
    pending = st.scaling_record("cpu", 1, 2, "cpu 1 -> 2: deadline")
    kept = au.settle_pending(pending, 2)
    assert (kept["from"], kept["to"]) == (1, 2) and "after an operator restart" in kept["reason"]
    assert au.settle_pending(pending, 1) is None  # not carried out: the next decision starts afresh
    assert au.settle_pending(None, 2) is None


def test_the_status_keeps_the_last_decisions_bounded_and_the_printer_columns_text():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    status = None
    for i in range(st.MAX_DECISIONS + 3):
        record = st.scaling_record("cpu", i, i + 1, f"step {i}", now + timedelta(seconds=i))
        status = st.autoscaler_status(
            status,
            policy="predictive",
            quantile=0.9,
            forecast=None,
            capacity={"cpu": 1234.56},
            rows_per_worker={"cpu": 617.3},
            startup_lag={"cpu": 60},
            actions=[record],
            pending=None,
        )
    assert len(status["lastDecisions"]) == st.MAX_DECISIONS
    assert status["lastDecisions"][-1]["reason"] == f"step {st.MAX_DECISIONS + 2}"
    assert status["lastScale"] == f"cpu {st.MAX_DECISIONS + 2}->{st.MAX_DECISIONS + 3}"
    assert status["lastScaleTime"] == status["lastDecisions"][-1]["time"]
    assert status["capacity"] == {"cpu": 1235} and status["forecast"] is None and status["pending"] is None
    # a look without an action keeps the record and the time of the last one
    quiet = st.autoscaler_status(au._without_nulls(status), policy="predictive", message="waiting")
    assert quiet["lastDecisions"] == status["lastDecisions"]
    assert quiet["lastScaleTime"] == status["lastScaleTime"]
    with pytest.raises(ValueError):
        st.scaling_record("cpu", -1, 1, "no")


def test_the_status_schema_types_every_field_the_autoscaler_writes():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    record = st.scaling_record("cpu", 1, 2, "why", now)
    status = st.autoscaler_status(
        None,
        policy="predictive",
        quantile=0.9,
        forecast=12.0,
        capacity={"cpu": 1.0, "isp": 2.0},
        rows_per_worker={"cpu": 1.0},
        startup_lag={"cpu": 60.0},
        message="m",
        actions=[record],
        pending=record,
    )
    schema = st.STATUS_SCHEMA["properties"]["autoscaler"]
    assert set(status) <= set(schema["properties"])
    item = schema["properties"]["lastDecisions"]["items"]["properties"]
    assert set(record) == set(item) == set(schema["properties"]["pending"]["properties"])
    assert schema["properties"]["lastDecisions"]["maxItems"] == st.MAX_DECISIONS
    assert schema["properties"]["forecast"]["nullable"] is True


def test_start_up_lag_is_measured_from_replicas_asked_to_workers_joined():
    job = au.JobAutoscaler("u")
    job.saw(0.0, {"cpu": 1, "isp": 0})
    job.asked("cpu", 2, 10.0)
    job.saw(11.0, {"cpu": 1, "isp": 0})
    job.saw(14.0, {"cpu": 2, "isp": 0})  # one joined after 4 s
    job.saw(16.0, {"cpu": 3, "isp": 0})  # the other after 6 s
    assert list(job.lags["cpu"].lags) == [4.0, 6.0] and not job.requested["cpu"]
    assert job.startup_lags()["cpu"] == 6.0  # measured: the prior (a guess) gives way at once
    job.saw(17.0, {"cpu": 4, "isp": 0})  # a worker nobody asked for: no lag
    assert len(job.lags["cpu"].lags) == 2


def test_the_first_worker_of_a_pool_seen_from_the_jobs_start_is_a_start_up_measured():
    from datetime import UTC, datetime, timedelta

    wall = datetime(2026, 12, 3, 7, 0, 10, tzinfo=UTC)
    body = {
        "spec": {"pools": {"cpu": {"min": 2}, "isp": {"min": 0}}},
        "status": {"startTime": "2026-12-03T07:00:00Z"},
    }
    job = au.JobAutoscaler("u")
    job.first_workers(body, {}, 100.0, wall)  # 10 s after the start, no worker joined yet
    job.saw(100.0, {})  # (the scheduler not up yet)
    job.saw(103.0, {"cpu": 2, "isp": 0})  # joined 13 s after the start: one is measured
    assert list(job.lags["cpu"].lags) == [13.0] and not job.lags["isp"].lags
    job.saw(105.0, {"cpu": 2, "isp": 1})  # the ISP pool starts with one worker of its [0, 4]
    assert list(job.lags["isp"].lags) == [15.0]
    late = au.JobAutoscaler("v")  # first seen with its workers there: nothing to measure
    late.first_workers(body, {"cpu": 2}, 100.0, wall + timedelta(seconds=50))
    assert not late.requested["cpu"]
    restarted = au.JobAutoscaler("r")  # an operator that came long after the start
    restarted.first_workers(body, {}, 100.0, wall + timedelta(hours=1))
    assert restarted.started_seen and not restarted.requested["cpu"]
    unstarted = au.JobAutoscaler("w")
    unstarted.first_workers({"status": {}}, {}, 0.0, wall)
    assert not unstarted.started_seen and not unstarted.requested["cpu"]  # asked again next pass


def test_the_policy_is_made_once_and_again_when_spec_autoscale_changes():
    state = au.JobAutoscaler("u")
    first = state.policy_for(autoscaled_job(deadline=50))
    assert state.policy_for(autoscaled_job(deadline=50)) is first
    assert state.policy_for(autoscaled_job(deadline=60)) is not first


class _Recorder:
    def __init__(self):
        self.submitted = []

    def submit(self, fn, *args):
        self.submitted.append(args)


def test_the_follower_starts_a_look_only_for_running_autoscaled_jobs_and_not_after_stop(settings):
    autoscalers = au.Autoscalers(clock=lambda: 100.0)
    recorder = _Recorder()
    autoscalers._executor = recorder
    body = {"metadata": {"name": "j", "uid": "u1"}, "spec": {"autoscale": {"interval": 2}}}
    autoscalers.follow(None, body, {"cpu": 1}, st.FITTING, settings, None)
    assert recorder.submitted == []  # not running yet
    autoscalers.follow(None, body, {"cpu": 1}, st.RUNNING, settings, None)
    assert len(recorder.submitted) == 1
    autoscalers.follow(None, body, {"cpu": 1}, st.RUNNING, settings, None)
    assert len(recorder.submitted) == 1  # one look in flight at a time
    autoscalers.jobs["u1"].busy = False
    autoscalers.stop("u1")
    autoscalers.follow(None, body, {"cpu": 1}, st.RUNNING, settings, None)
    assert len(recorder.submitted) == 1  # finished: no more looks
    plain = {"metadata": {"name": "k", "uid": "u2"}, "spec": {}}
    autoscalers.follow(None, plain, {"cpu": 1}, st.RUNNING, settings, None)
    assert "u2" not in autoscalers.jobs
    autoscalers.retain({"u2"})
    assert autoscalers.jobs == {}


def test_trainers_demand_comes_from_the_consumed_rows_over_the_window():
    import math

    from recprep.operator.autoscaler import DEMAND_WINDOW, Trainers
    from recprep.predictor.signals import BinnedSeries

    trainers, demand = Trainers(), BinnedSeries(1.0)
    doc = {"rows": 50_000, "rowsQuarantined": 0, "consumedRows": None}
    assert trainers.look(0.0, doc, demand) == (False, math.inf)  # no group yet: a gap
    assert trainers.look(1.0, {**doc, "consumedRows": 0}, demand) == (True, math.inf)  # joined
    # the driver publishes every 5 s: looks within the window carry nothing new
    for t, consumed in ((2.0, 0), (6.0, 10_000), (9.0, 10_000)):
        assert trainers.look(t, {**doc, "consumedRows": consumed}, demand) == (True, math.inf)
    attached, backlog = trainers.look(1.0 + DEMAND_WINDOW, {**doc, "consumedRows": 20_000}, demand)
    assert attached and backlog == (50_000 - 20_000) / 2_000.0
    # carried forward until the next window ends
    assert trainers.look(12.0, {**doc, "consumedRows": 20_000}, demand) == (True, 30_000 / 2_000.0)
    values = demand.array()
    # one bin per second of the series' step, filled for the seconds between looks
    assert len(values) == 13 and all(math.isnan(v) for v in values[:10])
    assert list(values[10:]) == [2_000.0] * 3


def test_a_late_look_fills_the_demand_bins_it_missed():
    import math

    from recprep.operator.autoscaler import Trainers
    from recprep.predictor.signals import BinnedSeries

    trainers, demand = Trainers(window=2.0), BinnedSeries(1.0)
    doc = {"rows": 50_000, "rowsQuarantined": 0}
    trainers.look(0.0, {**doc, "consumedRows": 0}, demand)
    trainers.look(1.0, {**doc, "consumedRows": 0}, demand)
    trainers.look(3.6, {**doc, "consumedRows": 3_600}, demand)  # 2.6 s later: 3 bins of 1 s
    values = demand.array()
    assert len(values) == 5 and all(math.isnan(v) for v in values[:2])
    assert list(values[2:]) == [1_000.0] * 3


def test_preempted_workers_are_counted_per_pool_against_the_time_their_pool_ran():
    wall = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)
    body = {
        "metadata": {"name": "clicks"},
        "status": {"startTime": "2026-12-03T07:00:00Z", "preemptions": {"count": 0, "last": []}},
    }
    job = au.JobAutoscaler("u")
    job.noticed(body, {"cpu": 2}, wall)  # none yet
    job.saw(0.0, {"cpu": 2, "isp": 1})
    job.saw(1800.0, {"cpu": 2, "isp": 1})  # 1 worker-hour of cpu, half of isp
    notice = {
        "node": "spot-1",
        "reason": "aws-node-termination-handler/spot-itn",
        "noticeTime": "2026-12-03T07:30:00Z",
        "pods": ["clicks-worker-cpu-abc", "clicks-worker-cpu-def", "other-worker-cpu-x"],
    }
    body["status"]["preemptions"] = {"count": 1, "last": [notice]}
    job.noticed(body, {"cpu": 2}, wall)
    job.noticed(body, {"cpu": 2}, wall)  # the same notice again: counted once
    rates = job.preempt_rates()
    # 2 notices over 1 worker-hour seen, plus the prior's hour (0 notices): 1 per worker-hour
    assert rates["cpu"] * 3600 == pytest.approx(1.0) and rates["isp"] == 0.0
    # a new operator (a restart) counts the recorded notices over the job's hour at today's workers
    restarted = au.JobAutoscaler("u")
    restarted.noticed(body, {"cpu": 2, "isp": 1}, wall)
    assert restarted.preempt_rates()["cpu"] * 3600 == pytest.approx(2 / 3)
    # the planner sees it for a preemptible CPU pool only
    views = {"cpu": au.PoolView(2, 2)}
    states = au.pool_states(autoscaled_job(), views, {"cpu": 1.0}, {}, preempt_rates=rates)
    assert states["cpu"].preempt_rate == rates["cpu"]
    doc = job_document(preemptible=False, autoscale={"interval": 2})
    steady = au.pool_states(load_job_dict(doc), views, {"cpu": 1.0}, {}, preempt_rates=rates)
    assert steady["cpu"].preempt_rate == 0.0


def test_the_storage_nodes_are_the_schedulable_nodes_the_isp_selector_matches(cluster, settings):
    import dataclasses
    import logging

    from kubernetes import config as k8s_config

    from recprep.operator.settings import PoolDefaults

    def node(name, labels, unschedulable=False):
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"unschedulable": unschedulable},
        }

    storage = dict(settings.isp_pool.node_selector)
    for doc in (node("s1", storage), node("s2", {**storage, "zone": "a"}), node("s3", storage, True)):
        cluster.request("POST", "/api/v1/nodes", doc)
    cluster.request("POST", "/api/v1/nodes", node("c1", {"pool": "cpu"}))
    api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    log = logging.getLogger("test")
    assert au.Autoscalers().storage_nodes(api, settings, log) == 2  # s3 is cordoned
    # pinned by an affinity only, or a selector no node matches yet: unknown (spec max holds)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}
    by_affinity = dataclasses.replace(settings, isp_pool=PoolDefaults(affinity=affinity))
    assert au.Autoscalers().storage_nodes(api, by_affinity, log) is None
    elsewhere = dataclasses.replace(settings, isp_pool=PoolDefaults(node_selector={"no": "such"}))
    assert au.Autoscalers().storage_nodes(api, elsewhere, log) is None
