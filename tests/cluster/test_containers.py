"""The container mode's pod spec -> ``podman run`` mapping, as data (no podman needed)."""

import json

import pytest

from .containers import ContainerStartError, Podman

POD = {
    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True, "fsGroup": 10001},
    "volumes": [
        {"name": "tmp", "emptyDir": {}},
        {"name": "data", "hostPath": {"path": "HOST", "type": "DirectoryOrCreate"}},
    ],
}
CONTAINER = {
    "name": "operator",
    "image": "ghcr.io/recprep/recprep:0.1.0",
    "command": ["recprep", "operator"],
    "args": ["--namespace=default"],
    "workingDir": "/tmp",
    "securityContext": {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    },
    "volumeMounts": [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "data", "mountPath": "/var/lib/recprep", "readOnly": True},
    ],
}


def _argv(tmp_path, pod=POD, container=CONTAINER, **kw):
    pod = json.loads(json.dumps(pod).replace("HOST", str(tmp_path / "host")))
    engine = Podman(
        {"ghcr.io/recprep/recprep:0.1.0": "localhost/recprep:0.1.0"}, tmp_path / "w", exe="podman"
    )
    argv = engine.argv(
        pod_name="op-1",
        pod_uid="u1",
        pod_spec=pod,
        spec=container,
        env={"A": "1", "KUBECONFIG": "/k/config"},
        restart=2,
        plumbing=[tmp_path / "shim"],
        **kw,
    )
    return engine, argv


def _pairs(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_a_pod_spec_becomes_the_podman_run_it_promises(tmp_path):
    engine, argv = _argv(tmp_path)
    assert argv[:4] == ["podman", "run", "--rm", "--name"] and argv[4] == "op-1-operator-2"
    # the image's entrypoint replaced by command, its command by args, after the mapped image
    assert argv[-2:] == ["localhost/recprep:0.1.0", "--namespace=default"]
    assert json.loads(_pairs(argv, "--entrypoint")[0]) == ["recprep", "operator"]
    assert _pairs(argv, "--user") == ["10001:10001"] and _pairs(argv, "--group-add") == ["10001"]
    assert "--read-only" in argv and "--read-only-tmpfs=false" in argv  # no /tmp but the volume
    assert _pairs(argv, "--cap-drop") == ["ALL"] and _pairs(argv, "--cap-add") == ["NET_BIND_SERVICE"]
    assert _pairs(argv, "--security-opt") == ["no-new-privileges"]
    assert _pairs(argv, "--network") == ["host"] and _pairs(argv, "--workdir") == ["/tmp"]
    assert _pairs(argv, "--env") == ["A=1", "KUBECONFIG=/k/config"]  # nothing of this process' env
    empty = tmp_path / "w" / "pods" / "u1" / "volumes" / "tmp"
    assert _pairs(argv, "--volume") == [
        f"{empty}:/tmp:rw",
        f"{tmp_path / 'host'}:/var/lib/recprep:ro",
        f"{tmp_path / 'shim'}:{tmp_path / 'shim'}:ro",
    ]
    assert empty.is_dir() and (tmp_path / "host").is_dir()  # emptyDir made, DirectoryOrCreate too
    assert engine.started == [("op-1-operator-2", "localhost/recprep:0.1.0")]
    # an exec probe runs in the container
    assert engine.exec_argv("op-1-operator-2", ["cat", "/tmp/ready"]) == [
        "podman",
        "exec",
        "op-1-operator-2",
        "cat",
        "/tmp/ready",
    ]
    engine.forget_pod("u1")
    assert not empty.exists()


def test_without_a_command_the_image_entrypoint_stays(tmp_path):
    _, argv = _argv(tmp_path, container={**CONTAINER, "command": None, "args": ["--help"]})
    assert "--entrypoint" not in argv and argv[-2:] == ["localhost/recprep:0.1.0", "--help"]


@pytest.mark.parametrize(
    "pod, container, message",
    [
        (POD, {**CONTAINER, "image": "busybox"}, "image 'busybox' is not available here"),
        (
            {**POD, "volumes": [{"name": "tmp", "configMap": {"name": "x"}}]},
            {**CONTAINER, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]},
            "volume 'tmp': configMap volumes are not supported here",
        ),
        (POD, {**CONTAINER, "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, "no such volume"),
        (
            {"securityContext": {"runAsNonRoot": True}},
            {**CONTAINER, "securityContext": {}, "volumeMounts": []},
            "runAsNonRoot without a numeric runAsUser",
        ),
    ],
)
def test_what_cannot_run_as_the_spec_says_is_refused_naming_it(tmp_path, pod, container, message):
    with pytest.raises(ContainerStartError, match=message):
        _argv(tmp_path, pod=pod, container=container)
