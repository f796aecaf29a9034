"""A real Azure Blob Storage API for tests: Azurite, Microsoft's emulator (npm's ``azurite``;
``.ci/run`` installs it), on a free local port with its data in memory, reached through adlfs,
the client users have, with the account of a connection string in the environment (as adlfs
reads credentials). Tests that need it skip where ``azurite-blob`` is not on the PATH."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

from .environment import environment

#: Azurite's well-known development account (its documentation's; not a secret)
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def available() -> str | None:
    """Why Azurite cannot run here, or None when it can."""
    if shutil.which("azurite-blob") is None:
        return "azurite-blob is not on the PATH (npm install -g azurite)"
    try:
        import adlfs  # noqa: F401
    except ImportError:
        return "adlfs is not installed (pip install -e '.[cloud]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def azurite(*containers: str) -> Iterator[tuple[object, dict[str, str]]]:
    """(adlfs file system, environment) of a fresh Azurite holding ``containers``; the
    environment (``AZURE_STORAGE_CONNECTION_STRING``) is set in this process meanwhile, so the
    clients of the process and of the workers it starts reach it."""
    import adlfs

    port = _free_port()
    server = subprocess.Popen(
        [
            "azurite-blob",
            "--blobHost=127.0.0.1",
            f"--blobPort={port}",
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )
    env = {"AZURE_STORAGE_CONNECTION_STRING": connection}
    try:
        with environment(env):
            deadline = time.monotonic() + 30
            while True:  # listening once a connection is accepted
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"azurite-blob did not start: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)  # polling for the port to open
            adlfs.AzureBlobFileSystem.clear_instance_cache()
            fs = adlfs.AzureBlobFileSystem(connection_string=connection)
            for container in containers:
                fs.mkdir(container)
            yield fs, env
    finally:
        adlfs.AzureBlobFileSystem.clear_instance_cache()
        server.terminate()
        server.wait(timeout=30)
