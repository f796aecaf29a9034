"""Running a shard server from a command: ``recprep serve``, and alongside a job (``recprep run
--serve``), until SIGINT or SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

# TOKEN_ENV: where ``recprep serve``, ``recprep run --serve`` and ``recprep train`` look for the
# bearer token when none is given (a token on the command line is visible to every user of the
# machine).
from ...spec import DEFAULT_SHARD_PORT as DEFAULT_PORT
from ...spec import SHARD_TOKEN_ENV as TOKEN_ENV
from .errors import ShardServiceError

if TYPE_CHECKING:
    from .server import ShardServer


def resolve_token(token: str | None, token_env: str | None) -> str | None:
    """``--token``, else ``$VAR`` of ``--token-env VAR`` (which must be set), else $RECPREP_SHARD_TOKEN."""
    if token is not None and token_env is not None:
        raise ShardServiceError("give --token or --token-env, not both")
    if token is not None:
        if not token:
            raise ShardServiceError("--token: the token is empty")
        return token
    if token_env is not None:
        value = os.environ.get(token_env)
        if not value:
            raise ShardServiceError(f"--token-env {token_env}: the environment variable is not set or empty")
        return value
    return os.environ.get(TOKEN_ENV) or None


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ShardServiceError(f"--serve: expected PORT or HOST:PORT, got {text!r}") from None
    if not 0 <= number < 65536:
        raise ShardServiceError(f"--serve: port {number} is not in 0..65535 (0: any free port)")
    return host or "127.0.0.1", number


def check_port_free(host: str, port: int) -> None:
    """Fail before the job starts when the port is taken (the server binds it later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ShardServiceError(
                f"--serve {host}:{port}: cannot listen there ({exc.strerror or exc})"
            ) from None


class ServeWhileRunning:
    """A ``run_job`` progress that starts a :class:`ShardServer` on the job's output at the
    driver's first phase past planning, or its first ``start`` outside planning (by then the
    driver has written ``_job.json``), so trainers stream shards as they are committed. Every
    other call goes to ``inner``."""

    def __init__(
        self, inner, directory: str, on_start: Callable[[ShardServer], None] | None = None, **options
    ):
        self._inner, self._directory, self._options, self._on_start = inner, directory, options, on_start
        self.server: ShardServer | None = None
        self._planning = False  #: the driver's last phase is still planning (no _job.json yet)

    def _ensure(self) -> None:
        if self.server is None:
            from .server import ShardServer

            self.server = ShardServer(self._directory, **self._options)
            if self._on_start is not None:
                self._on_start(self.server)

    def phase(self, name: str) -> None:
        from ...progress import PLAN, stage_of

        # a session job writes _job.json after grouping its events (its "sessions" phase)
        self._planning = stage_of(name) == PLAN
        if not self._planning:
            self._ensure()
        if self._inner is not None:
            self._inner.phase(name)

    def start(self, *args, **kwargs) -> None:
        if not self._planning:
            self._ensure()
        if self._inner is not None:
            self._inner.start(*args, **kwargs)

    def advance(self, result) -> None:
        if self._inner is not None:
            self._inner.advance(result)

    def warn(self, message: str) -> None:
        if self._inner is not None:
            self._inner.warn(message)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def serve_until_signal(server: ShardServer, every: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then close the server (streams end, acks are on disk).
    ``every``: called once a second meanwhile."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            if every is not None:
                every()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clean = server.close()
    if not clean:
        # a stream stuck in gRPC flow control would also hang the interpreter's exit (pyarrow
        # shuts the server down again then); every acknowledgement is on disk already
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def add_serve_arguments(p) -> None:
    """``recprep serve``'s options."""
    p.add_argument(
        "output", help="the job's output: a directory, or an s3://, gs:// or az:// URI (holding _job.json)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)"
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)"
    )
    p.add_argument("--token", default=None, help="bearer token clients must send (prefer --token-env)")
    p.add_argument(
        "--token-env",
        metavar="VAR",
        default=None,
        help=f"read the bearer token from environment variable VAR (default: ${TOKEN_ENV} if set)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every epoch's shard order (default 0)")
    p.add_argument(
        "--state-dir",
        default=None,
        help="where acknowledgements are kept: a directory or an s3://, gs:// or az:// URI (default "
        "OUTPUT/_service, in the object store too for an object store output)",
    )
    p.add_argument(
        "--batch-rows", type=int, default=16384, help="rows per streamed record batch (default 16384)"
    )
    p.add_argument(
        "--buffer-batches",
        type=int,
        default=4,
        help="record batches each stream reads ahead of its trainer (default 4)",
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=900.0,
        help="seconds a stream waits for the driver's next shard before failing (default 900)",
    )


def serve_command(args, console) -> int:
    """``recprep serve OUTPUT``: serve until SIGINT or SIGTERM (exit 0)."""
    from .server import ShardServer

    token = resolve_token(args.token, args.token_env)
    server = ShardServer(
        args.output,
        host=args.host,
        port=args.port,
        token=token,
        seed=args.seed,
        state_dir=args.state_dir,
        batch_rows=args.batch_rows,
        buffer_batches=args.buffer_batches,
        wait_timeout=args.wait_timeout,
    )
    console.print(_serving_line(server, token), highlight=False, soft_wrap=True)
    serve_until_signal(server)
    return 0


def _serving_line(server: ShardServer, token: str | None) -> str:
    st = server.status()
    auth = "bearer token required" if token else "no token: anyone who can connect reads the shards"
    return (
        f"serving job {st['job']} ({st['committed']}/{st['shards']} shards committed) "
        f"from {server.directory} on grpc://{server.host}:{server.port} ({auth})"
    )


def serve_alongside(listen: str, job, run_job, console):
    """``recprep run --serve [HOST:]PORT``: ``run_job`` wrapped so that a shard server starts on
    the job's output at the driver's first phase and, once the job is done, serves until SIGINT
    or SIGTERM (the bearer token comes from $RECPREP_SHARD_TOKEN)."""
    from ...uris import output_location

    host, port = parse_listen(listen)
    if port:
        check_port_free(host, port)
    token = resolve_token(None, None)

    def run(*args, output=None, progress=None, **kwargs):
        directory = output_location(output or job.spec.output.uri)
        serving = ServeWhileRunning(
            progress,
            directory,
            host=host,
            port=port,
            token=token,
            on_start=lambda server: console.print(
                _serving_line(server, token), highlight=False, soft_wrap=True
            ),
        )
        try:
            summary = run_job(*args, output=output, progress=serving, **kwargs)
            if serving.server is None:  # a driver that reported no phase: serve the finished output
                serving._ensure()
            console.print(
                f"job {summary.job} done: still serving its shards on grpc://{host}:{serving.server.port}; "
                "stop with Ctrl-C or SIGTERM",
                highlight=False,
                soft_wrap=True,
            )
            # the trainers read on after the last commit: their consumption stays on the progress
            # (the dashboard's demand and backlog) while they drain
            publish = getattr(progress, "consumed", None)
            server = serving.server
            serve_until_signal(server, (lambda: publish(server.consumed())) if publish else None)
            return summary
        finally:
            serving.close()

    return run
