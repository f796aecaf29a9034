"""The label vocabulary and child names: one key per concept, names valid for Kubernetes."""

from __future__ import annotations

import re

import pytest

from recprep.operator import labels

DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def test_job_labels_carry_the_job_and_the_standard_labels():
    got = labels.job_labels("demo")
    assert got[labels.JOB] == "demo"
    assert got[labels.APP_INSTANCE] == "demo"
    assert got[labels.APP_NAME] == "recprep"
    assert got[labels.APP_MANAGED_BY] == "recprep-operator"
    assert labels.JOB == "recprep.io/job"


def test_component_labels_extend_job_labels():
    got = labels.component_labels("demo", labels.WORKER, labels.ISP)
    assert labels.job_labels("demo").items() <= got.items()
    assert got["recprep.io/component"] == "worker"
    assert got["recprep.io/pool"] == "isp"
    assert got["app.kubernetes.io/component"] == "worker"
    assert labels.POOL not in labels.component_labels("demo", labels.SCHEDULER)


@pytest.mark.parametrize(
    "component, pool, message",
    [
        ("worker", None, "worker pool must be one of cpu, isp"),
        ("worker", "gpu", "worker pool must be one of cpu, isp"),
        ("scheduler", "cpu", "only worker objects have a pool"),
        ("trainer", None, "unknown component 'trainer'"),
    ],
)
def test_component_labels_refuse_inconsistent_pools(component, pool, message):
    with pytest.raises(ValueError, match=message):
        labels.component_labels("demo", component, pool)


def test_selectors_are_subsets_of_the_labels_they_select():
    for component, pool in [
        ("scheduler", None),
        ("driver", None),
        ("shards", None),
        ("worker", "cpu"),
        ("worker", "isp"),
    ]:
        sel = labels.selector("demo", component, pool)
        assert sel.items() <= labels.component_labels("demo", component, pool).items()
    assert labels.selector("demo") == {"recprep.io/job": "demo"}
    assert labels.selector_string("demo", "worker", "cpu") == (
        "recprep.io/job=demo,recprep.io/component=worker,recprep.io/pool=cpu"
    )
    with pytest.raises(ValueError, match="without component"):
        labels.selector("demo", pool="cpu")


def test_worker_selectors_tell_the_pools_apart():
    cpu = labels.selector("demo", labels.WORKER, labels.CPU)
    isp_pod = labels.component_labels("demo", labels.WORKER, labels.ISP)
    assert not cpu.items() <= isp_pod.items()


def test_child_names():
    assert labels.scheduler_name("demo") == "demo-scheduler"
    assert labels.worker_name("demo", "cpu") == "demo-worker-cpu"
    assert labels.worker_name("demo", "isp") == "demo-worker-isp"
    assert labels.driver_name("demo") == "demo-driver"
    assert labels.configmap_name("demo") == "demo-spec"
    assert labels.shards_name("demo") == "demo-shards"
    with pytest.raises(ValueError):
        labels.worker_name("demo", "gpu")


@pytest.mark.parametrize("job", ["a" * 63, "7up", "x" * 50 + "-" + "y" * 12])
def test_child_names_stay_valid_service_names(job):
    names = [
        labels.scheduler_name(job),
        labels.driver_name(job),
        labels.configmap_name(job),
        labels.worker_name(job, "cpu"),
        labels.worker_name(job, "isp"),
        labels.shards_name(job),
    ]
    for name in names:
        assert len(name) <= 63 and DNS1035.fullmatch(name), name
    assert len(set(names)) == len(names)


def test_shortened_names_of_different_jobs_differ():
    assert labels.scheduler_name("a" * 62 + "b") != labels.scheduler_name("a" * 62 + "c")
