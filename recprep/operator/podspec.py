"""Pieces shared by every pod the operator creates: the container with the recprep image and the
hardened security context, and the writable /tmp that a read-only root filesystem needs."""

from __future__ import annotations

import copy
from typing import Any

from .settings import Settings

#: Writable scratch space (HOME and DASK_TEMPORARY_DIRECTORY point here in the image).
TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"
#: The variable holding the name of the node a pod runs on (``node_name_env``).
NODE_NAME_ENV = "NODE_NAME"


def container(
    name: str,
    command: list[str],
    settings: Settings,
    resources,
    *,
    env: list[dict] | None = None,
    mounts: list[dict] | None = None,
    **extra: Any,
) -> dict:
    """A recprep container: image, pull policy, the container securityContext, /tmp mounted.

    ``command`` replaces the image's entrypoint (``recprep``) so scheduler and workers can run
    Dask's own CLI from the same image.
    """
    spec: dict[str, Any] = {
        "name": name,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(command),
    }
    if env:
        spec["env"] = env
    spec.update(extra)
    spec["resources"] = copy.deepcopy(dict(resources))
    spec["securityContext"] = copy.deepcopy(dict(settings.security_context))
    spec["volumeMounts"] = [{"name": TMP_VOLUME, "mountPath": TMP_PATH}, *(mounts or [])]
    return spec


def pod_spec(
    containers: list[dict], settings: Settings, *, volumes: list[dict] | None = None, **extra: Any
) -> dict:
    """A pod spec with the pod securityContext and the /tmp emptyDir; ``extra`` adds fields."""
    spec: dict[str, Any] = {
        "securityContext": copy.deepcopy(dict(settings.pod_security_context)),
        "containers": containers,
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}, *(volumes or [])],
    }
    spec.update({k: v for k, v in extra.items() if v not in (None, {}, [], ())})
    return spec


def pod_name_env() -> dict:
    """Env var POD_NAME from the downward API (``$(POD_NAME)`` in a command expands it)."""
    return {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def node_name_env() -> dict:
    """Env var NODE_NAME from the downward API: the node the pod was scheduled on
    (``$(NODE_NAME)`` in a command expands it)."""
    return {"name": NODE_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
