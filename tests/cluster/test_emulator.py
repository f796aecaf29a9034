"""
Tests of the emulated API server: each behaviour the harness adds over kmock, kubectl against
it, the official Python client, and an in-process kopf operator.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    - {name: Color, type: string, priority: 1, jsonPath: .spec.color}
"""
WIDGETS = "/apis/example.io/v1/namespaces/default/widgets"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def widget(name: str, size: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "example.io/v1",
        "kind": "Widget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"size": size, "color": "red"},
    }


def configmap(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **extra}, "data": {"k": "v"}}


@pytest.fixture()
def widgets(cluster: Any) -> Any:
    """The cluster with the Widget CRD applied through kubectl."""
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    return cluster


# Metadata, resource versions, generations ----------------------------------------------------------


def test_create_fills_server_metadata_and_answers_201(cluster: Any) -> None:
    response = cluster.request("POST", "/api/v1/namespaces/kube-public/configmaps", configmap("c1"))
    assert response.status == 201
    meta = response.body["metadata"]
    assert meta["namespace"] == "kube-public"  # taken from the URL
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and int(meta["resourceVersion"]) > 0
    generated = cluster.request("POST", CONFIGMAPS, configmap("", generateName="gen-")).body
    assert generated["metadata"]["name"].startswith("gen-") and len(generated["metadata"]["name"]) == 9


def test_resource_version_bumps_on_every_write_and_generation_on_spec_changes(widgets: Any) -> None:
    created = widgets.request("POST", WIDGETS, widget("w1")).body
    assert created["metadata"]["generation"] == 1
    rv1 = int(created["metadata"]["resourceVersion"])

    merge = "application/merge-patch+json"
    labelled = widgets.request(
        "PATCH", f"{WIDGETS}/w1", {"metadata": {"labels": {"x": "1"}}}, content_type=merge
    ).body
    assert int(labelled["metadata"]["resourceVersion"]) > rv1
    assert labelled["metadata"]["generation"] == 1  # metadata changes do not bump the generation

    resized = widgets.request("PATCH", f"{WIDGETS}/w1", {"spec": {"size": 2}}, content_type=merge).body
    assert int(resized["metadata"]["resourceVersion"]) > int(labelled["metadata"]["resourceVersion"])
    assert resized["metadata"]["generation"] == 2

    noop = widgets.request("PATCH", f"{WIDGETS}/w1", {"spec": {"size": 2}}, content_type=merge).body
    assert (
        noop["metadata"]["resourceVersion"] == resized["metadata"]["resourceVersion"]
    )  # no-op writes are no-ops


def test_list_bodies_have_kind_api_version_and_resource_version(widgets: Any) -> None:
    widgets.request("POST", WIDGETS, widget("w1"))
    body = widgets.get(WIDGETS)
    assert body["kind"] == "WidgetList" and body["apiVersion"] == "example.io/v1"
    assert int(body["metadata"]["resourceVersion"]) >= int(body["items"][0]["metadata"]["resourceVersion"])
    cms = widgets.get("/api/v1/configmaps")  # cluster-wide
    assert cms["kind"] == "ConfigMapList" and cms["apiVersion"] == "v1"


# Watches -------------------------------------------------------------------------------------------


def test_watch_is_json_lines_and_resumes_from_resource_version(cluster: Any) -> None:
    cluster.request("POST", CONFIGMAPS, configmap("a"))
    since = cluster.get(CONFIGMAPS)["metadata"]["resourceVersion"]
    cluster.request("POST", CONFIGMAPS, configmap("b"))
    cluster.request(
        "PATCH", f"{CONFIGMAPS}/a", {"data": {"k": "v2"}}, content_type="application/merge-patch+json"
    )
    cluster.request("DELETE", f"{CONFIGMAPS}/b")

    events = list(
        cluster.watch(f"{CONFIGMAPS}?resourceVersion={since}&timeoutSeconds=1", timeout=5, max_events=3)
    )
    assert cluster.last_watch_content_type == "application/json"
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]  # only what happened after `since`

    # Without a resourceVersion: the current state as ADDED events; timeoutSeconds ends the stream.
    started = time.monotonic()
    events = list(cluster.watch(f"{CONFIGMAPS}?timeoutSeconds=1", timeout=5))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]
    assert time.monotonic() - started < 3


def test_watch_from_a_forgotten_resource_version_is_410_gone(tmp_path: Any) -> None:
    pytest.importorskip("kmock")
    from .harness import Cluster

    with Cluster(tmp_path, event_history=3) as small:
        for i in range(5):
            small.request("POST", CONFIGMAPS, configmap(f"c{i}"))
        events = list(small.watch(f"{CONFIGMAPS}?resourceVersion=1", timeout=3))
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_watch_and_list_honour_label_and_field_selectors(cluster: Any) -> None:
    for name, labels in [("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}), ("c", {"app": "x"})]:
        cluster.request("POST", CONFIGMAPS, configmap(name, labels=labels))

    def names(query: str) -> list[str]:
        return [o["metadata"]["name"] for o in cluster.get(f"{CONFIGMAPS}?{query}")["items"]]

    assert names("labelSelector=app=x,tier") == ["a"]
    assert names("labelSelector=app in (x,y),!tier") == ["b", "c"]
    assert names("labelSelector=app!=x") == ["b"]
    assert names("fieldSelector=metadata.name=c") == ["c"]
    assert names("fieldSelector=metadata.name!=c&labelSelector=app=x") == ["a"]
    assert cluster.request("GET", f"{CONFIGMAPS}?labelSelector=a%20in%20(").status == 400

    # A watch sees an object leaving its selector as DELETED and entering it as ADDED.
    since = cluster.get(CONFIGMAPS)["metadata"]["resourceVersion"]
    merge = "application/merge-patch+json"
    cluster.request("PATCH", f"{CONFIGMAPS}/c", {"metadata": {"labels": {"app": "z"}}}, content_type=merge)
    cluster.request("PATCH", f"{CONFIGMAPS}/b", {"metadata": {"labels": {"app": "x"}}}, content_type=merge)
    events = list(
        cluster.watch(f"{CONFIGMAPS}?labelSelector=app=x&resourceVersion={since}", timeout=3, max_events=2)
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("DELETED", "c"),
        ("ADDED", "b"),
    ]


# Discovery ------------------------------------------------------------------------------------------


def test_discovery_documents(widgets: Any) -> None:
    core = widgets.get("/api/v1")
    assert core["groupVersion"] == "v1"  # kmock says "/v1", which makes kubectl drop the core group
    assert {"pods", "pods/status", "namespaces", "configmaps"} <= {r["name"] for r in core["resources"]}

    resources = {r["name"]: r for r in widgets.get("/apis/example.io/v1")["resources"]}
    assert resources["widgets"]["shortNames"] == ["wd"] and resources["widgets"]["namespaced"] is True
    assert resources["widgets"]["kind"] == "Widget"
    assert "shortNames" not in resources["widgets/status"]  # or kubectl finds "wd" ambiguous

    groups = {g["name"]: g for g in widgets.get("/apis")["groups"]}
    assert groups["example.io"]["preferredVersion"]["groupVersion"] == "example.io/v1"
    assert widgets.get("/apis/example.io")["kind"] == "APIGroup"
    assert widgets.get("/version")["major"] == "1" and widgets.get("/version/")["minor"]
    assert widgets.get("/api")["versions"] == ["v1"]


# Writes & errors -------------------------------------------------------------------------------------


def test_errors_are_status_objects_with_reasons(cluster: Any) -> None:
    missing = cluster.request("GET", f"{CONFIGMAPS}/nope")
    assert missing.status == 404
    assert missing.body["kind"] == "Status" and missing.body["reason"] == "NotFound"
    assert missing.body["details"] == {"name": "nope", "group": "", "kind": "configmaps"}

    cluster.request("POST", CONFIGMAPS, configmap("c1"))
    duplicate = cluster.request("POST", CONFIGMAPS, configmap("c1"))
    assert (duplicate.status, duplicate.body["reason"]) == (409, "AlreadyExists")

    current = cluster.get(f"{CONFIGMAPS}/c1")
    updated = cluster.request("PUT", f"{CONFIGMAPS}/c1", {**current, "data": {"k": "new"}})
    assert updated.status == 200 and updated.body["data"] == {"k": "new"}
    stale = cluster.request(
        "PUT", f"{CONFIGMAPS}/c1", {**current, "data": {"k": "stale"}}
    )  # the old resourceVersion
    assert (stale.status, stale.body["reason"]) == (409, "Conflict")
    assert cluster.request("GET", "/apis/nothing.io/v1/things").status == 404


def test_patch_flavours(widgets: Any) -> None:
    widgets.request("POST", WIDGETS, {**widget("w1"), "spec": {"size": 1, "tags": ["a"], "extra": "x"}})

    merged = widgets.request(
        "PATCH",
        f"{WIDGETS}/w1",
        {"spec": {"extra": None, "tags": ["b"]}},
        content_type="application/merge-patch+json",
    ).body
    assert merged["spec"] == {"size": 1, "tags": ["b"]}  # null deletes, lists are replaced

    rv = merged["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/spec/tags/-", "value": "c"},
    ]
    assert (
        widgets.request("PATCH", f"{WIDGETS}/w1", ops, content_type="application/json-patch+json").status
        == 200
    )
    stale = widgets.request("PATCH", f"{WIDGETS}/w1", ops, content_type="application/json-patch+json")
    assert stale.status == 422  # kopf relies on this to detect that its view of the object is stale

    smp = widgets.request(
        "PATCH", f"{WIDGETS}/w1", {"spec": {}}, content_type="application/strategic-merge-patch+json"
    )
    assert smp.status == 415  # as in Kubernetes: custom resources have no strategic merge patch

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
                {"name": "b", "image": "y"},
            ]
        },
    }
    widgets.request("POST", "/api/v1/namespaces/default/pods", pod)
    patched = widgets.request(
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        {"spec": {"containers": [{"name": "b", "image": "z"}]}},
        content_type="application/strategic-merge-patch+json",
    ).body
    assert [(c["name"], c["image"]) for c in patched["spec"]["containers"]] == [("a", "x"), ("b", "z")]


def test_status_subresource_semantics(widgets: Any) -> None:
    widgets.request("POST", WIDGETS, {**widget("w1"), "status": {"phase": "ignored-on-create"}})
    merge = "application/merge-patch+json"
    main = widgets.request(
        "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 5}, "status": {"phase": "Nope"}}, content_type=merge
    ).body
    assert main["spec"]["size"] == 5 and "status" not in main  # the main resource cannot write the status

    status = widgets.request(
        "PATCH",
        f"{WIDGETS}/w1/status",
        {"spec": {"size": 9}, "status": {"phase": "Done"}},
        content_type=merge,
    ).body
    assert (
        status["status"] == {"phase": "Done"} and status["spec"]["size"] == 5
    )  # /status writes only the status
    assert status["metadata"]["generation"] == main["metadata"]["generation"]

    current = widgets.get(f"{WIDGETS}/w1")
    put = widgets.request("PUT", f"{WIDGETS}/w1/status", {**current, "status": {"phase": "Put"}}).body
    assert put["status"] == {"phase": "Put"}


def test_finalizers_delay_deletion_until_removed(cluster: Any) -> None:
    cluster.request("POST", CONFIGMAPS, configmap("c1", finalizers=["example.io/keep"]))
    deleting = cluster.request("DELETE", f"{CONFIGMAPS}/c1").body
    assert deleting["metadata"]["deletionTimestamp"]
    assert cluster.exists(f"{CONFIGMAPS}/c1")
    cluster.request(
        "PATCH",
        f"{CONFIGMAPS}/c1",
        {"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    assert not cluster.exists(f"{CONFIGMAPS}/c1")


def test_cascading_deletion_through_owner_references(cluster: Any, wait_for: Any) -> None:
    def owned_configmap(name: str, owner: dict[str, Any]) -> dict[str, Any]:
        ref = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
        }
        return cluster.request("POST", CONFIGMAPS, configmap(name, ownerReferences=[ref])).body

    root = cluster.request("POST", CONFIGMAPS, configmap("root")).body
    child = owned_configmap("child", root)
    owned_configmap("grandchild", child)
    orphan_root = cluster.request("POST", CONFIGMAPS, configmap("orphan-root")).body
    owned_configmap("orphan", orphan_root)

    assert cluster.request("DELETE", f"{CONFIGMAPS}/root").status == 200
    wait_for(
        lambda: not cluster.exists(f"{CONFIGMAPS}/child") and not cluster.exists(f"{CONFIGMAPS}/grandchild"),
        timeout=5,
    )
    cluster.request("DELETE", f"{CONFIGMAPS}/orphan-root", {"propagationPolicy": "Orphan"})
    assert "ownerReferences" not in cluster.get(f"{CONFIGMAPS}/orphan")["metadata"]


# CRDs & kubectl ----------------------------------------------------------------------------------------


def test_crd_registers_its_resource_and_becomes_established(widgets: Any, kubectl: Any) -> None:
    crd = json.loads(kubectl("get", "crd", "widgets.example.io", "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    kubectl("wait", "--for=condition=Established", "crd/widgets.example.io", "--timeout=5s")

    kubectl("apply", "-f", "-", input=yaml.safe_dump(widget("w1", size=3)))
    widgets.request(
        "PATCH",
        f"{WIDGETS}/w1/status",
        {"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}},
        content_type="application/merge-patch+json",
    )
    table = kubectl("get", "widgets").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "READY", "AGE"]
    assert table[1].split()[:4] == ["w1", "3", "Ready", "True"]
    assert (
        kubectl("get", "wd", "-o", "wide").stdout.splitlines()[0].split()[-1] == "COLOR"
    )  # priority 1: wide only

    kubectl("apply", "-f", "-", input=yaml.safe_dump(widget("w1", size=4)))  # re-apply: a merge patch
    as_yaml = yaml.safe_load(kubectl("get", "widget", "w1", "-o", "yaml").stdout)
    assert as_yaml["spec"]["size"] == 4 and as_yaml["status"]["phase"] == "Ready"
    assert as_yaml["metadata"]["generation"] == 2

    kubectl("delete", "wd", "w1", "--timeout=10s")
    assert "No resources found" in kubectl("get", "widgets").stderr
    kubectl("delete", "crd", "widgets.example.io", "--timeout=10s")
    assert widgets.request("GET", WIDGETS).status == 404


def test_kubectl_namespaces_apply_and_server_side_apply(cluster: Any, kubectl: Any, wait_for: Any) -> None:
    assert kubectl("create", "namespace", "demo").stdout.strip() == "namespace/demo created"
    cm = configmap("settings", labels={"team": "a"})
    cluster.apply(cm, "-n", "demo")
    cluster.apply(
        {**cm, "data": {"k": "v", "other": "w"}}, "-n", "demo"
    )  # client-side re-apply: strategic merge
    assert cluster.get("/api/v1/namespaces/demo/configmaps/settings")["data"] == {"k": "v", "other": "w"}

    cluster.apply(configmap("ssa", labels={"team": "a"}), "-n", "demo", server_side=True)
    cluster.apply({**configmap("ssa"), "data": {"z": "1"}}, "-n", "demo", server_side=True)
    ssa = cluster.get("/api/v1/namespaces/demo/configmaps/ssa")
    assert (
        ssa["data"] == {"z": "1"} and "labels" not in ssa["metadata"]
    )  # fields no longer applied are removed

    kubectl("delete", "namespace", "demo", "--timeout=10s")
    wait_for(lambda: not cluster.exists("/api/v1/namespaces/demo/configmaps/settings"), timeout=5)
    assert not cluster.exists("/api/v1/namespaces/demo")


def test_official_python_client(widgets: Any) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    client = kubernetes.config.new_client_from_config(config_file=str(widgets.kubeconfig))
    core = kubernetes.client.CoreV1Api(client)
    assert "default" in [ns.metadata.name for ns in core.list_namespace().items]
    custom = kubernetes.client.CustomObjectsApi(client)
    created = custom.create_namespaced_custom_object("example.io", "v1", "default", "widgets", widget("w1"))
    assert created["metadata"]["uid"]
    watch = kubernetes.watch.Watch()
    events = [
        e["type"]
        for e in watch.stream(
            custom.list_namespaced_custom_object, "example.io", "v1", "default", "widgets", timeout_seconds=1
        )
    ]
    assert events == ["ADDED"]
    with pytest.raises(kubernetes.client.ApiException) as error:
        core.read_namespaced_config_map("missing", "default")
    assert error.value.status == 404


# kopf ---------------------------------------------------------------------------------------------------


def test_kopf_operator_handles_creation_and_children_are_collected(
    widgets: Any, kubectl: Any, wait_for: Any
) -> None:
    kopf = pytest.importorskip("kopf")
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> Any:
        return kopf.ConnectionInfo(server=widgets.url, default_namespace="default")

    @kopf.on.startup(registry=registry)
    def configure(settings: Any, **_: Any) -> None:
        settings.posting.level = 100  # no k8s Events: fewer requests, quieter test logs
        settings.watching.server_timeout = 10

    @kopf.on.create("example.io", "v1", "widgets", id="create_child", registry=registry)
    def create_child(name: str, namespace: str, spec: Any, patch: Any, **_: Any) -> dict[str, str]:
        child = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-child"},
            "data": {"size": str(spec["size"])},
        }
        kopf.adopt(child)  # namespace + ownerReferences to the Widget being handled
        response = widgets.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", child)
        if response.status != 201:
            raise kopf.TemporaryError(f"cannot create the child: {response.body}", delay=0.5)
        patch.status["phase"] = "Ready"
        return {"child": child["metadata"]["name"]}

    cleaned_up = threading.Event()

    @kopf.on.delete("example.io", "v1", "widgets", id="cleanup", registry=registry)
    def cleanup(**_: Any) -> None:  # makes kopf add (and later remove) a finalizer via JSON patches
        cleaned_up.set()

    stop, ready = threading.Event(), threading.Event()
    operator = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(
                registry=registry, standalone=True, namespaces=["default"], stop_flag=stop, ready_flag=ready
            )
        ),
        daemon=True,
    )
    operator.start()
    try:
        assert ready.wait(10), "kopf did not start"
        kubectl("apply", "-f", "-", input=yaml.safe_dump(widget("w1", size=7)))
        child = wait_for(lambda: widgets.get(f"{CONFIGMAPS}/w1-child"), timeout=15, ignore=(LookupError,))
        parent = wait_for(
            lambda: (
                (w := widgets.get(f"{WIDGETS}/w1")).get("status", {}).get("phase")
                and w["metadata"].get("finalizers")
                and w
            ),
            timeout=10,
        )
        assert child["data"] == {"size": "7"}
        assert child["metadata"]["ownerReferences"][0]["uid"] == parent["metadata"]["uid"]
        assert parent["status"]["create_child"] == {"child": "w1-child"}  # the handler's result, via /status
        assert kubectl("get", "widgets").stdout.splitlines()[1].split()[2] == "Ready"

        assert parent["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]

        kubectl("delete", "widget", "w1", "--timeout=10s")  # waits until kopf releases the finalizer
        assert cleaned_up.is_set()
        wait_for(lambda: not widgets.exists(f"{CONFIGMAPS}/w1-child"), timeout=5)
    finally:
        stop.set()
        operator.join(15)
    assert not operator.is_alive()
