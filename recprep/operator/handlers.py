"""The kopf handlers: thin glue between PreprocessJob events and the modules that do the work.

- ``startup_fn``   tunes kopf once (watch timeouts, request timeout, Events, storage).
- ``create_fn``    validates the spec (invalid -> Failed + Event + ``kopf.PermanentError``),
                   creates the children from ``builders.build_children`` (``kopf.adopt``ed, so
                   deleting the job deletes them through ownerReferences; an existing child
                   counts as created, so a re-run after an operator restart is harmless), and
                   sets the status to Pending.
- ``update_fn``    a spec change of a running job: ``spec.pools`` is applied at once through
                   ``pools.apply_bounds`` (scale-down retires workers through the scheduler
                   first), other fields are reported and not applied (``updates``); an invalid
                   change is refused with the field named. Idempotent: kopf re-runs it after
                   an operator restart if it had not finished.
- the follower     one loop for the whole operator (``follow``), started and stopped with it;
                   it hands running jobs with ``spec.autoscale`` to the autoscaler
                   (``autoscaler.Autoscalers``: the policies run on its own threads) and
                   unfinished jobs to the preemption handling (``preemption.Preemptions``:
                   spot-interruption taints and foreign pod deletions, handled on notice).

The operator's state lives in kopf's ``memo`` (set up by ``main.run`` and ``startup_fn``), not in
module globals: ``memo.settings`` (the ``RECPREP_*`` settings), ``memo.namespace`` (the one
namespace watched, or None), ``memo.api`` (the Kubernetes client), ``memo.follower`` (the
follower's task), ``memo.autoscalers`` (each autoscaled job's policy and measurements) and
``memo.preemptions`` (each job's preemption notices).
kopf hands every handler a copy of that memo.

No finalizers: there is no ``on.delete`` handler and no per-object timer or daemon (kopf puts a
finalizer on objects with those); children go with their owner (garbage collection).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from ..errors import SpecError
from ..spec import GROUP, PLURAL, VERSION, load_job_dict
from . import autoscaler, builders, follow, kube, pools, preemption, updates
from . import scheduler as dask_scheduler
from . import status as st
from .settings import Settings

#: Seconds between two passes of the follower.
RECONCILE_INTERVAL = 1.0
#: Delay before kopf retries after a Kubernetes API error.
RETRY_DELAY = 5.0
#: Reason of the Progressing condition while the API refuses (403) to create a job's children.
FORBIDDEN = "Forbidden"
#: Delay before a scale-down is tried again when the scheduler would not retire a chosen worker
#: (its data had nowhere to go): each try marks the worker retiring for a moment, so not often.
RETIRE_RETRY_DELAY = 30.0

log = logging.getLogger(__name__)


def operator_memo(
    settings: Settings | None = None, namespace: str | None = None, api: Any = None
) -> kopf.Memo:
    """The operator's state as kopf's ``memo``: settings (default: from ``RECPREP_*``), the
    namespace watched (None: all), the Kubernetes client (default: made at startup)."""
    return kopf.Memo(
        settings=settings,
        namespace=namespace,
        api=api,
        follower=None,
        autoscalers=autoscaler.Autoscalers(),
        preemptions=preemption.Preemptions(),
        dashboard=None,
    )


def _ensure_memo(memo: kopf.Memo) -> None:
    """Fill what ``main.run`` did not (``kopf run`` on this module directly)."""
    if getattr(memo, "settings", None) is None:
        memo.settings = Settings.from_env()
    if getattr(memo, "api", None) is None:
        memo.api = kube.new_api_client()
    if "namespace" not in memo:
        memo.namespace = None
    if getattr(memo, "autoscalers", None) is None:
        memo.autoscalers = autoscaler.Autoscalers()
    if getattr(memo, "preemptions", None) is None:
        memo.preemptions = preemption.Preemptions()
    if "dashboard" not in memo:
        memo.dashboard = None


@kopf.on.startup()
def startup_fn(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Tune kopf once, here, for every resource the operator watches."""
    _ensure_memo(memo)
    ours: Settings = memo.settings
    # A watch that the server or a proxy silently stops would leave the operator blind forever:
    # let the server close it regularly and give up on the client side a bit later
    # (kopf issues 585, 957, 698).
    settings.watching.server_timeout = ours.watch_server_timeout
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.watching.connect_timeout = 30
    # A hung API request must fail (and be retried) rather than stall a handler forever.
    settings.networking.request_timeout = 60
    # HTTP 429 (API priority and fairness) and 5xx: kopf retries with these delays, not at once.
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    # The chart grants no access to CRDs (nor to namespaces, unless cluster-wide): without this,
    # kopf lists them anyway, is refused, retries the 403s through the backoffs above (~40 s)
    # and only then starts watching PreprocessJobs (kopf's "restricted mode", declared here).
    settings.scanning.disabled = True
    # Only warnings and errors become Kubernetes Events: the follower's INFO lines would flood
    # `kubectl describe` and etcd. kopf posts no log line at all unless told to (posting.loggers).
    settings.posting.level = logging.WARNING
    settings.posting.loggers = True
    # Keep kopf's bookkeeping in annotations under our own prefix: status stays ours (the
    # printer columns read it, the CRD types it), and nothing of kopf's ends up in it.
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


def _where(body: Any) -> str:
    meta = body.get("metadata", {})
    return f"PreprocessJob {meta.get('namespace')}/{meta.get('name')}"


@kopf.on.create(GROUP, VERSION, PLURAL, id="create")
def create_fn(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, memo: kopf.Memo, **_: Any) -> None:
    meta = body.get("metadata", {})
    try:
        job = load_job_dict(_job_document(body), _where(body))
    except SpecError as exc:
        message = str(exc)
        patch.status.update(st.failed_status(message))
        patch.status["observedGeneration"] = meta.get("generation")
        logger.error("invalid spec: %s", message)
        _post_event(body, "Warning", st.INVALID_SPEC, message)
        raise kopf.PermanentError(message) from None
    current = body.get("status") or {}
    try:
        created = kube.create_children(memo.api, builders.build_children(job, memo.settings), body)
    except ApiException as exc:
        message = f"cannot create the children: {kube.api_error_text(exc)}"
        if exc.status == 403:
            # No retry fixes it, an RBAC change does: say which call was refused where
            # `kubectl describe` shows it (and keep retrying, so the job goes on once granted).
            patch.status["message"] = message
            patch.status["conditions"] = [st.condition(st.PROGRESSING, False, FORBIDDEN, message)]
        raise kopf.TemporaryError(message, delay=RETRY_DELAY) from None
    if created:
        logger.info("created %s", ", ".join(created))
    if not current.get("phase"):
        # Only a job without a phase starts at Pending: a re-run after a restart must not
        # move a running job back.
        patch.status.update(st.initial_status())
        patch.status["observedGeneration"] = meta.get("generation")
        if current.get("message"):
            patch.status["message"] = None  # a refusal reported by an earlier attempt is over


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="spec")
def update_fn(
    body: kopf.Body, diff: kopf.Diff, patch: kopf.Patch, logger: kopf.Logger, memo: kopf.Memo, **_: Any
) -> None:
    meta, current = body.get("metadata", {}), body.get("status") or {}
    generation = meta.get("generation")
    live, ignored = updates.split_live(updates.changed_fields(diff, ("spec",)))
    if current.get("phase") in st.TERMINAL:
        if ignored or live:
            logger.info("job finished: spec changes are not applied (%s)", ", ".join(ignored + live))
        patch.status["observedGeneration"] = generation
        return
    try:
        job = load_job_dict(_job_document(body), _where(body))
    except SpecError as exc:
        message = f"spec change refused, the previous spec stays in effect: {exc}"
        _set_condition(memo, body, st.condition(st.SPEC_APPLIED, False, st.INVALID_SPEC, message))
        logger.error("%s", message)
        _post_event(body, "Warning", st.INVALID_SPEC, message)
        raise kopf.PermanentError(message) from None
    namespace = meta.get("namespace") or memo.settings.namespace
    try:
        changes = pools.apply_bounds(memo.api, job, namespace, memo.settings, logger)
    except ApiException as exc:
        raise kopf.TemporaryError(
            f"cannot resize the pools: {kube.api_error_text(exc)}", delay=RETRY_DELAY
        ) from None
    except dask_scheduler.SchedulerUnavailable as exc:
        raise kopf.TemporaryError(
            f"cannot reach the scheduler to retire workers: {exc}", delay=RETRY_DELAY
        ) from None
    for change in changes:
        logger.info("%s", change.describe())
    unfinished = [c for c in changes if not c.complete]
    if unfinished:
        raise kopf.TemporaryError("; ".join(c.describe() for c in unfinished), delay=RETIRE_RETRY_DELAY)
    if ignored:
        message = (
            f"not applied to a running job: spec.{', spec.'.join(ignored)} (only "
            f"spec.{', spec.'.join(updates.LIVE_FIELDS)} change live)"
        )
        logger.warning("%s", message)
    else:
        message = "applied: " + (", ".join(f"spec.{p}" for p in live) or "no change")
    _set_condition(memo, body, st.condition(st.SPEC_APPLIED, True, "Applied", message))
    patch.status["observedGeneration"] = generation


def _set_condition(memo: kopf.Memo, body: kopf.Body, condition: dict) -> None:
    """The condition written guarded by the resourceVersion (the follower writes conditions
    too: a plain patch of the list read with this event could undo its latest change)."""
    meta = body.get("metadata", {})
    namespace = meta.get("namespace") or memo.settings.namespace
    if not kube.set_job_condition(memo.api, namespace, meta["name"], condition):
        log.warning(
            "job %s/%s: condition %s not written (the job is gone or kept changing)",
            namespace,
            meta.get("name"),
            condition["type"],
        )


# The follower: one loop per operator rather than a kopf timer or daemon per job, because kopf
# puts a finalizer on every object that has a timer or a daemon (to stop it before the object
# goes), and the children must go through ownerReferences alone: with a finalizer, deleting a
# job would hang whenever the operator is down.


async def _follow(memo: kopf.Memo, logger: logging.Logger) -> None:
    while True:
        try:
            await asyncio.to_thread(
                follow.reconcile_all,
                memo.api,
                memo.namespace,
                memo.settings,
                logger,
                memo.autoscalers,
                memo.preemptions,
                memo.dashboard,
            )
        except ApiException as exc:
            logger.warning("cannot list PreprocessJobs: %s", kube.api_error_text(exc))
        except Exception:  # a bug in one pass must not stop following every job
            logger.exception("reconciliation pass failed")
        await asyncio.sleep(RECONCILE_INTERVAL)


@kopf.on.startup()
async def start_follower(memo: kopf.Memo, **_: Any) -> None:
    _ensure_memo(memo)
    if memo.settings.dashboard and memo.dashboard is None:
        from .dashboard import OperatorDashboard

        try:
            memo.dashboard = OperatorDashboard(memo.settings.dashboard)
        except OSError as exc:  # the port is taken: the operator's work goes on without its page
            log.error("RECPREP_DASHBOARD=%s: cannot listen (%s); no dashboard", memo.settings.dashboard, exc)
    memo.follower = asyncio.create_task(_follow(memo, log), name="recprep-follower")


@kopf.on.cleanup()
async def stop_follower(memo: kopf.Memo, **_: Any) -> None:
    follower = getattr(memo, "follower", None)
    if follower is not None:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        memo.follower = None
    autoscalers = getattr(memo, "autoscalers", None)
    if autoscalers is not None:
        autoscalers.shutdown()
    dashboard = getattr(memo, "dashboard", None)
    if dashboard is not None:
        dashboard.close()
        memo.dashboard = None
