"""
Pod networking for processes started by the process kubelet (``tests/cluster/kubelet.py``).

The kubelet puts this directory first on ``PYTHONPATH``, so every Python process of a pod
(and their Python children) imports this module at startup. It gives the process the
network identity of its pod, using only the loopback interface:

* the pod has its own loopback address (``KUBELET_SHIM_POD_IP``, e.g. ``127.93.0.7``):
  wildcard binds (``''``/``0.0.0.0``, also via ``getaddrinfo(None, ..., AI_PASSIVE)``) are
  narrowed to it, so several replicas can listen on the same port, as in Kubernetes;
* Service names (``svc``, ``svc.ns``, ``svc.ns.svc``, ``svc.ns.svc.cluster.local``) resolve
  to a ready pod behind the Service, and the Service port is translated to the target port.
  The mapping is read from the JSON file ``KUBELET_SHIM_HOSTS``, which the kubelet rewrites
  atomically whenever endpoints change; a Service without ready endpoints fails to resolve
  with ``EAI_AGAIN`` (a temporary failure, which clients retry);
* ``socket.gethostname()`` is the pod name and resolves to the pod address, and the
  "which address reaches the outside" trick (``connect()`` a UDP socket, ``getsockname()``)
  answers the pod address — as Dask and others use to advertise themselves.

Only Python processes are covered; for others the kubelet also sets the Kubernetes-style
``<SVC>_SERVICE_HOST``/``<SVC>_SERVICE_PORT`` variables. A pre-existing ``sitecustomize``
further down ``sys.path`` is still executed.
"""

import json
import os
import random
import socket
import sys
import weakref

_POD_IP = os.environ.get("KUBELET_SHIM_POD_IP", "")
_HOSTS_FILE = os.environ.get("KUBELET_SHIM_HOSTS", "")
_NAMESPACE = os.environ.get("KUBELET_SHIM_NAMESPACE", "default")
_HOSTNAME = os.environ.get("KUBELET_SHIM_HOSTNAME", "")

_real_getaddrinfo = socket.getaddrinfo
_real_gethostbyname = socket.gethostbyname
_real_gethostbyname_ex = socket.gethostbyname_ex
_real_bind = socket.socket.bind
_real_connect = socket.socket.connect
_real_getsockname = socket.socket.getsockname
_udp_probes = weakref.WeakSet()  # UDP sockets connected outwards to learn "our" address
_cache = {"mtime": None, "data": {}}


def _mapping():
    """The kubelet's current Service mapping (re-read only when the file changes)."""
    try:
        mtime = os.stat(_HOSTS_FILE).st_mtime_ns
    except OSError:
        return {}
    if mtime != _cache["mtime"]:
        try:
            with open(_HOSTS_FILE, encoding="utf-8") as f:
                _cache["data"] = json.load(f)
            _cache["mtime"] = mtime
        except (OSError, ValueError):
            pass  # mid-replace or unreadable: keep the previous mapping
    return _cache["data"]


def _is_ip(host):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def _resolve(host, port):
    """Map a pod-visible name (and port) to (ip, port), or None if it is not a cluster name."""
    if not isinstance(host, str) or not host or _is_ip(host):
        return None
    name = host.lower().rstrip(".")
    if _HOSTNAME and name == _HOSTNAME.lower():
        return _POD_IP, port
    for suffix in (".svc.cluster.local", ".svc"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    parts = name.split(".")
    if len(parts) == 1:
        key = f"{parts[0]}.{_NAMESPACE}"
    elif len(parts) == 2:
        key = name
    else:
        return None
    service = _mapping().get("services", {}).get(key)
    if service is None:
        return None
    endpoints = service.get("ports", {}).get(str(port)) if port is not None else None
    if endpoints:
        ip, target = random.choice(endpoints)
        return ip, target
    if service.get("ips"):
        return random.choice(service["ips"]), port
    raise socket.gaierror(socket.EAI_AGAIN, f"{host}: the Service has no ready endpoints yet")


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if isinstance(host, bytes):
        host = host.decode("ascii")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if (
        _POD_IP
        and host in (None, "", "0.0.0.0")
        and flags & socket.AI_PASSIVE
        and family in (0, socket.AF_UNSPEC, socket.AF_INET)
    ):
        host, family = _POD_IP, socket.AF_INET
    else:
        target = _resolve(host, port)
        if target is not None:
            host, port = target
            if family in (0, socket.AF_UNSPEC):
                family = socket.AF_INET
    return _real_getaddrinfo(host, port, family, type, proto, flags)


def gethostbyname(name):
    target = _resolve(name, None)
    return target[0] if target else _real_gethostbyname(name)


def gethostbyname_ex(name):
    target = _resolve(name, None)
    return (name, [], [target[0]]) if target else _real_gethostbyname_ex(name)


def gethostname():
    return _HOSTNAME


def _bind(self, address):
    if self.family == socket.AF_INET and isinstance(address, tuple) and address[0] in ("", "0.0.0.0"):
        address = (_POD_IP, *address[1:])
    return _real_bind(self, address)


def _connect(self, address):
    if (
        self.family == socket.AF_INET
        and self.type == socket.SOCK_DGRAM
        and isinstance(address, tuple)
        and isinstance(address[0], str)
        and not address[0].startswith("127.")
    ):
        _udp_probes.add(self)
    return _real_connect(self, address)


def _getsockname(self):
    result = _real_getsockname(self)
    if self in _udp_probes and isinstance(result, tuple):
        return (_POD_IP, *result[1:])
    return result


def _install():
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex
    if _HOSTNAME:
        socket.gethostname = gethostname
    socket.socket.bind = _bind
    socket.socket.connect = _connect
    socket.socket.getsockname = _getsockname


def _chain_sitecustomize():
    """Run the next ``sitecustomize`` on sys.path (this one shadows it)."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None and spec.origin != __file__:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if _POD_IP:
    _install()
_chain_sitecustomize()
