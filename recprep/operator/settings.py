"""Operator settings: defaults in one place, overridable by the ``RECPREP_*`` variables that the
Helm chart sets on the operator pod (charts/recprep/templates/deployment.yaml).

``RECPREP_POD_DEFAULTS`` is JSON rendered from values.yaml::

    {"pools": {"cpu": {"nodeSelector": {}, "tolerations": [], "affinity": {}},
               "isp": {"nodeSelector": {}, "tolerations": [], "affinity": {}}},
     "worker": {"resources": {}}, "scheduler": {"resources": {}}, "driver": {"resources": {}},
     "shards": {"resources": {}},
     "storage": {"volumes": [], "volumeMounts": []},
     "data": {"credentialsSecret": "", "serviceAccountName": "", "env": []},
     "podSecurityContext": {}, "securityContext": {}}

Keys left out keep the defaults below (which mirror values.yaml; ``shards`` is the shard service
of a job with ``spec.serve``). Errors name the variable and the key.

The settings are plain data: builders copy what they embed, so a manifest never aliases them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..errors import RecprepError
from . import labels

NAMESPACE = "RECPREP_NAMESPACE"
CLUSTER_WIDE = "RECPREP_CLUSTER_WIDE"
IMAGE = "RECPREP_IMAGE"
IMAGE_PULL_POLICY = "RECPREP_IMAGE_PULL_POLICY"
POD_DEFAULTS = "RECPREP_POD_DEFAULTS"
LOG_LEVEL = "RECPREP_LOG_LEVEL"
WATCH_SERVER_TIMEOUT = "RECPREP_WATCH_SERVER_TIMEOUT"
WATCH_CLIENT_TIMEOUT = "RECPREP_WATCH_CLIENT_TIMEOUT"
RETIRE_TIMEOUT = "RECPREP_RETIRE_TIMEOUT"
#: ``[HOST:]PORT`` the operator serves the dashboard on (unset or empty: no dashboard).
DASHBOARD = "RECPREP_DASHBOARD"

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(RecprepError):
    """An operator setting is invalid; the message names the environment variable."""


@dataclass(frozen=True)
class PoolDefaults:
    """Where the pods of one worker pool may run.

    For the CPU pool, ``tolerations`` are the preemptible (spot) tolerations: values.yaml says they
    are "used when spec.pools.cpu.preemptible is true", so a job with ``preemptible: false``
    does not tolerate the spot taint and stays off spot nodes. ``nodeSelector`` and ``affinity``
    apply to every job.
    """

    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)


def _cpu_pool() -> PoolDefaults:
    return PoolDefaults(tolerations=({"key": "spot", "operator": "Exists", "effect": "NoSchedule"},))


def _isp_pool() -> PoolDefaults:
    return PoolDefaults(node_selector={labels.STORAGE_NODE: "true"})


def _worker_resources() -> dict:
    return {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}


def _scheduler_resources() -> dict:
    return {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


def _driver_resources() -> dict:
    # The driver plans shards and waits on futures; the work runs on the pools.
    return {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


def _shards_resources() -> dict:
    # recprep serve: one shard file and a few record batches per open trainer stream.
    return {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


def _pod_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _security_context() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@dataclass(frozen=True)
class Settings:
    """Everything the operator needs that is not in the PreprocessJob."""

    #: Namespace of children whose PreprocessJob carries none (the operator's own namespace).
    namespace: str = "default"
    #: Watch every namespace (ClusterRole) rather than ``namespace`` only.
    cluster_wide: bool = False
    #: The one image of scheduler, workers and driver.
    image: str = f"ghcr.io/recprep/recprep:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    cpu_pool: PoolDefaults = field(default_factory=_cpu_pool)
    isp_pool: PoolDefaults = field(default_factory=_isp_pool)
    worker_resources: Mapping[str, Any] = field(default_factory=_worker_resources)
    scheduler_resources: Mapping[str, Any] = field(default_factory=_scheduler_resources)
    driver_resources: Mapping[str, Any] = field(default_factory=_driver_resources)
    shards_resources: Mapping[str, Any] = field(default_factory=_shards_resources)
    #: Volumes (and their mounts) of every driver, worker and shard service pod: where the job's source and
    #: output paths live on a real cluster (a ReadWriteMany claim, the storage nodes' disks).
    storage_volumes: tuple[Mapping[str, Any], ...] = ()
    storage_mounts: tuple[Mapping[str, Any], ...] = ()
    #: How the pods that read and write the job's data (driver, workers, shard service) reach
    #: object storage: a Secret whose keys become their environment (``envFrom``), the
    #: ServiceAccount they run as (IRSA, workload identity), extra environment variables.
    data_secret: str | None = None
    data_service_account: str | None = None
    data_env: tuple[Mapping[str, Any], ...] = ()
    pod_security_context: Mapping[str, Any] = field(default_factory=_pod_security_context)
    security_context: Mapping[str, Any] = field(default_factory=_security_context)
    #: Seconds a worker pod gets to hand its data over when retired or preempted.
    worker_grace_seconds: int = 60
    log_level: str = "INFO"
    #: kopf watch timeouts (seconds): a silently dead watch is noticed (kopf issues 585, 957).
    watch_server_timeout: int = 300
    watch_client_timeout: int = 330
    #: Seconds the scheduler gets to move a retired worker's data, and then its running tasks
    #: to finish, before the worker's pod is deleted on a scale-down.
    retire_timeout: int = 60
    #: Where the operator serves the dashboard (``[HOST:]PORT``; None: it does not).
    dashboard: str | None = None

    def pool(self, name: str) -> PoolDefaults:
        """The defaults of worker pool ``name`` (cpu | isp)."""
        pools = {"cpu": self.cpu_pool, "isp": self.isp_pool}
        if name not in pools:
            raise ValueError(f"unknown pool {name!r}; allowed: {', '.join(pools)}")
        return pools[name]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by the ``RECPREP_*`` variables present in ``environ``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get(NAMESPACE):
            values["namespace"] = env[NAMESPACE]
        if CLUSTER_WIDE in env:
            values["cluster_wide"] = _bool(env[CLUSTER_WIDE], CLUSTER_WIDE)
        if env.get(IMAGE):
            values["image"] = env[IMAGE]
        if env.get(IMAGE_PULL_POLICY):
            values["image_pull_policy"] = _choice(env[IMAGE_PULL_POLICY], IMAGE_PULL_POLICY, PULL_POLICIES)
        if env.get(LOG_LEVEL):
            values["log_level"] = _choice(env[LOG_LEVEL].upper(), LOG_LEVEL, LOG_LEVELS)
        for var, key in (
            (WATCH_SERVER_TIMEOUT, "watch_server_timeout"),
            (WATCH_CLIENT_TIMEOUT, "watch_client_timeout"),
            (RETIRE_TIMEOUT, "retire_timeout"),
        ):
            if env.get(var):
                values[key] = _positive_int(env[var], var)
        if env.get(POD_DEFAULTS):
            values.update(parse_pod_defaults(env[POD_DEFAULTS]))
        if env.get(DASHBOARD):
            values["dashboard"] = _address(env[DASHBOARD], DASHBOARD)
        return cls(**values)


def parse_pod_defaults(text: str) -> dict[str, Any]:
    """``RECPREP_POD_DEFAULTS`` JSON -> Settings field values (only the keys it holds)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{POD_DEFAULTS}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    doc = _mapping(doc, "")
    _known(
        doc,
        "",
        (
            "pools",
            "worker",
            "scheduler",
            "driver",
            "shards",
            "storage",
            "data",
            "podSecurityContext",
            "securityContext",
        ),
    )
    values: dict[str, Any] = {}
    pools = _mapping(doc.get("pools", {}), "pools")
    _known(pools, "pools", ("cpu", "isp"))
    defaults = {"cpu": _cpu_pool(), "isp": _isp_pool()}
    for name in ("cpu", "isp"):
        if name in pools:
            values[f"{name}_pool"] = _pool(pools[name], f"pools.{name}", defaults[name])
    for part in ("worker", "scheduler", "driver", "shards"):
        if part in doc:
            section = _mapping(doc[part], part)
            _known(section, part, ("resources",))
            if "resources" in section:
                values[f"{part}_resources"] = _mapping(section["resources"], f"{part}.resources")
    if "storage" in doc:
        values.update(_storage(doc["storage"]))
    if "data" in doc:
        values.update(_data(doc["data"]))
    if "podSecurityContext" in doc:
        values["pod_security_context"] = _mapping(doc["podSecurityContext"], "podSecurityContext")
    if "securityContext" in doc:
        values["security_context"] = _mapping(doc["securityContext"], "securityContext")
    isp = values.get("isp_pool", defaults["isp"])
    if not isp.node_selector and not isp.affinity:
        # ISP emulation is data-local: an unpinned ISP worker would run anywhere and mean nothing.
        raise SettingsError(
            f"{POD_DEFAULTS}: pools.isp needs a nodeSelector or an affinity that "
            "pins ISP workers to storage nodes"
        )
    return values


def _objects(value: Any, where: str) -> tuple[dict, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SettingsError(f"{POD_DEFAULTS}: {where} must be a list, got {type(value).__name__}")
    return tuple(_mapping(v, f"{where}[{i}]") for i, v in enumerate(value))


def _data(value: Any) -> dict[str, Any]:
    doc = _mapping(value, "data")
    _known(doc, "data", ("credentialsSecret", "serviceAccountName", "env"))
    out: dict[str, Any] = {"data_env": _objects(doc.get("env"), "data.env")}
    for key, field_name in (
        ("credentialsSecret", "data_secret"),
        ("serviceAccountName", "data_service_account"),
    ):
        name = doc.get(key) or None
        if name is not None and not isinstance(name, str):
            raise SettingsError(f"{POD_DEFAULTS}: data.{key} must be a name, got {type(name).__name__}")
        out[field_name] = name
    for i, item in enumerate(out["data_env"]):
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise SettingsError(f"{POD_DEFAULTS}: data.env[{i}].name is required")
    return out


def _storage(value: Any) -> dict[str, Any]:
    doc = _mapping(value, "storage")
    _known(doc, "storage", ("volumes", "volumeMounts"))
    volumes = _objects(doc.get("volumes"), "storage.volumes")
    mounts = _objects(doc.get("volumeMounts"), "storage.volumeMounts")
    names = [v.get("name") for v in volumes]
    for i, volume in enumerate(volumes):
        if not isinstance(volume.get("name"), str) or not volume["name"]:
            raise SettingsError(f"{POD_DEFAULTS}: storage.volumes[{i}].name is required")
        if volume["name"] == "tmp" or names.count(volume["name"]) > 1:
            raise SettingsError(
                f"{POD_DEFAULTS}: storage.volumes[{i}].name {volume['name']!r} is "
                'used twice ("tmp" is the pods\' own /tmp)'
            )
    for i, mount in enumerate(mounts):
        if mount.get("name") not in names:
            raise SettingsError(
                f"{POD_DEFAULTS}: storage.volumeMounts[{i}].name "
                f"{mount.get('name')!r} names no volume; volumes: {', '.join(names) or 'none'}"
            )
        if not isinstance(mount.get("mountPath"), str) or not mount["mountPath"].startswith("/"):
            raise SettingsError(
                f"{POD_DEFAULTS}: storage.volumeMounts[{i}].mountPath must be an absolute path"
            )
    return {"storage_volumes": volumes, "storage_mounts": mounts}


def _pool(value: Any, where: str, default: PoolDefaults) -> PoolDefaults:
    doc = _mapping(value, where)
    _known(doc, where, ("nodeSelector", "tolerations", "affinity"))
    selector = _mapping(doc.get("nodeSelector", default.node_selector), f"{where}.nodeSelector")
    for key, val in selector.items():
        if not isinstance(val, str):
            raise SettingsError(f"{POD_DEFAULTS}: {where}.nodeSelector.{key} must be a string, got {val!r}")
    tolerations = doc.get("tolerations", list(default.tolerations))
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        raise SettingsError(
            f"{POD_DEFAULTS}: {where}.tolerations must be a list, got {type(tolerations).__name__}"
        )
    tolerations = [_mapping(t, f"{where}.tolerations[{i}]") for i, t in enumerate(tolerations)]
    affinity = _mapping(doc.get("affinity", default.affinity), f"{where}.affinity")
    return PoolDefaults(node_selector=selector, tolerations=tuple(tolerations), affinity=affinity)


def _mapping(value: Any, where: str) -> dict:
    if value is None:  # Helm renders an empty value as null
        return {}
    if not isinstance(value, dict):
        raise SettingsError(
            f"{POD_DEFAULTS}: {where or 'the document'} must be a JSON object, got {type(value).__name__}"
        )
    return dict(value)


def _known(doc: Mapping, where: str, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        prefix = f"{where}." if where else ""
        raise SettingsError(
            f"{POD_DEFAULTS}: unknown key {prefix}{unknown[0]}; allowed: {', '.join(allowed)}"
        )


def _bool(text: str, var: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise SettingsError(f"{var}: expected true or false, got {text!r}")


def _choice(text: str, var: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise SettingsError(f"{var}: expected one of {', '.join(allowed)}, got {text!r}")
    return text


def _address(text: str, var: str) -> str:
    """``[HOST:]PORT``, checked (``recprep.dashboard.server.parse_address``)."""
    from ..dashboard.server import parse_address

    try:
        parse_address(text)
    except ValueError as exc:
        raise SettingsError(f"{var}: {exc}") from None
    return text


def _positive_int(text: str, var: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{var}: expected a whole number of seconds, got {text!r}") from None
    if value < 1:
        raise SettingsError(f"{var}: expected a positive number of seconds, got {value}")
    return value
