"""
Tests of what the emulator adds for failure and permission testing: injected faults (429 with
Retry-After, 500, served-then-failed writes), dropped watch streams, ServiceAccount tokens
(TokenRequest), RBAC evaluation (as pure functions and through the API, with kube-apiserver's
403 Status bodies), impersonation, and the garbage collection of objects created for an owner
already gone. No kubelet: fast.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import pytest

pytestmark = pytest.mark.integration

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SA = "system:serviceaccount:default:robot"
MERGE = "application/merge-patch+json"


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def robot(cluster: Any, rbac: bool = True) -> dict[str, str]:
    """A ServiceAccount "robot" and the headers of its token; RBAC enforced if ``rbac``."""
    cluster.request("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "robot"}})
    if rbac:
        cluster.set_authorization("RBAC")
    return {"Authorization": f"Bearer {cluster.token('robot')}"}


ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "cm-reader", "namespace": "default"},
    "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["open"]},
    ],
}
BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "RoleBinding",
    "metadata": {"name": "robot-reads", "namespace": "default"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
    "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}],
}


# RBAC as pure functions --------------------------------------------------------------------------


def test_request_attributes_follow_kube_apiservers_request_info() -> None:
    from tests.cluster.emulator import parse_api_path
    from tests.cluster.rbac import request_attributes

    def attrs(method: str, path: str, **params: str):
        parsed = parse_api_path(path)
        return request_attributes(
            method,
            path,
            params,
            parsed.group,
            parsed.plural,
            parsed.namespace,
            parsed.name,
            parsed.subresource,
        )

    ns = "/apis/apps/v1/namespaces/default/deployments"
    assert attrs("GET", ns).verb == "list"
    assert attrs("GET", ns, watch="true").verb == "watch"
    assert attrs("GET", f"{ns}/web").verb == "get"
    assert attrs("POST", ns).verb == "create"
    assert attrs("PUT", f"{ns}/web").verb == "update"
    assert attrs("PATCH", f"{ns}/web/scale").full_resource == "deployments/scale"
    assert attrs("DELETE", f"{ns}/web").verb == "delete"
    assert attrs("DELETE", ns).verb == "deletecollection"
    named = attrs("GET", ns, watch="1", fieldSelector="metadata.name=web")
    assert (named.verb, named.name, named.namespace, named.group) == ("watch", "web", "default", "apps")
    assert attrs("GET", "/api/v1/pods").namespace is None  # cluster scope
    assert not attrs("GET", "/apis/apps/v1").resource_request  # discovery
    assert not attrs("GET", "/version").resource_request


def test_rules_bindings_and_scopes() -> None:
    from tests.cluster.rbac import Attributes, Policy, UserInfo, forbidden_message, service_account_user

    user = service_account_user("default", "robot")
    cluster_role = {
        "metadata": {"name": "status-writer"},
        "rules": [{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]}],
    }
    cluster_binding = {
        "metadata": {"name": "everyone-reads-nodes"},
        "roleRef": {"kind": "ClusterRole", "name": "node-reader"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts"}],
    }
    node_reader = {
        "metadata": {"name": "node-reader"},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["*"]}],
    }
    in_other = dict(
        BINDING,
        metadata={"name": "b2", "namespace": "other"},
        roleRef={"kind": "ClusterRole", "name": "status-writer"},
    )
    policy = Policy.from_objects([ROLE], [cluster_role, node_reader], [BINDING, in_other], [cluster_binding])

    def may(
        verb: str,
        resource: str,
        namespace: str | None = "default",
        sub: str = "",
        name: str | None = None,
        group: str = "",
    ) -> bool:
        return policy.allows(
            user,
            Attributes(
                verb=verb, group=group, resource=resource, subresource=sub, namespace=namespace, name=name
            ),
        )

    assert may("list", "configmaps") and may("get", "configmaps", name="x")
    assert not may("create", "configmaps")
    assert not may("list", "configmaps", namespace="other")  # a RoleBinding is its namespace's
    assert may("patch", "pods", sub="status") and not may("patch", "pods")  # subresource != resource
    assert may("get", "secrets", name="open") and not may("get", "secrets", name="closed")
    assert not may("list", "secrets")  # resourceNames never match a request without a name
    # a ClusterRole bound by a RoleBinding: its rules, in the binding's namespace only
    assert may("patch", "widgets", namespace="other", sub="status", group="example.io")
    assert not may("patch", "widgets", namespace="default", sub="status", group="example.io")
    assert may("delete", "nodes", namespace=None)  # ClusterRoleBinding, cluster scope, group subject
    assert policy.allows(
        UserInfo("system:admin", ("system:masters",)), Attributes(verb="delete", resource="x")
    )
    assert policy.allows(user, Attributes(verb="get", resource_request=False, path="/apis"))

    message = forbidden_message(
        user,
        Attributes(
            verb="patch",
            group="recprep.io",
            resource="preprocessjobs",
            subresource="status",
            namespace="default",
            name="j",
        ),
    )
    assert message == (
        'preprocessjobs.recprep.io "j" is forbidden: User "system:serviceaccount:default:robot" cannot patch '
        'resource "preprocessjobs/status" in API group "recprep.io" in the namespace "default"'
    )
    assert forbidden_message(user, Attributes(verb="list", resource="namespaces")).endswith(
        'cannot list resource "namespaces" in API group "" at the cluster scope'
    )


# Tokens, RBAC and impersonation through the API ------------------------------------------------------


def test_service_account_tokens_authenticate_and_die_with_what_they_are_bound_to(cluster: Any) -> None:
    assert cluster.exists("/api/v1/namespaces/default/serviceaccounts/default")  # as the SA controller makes
    cluster.kubectl("create", "namespace", "team")
    assert cluster.exists("/api/v1/namespaces/team/serviceaccounts/default")

    missing = cluster.request("POST", "/api/v1/namespaces/default/serviceaccounts/nobody/token", {"spec": {}})
    assert missing.status == 404

    headers = robot(cluster, rbac=False)
    assert cluster.request("GET", CONFIGMAPS, headers=headers).status == 200  # AlwaysAllow
    bad = cluster.request("GET", CONFIGMAPS, headers={"Authorization": "Bearer forged"})
    assert bad.status == 401 and bad.body["reason"] == "Unauthorized"

    pod = cluster.request(
        "POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "p"}, "spec": {"containers": []}}
    ).body
    issued = cluster.request(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        {"spec": {"boundObjectRef": {"kind": "Pod", "name": "p", "uid": pod["metadata"]["uid"]}}},
    )
    assert issued.status == 201 and issued.body["kind"] == "TokenRequest"
    bound = {"Authorization": f"Bearer {issued.body['status']['token']}"}
    assert cluster.request("GET", CONFIGMAPS, headers=bound).status == 200
    cluster.request("DELETE", "/api/v1/namespaces/default/pods/p")
    assert cluster.request("GET", CONFIGMAPS, headers=bound).status == 401  # the pod is gone
    cluster.request("DELETE", "/api/v1/namespaces/default/serviceaccounts/robot")
    assert cluster.request("GET", CONFIGMAPS, headers=headers).status == 401  # so is the account


def test_rbac_answers_403_status_bodies_until_a_binding_grants(cluster: Any, kubectl: Any) -> None:
    headers = robot(cluster)
    refused = cluster.request("GET", CONFIGMAPS, headers=headers)
    assert refused.status == 403
    assert refused.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'configmaps is forbidden: User "{SA}" cannot list resource "configmaps" in API group "" '
        'in the namespace "default"',
        "reason": "Forbidden",
        "details": {"group": "", "kind": "configmaps"},
        "code": 403,
    }
    assert cluster.request("GET", "/api/v1", headers=headers).status == 200  # discovery is for everyone
    assert cluster.request("GET", CONFIGMAPS).status == 200  # the harness (admin) is unrestricted

    cluster.apply([ROLE, BINDING])  # effective at once, as RBAC changes are
    assert cluster.request("GET", CONFIGMAPS, headers=headers).status == 200
    assert cluster.request("GET", f"{CONFIGMAPS}?watch=true&timeoutSeconds=1", headers=headers).status == 200
    created = cluster.request("POST", CONFIGMAPS, configmap("c"), headers=headers)
    assert created.status == 403 and 'cannot create resource "configmaps"' in created.body["message"]
    other = cluster.request("GET", "/api/v1/namespaces/kube-public/configmaps", headers=headers)
    assert other.status == 403 and 'in the namespace "kube-public"' in other.body["message"]

    # the official client maps it to ApiException(403) with the Status as its body
    kubernetes = pytest.importorskip("kubernetes")
    token = headers["Authorization"][7:]
    # the token under both names clients have looked it up by ("authorization" up to 35,
    # "BearerToken" since 37)
    configuration = kubernetes.client.Configuration(
        host=cluster.url,
        api_key={"authorization": token, "BearerToken": token},
        api_key_prefix={"authorization": "Bearer", "BearerToken": "Bearer"},
    )
    with kubernetes.client.ApiClient(configuration) as api:
        core = kubernetes.client.CoreV1Api(api)
        assert core.list_namespaced_config_map("default").kind == "ConfigMapList"
        with pytest.raises(kubernetes.client.exceptions.ApiException) as error:
            core.list_namespaced_pod("default")
        assert error.value.status == 403 and json.loads(error.value.body)["reason"] == "Forbidden"

    # kubectl --as impersonates (the admin may); others may not
    as_robot = kubectl("get", "pods", f"--as={SA}", check=False)
    assert as_robot.returncode != 0 and f'User "{SA}" cannot list resource "pods"' in as_robot.stderr
    assert kubectl("get", "configmaps", f"--as={SA}").returncode == 0
    escalate = cluster.request("GET", CONFIGMAPS, headers={**headers, "Impersonate-User": "system:admin"})
    assert escalate.status == 403 and "cannot impersonate" in escalate.body["message"]
    emulator = cluster.emulator
    denials = cluster.call(lambda: list(emulator.denials))
    assert any('cannot list resource "pods"' in d for d in denials)


# Injected faults -------------------------------------------------------------------------------------


def test_injected_faults_match_method_path_and_user_for_a_count_or_a_while(
    cluster: Any, wait_for: Any
) -> None:
    headers = robot(cluster, rbac=False)
    throttled = cluster.inject_fault(
        429, method="GET", path=r"/configmaps\b", user=SA, count=2, retry_after=3
    )
    first = cluster.request("GET", CONFIGMAPS, headers=headers)
    assert first.status == 429 and first.headers["retry-after"] == "3"
    assert first.body["reason"] == "TooManyRequests" and first.body["details"] == {"retryAfterSeconds": 3}
    assert cluster.request("GET", CONFIGMAPS).status == 200  # the admin is not the user of the fault
    assert cluster.request("POST", CONFIGMAPS, configmap("a"), headers=headers).status == 201  # not GET
    assert cluster.request("GET", CONFIGMAPS, headers=headers).status == 429
    assert cluster.request("GET", CONFIGMAPS, headers=headers).status == 200  # count used up
    assert len(throttled.hits) == 2 and throttled.hits[0].startswith(
        "GET /api/v1/namespaces/default/configmaps"
    )

    alternate = cluster.inject_fault(500, path="/configmaps/a", every=2, seconds=0.5)
    codes = [cluster.request("GET", f"{CONFIGMAPS}/a").status for _ in range(4)]
    assert codes == [500, 200, 500, 200]
    failed = cluster.request("GET", f"{CONFIGMAPS}/a")
    assert failed.status in (200, 500)
    wait_for(lambda: alternate.expired, timeout=5)
    assert cluster.request("GET", f"{CONFIGMAPS}/a").status == 200
    assert {f.status for f in cluster.clear_faults()} == {429, 500}


def test_a_served_fault_carries_the_write_out_and_a_retry_finds_it(cluster: Any) -> None:
    cluster.inject_fault(500, method="POST", path="/configmaps", count=1, served=True)
    answer = cluster.request("POST", CONFIGMAPS, configmap("once"))
    assert answer.status == 500 and answer.body["reason"] == "InternalError"
    assert cluster.exists(f"{CONFIGMAPS}/once")  # it happened nonetheless
    retry = cluster.request("POST", CONFIGMAPS, configmap("once"))
    assert retry.status == 409 and retry.body["reason"] == "AlreadyExists"
    emulator = cluster.emulator
    assert cluster.call(lambda: emulator.creations["v1/ConfigMap", "default", "once"]) == 1


def test_faults_can_refuse_watches_and_watches_can_be_dropped(cluster: Any, wait_for: Any) -> None:
    headers = robot(cluster, rbac=False)
    refused = cluster.inject_fault(503, path=r"[?&]watch=true", user=SA, count=1)
    assert cluster.request("GET", f"{CONFIGMAPS}?watch=true", headers=headers).status == 503
    assert refused.hits and cluster.request("GET", CONFIGMAPS, headers=headers).status == 200

    cluster.request("POST", CONFIGMAPS, configmap("seen"))
    for abrupt in (False, True):
        conn = http.client.HTTPConnection(cluster.server.host, cluster.server.port, timeout=10)
        conn.request("GET", f"{CONFIGMAPS}?watch=true&timeoutSeconds=60", headers=headers)
        response = conn.getresponse()
        assert json.loads(response.readline())["object"]["metadata"]["name"] == "seen"
        assert cluster.open_watches() == [(SA, f"{CONFIGMAPS}?watch=true&timeoutSeconds=60")]
        outcome: list[Any] = []

        def read_rest(response=response, outcome=outcome) -> None:
            try:
                outcome.append(response.read())
            except (http.client.IncompleteRead, ConnectionError) as e:
                outcome.append(e)

        reader = threading.Thread(target=read_rest)
        reader.start()
        assert cluster.drop_watches(user="system:admin") == 0  # not the admin's
        assert cluster.drop_watches(user=r"system:serviceaccount:.*", abrupt=abrupt) == 1
        reader.join(10)
        assert outcome, "the watch stream did not end"
        if abrupt:  # the connection was cut mid-stream
            assert isinstance(outcome[0], (http.client.IncompleteRead, ConnectionError)), outcome
        else:  # the server ended the stream properly
            assert outcome[0] == b""
        conn.close()
        wait_for(lambda: not cluster.open_watches(), timeout=5)


# Garbage collection of orphans ----------------------------------------------------------------------


def test_an_object_created_for_a_gone_owner_is_collected(cluster: Any, wait_for: Any) -> None:
    owner = cluster.request("POST", CONFIGMAPS, configmap("owner")).body
    cluster.request("DELETE", f"{CONFIGMAPS}/owner")
    late = configmap("late")
    late["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ]
    assert cluster.request("POST", CONFIGMAPS, late).status == 201
    wait_for(lambda: not cluster.exists(f"{CONFIGMAPS}/late"), timeout=5)
