"""
Tests of the process kubelet: Deployments, Jobs and Pods of the emulated cluster running as
local processes, with Service names reaching the pods behind them.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PODS = "/api/v1/namespaces/default/pods"
JOBS = "/apis/batch/v1/namespaces/default/jobs"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: server
        image: python:3.11
        command: [python, -m, http.server, "8000"]
        ports: [{name: http, containerPort: 8000}]
        readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def job(name: str, script: str, backoff_limit: int = 0, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.11",
                            "command": ["python", "-c", textwrap.dedent(script)],
                            **container,
                        }
                    ],
                }
            },
        },
    }


def pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": name}},
        "spec": {
            "restartPolicy": "Never",
            **spec,
            "containers": [
                {"name": "main", "image": "python:3.11", "command": ["python", "-c", textwrap.dedent(script)]}
            ],
        },
    }


def condition(obj: dict[str, Any], ctype: str) -> str | None:
    return next(
        (c["status"] for c in obj.get("status", {}).get("conditions") or [] if c["type"] == ctype), None
    )


def test_deployment_behind_a_service_serves_a_job(
    cluster: Any, kubelet: Any, kubectl: Any, wait_for: Any
) -> None:
    kubectl("apply", "-f", "-", input=WEB)
    client = job(
        "client",
        """
        import os, time, urllib.request
        deadline = time.monotonic() + 20
        while True:  # the Service has no ready endpoints until the servers listen
            try:
                with urllib.request.urlopen('http://web/', timeout=2) as response:  # port 80 -> pod port 8000
                    print('status', response.status, 'from', os.environ['POD_IP'])
                    break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for name in ('web.default', 'web.default.svc', 'web.default.svc.cluster.local'):
            urllib.request.urlopen(f'http://{name}:80/', timeout=2).close()
        print('all names work')
    """,
        env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    )
    cluster.request("POST", JOBS, client)

    done = wait_for(
        lambda: condition(cluster.get(f"{JOBS}/client"), "Complete") == "True",
        timeout=30,
        message="the job did not complete",
    )
    assert done
    job_obj = cluster.get(f"{JOBS}/client")
    assert job_obj["status"]["succeeded"] == 1 and job_obj["status"]["active"] == 0

    deployment = wait_for(
        lambda: (d := cluster.get(f"{DEPLOYMENTS}/web"))["status"].get("readyReplicas") == 2 and d, timeout=10
    )
    assert deployment["status"]["availableReplicas"] == 2 and deployment["status"]["replicas"] == 2
    servers = cluster.get(f"{PODS}?labelSelector=app=web")["items"]
    assert len(servers) == 2
    for server in servers:
        assert server["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]
        assert server["status"]["phase"] == "Running" and condition(server, "Ready") == "True"
        assert server["status"]["podIP"].startswith("127.")
    assert len({s["status"]["podIP"] for s in servers}) == 2  # both listen on port 8000, each on its own IP

    client_pod = cluster.get(f"{PODS}?labelSelector=job-name=client")["items"][0]
    assert client_pod["status"]["phase"] == "Succeeded"
    logs = kubectl("logs", "job/client").stdout
    assert f"status 200 from {client_pod['status']['podIP']}" in logs and "all names work" in logs
    assert kubelet.logs(client_pod["metadata"]["name"]) == logs

    kubectl("delete", "deployment", "web", "--timeout=10s")  # cascades to the pods, which are terminated
    wait_for(lambda: not cluster.get(f"{PODS}?labelSelector=app=web")["items"], timeout=5)


def test_failing_job_is_retried_up_to_its_backoff_limit(cluster: Any, kubelet: Any, wait_for: Any) -> None:
    cluster.request("POST", JOBS, job("flaky", 'import sys; print("failing"); sys.exit(3)', backoff_limit=1))
    failed = wait_for(
        lambda: condition(j := cluster.get(f"{JOBS}/flaky"), "Failed") == "True" and j, timeout=15
    )
    assert failed["status"]["failed"] == 2  # the first try and one retry
    assert {c["reason"] for c in failed["status"]["conditions"]} == {"BackoffLimitExceeded"}
    pods = cluster.get(f"{PODS}?labelSelector=job-name=flaky")["items"]
    assert len(pods) == 2
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert kubelet.logs(pods[0]["metadata"]["name"]) == "failing\n"


def test_container_environment_and_init_containers(
    cluster: Any, kubelet: Any, wait_for: Any, tmp_path: Any
) -> None:
    cluster.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "settings"}, "data": {"mode": "fast"}},
    )
    cluster.request(
        "POST",
        "/api/v1/namespaces/default/secrets",
        {"metadata": {"name": "creds"}, "data": {"TOKEN": "czNjcjN0"}},
    )  # "s3cr3t"
    marker = tmp_path / "init.txt"
    keys = ["A", "B", "NAME", "NS", "IP", "MODE", "S_TOKEN"]
    spec = pod(
        "envs", f"import os; print(*(os.environ[k] for k in {keys!r}), open({str(marker)!r}).read().strip())"
    )
    spec["spec"]["initContainers"] = [
        {"name": "prepare", "image": "busybox", "command": ["sh", "-c", f"echo prepared > {marker}"]}
    ]
    spec["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "creds"}, "prefix": "S_"}]
    spec["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "alpha"},
        {"name": "B", "value": "$(A)-beta"},  # Kubernetes' $(VAR) expansion
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
    ]
    cluster.request("POST", PODS, spec)
    done = wait_for(
        lambda: (p := cluster.get(f"{PODS}/envs"))["status"]["phase"] == "Succeeded" and p, timeout=10
    )
    assert (
        kubelet.logs("envs")
        == f"alpha alpha-beta envs default {done['status']['podIP']} fast s3cr3t prepared\n"
    )
    assert done["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_deleting_a_pod_terminates_its_processes(cluster: Any, kubelet: Any, wait_for: Any) -> None:
    polite = pod(
        "polite",
        """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (print('got SIGTERM'), sys.exit(0)))
        print('started', flush=True)
        time.sleep(60)
    """,
    )
    polite["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    stubborn = pod(
        "stubborn",
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('started', flush=True)
        time.sleep(60)
    """,
        terminationGracePeriodSeconds=1,
    )
    cluster.request("POST", PODS, polite)
    cluster.request("POST", PODS, stubborn)

    def pids() -> dict[str, int]:
        found = {}
        for name in ("polite", "stubborn"):
            status = cluster.get(f"{PODS}/{name}")["status"]
            if condition({"status": status}, "Ready") != "True" or "started" not in kubelet.logs(name):
                return {}
            found[name] = int(status["containerStatuses"][0]["containerID"].removeprefix("process://"))
        return found

    running = wait_for(pids, timeout=10)
    for name in running:
        assert cluster.request("DELETE", f"{PODS}/{name}").status == 200

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(lambda: gone(running["polite"]), timeout=5)
    wait_for(lambda: gone(running["stubborn"]), timeout=5)  # SIGKILL after the 1s grace period
    assert "got SIGTERM" in kubelet.logs("polite")


def test_restarts_readiness_and_scaling(cluster: Any, kubelet: Any, kubectl: Any, wait_for: Any) -> None:
    crashing = pod("crashing", "import sys; sys.exit(1)", restartPolicy="Always")
    cluster.request("POST", PODS, crashing)
    wait_for(
        lambda: cluster.get(f"{PODS}/crashing")["status"]["containerStatuses"][0]["restartCount"] >= 2,
        timeout=10,
        ignore=(KeyError, IndexError),
    )

    # Not ready until the readiness probe (an HTTP GET) passes; ready once the server is up.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "late"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "late"}},
            "template": {
                "metadata": {"labels": {"app": "late"}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "python:3.11",
                            "command": [
                                "python",
                                "-c",
                                "import time, http.server; time.sleep(0.5); "
                                'http.server.ThreadingHTTPServer(("", 8080), '
                                "http.server.SimpleHTTPRequestHandler).serve_forever()",
                            ],
                            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                        }
                    ]
                },
            },
        },
    }
    cluster.request("POST", DEPLOYMENTS, deployment)
    first = wait_for(lambda: cluster.get(f"{PODS}?labelSelector=app=late")["items"], timeout=5)[0]
    assert first["status"]["phase"] in ("Pending", "Running") and condition(first, "Ready") != "True"
    wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/late")["status"].get("readyReplicas") == 1, timeout=10)

    kubectl("scale", "deployment", "late", "--replicas=3")
    wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/late")["status"].get("readyReplicas") == 3, timeout=10)
    kubectl("scale", "deployment", "late", "--replicas=1")
    wait_for(lambda: len(cluster.get(f"{PODS}?labelSelector=app=late")["items"]) == 1, timeout=10)
    assert "late" in kubectl("get", "deployments").stdout


def test_scale_down_honours_the_pod_deletion_cost(
    cluster: Any, kubelet: Any, kubectl: Any, wait_for: Any
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "costly"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "costly"}},
            "template": {
                "metadata": {"labels": {"app": "costly"}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.11",
                            "command": ["python", "-c", "import time; time.sleep(600)"],
                        }
                    ]
                },
            },
        },
    }
    cluster.request("POST", DEPLOYMENTS, deployment)
    wait_for(
        lambda: cluster.get(f"{DEPLOYMENTS}/costly")["status"].get("readyReplicas") == 3,
        timeout=10,
        ignore=(KeyError,),
    )
    pods = cluster.get(f"{PODS}?labelSelector=app=costly")["items"]
    oldest = min(pods, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))["metadata"][
        "name"
    ]
    # Without the annotation the newest would go; the cheapest goes instead, even the oldest.
    kubectl("annotate", "pod", oldest, "controller.kubernetes.io/pod-deletion-cost=-100")
    kubectl("scale", "deployment", "costly", "--replicas=2")
    wait_for(lambda: len(cluster.get(f"{PODS}?labelSelector=app=costly")["items"]) == 2, timeout=10)
    left = {p["metadata"]["name"] for p in cluster.get(f"{PODS}?labelSelector=app=costly")["items"]}
    assert oldest not in left and left <= {p["metadata"]["name"] for p in pods}


def test_an_exited_container_is_not_started_again_before_its_exit_is_recorded(tmp_path: Any) -> None:
    """A process can exit between the loop's reaping pass and the reconcile that follows it;
    that container must wait for its exit to be recorded (and restartPolicy to decide), not be
    started again (seen: a restartPolicy Never trainer Job ran its command twice in one pod)."""
    import asyncio
    import subprocess
    import sys

    from .kubelet import ProcessKubelet

    kubelet = ProcessKubelet("http://127.0.0.1:9", workdir=tmp_path)
    runtime = kubelet._admit(
        {**pod("once", "pass"), "metadata": {"name": "once", "namespace": "default", "uid": "u-once"}}
    )
    (container,) = runtime.containers
    container.process = subprocess.Popen([sys.executable, "-c", "pass"])
    container.process.wait()  # exited, not yet reaped by _check_processes
    exited = container.process
    asyncio.run(kubelet._start_due(runtime))
    assert container.process is exited
    assert kubelet._check_processes() and container.done and container.exit_code == 0
    asyncio.run(kubelet._start_due(runtime))
    assert container.process is None  # restartPolicy Never: done for good


def test_pods_talk_to_the_api_as_their_service_account(cluster: Any, kubelet: Any, wait_for: Any) -> None:
    """The kubelet gives each pod a token of its ServiceAccount (TokenRequest, bound to the pod)
    in its KUBECONFIG; with RBAC enforced, the pod gets what its account's bindings grant."""
    cluster.request("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "reader"}})
    cluster.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "cm-reader"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
            },
        ]
    )
    cluster.set_authorization("RBAC")
    script = """
        import os, urllib.request, urllib.error, yaml
        config = yaml.safe_load(open(os.environ["KUBECONFIG"]))
        server, token = config["clusters"][0]["cluster"]["server"], config["users"][0]["user"]["token"]
        for path in ("configmaps", "pods"):
            request = urllib.request.Request(f"{server}/api/v1/namespaces/default/{path}")
            request.add_header("Authorization", f"Bearer {token}")
            try:
                print(path, urllib.request.urlopen(request).status)
            except urllib.error.HTTPError as e:
                print(path, e.code)
    """
    cluster.request("POST", PODS, pod("as-reader", script, serviceAccountName="reader"))
    cluster.request("POST", PODS, pod("as-nobody", "print('ran')", serviceAccountName="nobody"))
    wait_for(lambda: cluster.get(f"{PODS}/as-reader")["status"]["phase"] == "Succeeded", timeout=15)
    assert kubelet.logs("as-reader").split("\n")[:2] == ["configmaps 200", "pods 403"]
    # no such ServiceAccount: no token, the container does not start, and says why
    failed = wait_for(lambda: (p := cluster.get(f"{PODS}/as-nobody"))["status"]["phase"] == "Failed" and p)
    state = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["reason"] == "StartError" and "ServiceAccount default/nobody" in state["message"]


def test_the_kubelet_is_a_node_that_its_pods_are_bound_to_and_that_can_be_tainted(
    cluster: Any, kubelet: Any, kubectl: Any, wait_for: Any
) -> None:
    node = cluster.get(f"/api/v1/nodes/{kubelet.node_name}")
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == kubelet.node_name == "process-kubelet"
    cluster.apply(pod("bare", "import time; time.sleep(30)"))
    bound = wait_for(lambda: cluster.get(f"{PODS}/bare")["spec"].get("nodeName"), timeout=10)
    assert bound == kubelet.node_name
    # Taints are stored and served (a preemption notice); the kubelet keeps running its pods.
    kubectl("taint", "node", kubelet.node_name, "cloud.google.com/impending-node-termination=:NoSchedule")
    taints = cluster.get(f"/api/v1/nodes/{kubelet.node_name}")["spec"]["taints"]
    assert taints == [{"key": "cloud.google.com/impending-node-termination", "effect": "NoSchedule"}]
    kubectl("taint", "node", kubelet.node_name, "cloud.google.com/impending-node-termination-")
    assert not cluster.get(f"/api/v1/nodes/{kubelet.node_name}")["spec"].get("taints")
    assert cluster.get(f"{PODS}/bare")["status"]["phase"] in ("Pending", "Running")
