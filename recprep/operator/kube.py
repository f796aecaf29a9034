"""The operator's Kubernetes calls: the client, and the few reads and writes the handlers and
the follower make on a job's children. Names and selectors come from ``labels``; the objects
themselves from ``builders``."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ..spec import GROUP, PLURAL, VERSION
from . import labels
from .builders import JOB_FILE

MERGE_PATCH = "application/merge-patch+json"

log = logging.getLogger(__name__)


def new_api_client() -> k8s.ApiClient:
    """A Kubernetes client: in-cluster credentials, else the kubeconfig (``KUBECONFIG``). The
    operator makes one at startup and keeps it in kopf's ``memo`` (``handlers``)."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)
    return k8s.ApiClient(configuration)


# --- creating children --------------------------------------------------------------------------


def _creator(api: k8s.ApiClient, obj: dict) -> Callable[..., Any]:
    kinds = {
        ("v1", "ConfigMap"): lambda: k8s.CoreV1Api(api).create_namespaced_config_map,
        ("v1", "Service"): lambda: k8s.CoreV1Api(api).create_namespaced_service,
        ("apps/v1", "Deployment"): lambda: k8s.AppsV1Api(api).create_namespaced_deployment,
        ("batch/v1", "Job"): lambda: k8s.BatchV1Api(api).create_namespaced_job,
    }
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in kinds:
        raise ValueError(f"the operator does not create {key[1]} ({key[0]}) objects")
    return kinds[key]()


def api_error_text(exc: ApiException) -> str:
    """``<code> <reason>: <the Status message>`` of an API error; the message is what names the
    refused verb and resource (``deployments.apps is forbidden: User ... cannot create ...``)."""
    text = f"{exc.status} {exc.reason}"
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return f"{text}: {message}" if message else text


def _already_exists(exc: ApiException) -> bool:
    if exc.status != 409:
        return False
    try:
        return json.loads(exc.body or "{}").get("reason") == "AlreadyExists"
    except (TypeError, ValueError):
        return True  # a 409 on create without a readable body: the name is taken


def create_child(api: k8s.ApiClient, obj: dict) -> bool:
    """Create ``obj``; True if created, False if an object of that name was already there."""
    create = _creator(api, obj)
    try:
        # _preload_content=False: the answer is not needed, skip deserialising it into models.
        create(obj["metadata"]["namespace"], obj, _preload_content=False)
    except ApiException as exc:
        if _already_exists(exc):
            return False
        raise
    return True


def create_children(api: k8s.ApiClient, children: list[dict], owner: Any) -> list[str]:
    """Adopt and create every child (idempotent); the names of those newly created."""
    created = []
    for child in children:
        kopf.adopt(child, owner=owner)
        if create_child(api, child):
            created.append(f"{child['kind']}/{child['metadata']['name']}")
    return created


# --- reading children ---------------------------------------------------------------------------


def _or_none(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _patch(api: k8s.ApiClient, path: str, body: Any, content_type: str) -> None:
    """PATCH ``path`` with ``body`` sent as ``content_type`` (merge or JSON patch). Through the
    client's ``call_api`` with the header set here: the generated methods choose the patch type
    themselves in some client versions (35: the first of their list, or merge-patch always for
    custom objects) and take ``_content_type`` only in others."""
    api.call_api(
        path,
        "PATCH",
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
    )


def _unless_gone(write: Callable[[], Any]) -> bool:
    """Run ``write``; False if its object does not exist (404)."""
    try:
        write()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def read_driver(api: k8s.ApiClient, namespace: str, name: str) -> Any:
    """The driver Job (a V1Job), or None."""
    return _or_none(lambda: k8s.BatchV1Api(api).read_namespaced_job(labels.driver_name(name), namespace))


def driver_pods(api: k8s.ApiClient, namespace: str, name: str) -> list[Any]:
    """The driver's pods (every attempt), oldest first."""
    pods = (
        k8s.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=labels.selector_string(name, labels.DRIVER))
        .items
    )
    return sorted(pods, key=lambda p: (p.metadata.creation_timestamp or 0, p.metadata.name))


def pod_log_tail(api: k8s.ApiClient, namespace: str, pod: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a pod's log ('' when it cannot be read)."""
    try:
        return k8s.CoreV1Api(api).read_namespaced_pod_log(pod, namespace, tail_lines=lines) or ""
    except ApiException:
        return ""


def read_job_manifest(api: k8s.ApiClient, namespace: str, name: str) -> str | None:
    """The job manifest the driver runs (the job's ConfigMap), or None."""
    configmap = _or_none(
        lambda: k8s.CoreV1Api(api).read_namespaced_config_map(labels.configmap_name(name), namespace)
    )
    return (configmap.data or {}).get(JOB_FILE) if configmap is not None else None


def read_worker_deployment(api: k8s.ApiClient, namespace: str, name: str, pool: str) -> Any:
    """The worker Deployment of ``pool`` (a V1Deployment), or None."""
    return _or_none(
        lambda: k8s.AppsV1Api(api).read_namespaced_deployment(labels.worker_name(name, pool), namespace)
    )


def worker_pods(api: k8s.ApiClient, namespace: str, name: str, pool: str) -> list[Any]:
    """The pods of a pool that are not being deleted."""
    pods = (
        k8s.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=labels.selector_string(name, labels.WORKER, pool))
        .items
    )
    return [p for p in pods if not p.metadata.deletion_timestamp]


def job_worker_pods(api: k8s.ApiClient, namespace: str, name: str) -> list[Any]:
    """Every worker pod of the job, of both pools, those being deleted included."""
    return (
        k8s.CoreV1Api(api)
        .list_namespaced_pod(
            namespace, label_selector=f"{labels.selector_string(name)},{labels.COMPONENT}={labels.WORKER}"
        )
        .items
    )


def node_taints(api: k8s.ApiClient) -> dict[str, list[str]]:
    """Node -> the keys of its taints (every node of the cluster; nodes are cluster-scoped)."""
    nodes = k8s.CoreV1Api(api).list_node().items
    return {n.metadata.name: [t.key for t in ((n.spec.taints if n.spec else None) or [])] for n in nodes}


def count_nodes(api: k8s.ApiClient, selector: Mapping[str, str]) -> int:
    """Schedulable Nodes whose labels match ``selector`` (a nodeSelector)."""
    text = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    nodes = k8s.CoreV1Api(api).list_node(label_selector=text or None).items
    return sum(1 for n in nodes if not (n.spec is not None and n.spec.unschedulable))


def scheduler_ready(api: k8s.ApiClient, namespace: str, name: str) -> bool:
    """Whether the job's scheduler Deployment has a ready pod (worth calling)."""
    deployment = _or_none(
        lambda: k8s.AppsV1Api(api).read_namespaced_deployment(labels.scheduler_name(name), namespace)
    )
    return bool(deployment and deployment.status and deployment.status.ready_replicas)


def ready_workers(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, int]:
    """Ready pods per pool, from the worker Deployments (0 for a missing one)."""
    ready = {}
    for pool in labels.POOLS:
        deployment = read_worker_deployment(api, namespace, name, pool)
        ready[pool] = (deployment.status.ready_replicas or 0) if deployment and deployment.status else 0
    return ready


# --- writing children ---------------------------------------------------------------------------


def set_replicas(api: k8s.ApiClient, namespace: str, name: str, pool: str, replicas: int) -> bool:
    """Set the worker Deployment's replicas; False if the Deployment does not exist."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{labels.worker_name(name, pool)}"
    return _unless_gone(lambda: _patch(api, path, {"spec": {"replicas": int(replicas)}}, MERGE_PATCH))


def annotate_pod(api: k8s.ApiClient, namespace: str, pod: str, annotations: dict[str, str]) -> bool:
    """Merge ``annotations`` into a pod's; False if the pod is gone."""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}"
    return _unless_gone(lambda: _patch(api, path, {"metadata": {"annotations": annotations}}, MERGE_PATCH))


def delete_pod(api: k8s.ApiClient, namespace: str, pod: str) -> bool:
    """Delete a pod (its controller creates a replacement); False if it is gone already."""
    return _unless_gone(
        lambda: k8s.CoreV1Api(api).delete_namespaced_pod(pod, namespace, _preload_content=False)
    )


def delete_runtime(api: k8s.ApiClient, namespace: str, name: str) -> None:
    """Delete the scheduler (Deployment and Service) and the worker Deployments; 404 is fine."""
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    targets = [
        (apps.delete_namespaced_deployment, labels.scheduler_name(name)),
        (core.delete_namespaced_service, labels.scheduler_name(name)),
        *((apps.delete_namespaced_deployment, labels.worker_name(name, pool)) for pool in labels.POOLS),
    ]
    for delete, child in targets:
        _unless_gone(functools.partial(delete, child, namespace, _preload_content=False))


# --- the PreprocessJob's status -----------------------------------------------------------------

JSON_PATCH = "application/json-patch+json"


def _status_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"


def read_job(api: k8s.ApiClient, namespace: str, name: str) -> dict | None:
    """The PreprocessJob as a dict, or None."""
    return _or_none(
        lambda: k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    )


def patch_status(
    api: k8s.ApiClient, namespace: str, name: str, resource_version: str, changes: dict[str, Any]
) -> bool:
    """Set top-level ``status`` fields, only if the job is still at ``resource_version``
    (a JSON patch that ``test``s it): False on a conflict, when someone wrote in between and the
    caller should look again. Two writers (the follower, a handler) never undo each other."""
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
    ]
    ops += [{"op": "add", "path": f"/status/{key}", "value": value} for key, value in changes.items()]
    try:
        _patch(api, _status_path(namespace, name), ops, JSON_PATCH)
    except ApiException as exc:
        if exc.status in (409, 422):
            return False
        raise
    return True


def set_job_condition(
    api: k8s.ApiClient, namespace: str, name: str, condition: dict, attempts: int = 5
) -> bool:
    """Put ``condition`` into the job's ``status.conditions`` (replacing its type), read-modify-
    write guarded by the resourceVersion; False if the job is gone or kept changing."""
    from .status import set_condition

    for _ in range(attempts):
        job = read_job(api, namespace, name)
        if job is None:
            return False
        status = job.get("status") or {}
        conditions = set_condition(status.get("conditions"), condition)
        if conditions == status.get("conditions"):
            return True
        if patch_status(api, namespace, name, job["metadata"]["resourceVersion"], {"conditions": conditions}):
            return True
    return False


def merge_job_status(api: k8s.ApiClient, namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Merge ``status`` into the job's status (a merge patch: a null member deletes, a list is
    replaced whole), unguarded: for a member only one writer owns (``status.autoscaler``).
    False if the job is gone."""
    return _unless_gone(lambda: _patch(api, _status_path(namespace, name), {"status": status}, MERGE_PATCH))


#: Who posts the operator's own Events (kopf posts its logs' as "kopf").
EVENT_SOURCE = "recprep-operator"


def post_event(api: k8s.ApiClient, body: dict, type_: str, reason: str, message: str) -> bool:
    """A Kubernetes Event on the PreprocessJob ``body`` (a core/v1 Event, as ``kubectl describe``
    lists them), posted directly: the follower's threads have no kopf context to post through
    ``kopf.event``. False (and a log line) when the API refuses it: an Event is never worth
    failing the action it reports."""
    meta = body.get("metadata", {})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": body.get("apiVersion") or f"{GROUP}/{VERSION}",
            "kind": body.get("kind") or "PreprocessJob",
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        k8s.CoreV1Api(api).create_namespaced_event(meta.get("namespace"), event, _preload_content=False)
    except ApiException as exc:
        log.warning("cannot post Event %s on %s: %s", reason, meta["name"], api_error_text(exc))
        return False
    return True
