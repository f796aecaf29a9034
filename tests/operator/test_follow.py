"""The follower's status computation as data: observations in, the next status out."""

from __future__ import annotations

from datetime import UTC, datetime

from recprep import progress
from recprep.operator import status as st
from recprep.operator.follow import Observation, next_status, without_nulls

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 3, 9, 0, tzinfo=UTC)


def doc(stage, done=0, total=None, rows=0, estimated=None, quarantined=0, warnings=()):
    return progress.document(
        stage,
        shards_done=done,
        shards_total=total,
        rows=rows,
        rows_estimated=estimated,
        rows_quarantined=quarantined,
        warnings=warnings,
    )


def counts(active=0, failed=0, succeeded=0):
    return {"active": active, "failed": failed, "succeeded": succeeded}


def test_a_running_driver_moves_pending_to_fitting_then_transform_to_running():
    pending = st.initial_status(T0)
    fitting = next_status(
        pending,
        Observation(
            driver_found=True,
            driver_running=True,
            driver_counts=counts(active=1),
            workers={"cpu": 2, "isp": 1},
        ),
        T1,
    )
    assert fitting["phase"] == st.FITTING and fitting["workers"] == {"cpu": 2, "isp": 1}
    assert fitting["driver"] == counts(active=1) and fitting["startTime"] == pending["startTime"]
    planned = next_status(fitting, Observation(driver_running=True, progress=doc("fit", 0, 8, 0, 40000)), T1)
    assert planned["phase"] == st.FITTING and planned["progressText"] == "0/8"
    running = next_status(
        planned, Observation(driver_running=True, progress=doc("transform", 3, 8, 15000, 40000)), T1
    )
    assert running["phase"] == st.RUNNING
    assert running["shards"] == {"done": 3, "total": 8} and running["rows"] == {
        "done": 15000,
        "estimated": 40000,
        "written": 15000,
        "quarantined": 0,
    }
    assert st.get_condition(running["conditions"], st.PROGRESSING)["reason"] == st.RUNNING


def test_phases_never_move_back_when_a_retried_driver_plans_again():
    running = next_status(st.initial_status(T0), Observation(progress=doc("transform", 3, 8, 15000)), T1)
    retried = next_status(
        running,
        Observation(
            driver_running=True,
            driver_counts=counts(active=1, failed=1),
            driver_error="error: worker lost",
            backoff_limit=2,
            progress=doc("plan"),
        ),
        T1,
    )
    assert retried["phase"] == st.RUNNING
    assert retried["message"] == (
        "driver attempt 1 of 3 failed (error: worker lost); retrying; committed shards are kept"
    )
    assert retried["driver"] == counts(active=1, failed=1)
    assert retried["progressText"] == "3/8" and retried["rows"]["done"] == 15000  # not reset by the replan


def test_a_job_that_finishes_between_two_looks_walks_every_phase_to_succeeded():
    done = next_status(
        st.initial_status(T0),
        Observation(
            driver_found=True,
            driver_complete=True,
            driver_completion_time=T1,
            driver_counts=counts(succeeded=1),
            progress=doc("done", 8, 8, 40000, 40000, 25, ["spec.transforms[3] (hex_to_int on C3) made ..."]),
            workers={"cpu": 3, "isp": 0},
        ),
        T1,
    )
    assert done["phase"] == st.SUCCEEDED and done["message"] == "all 8 shards committed"
    # rows are conserved in the status: read = written + quarantined
    assert done["progressText"] == "8/8" and done["rows"] == {
        "done": 40000,
        "estimated": 40000,
        "written": 39975,
        "quarantined": 25,
    }
    assert done["warnings"] == ["spec.transforms[3] (hex_to_int on C3) made ..."]
    assert done["workers"] == {"cpu": 0, "isp": 0}
    assert done["completionTime"] == "2026-01-02T03:09:00Z"
    kinds = {c["type"]: c["status"] for c in done["conditions"]}
    assert kinds == {st.PROGRESSING: "False", st.COMPLETE: "True"}


def test_completion_without_a_last_progress_document_still_counts_every_shard():
    running = next_status(
        st.initial_status(T0), Observation(progress=doc("transform", 6, 8, 30000, 40000)), T1
    )
    done = next_status(running, Observation(driver_complete=True), T1)
    assert done["progressText"] == "8/8" and done["phase"] == st.SUCCEEDED
    unknown = next_status(st.initial_status(T0), Observation(driver_complete=True), T1)
    assert unknown["progressText"] == "0/?" and unknown["message"] == "the driver completed"


def test_a_driver_past_its_backoff_limit_fails_the_job_with_its_last_error():
    running = next_status(st.initial_status(T0), Observation(progress=doc("transform", 1, 8)), T1)
    failed = next_status(
        running,
        Observation(
            driver_failed=("BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            driver_counts=counts(failed=3),
            backoff_limit=2,
            driver_error="error: spec.source.uri: /data/day0.tsv does not exist",
        ),
        T1,
    )
    assert failed["phase"] == st.FAILED
    assert failed["message"] == (
        "driver failed 3 time(s), more than backoffLimit 2 (BackoffLimitExceeded: "
        "Job has reached the specified backoff limit); last error: "
        "error: spec.source.uri: /data/day0.tsv does not exist"
    )
    assert st.get_condition(failed["conditions"], st.FAILED_CONDITION)["reason"] == "BackoffLimitExceeded"
    assert failed["workers"] == {"cpu": 0, "isp": 0} and failed["progressText"] == "1/8"


def test_inputs_are_not_modified_and_nulls_are_dropped_like_the_server_does():
    pending = st.initial_status(T0)
    before = repr(pending)
    next_status(pending, Observation(driver_running=True), T1)
    assert repr(pending) == before
    assert without_nulls({"shards": {"done": 0, "total": None}, "x": [{"a": None, "b": 1}]}) == {
        "shards": {"done": 0},
        "x": [{"b": 1}],
    }


def test_the_shard_service_is_due_once_the_driver_has_opened_the_output():
    from recprep.operator.follow import shard_service_due

    pending = st.initial_status(T0)
    # planning: _job.json may not be written yet, so `recprep serve` would exit
    assert not shard_service_due(pending, Observation(driver_running=True, progress=doc("plan")))
    assert not shard_service_due(pending, Observation(driver_running=True))
    for stage in ("fit", "transform", "done"):
        assert shard_service_due(pending, Observation(progress=doc(stage, 0, 8)))
    assert shard_service_due(pending, Observation(driver_complete=True))
    succeeded = {**pending, "phase": st.SUCCEEDED}
    assert shard_service_due(succeeded, None)  # e.g. finished while the operator was down
    assert not shard_service_due({**pending, "phase": st.FAILED}, None)
    created = {**succeeded, "shardService": {"name": "j-shards", "url": "grpc://j-shards.ns.svc:8815"}}
    assert not shard_service_due(created, None)
    assert not shard_service_due(created, Observation(progress=doc("transform", 1, 8)))


def test_the_published_accounting_is_copied_into_the_status_and_kept():
    accounting = {"placement": "isp", "shards": 8, "shardsByPool": {"isp": 8}, "rows": 40000}
    running = next_status(st.initial_status(T0), Observation(progress=doc("transform", 3, 8, 15000)), T1)
    assert "accounting" not in running
    landed = progress.document(
        "transform", shards_done=8, shards_total=8, rows=40000, rows_estimated=40000, accounting=accounting
    )
    status = next_status(running, Observation(driver_running=True, progress=landed), T1)
    assert status["accounting"] == accounting
    # a later document without it (a retried driver planning again) keeps the last one
    status = next_status(status, Observation(driver_running=True, progress=doc("plan")), T1)
    assert status["accounting"] == accounting
    done = next_status(status, Observation(driver_complete=True, progress=landed), T1)
    assert done["phase"] == st.SUCCEEDED and without_nulls(done)["accounting"] == accounting
