"""Status as data: the phase table, progress text, conditions, failure status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recprep.operator import status as st

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 3, 9, 0, tzinfo=UTC)

VALID = [
    ("Pending", "Fitting"),
    ("Fitting", "Running"),
    ("Running", "Succeeded"),
    ("Pending", "Failed"),
    ("Fitting", "Failed"),
    ("Running", "Failed"),
    (None, "Fitting"),
    *((p, p) for p in st.PHASES),  # re-running a handler is a no-op
]
INVALID = [
    ("Pending", "Running"),
    ("Pending", "Succeeded"),
    ("Fitting", "Pending"),
    ("Fitting", "Succeeded"),
    ("Running", "Fitting"),
    ("Running", "Pending"),
    ("Succeeded", "Failed"),
    ("Succeeded", "Running"),
    ("Failed", "Pending"),
    ("Failed", "Succeeded"),
]


@pytest.mark.parametrize("current, target", VALID)
def test_valid_transitions(current, target):
    assert st.can_transition(current, target)
    st.check_transition(current, target)


@pytest.mark.parametrize("current, target", INVALID)
def test_invalid_transitions_are_refused(current, target):
    assert not st.can_transition(current, target)
    with pytest.raises(st.InvalidTransition, match=f"cannot move from {current} to {target}"):
        st.check_transition(current, target)
    with pytest.raises(st.InvalidTransition):
        st.transition({"phase": current}, target)


def test_unknown_phase_is_refused():
    with pytest.raises(st.InvalidTransition, match="unknown phase 'Done'"):
        st.check_transition("Running", "Done")


def test_table_covers_every_phase_and_terminal_phases_are_final():
    assert set(st.TRANSITIONS) == set(st.PHASES)
    for phase in st.TERMINAL:
        assert st.TRANSITIONS[phase] == frozenset()


def test_initial_status_matches_the_printer_columns():
    status = st.initial_status(T0)
    assert status["phase"] == "Pending"
    assert status["progressText"] == "0/?"
    assert status["workers"] == {"cpu": 0, "isp": 0}
    (cond,) = status["conditions"]
    assert cond["type"] == "Progressing" and cond["status"] == "True"
    assert cond["lastTransitionTime"] == "2026-01-02T03:04:05Z"


def test_walk_to_succeeded():
    status = st.initial_status(T0)
    status = st.transition(status, "Fitting", now=T1)
    status = st.with_progress(st.transition(status, "Running", now=T1), 3, 40)
    assert status["progressText"] == "3/40" and status["shards"] == {"done": 3, "total": 40}
    done = st.transition(status, "Succeeded", message="40 shards", now=T1)
    assert done["phase"] == "Succeeded"
    assert st.get_condition(done["conditions"], "Progressing")["status"] == "False"
    assert st.get_condition(done["conditions"], "Complete")["status"] == "True"
    assert status["phase"] == "Running"  # inputs are not modified


def test_reentering_a_phase_changes_nothing():
    status = st.transition(st.initial_status(T0), "Fitting", now=T0)
    assert st.transition(status, "Fitting", now=T1) == status


def test_failed_status_for_an_invalid_spec():
    status = st.failed_status("spec.output.uri: Field required", now=T0)
    assert status["phase"] == "Failed"
    assert status["message"] == "spec.output.uri: Field required"
    failed = st.get_condition(status["conditions"], "Failed")
    assert failed["status"] == "True" and failed["reason"] == "InvalidSpec"
    assert failed["message"] == status["message"]
    assert status["workers"] == {"cpu": 0, "isp": 0}


def test_progress_text():
    assert st.progress_text(12, 40) == "12/40"
    assert st.progress_text(0, None) == "0/?"
    assert st.progress_text(0, 0) == "0/0"
    for done, total in [(-1, 3), (4, 3), (0, -1)]:
        with pytest.raises(ValueError):
            st.progress_text(done, total)


def test_set_condition_replaces_by_type_and_keeps_time_when_status_holds():
    first = st.condition("Progressing", True, "Pending", now=T0)
    other = st.condition("Complete", False, "Running", now=T0)
    conds = st.set_condition([first, other], st.condition("Progressing", True, "Fitting", now=T1))
    assert [c["type"] for c in conds] == ["Progressing", "Complete"]
    assert conds[0]["reason"] == "Fitting"
    assert conds[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"  # status unchanged
    conds = st.set_condition(conds, st.condition("Progressing", False, "Failed", now=T1))
    assert conds[0]["lastTransitionTime"] == "2026-01-02T03:09:00Z"  # status changed
    conds = st.set_condition(conds, st.condition("Failed", True, "X", now=T1))
    assert [c["type"] for c in conds] == ["Progressing", "Complete", "Failed"]
    assert st.get_condition(conds, "Nope") is None
    with pytest.raises(ValueError):
        st.condition("Failed", "yes", "X")


def test_workers_counts():
    assert st.workers(3, 1) == {"cpu": 3, "isp": 1}
    with pytest.raises(ValueError):
        st.workers(-1, 0)


# --- status.accounting ---------------------------------------------------------------------------


def _declared(value, schema, path="accounting"):
    """Every key of ``value`` is declared in ``schema`` (the API server prunes the others)."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            assert key in properties, f"{path}.{key} is not in the CRD's status schema"
            _declared(item, properties[key], f"{path}.{key}")


def _as_json_schema(node):
    """The CRD schema node as plain JSON Schema (nullable -> a null type as well)."""
    if isinstance(node, dict):
        out = {k: _as_json_schema(v) for k, v in node.items() if k not in ("nullable", "format")}
        if node.get("nullable"):
            out["type"] = [node["type"], "null"]
        return out
    return node


def _account_document() -> dict:
    from recprep.isp_nodes.accounting import Account
    from recprep.isp_nodes.model import IspModel

    account = Account(IspModel())
    account.workers = {"isp": 2, "cpu": 1}
    isp_task = {"worker": "isp/node-a/pod-a", "node": "node-a", "steps": [0, 2], "started": 1.0}
    for pool, tasks in [
        ("isp", [{**isp_task, "seconds": 0.5, "modelSeconds": 0.6, "behind": False}]),
        ("cpu", [{"worker": "pod-c", "node": None, "steps": [0, 2], "started": 1.0, "seconds": 0.4}]),
        (
            "isp+cpu",
            [
                {**isp_task, "steps": [0, 1], "seconds": 0.2},
                {"worker": "pod-c", "node": None, "steps": [1, 2], "started": 1.2, "seconds": 0.1},
            ],
        ),
    ]:
        placement = {
            "pool": pool,
            "tasks": tasks,
            "storedBytes": 1000,
            "networkBytes": {"raw": 1000 if pool == "cpu" else 0, "handoff": 10, "shard": 300},
        }
        account.add(500, 300, placement, {"isp/node-a/pod-a": 2})
    account.wall_seconds = 1.5
    return account.to_json()


def test_the_accounting_the_driver_publishes_fits_the_status_schema():
    import jsonschema

    from recprep import progress

    assert set(st.ACCOUNTING_SCHEMA["properties"]) == set(progress.ACCOUNTING_FIELDS)
    assert st.STATUS_SCHEMA["properties"]["accounting"] is st.ACCOUNTING_SCHEMA
    document = _account_document()
    summary = progress.accounting_summary(document)
    assert set(summary) == set(progress.ACCOUNTING_FIELDS)  # every field of the summary is there
    assert summary["shardsByPool"] == {"isp": 1, "cpu": 1, "isp+cpu": 1}
    _declared(summary, st.ACCOUNTING_SCHEMA)
    jsonschema.validate(summary, _as_json_schema(st.ACCOUNTING_SCHEMA))
    # a run without ISP workers (CPU-centric, no energy model figures per row)
    cpu_only = progress.accounting_summary({**document, "modelled": {"joules": 0, "rowsPerJoule": None}})
    jsonschema.validate(cpu_only, _as_json_schema(st.ACCOUNTING_SCHEMA))
