"""The Kubernetes side of the job contract, end to end: every PreprocessJob ends either Succeeded
with every shard committed exactly once, or Failed with a message naming the cause; the operator
never crashes and never duplicates children. The chart's operator (run by the process kubelet
from the chart's Deployment, with its ServiceAccount's token and RBAC enforced) is put through:

* an API server answering 429 (with Retry-After) and 500 for a while (``faults.py``);
* its watch connections dropped mid-job, once by the server and once cut, while the job's spec
  changes;
* twenty PreprocessJobs created at once (the figures are printed and recorded as properties);
* RBAC: exactly the chart's rules suffice (namespaced Role and cluster-wide ClusterRole), and a
  rule taken away is reported, not silently waited on.

Needs kmock (the emulator), helm (the chart tests' wheel) and kubectl; skipped without them.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pytest
import yaml

from .conftest import CHILD_KINDS, NAMESPACE, Deployed
from .test_operator_e2e import assert_committed_exactly_once, ledger, preprocess_job

pytestmark = pytest.mark.integration

PPJ_API = "/apis/recprep.io/v1alpha1"


def _children(name: str) -> list[str]:
    """The children a job gets (before ttlSecondsAfterFinished removes its runtime)."""
    return sorted(
        [
            f"configmap/{name}-spec",
            f"deployment/{name}-scheduler",
            f"deployment/{name}-worker-cpu",
            f"deployment/{name}-worker-isp",
            f"job/{name}-driver",
            f"service/{name}-scheduler",
        ]
    )


def assert_children_once(deployed: Deployed, name: str) -> None:
    """The job's children, each created exactly once, and nothing else of the job's created."""
    assert [c for c in deployed.children(name) if not c.startswith("pod/")] == _children(name)
    created = deployed.creations(name)
    assert created == {child: 1 for child in _children(name)}, created
    assert len(deployed.pods(name, "driver")) == 1  # one driver attempt
    assert len(deployed.pods(name, "scheduler")) == 1


def assert_operator_never_restarted(deployed: Deployed, pod_name: str) -> None:
    """The same operator pod, its container never restarted, no pass of the follower crashed."""
    pod = deployed.operator_pod()
    assert pod["metadata"]["name"] == pod_name, "the operator pod was replaced"
    assert deployed.operator_restarts() == 0, f"the operator restarted\n{deployed.operator_log()[-4000:]}"
    log = deployed.operator_log()
    assert "reconciliation pass failed" not in log, log[-4000:]  # an unexpected exception in a pass


# --- RBAC --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cluster_wide", [False, True], ids=["role", "cluster-role"])
def test_the_operator_needs_no_more_than_the_chart_grants(deploy, tmp_path, cluster_wide):
    """With RBAC enforced, a job succeeds end to end on exactly the chart's rules, and the
    operator is refused nothing (kopf included: it does not try what the chart does not grant).
    Namespaced, the operator's rights end at its namespace; cluster-wide, a job in another
    namespace runs."""
    deployed: Deployed = deploy(values={"rbac": {"clusterWide": cluster_wide}})
    namespace = "team-a" if cluster_wide else NAMESPACE
    if cluster_wide:
        deployed.kubectl("create", "namespace", namespace)
    out = tmp_path / "out"
    manifest = preprocess_job("granted", out, rows=4000, rows_per_shard=2000)
    deployed.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))

    path = f"{PPJ_API}/namespaces/{namespace}/preprocessjobs/granted"

    def finished():
        status = deployed.cluster.get(path).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    try:
        status = deployed.wait_for(finished, timeout=120, interval=0.25, ignore=(LookupError,))
    except TimeoutError:
        pytest.fail(f"the job did not finish\n{deployed.operator_log()[-4000:]}\n{deployed.denials()}")
    assert status["phase"] == "Succeeded", status
    assert_committed_exactly_once(out, 2)
    assert deployed.denials() == [], "the operator was refused what the chart does not grant"

    emulator = deployed.cluster.emulator
    used = sorted(
        {
            (verb, group, resource)
            for (user, verb, group, resource, _ns, allowed), _n in deployed.cluster.call(
                lambda: dict(emulator.access)
            ).items()
            if user == deployed.operator_user and allowed and resource
        }
    )
    print(f"requests the operator made ({'ClusterRole' if cluster_wide else 'Role'}): {used}")
    assert ("patch", "recprep.io", "preprocessjobs/status") in used  # its status writes were checked
    assert ("create", "apps", "deployments") in used

    if not cluster_wide:  # the Role gives nothing outside the release's namespace
        refused = deployed.kubectl(
            "get", "deployments", "-n", "kube-public", f"--as={deployed.operator_user}", check=False
        )
        assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused
        assert f'User "{deployed.operator_user}" cannot list resource "deployments"' in refused.stderr


def _events_of(deployed: Deployed, name: str) -> list[dict]:
    """The Events about job ``name``."""
    events = deployed.cluster.get(f"/api/v1/namespaces/{NAMESPACE}/events")["items"]
    return [e for e in events if e.get("involvedObject", {}).get("name") == name]


@pytest.mark.parametrize(
    "group, resource, verb",
    [("apps", "deployments", "create"), ("recprep.io", "preprocessjobs/status", "patch")],
    ids=["no-create-deployments", "no-patch-status"],
)
def test_a_refused_call_is_reported_and_the_job_goes_on_once_granted(deploy, tmp_path, group, resource, verb):
    """One verb taken out of the chart's Role: the operator does not wait silently; it names
    the refused verb and resource in its log and, when it can still write them, in the job's
    status and an Event on the job (refused the status itself, it has only its log: kopf's
    failing status patch); granted again, the job runs to Succeeded, each shard once."""
    rendered: dict[str, dict] = {}

    def without_the_verb(manifests: list[dict]) -> list[dict]:
        manifests = copy.deepcopy(manifests)
        (role,) = [m for m in manifests if m["kind"] == "Role"]
        rendered["role"] = copy.deepcopy(role)
        (rule,) = [r for r in role["rules"] if group in r["apiGroups"] and resource in r["resources"]]
        assert verb in rule["verbs"]
        rule["verbs"] = [v for v in rule["verbs"] if v != verb]
        return manifests

    deployed: Deployed = deploy(edit=without_the_verb)
    out = tmp_path / "out"
    deployed.apply_job(preprocess_job("refused", out, rows=4000, rows_per_shard=2000, ttl=600))
    refusal = f'cannot {verb} resource "{resource}" in API group "{group}"'

    status_writable = resource != "preprocessjobs/status"

    def reported():
        events = [e["message"] for e in _events_of(deployed, "refused") if refusal in e.get("message", "")]
        logged = [line for line in deployed.operator_log().splitlines() if refusal in line]
        return (events, logged) if logged and (events or not status_writable) else None

    try:
        events, logged = deployed.wait_for(reported, timeout=60, interval=0.5)
    except TimeoutError:
        pytest.fail(
            f"the refusal was not reported\nevents: {_events_of(deployed, 'refused')}\n"
            f"{deployed.diagnostics('refused')}\ndenials: {deployed.denials()[:3]}"
        )
    print(f"Events: {events[:1]}\nlog: {logged[0][:400]}")
    assert deployed.denials() and all(refusal in d for d in deployed.denials()), deployed.denials()
    status = deployed.status("refused")
    if status_writable:  # it says what was refused
        assert refusal in status.get("message", ""), status
        progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
        assert progressing["status"] == "False" and progressing["reason"] == "Forbidden", progressing
        assert "phase" not in status, status
    else:
        assert "phase" not in status, status  # nothing could be written

    # Granted again (the Role as the chart renders it): the job goes on, exactly once.
    deployed.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(rendered["role"]))
    status = deployed.wait_phase("refused", "Succeeded", timeout=120)
    assert "message" not in status or refusal not in status["message"], status
    assert_committed_exactly_once(out, 2)
    assert_children_once(deployed, "refused")


# --- an API server in trouble --------------------------------------------------------------------


def test_a_job_rides_out_api_throttling_and_server_errors(deployed: Deployed, tmp_path):
    """The API server throttles (429 + Retry-After) and fails (500) the operator's requests:
    while the job's children are created (creations refused, or carried out and answered 500;
    its own patches and the lists of jobs) and then for 15 s while it runs (status patches, the
    reads of its children). The job still ends Succeeded, each shard committed once, each child
    created once, and the operator's container never restarted."""
    op, pod_name = deployed.operator_user, deployed.operator_pod()["metadata"]["name"]
    cluster = deployed.cluster
    ns = f"/namespaces/{NAMESPACE}/"
    children = ns + r"(configmaps|services|deployments|jobs)"
    faults = {
        # carried out, then answered 500: the retry must find the child, not make a second one
        "500 POST child (served)": cluster.inject_fault(
            500, method="POST", path=children, user=op, count=1, served=True
        ),
        "429 POST child": cluster.inject_fault(
            429, method="POST", path=children, user=op, count=1, retry_after=2
        ),
        "500 PATCH job": cluster.inject_fault(
            500, method="PATCH", path=r"/preprocessjobs/[^/?]+(\?|$)", user=op, seconds=20, every=2
        ),
        "500 LIST jobs": cluster.inject_fault(
            500, method="GET", path=r"/preprocessjobs(\?|$)", user=op, seconds=35, every=3, watches=False
        ),
    }
    out = tmp_path / "out"
    t0 = time.monotonic()
    deployed.apply_job(preprocess_job("flaky", out, rows=8000, rows_per_shard=2000, ttl=600))
    deployed.wait_for(
        lambda: len(deployed.creations("flaky")) == len(_children("flaky")),
        timeout=60,
        interval=0.2,
        message=f"the children were not created\n{deployed.diagnostics('flaky')}",
    )
    created = time.monotonic() - t0
    running = {
        "429 PATCH status": cluster.inject_fault(
            429, method="PATCH", path=r"/preprocessjobs/[^/?]+/status", user=op, seconds=15, every=2
        ),
        "500 PATCH status": cluster.inject_fault(
            500, method="PATCH", path=r"/preprocessjobs/[^/?]+/status", user=op, seconds=15, every=2
        ),
        "429 GET children": cluster.inject_fault(
            429, method="GET", path=ns + r"(pods|jobs|deployments)", user=op, seconds=15, every=2
        ),
    }
    status = deployed.wait_phase("flaky", "Succeeded", timeout=150)
    took = time.monotonic() - t0
    hits = {name: len(fault.hits) for name, fault in {**faults, **running}.items()}
    print(f"children after {created:.1f}s, Succeeded after {took:.1f}s; requests failed per fault: {hits}")
    assert all(hits.values()), f"a fault never met the operator's requests: {hits}"

    assert_committed_exactly_once(out, 4)
    assert status["progressText"] == "4/4" and status["driver"]["succeeded"] == 1, status
    assert_children_once(deployed, "flaky")
    assert_operator_never_restarted(deployed, pod_name)
    assert deployed.denials() == []


# --- watches dropped -----------------------------------------------------------------------------


def test_dropped_watches_are_resumed_and_later_edits_are_seen(deployed: Deployed, tmp_path):
    """Mid-job, the server ends the operator's watch streams; later every watch connection is
    cut and the operator's watch requests are refused for a few seconds, while the job's
    spec.pools changes. The operator comes back to its watch, sees the change (the pool grows,
    observedGeneration 2) and the job completes, each shard once, each child once."""
    op, pod_name = deployed.operator_user, deployed.operator_pod()["metadata"]["name"]
    cluster = deployed.cluster
    out = tmp_path / "out"
    # long enough to be running through both drops and the change (150 shards of one worker)
    rows, per_shard = 3_000_000, 20_000
    deployed.apply_job(preprocess_job("watched", out, rows=rows, rows_per_shard=per_shard, ttl=600))

    def operator_watches() -> list[str]:
        return [path for user, path in cluster.open_watches() if user == op and "/preprocessjobs" in path]

    deployed.wait_for(
        lambda: deployed.status("watched").get("phase") == "Running" and ledger(out),
        timeout=60,
        interval=0.2,
        ignore=(LookupError,),
        message=f"the job did not start\n{deployed.diagnostics('watched')}",
    )
    first = deployed.wait_for(operator_watches, timeout=10, message="the operator does not watch its jobs")

    # 1: ended by the server (as on a watch timeout or an API server rollout).
    assert cluster.drop_watches(user=op) == len(first)
    deployed.wait_for(operator_watches, timeout=30, interval=0.1, message="the operator did not watch again")

    # 2: every watch connection cut (the kubelet's too), the operator's watch requests refused for
    # 4 s, and meanwhile the spec changes: nobody of the operator's is watching when it does.
    refused = cluster.inject_fault(503, method="GET", path=r"[?&]watch=(true|1)", user=op, seconds=4)
    assert cluster.drop_watches(abrupt=True) >= 1
    deployed.kubectl(
        "patch",
        "ppj",
        "watched",
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"pools": {"cpu": {"min": 2, "max": 2}}}}),
    )
    generation = deployed.ppj("watched")["metadata"]["generation"]
    assert generation == 2

    def applied():  # by the spec handler, live (a finished job's change gets no SpecApplied)
        status = deployed.status("watched")
        spec_applied = next((c for c in status.get("conditions", []) if c["type"] == "SpecApplied"), {})
        return (
            status.get("observedGeneration") == generation
            and spec_applied.get("status") == "True"
            and "spec.pools.cpu.min" in spec_applied.get("message", "")
        )

    try:
        deployed.wait_for(applied, timeout=60, interval=0.2)
    except TimeoutError:
        watches = cluster.open_watches()
        pytest.fail(f"the spec change was not seen\nwatches: {watches}\n{deployed.diagnostics('watched')}")
    print(f"watch requests refused while the spec changed: {len(refused.hits)}")
    assert refused.hits, "the operator did not try to watch again while its watch requests were refused"
    assert operator_watches(), "the operator is not watching at the end"
    assert "pool cpu: 1 -> 2 workers" in deployed.operator_log()

    status = deployed.wait_phase("watched", "Succeeded", timeout=150)
    assert_committed_exactly_once(out, rows // per_shard)
    assert status["driver"]["succeeded"] == 1, status
    assert_children_once(deployed, "watched")
    assert_operator_never_restarted(deployed, pod_name)


# --- twenty jobs at once -------------------------------------------------------------------------

JOBS = 20
#: Set to 1 to also run the twenty jobs to Succeeded (about 3.5 minutes here: each job is a
#: scheduler, a worker with its nanny and a driver, some 80 Python processes on two cores).
ALL_SUCCEED = os.environ.get("RECPREP_E2E_TWENTY_SUCCEED") == "1"


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak) of a process, in KiB, from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def _twenty_jobs(deployed: Deployed, tmp_path: Path, record_property, *, until_succeeded: bool) -> None:
    """Twenty small PreprocessJobs applied in one go. Every job gets its children exactly once,
    a phase, and moves on from Pending (its driver runs); with ``until_succeeded`` every job ends
    Succeeded with its shards committed once, else they are deleted mid-run and everything of
    theirs goes. The operator's memory (VmRSS sampled, VmHWM from /proc) and the times until
    every job had its children and a phase, had moved on, and (with ``until_succeeded``) had
    Succeeded are printed and recorded as properties: never asserted on."""
    names = [f"many-{i:02d}" for i in range(JOBS)]
    outs = {name: tmp_path / name for name in names}
    manifests = [
        preprocess_job(name, outs[name], rows=2000, rows_per_shard=1000, seed=i)
        for i, name in enumerate(names)
    ]
    pid = deployed.operator_pid()
    before = _memory_kib(pid)
    emulator = deployed.cluster.emulator
    samples: list[int] = []
    marks: dict[str, float] = {}

    t0 = time.monotonic()
    deployed.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests), timeout=60)

    def look() -> dict[str, str]:
        samples.append(_memory_kib(pid)["VmRSS"])
        phases = {
            p["metadata"]["name"]: (p.get("status") or {}).get("phase", "")
            for p in deployed.cluster.get(f"{PPJ_API}/namespaces/{NAMESPACE}/preprocessjobs")["items"]
        }
        failed = [n for n, phase in phases.items() if phase == "Failed"]
        if failed:
            raise AssertionError(f"{failed[0]} Failed\n{deployed.diagnostics(failed[0])}")
        now = time.monotonic() - t0
        if "children" not in marks:
            created = deployed.cluster.call(lambda: dict(emulator.creations))
            per_job = {
                n: sum(1 for (kind, _ns, obj) in created if obj.startswith(f"{n}-") and kind != "v1/Pod")
                for n in names
            }
            if all(per_job[n] == len(_children(n)) and phases.get(n) for n in names):
                marks["children"] = now
        if "moving" not in marks and all(phases.get(n) not in ("", "Pending") for n in names):
            marks["moving"] = now
        if "succeeded" not in marks and all(phases.get(n) == "Succeeded" for n in names):
            marks["succeeded"] = now
        return phases

    goal = "succeeded" if until_succeeded else "moving"
    try:
        # (a request timing out on the busy machine counts as "not yet": OSError)
        deployed.wait_for(
            lambda: look() and goal in marks and "children" in marks,
            timeout=420,
            interval=0.5,
            ignore=(OSError,),
        )
    except TimeoutError:
        pytest.fail(f"not every job got there ({goal}): {marks}\n{deployed.operator_log()[-3000:]}")
    after = _memory_kib(pid)
    figures = {
        "jobs": JOBS,
        "seconds_until_all_have_children_and_a_phase": round(marks["children"], 1),
        "seconds_until_all_left_pending": round(marks["moving"], 1),
        "operator_rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "operator_rss_peak_sampled_mib": round(max(samples) / 1024, 1),
        "operator_vmhwm_mib": round(after["VmHWM"] / 1024, 1),
    }
    if until_succeeded:
        figures["seconds_until_all_succeeded"] = round(marks["succeeded"], 1)
    print(f"\n{JOBS} jobs at once: {json.dumps(figures)}")
    for key, value in figures.items():
        record_property(key, value)

    for name in names:
        assert deployed.creations(name) == {child: 1 for child in _children(name)}, name
    if until_succeeded:
        # (On two starved cores a driver may give up on its scheduler, 30 s, and be retried by
        # its Job: still one driver Job, one successful attempt, each shard committed once.)
        retried = []
        for name in names:
            assert_committed_exactly_once(outs[name], 2)
            driver = deployed.status(name)["driver"]
            assert driver["succeeded"] == 1 and driver["failed"] <= 2, (name, driver)
            retried += [name] * driver["failed"]
        print(f"driver attempts retried: {len(retried)} {sorted(set(retried))}")
    else:  # deleted mid-run: every child goes (garbage collection through ownerReferences)
        # (one delete-collection request: on two cores busy with some 80 pod processes, kubectl's
        # one request per job can take longer than its 30 s)
        deleted = deployed.cluster.request(
            "DELETE", f"{PPJ_API}/namespaces/{NAMESPACE}/preprocessjobs", timeout=120
        )
        assert deleted.status == 200, deleted

        def leftovers() -> list[str]:  # one list per kind of child, not one per job and kind
            return [
                f"{kind}/{item['metadata']['name']}"
                for kind, path in CHILD_KINDS.items()
                for item in deployed.cluster.get(f"{path}?labelSelector=recprep.io/job")["items"]
            ]

        try:
            deployed.wait_for(lambda: not leftovers(), timeout=120, interval=0.5, ignore=(OSError,))
        except TimeoutError:
            try:
                left: object = leftovers()
            except OSError as exc:
                left = exc
            pytest.fail(f"children survived the deletion of their jobs: {left}")
        marks["deleted"] = time.monotonic() - t0
        print(f"all children gone {marks['deleted']:.1f}s after the creation")
    assert deployed.operator_restarts() == 0
    assert deployed.denials() == []


def test_twenty_jobs_at_once_are_each_reconciled_once(deployed: Deployed, tmp_path, record_property):
    """Twenty jobs at once: children exactly once, phases moving, deletion removes them all
    (``RECPREP_E2E_TWENTY_SUCCEED=1`` runs them to Succeeded instead)."""
    _twenty_jobs(deployed, tmp_path, record_property, until_succeeded=ALL_SUCCEED)
