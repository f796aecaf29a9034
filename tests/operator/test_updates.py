"""Which spec changes apply live, from kopf-shaped diffs."""

from __future__ import annotations

from recprep.operator.updates import LIVE_FIELDS, changed_fields, split_live


def test_changed_fields_relative_to_the_handler_field():
    diff = [
        ("change", ("pools", "cpu", "max"), 2, 1),
        ("add", ("pools", "isp"), None, {"min": 1}),
        ("change", ("transforms",), [], [{"op": "log"}]),
        ("change", ("pools", "cpu", "max"), 2, 1),  # the same path twice counts once
    ]
    assert changed_fields(diff, ("spec",)) == ["pools.cpu.max", "pools.isp", "transforms"]


def test_changed_fields_of_a_whole_spec_replacement():
    diff = [
        ("change", (), {"a": 1, "pools": {"cpu": {"max": 1}}}, {"a": 1, "pools": {"cpu": {"max": 2}}, "b": 2})
    ]
    assert changed_fields(diff, ("spec",)) == ["b", "pools"]
    assert changed_fields([("change", ("spec", "backoffLimit"), 1, 2)]) == ["backoffLimit"]


def test_split_live():
    live, ignored = split_live(["pools.cpu.max", "ttlSecondsAfterFinished", "source.uri", "backoffLimit"])
    assert live == ["pools.cpu.max", "ttlSecondsAfterFinished"]
    assert ignored == ["source.uri", "backoffLimit"]
    assert set(LIVE_FIELDS) == {"pools", "ttlSecondsAfterFinished"}
