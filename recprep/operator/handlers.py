"""The kopf handlers: thin glue between PreprocessJob events and the pure modules.

- ``startup_fn``    tunes kopf once (watch timeouts, request timeout, Events, storage).
- ``create_fn``     validates the spec (invalid -> Failed + Event + ``kopf.PermanentError``),
                    creates the children from ``builders.build_children`` (``kopf.adopt``ed, so
                    deleting the job deletes them through ownerReferences; an existing child
                    counts as created, so a re-run after an operator restart is harmless), and
                    sets the status to Pending.
- the follower      one loop for the whole operator (started and stopped with it): follows the driver Job, the driver pod and the worker Deployments
                    and moves ``status.phase`` along ``status.TRANSITIONS``; after a terminal
                    phase it scales the workers to 0, and once ``ttlSecondsAfterFinished`` has
                    passed it deletes the scheduler Deployment and Service and the worker
                    Deployments (the ConfigMap and the driver Job, with its logs, stay until
                    the PreprocessJob is deleted).

No finalizers: there is no ``on.delete`` handler and no per-object timer or daemon (kopf puts a
finalizer on objects with those); children go with their owner (garbage collection).

Progress (``status.shards`` / ``progressText``) is read from ``<output>/_ledger.jsonl`` (one
line per committed shard) when the output is a local path the operator can read (the emulated
cluster; a shared volume); otherwise it stays ``0/?``. The total number of shards is not known
to the operator (it never plans the source): it is filled in only when the job has succeeded.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ..errors import SpecError
from ..spec import JobSpec, load_job_dict
from . import builders, labels
from . import status as st
from .settings import Settings

GROUP, VERSION, PLURAL = "recprep.io", "v1alpha1", "preprocessjobs"
#: Seconds between two looks at the jobs' children (the follower).
RECONCILE_INTERVAL = 1.0
#: Delay before kopf retries after a Kubernetes API error.
RETRY_DELAY = 5.0
LEDGER_FILE = "_ledger.jsonl"
DEFAULT_TTL = JobSpec.model_fields["ttl_seconds_after_finished"].default

log = logging.getLogger(__name__)

_settings: Settings | None = None
_api: k8s.ApiClient | None = None


# --- process-wide state: settings and the Kubernetes client -----------------------------------


def operator_settings() -> Settings:
    """The operator settings (``RECPREP_*`` variables), read once."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def use_settings(value: Settings | None) -> None:
    """Replace the settings (tests; None re-reads the environment next time)."""
    global _settings
    _settings = value


def api_client() -> k8s.ApiClient:
    """A Kubernetes client: in-cluster credentials, else the kubeconfig (``KUBECONFIG``)."""
    global _api
    if _api is None:
        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
        _api = k8s.ApiClient(configuration)
    return _api


def use_api_client(api: k8s.ApiClient | None) -> None:
    """Replace the Kubernetes client (tests; None builds one from the environment next time)."""
    global _api
    _api = api


# --- children -----------------------------------------------------------------------------------


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


# --- handlers -----------------------------------------------------------------------------------


@kopf.on.startup()
def startup_fn(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Tune kopf once, here, for every resource the operator watches."""
    ours = operator_settings()
    # A watch that the server or a proxy silently stops would leave the operator blind forever:
    # let the server close it regularly and give up on the client side a bit later
    # (kopf issues 585, 957, 698).
    settings.watching.server_timeout = ours.watch_server_timeout
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.watching.connect_timeout = 30
    # A hung API request must fail (and be retried) rather than stall a handler forever.
    settings.networking.request_timeout = 60
    # Only warnings and errors become Kubernetes Events: the timer's INFO lines every second
    # would flood `kubectl describe` and etcd.
    settings.posting.level = logging.WARNING
    # Keep kopf's bookkeeping in annotations under our own prefix: status stays ours (the
    # printer columns read it), and nothing of kopf's ends up in it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)


def _post_event(body: Any, type_: str, reason: str, message: str) -> None:
    try:
        kopf.event(body, type=type_, reason=reason, message=message)
    except LookupError:  # called outside a running operator (a direct call in a test)
        log.debug("no kopf context: event %s not posted", reason)


def _job_document(body: Any) -> dict:
    """The PreprocessJob as a plain dict without its status (which the spec ignores anyway)."""
    return {key: copy.deepcopy(body[key]) for key in body if key != "status"}


@kopf.on.create(GROUP, VERSION, PLURAL, id="create")
def create_fn(body: Any, patch: Any, logger: logging.Logger, **_: Any) -> None:
    meta = body.get("metadata", {})
    where = f"PreprocessJob {meta.get('namespace')}/{meta.get('name')}"
    try:
        job = load_job_dict(_job_document(body), where)
    except SpecError as exc:
        message = str(exc)
        patch.status.update(st.failed_status(message))
        patch.status["observedGeneration"] = meta.get("generation")
        logger.error("invalid spec: %s", message)
        _post_event(body, "Warning", st.INVALID_SPEC, message)
        raise kopf.PermanentError(message) from None
    try:
        created = create_children(api_client(), builders.build_children(job, operator_settings()), body)
    except ApiException as exc:
        raise kopf.TemporaryError(f"cannot create the children: {exc.status} {exc.reason}",
                                  delay=RETRY_DELAY) from None
    if created:
        logger.info("created %s", ", ".join(created))
    if not (body.get("status") or {}).get("phase"):
        # Only a job without a phase starts at Pending: a re-run after a restart must not
        # move a running job back.
        patch.status.update(st.initial_status())
        patch.status["observedGeneration"] = meta.get("generation")


# --- following the children --------------------------------------------------------------------

#: The non-failure path, in order.
_PATH = (st.PENDING, st.FITTING, st.RUNNING, st.SUCCEEDED)


def advance(status: dict, target: str, *, reason: str | None = None, message: str = "") -> dict:
    """``status`` moved to ``target`` through every phase the table requires on the way
    (a job can finish between two looks: Pending -> Fitting -> Running -> Succeeded)."""
    current = status.get("phase") or st.PENDING
    if target == st.FAILED or current not in _PATH or target not in _PATH:
        return st.transition(status, target, reason=reason, message=message)
    for phase in _PATH[_PATH.index(current) + 1:_PATH.index(target)]:
        status = st.transition(status, phase)
    return st.transition(status, target, reason=reason, message=message)


def committed_shards(output_uri: str) -> int | None:
    """Lines of ``<output>/_ledger.jsonl`` if the output is a local directory; else None."""
    path = output_uri.removeprefix("file://")
    if "://" in path or not os.path.isabs(path):
        return None
    try:
        with open(os.path.join(path, LEDGER_FILE), "rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0  # nothing committed yet
    except OSError:
        return None


def _job_condition(job: Any, type_: str) -> Any:
    for cond in (job.status.conditions or []) if job.status else []:
        if cond.type == type_ and cond.status == "True":
            return cond
    return None


def _ready_workers(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, int]:
    apps = k8s.AppsV1Api(api)
    ready = {}
    for pool in labels.POOLS:
        try:
            deployment = apps.read_namespaced_deployment(labels.worker_name(name, pool), namespace)
            ready[pool] = (deployment.status.ready_replicas or 0) if deployment.status else 0
        except ApiException as exc:
            if exc.status != 404:
                raise
            ready[pool] = 0
    return ready


def _driver_running(api: k8s.ApiClient, namespace: str, name: str) -> bool:
    pods = k8s.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=labels.selector_string(name, labels.DRIVER))
    return any(p.status and p.status.phase == "Running" for p in pods.items)


def _scale_workers_to_zero(api: k8s.ApiClient, namespace: str, name: str) -> None:
    apps = k8s.AppsV1Api(api)
    for pool in labels.POOLS:
        try:
            apps.patch_namespaced_deployment(labels.worker_name(name, pool), namespace,
                                             {"spec": {"replicas": 0}},
                                             _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:
                raise


def _delete_runtime(api: k8s.ApiClient, namespace: str, name: str) -> None:
    """Delete the scheduler (Deployment and Service) and the worker Deployments; 404 is fine."""
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    targets = [(apps.delete_namespaced_deployment, labels.scheduler_name(name)),
               (core.delete_namespaced_service, labels.scheduler_name(name)),
               *((apps.delete_namespaced_deployment, labels.worker_name(name, pool))
                 for pool in labels.POOLS)]
    for delete, child in targets:
        try:
            delete(child, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def next_status(current: dict, *, driver: Any, driver_running: bool, ready: dict[str, int],
                shards: int | None) -> dict:
    """The status after one look at the children (pure apart from the clock)."""
    status = copy.deepcopy(current)
    phase = status.get("phase") or st.PENDING
    if driver is not None and (failed := _job_condition(driver, "Failed")):
        message = f"driver Job failed: {failed.reason or 'Failed'}: {failed.message or ''}".rstrip(": ")
        status = advance(status, st.FAILED, reason=failed.reason or "DriverFailed", message=message)
    elif driver is not None and _job_condition(driver, "Complete"):
        status = advance(status, st.SUCCEEDED, reason="Completed", message="all shards committed")
    elif driver_running and phase == st.PENDING:
        # The driver plans and fits first; once a shard lands it is transforming. Without a
        # readable ledger the operator cannot tell the two apart and reports Running at once.
        status = advance(status, st.FITTING if shards == 0 else st.RUNNING)
    elif phase == st.FITTING and (shards is None or shards > 0):
        status = advance(status, st.RUNNING)
    if status["phase"] in st.TERMINAL:
        done = shards or 0
        total = shards if status["phase"] == st.SUCCEEDED and shards is not None else None
        status = st.with_progress(status, done, total)
        status["workers"] = st.workers(0, 0)
        completion = getattr(driver.status, "completion_time", None) if driver and driver.status else None
        status["completionTime"] = (st.now_rfc3339(completion) if completion else st.now_rfc3339())
    else:
        status = st.with_progress(status, shards or 0, None)
        status["workers"] = st.workers(ready.get(labels.CPU, 0), ready.get(labels.ISP, 0))
    return status


def reconcile_one(api: k8s.ApiClient, body: dict, logger: logging.Logger) -> dict:
    """One look at a job's children: the status changes to write (empty if none)."""
    meta, spec = body.get("metadata", {}), body.get("spec") or {}
    name, namespace = meta["name"], meta.get("namespace") or operator_settings().namespace
    current = copy.deepcopy(body.get("status") or {})
    phase = current.get("phase")
    if phase is None:
        return {}  # the create handler has not run (or not finished) yet
    if phase in st.TERMINAL:
        return _clean_up(api, current, spec, namespace, name, logger)
    try:
        driver = k8s.BatchV1Api(api).read_namespaced_job(labels.driver_name(name), namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        driver = None
    new = next_status(
        current, driver=driver,
        driver_running=_driver_running(api, namespace, name),
        ready=_ready_workers(api, namespace, name),
        shards=committed_shards(str((spec.get("output") or {}).get("uri", ""))),
    )
    if new["phase"] in st.TERMINAL:
        _scale_workers_to_zero(api, namespace, name)  # before the status says so
        level = logging.ERROR if new["phase"] == st.FAILED else logging.INFO
        logger.log(level, "job %s/%s: %s: %s", namespace, name, new["phase"], new.get("message", ""))
    new["observedGeneration"] = meta.get("generation")
    return {key: value for key, value in new.items() if current.get(key) != value}


def _clean_up(api: k8s.ApiClient, current: dict, spec: dict, namespace: str, name: str,
              logger: logging.Logger) -> dict:
    """After a terminal phase reached through the driver: once ``ttlSecondsAfterFinished`` has
    passed, delete the scheduler and the (already scaled-down) worker Deployments."""
    finished = current.get("completionTime")
    if not finished or current.get("schedulerDeleted"):
        return {}  # an invalid spec (nothing was created) or already cleaned up
    ttl = spec.get("ttlSecondsAfterFinished", DEFAULT_TTL)
    if datetime.now(timezone.utc) < _parse_time(finished) + timedelta(seconds=ttl):
        return {}
    _delete_runtime(api, namespace, name)
    logger.info("job %s/%s: deleted the scheduler and the workers (ttlSecondsAfterFinished=%s)",
                namespace, name, ttl)
    return {"schedulerDeleted": True}


def reconcile_all(api: k8s.ApiClient, namespace: str | None, logger: logging.Logger) -> None:
    """One pass over every PreprocessJob in ``namespace`` (None: all namespaces)."""
    objects = k8s.CustomObjectsApi(api)
    if namespace:
        jobs = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    else:
        jobs = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    for body in jobs.get("items", []):
        meta = body["metadata"]
        try:
            changes = reconcile_one(api, body, logger)
            if changes:
                objects.patch_namespaced_custom_object_status(
                    GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"status": changes},
                    _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 404:
                continue  # deleted meanwhile
            logger.warning("job %s/%s: Kubernetes API error %s %s; retrying in %ss",
                           meta.get("namespace"), meta["name"], exc.status, exc.reason,
                           RECONCILE_INTERVAL)


# The follower: one loop per operator rather than a kopf timer or daemon per job, because kopf
# puts a finalizer on every object that has a timer or a daemon (to stop it before the object
# goes), and the children must go through ownerReferences alone: with a finalizer, deleting a
# job would hang whenever the operator is down.
_follower: asyncio.Task | None = None
#: The namespace the follower looks at (None: all); ``main.run`` sets it from ``--namespace``.
_watched_namespace: str | None = None


def watch_namespace(namespace: str | None) -> None:
    """Scope of the follower: one namespace, or None for the whole cluster."""
    global _watched_namespace
    _watched_namespace = namespace


async def _follow(logger: logging.Logger) -> None:
    while True:
        try:
            await asyncio.to_thread(reconcile_all, api_client(), _watched_namespace, logger)
        except ApiException as exc:
            logger.warning("cannot list PreprocessJobs: %s %s", exc.status, exc.reason)
        except Exception:  # a bug in one pass must not stop following every job
            logger.exception("reconciliation pass failed")
        await asyncio.sleep(RECONCILE_INTERVAL)


@kopf.on.startup()
async def start_follower(**_: Any) -> None:
    global _follower
    _follower = asyncio.create_task(_follow(log), name="recprep-follower")


@kopf.on.cleanup()
async def stop_follower(**_: Any) -> None:
    global _follower
    if _follower is not None:
        _follower.cancel()
        await asyncio.gather(_follower, return_exceptions=True)
        _follower = None
