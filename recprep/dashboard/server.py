"""The dashboard's web server: the page, its JSON API and ``/metrics``, read only.

Routes (GET and HEAD only; anything else is 405):

- ``/``                              the page (``static/index.html``); it reads nothing but the API;
- ``/static/<file>``                 the page's script and style, and ``plotly.min.js`` from the
                                     installed ``plotly`` package (no CDN: clusters are often
                                     offline);
- ``/api/jobs``                      ``{"jobs": [...]}``: one row per job (``JobHistory.summary``);
- ``/api/jobs/<namespace>/<name>``   the job's document (``JobHistory.document``), 404 if unknown;
- ``/metrics``                       Prometheus' text format (``dashboard.metrics``);
- ``/healthz``                       ``ok``.

It serves from a thread (``ThreadingHTTPServer``): nothing it does touches the job's work, and
every answer is built from :class:`Board`'s histories under their locks.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .history import JobHistory, clean
from .metrics import exposition

log = logging.getLogger(__name__)

#: Files of the page (in this package's ``static`` directory) and their content types.
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: The chart library, served from its installed package.
PLOTLY = "plotly.min.js"
#: Nothing but this origin's files and API: no inline script, no other host.
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"


def plotly_path() -> Path | None:
    """``plotly.min.js`` of the installed ``plotly`` package (None: not installed)."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / PLOTLY
    return path if path.is_file() else None


class Board:
    """The jobs a dashboard shows, by (namespace, name); thread-safe."""

    def __init__(self, keep_finished: int = 20):
        self._jobs: dict[tuple[str, str], JobHistory] = {}
        self._lock = threading.Lock()
        self.keep_finished = keep_finished

    def add(self, history: JobHistory) -> JobHistory:
        with self._lock:
            self._jobs[(history.namespace, history.name)] = history
        return history

    def get(self, namespace: str, name: str) -> JobHistory | None:
        with self._lock:
            return self._jobs.get((namespace, name))

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._jobs.pop((namespace, name), None)

    def jobs(self) -> list[JobHistory]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda h: (h.namespace, h.name))


def _handler(board: Board) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "recprep-dashboard"

        def log_message(self, format: str, *args) -> None:
            log.debug("dashboard: " + format, *args)

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _refuse(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read only\n", "text/plain", head=False)

        do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

        def _answer(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            try:
                status, body, kind = self._route(path)
            except Exception:  # a bug must not take the server down: the page shows the error
                log.exception("dashboard: %s failed", path)
                status, body, kind = HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", "text/plain"
            self._send(status, body, kind, head)

        def _route(self, path: str) -> tuple[HTTPStatus, bytes, str]:
            if path in ("/", "/index.html"):
                return self._static("index.html")
            if path.startswith("/static/"):
                return self._static(path[len("/static/") :])
            if path == "/api/jobs":
                return self._json({"jobs": [h.summary() for h in board.jobs()]})
            if path.startswith("/api/jobs/"):
                parts = path[len("/api/jobs/") :].split("/")
                if len(parts) == 2:
                    history = board.get(*parts)
                    if history is not None:
                        return self._json(history.document())
                return HTTPStatus.NOT_FOUND, b'{"error": "no such job"}', "application/json"
            if path == "/metrics":
                body, kind = exposition(board.jobs)
                return HTTPStatus.OK, body, kind
            if path == "/healthz":
                return HTTPStatus.OK, b"ok\n", "text/plain"
            return HTTPStatus.NOT_FOUND, b"not found\n", "text/plain"

        def _static(self, name: str) -> tuple[HTTPStatus, bytes, str]:
            if name == PLOTLY:
                found = plotly_path()
                if found is None:
                    return (
                        HTTPStatus.NOT_FOUND,
                        b'the chart library is missing: pip install "recprep[dashboard]"\n',
                        "text/plain",
                    )
                return HTTPStatus.OK, found.read_bytes(), "text/javascript; charset=utf-8"
            if name not in STATIC:
                return HTTPStatus.NOT_FOUND, b"not found\n", "text/plain"
            data = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
            return HTTPStatus.OK, data, STATIC[name]

        @staticmethod
        def _json(value) -> tuple[HTTPStatus, bytes, str]:
            return HTTPStatus.OK, json.dumps(clean(value)).encode(), "application/json"

        def _send(self, status: HTTPStatus, body: bytes, kind: str, head: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            if not head:
                self.wfile.write(body)

    return Handler


class DashboardServer:
    """The server on ``host:port`` (port 0: any free one) for ``board``, in a daemon thread."""

    def __init__(self, board: Board, host: str = "127.0.0.1", port: int = 0):
        self.board = board
        self.httpd = ThreadingHTTPServer((host, port), _handler(board))
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="recprep-dashboard", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``recprep run --dashboard``) -> (host, port); host 127.0.0.1 by default.
    Raises ValueError naming what is wrong."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected [HOST:]PORT with a port from 0 to 65535, got {text!r}")
    return host, int(port)
