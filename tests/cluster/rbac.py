"""
Who is asking, and may they: the emulator's authentication and RBAC authorization, as pure
functions over plain dicts (the emulator feeds them its stored Roles and bindings).

Authentication (``ClusterEmulator._authenticate``) yields a ``UserInfo``:

* no ``Authorization`` header: the **cluster admin** (``system:admin`` in ``system:masters``),
  which is what the harness, kubectl with the test kubeconfig and the process kubelet are;
* ``Authorization: Bearer <token>`` with a token the emulator issued through the TokenRequest API
  (``POST .../serviceaccounts/<sa>/token``, as the kubelet does for every pod):
  ``system:serviceaccount:<ns>:<sa>`` in ``system:serviceaccounts``,
  ``system:serviceaccounts:<ns>`` and ``system:authenticated``; unknown tokens get 401;
* ``Impersonate-User``/``Impersonate-Group`` headers, honoured for ``system:masters`` only
  (``kubectl --as=...``).

Authorization (only with ``authorization="RBAC"`` on the emulator; the default is
``AlwaysAllow``) follows the RBAC authorizer of kube-apiserver for the request attributes that
``request_attributes`` derives as its RequestInfoFactory does: ``system:masters`` may do
anything; non-resource URLs (discovery, ``/version``, health) are allowed for every
authenticated user (the bootstrap ``system:discovery`` and ``system:public-info-viewer``
bindings); resource requests need a rule of a ClusterRole bound by a ClusterRoleBinding, or of a
Role/ClusterRole bound by a RoleBinding in the request's namespace, that matches the verb, the
API group, the resource (``plural`` or ``plural/subresource``, with ``*`` wildcards) and, when it
lists ``resourceNames``, the object's name. Denials are 403 ``Forbidden`` Status bodies worded
as kube-apiserver words them (``forbidden_message``).

Not emulated: ClusterRole aggregation, the escalation check on writes of Roles, non-resource URL
rules (``nonResourceURLs``) and the default ClusterRoles of a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity: its name and groups."""

    name: str
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return MASTERS in self.groups


ADMIN = UserInfo("system:admin", (MASTERS, AUTHENTICATED))


def service_account_user(namespace: str, name: str) -> UserInfo:
    """The identity of a ServiceAccount's tokens."""
    return UserInfo(
        f"{SA_PREFIX}{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


def impersonated(name: str, groups: Iterable[str] = ()) -> UserInfo:
    """The identity of an ``Impersonate-User``: a ServiceAccount's groups for a ServiceAccount name."""
    groups = tuple(groups)
    if name.startswith(SA_PREFIX) and not groups:
        namespace, _, sa = name[len(SA_PREFIX) :].partition(":")
        return service_account_user(namespace, sa)
    return UserInfo(name, (*groups, AUTHENTICATED) if AUTHENTICATED not in groups else groups)


@dataclass(frozen=True)
class Attributes:
    """What a request does, as the authorizer sees it (kube-apiserver's RequestInfo)."""

    verb: str
    resource_request: bool = True
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str | None = None
    name: str | None = None
    path: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _name_from_field_selector(selector: str | None) -> str | None:
    for term in (selector or "").split(","):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and key.strip() == "metadata.name":
            return value.strip()
    return None


def request_attributes(
    method: str,
    path: str,
    params: Mapping[str, str],
    group: str | None,
    plural: str | None,
    namespace: str | None,
    name: str | None,
    subresource: str | None,
) -> Attributes:
    """The verb and resource of a request, from its method, its parsed path and its query."""
    method = method.upper()
    if group is None or plural is None:
        verbs = {
            "GET": "get",
            "HEAD": "get",
            "POST": "post",
            "PUT": "put",
            "PATCH": "patch",
            "DELETE": "delete",
        }
        return Attributes(verb=verbs.get(method, method.lower()), resource_request=False, path=path)
    watching = params.get("watch") in ("true", "1")
    if method in ("GET", "HEAD"):
        verb = "watch" if watching else "get" if name else "list"
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    if verb in ("list", "watch") and not name:
        name = _name_from_field_selector(params.get("fieldSelector"))
    return Attributes(
        verb=verb,
        group=group,
        resource=plural,
        subresource=subresource or "",
        namespace=namespace,
        name=name,
        path=path,
    )


def _has(values: Iterable[str] | None, wanted: str) -> bool:
    values = list(values or [])
    return "*" in values or wanted in values


def _resource_matches(resources: Iterable[str] | None, attrs: Attributes) -> bool:
    for resource in resources or []:
        if resource in ("*", attrs.full_resource):
            return True
        if attrs.subresource and resource in (f"{attrs.resource}/*", f"*/{attrs.subresource}"):
            return True
    return False


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    """Whether one PolicyRule allows a resource request."""
    if not attrs.resource_request:
        return False  # nonResourceURLs rules are not emulated (discovery is always allowed)
    if not _has(rule.get("verbs"), attrs.verb) or not _has(rule.get("apiGroups"), attrs.group):
        return False
    if not _resource_matches(rule.get("resources"), attrs):
        return False
    names = rule.get("resourceNames") or []
    return not names or (attrs.name is not None and attrs.name in names)


def subject_matches(subject: Mapping[str, Any], user: UserInfo, binding_namespace: str | None) -> bool:
    """Whether a binding's subject is ``user`` (or one of its groups)."""
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"{SA_PREFIX}{namespace}:{name}"
    return False


@dataclass(frozen=True)
class Policy:
    """The RBAC objects of a cluster (plain dicts, as stored)."""

    roles: Mapping[tuple[str, str], Mapping[str, Any]]  # (namespace, name) -> Role
    cluster_roles: Mapping[str, Mapping[str, Any]]  # name -> ClusterRole
    role_bindings: list[Mapping[str, Any]]
    cluster_role_bindings: list[Mapping[str, Any]]

    @classmethod
    def from_objects(
        cls,
        roles: Iterable[Mapping[str, Any]],
        cluster_roles: Iterable[Mapping[str, Any]],
        role_bindings: Iterable[Mapping[str, Any]],
        cluster_role_bindings: Iterable[Mapping[str, Any]],
    ) -> Policy:
        return cls(
            roles={(r["metadata"].get("namespace"), r["metadata"]["name"]): r for r in roles},
            cluster_roles={r["metadata"]["name"]: r for r in cluster_roles},
            role_bindings=list(role_bindings),
            cluster_role_bindings=list(cluster_role_bindings),
        )

    def _role_rules(self, ref: Mapping[str, Any], namespace: str | None) -> list[Mapping[str, Any]]:
        if ref.get("kind") == "ClusterRole":
            role = self.cluster_roles.get(ref.get("name", ""))
        elif ref.get("kind") == "Role":
            role = self.roles.get((namespace or "", ref.get("name", "")))
        else:
            role = None
        return list((role or {}).get("rules") or [])

    def rules_for(self, user: UserInfo, namespace: str | None) -> list[Mapping[str, Any]]:
        """Every rule that applies to ``user`` in ``namespace`` (None: cluster scope)."""
        rules: list[Mapping[str, Any]] = []
        for binding in self.cluster_role_bindings:
            if any(subject_matches(s, user, None) for s in binding.get("subjects") or []):
                rules += self._role_rules(binding.get("roleRef") or {}, None)
        if namespace is not None:
            for binding in self.role_bindings:
                if binding["metadata"].get("namespace") != namespace:
                    continue
                if any(subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                    rules += self._role_rules(binding.get("roleRef") or {}, namespace)
        return rules

    def allows(self, user: UserInfo, attrs: Attributes) -> bool:
        """kube-apiserver's RBAC decision (plus the always-allowed discovery)."""
        if user.is_admin:
            return True
        if not attrs.resource_request:
            return AUTHENTICATED in user.groups
        return any(rule_allows(rule, attrs) for rule in self.rules_for(user, attrs.namespace))


def forbidden_message(user: UserInfo, attrs: Attributes) -> str:
    """The message of a 403, worded as kube-apiserver words it."""
    if not attrs.resource_request:
        return f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (
        f'{subject} is forbidden: User "{user.name}" cannot {attrs.verb} resource '
        f'"{attrs.full_resource}" in API group "{attrs.group}" {scope}'
    )


def forbidden_details(attrs: Attributes) -> dict[str, Any]:
    """The ``details`` of a 403 Status."""
    details: dict[str, Any] = {"group": attrs.group, "kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    return details
