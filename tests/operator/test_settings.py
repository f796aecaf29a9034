"""Operator settings from the RECPREP_* variables the Helm chart sets."""

from __future__ import annotations

import json

import pytest

from recprep.operator.settings import Settings, SettingsError

from .conftest import ENV, POD_DEFAULTS


def test_defaults_mirror_the_chart():
    s = Settings.from_env({})
    assert s.namespace == "default" and s.image_pull_policy == "IfNotPresent"
    assert s.isp_pool.node_selector == {"recprep.io/storage-node": "true"}
    assert s.cpu_pool.tolerations == ({"key": "spot", "operator": "Exists", "effect": "NoSchedule"},)
    assert s.security_context["readOnlyRootFilesystem"] is True
    assert s.security_context["capabilities"] == {"drop": ["ALL"]}


def test_env_overrides(settings):
    assert settings.namespace == "recprep"
    assert settings.image == "registry.example.com/recprep:1.2.3"
    assert settings.image_pull_policy == "Always"
    assert settings.cpu_pool.node_selector == POD_DEFAULTS["pools"]["cpu"]["nodeSelector"]
    assert settings.isp_pool.affinity == POD_DEFAULTS["pools"]["isp"]["affinity"]
    assert settings.worker_resources == POD_DEFAULTS["worker"]["resources"]
    assert settings.pool("isp") is settings.isp_pool


def test_shard_service_resources():
    assert Settings().shards_resources["requests"] == {"cpu": "500m", "memory": "1Gi"}
    resources = {"requests": {"cpu": "2"}, "limits": {"memory": "8Gi"}}
    s = Settings.from_env({"RECPREP_POD_DEFAULTS": json.dumps({"shards": {"resources": resources}})})
    assert s.shards_resources == resources
    with pytest.raises(SettingsError, match=r"unknown key shards\.replicas; allowed: resources"):
        Settings.from_env({"RECPREP_POD_DEFAULTS": '{"shards": {"replicas": 2}}'})


def test_the_chart_rendered_value_parses():
    """The exact shape templates/deployment.yaml renders from values.yaml (empty maps included)."""
    rendered = {
        "pools": {
            "cpu": {
                "affinity": {},
                "nodeSelector": {},
                "tolerations": [{"effect": "NoSchedule", "key": "spot", "operator": "Exists"}],
            },
            "isp": {"affinity": {}, "nodeSelector": {"recprep.io/storage-node": "true"}, "tolerations": []},
        },
        "worker": {"resources": {"limits": {"memory": "4Gi"}, "requests": {"cpu": "1", "memory": "4Gi"}}},
        "shards": {"resources": {"limits": {"memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}},
        "podSecurityContext": POD_DEFAULTS["podSecurityContext"],
        "securityContext": POD_DEFAULTS["securityContext"],
    }
    s = Settings.from_env(
        {
            "RECPREP_POD_DEFAULTS": json.dumps(rendered),
            "RECPREP_CLUSTER_WIDE": "false",
            "RECPREP_LOG_LEVEL": "debug",
            "RECPREP_WATCH_SERVER_TIMEOUT": "60",
            "RECPREP_RETIRE_TIMEOUT": "45",
        }
    )
    assert s == Settings(log_level="DEBUG", watch_server_timeout=60, retire_timeout=45)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RECPREP_POD_DEFAULTS": "{nope"}, "RECPREP_POD_DEFAULTS: not valid JSON"),
        ({"RECPREP_POD_DEFAULTS": "[]"}, "RECPREP_POD_DEFAULTS: the document must be a JSON object"),
        ({"RECPREP_POD_DEFAULTS": '{"pool": {}}'}, "RECPREP_POD_DEFAULTS: unknown key pool;"),
        ({"RECPREP_POD_DEFAULTS": '{"pools": {"gpu": {}}}'}, "unknown key pools.gpu; allowed: cpu, isp"),
        (
            {"RECPREP_POD_DEFAULTS": '{"pools": {"cpu": {"tolerations": {}}}}'},
            "pools.cpu.tolerations must be a list",
        ),
        (
            {"RECPREP_POD_DEFAULTS": '{"pools": {"cpu": {"nodeSelector": {"a": 1}}}}'},
            "pools.cpu.nodeSelector.a must be a string",
        ),
        (
            {"RECPREP_POD_DEFAULTS": '{"pools": {"isp": {"nodeSelector": {}}}}'},
            "pools.isp needs a nodeSelector or an affinity",
        ),
        ({"RECPREP_IMAGE_PULL_POLICY": "Sometimes"}, "RECPREP_IMAGE_PULL_POLICY: expected one of"),
        ({"RECPREP_CLUSTER_WIDE": "maybe"}, "RECPREP_CLUSTER_WIDE: expected true or false"),
        ({"RECPREP_WATCH_CLIENT_TIMEOUT": "soon"}, "RECPREP_WATCH_CLIENT_TIMEOUT: expected a whole"),
        ({"RECPREP_RETIRE_TIMEOUT": "0"}, "RECPREP_RETIRE_TIMEOUT: expected a positive number"),
        (
            {
                "RECPREP_POD_DEFAULTS": '{"storage": {"volumes": [{"name": "d", "emptyDir": {}}], '
                '"volumeMounts": [{"name": "e", "mountPath": "/data"}]}}'
            },
            r"storage.volumeMounts\[0\].name 'e' names no volume; volumes: d",
        ),
        (
            {"RECPREP_POD_DEFAULTS": '{"storage": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}'},
            r"storage.volumes\[0\].name 'tmp' is used twice",
        ),
        (
            {
                "RECPREP_POD_DEFAULTS": '{"storage": {"volumes": [{"name": "d"}], '
                '"volumeMounts": [{"name": "d", "mountPath": "data"}]}}'
            },
            r"storage.volumeMounts\[0\].mountPath must be an absolute path",
        ),
        ({"RECPREP_POD_DEFAULTS": '{"storage": {"volumes": {}}}'}, "storage.volumes must be a list"),
        (
            {"RECPREP_POD_DEFAULTS": '{"data": {"credentialsSecret": 3}}'},
            "data.credentialsSecret must be a name",
        ),
        ({"RECPREP_POD_DEFAULTS": '{"data": {"env": [{"value": "x"}]}}'}, r"data.env\[0\].name is required"),
        ({"RECPREP_POD_DEFAULTS": '{"data": {"secret": "s"}}'}, "unknown key data.secret"),
    ],
)
def test_errors_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace(".", r"\.").replace("{", r"\{")):
        Settings.from_env(env)


def test_data_access_from_the_chart_values():
    rendered = {"data": {"credentialsSecret": "s3-creds", "serviceAccountName": "", "env": []}}
    s = Settings.from_env({"RECPREP_POD_DEFAULTS": json.dumps(rendered)})
    assert (s.data_secret, s.data_service_account, s.data_env) == ("s3-creds", None, ())
    assert Settings.from_env({}).data_secret is None


def test_settings_are_frozen(settings):
    with pytest.raises(AttributeError):
        settings.image = "other"  # type: ignore[misc]
    assert ENV["RECPREP_NAMESPACE"] == settings.namespace
