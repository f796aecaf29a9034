"""Fixtures of the operator tests: a PreprocessJob and settings as the Helm chart sets them."""

from __future__ import annotations

import json

import pytest

from recprep.operator.settings import Settings
from recprep.spec import load_job_dict

#: RECPREP_POD_DEFAULTS as the chart renders it, with every placement field set.
POD_DEFAULTS = {
    "pools": {
        "cpu": {
            "nodeSelector": {"node.example.com/pool": "batch"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 50,
                            "preference": {
                                "matchExpressions": [
                                    {"key": "node.example.com/zone", "operator": "In", "values": ["a"]}
                                ]
                            },
                        }
                    ]
                }
            },
        },
        "isp": {
            "nodeSelector": {"recprep.io/storage-node": "true"},
            "tolerations": [{"key": "storage", "operator": "Equal", "value": "only", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "node.example.com/disk", "operator": "In", "values": ["nvme"]}
                                ]
                            }
                        ]
                    }
                }
            },
        },
    },
    "worker": {"resources": {"requests": {"cpu": "2", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}},
    "storage": {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "recprep-data"}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    },
    "podSecurityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}

ENV = {
    "RECPREP_NAMESPACE": "recprep",
    "RECPREP_IMAGE": "registry.example.com/recprep:1.2.3",
    "RECPREP_IMAGE_PULL_POLICY": "Always",
    "RECPREP_POD_DEFAULTS": json.dumps(POD_DEFAULTS),
}


def job_document(name: str = "clicks", preemptible: bool = True, **spec) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": "synthetic://criteo?rows=1000&seed=1", "format": "criteo"},
            "transforms": [
                {"op": "fill_null", "columns": "dense", "value": 0},
                {"op": "sigrid_hash", "columns": "sparse", "salt": 7, "maxValue": 1000},
            ],
            "output": {"uri": "/data/out/clicks", "rowsPerShard": 4096},
            "pools": {"cpu": {"min": 1, "max": 6, "preemptible": preemptible}, "isp": {"min": 0, "max": 2}},
            "backoffLimit": 4,
            **spec,
        },
    }


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env(ENV)


@pytest.fixture
def job():
    return load_job_dict(job_document())


@pytest.fixture
def dask_workers():
    """``start({name: resources})`` -> a Dask cluster (in this process) whose workers carry
    those names and resources, as the pods' workers do; the cluster and a Client to it."""
    pytest.importorskip("distributed")
    from distributed import Client, Scheduler, SpecCluster, Worker

    started = []

    def start(workers: dict[str, dict]):
        cluster = SpecCluster(
            scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
            workers={
                name: {"cls": Worker, "options": {"nthreads": 1, "resources": resources}}
                for name, resources in workers.items()
            },
            silence_logs=False,
        )
        client = Client(cluster)
        started.append((cluster, client))
        client.wait_for_workers(len(workers), timeout=20)
        return cluster, client

    yield start
    for cluster, client in started:
        client.close()
        cluster.close()
