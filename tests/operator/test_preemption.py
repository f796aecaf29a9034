"""Preemption on notice: which pods a notice affects, the notice record and status (pure), and
the handling (retire through the scheduler, then delete the pods; replacements measured) with
the Kubernetes and scheduler calls faked."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from recprep.operator import preemption as pr
from recprep.operator import scaling
from recprep.operator import scheduler as dask_scheduler
from recprep.operator import status as st
from recprep.operator.settings import Settings

AWS, GKE = "aws-node-termination-handler/spot-itn", "cloud.google.com/impending-node-termination"
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LOG = logging.getLogger("test")


def test_the_notice_taints_are_aws_and_gke_with_their_notices():
    assert pr.NOTICE_TAINTS == {AWS: 120.0, GKE: 30.0}


def test_node_notices_come_from_the_notice_taints_only_and_take_the_shortest():
    notices = pr.node_notices(
        {"a": [AWS], "b": ["node.kubernetes.io/unschedulable"], "c": [AWS, GKE], "d": []}
    )
    assert notices == {"a": pr.NodeNotice("a", AWS, 120.0), "c": pr.NodeNotice("c", GKE, 30.0)}


def _pod(name, node="n1", pool="cpu", **extra):
    return pr.PodView(name=name, pool=pool, node=node, **extra)


def test_a_noticed_node_affects_its_worker_pods_not_others_nor_those_being_deleted():
    pods = [
        _pod("w1"),
        _pod("w2", pool="isp"),
        _pod("w3", node="n2"),
        _pod("w4", deleting=True, marked=True),  # a scale-down's: ours
        _pod("w5", node=None),
    ]
    (notice,) = pr.affected(pods, pr.node_notices({"n1": [GKE]}))
    assert notice.node == "n1" and notice.reason == GKE and notice.seconds == 30.0 and notice.delete
    assert [p.name for p in notice.pods] == ["w1", "w2"]
    assert pr.needed_per_pool(notice.pods) == {"cpu": 1, "isp": 1}


def test_a_node_is_handled_once_and_handled_pods_are_not_noticed_again():
    notices = pr.node_notices({"n1": [AWS]})
    pods = [_pod("w1"), _pod("w2")]
    assert pr.affected(pods, notices, handled_nodes={"n1"}) == []
    (notice,) = pr.affected(pods, notices, handled_pods={"w1"})
    assert [p.name for p in notice.pods] == ["w2"]


def test_a_pod_deleted_by_someone_else_is_a_notice_to_retire_without_deleting():
    pods = [
        _pod("w1", deleting=True, grace=45.0),  # evicted, drained, or kubectl delete
        _pod("w2", deleting=True, marked=True),  # the operator's own scale-down
        _pod("w3", node="n2", deleting=True),  # no grace period known
    ]
    found = pr.affected(pods, {})
    assert [(n.node, n.reason, n.seconds, n.delete, [p.name for p in n.pods]) for n in found] == [
        ("n1", pr.POD_DELETED, 45.0, False, ["w1"]),
        ("n2", pr.POD_DELETED, pr.DEFAULT_GRACE, False, ["w3"]),
    ]
    assert pr.affected(pods, {}, handled_pods={"w1", "w3"}) == []


def test_pod_view_knows_the_operators_marks():
    def v1pod(annotations=None, deleting=False):
        return SimpleNamespace(
            metadata=SimpleNamespace(
                name="p",
                annotations=annotations,
                labels={"recprep.io/pool": "isp"},
                deletion_timestamp=T0 if deleting else None,
                deletion_grace_period_seconds=30 if deleting else None,
                creation_timestamp=T0,
            ),
            spec=SimpleNamespace(node_name="n1"),
        )

    assert pr.pod_view(v1pod()) == pr.PodView("p", "isp", "n1", False, False, None, T0)
    cost = {scaling.DELETION_COST_ANNOTATION: scaling.DELETION_COST}
    assert pr.pod_view(v1pod(cost, deleting=True)).marked
    assert pr.pod_view(v1pod({pr.PREEMPTED_ANNOTATION: "n1"}, deleting=True)).marked
    foreign = pr.pod_view(v1pod({"other": "x"}, deleting=True))
    assert pr.foreign_deletion(foreign) and foreign.grace == 30.0


def test_the_notice_record_and_the_bounded_status():
    notice = pr.Notice("n1", AWS, 120.0, (_pod("w1"), _pod("w2")), delete=True)
    record = pr.notice_record(notice, T0)
    assert record == {
        "node": "n1",
        "reason": AWS,
        "noticeTime": "2026-01-01T12:00:00Z",
        "noticeSeconds": 120.0,
        "pods": ["w1", "w2"],
        "retired": 0,
        "drainedSeconds": None,
        "replacedSeconds": None,
    }
    drained = pr.with_drained(record, 2, 1.23456)
    assert drained["retired"] == 2 and drained["drainedSeconds"] == 1.23
    assert pr.with_drained(record, 0, None)["drainedSeconds"] is None
    status = pr.preemptions_status(None, drained)
    assert status == {"count": 1, "last": [drained]}
    replaced = pr.with_replaced(drained, 7.891)
    status = pr.preemptions_status(status, replaced)  # the same notice: updated, not counted
    assert status == {"count": 1, "last": [replaced]} and replaced["replacedSeconds"] == 7.89
    for i in range(1, 8):
        later = {**replaced, "noticeTime": st.now_rfc3339(T0 + timedelta(minutes=i))}
        status = pr.preemptions_status(status, later)
    assert status["count"] == 8 and len(status["last"]) == pr.MAX_NOTICES == st.MAX_PREEMPTIONS
    assert status["last"][-1]["noticeTime"] == "2026-01-01T12:07:00Z"
    message = pr.event_message(drained)
    assert AWS in message and "retired 2 of 2" in message and "w1, w2" in message


def test_the_status_schema_types_the_record():
    schema = st.STATUS_SCHEMA["properties"]["preemptions"]
    item = schema["properties"]["last"]["items"]["properties"]
    record = pr.notice_record(pr.Notice("n", AWS, 120.0, (_pod("w"),), delete=True), T0)
    assert set(record) == set(item)
    assert schema["properties"]["last"]["maxItems"] == pr.MAX_NOTICES


# --- the mechanism, with the calls faked -----------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def _v1pod(name, node="n1", created=T0 - timedelta(minutes=5)):
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name=name,
            annotations={},
            labels={"recprep.io/pool": "cpu"},
            deletion_timestamp=None,
            deletion_grace_period_seconds=None,
            creation_timestamp=created,
        ),
        spec=SimpleNamespace(node_name=node),
    )


@pytest.fixture()
def fake(monkeypatch):
    calls: list[tuple] = []
    world = SimpleNamespace(pods=[_v1pod("w1"), _v1pod("w2", node="n2")], calls=calls, retire=None)

    def state(addr, timeout=None):
        workers = {
            p.metadata.name: dask_scheduler.DaskWorker(
                f"tcp://{p.metadata.name}", p.metadata.name, "running", "cpu"
            )
            for p in world.pods
        }
        return dask_scheduler.SchedulerState(workers=workers)

    def retire(addr, addresses, timeout):
        calls.append(("retire", tuple(addresses)))
        if world.retire is not None:
            raise world.retire
        return set(addresses)

    monkeypatch.setattr(dask_scheduler, "state", state)
    monkeypatch.setattr(dask_scheduler, "retire", retire)
    monkeypatch.setattr(pr.kube, "job_worker_pods", lambda api, ns, name: list(world.pods))
    monkeypatch.setattr(pr.kube, "annotate_pod", lambda api, ns, pod, a: calls.append(("annotate", pod, a)))

    def delete(api, ns, pod):
        calls.append(("delete", pod))
        world.pods = [p for p in world.pods if p.metadata.name != pod]

    monkeypatch.setattr(pr.kube, "delete_pod", delete)
    monkeypatch.setattr(
        pr.kube, "post_event", lambda api, body, t, reason, msg: calls.append(("event", reason, msg))
    )
    return world


BODY = {"metadata": {"name": "j", "namespace": "ns", "uid": "u1"}, "status": {"phase": "Running"}}


def test_a_noticed_node_is_retired_then_deleted_and_the_replacement_measured(fake):
    clock = Clock()
    handler = pr.Preemptions(wall=clock)
    notices = pr.node_notices({"n1": [AWS], "n2": []})
    status = handler.follow(None, BODY, "ns", notices, {"w1": "cpu", "w2": "cpu"}, Settings(), LOG)
    kinds = [c[0] for c in fake.calls]
    assert kinds == ["retire", "annotate", "delete", "event"]  # retired first, then deleted
    assert fake.calls[0] == ("retire", ("tcp://w1",))
    assert fake.calls[1][2] == {pr.PREEMPTED_ANNOTATION: "n1"}
    (record,) = status["last"]
    assert record["pods"] == ["w1"] and record["retired"] == 1 and record["drainedSeconds"] == 0.0
    assert record["replacedSeconds"] is None and status["count"] == 1

    # Next pass, the node still tainted: nothing more is retired; the replacement (on the
    # noticed node, as the process kubelet does) joins 9.5 s after the notice.
    clock.now = T0 + timedelta(seconds=9.5)
    fake.pods.append(_v1pod("w3", created=clock.now))
    fake.calls.clear()
    status = handler.follow(None, BODY, "ns", notices, {"w2": "cpu", "w3": "cpu"}, Settings(), LOG)
    assert fake.calls == []
    assert status["last"][0]["replacedSeconds"] == 9.5 and status["count"] == 1

    # The taint removed and put back: a new notice, for the pod now on the node.
    handler.follow(None, BODY, "ns", {}, {"w2": "cpu", "w3": "cpu"}, Settings(), LOG)
    status = handler.follow(None, BODY, "ns", notices, {"w2": "cpu", "w3": "cpu"}, Settings(), LOG)
    assert status["count"] == 2 and status["last"][-1]["pods"] == ["w3"]


def test_an_unreachable_scheduler_still_gets_the_pods_replaced_at_notice(fake):
    fake.retire = dask_scheduler.SchedulerUnavailable("gone")
    status = pr.Preemptions(wall=Clock()).follow(
        None, BODY, "ns", pr.node_notices({"n1": [GKE]}), {}, Settings(), LOG
    )
    assert ("delete", "w1") in fake.calls
    assert status["last"][0]["drainedSeconds"] is None and status["last"][0]["retired"] == 0


def test_a_restarted_operator_does_not_handle_a_recorded_notice_again(fake):
    clock = Clock()
    first = pr.Preemptions(wall=clock)
    notices = pr.node_notices({"n1": [AWS]})
    status = first.follow(None, BODY, "ns", notices, {}, Settings(), LOG)
    fake.pods.append(_v1pod("w3", created=T0 + timedelta(seconds=2)))
    fake.calls.clear()
    clock.now = T0 + timedelta(seconds=4)
    body = {**BODY, "status": {"phase": "Running", "preemptions": status}}
    again = pr.Preemptions(wall=clock).follow(None, body, "ns", notices, {"w3": "cpu"}, Settings(), LOG)
    assert fake.calls == []  # w3 is on the noticed node, but the notice was handled
    assert again["count"] == 1 and again["last"][0]["replacedSeconds"] == 4.0


def test_nodes_that_cannot_be_listed_are_unknown_and_asked_again_later(monkeypatch):
    from kubernetes.client.exceptions import ApiException

    def refused(api):
        raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(pr.kube, "node_taints", refused)
    now = [0.0]
    handler = pr.Preemptions(clock=lambda: now[0])
    assert handler.nodes(None, LOG) is None
    monkeypatch.setattr(pr.kube, "node_taints", lambda api: {"n1": [GKE]})
    assert handler.nodes(None, LOG) is None  # not asked again yet
    now[0] = pr.NODES_RETRY + 1
    assert handler.nodes(None, LOG) == {"n1": pr.NodeNotice("n1", GKE, 30.0)}
