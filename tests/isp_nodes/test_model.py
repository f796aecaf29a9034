"""The ISP emulation model: every default has a source, the spec validates overrides, bad
parameters are refused naming the field."""

from __future__ import annotations

import pytest

from recprep.errors import SpecError
from recprep.isp_nodes.model import SOURCES, IspModel, Throughput, described
from recprep.op_params import OFFLOAD_CLASSES, PARAMS
from recprep.spec import load_job_dict


def _job(isp: dict) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "m"},
        "spec": {
            "source": {"uri": "synthetic://criteo?rows=10", "format": "criteo"},
            "transforms": [{"op": "fill_null", "columns": "dense", "value": 0}],
            "output": {"uri": "/tmp/unused"},
            "pools": {"isp": isp},
        },
    }


def test_every_parameter_has_a_default_and_a_source():
    rows = described()
    assert {name for name, _, _ in rows} == set(SOURCES)
    for name, value, source in rows:
        assert value is not None and len(source) > 20, name
    # an assumption says it is one
    assert SOURCES["throughput.generation"].startswith("assumption")


def test_the_op_classes_of_the_registry_are_the_models():
    assert set(OFFLOAD_CLASSES) == set(Throughput.model_fields)
    assert {p.offload for p in PARAMS.values()} - {None} == set(OFFLOAD_CLASSES)
    assert PARAMS["categorify"].offload is None  # a vocabulary lookup stays on the CPU pool


def test_a_partial_override_keeps_the_other_defaults_and_is_reported_as_set():
    job = load_job_dict(
        _job({"mode": "paced", "model": {"throughput": {"generation": 5e6}, "ispUnitWatts": 20}})
    )
    model = job.spec.pools.isp.model
    assert model.throughput.generation == 5e6
    assert model.throughput.normalization == IspModel().throughput.normalization
    assert model.isp_unit_watts == 20 and model.cpu_core_watts == IspModel().cpu_core_watts
    sources = {name: source for name, _, source in described(model)}
    assert sources["throughput.generation"] == "set by the job"
    assert sources["throughput.decode"] == SOURCES["throughput.decode"]


@pytest.mark.parametrize(
    ("isp", "field", "words"),
    [
        (
            {"model": {"networkBytesPerSecond": -1}},
            "spec.pools.isp.model.networkBytesPerSecond",
            "greater than 0",
        ),
        (
            {"model": {"internalReadBytesPerSecond": 0}},
            "spec.pools.isp.model.internalReadBytesPerSecond",
            "greater",
        ),
        (
            {"model": {"throughput": {"sorting": 1e6}}},
            "spec.pools.isp.model.throughput",
            "unknown op class 'sorting'",
        ),
        (
            {"model": {"throughput": {"generation": -5}}},
            "spec.pools.isp.model.throughput.generation",
            "greater",
        ),
        ({"model": {"ispUnitWatts": "lots"}}, "spec.pools.isp.model.ispUnitWatts", "number"),
        ({"model": {"cpuNodeCores": 0}}, "spec.pools.isp.model.cpuNodeCores", "greater"),
        ({"model": {"bogus": 1}}, "spec.pools.isp.model.bogus", "unknown"),
        ({"mode": "fast"}, "spec.pools.isp.mode", "native"),
        ({"units": 0}, "spec.pools.isp.units", "greater"),
    ],
)
def test_bad_model_parameters_are_refused_naming_the_field(isp, field, words):
    with pytest.raises(SpecError) as err:
        load_job_dict(_job(isp))
    assert f"{field}:" in str(err.value) and words in str(err.value)


def test_unit_seconds_adds_the_read_the_parse_and_each_class():
    m = IspModel.model_validate(
        {
            "internalReadBytesPerSecond": 100,
            "parseBytesPerSecond": 50,
            "throughput": {"generation": 10, "normalization": 20, "decode": 5},
        }
    )
    assert m.unit_seconds(100, 50, {"generation": 10, "normalization": 20, "decode": 5}) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="unknown op class"):
        m.class_rate("sorting")
    assert m.cpu_core_hourly(True) == pytest.approx(m.cpu_node_hourly_preemptible / m.cpu_node_cores)


def test_the_pool_settings_do_not_change_the_jobs_identity():
    plain = load_job_dict(_job({}))
    paced = load_job_dict(_job({"mode": "paced", "units": 4, "model": {"throughput": {"decode": 1}}}))
    assert plain.identity() == paced.identity()
