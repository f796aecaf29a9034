"""
A process kubelet: runs the Pods of an (emulated) cluster as local processes.

It plays three roles of a real cluster, in one background thread with an asyncio loop:

* **Deployment controller** (ReplicaSet-less): keeps ``spec.replicas`` Pods per Deployment,
  labelled from the template (plus ``pod-template-hash``) and owned by the Deployment;
  Pods of an outdated template are replaced; ``status`` reports the replica counts.
* **Job controller**: creates a Pod per Job (up to ``parallelism``), retries failures up to
  ``backoffLimit``, and reports ``succeeded``/``failed``/``active`` and the ``Complete`` /
  ``Failed`` (plus ``SuccessCriteriaMet`` / ``FailureTarget``) conditions.
* **Kubelet**: runs each container's ``command + args`` with its ``env`` as a subprocess
  (``python``/``python3`` map to this interpreter; ``cwd`` is configurable; stdout+stderr go
  to a log file per container; ``KUBECONFIG`` is the kubelet's kubeconfig with a token of the
  pod's ServiceAccount from the TokenRequest API), runs init containers first, restarts per
  ``restartPolicy`` (with a short backoff), probes readiness (tcpSocket/httpGet/exec,
  concurrently), reports the phase, ``podIP``, container statuses and conditions, and
  terminates processes of deleted Pods
  (SIGTERM to the process group, then SIGKILL after ``terminationGracePeriodSeconds``,
  capped at ``max_grace`` seconds).
* **Node**: it registers itself as the Node ``node_name`` (default ``process-kubelet``) and is
  the scheduler too: every Pod it runs is bound to that Node (``spec.nodeName``, set when its
  controllers create a Pod, patched onto a bare Pod before it starts). Taints on the Node are
  stored and served (``kubectl taint``) but not acted on: tainted, it keeps running its Pods
  and admits new ones (there is no other node to go to).

Networking: every Pod gets its own loopback address ``127.<b>.<x>.<y>`` (``<b>`` is random per
kubelet, so that parallel test runs rarely meet). Python processes load the shim in ``_shim/``
(as ``sitecustomize``), which binds wildcard listeners to the Pod address and resolves
Service names through ``<workdir>/hosts.json``; see the shim's docstring. The kubelet
rewrites that file whenever the ready endpoints of a Service change.

Reconciliation is level-triggered: watch events (or a process exiting, or a probe result)
wake it up, and a periodic resync catches anything else. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from . import semantics
from .containers import Podman

logger = logging.getLogger(__name__)
SHIM_DIR = Path(__file__).resolve().parent / "_shim"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: The Node the kubelet registers and binds its Pods to.
NODE_NAME = "process-kubelet"
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command/args/env values (``$$`` escapes a dollar)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(replace, text)


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])


def _condition(obj: Mapping[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == ctype), None)


def _is_ready(pod: Mapping[str, Any]) -> bool:
    cond = _condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def _deletion_cost(pod: Mapping[str, Any]) -> int:
    """The pod's ``controller.kubernetes.io/pod-deletion-cost`` (0 when absent or not an int)."""
    text = (pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0")
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


@dataclasses.dataclass
class _Container:
    """The runtime state of one container (one local process at a time)."""

    name: str
    spec: dict[str, Any]
    log_path: Path
    init: bool = False
    process: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    restart_count: int = 0
    next_start: float = 0.0  # monotonic time of the next (re)start
    last_state: dict[str, Any] = dataclasses.field(default_factory=dict)
    ready: bool = False
    probe_due: float = 0.0
    probe_failures: int = 0
    done: bool = False  # terminated for good (no restart will follow)
    kill_at: float | None = None  # SIGKILL deadline while terminating
    engine_name: str | None = None  # container mode: the running container's name

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclasses.dataclass
class _Pod:
    uid: str
    namespace: str
    name: str
    ip: str
    spec: dict[str, Any]
    labels: dict[str, str]
    init_containers: list[_Container]
    containers: list[_Container]
    start_time: str
    terminating: bool = False
    kubeconfig: Path | None = None  # with the pod's ServiceAccount token (made at its first start)
    transitions: dict[str, tuple[str, str]] = dataclasses.field(
        default_factory=dict
    )  # type -> (status, since)
    reported: dict[str, Any] | None = None

    @property
    def all_containers(self) -> list[_Container]:
        return self.init_containers + self.containers

    @property
    def init_done(self) -> bool:
        return all(c.done and c.exit_code == 0 for c in self.init_containers)


class ProcessKubelet:
    """Runs the cluster's Deployments, Jobs and Pods as local processes (see the module docstring)."""

    def __init__(
        self,
        api_url: str,
        *,
        workdir: Path | str,
        cwd: Path | str | None = None,
        namespaces: Iterable[str] | None = None,
        env: Mapping[str, str] | None = None,
        kubeconfig: Path | str | None = None,
        python: str = sys.executable,
        service_account_tokens: bool = True,
        max_grace: float = 3.0,
        resync_interval: float = 1.0,
        restart_backoff: float = 0.2,
        node_name: str = NODE_NAME,
        containers: Podman | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        #: Container mode (``containers.py``): each container runs as ``podman run`` of its image.
        self.containers = containers
        self.workdir = Path(workdir)
        self.logdir = self.workdir / "logs"
        self.hosts_file = self.workdir / "hosts.json"
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.namespaces = set(namespaces) if namespaces is not None else None
        self.extra_env = dict(env or {})
        self.kubeconfig = Path(kubeconfig) if kubeconfig is not None else None
        self.service_account_tokens = service_account_tokens
        self.python = python
        self.max_grace = max_grace
        self.resync_interval = resync_interval
        self.restart_backoff = restart_backoff
        self.node_name = node_name
        self.ip_prefix = f"127.{random.randint(64, 191)}"
        self._ip_counter = 0
        self._pods: dict[str, _Pod] = {}  # by uid
        self._hosts: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._started = threading.Event()
        self._session: aiohttp.ClientSession | None = None
        self.errors: list[BaseException] = []  # unexpected errors of reconciliation (for test assertions)
        self.api_timeouts = 0  # reconciliations cut short by an API request timing out (retried)

    # Lifecycle --------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> ProcessKubelet:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._write_hosts({"services": {}})
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name="process-kubelet", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the kubelet did not start within {timeout}s")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop reconciling and terminate all pod processes (bounded by ``max_grace``)."""
        if (
            self._loop is not None
            and self._stop is not None
            and self._thread is not None
            and self._thread.is_alive()
        ):
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the kubelet did not stop within {timeout}s")

    def __enter__(self) -> ProcessKubelet:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # Inspection (thread-safe: files only) ---------------------------------------------------------

    def log_path(self, pod: str, container: str | None = None, namespace: str = "default") -> Path:
        """The log file of a pod's container (the only/first container if not given)."""
        pod_dir = self.logdir / namespace / pod
        if container is None:
            candidates = sorted(pod_dir.glob("*.log")) if pod_dir.exists() else []
            regular = [p for p in candidates if not p.name.startswith("init-")]
            return (regular or candidates or [pod_dir / "unknown.log"])[0]
        path = pod_dir / f"{container}.log"
        return path if path.exists() else pod_dir / f"init-{container}.log"

    def logs(self, pod: str, container: str | None = None, namespace: str = "default") -> str:
        path = self.log_path(pod, container, namespace)
        return path.read_text(errors="replace") if path.exists() else ""

    def read_logs(
        self, namespace: str, pod: str, container: str | None, params: Mapping[str, str]
    ) -> str | None:
        """The emulator's ``pods/<name>/log`` provider (so ``kubectl logs`` works)."""
        path = self.log_path(pod, container, namespace)
        return path.read_text(errors="replace") if path.exists() else None

    # The main loop ------------------------------------------------------------------------------------

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=10, sock_connect=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            await self._register_node()
            watches = [
                asyncio.create_task(self._watch(path))
                for path in (
                    "/api/v1/pods",
                    "/apis/apps/v1/deployments",
                    "/apis/batch/v1/jobs",
                    "/api/v1/services",
                )
            ]
            self._started.set()
            next_resync = 0.0
            try:
                while not self._stop.is_set():
                    changed = self._check_processes()
                    changed |= await self._probe()
                    now = time.monotonic()
                    if changed or self._wake.is_set() or now >= next_resync:
                        self._wake.clear()
                        try:
                            await self._reconcile()
                        except (TimeoutError, aiohttp.ClientConnectionError) as e:
                            # The API server did not answer in time (a machine busy with many pod
                            # processes): not the kubelet's fault; the next resync retries.
                            logger.warning("The process kubelet could not reach the API: %r", e)
                            self.api_timeouts += 1
                        except Exception as e:  # keep running; the next resync retries
                            logger.exception("The process kubelet failed to reconcile")
                            self.errors.append(e)
                        next_resync = time.monotonic() + self.resync_interval
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=0.1)
            finally:
                for task in watches:
                    task.cancel()
                await asyncio.gather(*watches, return_exceptions=True)
                await self._terminate_all()

    async def _register_node(self) -> None:
        """Create this kubelet's Node (kept if it exists: its taints stay)."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": sys.platform,
                },
            },
            "spec": {},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastTransitionTime": semantics.now_rfc3339(),
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node_name},
                ],
            },
        }
        status, body = await self._api("POST", "/api/v1/nodes", node)
        if status not in (201, 409):  # the pods still run: only their Node is missing
            logger.warning("Cannot register Node %s: %s %s", self.node_name, status, body)
            self.errors.append(RuntimeError(f"cannot register Node {self.node_name}: HTTP {status}"))

    async def _bind(self, pod: Mapping[str, Any]) -> None:
        """Bind a bare Pod (created without ``spec.nodeName``) to this kubelet's Node."""
        meta = pod["metadata"]
        status, body = await self._api(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
            {"spec": {"nodeName": self.node_name}},
            content_type="application/merge-patch+json",
        )
        if status != 200 and status != 404:
            logger.warning("Cannot bind pod %s/%s: %s %s", meta["namespace"], meta["name"], status, body)

    async def _watch(self, path: str) -> None:
        """Wake the reconciler on any change of a resource (reconnecting, until stopped)."""
        assert self._session is not None and self._wake is not None and self._stop is not None
        while not self._stop.is_set():
            try:
                url = f"{self.api_url}{path}?watch=true&timeoutSeconds=30"
                async with self._session.get(
                    url, timeout=aiohttp.ClientTimeout(total=40, sock_connect=5)
                ) as response:
                    async for _line in response.content:
                        self._wake.set()
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=0.2)

    async def _api(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        assert self._session is not None
        data = None if body is None else json.dumps(body)
        async with self._session.request(
            method, f"{self.api_url}{path}", data=data, headers={"Content-Type": content_type}
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text

    async def _list(self, path: str) -> list[dict[str, Any]]:
        status, body = await self._api("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body}")
        items = body.get("items", [])
        if self.namespaces is not None:
            items = [i for i in items if i.get("metadata", {}).get("namespace") in self.namespaces]
        return items

    async def _reconcile(self) -> None:
        pods = await self._list("/api/v1/pods")
        services = await self._list("/api/v1/services")
        await self._sync_pods(pods)
        self._sync_endpoints(services)
        await self._report_pods()
        pods = await self._list("/api/v1/pods")
        for deployment in await self._list("/apis/apps/v1/deployments"):
            await self._sync_deployment(deployment, pods)
        for job in await self._list("/apis/batch/v1/jobs"):
            await self._sync_job(job, pods)

    # Pods: admission, processes, probes, status ------------------------------------------------------

    def _allocate_ip(self) -> str:
        self._ip_counter += 1
        return f"{self.ip_prefix}.{self._ip_counter // 250}.{self._ip_counter % 250 + 1}"

    async def _sync_pods(self, pods: list[dict[str, Any]]) -> None:
        seen = set()
        for pod in pods:
            meta, uid = pod["metadata"], pod["metadata"]["uid"]
            seen.add(uid)
            runtime = self._pods.get(uid)
            if meta.get("deletionTimestamp"):
                if runtime is not None:
                    self._terminate(runtime)
                continue
            if runtime is None and pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue  # finished before this kubelet saw it
            if runtime is None:
                if not (pod.get("spec") or {}).get("nodeName"):
                    await self._bind(pod)
                runtime = self._admit(pod)
        for uid, runtime in list(self._pods.items()):
            if uid not in seen:  # deleted from the API: stop its processes, forget it once they are gone
                self._terminate(runtime)
                if not any(c.running for c in runtime.all_containers):
                    del self._pods[uid]
                    if self.containers is not None:
                        self.containers.forget_pod(uid)
        for runtime in self._pods.values():
            if not runtime.terminating:
                await self._start_due(runtime)

    def _admit(self, pod: dict[str, Any]) -> _Pod:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        log_dir = self.logdir / meta["namespace"] / meta["name"]
        log_dir.mkdir(parents=True, exist_ok=True)

        def containers(key: str, init: bool) -> list[_Container]:
            prefix = "init-" if init else ""
            return [
                _Container(name=c["name"], spec=c, init=init, log_path=log_dir / f"{prefix}{c['name']}.log")
                for c in spec.get(key) or []
            ]

        runtime = _Pod(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            ip=self._allocate_ip(),
            spec=spec,
            labels=dict(meta.get("labels") or {}),
            start_time=semantics.now_rfc3339(),
            init_containers=containers("initContainers", True),
            containers=containers("containers", False),
        )
        self._pods[runtime.uid] = runtime
        return runtime

    async def _start_due(self, runtime: _Pod) -> None:
        now = time.monotonic()
        if not runtime.init_done:
            current = next((c for c in runtime.init_containers if not (c.done and c.exit_code == 0)), None)
            todo = [current] if current is not None else []
        else:
            todo = runtime.containers
        for container in todo:
            # process is None: never started, or its exit has been recorded (_check_processes).
            # A process that has exited but is not reaped yet is neither running nor startable:
            # starting it again here ran a restartPolicy Never container twice.
            if container.process is None and not container.done and now >= container.next_start:
                await self._start(runtime, container)

    async def _start(self, runtime: _Pod, container: _Container) -> None:
        spec = container.spec
        try:
            env = await self._container_env(runtime, spec)
            if self.containers is not None:
                argv, name = self._container_argv(runtime, container, env)
                cwd, env = self.cwd, self.containers.environment()  # podman's own environment
            else:
                name = None
                argv = [_expand(str(a), env) for a in (spec.get("command") or []) + (spec.get("args") or [])]
                if not spec.get("command"):
                    raise ValueError(
                        "the process kubelet runs no images: the container needs an explicit command"
                    )
                if argv[0] in ("python", "python3"):
                    argv[0] = self.python
                working_dir = spec.get("workingDir")
                cwd = working_dir if working_dir and Path(working_dir).is_dir() else self.cwd
            with open(container.log_path, "ab") as log:
                container.process = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            container.engine_name = name
            container.started_at = semantics.now_rfc3339()
            container.exit_code = container.reason = container.message = None
            container.ready = False
            probe = spec.get("readinessProbe") or {}
            container.probe_due = time.monotonic() + min(float(probe.get("initialDelaySeconds", 0)), 10.0)
            container.probe_failures = 0
        except Exception as e:  # cannot start: report it as a failed run (and let restartPolicy decide)
            with open(container.log_path, "a") as log:
                log.write(f"[process-kubelet] cannot start container {container.name!r}: {e}\n")
            container.started_at = container.finished_at = semantics.now_rfc3339()
            self._finished(runtime, container, 128, "StartError", str(e))

    def _container_argv(
        self, runtime: _Pod, container: _Container, env: dict[str, str]
    ) -> tuple[list[str], str]:
        """Container mode: the ``podman run`` of the container's image, as its spec says, and
        the container's name."""
        assert self.containers is not None
        spec = dict(container.spec)
        for key in ("command", "args"):
            if spec.get(key):
                spec[key] = [_expand(str(a), env) for a in spec[key]]
        plumbing = [SHIM_DIR, self.hosts_file.parent] + (
            [Path(env["KUBECONFIG"])] if env.get("KUBECONFIG") else []
        )
        name = self.containers.name(runtime.name, container.name, container.restart_count)
        self.containers.remove(name)  # a container of this name left by a killed run
        argv = self.containers.argv(
            pod_name=runtime.name,
            pod_uid=runtime.uid,
            pod_spec=runtime.spec,
            spec=spec,
            env=env,
            restart=container.restart_count,
            plumbing=plumbing,
        )
        return argv, name

    def _remove_container(self, container: _Container) -> None:
        if self.containers is not None and container.engine_name is not None:
            self.containers.remove(container.engine_name)
            container.engine_name = None

    async def _container_env(self, runtime: _Pod, spec: Mapping[str, Any]) -> dict[str, str]:
        # container mode: only what the pod spec and the kubelet give (not this machine's environment)
        env = {} if self.containers is not None else {**os.environ, **self.extra_env}
        env.pop("KUBECONFIG", None)
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(await self._pod_kubeconfig(runtime))
        # Kubernetes-style service links (for non-Python processes, which the shim cannot help).
        for key, service in (self._hosts or {}).get("services", {}).items():
            svc_name, svc_ns = key.rsplit(".", 1)
            if svc_ns != runtime.namespace or not service.get("links"):
                continue
            prefix = svc_name.upper().replace("-", "_")
            env[f"{prefix}_SERVICE_HOST"], first_port = service["links"]["host"], None
            for port_name, port in service["links"]["ports"].items():
                first_port = first_port or port
                if port_name:
                    env[f"{prefix}_SERVICE_PORT_{port_name.upper().replace('-', '_')}"] = str(port)
            if first_port is not None:
                env[f"{prefix}_SERVICE_PORT"] = str(first_port)
        env.update(
            {
                "HOSTNAME": runtime.name,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(SHIM_DIR)] + [p for p in [env.get("PYTHONPATH")] if p]),
                "KUBELET_SHIM_POD_IP": runtime.ip,
                "KUBELET_SHIM_HOSTS": str(self.hosts_file),
                "KUBELET_SHIM_NAMESPACE": runtime.namespace,
                "KUBELET_SHIM_HOSTNAME": runtime.name,
            }
        )
        declared: dict[str, str] = {}  # what $(VAR) may refer to: the container's own variables
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for key, value in (await self._env_source(runtime.namespace, source)).items():
                declared[prefix + key] = value
        for item in spec.get("env") or []:
            if "value" in item:
                declared[item["name"]] = _expand(str(item["value"]), declared)
            elif "valueFrom" in item:
                value = await self._env_value_from(runtime, item["valueFrom"])
                if value is not None:
                    declared[item["name"]] = value
            else:
                declared[item["name"]] = ""
        env.update(declared)
        return env

    async def _pod_kubeconfig(self, runtime: _Pod) -> Path:
        """The kubeconfig of a pod's processes: the kubelet's, with the credentials replaced by a
        token of the pod's ServiceAccount (TokenRequest API, bound to the pod), as a real
        kubelet projects one into every pod; made once per pod. Without
        ``service_account_tokens``: the kubelet's own kubeconfig."""
        assert self.kubeconfig is not None
        if not self.service_account_tokens:
            return self.kubeconfig
        if runtime.kubeconfig is not None:
            return runtime.kubeconfig
        account = runtime.spec.get("serviceAccountName") or runtime.spec.get("serviceAccount") or "default"
        path = f"/api/v1/namespaces/{runtime.namespace}/serviceaccounts/{account}/token"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [],
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": runtime.name,
                    "uid": runtime.uid,
                },
            },
        }
        status, body = await self._api("POST", path, request)
        if status not in (200, 201) or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else body
            raise ValueError(
                f"no token for ServiceAccount {runtime.namespace}/{account}: HTTP {status}: {message}"
            )
        config = yaml.safe_load(self.kubeconfig.read_text()) or {}
        for user in config.get("users") or []:
            user["user"] = {"token": body["status"]["token"]}
        target = self.workdir / "tokens" / runtime.namespace / runtime.name / "kubeconfig.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(config))  # JSON is YAML
        # container mode: read by the pod's user, as a projected token is (fsGroup)
        target.chmod(0o644 if self.containers is not None else 0o600)
        runtime.kubeconfig = target
        return target

    async def _env_source(self, namespace: str, source: Mapping[str, Any]) -> dict[str, str]:
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "configmaps"
        elif "secretRef" in source:
            ref, kind = source["secretRef"], "secrets"
        else:
            return {}
        status, obj = await self._api("GET", f"/api/v1/namespaces/{namespace}/{kind}/{ref['name']}")
        if status != 200:
            if ref.get("optional"):
                return {}
            raise ValueError(f"{kind[:-1]} {ref['name']!r} not found")
        data = obj.get("data") or {}
        if kind == "secrets":
            return {k: base64.b64decode(v).decode() for k, v in data.items()}
        return dict(data)

    async def _env_value_from(self, runtime: _Pod, source: Mapping[str, Any]) -> str | None:
        if "fieldRef" in source:
            path = source["fieldRef"].get("fieldPath", "")
            simple = {
                "metadata.name": runtime.name,
                "metadata.namespace": runtime.namespace,
                "metadata.uid": runtime.uid,
                "status.podIP": runtime.ip,
                "status.hostIP": "127.0.0.1",
                "spec.nodeName": self.node_name,
                "spec.serviceAccountName": runtime.spec.get("serviceAccountName", "default"),
            }
            if path in simple:
                return simple[path]
            match = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
            if match:
                status, pod = await self._api(
                    "GET", f"/api/v1/namespaces/{runtime.namespace}/pods/{runtime.name}"
                )
                return ((pod or {}).get("metadata", {}).get(match.group(1)) or {}).get(match.group(2), "")
            raise ValueError(f"unsupported fieldRef: {path}")
        for key, kind in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if key in source:
                ref = source[key]
                status, obj = await self._api(
                    "GET", f"/api/v1/namespaces/{runtime.namespace}/{kind}/{ref['name']}"
                )
                data = (obj or {}).get("data") or {} if status == 200 else {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    raise ValueError(f"{kind[:-1]} {ref['name']!r} has no key {ref['key']!r}")
                value = data[ref["key"]]
                return base64.b64decode(value).decode() if kind == "secrets" else value
        if "resourceFieldRef" in source:
            return "0"  # no resource accounting here
        raise ValueError(f"unsupported valueFrom: {source}")

    def _finished(
        self,
        runtime: _Pod,
        container: _Container,
        code: int,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """Record a container's exit and decide on its restart (restartPolicy, with a short backoff)."""
        container.exit_code = code
        container.reason = reason or ("Completed" if code == 0 else "Error")
        container.message = message
        container.finished_at = container.finished_at or semantics.now_rfc3339()
        container.ready = False
        policy = runtime.spec.get("restartPolicy", "Always")
        restart = not runtime.terminating and (
            policy == "Always" and not container.init or (policy in ("Always", "OnFailure") and code != 0)
        )
        if restart:
            container.last_state = {"terminated": self._terminated_state(container)}
            container.restart_count += 1
            container.next_start = time.monotonic() + min(
                self.restart_backoff * 2 ** (container.restart_count - 1), 5.0
            )
        else:
            container.done = True

    @staticmethod
    def _terminated_state(container: _Container) -> dict[str, Any]:
        state = {
            "exitCode": container.exit_code,
            "reason": container.reason,
            "startedAt": container.started_at,
            "finishedAt": container.finished_at,
        }
        if container.message:
            state["message"] = container.message
        return state

    def _check_processes(self) -> bool:
        """Reap exited processes and enforce kill deadlines; True if any pod's state changed."""
        changed = False
        now = time.monotonic()
        for runtime in self._pods.values():
            for container in runtime.all_containers:
                process = container.process
                if process is None:
                    continue
                code = process.poll()
                if code is None:
                    if container.kill_at is not None and now >= container.kill_at:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(process.pid, signal.SIGKILL)
                        self._remove_container(container)
                        container.kill_at = None
                    continue
                self._remove_container(container)
                container.process = None
                container.kill_at = None
                container.finished_at = semantics.now_rfc3339()
                # A signal's negative return code becomes 128+N, as container runtimes report it.
                self._finished(runtime, container, code if code >= 0 else 128 - code)
                changed = True
        return changed

    def _terminate(self, runtime: _Pod) -> None:
        """SIGTERM all processes of a pod; SIGKILL follows after the (capped) grace period."""
        if runtime.terminating:
            return
        runtime.terminating = True
        grace = min(float(runtime.spec.get("terminationGracePeriodSeconds", 30)), self.max_grace)
        for container in runtime.all_containers:
            container.done = True
            if container.running:
                assert container.process is not None
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(container.process.pid, signal.SIGTERM)
                container.kill_at = time.monotonic() + grace

    async def _terminate_all(self) -> None:
        for runtime in self._pods.values():
            self._terminate(runtime)
        deadline = time.monotonic() + self.max_grace + 2.0
        while time.monotonic() < deadline and any(
            c.running for r in self._pods.values() for c in r.all_containers
        ):
            self._check_processes()
            await asyncio.sleep(0.05)
        for runtime in self._pods.values():  # the last resort, should the kill deadlines not suffice
            for container in runtime.all_containers:
                if container.running:
                    assert container.process is not None
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(container.process.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        container.process.wait(2.0)
                self._remove_container(container)

    async def _probe(self) -> bool:
        """Run the due readiness probes (concurrently: a slow pod must not hold up the others'
        probes, nor the kubelet's stopping); True if any container's readiness changed."""
        now = time.monotonic()
        due = [
            (runtime, container)
            for runtime in self._pods.values()
            for container in runtime.containers
            if container.running and not runtime.terminating and now >= container.probe_due
        ]
        probes = [container.spec.get("readinessProbe") for _runtime, container in due]
        results = await asyncio.gather(
            *(
                self._run_probe(runtime, container, probe)
                for (runtime, container), probe in zip(due, probes)
                if probe
            )
        )
        outcomes = iter(results)
        changed = False
        for (_runtime, container), probe in zip(due, probes):
            if not probe:
                ready = True  # no probe: ready as soon as the process runs
                container.probe_due = float("inf")
            else:
                ready = next(outcomes)
                period = min(float(probe.get("periodSeconds", 10)), 1.0)
                container.probe_due = now + (period if ready else min(period, 0.2))
                if not ready:
                    container.probe_failures += 1
                    threshold = int(probe.get("failureThreshold", 3))
                    ready = container.ready and container.probe_failures < threshold
                else:
                    container.probe_failures = 0
            if ready != container.ready:
                container.ready = ready
                changed = True
        return changed

    async def _run_probe(self, runtime: _Pod, container: _Container, probe: Mapping[str, Any]) -> bool:
        timeout = min(float(probe.get("timeoutSeconds", 1)), 2.0)

        def port_of(value: Any) -> int:
            if isinstance(value, int) or str(value).isdigit():
                return int(value)
            for port in container.spec.get("ports") or []:
                if port.get("name") == value:
                    return int(port["containerPort"])
            raise ValueError(f"unknown named port {value!r}")

        try:
            if "tcpSocket" in probe:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(runtime.ip, port_of(probe["tcpSocket"]["port"])), timeout
                )
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                return True
            if "httpGet" in probe:
                get = probe["httpGet"]
                assert self._session is not None
                url = f"http://{runtime.ip}:{port_of(get['port'])}{get.get('path', '/')}"
                async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                    return 200 <= response.status < 400
            if "exec" in probe:
                command, env = list(probe["exec"]["command"]), None
                if self.containers is not None and container.engine_name is not None:
                    # container mode: the command runs in the container, as a kubelet's does
                    command = self.containers.exec_argv(container.engine_name, command)
                    env = self.containers.environment()
                process = await asyncio.create_subprocess_exec(
                    *command,
                    cwd=self.cwd,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    return await asyncio.wait_for(process.wait(), timeout) == 0
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    return False
        except (TimeoutError, OSError, ValueError, aiohttp.ClientError):
            return False
        return True  # an unsupported probe kind (e.g. grpc) does not block readiness

    def _container_status(
        self, container: _Container, waiting_reason: str = "ContainerCreating"
    ) -> dict[str, Any]:
        if container.running:
            state: dict[str, Any] = {"running": {"startedAt": container.started_at}}
        elif container.exit_code is not None and container.done:
            state = {"terminated": self._terminated_state(container)}
        elif container.exit_code is not None:  # exited, a restart is scheduled
            state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": "back-off restarting the failed container",
                }
            }
        else:
            state = {"waiting": {"reason": waiting_reason}}
        process = container.process
        return {
            "name": container.name,
            "image": container.spec.get("image", ""),
            "imageID": "",
            "containerID": f"process://{process.pid}" if process is not None else "",
            "ready": container.ready,
            "started": container.running,
            "restartCount": container.restart_count,
            "state": state,
            "lastState": container.last_state,
        }

    def _pod_status(self, runtime: _Pod) -> dict[str, Any]:
        main = runtime.containers
        if runtime.init_containers and any(c.done and c.exit_code != 0 for c in runtime.init_containers):
            phase = "Failed"
        elif not runtime.init_done:
            phase = "Pending"
        elif main and all(c.done for c in main):
            phase = "Succeeded" if all(c.exit_code == 0 for c in main) else "Failed"
        elif all(c.started_at is None for c in main):
            phase = "Pending"
        else:
            phase = "Running"
        ready = phase == "Running" and all(c.ready for c in main) and not runtime.terminating
        flags = {
            "PodScheduled": True,
            "Initialized": runtime.init_done,
            "ContainersReady": ready,
            "Ready": ready,
        }
        now = semantics.now_rfc3339()
        conditions = []
        for ctype, value in flags.items():
            status = "True" if value else "False"
            previous = runtime.transitions.get(ctype)
            since = previous[1] if previous and previous[0] == status else now
            runtime.transitions[ctype] = (status, since)
            conditions.append({"type": ctype, "status": status, "lastTransitionTime": since})
        status = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": runtime.ip,
            "podIPs": [{"ip": runtime.ip}],
            "startTime": runtime.start_time,
            "qosClass": "BestEffort",
            "containerStatuses": [
                self._container_status(c, "ContainerCreating" if runtime.init_done else "PodInitializing")
                for c in main
            ],
        }
        if runtime.init_containers:
            status["initContainerStatuses"] = [self._container_status(c) for c in runtime.init_containers]
        return status

    async def _report_pods(self) -> None:
        for runtime in list(self._pods.values()):
            if runtime.terminating:
                continue
            status = self._pod_status(runtime)
            if status == runtime.reported:
                continue
            path = f"/api/v1/namespaces/{runtime.namespace}/pods/{runtime.name}/status"
            code, body = await self._api(
                "PATCH",
                path,
                [{"op": "add", "path": "/status", "value": status}],
                content_type="application/json-patch+json",
            )
            if code == 200:
                runtime.reported = status
            elif code != 404:
                logger.warning(
                    "Cannot report the status of pod %s/%s: %s %s",
                    runtime.namespace,
                    runtime.name,
                    code,
                    body,
                )

    # Services: the name -> endpoints mapping for the shim -------------------------------------------

    def _sync_endpoints(self, services: list[dict[str, Any]]) -> None:
        ready_pods = [
            r
            for r in self._pods.values()
            if not r.terminating and r.init_done and r.containers and all(c.ready for c in r.containers)
        ]
        mapping: dict[str, Any] = {"services": {}}
        for service in services:
            meta, spec = service["metadata"], service.get("spec") or {}
            selector = spec.get("selector")
            if not selector:
                continue  # endpoints of selector-less services are not managed
            backends = [
                r
                for r in ready_pods
                if r.namespace == meta["namespace"] and all(r.labels.get(k) == v for k, v in selector.items())
            ]
            backends.sort(key=lambda r: r.name)
            ports: dict[str, list[tuple[str, int]]] = {}
            links: dict[str, Any] = {"host": backends[0].ip, "ports": {}} if backends else {}
            for port in spec.get("ports") or []:
                endpoints = []
                for runtime in backends:
                    target = self._target_port(runtime, port.get("targetPort", port["port"]))
                    if target is not None:
                        endpoints.append((runtime.ip, target))
                ports[str(port["port"])] = endpoints
                if endpoints and links:
                    links["ports"][port.get("name", "")] = endpoints[0][1]
            mapping["services"][f"{meta['name']}.{meta['namespace']}"] = {
                "ips": [r.ip for r in backends],
                "ports": ports,
                "links": links,
            }
        if mapping != self._hosts:
            self._write_hosts(mapping)

    @staticmethod
    def _target_port(runtime: _Pod, target: Any) -> int | None:
        if isinstance(target, int) or str(target).isdigit():
            return int(target)
        for container in runtime.containers:
            for port in container.spec.get("ports") or []:
                if port.get("name") == target:
                    return int(port["containerPort"])
        return None

    def _write_hosts(self, mapping: dict[str, Any]) -> None:
        """Replace the mapping file atomically: the shims may read it at any moment."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.hosts_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(mapping, indent=1))
        os.replace(tmp, self.hosts_file)
        self._hosts = mapping

    # Controllers ------------------------------------------------------------------------------------

    def _owner_ref(self, obj: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
        return {
            "apiVersion": api_version,
            "kind": kind,
            "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    async def _create_pod(
        self,
        namespace: str,
        name_prefix: str,
        template: Mapping[str, Any],
        labels: Mapping[str, str],
        owner: dict[str, Any],
    ) -> None:
        template_meta = template.get("metadata") or {}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": name_prefix,
                "namespace": namespace,
                "labels": {**(template_meta.get("labels") or {}), **labels},
                "annotations": dict(template_meta.get("annotations") or {}),
                "ownerReferences": [owner],
            },
            "spec": json.loads(json.dumps(template.get("spec") or {})),
        }
        pod["spec"].setdefault("nodeName", self.node_name)  # scheduled here: the only node
        status, body = await self._api("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
        if status != 201:
            logger.warning("Cannot create a pod for %s/%s: %s %s", namespace, owner["name"], status, body)

    async def _delete_pod(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        await self._api("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")

    async def _patch_status(self, path: str, obj: Mapping[str, Any], status: dict[str, Any]) -> None:
        if obj.get("status") == status:
            return
        code, body = await self._api(
            "PATCH",
            f"{path}/status",
            [{"op": "add", "path": "/status", "value": status}],
            content_type="application/json-patch+json",
        )
        if code not in (200, 404):
            logger.warning("Cannot update the status of %s: %s %s", path, code, body)

    @staticmethod
    def _keep_transition(old: Mapping[str, Any], conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep the lastTransitionTime of conditions whose status did not change."""
        for cond in conditions:
            previous = _condition(old, cond["type"])
            if previous and previous.get("status") == cond["status"]:
                cond["lastTransitionTime"] = previous.get("lastTransitionTime", cond["lastTransitionTime"])
                if "lastUpdateTime" in cond:
                    cond["lastUpdateTime"] = previous.get("lastUpdateTime", cond["lastUpdateTime"])
        return conditions

    async def _sync_deployment(self, deployment: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        namespace, uid = meta["namespace"], meta["uid"]
        template = spec.get("template") or {}
        replicas = int(spec.get("replicas", 1))
        template_hash = _short_hash(template)
        owned = [p for p in pods if _owned_by(p, uid) and not p["metadata"].get("deletionTimestamp")]
        current = [
            p for p in owned if p["metadata"].get("labels", {}).get("pod-template-hash") == template_hash
        ]
        for pod in owned:
            if pod not in current:
                await self._delete_pod(pod)  # an outdated template: replace (a simplified rollout)
        if len(current) < replicas:
            owner = self._owner_ref(deployment, "apps/v1", "Deployment")
            for _ in range(replicas - len(current)):
                await self._create_pod(
                    namespace,
                    f"{meta['name']}-{template_hash}-",
                    template,
                    {"pod-template-hash": template_hash},
                    owner,
                )
        elif len(current) > replicas:
            # Scale down as the ReplicaSet controller ranks pods: not-ready first, then the lower
            # controller.kubernetes.io/pod-deletion-cost, then the newest.
            newest_first = sorted(
                current, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True
            )
            victims = sorted(newest_first, key=lambda p: (_is_ready(p), _deletion_cost(p)))[
                : len(current) - replicas
            ]
            for pod in victims:
                await self._delete_pod(pod)
            current = [p for p in current if p not in victims]
        ready = sum(1 for p in current if _is_ready(p))
        now = semantics.now_rfc3339()
        available = ready >= replicas
        conditions = self._keep_transition(
            deployment,
            [
                {
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if available
                    else "Deployment does not have minimum availability.",
                    "lastTransitionTime": now,
                    "lastUpdateTime": now,
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
                    "message": f"Pods of template {template_hash} are progressing.",
                    "lastTransitionTime": now,
                    "lastUpdateTime": now,
                },
            ],
        )
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(current),
            "updatedReplicas": len(current),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(replicas - ready, 0),
            "conditions": conditions,
        }
        await self._patch_status(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{meta['name']}", deployment, status
        )

    async def _sync_job(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        old = job.get("status") or {}
        if meta.get("deletionTimestamp"):
            return
        namespace, uid = meta["namespace"], meta["uid"]
        owned = [p for p in pods if _owned_by(p, uid)]
        finished = any((_condition(job, t) or {}).get("status") == "True" for t in ("Complete", "Failed"))
        active = [
            p
            for p in owned
            if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
        if finished:
            for pod in active:
                await self._delete_pod(pod)
            return
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec.get("parallelism", 1))
        backoff_limit = int(spec.get("backoffLimit", 6))
        succeeded = sum(1 for p in owned if p.get("status", {}).get("phase") == "Succeeded")
        restarts = sum(
            cs.get("restartCount", 0)
            for p in owned
            for cs in p.get("status", {}).get("containerStatuses") or []
        )
        failed = max(
            int(old.get("failed", 0)), sum(1 for p in owned if p.get("status", {}).get("phase") == "Failed")
        )
        now = semantics.now_rfc3339()
        status: dict[str, Any] = {
            "startTime": old.get("startTime", now),
            "active": len(active),
            "ready": sum(1 for p in active if _is_ready(p)),
            "terminating": 0,
            "succeeded": succeeded,
            "failed": failed,
            "uncountedTerminatedPods": {},
        }
        conditions: list[dict[str, Any]] = []
        if succeeded >= completions:
            conditions = [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                },
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                },
            ]
            status["completionTime"] = now
        elif failed + restarts > backoff_limit:
            conditions = [
                {
                    "type": "FailureTarget",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                },
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                },
            ]
        elif not spec.get("suspend"):
            missing = min(parallelism, completions - succeeded) - len(active)
            owner = self._owner_ref(job, "batch/v1", "Job")
            labels = {
                "batch.kubernetes.io/job-name": meta["name"],
                "job-name": meta["name"],
                "batch.kubernetes.io/controller-uid": uid,
                "controller-uid": uid,
            }
            for _ in range(max(missing, 0)):
                await self._create_pod(
                    namespace, f"{meta['name']}-", spec.get("template") or {}, labels, owner
                )
            status["active"] = len(active) + max(missing, 0)
        if conditions:
            for cond in conditions:
                cond.update(lastProbeTime=now, lastTransitionTime=now)
            status["conditions"] = conditions
            status["active"] = 0
            for pod in active:
                await self._delete_pod(pod)
        elif old.get("conditions"):
            status["conditions"] = old["conditions"]
        await self._patch_status(f"/apis/batch/v1/namespaces/{namespace}/jobs/{meta['name']}", job, status)


def main(argv: list[str] | None = None) -> None:
    """Run a kubelet against any API server:
    ``python -m tests.cluster.kubelet --server URL --workdir DIR``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="the API server URL, e.g. http://127.0.0.1:6443")
    parser.add_argument("--workdir", required=True, help="where logs and the hosts mapping go")
    parser.add_argument("--cwd", default=None, help="the working directory of pod processes")
    parser.add_argument("--namespace", action="append", dest="namespaces", help="serve only these namespaces")
    parser.add_argument("--kubeconfig", default=None, help="passed to pods as KUBECONFIG")
    parser.add_argument(
        "--no-service-account-tokens",
        action="store_true",
        help="pass the kubeconfig as it is, without the pod's ServiceAccount token",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    kubelet = ProcessKubelet(
        args.server,
        workdir=args.workdir,
        cwd=args.cwd,
        namespaces=args.namespaces,
        kubeconfig=args.kubeconfig,
        service_account_tokens=not args.no_service_account_tokens,
    ).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(
        f"process kubelet serving {args.server}; pod logs in {kubelet.logdir}; "
        f"pod IPs {kubelet.ip_prefix}.x.y",
        flush=True,
    )
    stop.wait()
    kubelet.stop()


if __name__ == "__main__":
    main()
