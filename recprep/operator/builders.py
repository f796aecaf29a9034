"""Pure builders: a PreprocessJob (``recprep.spec``) -> the Kubernetes manifests of its children.

Children of a job ``J`` (names from ``labels``):

- ConfigMap ``J-spec``              the job manifest, handed to the driver as env ``RECPREP_JOB``;
- Deployment + Service ``J-scheduler``  one ``dask scheduler``;
- Deployment ``J-worker-cpu``       ``dask worker`` pods (resource cpu=1) on (by default
                                    preemptible) CPU nodes, each worker named after its pod;
- Deployment ``J-worker-isp``       ``recprep isp-worker`` pods pinned to storage nodes: each is
                                    the ISP worker of the node it runs on (``--node`` from the
                                    downward API's ``spec.nodeName``), named
                                    ``isp/<node>/<pod>``, with resource isp=``spec.pools.isp.units``
                                    and as many threads; ``spec.pools.isp.dataRoot`` (the nodes'
                                    raw data) is mounted read-only at the same path (hostPath);
- Job ``J-driver``                  ``recprep run - --job-env RECPREP_JOB --scheduler tcp://J-scheduler:8786``;
- Deployment + Service ``J-shards``  with ``spec.serve`` only: ``recprep serve`` on the job's output
                                    (``build_shard_service_children``; the follower creates them once
                                    the driver has opened the output, see ``follow``).

Every function returns plain dicts (tested as data); ownerReferences are added by the handlers
(``kopf.adopt``), or from ``owner_reference(body)``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from ..spec import SHARD_TOKEN_ENV, PreprocessJob
from ..uris import local_path
from . import labels, scaling
from .podspec import NODE_NAME_ENV, container, node_name_env, pod_name_env, pod_spec
from .settings import Settings

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
#: ConfigMap key of the job manifest, and the driver's environment variable that holds it.
#: An env var (``configMapKeyRef``) rather than a mounted file: it needs no volume, so the driver
#: runs the same way under the process kubelet of the tests (no volumes) as on a real cluster.
#: Job manifests are a few KiB, far below the 128 KiB limit of one environment string.
JOB_FILE = "job.yaml"
JOB_ENV = "RECPREP_JOB"
#: The Dask resource each pool's workers advertise (the scheduler link tells the pools apart by
#: it): a CPU worker cpu=1, an ISP worker isp=<spec.pools.isp.units>.
POOL_RESOURCES = {labels.CPU: "cpu", labels.ISP: "isp"}
#: Name of the ISP pods' volume of ``spec.pools.isp.dataRoot``.
ISP_DATA_VOLUME = "isp-data-root"


def namespace_of(job: PreprocessJob, settings: Settings) -> str:
    """The job's namespace, else the operator's."""
    return job.metadata.namespace or settings.namespace


def scheduler_address(job: PreprocessJob) -> str:
    """The Dask scheduler's address inside the job's namespace."""
    return f"tcp://{labels.scheduler_name(job.metadata.name)}:{SCHEDULER_PORT}"


def _metadata(job: PreprocessJob, settings: Settings, name: str, object_labels: dict) -> dict:
    return {"name": name, "namespace": namespace_of(job, settings), "labels": object_labels}


# --- the job manifest for the driver ------------------------------------------------------------


def job_manifest(job: PreprocessJob) -> dict:
    """The PreprocessJob as ``recprep run`` reads it: apiVersion, kind, metadata.name, spec.

    Server-side metadata (uid, resourceVersion, managedFields...) and status are left out.
    """
    return {
        "apiVersion": job.api_version,
        "kind": job.kind,
        "metadata": {"name": job.metadata.name},
        "spec": job.spec.model_dump(mode="json", by_alias=True),
    }


def build_job_configmap(job: PreprocessJob, settings: Settings | None = None) -> dict:
    """ConfigMap holding the job manifest as YAML under key ``job.yaml``."""
    settings = settings or Settings()
    name = job.metadata.name
    text = yaml.safe_dump(job_manifest(job), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(
            job, settings, labels.configmap_name(name), labels.component_labels(name, labels.DRIVER)
        ),
        "data": {JOB_FILE: text},
    }


# --- scheduler ----------------------------------------------------------------------------------


def build_scheduler_deployment(job: PreprocessJob, settings: Settings) -> dict:
    """One ``dask scheduler`` pod (strategy Recreate: never two schedulers for one job)."""
    name = job.metadata.name
    command = [
        "dask",
        "scheduler",
        "--port",
        str(SCHEDULER_PORT),
        "--dashboard-address",
        f":{DASHBOARD_PORT}",
    ]
    probe_port = {"tcpSocket": {"port": "comm"}}
    scheduler = container(
        labels.SCHEDULER,
        command,
        settings,
        settings.scheduler_resources,
        ports=[
            {"name": "comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        ],
        readinessProbe={**probe_port, "initialDelaySeconds": 2, "periodSeconds": 5},
        livenessProbe={**probe_port, "initialDelaySeconds": 15, "periodSeconds": 20, "failureThreshold": 6},
    )
    return _single_pod_deployment(job, settings, labels.SCHEDULER, labels.scheduler_name(name), scheduler)


def _single_pod_deployment(
    job: PreprocessJob, settings: Settings, component: str, object_name: str, main: dict, **pod: Any
) -> dict:
    """A one-replica Deployment of ``main`` with strategy Recreate: the old pod is gone before
    the new one starts (one scheduler per job; one server per acknowledgement state)."""
    pod_labels = labels.component_labels(job.metadata.name, component)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(job, settings, object_name, pod_labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels.selector(job.metadata.name, component)},
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": pod_spec([main], settings, **pod),
            },
        },
    }


def build_scheduler_service(job: PreprocessJob, settings: Settings) -> dict:
    """ClusterIP Service in front of the scheduler: comm port 8786, dashboard 8787."""
    name = job.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            job, settings, labels.scheduler_name(name), labels.component_labels(name, labels.SCHEDULER)
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": labels.selector(name, labels.SCHEDULER),
            "ports": [
                {"name": "comm", "port": SCHEDULER_PORT, "targetPort": "comm", "protocol": "TCP"},
                {"name": "dashboard", "port": DASHBOARD_PORT, "targetPort": "dashboard", "protocol": "TCP"},
            ],
        },
    }


# --- storage: where source and output live (driver and workers) --------------------------------


def _storage_volumes(settings: Settings) -> list[dict]:
    return [copy.deepcopy(dict(v)) for v in settings.storage_volumes]


def _storage_mounts(settings: Settings) -> list[dict]:
    return [copy.deepcopy(dict(m)) for m in settings.storage_mounts]


# --- workers ------------------------------------------------------------------------------------


def _data_access(settings: Settings, env: list[dict]) -> tuple[list[dict], dict, dict]:
    """What a pod that reads or writes the job's data (driver, workers, shard service) gets to
    reach object storage: (its env with the chart's ``data.env``, the container's ``envFrom``
    of ``data.credentialsSecret``, the pod's ``serviceAccountName``)."""
    env = [*env, *(copy.deepcopy(dict(e)) for e in settings.data_env)]
    box = {"envFrom": [{"secretRef": {"name": settings.data_secret}}]} if settings.data_secret else {}
    pod = {"serviceAccountName": settings.data_service_account} if settings.data_service_account else {}
    return env, box, pod


def _placement(job: PreprocessJob, pool: str, settings: Settings) -> dict[str, Any]:
    """nodeSelector / tolerations / affinity of a pool's pods (copies of the settings)."""
    defaults = settings.pool(pool)
    tolerations = [dict(t) for t in defaults.tolerations]
    if pool == labels.CPU and not job.spec.pools.cpu.preemptible:
        # The CPU pool's tolerations are the spot ones: without them the pods stay off
        # preemptible nodes (see settings.PoolDefaults).
        tolerations = []
    return {
        "nodeSelector": dict(defaults.node_selector),
        "tolerations": copy.deepcopy(tolerations),
        "affinity": copy.deepcopy(dict(defaults.affinity)),
    }


def _worker_command(job: PreprocessJob, pool: str) -> list[str]:
    """The CPU pool: one single-threaded ``dask worker`` named after its pod. The ISP pool:
    ``recprep isp-worker`` (``recprep.isp_nodes.worker.run_worker``), the ISP worker of the
    storage node the pod runs on, named ``isp/<node>/<pod>`` (how the driver knows which raw
    data it holds), with ``spec.pools.isp.units`` threads and resource isp=units."""
    if pool == labels.ISP:
        return [
            "recprep",
            "isp-worker",
            scheduler_address(job),
            "--node",
            f"$({NODE_NAME_ENV})",
            "--name",
            "$(POD_NAME)",
            "--units",
            str(job.spec.pools.isp.units),
        ]
    return [
        "dask",
        "worker",
        scheduler_address(job),
        "--nthreads",
        "1",
        "--nworkers",
        "1",
        "--name",
        "$(POD_NAME)",
        "--resources",
        f"{POOL_RESOURCES[pool]}=1",
    ]


def _isp_data_root(job: PreprocessJob, settings: Settings) -> tuple[list[dict], list[dict]]:
    """(volumes, mounts) of ``spec.pools.isp.dataRoot`` for the ISP pods: the storage node's
    directory, read-only, at the same path (a hostPath of type Directory: a node without it
    fails the pod's start rather than running on an empty directory). Nothing when it is not
    set, or when the chart's ``storage`` already mounts that very path (that mount is then
    what every pod of the job reads; a second one at the same path would be refused)."""
    root = job.spec.pools.isp.data_root
    if not root or any(m.get("mountPath") == root for m in settings.storage_mounts):
        return [], []
    return (
        [{"name": ISP_DATA_VOLUME, "hostPath": {"path": root, "type": "Directory"}}],
        [{"name": ISP_DATA_VOLUME, "mountPath": root, "readOnly": True}],
    )


def _millicores(quantity: str | int | float) -> int | None:
    """A Kubernetes CPU quantity ("2", "1.5", "500m") in millicores; None if not one."""
    text = str(quantity).strip()
    try:
        return int(text[:-1]) if text.endswith("m") else round(float(text) * 1000)
    except ValueError:
        return None


def _worker_resources(job: PreprocessJob, pool: str, settings: Settings) -> dict:
    """The chart's worker resources; a native ISP worker runs ``units`` tasks at once on its
    node's cores, so its CPU request and limit are the chart's times ``units`` (a paced one
    spends most of each task waiting out the model: one worker's share is enough)."""
    resources = copy.deepcopy(dict(settings.worker_resources))
    isp = job.spec.pools.isp
    if pool != labels.ISP or isp.mode != "native" or isp.units == 1:
        return resources
    for kind in ("requests", "limits"):
        cpu = (resources.get(kind) or {}).get("cpu")
        milli = None if cpu is None else _millicores(cpu)
        if milli is not None:
            resources[kind] = {**resources[kind], "cpu": f"{milli * isp.units}m"}
    return resources


def build_worker_deployment(job: PreprocessJob, pool: str, settings: Settings, replicas: int) -> dict:
    """The worker Deployment of ``pool`` (cpu | isp; ``_worker_command``) with ``replicas``
    held to the pool's bounds (``scaling.clamp``); one worker process per pod, its name
    ending in the pod's. Both pools mount the chart's ``storage``; the ISP pool also
    ``spec.pools.isp.dataRoot`` (``_isp_data_root``)."""
    name = job.metadata.name
    pod_labels = labels.component_labels(name, labels.WORKER, pool)
    env = [pod_name_env()]
    volumes, mounts = _storage_volumes(settings), _storage_mounts(settings)
    if pool == labels.ISP:
        env.append(node_name_env())
        data_volumes, data_mounts = _isp_data_root(job, settings)
        volumes, mounts = volumes + data_volumes, mounts + data_mounts
    env, box, pod = _data_access(settings, env)
    worker = container(
        labels.WORKER,
        _worker_command(job, pool),
        settings,
        _worker_resources(job, pool, settings),
        env=env,
        mounts=mounts,
        **box,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(job, settings, labels.worker_name(name, pool), pod_labels),
        "spec": {
            "replicas": scaling.clamp(replicas, getattr(job.spec.pools, pool)),
            "selector": {"matchLabels": labels.selector(name, labels.WORKER, pool)},
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": pod_spec(
                    [worker],
                    settings,
                    volumes=volumes,
                    terminationGracePeriodSeconds=settings.worker_grace_seconds,
                    **_placement(job, pool, settings),
                    **pod,
                ),
            },
        },
    }


# --- driver -------------------------------------------------------------------------------------


def build_driver_job(job: PreprocessJob, settings: Settings, manifest_configmap_name: str) -> dict:
    """The driver: a Kubernetes Job running ``recprep run`` against the job's scheduler.

    Retries are spec.backoffLimit; a failed pod is not restarted in place (restartPolicy Never)
    so each attempt leaves its logs. Committed shards survive retries (the shard ledger).
    """
    name = job.metadata.name
    pod_labels = labels.component_labels(name, labels.DRIVER)
    command = ["recprep", "run", "-", "--job-env", JOB_ENV, "--scheduler", scheduler_address(job)]
    job_env = {
        "name": JOB_ENV,
        "valueFrom": {"configMapKeyRef": {"name": manifest_configmap_name, "key": JOB_FILE}},
    }
    env, box, pod = _data_access(settings, [job_env])
    driver = container(
        labels.DRIVER,
        command,
        settings,
        settings.driver_resources,
        env=env,
        mounts=_storage_mounts(settings),
        **box,
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(job, settings, labels.driver_name(name), pod_labels),
        "spec": {
            "backoffLimit": job.spec.backoff_limit,
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": pod_spec(
                    [driver], settings, volumes=_storage_volumes(settings), restartPolicy="Never", **pod
                ),
            },
        },
    }


# --- the shard service (spec.serve) -------------------------------------------------------------

#: Name of the shard service's port (container and Service).
SHARDS_PORT = "flight"
#: The Secret's key holding the bearer token (its value reaches the server as SHARD_TOKEN_ENV).
SHARD_TOKEN_KEY = "token"


def output_path(job: PreprocessJob) -> str:
    """``spec.output.uri`` as the path ``recprep serve`` takes (``uris.local_path``: a ``file://``
    prefix dropped; any other URI is passed as written, and ``recprep serve`` names it)."""
    uri = job.spec.output.uri
    path = local_path(uri)
    return uri if path is None else path


def shard_service_url(job: PreprocessJob, settings: Settings) -> str:
    """Where trainers in any namespace reach the job's shard service."""
    port = _serve(job).port
    return f"grpc://{labels.shards_name(job.metadata.name)}.{namespace_of(job, settings)}.svc:{port}"


def _serve(job: PreprocessJob):
    if job.spec.serve is None:
        raise ValueError(f"job {job.metadata.name!r} has no spec.serve: it has no shard service")
    return job.spec.serve


def build_shard_deployment(job: PreprocessJob, settings: Settings) -> dict:
    """One ``recprep serve`` pod on the job's output (mounted like the driver's).

    strategy Recreate: a second server on the same acknowledgement state is refused (a file
    lock), so the old pod must be gone before the new one starts. The token comes from the
    Secret ``spec.serve.tokenSecret`` through ``--token-env``, which fails the pod when it is
    empty rather than serving without one. Ready once the port accepts connections.

    The trainers' acknowledgements are kept with the output, ``<output>/_service``: on the
    shared volume, or in the object store of an object store output (one object each, the lock a
    lease). A replaced pod goes on where the old one stopped: nothing acknowledged is delivered
    again (after a pod killed without releasing the lease, the new one waits out its length),
    and the driver reads the trainers' consumption there for the autoscaler.
    """
    serve = _serve(job)
    name = job.metadata.name
    command = [
        "recprep",
        "serve",
        output_path(job),
        "--host",
        "0.0.0.0",
        "--port",
        str(serve.port),
        "--seed",
        str(serve.seed),
    ]
    env = []
    if serve.token_secret:
        command += ["--token-env", SHARD_TOKEN_ENV]
        env.append(
            {
                "name": SHARD_TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": serve.token_secret, "key": SHARD_TOKEN_KEY}},
            }
        )
    env, box, pod = _data_access(settings, env)
    server = container(
        labels.SHARDS,
        command,
        settings,
        settings.shards_resources,
        env=env,
        mounts=_storage_mounts(settings),
        ports=[{"name": SHARDS_PORT, "containerPort": serve.port, "protocol": "TCP"}],
        readinessProbe={"tcpSocket": {"port": SHARDS_PORT}, "initialDelaySeconds": 1, "periodSeconds": 5},
        **box,
    )
    return _single_pod_deployment(
        job,
        settings,
        labels.SHARDS,
        labels.shards_name(name),
        server,
        volumes=_storage_volumes(settings),
        **pod,
    )


def build_shard_service(job: PreprocessJob, settings: Settings) -> dict:
    """ClusterIP Service ``<job>-shards`` on ``spec.serve.port`` in front of the shard server."""
    serve = _serve(job)
    name = job.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            job, settings, labels.shards_name(name), labels.component_labels(name, labels.SHARDS)
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": labels.selector(name, labels.SHARDS),
            "ports": [
                {"name": SHARDS_PORT, "port": serve.port, "targetPort": SHARDS_PORT, "protocol": "TCP"}
            ],
        },
    }


def build_shard_service_children(job: PreprocessJob, settings: Settings) -> list[dict]:
    """The shard service's Deployment and Service; none without ``spec.serve``."""
    if job.spec.serve is None:
        return []
    return [build_shard_deployment(job, settings), build_shard_service(job, settings)]


# --- everything ---------------------------------------------------------------------------------


def build_children(job: PreprocessJob, settings: Settings) -> list[dict]:
    """All children of the job, in creation order (the driver last: it needs the rest)."""
    configmap = build_job_configmap(job, settings)
    return [
        configmap,
        build_scheduler_deployment(job, settings),
        build_scheduler_service(job, settings),
        *(
            build_worker_deployment(
                job, pool, settings, scaling.initial_replicas(pool, getattr(job.spec.pools, pool))
            )
            for pool in labels.POOLS
        ),
        build_driver_job(job, settings, configmap["metadata"]["name"]),
    ]


def owner_reference(body: Mapping[str, Any]) -> dict:
    """The ownerReference that makes the PreprocessJob ``body`` its children's controller, so
    deleting it deletes them (what ``kopf.adopt`` sets, for code that builds without kopf)."""
    meta = body.get("metadata") or {}
    missing = [
        k
        for k, v in (
            ("apiVersion", body.get("apiVersion")),
            ("kind", body.get("kind")),
            ("metadata.name", meta.get("name")),
            ("metadata.uid", meta.get("uid")),
        )
        if not v
    ]
    if missing:
        raise ValueError(f"cannot reference the owner: missing {', '.join(missing)}")
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
