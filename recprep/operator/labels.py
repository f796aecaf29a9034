"""The one label vocabulary of the operator, and the names of the objects it creates.

Every lookup (Deployment and Service selectors, ``kubectl get -l``, the handlers' list calls)
goes through these functions, so a key string is written exactly once: dask-kubernetes once
created locks under ``ns/name`` and deleted them under ``name/ns``; this module is the cure.
"""

from __future__ import annotations

import hashlib

# --- label keys --------------------------------------------------------------------------------

#: The PreprocessJob an object belongs to (its metadata.name).
JOB = "recprep.io/job"
#: What the object is for: one of COMPONENTS.
COMPONENT = "recprep.io/component"
#: The worker pool of a worker object: one of POOLS.
POOL = "recprep.io/pool"
#: Node label of the storage nodes the ISP pool is pinned to by default (values.yaml says the same).
STORAGE_NODE = "recprep.io/storage-node"

# Kubernetes' recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
APP_NAME = "app.kubernetes.io/name"
APP_INSTANCE = "app.kubernetes.io/instance"
APP_COMPONENT = "app.kubernetes.io/component"
APP_PART_OF = "app.kubernetes.io/part-of"
APP_MANAGED_BY = "app.kubernetes.io/managed-by"

#: Values of the app.kubernetes.io labels that do not depend on the job.
APP = "recprep"
MANAGER = "recprep-operator"

# --- label values ------------------------------------------------------------------------------

SCHEDULER = "scheduler"
WORKER = "worker"
DRIVER = "driver"
#: The shard service (``recprep serve``) of a job with ``spec.serve``.
SHARDS = "shards"
COMPONENTS = (SCHEDULER, WORKER, DRIVER, SHARDS)

CPU = "cpu"
ISP = "isp"
POOLS = (CPU, ISP)

#: Longest Kubernetes label value and DNS-1035 label (Service names).
MAX_NAME = 63


def job_labels(name: str) -> dict[str, str]:
    """Labels on every object created for the PreprocessJob ``name``."""
    return {
        APP_NAME: APP,
        APP_INSTANCE: name,
        APP_PART_OF: APP,
        APP_MANAGED_BY: MANAGER,
        JOB: name,
    }


def component_labels(name: str, component: str, pool: str | None = None) -> dict[str, str]:
    """Labels of one child object (and of its pods): the job's labels plus component and pool.

    ``pool`` is required for workers and refused for everything else, so a worker object can
    never lack the label that tells the pools apart.
    """
    _check_component(component, pool)
    labels = job_labels(name)
    labels[APP_COMPONENT] = component
    labels[COMPONENT] = component
    if pool is not None:
        labels[POOL] = pool
    return labels


def selector(name: str, component: str | None = None, pool: str | None = None) -> dict[str, str]:
    """The smallest set of labels that picks the job's objects (``matchLabels``).

    Deployment selectors are immutable, so they hold only recprep.io/* keys that never change.
    Without ``component`` it selects everything of the job; ``pool`` needs ``component=WORKER``.
    """
    labels = {JOB: name}
    if component is not None:
        _check_component(component, pool)
        labels[COMPONENT] = component
        if pool is not None:
            labels[POOL] = pool
    elif pool is not None:
        raise ValueError(f"pool {pool!r} given without component {WORKER!r}")
    return labels


def selector_string(name: str, component: str | None = None, pool: str | None = None) -> str:
    """``selector(...)`` as a label-selector string (``k=v,k=v``) for list calls and kubectl."""
    return ",".join(f"{k}={v}" for k, v in selector(name, component, pool).items())


# --- child names -------------------------------------------------------------------------------


def scheduler_name(job: str) -> str:
    """Name of the job's Dask scheduler Deployment and Service."""
    return _child_name(job, SCHEDULER)


def worker_name(job: str, pool: str) -> str:
    """Name of the job's worker Deployment of ``pool``."""
    _check_component(WORKER, pool)
    return _child_name(job, f"{WORKER}-{pool}")


def driver_name(job: str) -> str:
    """Name of the job's driver (a Kubernetes Job)."""
    return _child_name(job, DRIVER)


def shards_name(job: str) -> str:
    """Name of the job's shard service Deployment and Service (trainers connect to
    ``grpc://<this name>:<spec.serve.port>``)."""
    return _child_name(job, SHARDS)


def configmap_name(job: str) -> str:
    """Name of the ConfigMap that holds the job's manifest for the driver."""
    return _child_name(job, "spec")


def _child_name(job: str, suffix: str) -> str:
    """``<job>-<suffix>`` when that is a valid DNS-1035 label (Service names must be).

    Otherwise (a job name that starts with a digit, or a result longer than 63 characters) the
    job part is shortened and a hash of the full job name keeps different jobs apart.
    """
    name = f"{job}-{suffix}"
    if len(name) <= MAX_NAME and name[0].isalpha():
        return name
    digest = hashlib.sha256(job.encode()).hexdigest()[:8]
    head = job if job[0].isalpha() else f"rp-{job}"
    head = head[: MAX_NAME - len(suffix) - len(digest) - 2].rstrip("-")
    return f"{head}-{digest}-{suffix}"


def _check_component(component: str, pool: str | None) -> None:
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; allowed: {', '.join(COMPONENTS)}")
    if component == WORKER and pool not in POOLS:
        raise ValueError(f"worker pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if component != WORKER and pool is not None:
        raise ValueError(f"only {WORKER} objects have a pool; {component} got {pool!r}")
