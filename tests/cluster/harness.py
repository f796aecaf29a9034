"""
The test cluster: the emulator in a background thread, a kubeconfig, and client helpers.

Usage (the fixtures in ``conftest.py`` do exactly this)::

    with Cluster(tmp_path) as cluster:
        cluster.kubectl('create', 'namespace', 'demo')
        cluster.apply({'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'x'}})
        status, body = cluster.request('GET', '/api/v1/namespaces/default/configmaps/x')
        with cluster.start_kubelet() as kubelet:
            ...

Everything is bounded: starting, stopping, requests, kubectl and ``wait_for``
all have deadlines, so a broken emulator fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiohttp.test_utils
import aiohttp.web
import kmock
import yaml

from .emulator import ClusterEmulator

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """
    Poll ``predicate`` until it returns a truthy value (which is returned), or fail on the deadline.

    Exceptions of the ``ignore`` types count as "not yet"; the last one is chained to the
    ``TimeoutError`` raised at the deadline, to explain what was still wrong.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as e:
            last_error, result = e, None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(
                message or f"the condition was not met within {timeout}s: {predicate}"
            ) from last_error
        time.sleep(interval)


def _quote(path: str) -> str:
    """Percent-encode what may not appear raw in a request line (e.g. spaces in selectors)."""
    return urllib.parse.quote(path, safe="/?&=,!()%:;@+$'*~")


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"kubectl {' '.join(args)} exited with {result.returncode}:\n"
            f"--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
        )
        self.result = result


class ApiResponse(NamedTuple):
    status: int
    body: Any  # parsed JSON if the response is JSON, else text
    headers: Mapping[str, str]


class _QuietTestServer(aiohttp.test_utils.RawTestServer):
    """kmock's default server class, without aiohttp's access log line per request."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        server = aiohttp.web.Server(self._handler, loop=self._loop, debug=debug, access_log=None, **kwargs)
        return aiohttp.web.ServerRunner(server, debug=debug, **kwargs)


class EmulatorThread:
    """A ``ClusterEmulator`` served by ``kmock.Server`` on a free loopback port, in its own thread & loop."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, **emulator_options: Any) -> None:
        self.host = host
        self._port = port
        self._options = emulator_options
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.emulator: ClusterEmulator | None = None
        self.port: int | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmulatorThread:
        self._thread = threading.Thread(target=self._run, name="k8s-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the emulator did not start within {timeout}s")
        if self._startup_error is not None:
            raise RuntimeError("the emulator failed to start") from self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if (
            self.loop is not None
            and self._stop is not None
            and self._thread is not None
            and self._thread.is_alive()
        ):
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the emulator did not stop within {timeout}s")

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0, **kwargs: Any) -> T:
        """Run a plain function in the emulator's loop (for direct, thread-safe state access)."""
        assert self.loop is not None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # delivered to the calling thread
                future.set_exception(e)

        self.loop.call_soon_threadsafe(runner)
        return future.result(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:
            self._startup_error = e
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.emulator = ClusterEmulator(**self._options)
        async with (
            self.emulator,
            kmock.Server(
                self.emulator, host=self.host, port=self._port, server_cls=_QuietTestServer
            ) as server,
        ):
            self.port = server.port
            self._ready.set()
            await self._stop.wait()
            await self.emulator.close()


class Cluster:
    """An emulated cluster for one test: the API server, a kubeconfig, and the client helpers."""

    def __init__(self, workdir: Path, namespace: str = "default", **emulator_options: Any) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.server = EmulatorThread(**emulator_options)
        self.kubeconfig = self.workdir / "kubeconfig.yaml"
        self.kubectl_cache = self.workdir / "kubectl-cache"
        self._kubelets: list[Any] = []
        self.last_watch_content_type: str | None = None

    # Lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Cluster:
        self.server.start()
        self.kubeconfig.write_text(yaml.safe_dump(self.kubeconfig_dict()))
        return self

    def stop(self) -> None:
        for kubelet in self._kubelets:
            kubelet.stop()
        self._kubelets.clear()
        self.server.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def emulator(self) -> ClusterEmulator:
        assert self.server.emulator is not None
        return self.server.emulator

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the emulator's event loop (e.g. ``cluster.call(cluster.emulator.lookup, ...)``)."""
        return self.server.call(fn, *args, **kwargs)

    # Faults, dropped watches, authorization (see faults.py and rbac.py) ----------------------------

    def inject_fault(self, status: int, **options: Any) -> Any:
        """Make matching API requests fail with ``status`` (``ClusterEmulator.inject_fault``:
        ``method``, ``path``, ``user``, ``count``, ``seconds``, ``every``, ``retry_after``,
        ``served``, ``watches``); the ``faults.Fault``, whose ``hits`` grow as requests fail."""
        return self.call(self.emulator.inject_fault, status, **options)

    def clear_faults(self) -> list[Any]:
        """Remove every injected fault; the rules that were in place."""
        return self.call(self.emulator.clear_faults)

    def drop_watches(self, user: str | None = None, path: str | None = None, abrupt: bool = False) -> int:
        """End the open watch streams of ``user`` on ``path`` (``ClusterEmulator.drop_watches``)."""
        return self.call(self.emulator.drop_watches, user, path, abrupt)

    def open_watches(self) -> list[tuple[str, str]]:
        """(user, path?query) of every open watch stream."""
        return self.call(self.emulator.open_watches)

    def set_authorization(self, mode: str) -> None:
        """``"RBAC"`` (ServiceAccount tokens get what the stored RBAC objects grant) or
        ``"AlwaysAllow"`` (the default)."""
        if mode not in ("RBAC", "AlwaysAllow"):
            raise ValueError(f"unknown authorization mode {mode!r}")
        self.call(setattr, self.emulator, "authorization", mode)

    def token(self, service_account: str, namespace: str | None = None) -> str:
        """A token of a ServiceAccount (TokenRequest API), for ``Authorization: Bearer``."""
        namespace = namespace or self.namespace
        response = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        if response.status != 201:
            raise RuntimeError(
                f"no token for {namespace}/{service_account}: {response.status} {response.body}"
            )
        return response.body["status"]["token"]

    def kubeconfig_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "tester", "namespace": self.namespace},
                }
            ],
            "current-context": "emulator",
        }

    @property
    def env(self) -> dict[str, str]:
        """The environment for client subprocesses (kubectl, ``kopf run``, pods) to use this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.kubectl_cache)}

    # kubectl ----------------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """
        Run kubectl against this cluster. ``--validate=false`` is added to apply/create/replace:
        the emulator serves no OpenAPI schemas to validate against.
        """
        if shutil.which("kubectl") is None:
            import pytest

            pytest.skip("kubectl is not installed")
        argv = list(args)
        if (
            argv
            and argv[0] in ("apply", "create", "replace")
            and not any(a.startswith("--validate") for a in argv)
        ):
            argv.insert(1, "--validate=false")
        result = subprocess.run(
            ["kubectl", *argv], input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise KubectlError(argv, result)
        return result

    def apply(
        self,
        manifest: str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *extra: str,
        server_side: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` with a YAML string, an object, or a list of objects."""
        if isinstance(manifest, Mapping):
            text = yaml.safe_dump(dict(manifest))
        elif not isinstance(manifest, str):
            text = yaml.safe_dump_all([dict(m) for m in manifest])
        else:
            text = manifest
        flags = ["--server-side"] if server_side else []
        return self.kubectl("apply", *flags, *extra, "-f", "-", input=text)

    # Raw HTTP ---------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> ApiResponse:
        """One HTTP request to the API; JSON bodies are encoded & decoded automatically."""
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=timeout)
        try:
            data = (
                None
                if body is None
                else body.encode()
                if isinstance(body, str)
                else json.dumps(body).encode()
            )
            all_headers = {"Content-Type": content_type, "Accept": "application/json", **(headers or {})}
            conn.request(method, _quote(path), body=data, headers=all_headers)
            response = conn.getresponse()
            raw = response.read().decode()
            response_headers = {k.lower(): v for k, v in response.getheaders()}
            parsed: Any = raw
            if "json" in response_headers.get("content-type", ""):
                parsed = json.loads(raw) if raw else None
            return ApiResponse(response.status, parsed, response_headers)
        finally:
            conn.close()

    def get(self, path: str) -> Any:
        """GET a JSON document; raises ``LookupError`` on 404 and ``RuntimeError`` on other errors."""
        response = self.request("GET", path)
        if response.status == 404:
            raise LookupError(path)
        if response.status >= 400:
            raise RuntimeError(f"GET {path}: {response.status} {response.body}")
        return response.body

    def exists(self, path: str) -> bool:
        return self.request("GET", path).status == 200

    def watch(
        self, path: str, timeout: float = 5.0, max_events: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Stream the events of a watch request (``?watch=true`` is added) until a deadline or a count."""
        separator = "&" if "?" in path else "?"
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=timeout)
        deadline = time.monotonic() + timeout
        count = 0
        try:
            conn.request(
                "GET", _quote(f"{path}{separator}watch=true"), headers={"Accept": "application/json"}
            )
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"watch {path}: {response.status} {response.read()!r}")
            self.last_watch_content_type = response.getheader("Content-Type")
            while time.monotonic() < deadline and (max_events is None or count < max_events):
                try:
                    line = response.readline()
                except TimeoutError:
                    break
                if not line:
                    break
                if line.strip():
                    count += 1
                    yield json.loads(line)
        finally:
            conn.close()

    # The process kubelet ----------------------------------------------------------------------------

    def start_kubelet(self, **options: Any) -> Any:
        """Start a ``ProcessKubelet`` against this cluster; it is stopped with the cluster."""
        from .kubelet import ProcessKubelet

        options.setdefault("workdir", self.workdir / "kubelet")
        options.setdefault("cwd", REPO_ROOT)
        options.setdefault("kubeconfig", self.kubeconfig)
        kubelet = ProcessKubelet(self.url, **options)
        kubelet.start()
        self.server.call(setattr, self.emulator, "pod_log_provider", kubelet.read_logs)
        self._kubelets.append(kubelet)
        return kubelet
