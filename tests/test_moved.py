"""Modules that moved keep their old import path for a release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

from recprep._moved import MOVED, REMOVED_IN


@pytest.mark.parametrize("old", sorted(MOVED))
def test_the_old_path_is_the_new_module_and_warns(old, monkeypatch):
    new = importlib.import_module(MOVED[old])
    for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {MOVED[old]}; .* {REMOVED_IN}"):
        module = importlib.import_module(old)
    assert module is new


def test_a_moved_package_forwards_its_submodules(monkeypatch):
    for name in [n for n in sys.modules if n.startswith("recprep.workloads.service")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.warns(DeprecationWarning):
        from recprep.workloads.service.server import ShardServer
    from recprep.delivery.service.server import ShardServer as moved

    assert ShardServer is moved
