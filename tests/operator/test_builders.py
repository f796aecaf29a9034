"""Manifests as data: names, labels, selectors, placement, commands, and Kubernetes schemas."""

from __future__ import annotations

import ast
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from recprep.operator import builders, labels
from recprep.spec import load_job_dict

from .conftest import POD_DEFAULTS, job_document

KUBERNETES_VERSION = "1.32.0"  # as tests/charts/tools.py
OPERATOR = Path(builders.__file__).parent


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def pod_spec(manifest):
    return manifest["spec"]["template"]["spec"]


def with_pods(docs):
    """The manifests that hold a pod template (Deployments and Jobs)."""
    return [d for d in docs if "template" in d.get("spec", {})]


def test_children_names_labels_and_namespace(job, settings):
    docs = builders.build_children(job, settings)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("ConfigMap", "clicks-spec"),
        ("Deployment", "clicks-scheduler"),
        ("Service", "clicks-scheduler"),
        ("Deployment", "clicks-worker-cpu"),
        ("Deployment", "clicks-worker-isp"),
        ("Job", "clicks-driver"),
    ]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "recprep"
        assert doc["metadata"]["labels"][labels.JOB] == "clicks"
        assert labels.job_labels("clicks").items() <= doc["metadata"]["labels"].items()
    for doc in with_pods(docs):
        assert doc["spec"]["template"]["metadata"]["labels"] == doc["metadata"]["labels"]


def test_namespace_of_the_job_wins(settings):
    job = load_job_dict({**job_document(), "metadata": {"name": "clicks", "namespace": "team-a"}})
    assert {d["metadata"]["namespace"] for d in builders.build_children(job, settings)} == {"team-a"}


@pytest.mark.parametrize("preemptible", [True, False])
def test_every_manifest_passes_kubernetes_validate(settings, preemptible):
    job = load_job_dict(job_document(preemptible=preemptible))
    for doc in builders.build_children(job, settings):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_container_is_hardened(job, settings):
    docs = with_pods(builders.build_children(job, settings))
    assert len(docs) == 4
    for doc in docs:
        pod = pod_spec(doc)
        assert pod["securityContext"] == POD_DEFAULTS["podSecurityContext"]
        for container in pod["containers"]:
            assert container["securityContext"] == POD_DEFAULTS["securityContext"]
            assert container["image"] == "registry.example.com/recprep:1.2.3"
            assert container["imagePullPolicy"] == "Always"
            assert container["resources"]
            # a read-only root filesystem still needs a writable /tmp
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_manifests_do_not_alias_settings(job, settings):
    doc = builders.build_worker_deployment(job, "cpu", settings, 2)
    pod = pod_spec(doc)
    pod["tolerations"].append({"key": "x", "operator": "Exists"})
    pod["containers"][0]["securityContext"]["runAsUser"] = 0
    assert builders.build_worker_deployment(job, "cpu", settings, 2) != doc


def test_scheduler(job, settings):
    deploy = builders.build_scheduler_deployment(job, settings)
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = pod_spec(deploy)["containers"]
    assert container["command"] == ["dask", "scheduler", "--port", "8786", "--dashboard-address", ":8787"]
    assert container["readinessProbe"]["tcpSocket"]["port"] == "comm"
    assert {"name": "comm", "containerPort": 8786, "protocol": "TCP"} in container["ports"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_scheduler_service_selects_the_scheduler_pod_only(job, settings):
    docs = builders.build_children(job, settings)
    service = builders.build_scheduler_service(job, settings)
    assert service["metadata"]["name"] == labels.scheduler_name("clicks")
    selector = service["spec"]["selector"]
    selected = [
        d["metadata"]["name"]
        for d in with_pods(docs)
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert selected == ["clicks-scheduler"]
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"comm": (8786, "comm"), "dashboard": (8787, "dashboard")}
    container_ports = {p["name"] for p in pod_spec(by_kind(docs, "Deployment")[0])["containers"][0]["ports"]}
    assert {t for _, t in ports.values()} <= container_ports


def test_worker_command_and_env(job, settings):
    deploy = builders.build_worker_deployment(job, "cpu", settings, 1)
    (container,) = pod_spec(deploy)["containers"]
    assert container["command"] == [
        "dask",
        "worker",
        "tcp://clicks-scheduler:8786",
        "--nthreads",
        "1",
        "--nworkers",
        "1",
        "--name",
        "$(POD_NAME)",
        "--resources",
        "cpu=1",
    ]
    assert container["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    for pool in labels.POOLS:
        deploy = builders.build_worker_deployment(job, pool, settings, 1)
        (container,) = pod_spec(deploy)["containers"]
        assert container["resources"] == POD_DEFAULTS["worker"]["resources"]
        assert deploy["spec"]["template"]["metadata"]["labels"][labels.POOL] == pool
        assert deploy["spec"]["selector"]["matchLabels"] == labels.selector("clicks", "worker", pool)


@pytest.mark.parametrize("units", [1, 4])
def test_isp_workers_run_recprep_isp_worker_for_their_node_with_the_units_of_the_spec(settings, units):
    job = load_job_dict(job_document(pools={"isp": {"min": 1, "max": 2, "units": units}}))
    (container,) = pod_spec(builders.build_worker_deployment(job, "isp", settings, 1))["containers"]
    assert container["command"] == [
        "recprep",
        "isp-worker",
        "tcp://clicks-scheduler:8786",
        "--node",
        "$(NODE_NAME)",
        "--name",
        "$(POD_NAME)",
        "--units",
        str(units),
    ]
    # the pod's name tells its worker apart; the node's tells the driver which raw data it holds
    assert container["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    assert "--resources" not in container["command"]  # isp=<units>: recprep isp-worker's own


def test_isp_pods_mount_the_data_root_read_only_at_the_same_path(settings):
    job = load_job_dict(job_document(pools={"isp": {"max": 2, "dataRoot": "/mnt/nvme/raw"}}))
    storage = POD_DEFAULTS["storage"]
    isp = pod_spec(builders.build_worker_deployment(job, "isp", settings, 1))
    (container,) = isp["containers"]
    assert isp["volumes"] == [
        {"name": "tmp", "emptyDir": {}},
        *storage["volumes"],
        {"name": "isp-data-root", "hostPath": {"path": "/mnt/nvme/raw", "type": "Directory"}},
    ]
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        *storage["volumeMounts"],
        {"name": "isp-data-root", "mountPath": "/mnt/nvme/raw", "readOnly": True},
    ]
    assert container["securityContext"] == POD_DEFAULTS["securityContext"]  # still read-only root fs
    kubernetes_validate.validate(
        builders.build_worker_deployment(job, "isp", settings, 1), KUBERNETES_VERSION, strict=True
    )
    # only the ISP pods: the CPU pool and the driver read the raw data over the shared storage
    for doc in builders.build_children(job, settings):
        if "template" in doc.get("spec", {}) and doc["metadata"]["name"] != "clicks-worker-isp":
            assert "isp-data-root" not in str(pod_spec(doc)), doc["metadata"]["name"]


def test_no_data_root_mount_without_data_root_or_where_the_storage_is_mounted(job, settings):
    isp = pod_spec(builders.build_worker_deployment(job, "isp", settings, 1))
    assert [v["name"] for v in isp["volumes"]] == ["tmp", "data"]
    # dataRoot at the storage's own mount path: that mount holds it (a second one is refused)
    on_storage = load_job_dict(job_document(pools={"isp": {"max": 2, "dataRoot": "/data"}}))
    isp = pod_spec(builders.build_worker_deployment(on_storage, "isp", settings, 1))
    assert [v["name"] for v in isp["volumes"]] == ["tmp", "data"]
    assert [m["mountPath"] for m in isp["containers"][0]["volumeMounts"]] == ["/tmp", "/data"]


def test_cpu_workers_carry_the_cpu_placement_and_spot_toleration_when_preemptible(settings):
    cpu = POD_DEFAULTS["pools"]["cpu"]
    job = load_job_dict(job_document(preemptible=True))
    pod = pod_spec(builders.build_worker_deployment(job, "cpu", settings, 1))
    assert pod["nodeSelector"] == cpu["nodeSelector"]
    assert pod["affinity"] == cpu["affinity"]
    assert pod["tolerations"] == cpu["tolerations"]
    command = pod["containers"][0]["command"]
    assert command[:2] == ["dask", "worker"] and command[command.index("--resources") + 1] == "cpu=1"


def test_non_preemptible_cpu_workers_do_not_tolerate_spot(settings):
    cpu = POD_DEFAULTS["pools"]["cpu"]
    job = load_job_dict(job_document(preemptible=False))
    pod = pod_spec(builders.build_worker_deployment(job, "cpu", settings, 1))
    assert pod["nodeSelector"] == cpu["nodeSelector"]
    assert pod["affinity"] == cpu["affinity"]
    assert "tolerations" not in pod


def test_isp_workers_are_pinned_to_storage_nodes(job, settings):
    isp = POD_DEFAULTS["pools"]["isp"]
    pod = pod_spec(builders.build_worker_deployment(job, "isp", settings, 1))
    assert pod["nodeSelector"] == {"recprep.io/storage-node": "true"}
    assert pod["affinity"] == isp["affinity"]
    assert pod["tolerations"] == isp["tolerations"]
    assert pod["containers"][0]["command"][:2] == ["recprep", "isp-worker"]


@pytest.mark.parametrize(
    "pool, asked, expected",
    [
        ("cpu", 0, 1),
        ("cpu", 3, 3),
        ("cpu", 99, 6),
        ("isp", 0, 0),
        ("isp", 5, 2),
        ("isp", -1, 0),
    ],
)
def test_worker_replicas_are_clamped_to_the_pool_bounds(job, settings, pool, asked, expected):
    assert builders.build_worker_deployment(job, pool, settings, asked)["spec"]["replicas"] == expected


def test_initial_replicas(settings):
    job = load_job_dict(job_document(pools={"cpu": {"min": 3, "max": 5}, "isp": {"min": 0, "max": 0}}))
    docs = {d["metadata"]["name"]: d for d in builders.build_children(job, settings)}
    assert docs["clicks-worker-cpu"]["spec"]["replicas"] == 3
    assert docs["clicks-worker-isp"]["spec"]["replicas"] == 0  # the pool is switched off
    job = load_job_dict(job_document())
    docs = {d["metadata"]["name"]: d for d in builders.build_children(job, settings)}
    assert docs["clicks-worker-isp"]["spec"]["replicas"] == 1  # min 0, but start with one


def test_driver_job(job, settings):
    driver = builders.build_driver_job(job, settings, "clicks-spec")
    assert driver["spec"]["backoffLimit"] == 4
    pod = pod_spec(driver)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    command = " ".join(container["command"])
    assert command.startswith("recprep run - --job-env RECPREP_JOB")
    assert "--scheduler tcp://clicks-scheduler:8786" in command
    (env,) = [e for e in container["env"] if e["name"] == "RECPREP_JOB"]
    assert env["valueFrom"]["configMapKeyRef"] == {"name": "clicks-spec", "key": "job.yaml"}


def test_driver_reaches_the_scheduler_service(job, settings):
    service = builders.build_scheduler_service(job, settings)
    address = f"tcp://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    driver = builders.build_driver_job(job, settings, "x")
    worker = builders.build_worker_deployment(job, "cpu", settings, 1)
    assert address in pod_spec(driver)["containers"][0]["command"]
    assert address in pod_spec(worker)["containers"][0]["command"]


def test_configmap_round_trips_to_an_equal_job(job, settings):
    children = builders.build_children(job, settings)
    configmap = by_kind(children, "ConfigMap")[0]
    (env,) = [
        e for e in pod_spec(by_kind(children, "Job")[0])["containers"][0]["env"] if e["name"] == "RECPREP_JOB"
    ]
    assert env["valueFrom"]["configMapKeyRef"]["name"] == configmap["metadata"]["name"]
    assert env["valueFrom"]["configMapKeyRef"]["key"] in configmap["data"]
    loaded = load_job_dict(yaml.safe_load(configmap["data"]["job.yaml"]), "job.yaml")
    assert loaded == job
    assert loaded.identity() == job.identity()


def test_configmap_drops_server_metadata_and_status(settings):
    body = job_document()
    body["metadata"] = {
        "name": "clicks",
        "namespace": "team-a",
        "uid": "1234",
        "resourceVersion": "9",
        "labels": {"team": "a"},
    }
    body["status"] = {"phase": "Running"}
    job = load_job_dict(body)
    doc = yaml.safe_load(builders.build_job_configmap(job, settings)["data"]["job.yaml"])
    assert doc["metadata"] == {"name": "clicks"}
    assert "status" not in doc
    assert load_job_dict(doc).spec == job.spec


def test_owner_reference():
    body = {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "clicks", "uid": "u-1", "namespace": "recprep"},
    }
    assert builders.owner_reference(body) == {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "name": "clicks",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    with pytest.raises(ValueError, match="missing metadata.uid"):
        builders.owner_reference({**body, "metadata": {"name": "clicks"}})


def test_builders_import_no_kubernetes_client_and_no_data_plane():
    """Pure modules: no kopf, no kubernetes client, no Dask, nothing of recprep.workloads.

    The mechanisms (kopf glue, API calls, the scheduler link) may import kopf, the client or
    distributed; no operator module imports the data plane."""
    pure = {
        "__init__.py",
        "labels.py",
        "settings.py",
        "podspec.py",
        "builders.py",
        "status.py",
        "scaling.py",
        "updates.py",
    }
    mechanisms = {
        "handlers.py",
        "main.py",
        "kube.py",
        "follow.py",
        "pools.py",
        "scheduler.py",
        "autoscaler.py",
        "preemption.py",
        "dashboard.py",
    }
    found = {path.name for path in OPERATOR.glob("*.py")}
    assert found == pure | mechanisms, f"classify the new modules: {found - pure - mechanisms}"
    for path in OPERATOR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            for name in names:
                root = name.lstrip(".").split(".")[0]
                if path.name in pure:
                    assert root not in ("kopf", "kubernetes", "distributed"), f"{path.name} imports {name}"
                assert "workloads" not in name, f"{path.name} imports {name}"


def test_driver_and_workers_mount_the_storage_of_the_values_and_the_scheduler_does_not(job, settings):
    by_name = {c["metadata"]["name"]: c for c in builders.build_children(job, settings)}
    storage = POD_DEFAULTS["storage"]
    for name, obj in by_name.items():
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        volumes = [v for v in pod["volumes"] if v["name"] != "tmp"]
        mounts = [m for m in container["volumeMounts"] if m["name"] != "tmp"]
        if name == "clicks-scheduler":
            assert volumes == [] and mounts == []
        else:
            assert volumes == storage["volumes"] and mounts == storage["volumeMounts"], name


# --- the shard service (spec.serve) ---------------------------------------------------------


def serving_job(**serve):
    return load_job_dict(
        job_document(serve={"port": 9100, "tokenSecret": "clicks-token", "seed": 3, **serve})
    )


def test_no_shard_service_without_serve(job, settings):
    assert builders.build_shard_service_children(job, settings) == []
    with pytest.raises(ValueError, match="has no spec.serve"):
        builders.build_shard_deployment(job, settings)
    # with it, the other children stay as they are: the follower creates the shard service
    served = serving_job()
    assert builders.build_children(served, settings)[1:] == builders.build_children(job, settings)[1:]


def test_shard_deployment_runs_recprep_serve_on_the_output_with_the_token_from_the_secret(settings):
    deploy, service = builders.build_shard_service_children(serving_job(), settings)
    assert (deploy["kind"], deploy["metadata"]["name"]) == ("Deployment", "clicks-shards")
    assert deploy["metadata"]["namespace"] == "recprep"
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}  # one server per acknowledgement state
    pod = pod_spec(deploy)
    (container,) = pod["containers"]
    assert container["command"] == [
        "recprep",
        "serve",
        "/data/out/clicks",
        "--host",
        "0.0.0.0",
        "--port",
        "9100",
        "--seed",
        "3",
        "--token-env",
        "RECPREP_SHARD_TOKEN",
    ]
    assert container["env"] == [
        {
            "name": "RECPREP_SHARD_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "clicks-token", "key": "token"}},
        }
    ]
    assert container["ports"] == [{"name": "flight", "containerPort": 9100, "protocol": "TCP"}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "flight"}
    assert container["resources"] == settings.shards_resources
    # hardened like every other pod, and the output where the driver wrote it
    assert pod["securityContext"] == POD_DEFAULTS["podSecurityContext"]
    assert container["securityContext"] == POD_DEFAULTS["securityContext"]
    assert [v for v in pod["volumes"] if v["name"] != "tmp"] == POD_DEFAULTS["storage"]["volumes"]
    assert [m for m in container["volumeMounts"] if m["name"] != "tmp"] == POD_DEFAULTS["storage"][
        "volumeMounts"
    ]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == deploy["metadata"]["labels"] == labels.component_labels("clicks", labels.SHARDS)
    assert deploy["spec"]["selector"]["matchLabels"] == labels.selector("clicks", labels.SHARDS)


def test_shard_service_selects_the_shard_server_only(settings):
    job = serving_job()
    service = builders.build_shard_service(job, settings)
    assert (service["kind"], service["metadata"]["name"]) == ("Service", "clicks-shards")
    assert service["spec"]["ports"] == [
        {"name": "flight", "port": 9100, "targetPort": "flight", "protocol": "TCP"}
    ]
    pods = with_pods(
        builders.build_children(job, settings) + builders.build_shard_service_children(job, settings)
    )
    selector = service["spec"]["selector"]
    assert [
        d["metadata"]["name"]
        for d in pods
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ] == ["clicks-shards"]
    assert builders.shard_service_url(job, settings) == "grpc://clicks-shards.recprep.svc:9100"


def test_shard_service_without_a_token_and_with_a_file_uri(settings):
    doc = job_document(serve={})
    doc["spec"]["output"]["uri"] = "file:///data/out/clicks"
    deploy = builders.build_shard_deployment(load_job_dict(doc), settings)
    (container,) = pod_spec(deploy)["containers"]
    assert container["command"] == [
        "recprep",
        "serve",
        "/data/out/clicks",
        "--host",
        "0.0.0.0",
        "--port",
        "8815",
        "--seed",
        "0",
    ]
    assert "env" not in container


def test_the_shard_service_of_an_object_store_output_keeps_its_state_in_the_store(settings):
    doc = job_document(serve={})
    doc["spec"]["output"]["uri"] = "s3://bucket/out/clicks"
    (container,) = pod_spec(builders.build_shard_deployment(load_job_dict(doc), settings))["containers"]
    assert container["command"][2] == "s3://bucket/out/clicks"
    assert "--state-dir" not in container["command"]  # s3://bucket/out/clicks/_service, as a path's


def test_shard_service_manifests_pass_kubernetes_validate(settings):
    for doc in builders.build_shard_service_children(serving_job(), settings):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("isp", "requests"),
    [
        ({"units": 3}, "3000m"),  # native: one core per unit
        ({"units": 3, "mode": "paced"}, "1"),  # paced units mostly wait: the chart's request
        ({}, "1"),
    ],
)
def test_a_native_isp_worker_requests_a_core_per_unit(isp, requests):
    from recprep.operator.settings import Settings

    doc = {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "j"},
        "spec": {
            "source": {"uri": "synthetic://criteo?rows=10", "format": "criteo"},
            "output": {"uri": "/tmp/o"},
            "pools": {"isp": isp},
        },
    }
    deployment = builders.build_worker_deployment(load_job_dict(doc), "isp", Settings(), 1)
    (worker,) = deployment["spec"]["template"]["spec"]["containers"]
    assert worker["resources"]["requests"]["cpu"] == requests
    cpu = builders.build_worker_deployment(load_job_dict(doc), "cpu", Settings(), 1)
    assert cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"


def test_the_pods_that_touch_data_get_its_credentials_and_service_account(settings):
    """``data`` (values.yaml): the driver, every worker and the shard service reach object
    storage with the Secret's keys as environment, the ServiceAccount of a cloud identity and the
    extra env; the scheduler, which never reads data, gets none of them."""
    import dataclasses

    access = dataclasses.replace(
        settings,
        data_secret="s3-creds",
        data_service_account="recprep-data",
        data_env=({"name": "AWS_REGION", "value": "eu-west-1"},),
    )
    job = load_job_dict(
        job_document(pools={"isp": {"max": 1}}, serve={"port": 8815, "tokenSecret": "shard-token"})
    )
    docs = builders.build_children(job, access) + builders.build_shard_service_children(job, access)
    touched = {}
    for doc in with_pods(docs):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        spec = pod_spec(doc)
        (box,) = spec["containers"]
        touched[doc["metadata"]["name"]] = (
            spec.get("serviceAccountName"),
            box.get("envFrom"),
            [e for e in box.get("env", []) if e["name"] == "AWS_REGION"],
        )
    reads = {"clicks-driver", "clicks-worker-cpu", "clicks-worker-isp", "clicks-shards"}
    assert reads <= set(touched)
    for name, (account, env_from, region) in touched.items():
        if name in reads:
            assert account == "recprep-data", name
            assert env_from == [{"secretRef": {"name": "s3-creds"}}], name
            assert region == [{"name": "AWS_REGION", "value": "eu-west-1"}], name
        else:
            assert (account, env_from, region) == (None, None, []), name
    # without the values, nothing of it
    for doc in with_pods(builders.build_children(job, settings)):
        assert "serviceAccountName" not in pod_spec(doc) and "envFrom" not in pod_spec(doc)["containers"][0]
