"""The follower: one pass over every PreprocessJob, reading its children and writing its status.

Per job and pass it *observes* (driver Job and pods, the scheduler's workers and the driver's
published progress, ``recprep.progress``) and computes the next status with ``next_status``, a
pure function of the current status and the ``Observation``. Phases only move forward along
``status.TRANSITIONS``; a job whose driver has finished is terminal: the worker pools go to 0
(nothing is left to compute, so no retirement is needed), and once ``ttlSecondsAfterFinished``
has passed the scheduler and the worker Deployments are deleted (the ConfigMap and the driver
Job, with its logs, stay until the PreprocessJob is deleted).

A job with ``spec.serve`` gets its shard service (``builders.build_shard_service_children``)
from the follower, not with the other children: ``recprep serve`` needs the job's ``_job.json``,
which the driver writes when it opens the output, so the service is created once the driver's
published stage is past planning (``shard_service_due``). Created then, a first server finds the
output instead of exiting and being restarted with a growing back-off. It is built from the
spec in effect (the job's ConfigMap, which the driver runs) and stays when the job finishes
(trainers may still be reading), until the PreprocessJob is deleted; ``status.shardService``
records that it was created and where trainers connect.

A running job with ``spec.autoscale`` is handed to the autoscaler (``autoscaler.Autoscalers``,
when the operator passes one) every pass, with the scheduler's running workers: it measures the
pools' start-up lags and runs the job's policy on its own threads when a decision is due. A job
about to finish is stopped there before its pools go to 0.

Stateless: an operator restarted mid-job picks up from the objects and the status alone (the
autoscaler's memory is rebuilt from ``status.autoscaler`` and the Deployments).
"""

from __future__ import annotations

import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from ..errors import SpecError
from ..progress import DONE, FIT, PLAN, TRANSFORM
from ..spec import API_VERSION, GROUP, KIND, PLURAL, VERSION, JobSpec, load_job_dict
from . import builders, kube, labels
from . import scheduler as dask_scheduler
from . import status as st
from .settings import Settings

DEFAULT_TTL = JobSpec.model_fields["ttl_seconds_after_finished"].default
DEFAULT_BACKOFF = JobSpec.model_fields["backoff_limit"].default
#: Seconds the follower waits for a scheduler's answer in one pass (it retries next pass).
SCHEDULER_TIMEOUT = 3.0
#: Jobs looked at at once in a pass: a look waits on the API and on the job's scheduler, so
#: twenty jobs looked at one after the other made a pass last tens of seconds.
CONCURRENT_JOBS = 8
#: Longest driver error line kept in status.message.
MAX_ERROR = 400

#: The non-failure path, in order.
_PATH = (st.PENDING, st.FITTING, st.RUNNING, st.SUCCEEDED)


@dataclass(frozen=True)
class Observation:
    """What one look at a job's children found."""

    driver_found: bool = False
    #: (reason, message) of the driver Job's Failed condition.
    driver_failed: tuple[str, str] | None = None
    driver_complete: bool = False
    driver_completion_time: datetime | None = None
    #: A driver pod is running now.
    driver_running: bool = False
    driver_counts: dict[str, int] = field(default_factory=lambda: {"active": 0, "failed": 0, "succeeded": 0})
    #: The last error line of the latest failed driver attempt ('' if none or unreadable).
    driver_error: str = ""
    backoff_limit: int = DEFAULT_BACKOFF
    #: The driver's published progress document (None: none yet, or the scheduler is unreachable).
    progress: dict[str, Any] | None = None
    #: Workers per pool accepting work.
    workers: dict[str, int] = field(default_factory=lambda: {p: 0 for p in labels.POOLS})
    #: The pods of the workers accepting work -> their pool (empty: scheduler not asked).
    joined: dict[str, str] = field(default_factory=dict)


def advance(
    status: dict, target: str, *, reason: str | None = None, message: str = "", now: datetime | None = None
) -> dict:
    """``status`` moved to ``target`` through every phase the table requires on the way
    (a job can finish between two looks: Pending -> Fitting -> Running -> Succeeded)."""
    current = status.get("phase") or st.PENDING
    if target == st.FAILED or current not in _PATH or target not in _PATH:
        return st.transition(status, target, reason=reason, message=message, now=now)
    for phase in _PATH[_PATH.index(current) + 1 : _PATH.index(target)]:
        status = st.transition(status, phase, now=now)
    return st.transition(status, target, reason=reason, message=message, now=now)


def _forward(status: dict, target: str, now: datetime | None) -> dict:
    """Move forward to ``target`` unless the job is already there or further (a retried driver
    plans and fits again: the job stays Running)."""
    current = status.get("phase") or st.PENDING
    if current in _PATH and _PATH.index(target) > _PATH.index(current):
        return advance(status, target, now=now)
    return status


_STAGE_PHASE = {PLAN: st.FITTING, FIT: st.FITTING, TRANSFORM: st.RUNNING, DONE: st.RUNNING}


def next_status(current: dict, obs: Observation, now: datetime | None = None) -> dict:
    """The status after one look at the children (pure)."""
    status = copy.deepcopy(current)
    doc = obs.progress
    known_total = (status.get("shards") or {}).get("total") is not None
    if doc is not None and (doc["shardsTotal"] is not None or not known_total):
        # (A retried driver plans again before it counts: keep the counts until it has.)
        status = st.with_progress(
            status,
            doc["shardsDone"],
            doc["shardsTotal"],
            rows=doc["rows"],
            rows_estimated=doc["rowsEstimated"],
            rows_quarantined=doc["rowsQuarantined"],
        )
        if doc["warnings"]:
            status["warnings"] = list(doc["warnings"])
    if doc is not None and doc.get("accounting"):
        # (published once the run has landed every shard; a retried driver's plan keeps it)
        status["accounting"] = copy.deepcopy(doc["accounting"])
    status["driver"] = dict(obs.driver_counts)
    failures = obs.driver_counts.get("failed", 0)

    if obs.driver_failed is not None:
        reason, message = obs.driver_failed
        text = (
            f"driver failed {failures} time(s), more than backoffLimit {obs.backoff_limit}"
            f" ({reason or 'Failed'}: {message or 'no message'})"
        )
        if obs.driver_error:
            text += f"; last error: {obs.driver_error}"
        status = advance(status, st.FAILED, reason=reason or "DriverFailed", message=text, now=now)
    elif obs.driver_complete:
        # The driver returned from the whole run: every shard is committed.
        total = (status.get("shards") or {}).get("total")
        rows = (status.get("rows") or {}).get("done")
        quarantined = (status.get("rows") or {}).get("quarantined") or 0
        if total is not None:
            status = st.with_progress(
                status, total, total, rows=rows, rows_estimated=rows, rows_quarantined=quarantined
            )
        text = f"all {total} shards committed" if total is not None else "the driver completed"
        status = advance(status, st.SUCCEEDED, reason="Completed", message=text, now=now)
    else:
        if doc is not None:
            status = _forward(status, _STAGE_PHASE[doc["stage"]], now)
        elif obs.driver_running:
            status = _forward(status, st.FITTING, now)
        if failures and status["phase"] not in st.TERMINAL:
            text = (
                f"driver attempt {failures} of {obs.backoff_limit + 1} failed"
                + (f" ({obs.driver_error})" if obs.driver_error else "")
                + "; retrying; "
                "committed shards are kept"
            )
            status["message"] = text

    if status["phase"] in st.TERMINAL:
        status["workers"] = st.workers(0, 0)
        status["completionTime"] = st.now_rfc3339(obs.driver_completion_time or now)
    else:
        status["workers"] = st.workers(obs.workers.get(labels.CPU, 0), obs.workers.get(labels.ISP, 0))
    return status


#: Driver stages published only after the driver has opened the job's output (``_job.json``).
_OUTPUT_OPENED = (FIT, TRANSFORM, DONE)


def shard_service_due(status: dict, obs: Observation | None) -> bool:
    """Whether to create the shard service now (pure): not created yet, and the job's output is
    opened: the driver's published stage is past planning, it completed, or the job Succeeded."""
    if status.get("shardService"):
        return False
    if status.get("phase") == st.SUCCEEDED:
        return True
    if obs is None:
        return False
    return obs.driver_complete or (obs.progress is not None and obs.progress["stage"] in _OUTPUT_OPENED)


# --- observing --------------------------------------------------------------------------------


def _true_condition(job: Any, type_: str) -> Any:
    for cond in (job.status.conditions or []) if job and job.status else []:
        if cond.type == type_ and cond.status == "True":
            return cond
    return None


def _last_error(api: k8s.ApiClient, namespace: str, pods: list[Any]) -> str:
    failed = [p for p in pods if p.status and p.status.phase == "Failed"]
    if not failed:
        return ""
    lines = [
        line.strip() for line in kube.pod_log_tail(api, namespace, failed[-1].metadata.name).splitlines()
    ]
    lines = [line for line in lines if line]
    return lines[-1][:MAX_ERROR] if lines else ""


def observe(api: k8s.ApiClient, namespace: str, name: str, spec: dict) -> Observation:
    """One look at the children of job ``name``."""
    driver = kube.read_driver(api, namespace, name)
    pods = kube.driver_pods(api, namespace, name)
    state = None
    if kube.scheduler_ready(api, namespace, name):  # else a call would only wait for its timeout
        try:
            state = dask_scheduler.state(dask_scheduler.address(name, namespace), timeout=SCHEDULER_TIMEOUT)
        except dask_scheduler.SchedulerUnavailable:
            pass  # counts stay as they are; the next pass asks again
    failed = _true_condition(driver, "Failed")
    complete = _true_condition(driver, "Complete")
    counts = {"active": 0, "failed": 0, "succeeded": 0}
    if driver is not None and driver.status:
        counts = {
            "active": driver.status.active or 0,
            "failed": driver.status.failed or 0,
            "succeeded": driver.status.succeeded or 0,
        }
    return Observation(
        driver_found=driver is not None,
        driver_failed=(failed.reason or "", failed.message or "") if failed else None,
        driver_complete=complete is not None,
        driver_completion_time=(driver.status.completion_time if complete and driver.status else None),
        driver_running=any(p.status and p.status.phase == "Running" for p in pods),
        driver_counts=counts,
        driver_error=_last_error(api, namespace, pods) if counts["failed"] else "",
        backoff_limit=int(spec.get("backoffLimit", DEFAULT_BACKOFF)),
        progress=state.progress if state else None,
        workers=state.running_per_pool() if state else kube.ready_workers(api, namespace, name),
        joined={pod: w.pool for pod, w in state.workers.items() if w.status == "running" and w.pool}
        if state
        else {},
    )


# --- one pass -----------------------------------------------------------------------------------


def reconcile_one(
    api: k8s.ApiClient,
    body: dict,
    settings: Settings,
    logger: logging.Logger,
    autoscalers: Any = None,
    preemptions: Any = None,
    notices: Any = None,
    dashboard: Any = None,
) -> dict:
    """One look at a job's children: the status changes to write (empty if none).
    ``autoscalers`` (an ``autoscaler.Autoscalers``; None: no autoscaling) gets running jobs;
    ``preemptions`` (a ``preemption.Preemptions``; None: no notice handling) gets unfinished
    jobs, with ``notices``, the nodes noticed for termination this pass (None: unknown);
    ``dashboard`` (an ``operator.dashboard.OperatorDashboard``; None: none) every job, with the
    status as written and the driver's progress."""
    meta, spec = body.get("metadata", {}), body.get("spec") or {}
    name, namespace = meta["name"], meta.get("namespace") or settings.namespace
    current = copy.deepcopy(body.get("status") or {})
    phase = current.get("phase")
    if phase is None:
        return {}  # the create handler has not run (or not finished) yet
    serving = bool(spec.get("serve"))  # (the spec in effect, in the ConfigMap, decides below)
    if phase in st.TERMINAL:
        if autoscalers is not None:
            autoscalers.forget(meta.get("uid") or name)
        if preemptions is not None:
            preemptions.forget(meta.get("uid") or name)
        changes = _clean_up(api, current, spec, namespace, name, logger)
        if serving and shard_service_due(current, None):
            changes.update(_create_shard_service(api, body, namespace, name, settings, logger))
        _show(dashboard, api, body, current, None, logger)
        return changes
    obs = observe(api, namespace, name, spec)
    new = without_nulls(next_status(current, obs))
    if serving and shard_service_due(current, obs):
        new.update(_create_shard_service(api, body, namespace, name, settings, logger))
    if preemptions is not None and new["phase"] not in st.TERMINAL:
        try:
            handled = preemptions.follow(api, body, namespace, notices, obs.joined, settings, logger)
        except ApiException:
            raise
        except Exception:  # a bug in the notice handling must not stop following the job
            logger.exception("job %s/%s: preemption handling failed", namespace, name)
            handled = None
        if handled:
            new["preemptions"] = without_nulls(handled)
    if new["phase"] in st.TERMINAL:
        if autoscalers is not None:  # no scaling action after this (one in flight ends first)
            autoscalers.stop(meta.get("uid") or name)
        for pool in labels.POOLS:  # before the status says so
            kube.set_replicas(api, namespace, name, pool, 0)
        level = logging.ERROR if new["phase"] == st.FAILED else logging.INFO
        logger.log(level, "job %s/%s: %s: %s", namespace, name, new["phase"], new.get("message", ""))
    elif autoscalers is not None:
        autoscalers.follow(api, body, obs.workers, new["phase"], settings, logger)
    _show(dashboard, api, body, new, obs.progress, logger)
    return {key: value for key, value in new.items() if current.get(key) != value}


def _show(dashboard: Any, api: Any, body: dict, status: dict, progress: Any, logger) -> None:
    """The job's look on the dashboard, if there is one (its failure never stops the follower)."""
    if dashboard is None:
        return
    try:
        dashboard.look(api, body, status, progress)
    except Exception:
        logger.exception("job %s: the dashboard's look failed", body["metadata"].get("name"))


def without_nulls(value: Any) -> Any:
    """``value`` without None members of mappings, as the API server stores a merge patch
    (null deletes), so that an unchanged status compares equal and is not written again."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _clean_up(
    api: k8s.ApiClient, current: dict, spec: dict, namespace: str, name: str, logger: logging.Logger
) -> dict:
    """After a terminal phase reached through the driver: once ``ttlSecondsAfterFinished`` has
    passed, delete the scheduler and the (already scaled-down) worker Deployments."""
    finished = current.get("completionTime")
    if not finished or current.get("schedulerDeleted"):
        return {}  # an invalid spec (nothing was created) or already cleaned up
    ttl = spec.get("ttlSecondsAfterFinished", DEFAULT_TTL)
    if datetime.now(UTC) < _parse_time(finished) + timedelta(seconds=ttl):
        return {}
    kube.delete_runtime(api, namespace, name)
    logger.info(
        "job %s/%s: deleted the scheduler and the workers (ttlSecondsAfterFinished=%s)", namespace, name, ttl
    )
    return {"schedulerDeleted": True}


def _create_shard_service(
    api: k8s.ApiClient, body: dict, namespace: str, name: str, settings: Settings, logger: logging.Logger
) -> dict:
    """Create the shard service of the spec in effect (idempotent): ``{"shardService": ...}``
    for the status (a message instead of name and url when the spec in effect has no
    ``serve``), or {} when it cannot be read yet."""
    text = kube.read_job_manifest(api, namespace, name)
    if text is None:
        return {}
    try:
        doc = yaml.safe_load(text)
        doc["metadata"]["namespace"] = namespace
        job = load_job_dict(doc, f"ConfigMap {namespace}/{labels.configmap_name(name)}")
    except (SpecError, yaml.YAMLError, TypeError, KeyError) as exc:
        logger.error(
            "job %s/%s: no shard service: the spec in effect does not load (%s)", namespace, name, exc
        )
        return {}
    if job.spec.serve is None:  # recorded, so that later passes do not read the ConfigMap again
        return {
            "shardService": {
                "message": "not created: spec.serve was added after the job started "
                "(a running job's spec.serve does not change)"
            }
        }
    owner = {
        "apiVersion": body.get("apiVersion") or API_VERSION,
        "kind": body.get("kind") or KIND,
        "metadata": body["metadata"],
    }
    created = kube.create_children(api, builders.build_shard_service_children(job, settings), owner)
    url = builders.shard_service_url(job, settings)
    if created:
        logger.info("job %s/%s: created %s (%s)", namespace, name, ", ".join(created), url)
    return {"shardService": {"name": labels.shards_name(name), "url": url}}


def reconcile_all(
    api: k8s.ApiClient,
    namespace: str | None,
    settings: Settings,
    logger: logging.Logger,
    autoscalers: Any = None,
    preemptions: Any = None,
    dashboard: Any = None,
) -> None:
    """One pass over every PreprocessJob in ``namespace`` (None: all namespaces), up to
    ``CONCURRENT_JOBS`` jobs at a time; running jobs with ``spec.autoscale`` go to
    ``autoscalers`` (None: no autoscaling), unfinished jobs to ``preemptions`` (None: no notice
    handling) with the Nodes' notices, read once per pass, every job to ``dashboard`` (None:
    none)."""
    objects = k8s.CustomObjectsApi(api)
    if namespace:
        jobs = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    else:
        jobs = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    items = jobs.get("items", [])
    uids = {b["metadata"].get("uid") or b["metadata"]["name"] for b in items}
    if autoscalers is not None:
        autoscalers.retain(uids)
    if dashboard is not None:
        dashboard.retain(
            {(b["metadata"].get("namespace") or "default", b["metadata"]["name"]) for b in items}
        )
    notices = None
    if preemptions is not None:
        preemptions.retain(uids)
        if any((b.get("status") or {}).get("phase") not in (None, *st.TERMINAL) for b in items):
            notices = preemptions.nodes(api, logger)

    def one(body: dict) -> None:
        _reconcile_and_write(api, body, settings, logger, autoscalers, preemptions, notices, dashboard)

    if len(items) <= 1:
        for body in items:
            one(body)
        return
    with ThreadPoolExecutor(min(CONCURRENT_JOBS, len(items)), thread_name_prefix="recprep-follow") as pool:
        for _ in pool.map(one, items):
            pass  # a bug in one job's look is raised here, after the others were looked at


def _reconcile_and_write(
    api: k8s.ApiClient,
    body: dict,
    settings: Settings,
    logger: logging.Logger,
    autoscalers: Any = None,
    preemptions: Any = None,
    notices: Any = None,
    dashboard: Any = None,
) -> None:
    meta = body["metadata"]
    try:
        changes = reconcile_one(api, body, settings, logger, autoscalers, preemptions, notices, dashboard)
        if changes and not kube.patch_status(
            api, meta["namespace"], meta["name"], meta["resourceVersion"], changes
        ):
            logger.debug(
                "job %s/%s changed during the pass; looking again next pass",
                meta["namespace"],
                meta["name"],
            )
    except ApiException as exc:
        if exc.status == 404:
            return  # deleted meanwhile
        logger.warning(
            "job %s/%s: Kubernetes API error %s; retrying next pass",
            meta.get("namespace"),
            meta["name"],
            kube.api_error_text(exc),
        )
