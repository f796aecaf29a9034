"""
The process kubelet's container mode: a pod's container as ``podman run`` of its image.

:class:`Podman` turns a container of a pod spec into the ``podman run`` command line a real
kubelet's runtime would amount to, so that what the pod spec promises is enforced rather than
assumed:

* the image, mapped to a local one (``images``: the image the spec names -> a local tag; an
  image not in the map fails to start, as an image that cannot be pulled does);
* ``command`` replaces the image's entrypoint and ``args`` its command, as Kubernetes defines
  them; ``workingDir``;
* the security context, the container's over the pod's: ``runAsUser``/``runAsGroup`` (and
  ``fsGroup`` and ``supplementalGroups`` as extra groups), ``readOnlyRootFilesystem`` (with no
  writable ``/tmp`` unless a volume is mounted there: a pod that writes outside its volumes
  fails as it would on a cluster), ``capabilities`` (drop and add),
  ``allowPrivilegeEscalation: false`` (``no-new-privileges``), ``runAsNonRoot`` (refused if the
  user is 0 or unknown);
* ``env``, exactly what the kubelet computed for the container (not the host's environment);
* volumes as bind mounts: ``hostPath`` (created for ``DirectoryOrCreate``), ``emptyDir`` (a
  directory per pod under ``workdir``, kept across restarts of its containers, removed with the
  pod); other kinds fail to start, naming the volume;
* the network of the host: every pod process binds its own loopback address through the
  kubelet's shim (``_shim/``), which is mounted read-only at its own path, as are the kubelet's
  hosts file and the pod's kubeconfig; so the kubelet's ``tcpSocket`` and ``httpGet`` probes reach
  the pod as in process mode, and an ``exec`` probe runs in the container (``podman exec``).

The containers are named after the pod, the container and its restart, so that a container
whose ``podman run`` was killed can still be removed (:meth:`Podman.remove`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Where docker/build-image.sh leaves the podman configuration it builds with (runc, ulimits).
BUILD_CONF = Path("/var/tmp/recprep-image/containers.conf")


class ContainerStartError(ValueError):
    """A container that cannot be started as its spec says (the kubelet reports StartError)."""


class Podman:
    def __init__(
        self,
        images: Mapping[str, str],
        workdir: Path | str,
        *,
        exe: str | None = None,
        conf: Path | str | None = None,
    ) -> None:
        self.images = dict(images)
        self.workdir = Path(workdir)
        self.exe = exe or shutil.which("podman") or "podman"
        conf = conf if conf is not None else (BUILD_CONF if BUILD_CONF.exists() else None)
        self.conf = Path(conf) if conf is not None else None
        #: (container name, image) of every container started, in order.
        self.started: list[tuple[str, str]] = []

    # The podman process itself -------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.conf is not None:
            env["CONTAINERS_CONF"] = str(self.conf)
        return env

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe, *args], capture_output=True, text=True, timeout=timeout, env=self.environment()
        )

    def unavailable(self, image: str) -> str | None:
        """Why ``image`` cannot be run here (podman missing, or the image not built), or None."""
        if shutil.which(self.exe) is None:
            return "podman is not installed (docker/build-image.sh installs it and builds the image)"
        if self.run("image", "exists", image).returncode != 0:
            return f"no image {image}: build it with docker/build-image.sh"
        return None

    def remove(self, name: str) -> None:
        """Remove a container, running or not (a ``podman run`` killed leaves its container)."""
        self.run("rm", "--force", "--time", "0", "--ignore", name)

    def exec_argv(self, name: str, command: list[str]) -> list[str]:
        """An ``exec`` probe's command, run in the container ``name`` (as the container's user)."""
        return [self.exe, "exec", name, *[str(c) for c in command]]

    def forget_pod(self, uid: str) -> None:
        """Remove the emptyDir volumes of a deleted pod."""
        shutil.rmtree(self.workdir / "pods" / uid, ignore_errors=True)

    # Pod spec -> podman run -------------------------------------------------------------------------

    @staticmethod
    def name(pod_name: str, container: str, restart: int) -> str:
        return f"{pod_name}-{container}-{restart}"

    def argv(
        self,
        *,
        pod_name: str,
        pod_uid: str,
        pod_spec: Mapping[str, Any],
        spec: Mapping[str, Any],
        env: Mapping[str, str],
        restart: int,
        plumbing: Iterable[Path] = (),
    ) -> list[str]:
        """The ``podman run`` command of container ``spec`` of a pod (see the module docstring);
        ``plumbing``: the kubelet's own files the processes read (mounted read-only in place)."""
        image = spec.get("image")
        if image not in self.images:
            raise ContainerStartError(f"image {image!r} is not available here (have: {sorted(self.images)})")
        name = self.name(pod_name, spec["name"], restart)
        argv = [
            self.exe,
            "run",
            "--rm",
            "--name",
            name,
            "--pull",
            "never",
            "--network",
            "host",
            "--init=false",
        ]
        argv += self._security(pod_spec, spec)
        mounts = self._mounts(pod_uid, pod_spec, spec)
        for path in plumbing:
            mounts.append(f"{path}:{path}:ro")
        for mount in mounts:
            argv += ["--volume", mount]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        if spec.get("workingDir"):
            argv += ["--workdir", str(spec["workingDir"])]
        command = [str(a) for a in spec.get("command") or []]
        args = [str(a) for a in spec.get("args") or []]
        if command:
            argv += ["--entrypoint", json.dumps(command)]
        argv.append(self.images[image])
        self.started.append((name, self.images[image]))
        return argv + args

    @staticmethod
    def _security(pod_spec: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
        pod_ctx = pod_spec.get("securityContext") or {}
        ctx = {**pod_ctx, **(spec.get("securityContext") or {})}
        out: list[str] = []
        user, group = ctx.get("runAsUser"), ctx.get("runAsGroup")
        if ctx.get("runAsNonRoot") and not user:
            # the image's USER is numeric (10001), but a kubelet verifies it: here the spec must say
            raise ContainerStartError("runAsNonRoot without a numeric runAsUser: cannot verify the user")
        if user is not None:
            out += ["--user", f"{int(user)}:{int(group)}" if group is not None else str(int(user))]
        for extra in [pod_ctx.get("fsGroup"), *(pod_ctx.get("supplementalGroups") or [])]:
            if extra is not None:
                out += ["--group-add", str(int(extra))]
        if ctx.get("readOnlyRootFilesystem"):
            out += ["--read-only", "--read-only-tmpfs=false"]
        caps = ctx.get("capabilities") or {}
        for cap in caps.get("drop") or []:
            out += ["--cap-drop", str(cap)]
        for cap in caps.get("add") or []:
            out += ["--cap-add", str(cap)]
        if ctx.get("allowPrivilegeEscalation") is False:
            out += ["--security-opt", "no-new-privileges"]
        return out

    def _mounts(self, pod_uid: str, pod_spec: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
        volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
        mounts = []
        for mount in spec.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ContainerStartError(f"volumeMount {mount['name']!r}: no such volume in the pod")
            if "hostPath" in volume:
                source = Path(volume["hostPath"]["path"])
                if volume["hostPath"].get("type") == "DirectoryOrCreate":
                    source.mkdir(parents=True, exist_ok=True)
                if not source.exists():
                    raise ContainerStartError(f"volume {mount['name']!r}: hostPath {source} does not exist")
            elif "emptyDir" in volume:
                source = self.workdir / "pods" / pod_uid / "volumes" / mount["name"]
                if not source.exists():
                    source.mkdir(parents=True)
                    source.chmod(0o1777)  # fsGroup makes an emptyDir writable by the pod's group
            else:
                kind = next((k for k in volume if k != "name"), "?")
                raise ContainerStartError(f"volume {mount['name']!r}: {kind} volumes are not supported here")
            if mount.get("subPath"):
                source = source / mount["subPath"]
            mode = "ro" if mount.get("readOnly") else "rw"
            mounts.append(f"{source}:{mount['mountPath']}:{mode}")
        return mounts


__all__ = ["BUILD_CONF", "ContainerStartError", "Podman"]
