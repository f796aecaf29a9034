"""
A Kubernetes API server emulator for integration tests, built on top of kmock.

kmock's ``KubernetesEmulator`` (kmock 0.8) is an in-memory object store behind a
Kubernetes-shaped HTTP API. On its own it is not enough for kopf and kubectl
(see ``README.md`` in this directory for the list and the reasons). This module
keeps kmock's HTTP server, request model, error rendering, the bundled discovery
data of the built-in kinds, the ``objects`` store (with per-object history, so
kmock-style assertions keep working) and user-defined kmock reactions, and
replaces the request handling with Kubernetes semantics that clients rely on:

* object metadata: ``uid``, ``creationTimestamp``, ``generation``, a cluster-wide
  monotonic ``resourceVersion`` (bumped on every write), ``generateName``,
  the namespace taken from the URL; HTTP 201 on create; no-op writes are no-ops;
* GET/LIST/WATCH with label & field selectors, ``<Kind>List`` bodies, watches
  as ``application/json`` streams resuming from ``?resourceVersion=`` (410 when
  too old), ``timeoutSeconds``, ``sendInitialEvents`` with the closing bookmark;
* POST/PUT/PATCH (merge, JSON, best-effort strategic, server-side apply)/DELETE
  (also of collections), optimistic concurrency (409 Conflict), ``dryRun``;
* the ``status`` subresource, finalizers & ``deletionTimestamp``, cascading
  deletion via ``ownerReferences`` (background, foreground, orphan) and
  namespace deletion;
* CustomResourceDefinitions that register their resources (with short names,
  categories, subresources and printer columns) and become ``Established``;
* discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>/<v>``, ``/version``),
  server-side ``Table`` rendering for ``kubectl get``, the ``scale`` subresource
  and ``pods/log`` (through a pluggable log provider, see the kubelet);
* who asks and whether they may (``rbac.py``): ServiceAccount tokens from the TokenRequest
  API, the admin for requests without credentials, impersonation, and RBAC authorization of
  the stored Roles and bindings (``authorization="RBAC"``) with kube-apiserver's 403 bodies;
* trouble on demand: injected faults (``inject_fault``, see ``faults.py``) and dropped watch
  streams (``drop_watches``); and records for assertions: ``denials``, ``access``, ``creations``.

All state lives in one asyncio event loop; every mutation is synchronous (no
``await`` in the middle of a write), so no locks are needed.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import logging
import math
import random
import re
import secrets
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import enums, rendering

from . import faults, rbac, semantics

logger = logging.getLogger(__name__)

EmulatorKey = tuple[kmock.resource, str | None, str]  # (storage resource, namespace, name)

CORE_GROUP = ""
CRD_GROUP = "apiextensions.k8s.io"
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_PLURALS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")  # Policy.from_objects' order
#: The ``raw_request`` key of the authenticated ``rbac.UserInfo``.
USER_KEY: aiohttp.web.RequestKey = aiohttp.web.RequestKey("emulator.user", object)
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-recprep-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
# Resources of the bundled k3s discovery data that have no place in an emulated cluster.
SKIPPED_GROUPS = {"metrics.k8s.io", "gateway.networking.k8s.io"}
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def is_true(value: str | None) -> bool:
    """A boolean query parameter as the API server reads it (Go's strconv.ParseBool): the
    official Python client sends ``watch=True``, kubectl ``watch=true``."""
    return value in ("1", "t", "T", "TRUE", "true", "True")


class ApiError(kmock.KubernetesError):
    """An error answered as a Kubernetes ``Status`` body (``reason`` as in metav1.StatusReason)."""


def not_found(rt: ResourceType | None, name: str | None = None, message: str | None = None) -> ApiError:
    if rt is None or name is None:
        return ApiError(
            status=404,
            reason="NotFound",
            message=message or "the server could not find the requested resource",
            details={},
        )
    return ApiError(
        status=404,
        reason="NotFound",
        message=f'{rt.qualified} "{name}" not found',
        details={"name": name, "group": rt.group, "kind": rt.plural},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(status=400, reason="BadRequest", message=message, details={})


def invalid(rt: ResourceType, name: str | None, message: str) -> ApiError:
    return ApiError(
        status=422,
        reason="Invalid",
        message=f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {message}',
        details={"name": name, "group": rt.group, "kind": rt.kind},
    )


def conflict(rt: ResourceType, name: str, message: str | None = None) -> ApiError:
    return ApiError(
        status=409,
        reason="Conflict",
        details={"name": name, "group": rt.group, "kind": rt.plural},
        message=f'Operation cannot be fulfilled on {rt.qualified} "{name}": '
        + (
            message
            or "the object has been modified; please apply your changes to the latest version and try again"
        ),
    )


@dataclass
class ResourceType:
    """Everything the emulator knows about one served group/version/plural."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    printer_columns: list[dict[str, Any]] | None = None  # CRDs only; None for built-ins
    storage_version: str = ""  # objects of all versions of a CRD share the storage version
    scale_paths: tuple[str, str, str | None] | None = None  # CRD scale: spec, status, selector paths

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> kmock.resource:
        return kmock.resource(self.group, self.storage_version or self.version, self.plural)

    @property
    def storage_api_version(self) -> str:
        version = self.storage_version or self.version
        return f"{self.group}/{version}" if self.group else version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


@dataclass(eq=False)
class _Watcher:
    """One open watch stream: what it wants to see, and the queue of events for it."""

    storage: kmock.resource
    namespace: str | None
    name: str | None
    labels: list[semantics.Requirement]
    fields: list[tuple[str, str, str]]
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    user: str = ""  # who watches (the authenticated user's name)
    target: str = ""  # the request's path and query
    transport: Any = None  # the connection, to drop it (``ClusterEmulator.drop_watches``)

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        return (
            (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
            and semantics.match_labels(self.labels, meta.get("labels"))
            and semantics.match_fields(self.fields, obj)
        )

    def event_for(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any] | None:
        """Translate a storage event to this watcher's view: objects entering/leaving its selector."""
        now_matches, was_matching = self.matches(obj), self.matches(old)
        if etype == "MODIFIED" and now_matches and not was_matching:
            return {"type": "ADDED", "object": obj}
        if etype == "MODIFIED" and was_matching and not now_matches:
            return {"type": "DELETED", "object": obj}
        return {"type": etype, "object": obj} if now_matches else None


@dataclass(frozen=True)
class _Request:
    """A parsed Kubernetes API path (kmock's parser mis-reads /api/v1/namespaces[/<name>])."""

    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> _Request:
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return _Request()
    namespace = None
    # "namespaces/<ns>/<plural>..." is a namespaced path; "namespaces[/<name>[/<sub>]]" is the resource.
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) >= 2 else None
    subresource = "/".join(rest[2:]) or None
    return _Request(group, version, plural, namespace, name, subresource)


@dataclass(frozen=True)
class _Token:
    """A token issued through the TokenRequest API: whose it is, and the uids it is bound to
    (the ServiceAccount, and the Pod of ``boundObjectRef``); it dies with any of them."""

    user: rbac.UserInfo
    bound_uids: tuple[str, ...]
    expires: str


def _random_suffix(length: int = 5) -> str:
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=length))


def _strip_volatile(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without the fields every write changes (to detect no-op writes)."""
    result = copy.deepcopy(dict(obj))
    meta = result.get("metadata", {})
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    return result


def _spec_part(obj: Mapping[str, Any], with_status: bool) -> dict[str, Any]:
    """What a ``generation`` covers: everything but metadata (and status, if a subresource)."""
    skipped = {"metadata", "apiVersion", "kind"} | ({"status"} if with_status else set())
    return {k: v for k, v in obj.items() if k not in skipped}


@attrs.define(kw_only=True, slots=False)
class ClusterEmulator(kmock.KubernetesEmulator):
    """
    kmock's Kubernetes emulator with the semantics that kopf and kubectl need.

    Serve it with ``kmock.Server(emulator)`` inside the emulator's event loop
    (see ``harness.EmulatorThread``). User-defined kmock reactions
    (``emulator['get /foo'] << {...}``) still take precedence over the emulation.
    """

    # How many past events to keep for watches resuming from a resourceVersion.
    event_history: int = 10_000
    # Called as fn(namespace, pod, container, params) -> str | None for GET pods/<name>/log.
    pod_log_provider: Callable[[str, str, str | None, Mapping[str, str]], str | None] | None = None
    # "AlwaysAllow", or "RBAC": requests of ServiceAccount tokens are authorized against the stored
    # Roles, ClusterRoles and bindings (see rbac.py); the admin (no token) may do anything.
    authorization: str = "AlwaysAllow"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock reads its bundled data with a deprecated importlib API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        for ref in list(self.resources):
            if ref.group in SKIPPED_GROUPS:
                del self.resources[ref]
        self._rv = 0  # the cluster-wide resourceVersion counter (like etcd's revision)
        self._events: collections.deque[tuple[int, kmock.resource, str, dict, dict | None]] = (
            collections.deque(maxlen=self.event_history)
        )
        self._expired_rv = 0  # events at or below this resourceVersion were dropped from history
        self._watchers: set[_Watcher] = set()
        self._crd_types: dict[tuple[str, str], ResourceType] = {}  # (group, version, plural) via CRDs
        self._crd_types_by_crd: dict[str, list[ResourceType]] = {}
        self._applied: dict[tuple[EmulatorKey, str], dict[str, Any]] = {}  # SSA: (key, manager) -> config
        self._uids: dict[str, EmulatorKey] = {}
        self._deleted_uids: set[str] = set()  # of objects that existed and were deleted
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._tokens: dict[str, _Token] = {}
        self._faults: list[faults.Fault] = []
        self._rbac_version = 0  # bumped on every write of an RBAC object
        self._policy: tuple[int, rbac.Policy] | None = None
        # What ServiceAccounts asked for, and what they were refused (with authorization=RBAC):
        # (user, verb, group, resource[/subresource], namespace, allowed) -> count, and the 403s.
        self.access: collections.Counter[tuple[str, str, str, str, str | None, bool]] = collections.Counter()
        self.denials: list[str] = []
        # How many times an object was created: (apiVersion/kind, namespace, name) -> count.
        self.creations: collections.Counter[tuple[str, str | None, str]] = collections.Counter()
        for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create_object(self.lookup("", "v1", "namespaces"), {"metadata": {"name": namespace}})

    # ---------------------------------------------------------------------------------------------
    # HTTP plumbing
    # ---------------------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Like kmock's entry point, but with a path parser that understands all K8s paths, and
        authentication, injected faults and authorization (in that order) before serving."""
        body = await raw_request.read()
        try:
            user = self._authenticate(raw_request)
            raw_request[USER_KEY] = user
            request = self._parse_request(raw_request, body)
            self._requests.append(request)
            watch = is_true(raw_request.query.get("watch"))
            fault = self._fault_for(raw_request, user, watch)
            if fault is not None and not fault.served:
                return self._fault_response(fault)
            self._authorize(raw_request, user)
            response = await self._handle(request)
            if fault is not None:  # served: the request took effect, the client is told it failed
                return self._fault_response(fault)
            return response
        except kmock.KubernetesError as e:
            return self._render_status(e)
        except Exception as e:  # a bug in the emulator: report it loudly, but keep serving
            logger.exception("The emulator failed to serve %s %s", raw_request.method, raw_request.path_qs)
            if self._errors:
                self._errors[-1].append(e)
            return self._render_status(
                ApiError(
                    status=500,
                    reason="InternalError",
                    message=repr(e),
                    details={"traceback": traceback.format_exc()},
                )
            )

    def _parse_request(self, raw: aiohttp.web.BaseRequest, body: bytes) -> rendering.Request:
        parsed = parse_api_path(raw.path)
        method = enums.method(raw.method)
        params = dict(raw.query)
        data: Any = None
        if body and "protobuf" in raw.headers.get("Content-Type", ""):
            # Typed client-go clients (kubectl create namespace/configmap/secret/...) send protobuf.
            try:
                data = semantics.pb_decode_object(body)
            except semantics.ProtobufError as e:
                raise ApiError(status=415, reason="UnsupportedMediaType", message=str(e), details={}) from e
        elif body:
            try:  # JSON is YAML too, but the JSON parser is faster and stricter.
                data = json.loads(body)
            except ValueError:
                try:
                    data = yaml.safe_load(body)
                except yaml.YAMLError:
                    data = None
        action = None
        if parsed.group is not None and parsed.plural is not None:
            if method == enums.method.GET:
                action = (
                    enums.action.WATCH
                    if is_true(params.get("watch"))
                    else enums.action.LIST
                    if parsed.name is None
                    else enums.action.FETCH
                )
            elif method == enums.method.POST:
                action = enums.action.CREATE
            elif method in (enums.method.PATCH, enums.method.PUT) and parsed.name:
                action = enums.action.UPDATE
            elif method == enums.method.DELETE:
                action = enums.action.DELETE
        resource = None
        if parsed.group is not None:
            resource = kmock.resource(parsed.group, parsed.version, parsed.plural)
        return rendering.Request(
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=params,
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            action=action,
            resource=resource,
            namespace=parsed.namespace,
            name=parsed.name,
            subresource=parsed.subresource,
        )

    def _render_status(
        self, e: kmock.KubernetesError, headers: Mapping[str, str] | None = None
    ) -> aiohttp.web.Response:
        return aiohttp.web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": e.message,
                "reason": e.reason,
                "details": e.details or {},
                "code": e.status,
            },
            status=e.status,
            headers=headers,
        )

    # ---------------------------------------------------------------------------------------------
    # Authentication, authorization (rbac.py) and injected faults (faults.py)
    # ---------------------------------------------------------------------------------------------

    def _authenticate(self, raw: aiohttp.web.BaseRequest) -> rbac.UserInfo:
        """No credentials: the admin; a bearer token: whose it is (401 if none's);
        ``Impersonate-User``: that user, for the admin only."""
        header = raw.headers.get("Authorization", "").strip()
        if not header:
            user = rbac.ADMIN
        else:
            scheme, _, token = header.partition(" ")
            entry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if entry is None or not all(uid in self._uids for uid in entry.bound_uids):
                raise ApiError(status=401, reason="Unauthorized", message="Unauthorized", details={})
            user = entry.user
        as_user = raw.headers.get("Impersonate-User")
        if as_user:
            if self.authorization == "RBAC" and not user.is_admin:
                raise ApiError(
                    status=403,
                    reason="Forbidden",
                    message=f'users "{as_user}" is forbidden: User "{user.name}" cannot impersonate '
                    'resource "users" in API group "" at the cluster scope',
                    details={"name": as_user, "kind": "users"},
                )
            user = rbac.impersonated(as_user, raw.headers.getall("Impersonate-Group", []))
        return user

    def _rbac_policy(self) -> rbac.Policy:
        if self._policy is None or self._policy[0] != self._rbac_version:
            kinds = [self.lookup(RBAC_GROUP, "v1", plural) for plural in RBAC_PLURALS]
            objects = [self.list_objects(rt) if rt is not None else [] for rt in kinds]
            self._policy = (self._rbac_version, rbac.Policy.from_objects(*objects))
        return self._policy[1]

    def _authorize(self, raw: aiohttp.web.BaseRequest, user: rbac.UserInfo) -> None:
        """With ``authorization="RBAC"``: 403 unless the stored RBAC objects allow the request."""
        if self.authorization != "RBAC" or user.is_admin:
            return
        parsed = parse_api_path(raw.path)
        attrs = rbac.request_attributes(
            raw.method,
            raw.path,
            raw.query,
            parsed.group,
            parsed.plural,
            parsed.namespace,
            parsed.name,
            parsed.subresource,
        )
        allowed = self._rbac_policy().allows(user, attrs)
        self.access[user.name, attrs.verb, attrs.group, attrs.full_resource, attrs.namespace, allowed] += 1
        if not allowed:
            message = rbac.forbidden_message(user, attrs)
            self.denials.append(message)
            raise ApiError(
                status=403, reason="Forbidden", message=message, details=rbac.forbidden_details(attrs)
            )

    def inject_fault(self, status: int, **options: Any) -> faults.Fault:
        """Fail matching requests with ``status`` (see ``faults.make_fault`` for the options:
        ``method``, ``path``, ``user``, ``count``, ``seconds``, ``every``, ``retry_after``,
        ``served``, ``watches``); the rule, whose ``hits`` list the requests it failed."""
        fault = faults.make_fault(status, **options)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> list[faults.Fault]:
        """Remove every injected fault; the rules that were in place."""
        removed, self._faults = self._faults, []
        return removed

    def _fault_for(
        self, raw: aiohttp.web.BaseRequest, user: rbac.UserInfo, watch: bool
    ) -> faults.Fault | None:
        for fault in self._faults:
            if fault.served and watch:
                continue  # a watch is a stream: there is no answer to replace once it is served
            if fault.take(raw.method, raw.path_qs, user.name, watch):
                return fault
        return None

    def _fault_response(self, fault: faults.Fault) -> aiohttp.web.Response:
        reason, message, details, headers = fault.error()
        return self._render_status(
            ApiError(status=fault.status, reason=reason, message=message, details=details), headers
        )

    def drop_watches(self, user: str | None = None, path: str | None = None, abrupt: bool = False) -> int:
        """End the open watch streams of ``user`` (a regular expression matched in full; None:
        anyone's) whose ``path?query`` contains a match of ``path`` (None: all): the server ends
        them (as on a watch timeout), or with ``abrupt`` the connection is cut (as a proxy or a
        failing node does). How many were dropped."""
        user_re = re.compile(user) if user is not None else None
        path_re = re.compile(path) if path is not None else None
        dropped = 0
        for watcher in list(self._watchers):
            if user_re is not None and not user_re.fullmatch(watcher.user):
                continue
            if path_re is not None and not path_re.search(watcher.target):
                continue
            self._watchers.discard(watcher)
            if abrupt and watcher.transport is not None:
                watcher.transport.abort()
            watcher.queue.put_nowait(None)
            dropped += 1
        return dropped

    def open_watches(self) -> list[tuple[str, str]]:
        """(user, path?query) of every open watch stream."""
        return sorted((w.user, w.target) for w in self._watchers)

    def _serve_token_request(
        self, request: rendering.Request, rt: ResourceType, ns: str | None, name: str
    ) -> aiohttp.web.Response:
        """``POST .../serviceaccounts/<name>/token``: a token of the ServiceAccount, bound to it
        and to ``spec.boundObjectRef`` (a Pod) if given."""
        if request.method != enums.method.POST:
            raise ApiError(
                status=405, reason="MethodNotAllowed", message="only POST is supported", details={}
            )
        account = self.get_object(rt, ns, name)
        if account is None:
            raise not_found(rt, name)
        body = request.data if isinstance(request.data, Mapping) else {}
        spec = dict(body.get("spec") or {})
        uids = [account["metadata"]["uid"]]
        bound = spec.get("boundObjectRef") or {}
        if bound.get("uid"):
            if bound["uid"] not in self._uids:
                raise bad_request(
                    f'{bound.get("kind", "object")} "{bound.get("name")}" with uid {bound["uid"]} not found'
                )
            uids.append(bound["uid"])
        seconds = int(spec.get("expirationSeconds") or 3600)
        spec["expirationSeconds"] = seconds
        token = f"emulator.{secrets.token_urlsafe(24)}"
        expires = semantics.rfc3339_after(seconds)
        self._tokens[token] = _Token(rbac.service_account_user(ns or "default", name), tuple(uids), expires)
        return self._json(
            {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": semantics.now_rfc3339()},
                "spec": spec,
                "status": {"token": token, "expirationTimestamp": expires},
            },
            status=201,
        )

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # User-defined kmock reactions (not kmock's own fallbacks) go first, as in kmock.
        user_payloads = [p for p in self._payloads if -math.inf not in p.priorities]
        user_payloads.sort(key=lambda p: tuple(-x for x in p.priorities))
        for payload in user_payloads:
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        return await self._serve(request)

    async def _serve(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path.rstrip("/") or "/"
        method = request.method
        if method == enums.method.GET:
            if path == "/":
                return self._json({"paths": self._root_paths()})
            if path == "/version":
                return self._json(SERVER_VERSION)
            if path in ("/healthz", "/livez", "/readyz"):
                return aiohttp.web.Response(text="ok")
            if path == "/api":
                return self._json(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": request.url.host or "127.0.0.1"}
                        ],
                    }
                )
            if path == "/apis":
                return self._json(self._api_group_list())
            if path.startswith("/apis/") and path.count("/") == 2:
                return self._json(self._api_group(path.split("/")[2]))
        parsed = parse_api_path(path)
        if parsed.group is None:
            raise not_found(None)
        if method == enums.method.GET and parsed.plural is None:
            return self._json(self._api_resource_list(parsed.group, parsed.version or ""))
        rt = self.lookup(parsed.group, parsed.version or "", parsed.plural or "")
        if rt is None:
            raise not_found(None)
        if parsed.namespace is not None and not rt.namespaced:
            raise not_found(None)
        return await self._serve_resource(request, rt, parsed)

    @staticmethod
    def _json(payload: Any, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=json.dumps(payload), status=status, content_type="application/json")

    # ---------------------------------------------------------------------------------------------
    # Resource types: the bundled built-ins (kmock's data) and those registered by CRDs
    # ---------------------------------------------------------------------------------------------

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        if (group, version, plural) in self._crd_types:
            return self._crd_types[group, version, plural]
        ref = kmock.resource(group, version, plural)
        if ref not in self.resources:  # NB: `in` does not auto-create, unlike [] on ResourcesArray
            return None
        info = self.resources[ref]
        return ResourceType(
            group=group,
            version=version,
            plural=plural,
            kind=info.kind or plural.capitalize(),
            singular=info.singular or (info.kind or plural).lower(),
            namespaced=bool(info.namespaced),
            verbs=tuple(sorted(info.verbs)) or ALL_VERBS,
            shortnames=tuple(sorted(info.shortnames)),
            categories=tuple(sorted(info.categories)),
            subresources=frozenset(info.subresources),
        )

    def resource_types(self) -> list[ResourceType]:
        types = [
            self.lookup(ref.group, ref.version, ref.plural)
            for ref in self.resources
            if isinstance(ref.group, str) and isinstance(ref.version, str) and isinstance(ref.plural, str)
        ]
        return [rt for rt in types if rt is not None] + list(self._crd_types.values())

    def lookup_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self.resource_types():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def _group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, set[str]] = collections.defaultdict(set)
        for rt in self.resource_types():
            groups[rt.group].add(rt.version)
        return {group: sorted(versions, key=semantics.version_priority) for group, versions in groups.items()}

    def _root_paths(self) -> list[str]:
        paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/livez", "/readyz"}
        for group, versions in self._group_versions().items():
            if group:
                paths.add(f"/apis/{group}")
                paths.update(f"/apis/{group}/{version}" for version in versions)
        return sorted(paths)

    def _api_group(self, group: str) -> dict[str, Any]:
        versions = self._group_versions().get(group)
        if not versions:
            raise not_found(None)
        entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _api_group_list(self) -> dict[str, Any]:
        groups = [self._api_group(group) for group in sorted(self._group_versions()) if group]
        for group in groups:
            del group["kind"], group["apiVersion"]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _api_resource_list(self, group: str, version: str) -> dict[str, Any]:
        types = [rt for rt in self.resource_types() if rt.group == group and rt.version == version]
        if not types:
            raise not_found(None)
        resources: list[dict[str, Any]] = []
        for rt in sorted(types, key=lambda rt: rt.plural):
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.verbs),
            }
            if rt.shortnames:
                entry["shortNames"] = list(rt.shortnames)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            # Subresources carry no short names/categories: kubectl would find them ambiguous.
            for sub in sorted(rt.subresources):
                sub_entry = {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
                if sub == "scale":
                    sub_entry.update(group="autoscaling", version="v1", kind="Scale")
                elif sub != "status":
                    sub_entry["verbs"] = ["get"] if sub == "log" else ["create", "get"]
                resources.append(sub_entry)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # ---------------------------------------------------------------------------------------------
    # Storage: every write goes through _commit(), which bumps the resourceVersion,
    # records the event for watch resumption, and notifies the open watch streams.
    # ---------------------------------------------------------------------------------------------

    def get_object(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The current state of an object (a deep copy), or None if absent."""
        key: EmulatorKey = (rt.storage, namespace if rt.namespaced else None, name)
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else self._as_version(rt, copy.deepcopy(obj.raw))

    def list_objects(self, rt: ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        result = []
        for (ref, ns, _name), obj in self._objects.items():
            if ref == rt.storage and not obj.deleted and (namespace is None or ns == namespace):
                result.append(self._as_version(rt, copy.deepcopy(obj.raw)))
        return sorted(result, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    @staticmethod
    def _as_version(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Serve an object in the requested version (no conversion but the apiVersion)."""
        obj["apiVersion"] = rt.api_version
        obj.setdefault("kind", rt.kind)
        return obj

    def _commit(
        self, rt: ResourceType, etype: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Store a new state of an object (or its deletion) and notify the watchers."""
        meta = obj["metadata"]
        key: EmulatorKey = (rt.storage, meta.get("namespace"), meta["name"])
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        obj["apiVersion"], obj["kind"] = rt.storage_api_version, rt.kind
        if etype == "ADDED":
            self.creations[f"{rt.storage_api_version}/{rt.kind}", meta.get("namespace"), meta["name"]] += 1
            if key in self._objects:
                self._objects[key].create(copy.deepcopy(obj))
            else:
                self._objects[key] = copy.deepcopy(obj)
            self._uids[meta["uid"]] = key
        elif etype == "MODIFIED":
            self._objects[key].history.append(copy.deepcopy(obj))
        else:
            self._objects[key].delete()
            self._uids.pop(meta.get("uid", ""), None)
            self._deleted_uids.add(meta.get("uid", ""))
            for applied_key in [k for k in self._applied if k[0] == key]:
                del self._applied[applied_key]
        if len(self._events) == self._events.maxlen:
            self._expired_rv = self._events[0][0]
        self._events.append((self._rv, rt.storage, etype, copy.deepcopy(obj), copy.deepcopy(old)))
        for watcher in list(self._watchers):
            if watcher.storage == rt.storage:
                event = watcher.event_for(etype, obj, old)
                if event is not None:
                    watcher.queue.put_nowait(copy.deepcopy(event))
        self._after_commit(rt, etype, obj, old)
        return obj

    def _spawn(self, coro: Any) -> None:
        """Run a background activity (GC, namespace termination) tied to the emulator's lifetime."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Stop the background activities and end all watch streams (before the server stops)."""
        self._closing = True
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # ---------------------------------------------------------------------------------------------
    # Object-level operations (usable directly from the emulator's loop, e.g. by tests)
    # ---------------------------------------------------------------------------------------------

    def create_object(
        self, rt: ResourceType, body: Mapping[str, Any], namespace: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(rt, None, "metadata.name: Required value: name or generateName is required")
            for _ in range(100):
                meta["name"] = meta["generateName"] + _random_suffix()
                if self.get_object(rt, meta.get("namespace"), meta["name"]) is None:
                    break
        if self.get_object(rt, meta.get("namespace"), meta["name"]) is not None:
            raise ApiError(
                status=409,
                reason="AlreadyExists",
                message=f'{rt.qualified} "{meta["name"]}" already exists',
                details={"name": meta["name"], "group": rt.group, "kind": rt.plural},
            )
        for server_field in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = semantics.now_rfc3339()
        if rt.printer_columns is not None or ("spec" in obj and rt.kind != "Namespace"):
            meta["generation"] = 1  # as kinds with a spec have it; ConfigMaps & co. have none
        if "status" in rt.subresources:
            obj.pop("status", None)  # the status of a new object is the controllers' business
        self._default_object(rt, obj)
        if dry_run:
            return self._as_version(rt, obj)
        stored = self._commit(rt, "ADDED", obj, None)
        owners = [ref.get("uid") for ref in meta.get("ownerReferences") or []]
        if owners and not self._closing and all(uid in self._deleted_uids for uid in owners):
            # Created for owners that are gone (a controller acting on a stale view): the garbage
            # collector deletes such dependents, as in Kubernetes. (Owners never stored are left
            # alone: tests create children of made-up owners.)
            self._spawn(self._collect_orphan(rt, meta.get("namespace"), meta["name"], meta["uid"]))
        return self._as_version(rt, stored)

    def replace_object(
        self,
        rt: ResourceType,
        current: dict[str, Any],
        new: dict[str, Any],
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Write a new state of an existing object, keeping the server-owned metadata."""
        old_meta = current["metadata"]
        new = copy.deepcopy(new)
        expected_rv = (new.get("metadata") or {}).get("resourceVersion")
        if expected_rv and expected_rv != old_meta.get("resourceVersion"):
            raise conflict(rt, old_meta["name"])
        if subresource == "status":
            # Writes to /status change the status only; everything else is kept as it was.
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            meta = result.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise bad_request("metadata must be an object")
            for owned in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if owned in old_meta:
                    meta[owned] = old_meta[owned]
                else:
                    meta.pop(owned, None)
            if "status" in rt.subresources:  # main-resource writes cannot change the status
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
            self._default_object(rt, result)
        with_status = "status" in rt.subresources
        if "generation" in old_meta and _spec_part(result, with_status) != _spec_part(current, with_status):
            result["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        if rt.kind == "CustomResourceDefinition" and rt.group == CRD_GROUP:
            self._validate_crd(result)
            result["status"] = self._crd_status(result)
        if _strip_volatile(result) == _strip_volatile(current):
            return current  # a no-op write: no new resourceVersion, no event
        if dry_run:
            return result
        stored = self._commit(rt, "MODIFIED", result, current)
        meta = stored["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._commit(rt, "DELETED", copy.deepcopy(stored), stored)  # the last finalizer is gone
        return self._as_version(rt, stored)

    def delete_object(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        propagation: str | None = None,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        current = self.get_object(rt, namespace, name)
        if current is None:
            raise not_found(rt, name)
        meta = current["metadata"]
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
            raise conflict(
                rt,
                name,
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {meta.get('uid')}",
            )
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta.get(
            "resourceVersion"
        ):
            raise conflict(rt, name)
        if dry_run:
            return current
        if rt.plural == "namespaces" and rt.group == CORE_GROUP:
            return self._terminate_namespace(rt, current)
        if propagation == "Foreground":  # dependents go first (synchronously, in this emulation)
            self._delete_dependents(meta["uid"], "Foreground")
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = semantics.now_rfc3339()
            updated["metadata"]["deletionGracePeriodSeconds"] = 0
            if "generation" in meta:
                updated["metadata"]["generation"] = int(meta["generation"]) + 1
            return self._as_version(rt, self._commit(rt, "MODIFIED", updated, current))
        deleted = self._commit(rt, "DELETED", copy.deepcopy(current), current)
        if propagation == "Orphan":
            self._orphan_dependents(meta["uid"])
        return self._as_version(rt, deleted)

    # ---------------------------------------------------------------------------------------------
    # Side effects of writes: CRD registration, garbage collection, namespace termination
    # ---------------------------------------------------------------------------------------------

    def _default_object(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """A few defaults of the built-in kinds that controllers and kubectl rely upon."""
        key = (rt.group, rt.plural)
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
        if key == ("", "namespaces"):
            obj.setdefault("status", {}).setdefault("phase", "Active")
        elif key == ("", "pods"):
            obj.setdefault("status", {}).setdefault("phase", "Pending")
            if spec is not None:
                spec.setdefault("restartPolicy", "Always")
                spec.setdefault("terminationGracePeriodSeconds", 30)
        elif key == ("apps", "deployments") and spec is not None:
            spec.setdefault("replicas", 1)
        elif key == ("batch", "jobs") and spec is not None:
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            uid = obj["metadata"].get("uid")
            if uid and not spec.get("selector") and not spec.get("manualSelector"):
                # As the API server does: select the Job's own pods by its uid.
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
                labels.update(
                    {
                        "batch.kubernetes.io/controller-uid": uid,
                        "controller-uid": uid,
                        "batch.kubernetes.io/job-name": obj["metadata"]["name"],
                        "job-name": obj["metadata"]["name"],
                    }
                )
        elif key == ("", "services") and spec is not None:
            spec.setdefault("type", "ClusterIP")
        elif key == (CRD_GROUP, "customresourcedefinitions"):
            self._validate_crd(obj)
            obj["status"] = self._crd_status(obj)

    def _after_commit(
        self, rt: ResourceType, etype: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        if rt.group == RBAC_GROUP:
            self._rbac_version += 1
        if rt.group == CORE_GROUP and rt.plural == "namespaces" and etype == "ADDED":
            # As the ServiceAccount controller does: every namespace has a "default" account.
            accounts = self.lookup(CORE_GROUP, "v1", "serviceaccounts")
            name = obj["metadata"]["name"]
            if accounts is not None and self.get_object(accounts, name, "default") is None:
                self.create_object(accounts, {"metadata": {"name": "default"}}, name)
        if rt.group == CRD_GROUP and rt.plural == "customresourcedefinitions":
            if etype == "DELETED":
                self._unregister_crd(obj)
            else:
                self._register_crd(obj)
        if etype == "DELETED" and not self._closing:
            uid = obj["metadata"].get("uid")
            if uid and any(self._has_owner(o, uid) for o in self._all_objects()):
                self._spawn(self._collect_garbage(uid))

    def _all_objects(self) -> Iterable[dict[str, Any]]:
        for obj in self._objects.values():
            if not obj.deleted:
                yield obj.raw

    @staticmethod
    def _has_owner(obj: Mapping[str, Any], uid: str) -> bool:
        return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])

    def _type_of(self, obj: Mapping[str, Any]) -> ResourceType | None:
        return self.lookup_kind(obj.get("apiVersion", ""), obj.get("kind", ""))

    async def _collect_garbage(self, uid: str) -> None:
        """Background cascading deletion, as the garbage collector controller does it."""
        await asyncio.sleep(0)  # let the owner's DELETE response go out first
        self._delete_dependents(uid, "Background")

    async def _collect_orphan(self, rt: ResourceType, namespace: str | None, name: str, uid: str) -> None:
        await asyncio.sleep(0)  # let the creation's response go out first
        current = self.get_object(rt, namespace, name)
        if current is None or current["metadata"].get("uid") != uid:
            return
        refs = current["metadata"].get("ownerReferences") or []
        if refs and all(ref.get("uid") in self._deleted_uids for ref in refs):
            try:
                self.delete_object(rt, namespace, name, propagation="Background")
            except ApiError:
                pass  # deleted meanwhile

    def _delete_dependents(self, uid: str, propagation: str) -> None:
        for dependent in [o for o in self._all_objects() if self._has_owner(o, uid)]:
            rt = self._type_of(dependent)
            if rt is None:
                continue
            meta = dependent["metadata"]
            alive_owners = [
                ref
                for ref in meta.get("ownerReferences") or []
                if ref.get("uid") != uid and ref.get("uid") in self._uids
            ]
            try:
                if alive_owners:  # other owners remain: only drop the dangling reference
                    current = self.get_object(rt, meta.get("namespace"), meta["name"])
                    if current is not None:
                        updated = copy.deepcopy(current)
                        updated["metadata"]["ownerReferences"] = [
                            ref for ref in meta["ownerReferences"] if ref.get("uid") != uid
                        ]
                        self.replace_object(rt, current, updated)
                else:
                    self.delete_object(rt, meta.get("namespace"), meta["name"], propagation=propagation)
            except ApiError:
                pass  # deleted concurrently: nothing to collect

    def _orphan_dependents(self, uid: str) -> None:
        for dependent in [o for o in self._all_objects() if self._has_owner(o, uid)]:
            rt = self._type_of(dependent)
            current = rt and self.get_object(
                rt, dependent["metadata"].get("namespace"), dependent["metadata"]["name"]
            )
            if rt is not None and current is not None:
                updated = copy.deepcopy(current)
                updated["metadata"]["ownerReferences"] = [
                    ref for ref in current["metadata"]["ownerReferences"] if ref.get("uid") != uid
                ]
                if not updated["metadata"]["ownerReferences"]:
                    del updated["metadata"]["ownerReferences"]
                self.replace_object(rt, current, updated)

    def _terminate_namespace(self, rt: ResourceType, current: dict[str, Any]) -> dict[str, Any]:
        """Namespaces go Terminating, lose all their contents, then disappear (in the background)."""
        if current["metadata"].get("deletionTimestamp"):
            return current
        updated = copy.deepcopy(current)
        updated["metadata"]["deletionTimestamp"] = semantics.now_rfc3339()
        updated.setdefault("status", {})["phase"] = "Terminating"
        stored = self._commit(rt, "MODIFIED", updated, current)
        self._spawn(self._empty_namespace(rt, current["metadata"]["name"]))
        return stored

    async def _empty_namespace(self, ns_type: ResourceType, namespace: str) -> None:
        while True:
            remaining = [
                (ref, name)
                for (ref, ns, name), obj in self._objects.items()
                if ns == namespace and not obj.deleted
            ]
            for ref, name in remaining:
                rt = self.lookup(ref.group, ref.version, ref.plural)
                obj = rt and self.get_object(rt, namespace, name)
                if rt is not None and obj is not None and not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.delete_object(rt, namespace, name, propagation="Background")
                    except ApiError:
                        pass
            if not remaining:
                break
            await asyncio.sleep(0.1)  # objects with finalizers are waited for, as in Kubernetes
        current = self.get_object(ns_type, None, namespace)
        if current is not None:
            self._commit(ns_type, "DELETED", copy.deepcopy(current), current)

    # CustomResourceDefinitions ---------------------------------------------------------------------

    def _validate_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        name = crd.get("metadata", {}).get("name")
        crd_type = self.lookup(CRD_GROUP, "v1", "customresourcedefinitions")
        assert crd_type is not None
        if not spec.get("group") or not names.get("plural") or not names.get("kind"):
            raise invalid(crd_type, name, "spec.group, spec.names.plural and spec.names.kind are required")
        if name != f"{names['plural']}.{spec['group']}":
            raise invalid(
                crd_type, name, 'metadata.name: Invalid value: must be spec.names.plural+"."+spec.group'
            )
        if not spec.get("versions"):
            raise invalid(crd_type, name, "spec.versions: Required value")

    @staticmethod
    def _crd_status(crd: Mapping[str, Any]) -> dict[str, Any]:
        """A CRD is accepted & established at once (real servers take a moment for it)."""
        spec = crd["spec"]
        now = semantics.now_rfc3339()
        names = dict(spec["names"])
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", f"{names['kind']}List")
        old_conditions = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}
        conditions = []
        for ctype, reason, message in [
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ]:
            since = old_conditions.get(ctype, {}).get("lastTransitionTime", now)
            conditions.append(
                {
                    "type": ctype,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": since,
                }
            )
        stored = [v["name"] for v in spec["versions"] if v.get("storage")] or [spec["versions"][0]["name"]]
        return {"acceptedNames": names, "conditions": conditions, "storedVersions": stored}

    def _register_crd(self, crd: Mapping[str, Any]) -> None:
        self._unregister_crd(crd, keep_objects=True)
        spec = crd["spec"]
        names = spec["names"]
        storage = next((v["name"] for v in spec["versions"] if v.get("storage")), spec["versions"][0]["name"])
        types = []
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            subresources = version.get("subresources") or spec.get("subresources") or {}
            scale = subresources.get("scale")
            types.append(
                ResourceType(
                    group=spec["group"],
                    version=version["name"],
                    plural=names["plural"],
                    kind=names["kind"],
                    singular=names.get("singular") or names["kind"].lower(),
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    shortnames=tuple(names.get("shortNames") or ()),
                    categories=tuple(names.get("categories") or ()),
                    subresources=frozenset(k for k in subresources if k in ("status", "scale")),
                    printer_columns=list(
                        version.get("additionalPrinterColumns") or spec.get("additionalPrinterColumns") or []
                    ),
                    storage_version=storage,
                    scale_paths=(
                        scale["specReplicasPath"],
                        scale["statusReplicasPath"],
                        scale.get("labelSelectorPath"),
                    )
                    if scale
                    else None,
                )
            )
        for rt in types:
            self._crd_types[rt.group, rt.version, rt.plural] = rt
        self._crd_types_by_crd[crd["metadata"]["name"]] = types

    def _unregister_crd(self, crd: Mapping[str, Any], keep_objects: bool = False) -> None:
        types = self._crd_types_by_crd.pop(crd["metadata"]["name"], [])
        for rt in types:
            self._crd_types.pop((rt.group, rt.version, rt.plural), None)
        if types and not keep_objects:  # the custom objects go away with their definition
            rt = types[0]
            for obj in self._list_storage(rt):
                self._commit(rt, "DELETED", obj, obj)

    def _list_storage(self, rt: ResourceType) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj.raw)
            for (ref, _, _), obj in self._objects.items()
            if ref == rt.storage and not obj.deleted
        ]

    # ---------------------------------------------------------------------------------------------
    # Serving the resource endpoints
    # ---------------------------------------------------------------------------------------------

    async def _serve_resource(
        self, request: rendering.Request, rt: ResourceType, parsed: _Request
    ) -> aiohttp.web.StreamResponse:
        method, params, ns, name, sub = (
            request.method,
            request.params,
            parsed.namespace,
            parsed.name,
            parsed.subresource,
        )
        dry_run = bool(params.get("dryRun"))
        if sub is not None and sub not in rt.subresources:
            raise not_found(None)
        if sub == "log":
            return self._serve_pod_log(rt, ns, name or "", params)
        if sub == "token" and rt.group == CORE_GROUP and rt.plural == "serviceaccounts":
            return self._serve_token_request(request, rt, ns, name or "")
        if sub == "scale":
            return self._serve_scale(request, rt, ns, name or "")
        if method == enums.method.GET and (is_true(params.get("watch"))):
            return await self._serve_watch(request, rt, ns, name)
        if method == enums.method.GET and name is None:
            return self._serve_list(request, rt, ns)
        if method == enums.method.GET:
            obj = self.get_object(rt, ns, name)
            if obj is None:
                raise not_found(rt, name)
            return self._respond_object(request, rt, obj)
        if method == enums.method.POST and name is None:
            obj = self.create_object(rt, self._body(request), ns, dry_run=dry_run)
            return self._json(obj, status=201)
        if method == enums.method.PUT and name is not None:
            body = self._body(request)
            if (body.get("metadata") or {}).get("name", name) != name:
                raise bad_request("the name of the object does not match the name on the URL")
            current = self.get_object(rt, ns, name)
            if current is None:
                raise not_found(rt, name)
            return self._json(self.replace_object(rt, current, body, subresource=sub, dry_run=dry_run))
        if method == enums.method.PATCH and name is not None:
            return self._serve_patch(request, rt, ns, name, sub, dry_run)
        if method == enums.method.DELETE:
            options = request.data if isinstance(request.data, Mapping) else {}
            propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
            if options.get("orphanDependents") is True:
                propagation = "Orphan"
            if name is not None:
                obj = self.delete_object(
                    rt,
                    ns,
                    name,
                    propagation=propagation,
                    preconditions=options.get("preconditions"),
                    dry_run=dry_run,
                )
                return self._json(obj)
            deleted = [
                self.delete_object(
                    rt,
                    o["metadata"].get("namespace"),
                    o["metadata"]["name"],
                    propagation=propagation,
                    dry_run=dry_run,
                )
                for o in self._select(request, rt, ns)
            ]
            return self._json(self._list_body(rt, deleted))
        raise ApiError(
            status=405, reason="MethodNotAllowed", message=f"{method} is not supported here", details={}
        )

    @staticmethod
    def _body(request: rendering.Request) -> dict[str, Any]:
        if not isinstance(request.data, dict):
            raise bad_request("the request body must be a JSON (or YAML) object")
        return request.data

    def _select(
        self, request: rendering.Request, rt: ResourceType, namespace: str | None
    ) -> list[dict[str, Any]]:
        try:
            labels = semantics.parse_label_selector(request.params.get("labelSelector"))
            fields = semantics.parse_field_selector(request.params.get("fieldSelector"))
        except semantics.SelectorError as e:
            raise bad_request(str(e)) from e
        return [
            obj
            for obj in self.list_objects(rt, namespace)
            if semantics.match_labels(labels, obj["metadata"].get("labels"))
            and semantics.match_fields(fields, obj)
        ]

    def _list_body(self, rt: ResourceType, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _serve_list(
        self, request: rendering.Request, rt: ResourceType, ns: str | None
    ) -> aiohttp.web.Response:
        items = self._select(request, rt, ns)
        if self._wants_table(request):
            return self._json(self._table(rt, items, request.params))
        return self._json(self._list_body(rt, items))

    def _respond_object(
        self, request: rendering.Request, rt: ResourceType, obj: dict[str, Any]
    ) -> aiohttp.web.Response:
        if self._wants_table(request):
            return self._json(self._table(rt, [obj], request.params))
        return self._json(obj)

    def _serve_patch(
        self,
        request: rendering.Request,
        rt: ResourceType,
        ns: str | None,
        name: str,
        sub: str | None,
        dry_run: bool,
    ) -> aiohttp.web.Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        patch = request.data
        current = self.get_object(rt, ns, name)
        if content_type == "application/apply-patch+yaml":
            return self._serve_apply(request, rt, ns, name, sub, current, dry_run)
        if current is None:
            raise not_found(rt, name)
        try:
            if content_type == "application/json-patch+json":
                patched = semantics.json_patch(current, patch)
            elif content_type == "application/merge-patch+json":
                patched = semantics.json_merge_patch(current, self._patch_dict(patch))
            elif content_type == "application/strategic-merge-patch+json":
                if rt.printer_columns is not None:  # custom resources do not support it in Kubernetes either
                    raise ApiError(
                        status=415,
                        reason="UnsupportedMediaType",
                        details={},
                        message="the body of the request was in an unknown format - accepted media types "
                        "include: application/json-patch+json, application/merge-patch+json, "
                        "application/apply-patch+yaml",
                    )
                patched = semantics.strategic_merge_patch(current, self._patch_dict(patch))
            else:
                raise ApiError(
                    status=415,
                    reason="UnsupportedMediaType",
                    details={},
                    message=f"the patch content type {content_type!r} is not supported",
                )
        except semantics.PatchError as e:
            if e.code == 422:
                raise invalid(rt, name, str(e)) from e
            raise bad_request(str(e)) from e
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        # A JSON patch's "test" op on the resourceVersion is the precondition; the result keeps it,
        # so it must not be re-checked as a stale resourceVersion: drop it unless a merge patch set it.
        if content_type == "application/json-patch+json":
            patched.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self._json(self.replace_object(rt, current, patched, subresource=sub, dry_run=dry_run))

    @staticmethod
    def _patch_dict(patch: Any) -> dict[str, Any]:
        if not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        return patch

    def _serve_apply(
        self,
        request: rendering.Request,
        rt: ResourceType,
        ns: str | None,
        name: str,
        sub: str | None,
        current: dict[str, Any] | None,
        dry_run: bool,
    ) -> aiohttp.web.Response:
        """Server-side apply (``kubectl apply --server-side``), simplified: see
        semantics.server_side_apply."""
        manager = request.params.get("fieldManager")
        if not manager:
            raise bad_request("PATCH requests with the apply content type require the fieldManager parameter")
        config = self._body(request)
        if (config.get("metadata") or {}).get("name", name) != name:
            raise bad_request("the name of the object does not match the name on the URL")
        if current is None:
            if sub is not None:
                raise not_found(rt, name)
            created = self.create_object(
                rt, dict(config, metadata=dict(config.get("metadata") or {}, name=name)), ns, dry_run=dry_run
            )
            if not dry_run:
                key: EmulatorKey = (rt.storage, created["metadata"].get("namespace"), name)
                self._applied[key, manager] = semantics.applied_config(config)
            return self._json(created, status=201)
        key = (rt.storage, current["metadata"].get("namespace"), name)
        merged = semantics.server_side_apply(current, config, self._applied.get((key, manager)))
        expected_rv = (config.get("metadata") or {}).get("resourceVersion")
        merged["metadata"]["resourceVersion"] = expected_rv or current["metadata"]["resourceVersion"]
        result = self.replace_object(rt, current, merged, subresource=sub, dry_run=dry_run)
        if not dry_run:
            self._applied[key, manager] = semantics.applied_config(config)
        return self._json(result)

    def _serve_pod_log(
        self, rt: ResourceType, ns: str | None, name: str, params: Mapping[str, str]
    ) -> aiohttp.web.Response:
        if self.get_object(rt, ns, name) is None:
            raise not_found(rt, name)
        text = (
            self.pod_log_provider(ns or "default", name, params.get("container"), params)
            if self.pod_log_provider is not None
            else None
        )
        if text is None:
            raise ApiError(
                status=400,
                reason="BadRequest",
                details={},
                message=f'container logs of pod "{name}" are not available',
            )
        if params.get("tailLines"):
            text = "".join(text.splitlines(keepends=True)[-int(params["tailLines"]) :])
        return aiohttp.web.Response(text=text, content_type="text/plain")

    def _scale_paths(self, rt: ResourceType) -> tuple[str, str, str | None]:
        if rt.scale_paths is not None:
            return rt.scale_paths
        return ".spec.replicas", ".status.replicas", None

    def _serve_scale(
        self, request: rendering.Request, rt: ResourceType, ns: str | None, name: str
    ) -> aiohttp.web.Response:
        """The autoscaling/v1 Scale view of an object (``kubectl scale``)."""
        current = self.get_object(rt, ns, name)
        if current is None:
            raise not_found(rt, name)
        spec_path, status_path, selector_path = self._scale_paths(rt)

        def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
            spec_values = semantics.jsonpath(obj, spec_path)
            status_values = semantics.jsonpath(obj, status_path)
            selector = semantics.jsonpath(obj, selector_path) if selector_path else []
            meta = obj["metadata"]
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    k: meta[k]
                    for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                    if k in meta
                },
                "spec": {"replicas": spec_values[0] if spec_values else 0},
                "status": {
                    "replicas": status_values[0] if status_values else 0,
                    **({"selector": selector[0]} if selector else {}),
                },
            }

        if request.method == enums.method.GET:
            return self._json(scale_of(current))
        scale = scale_of(current)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            if request.method == enums.method.PUT:
                scale = self._body(request)
            elif content_type == "application/json-patch+json":
                scale = semantics.json_patch(scale, request.data)
            else:
                scale = semantics.json_merge_patch(scale, self._body(request))
        except semantics.PatchError as e:
            raise invalid(rt, name, str(e)) from e
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid(rt, name, "spec.replicas must be a non-negative integer")
        updated = copy.deepcopy(current)
        target = updated
        parts = spec_path.strip(".").split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = replicas
        expected_rv = (scale.get("metadata") or {}).get("resourceVersion")
        updated["metadata"]["resourceVersion"] = expected_rv or current["metadata"]["resourceVersion"]
        return self._json(scale_of(self.replace_object(rt, current, updated)))

    # Watching ---------------------------------------------------------------------------------------

    async def _serve_watch(
        self, request: rendering.Request, rt: ResourceType, ns: str | None, name: str | None
    ) -> aiohttp.web.StreamResponse:
        params = request.params
        try:
            labels = semantics.parse_label_selector(params.get("labelSelector"))
            fields = semantics.parse_field_selector(params.get("fieldSelector"))
        except semantics.SelectorError as e:
            raise bad_request(str(e)) from e
        assert request._raw_request is not None
        user = request._raw_request.get(USER_KEY) or rbac.ADMIN
        watcher = _Watcher(
            storage=rt.storage,
            namespace=ns,
            name=name,
            labels=labels,
            fields=fields,
            user=user.name,
            target=request._raw_request.path_qs,
        )
        since = params.get("resourceVersion") or "0"
        initial: list[dict[str, Any]] = []
        # Between taking the snapshot/replay and registering the watcher there is no `await`,
        # so no event can be missed or duplicated.
        if since == "0" or is_true(params.get("sendInitialEvents")):
            initial = [
                {"type": "ADDED", "object": obj} for obj in self.list_objects(rt) if watcher.matches(obj)
            ]
            if is_true(params.get("sendInitialEvents")):
                initial.append(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": rt.kind,
                            "apiVersion": rt.api_version,
                            "metadata": {
                                "resourceVersion": str(self._rv),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }
                )
        else:
            try:
                since_rv = int(since)
            except ValueError:
                raise bad_request(f"invalid resourceVersion: {since!r}") from None
            if since_rv < self._expired_rv:
                initial = [
                    {
                        "type": "ERROR",
                        "object": {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "metadata": {},
                            "status": "Failure",
                            "code": 410,
                            "reason": "Expired",
                            "message": f"too old resource version: {since_rv} ({self._expired_rv})",
                        },
                    }
                ]
            else:
                for rv, storage, etype, obj, old in self._events:
                    if rv > since_rv and storage == rt.storage:
                        event = watcher.event_for(etype, obj, old)
                        if event is not None:
                            initial.append(copy.deepcopy(event))
        if not (initial and initial[0]["type"] == "ERROR"):
            self._watchers.add(watcher)
        for event in initial:
            watcher.queue.put_nowait(event)
        if initial and initial[0]["type"] == "ERROR":
            watcher.queue.put_nowait(None)

        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request._raw_request)
        watcher.transport = request._raw_request.transport
        loop = asyncio.get_running_loop()
        timeout = float(params.get("timeoutSeconds") or 1800)
        deadline = loop.time() + timeout
        table = self._wants_table(request)
        first_table = True
        try:
            while not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                transport = request._raw_request.transport
                if transport is None or transport.is_closing():
                    break  # the client has gone away
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=min(remaining, 1.0))
                except TimeoutError:
                    continue
                if event is None:
                    break
                obj = event["object"]
                if event["type"] not in ("ERROR", "BOOKMARK"):
                    obj = self._as_version(rt, obj)
                    if table:
                        obj = self._table(rt, [obj], params, with_columns=first_table)
                        first_table = False
                await response.write(json.dumps({"type": event["type"], "object": obj}).encode() + b"\n")
        except (ConnectionError, RuntimeError):
            pass  # the client disconnected mid-write
        finally:
            self._watchers.discard(watcher)
        try:
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return response

    # Tables for kubectl get -------------------------------------------------------------------------

    @staticmethod
    def _wants_table(request: rendering.Request) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    def _columns(self, rt: ResourceType) -> list[dict[str, Any]]:
        name_col = {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
        age_col = {
            "name": "Age",
            "type": "date",
            "format": "",
            "priority": 0,
            "description": "CreationTimestamp of the object.",
            "jsonPath": ".metadata.creationTimestamp",
        }
        if rt.printer_columns is not None:
            columns = [
                {
                    "name": c["name"],
                    "type": c.get("type", "string"),
                    "format": c.get("format", ""),
                    "description": c.get("description", ""),
                    "priority": c.get("priority", 0),
                    "jsonPath": c["jsonPath"],
                }
                for c in rt.printer_columns
            ]
            return [name_col] + (columns or [age_col])
        builtin = _BUILTIN_COLUMNS.get((rt.group, rt.plural), [])
        return (
            [name_col]
            + [
                {"name": n, "type": "string", "format": "", "description": "", "priority": p, "fn": fn}
                for n, p, fn in builtin
            ]
            + [age_col]
        )

    def _table(
        self,
        rt: ResourceType,
        objs: list[dict[str, Any]],
        params: Mapping[str, str],
        with_columns: bool = True,
    ) -> dict[str, Any]:
        columns = self._columns(rt)
        rows = []
        for obj in objs:
            cells: list[Any] = []
            for col in columns:
                if col.get("format") == "name":
                    cells.append(obj["metadata"]["name"])
                elif "fn" in col:
                    cells.append(col["fn"](obj))
                else:
                    cells.append(_cell(obj, col["jsonPath"], col["type"]))
            if params.get("includeObject") == "Object":
                embedded: dict[str, Any] = obj
            elif params.get("includeObject") == "None":
                embedded = {}
            else:
                embedded = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                }
            rows.append({"cells": cells, "object": embedded})
        defs = [{k: v for k, v in col.items() if k not in ("fn", "jsonPath")} for col in columns]
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self._rv)},
            "columnDefinitions": defs if with_columns else [],
            "rows": rows,
        }


def _cell(obj: Mapping[str, Any], path: str, ctype: str) -> Any:
    """A printer column's cell: the first JSONPath match, typed as the column says."""
    try:
        values = semantics.jsonpath(obj, path)
    except ValueError:
        return None
    if not values or values[0] is None:
        return None
    value = values[0]
    if ctype == "date":
        return semantics.human_age(value)
    if ctype == "integer":
        return int(value) if isinstance(value, (int, float)) else value
    if ctype == "number":
        return float(value) if isinstance(value, (int, float)) else value
    if ctype == "boolean":
        return bool(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return ",".join(str(v) for v in values) if len(values) > 1 else str(value)


def _pod_ready(pod: Mapping[str, Any]) -> str:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    total = len(pod.get("spec", {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(pod: Mapping[str, Any]) -> str:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status", {})
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            return state["waiting"]["reason"]
        if "terminated" in state and status.get("phase") not in ("Succeeded", "Failed"):
            return state["terminated"].get("reason") or "Terminated"
    if status.get("phase") == "Succeeded":
        return "Completed"
    if status.get("phase") == "Failed":
        return "Error"
    return status.get("phase") or "Pending"


def _service_ports(svc: Mapping[str, Any]) -> str:
    ports = svc.get("spec", {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _job_status(job: Mapping[str, Any]) -> str:
    conditions = {c.get("type"): c.get("status") for c in job.get("status", {}).get("conditions") or []}
    if conditions.get("Complete") == "True":
        return "Complete"
    if conditions.get("Failed") == "True":
        return "Failed"
    return "Running"


# Columns of `kubectl get` for a few built-in kinds (name, priority, value function); Name & Age are added.
_BUILTIN_COLUMNS: dict[tuple[str, str], list[tuple[str, int, Callable[[Mapping[str, Any]], Any]]]] = {
    ("", "pods"): [
        ("Ready", 0, _pod_ready),
        ("Status", 0, _pod_status),
        (
            "Restarts",
            0,
            lambda p: sum(
                s.get("restartCount", 0) for s in p.get("status", {}).get("containerStatuses") or []
            ),
        ),
        ("IP", 1, lambda p: p.get("status", {}).get("podIP") or "<none>"),
    ],
    ("apps", "deployments"): [
        (
            "Ready",
            0,
            lambda d: f"{d.get('status', {}).get('readyReplicas', 0)}/{d.get('spec', {}).get('replicas', 1)}",
        ),
        ("Up-to-date", 0, lambda d: d.get("status", {}).get("updatedReplicas", 0)),
        ("Available", 0, lambda d: d.get("status", {}).get("availableReplicas", 0)),
    ],
    ("batch", "jobs"): [
        ("Status", 0, _job_status),
        (
            "Completions",
            0,
            lambda j: f"{j.get('status', {}).get('succeeded', 0)}/{j.get('spec', {}).get('completions', 1)}",
        ),
    ],
    ("", "services"): [
        ("Type", 0, lambda s: s.get("spec", {}).get("type", "ClusterIP")),
        ("Cluster-IP", 0, lambda s: s.get("spec", {}).get("clusterIP") or "<none>"),
        ("Ports", 0, _service_ports),
    ],
    ("", "namespaces"): [("Status", 0, lambda n: n.get("status", {}).get("phase", "Active"))],
    ("", "configmaps"): [("Data", 0, lambda c: len(c.get("data") or {}) + len(c.get("binaryData") or {}))],
    ("", "secrets"): [
        ("Type", 0, lambda s: s.get("type", "Opaque")),
        ("Data", 0, lambda s: len(s.get("data") or {})),
    ],
}
