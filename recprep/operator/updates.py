"""Which spec changes apply to a job that is already running (pure).

A running job's driver has its spec (the job's ConfigMap) and its output identity: changing
what it reads, computes or writes mid-run would mix two jobs in one output. So only the fields
that steer the run on Kubernetes apply live:

- ``spec.pools``: the worker Deployments follow the new bounds at once (``pools``);
- ``spec.ttlSecondsAfterFinished``: read when the job finishes.

Every other change is reported (a Warning Event names the fields) and not applied; to run a
different job, create a new PreprocessJob.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LIVE_FIELDS = ("pools", "ttlSecondsAfterFinished")


def _path(field: Any) -> tuple[str, ...]:
    if isinstance(field, str):
        return tuple(field.split(".")) if field else ()
    return tuple(str(part) for part in field)


def changed_fields(diff: Iterable[Any], root: tuple[str, ...] = ()) -> list[str]:
    """Dotted paths (under ``spec``) of a kopf diff's changes, sorted and unique.

    ``diff`` holds kopf ``DiffItem``s ``(op, field, old, new)``; ``root`` is the field the
    handler was registered for (kopf gives paths relative to it).
    """
    paths = set()
    for item in diff:
        full = tuple(root) + _path(item[1])
        if full and full[0] == "spec":
            full = full[1:]
        if full:
            paths.add(".".join(full))
        else:  # the whole spec replaced: report its top-level keys
            old, new = item[2] or {}, item[3] or {}
            for key in set(old) | set(new):
                if old.get(key) != new.get(key):
                    paths.add(str(key))
    return sorted(paths)


def split_live(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """(applied live, not applied) among changed ``spec`` paths."""
    live, ignored = [], []
    for path in paths:
        (live if path.split(".", 1)[0] in LIVE_FIELDS else ignored).append(path)
    return live, ignored
