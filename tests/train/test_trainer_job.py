"""examples/trainer-job.yaml is valid Kubernetes (1.32 schemas, strict), asks for a GPU, and its
arguments are ones `recprep train` accepts, pointed at the shard service."""

from __future__ import annotations

import pytest
import yaml

from recprep.cli import parser

from ..conftest import REPO

MANIFEST = REPO / "examples" / "trainer-job.yaml"


def test_trainer_job_passes_kubernetes_validate():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(yaml.safe_load(MANIFEST.read_text()), "1.32.0", strict=True)


def test_trainer_job_requests_a_gpu_and_reads_from_the_shard_service():
    job = yaml.safe_load(MANIFEST.read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = [a.replace("$(RANK)", "1") for a in container["args"]]
    parsed = parser().parse_args(args)
    assert parsed.command == "train" and parsed.service.startswith("grpc://") and parsed.output is None
    assert parsed.world_size == job["spec"]["completions"] == job["spec"]["parallelism"]
    assert parsed.cache == "lookahead" and parsed.device == "cuda"
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["RECPREP_SHARD_TOKEN"]["valueFrom"]
    assert env["RANK"]["valueFrom"]["fieldRef"]["fieldPath"].endswith("job-completion-index']")
    assert job["spec"]["completionMode"] == "Indexed"


def test_trainer_job_reads_the_shard_service_the_operator_makes_for_the_example_job():
    """examples/criteo-sample-k8s.yaml's spec.serve gives the Service, port and token Secret that
    the trainer Job names (as the operator's builders make them)."""
    from recprep.operator import builders
    from recprep.operator.settings import Settings
    from recprep.spec import load_job

    job = load_job(REPO / "examples" / "criteo-sample-k8s.yaml")
    deployment, service = builders.build_shard_service_children(job, Settings())
    trainer = yaml.safe_load(MANIFEST.read_text())
    (container,) = trainer["spec"]["template"]["spec"]["containers"]
    parsed = parser().parse_args([a.replace("$(RANK)", "0") for a in container["args"]])
    assert parsed.service == f"grpc://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert parsed.table_rows is None  # sized from the job through the service
    env = {e["name"]: e for e in container["env"]}
    secret = env["RECPREP_SHARD_TOKEN"]["valueFrom"]["secretKeyRef"]
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert server["env"] == [{"name": "RECPREP_SHARD_TOKEN", "valueFrom": {"secretKeyRef": secret}}]
    assert trainer["metadata"]["labels"]["recprep.io/job"] == job.metadata.name
