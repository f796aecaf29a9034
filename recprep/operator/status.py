"""The status the operator writes on a PreprocessJob, as pure functions over plain dicts.

The CRD's printer columns read ``.status.phase``, ``.status.progressText``,
``.status.workers.cpu``, ``.status.workers.isp`` and ``.status.autoscaler.lastScale``.
Phases move along a small table::

    Pending -> Fitting -> Running -> Succeeded
       \\__________\\__________\\____> Failed

Re-entering the current phase is allowed (a handler re-run after an operator restart is a
no-op); anything else off the table raises ``InvalidTransition``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import RecprepError

PENDING = "Pending"
FITTING = "Fitting"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
PHASES = (PENDING, FITTING, RUNNING, SUCCEEDED, FAILED)
TERMINAL = frozenset({SUCCEEDED, FAILED})

#: phase -> phases it may move to (besides itself).
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({FITTING, FAILED}),
    FITTING: frozenset({RUNNING, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
}

# Condition types: Progressing (True until a terminal phase), Complete, Failed.
PROGRESSING = "Progressing"
COMPLETE = "Complete"
FAILED_CONDITION = "Failed"

#: Whether the latest spec (metadata.generation) is in effect: True once a change was applied,
#: False with reason InvalidSpec (and the field named) when a change was refused.
SPEC_APPLIED = "SpecApplied"

#: Reason of the failure of a spec that does not validate.
INVALID_SPEC = "InvalidSpec"


class InvalidTransition(RecprepError):
    """A phase change the table does not allow."""


def now_rfc3339(now: datetime | None = None) -> str:
    """A Kubernetes timestamp (UTC, second precision, ``Z``)."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- phases -------------------------------------------------------------------------------------


def can_transition(current: str | None, target: str) -> bool:
    """Whether ``current`` may move to ``target`` (a missing phase counts as Pending)."""
    _check_phase(target)
    current = current or PENDING
    _check_phase(current)
    return target == current or target in TRANSITIONS[current]


def check_transition(current: str | None, target: str) -> None:
    """Raise ``InvalidTransition`` unless ``current -> target`` is allowed."""
    if not can_transition(current, target):
        allowed = ", ".join(p for p in PHASES if p in TRANSITIONS[current or PENDING]) or "nothing"
        raise InvalidTransition(
            f"status.phase: cannot move from {current} to {target}; {current} may move to {allowed}"
        )


def transition(
    status: Mapping[str, Any] | None,
    target: str,
    *,
    reason: str | None = None,
    message: str = "",
    now: datetime | None = None,
) -> dict:
    """A copy of ``status`` in phase ``target``, with the conditions updated.

    Re-entering the current phase returns an equal status (conditions keep their times).
    """
    status = copy.deepcopy(dict(status or {}))
    check_transition(status.get("phase"), target)
    reason = reason or target
    conditions = status.get("conditions", [])
    if target in TERMINAL:
        conditions = set_condition(conditions, condition(PROGRESSING, False, reason, message, now))
        kind = COMPLETE if target == SUCCEEDED else FAILED_CONDITION
        conditions = set_condition(conditions, condition(kind, True, reason, message, now))
    else:
        conditions = set_condition(conditions, condition(PROGRESSING, True, reason, message, now))
    status["phase"] = target
    status["conditions"] = conditions
    if message:
        status["message"] = message
    return status


# --- whole statuses -----------------------------------------------------------------------------


def initial_status(now: datetime | None = None, *, cpu: int = 0, isp: int = 0) -> dict:
    """The status of a job the operator has just accepted (its children are being created):
    Pending, no shards yet, ``startTime`` now."""
    return {
        "phase": PENDING,
        "startTime": now_rfc3339(now),
        "progressText": progress_text(0, None),
        "shards": {"done": 0, "total": None},
        "rows": {"done": 0, "estimated": None, "written": 0, "quarantined": 0},
        "workers": workers(cpu, isp),
        "conditions": [condition(PROGRESSING, True, PENDING, "creating scheduler, workers and driver", now)],
    }


def failed_status(message: str, reason: str = INVALID_SPEC, now: datetime | None = None) -> dict:
    """The status of a job that cannot run (e.g. an invalid spec): Failed, with the message."""
    return {
        "phase": FAILED,
        "message": message,
        "progressText": progress_text(0, None),
        "workers": workers(0, 0),
        "conditions": [
            condition(PROGRESSING, False, reason, message, now),
            condition(FAILED_CONDITION, True, reason, message, now),
        ],
    }


def with_progress(
    status: Mapping[str, Any],
    done: int,
    total: int | None,
    *,
    rows: int | None = None,
    rows_estimated: int | None = None,
    rows_quarantined: int = 0,
) -> dict:
    """A copy of ``status`` with shard (and row) counts and the printer column's progress text.
    Rows read (``done``) are written or quarantined: ``done = written + quarantined``."""
    status = copy.deepcopy(dict(status))
    status["progressText"] = progress_text(done, total)
    status["shards"] = {"done": done, "total": total}
    if rows is not None:
        if rows < 0 or not 0 <= rows_quarantined <= rows:
            raise ValueError(f"rows must satisfy 0 <= quarantined <= done, got {rows_quarantined} of {rows}")
        status["rows"] = {
            "done": int(rows),
            "estimated": rows_estimated,
            "written": int(rows) - int(rows_quarantined),
            "quarantined": int(rows_quarantined),
        }
    return status


def progress_text(done: int, total: int | None) -> str:
    """Shards committed out of the total for ``kubectl get`` (``12/40``; ``0/?`` before the
    driver has listed the source)."""
    if done < 0:
        raise ValueError(f"shards done must not be negative, got {done}")
    if total is None:
        return f"{done}/?"
    if total < 0 or done > total:
        raise ValueError(f"shards done ({done}) must be within 0..total ({total})")
    return f"{done}/{total}"


def workers(cpu: int, isp: int) -> dict[str, int]:
    """``status.workers``: workers per pool (the CPU and ISP printer columns)."""
    if cpu < 0 or isp < 0:
        raise ValueError(f"worker counts must not be negative, got cpu={cpu} isp={isp}")
    return {"cpu": int(cpu), "isp": int(isp)}


# --- the autoscaler ------------------------------------------------------------------------------

#: Scaling actions kept in ``status.autoscaler.lastDecisions`` (the newest last).
MAX_DECISIONS = 10
#: Longest reason kept in a decision (the Event's message has it whole, up to Kubernetes' limit).
MAX_REASON = 600


def scaling_record(
    pool: str, before: int, after: int, reason: str, now: datetime | None = None
) -> dict[str, Any]:
    """One scaling action as ``status.autoscaler`` keeps it."""
    if before < 0 or after < 0:
        raise ValueError(f"worker counts must not be negative, got {before} -> {after}")
    return {
        "time": now_rfc3339(now),
        "pool": pool,
        "from": int(before),
        "to": int(after),
        "reason": str(reason)[:MAX_REASON],
    }


def last_scale_text(record: Mapping[str, Any]) -> str:
    """The printer column's text of a scaling action: ``cpu 1->2``."""
    return f"{record['pool']} {record['from']}->{record['to']}"


def autoscaler_status(
    previous: Mapping[str, Any] | None,
    *,
    policy: str,
    quantile: float | None = None,
    forecast: float | None = None,
    capacity: Mapping[str, float] | None = None,
    rows_per_worker: Mapping[str, float] | None = None,
    startup_lag: Mapping[str, float] | None = None,
    message: str | None = None,
    actions: list[Mapping[str, Any]] = (),
    pending: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``status.autoscaler`` after one decision: what the policy saw and said, and ``actions``
    (scaling records) appended to the previous ones (the last ``MAX_DECISIONS`` kept;
    ``lastScale`` and ``lastScaleTime`` from the newest). ``pending`` is an action written
    before it is carried out (``None``: none; the key is then null, which a merge patch
    deletes). Numbers are rounded (rows/s to integers), so an unchanged view compares equal."""
    previous = dict(previous or {})
    decisions = [dict(d) for d in previous.get("lastDecisions") or []] + [dict(a) for a in actions]
    decisions = decisions[-MAX_DECISIONS:]
    status: dict[str, Any] = {"policy": policy}
    if quantile is not None:
        status["quantile"] = round(float(quantile), 4)
    status["forecast"] = None if forecast is None else round(max(0.0, float(forecast)))
    status["capacity"] = {k: round(max(0.0, float(v))) for k, v in (capacity or {}).items()}
    status["rowsPerWorker"] = {k: round(max(0.0, float(v))) for k, v in (rows_per_worker or {}).items()}
    status["startupLagSeconds"] = {k: round(max(0.0, float(v)), 1) for k, v in (startup_lag or {}).items()}
    status["message"] = message
    if decisions:
        status["lastDecisions"] = decisions
        status["lastScale"] = last_scale_text(decisions[-1])
    if actions:
        status["lastScaleTime"] = actions[-1]["time"]
    elif previous.get("lastScaleTime"):
        status["lastScaleTime"] = previous["lastScaleTime"]
    status["pending"] = dict(pending) if pending else None
    return status


# --- conditions ---------------------------------------------------------------------------------


def condition(
    type_: str, status: bool | str, reason: str, message: str = "", now: datetime | None = None
) -> dict:
    """One condition in the Kubernetes shape; ``status`` True/False or "True"/"False"/"Unknown"."""
    if isinstance(status, bool):
        status = "True" if status else "False"
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, got {status!r}")
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now_rfc3339(now),
    }


def get_condition(conditions: list[Mapping] | None, type_: str) -> dict | None:
    """The condition of ``type_``, or None."""
    for cond in conditions or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def set_condition(conditions: list[Mapping] | None, new: Mapping) -> list[dict]:
    """A copy of ``conditions`` with ``new`` replacing the condition of its type (appended if
    absent). When the status does not change, the old lastTransitionTime stays, as Kubernetes
    conventions ask."""
    result: list[dict] = []
    replaced = False
    for cond in conditions or []:
        if cond.get("type") == new["type"]:
            merged = dict(new)
            if cond.get("status") == new["status"] and cond.get("lastTransitionTime"):
                merged["lastTransitionTime"] = cond["lastTransitionTime"]
            result.append(merged)
            replaced = True
        else:
            result.append(dict(cond))
    if not replaced:
        result.append(dict(new))
    return result


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise InvalidTransition(f"status.phase: unknown phase {phase!r}; allowed: {', '.join(PHASES)}")


# --- the schema of status in the CRD -------------------------------------------------------------


def _int(description: str, nullable: bool = False) -> dict:
    node = {"type": "integer", "format": "int64", "minimum": 0, "description": description}
    return {**node, "nullable": True} if nullable else node


def _str(description: str, **extra: Any) -> dict:
    return {"type": "string", "description": description, **extra}


def _number(description: str, nullable: bool = False) -> dict:
    node = {"type": "number", "minimum": 0, "description": description}
    return {**node, "nullable": True} if nullable else node


def _per_pool(description: str, leaf, pools: tuple[str, ...] = ("isp", "cpu")) -> dict:
    return {
        "type": "object",
        "description": description,
        "properties": {pool: leaf(f"Pool {pool}.") for pool in pools},
    }


#: ``status.accounting``: what the driver's run cost, per pool (``recprep.progress``'s
#: ``accounting``: ``recprep.isp_nodes.accounting`` without the per-ISP-worker details).
ACCOUNTING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What the driver's last run cost, per pool, once it has landed every shard (shards "
    "committed by an earlier attempt are not in it); the output's _accounting.json has it too, "
    "with the details of each ISP worker.",
    "properties": {
        "placement": _str(
            "Where the shards ran: isp (all on ISP workers, next to their raw data), cpu-centric "
            "(all on the CPU pool), mixed, or none."
        ),
        "shards": _int("Shards the run committed."),
        "shardsByPool": _per_pool(
            "Shards per pool that ran them (isp+cpu: an ISP worker ran the offloadable transforms, "
            "a CPU worker the rest).",
            _int,
            ("isp", "cpu", "isp+cpu"),
        ),
        "rows": _int("Rows of the shards the run committed."),
        "storedBytes": _int("Raw bytes read from storage."),
        "networkBytes": {
            "type": "object",
            "description": "Bytes carried over the network.",
            "properties": {
                "raw": _int("Raw data read by a worker that does not hold it."),
                "handoff": _int("Tables an ISP task handed to a CPU task."),
                "shard": _int("Written shards (each moves once, to the trainers)."),
                "total": _int("All of them."),
            },
        },
        "busySeconds": _per_pool("Seconds the pools' tasks ran.", _number),
        "workers": _per_pool("Workers of each pool for the run (ISP: storage nodes).", _int),
        "wallSeconds": _number("Seconds from the first shard placed to the last landed."),
        "modelled": {
            "type": "object",
            "description": "Energy and cost from the ISP model (spec.pools.isp.model).",
            "properties": {
                "joules": _number("Busy seconds times the model's watts."),
                "dollars": _number("The pools' workers for the wall time at the model's hourly prices."),
                "rowsPerJoule": _number("Rows per joule.", True),
                "rowsPerDollar": _number("Rows per dollar.", True),
            },
        },
    },
}


def _scaling_schema(description: str) -> dict:
    return {
        "type": "object",
        "description": description,
        "properties": {
            "time": _str("When it was decided.", format="date-time"),
            "pool": _str("The pool: cpu or isp."),
            "from": _int("Workers (the Deployment's replicas) before."),
            "to": _int("Workers after."),
            "reason": _str("The policy's reason."),
        },
    }


#: ``status.autoscaler``: the policy of spec.autoscale as the operator runs it.
AUTOSCALER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What the autoscaler (spec.autoscale) saw and decided; absent for a job without "
    "spec.autoscale. Every scaling action is also an Event with reason Scaled.",
    "properties": {
        "policy": _str("The policy of spec.autoscale."),
        "quantile": _number("The quantile of the demand forecast provisioned for."),
        "forecast": _number("The policy's latest forecast of the demand, rows/s (null: none).", True),
        "capacity": _per_pool("What each pool's ready workers produce now, rows/s.", _number),
        "rowsPerWorker": _per_pool(
            "Rows/s of one worker of each pool, measured from the shards it finished.", _number
        ),
        "startupLagSeconds": _per_pool(
            "Start-up lag of each pool (replicas raised -> worker joined the scheduler), a high "
            "quantile of the measured ones (a prior until measured).",
            _number,
        ),
        "message": _str("Why the latest look made no decision (e.g. nothing measured yet)."),
        "lastScale": _str("The latest scaling action, e.g. cpu 1->2 (a printer column)."),
        "lastScaleTime": _str(
            "When the latest scaling action was decided (none is taken within spec.autoscale.interval "
            "of it, across operator restarts).",
            format="date-time",
        ),
        "lastDecisions": {
            "type": "array",
            "description": f"The last {MAX_DECISIONS} scaling actions, oldest first.",
            "maxItems": MAX_DECISIONS,
            "items": _scaling_schema("One scaling action."),
        },
        "pending": _scaling_schema(
            "A scaling action decided and not yet confirmed carried out (an operator restarted "
            "meanwhile settles it from the Deployment's replicas)."
        ),
    },
}


#: Notices kept in ``status.preemptions.last`` (``preemption.MAX_NOTICES`` is this one).
MAX_PREEMPTIONS = 5

#: ``status.preemptions``: the preemption notices handled (``recprep.operator.preemption``).
PREEMPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Preemption notices handled: a node tainted for termination (a spot interruption) "
    "or a worker pod deleted by someone else. Its workers were retired through the scheduler at once "
    "and their pods deleted, so replacements started at notice time; each notice is also an Event "
    "with reason Preempted. Absent until the first notice.",
    "properties": {
        "count": _int("Notices handled since the job started."),
        "last": {
            "type": "array",
            "description": f"The last {MAX_PREEMPTIONS} notices, oldest first.",
            "maxItems": MAX_PREEMPTIONS,
            "items": {
                "type": "object",
                "properties": {
                    "node": _str("The node noticed (for a deleted pod: its node)."),
                    "reason": _str("The taint that gave the notice, or PodDeleted."),
                    "noticeTime": _str("When the operator saw the notice.", format="date-time"),
                    "noticeSeconds": _number("The notice the taint gives (a deleted pod: its grace period)."),
                    "pods": {
                        "type": "array",
                        "description": "The worker pods it affected.",
                        "items": {"type": "string"},
                    },
                    "retired": _int("Workers the scheduler retired (their results moved elsewhere)."),
                    "drainedSeconds": _number(
                        "Seconds from the notice to the workers retired (null: the scheduler could "
                        "not be asked).",
                        True,
                    ),
                    "replacedSeconds": _number(
                        "Seconds from the notice to as many new workers of the same pools joined "
                        "the scheduler (null: not yet).",
                        True,
                    ),
                },
            },
        },
    },
}


#: ``status`` in the CRD's openAPIV3Schema (``recprep.crd``): every field the operator writes,
#: typed, so ``kubectl explain`` describes it and the API server keeps exactly these.
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Written by the operator.",
    "properties": {
        "phase": _str("Pending -> Fitting -> Running -> Succeeded | Failed.", enum=list(PHASES)),
        "message": _str("Why the job is in its phase (for Failed: the error, naming the field)."),
        "progressText": _str(
            "Shards committed out of the total, e.g. 12/40 (0/? before the driver has listed the source)."
        ),
        "shards": {
            "type": "object",
            "description": "Shards committed and in the job.",
            "properties": {
                "done": _int("Shards committed in the ledger."),
                "total": _int("Shards of the job (null until known).", True),
            },
        },
        "rows": {
            "type": "object",
            "description": "Input rows processed (committed shards).",
            "properties": {
                "done": _int("Rows read by committed shards, bad rows included (= written + quarantined)."),
                "estimated": _int(
                    "Estimated rows of the whole job (exact once Succeeded; null until known).", True
                ),
                "written": _int("Rows written to the committed shards."),
                "quarantined": _int(
                    "Malformed rows of the committed shards, listed in the output's _quarantine/."
                ),
            },
        },
        "warnings": {
            "type": "array",
            "description": "What the driver warned of, one line each (an op that made many values null, "
            "committed shards redone because they no longer matched the ledger).",
            "items": {"type": "string"},
        },
        "accounting": ACCOUNTING_SCHEMA,
        "autoscaler": AUTOSCALER_SCHEMA,
        "preemptions": PREEMPTIONS_SCHEMA,
        "workers": {
            "type": "object",
            "description": "Workers per pool that accept work.",
            "properties": {
                "cpu": _int("Workers of the CPU pool."),
                "isp": _int("Workers of the ISP-emulation pool."),
            },
        },
        "driver": {
            "type": "object",
            "description": "Attempts of the driver Job.",
            "properties": {
                "active": _int("Running attempts."),
                "failed": _int("Failed attempts (retried up to spec.backoffLimit)."),
                "succeeded": _int("Succeeded attempts."),
            },
        },
        "startTime": _str("When the operator created the job's children.", format="date-time"),
        "completionTime": _str("When the job reached Succeeded or Failed.", format="date-time"),
        "observedGeneration": _int("The metadata.generation whose spec is in effect."),
        "shardService": {
            "type": "object",
            "description": "The shard service of spec.serve, once "
            "created (it stays until the PreprocessJob is deleted).",
            "properties": {
                "name": _str("Name of its Deployment and Service."),
                "url": _str("Where trainers connect: grpc://<name>.<namespace>.svc:<port>."),
                "message": _str("Why there is none (spec.serve not in effect)."),
            },
        },
        "schedulerDeleted": {
            "type": "boolean",
            "description": "The scheduler and the worker "
            "Deployments were deleted after ttlSecondsAfterFinished.",
        },
        "conditions": {
            "type": "array",
            "description": f"{PROGRESSING}, {COMPLETE}, {FAILED_CONDITION} and {SPEC_APPLIED}.",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {
                "type": "object",
                "required": ["type", "status"],
                "properties": {
                    "type": _str("Condition type."),
                    "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
                    "reason": _str("One word, CamelCase."),
                    "message": _str("Human-readable detail."),
                    "lastTransitionTime": _str("When status last changed.", format="date-time"),
                },
            },
        },
    },
}
