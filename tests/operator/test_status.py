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
