"""A real S3 API for tests: moto's server mode on a free local port, as s3fs's own tests run it,
reached through s3fs, the client users have."""

from __future__ import annotations

import contextlib
import os
import urllib.request
from collections.abc import Iterator

from .environment import environment

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_s3(*buckets: str, set_env: bool = True) -> Iterator[tuple[object, dict[str, str]]]:
    """(s3fs file system, environment) of a fresh S3 server holding ``buckets``. ``set_env``: the
    environment (endpoint and keys) is set in this process meanwhile, so the AWS clients of the
    process and of the workers it starts reach the server; without it only the file system
    given knows them (the e2e tests, whose pods must get them from a Secret)."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", **CREDENTIALS}
    # moto keeps its buckets in the process, across servers: start from none
    urllib.request.urlopen(urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"))
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with environment(env if set_env else {}):
            fs = s3fs.S3FileSystem(
                key=env["AWS_ACCESS_KEY_ID"],
                secret=env["AWS_SECRET_ACCESS_KEY"],
                endpoint_url=env["AWS_ENDPOINT_URL"],
                skip_instance_cache=not set_env,
            )
            for bucket in buckets:
                fs.mkdir(bucket)
            yield fs, env
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def environments(env: dict[str, str], tmp_path) -> tuple[dict[str, str], dict[str, str]]:
    """(this process's environment with the server's keys, the same with no credentials at all:
    only the endpoint, no profile, no instance metadata) for a ``recprep`` subprocess."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    nowhere = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"],
    }
    return {**base, **env}, {**base, **nowhere}
