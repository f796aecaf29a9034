"""The PreprocessJob model: the README's manifest loads; every bad field is named."""

from __future__ import annotations

import re

import pytest
import yaml

from recprep.errors import SpecError
from recprep.spec import load_job, load_job_dict

from .conftest import REPO, job_doc

#: examples that are not PreprocessJobs (a batch/v1 Job: tests/train/test_trainer_job.py checks it)
NOT_JOBS = {"trainer-job.yaml"}


def test_examples_load():
    for path in sorted((REPO / "examples").glob("*.yaml")):
        if path.name in NOT_JOBS:
            continue
        job = load_job(path)
        assert job.kind == "PreprocessJob"


def test_camel_case_fields():
    job = load_job_dict(job_doc("x.tsv", "out", maxBadFraction=0.5))
    assert job.spec.source.max_bad_fraction == 0.5
    assert job.spec.output.rows_per_shard == 65536


@pytest.mark.parametrize(
    "transform, expected",
    [
        (
            {"op": "sigrid", "columns": "sparse"},
            "spec.transforms[0].op: unknown op 'sigrid'; allowed: boxcox, bucketize",
        ),
        (
            {"op": "sigrid_hash", "columns": "sparse", "maxValue": 0},
            "spec.transforms[0].max_value: Input should be greater than 0",
        ),
        ({"op": "sigrid_hash", "columns": "sparse"}, "spec.transforms[0].maxValue: Field required"),
        (
            {"op": "sigrid_hash", "columns": "sparse", "maxValue": -1},
            "maxValue: Input should be greater than 0 (got -1) -- maxValue: Size of the embedding table",
        ),
        (
            {"op": "firstx", "columns": "sparse", "k": 0},
            "spec.transforms[0].k: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"op": "bucketize", "columns": ["I1"], "borders": [2, 1]},
            "spec.transforms[0].borders: borders must be non-decreasing",
        ),
        (
            {"op": "bucketize", "columns": ["I1"], "borders": []},
            "spec.transforms[0].borders: borders must not be empty",
        ),
        (
            {"op": "log", "columns": "dense", "ofset": 3},
            "spec.transforms[0].ofset: unknown field (op log; fields: columns, offset)",
        ),
        ({"op": "clamp", "columns": "dense"}, "give at least one of min, max"),
        (  # an empty name used to pass as no output at all: the input replaced in place
            {"op": "bucketize", "columns": ["I1"], "borders": [1], "output": ""},
            "spec.transforms[0].output: String should have at least 1 character (got '')",
        ),
        (
            {"op": "is_in", "columns": ["C1"], "values": ["a"], "output": ""},
            "spec.transforms[0].output: String should have at least 1 character (got '')",
        ),
    ],
)
def test_bad_transform_names_index_and_field(transform, expected):
    with pytest.raises(SpecError) as err:
        load_job_dict(job_doc("x.tsv", "out", transforms=[transform]))
    assert expected.replace("max_value", "maxValue") in str(err.value) or expected in str(err.value)


def test_bad_source_field_names_path_and_allowed_values():
    doc = job_doc("x.tsv", "out")
    doc["spec"]["source"]["format"] = "excel"
    with pytest.raises(
        SpecError, match=r"spec\.source\.format: must be one of 'criteo', 'csv', 'tsv' or 'parquet'"
    ):
        load_job_dict(doc)
    doc = job_doc("x.tsv", "out", maxBadFraction=2)
    with pytest.raises(SpecError, match=r"spec\.source\.maxBadFraction: .*less than or equal to 1"):
        load_job_dict(doc)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("apiVersion: recprep.io/v1alpha1\nkind: PreprocessJob\nspec: [\n")
    with pytest.raises(SpecError, match=r"job\.yaml:\d+: not valid YAML"):
        load_job(path)


def test_wrong_kind_and_missing_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap"}))
    with pytest.raises(SpecError, match="exactly one document of kind PreprocessJob"):
        load_job(path)
    with pytest.raises(SpecError, match="cannot read the job file"):
        load_job(tmp_path / "missing.yaml")


def test_identity_ignores_output_location_but_not_transforms():
    a = load_job_dict(job_doc("x.tsv", "out-a"))
    b = load_job_dict(job_doc("x.tsv", "out-b"))
    assert a.identity() == b.identity()
    doc = job_doc("x.tsv", "out-a")
    doc["spec"]["transforms"][4]["salt"] = 1
    assert load_job_dict(doc).identity() != a.identity()


def test_identity_ignores_the_runtime_fields_serve_included():
    a = load_job_dict(job_doc("x.tsv", "out-a"))
    doc = job_doc("x.tsv", "out-a")
    doc["spec"].update(
        pools={"cpu": {"max": 3}},
        backoffLimit=5,
        ttlSecondsAfterFinished=9,
        serve={"port": 9000, "tokenSecret": "x-shards", "seed": 4},
    )
    b = load_job_dict(doc)
    assert b.spec.serve.port == 9000 and b.spec.serve.token_secret == "x-shards"
    assert b.identity() == a.identity()


@pytest.mark.parametrize(
    "serve, message",
    [
        ({"port": 0}, "spec.serve.port: Input should be greater than or equal to 1"),
        ({"tokenSecret": "Bad_Name"}, "spec.serve.tokenSecret: must be the name of a Secret"),
        ({"token": "x"}, "spec.serve.token: unknown field"),
    ],
)
def test_serve_errors_name_the_field(serve, message):
    doc = job_doc("x.tsv", "out-a")
    doc["spec"]["serve"] = serve
    with pytest.raises(SpecError, match=re.escape(message)):
        load_job_dict(doc)


def test_autoscale_defaults_and_a_valid_setting():
    job = load_job_dict(job_doc("x.tsv", "out-a"))
    a = job.spec.autoscale
    assert (a.policy, a.interval, a.quantile, a.deadline, a.budget) == ("predictive", 10.0, 0.8, None, None)
    doc = job_doc("x.tsv", "out-a")
    doc["spec"]["autoscale"] = {
        "policy": "moving-window",
        "interval": 30,
        "quantile": 0.99,
        "deadline": 7200,
        "budget": 2.5,
    }
    b = load_job_dict(doc).spec.autoscale
    assert (b.policy, b.interval, b.quantile, b.deadline, b.budget) == (
        "moving-window",
        30.0,
        0.99,
        7200,
        2.5,
    )


def test_autoscale_is_a_runtime_field_not_part_of_the_identity():
    a = load_job_dict(job_doc("x.tsv", "out-a"))
    doc = job_doc("x.tsv", "out-a")
    doc["spec"]["autoscale"] = {"policy": "reactive", "quantile": 0.5, "deadline": 60, "budget": 0.1}
    assert load_job_dict(doc).identity() == a.identity()
    doc["spec"]["autoscale"] = {}
    assert load_job_dict(doc).identity() == a.identity()


@pytest.mark.parametrize(
    "autoscale, message",
    [
        ({"policy": "magic"}, "spec.autoscale.policy: must be one of 'predictive', 'reactive'"),
        ({"interval": 0}, "spec.autoscale.interval: Input should be greater than 0 (got 0)"),
        ({"interval": "soon"}, "spec.autoscale.interval: Input should be a valid number"),
        ({"quantile": 0.4}, "spec.autoscale.quantile: Input should be greater than or equal to 0.5"),
        ({"quantile": 1.0}, "spec.autoscale.quantile: Input should be less than or equal to 0.99"),
        ({"deadline": 0}, "spec.autoscale.deadline: Input should be greater than or equal to 1"),
        ({"deadline": "PT1H"}, "spec.autoscale.deadline: Input should be a valid integer"),
        ({"budget": 0}, "spec.autoscale.budget: Input should be greater than 0"),
        ({"budget": -2}, "spec.autoscale.budget: Input should be greater than 0"),
        ({"horizon": 5}, "spec.autoscale.horizon: unknown field"),
    ],
)
def test_autoscale_errors_name_the_field(autoscale, message):
    doc = job_doc("x.tsv", "out-a")
    doc["spec"]["autoscale"] = autoscale
    with pytest.raises(SpecError, match=re.escape(message)):
        load_job_dict(doc)


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        # an empty output URI was the working directory: shards and ledger written there unasked
        ("output", "uri", "", "spec.output.uri: String should have at least 1 character (got '')"),
        ("source", "uri", "", "spec.source.uri: String should have at least 1 character (got '')"),
        # a repeated source column name gave the output two columns of one name
        (
            "source",
            "columns",
            ["a", "b", "a"],
            "spec.source.columns: must be distinct, non-empty column names",
        ),
        ("source", "columns", ["a", ""], "spec.source.columns: must be distinct, non-empty column names"),
    ],
)
def test_empty_uris_and_repeated_source_columns_are_refused(section, field, value, message):
    doc = job_doc("x.csv", "out")
    doc["spec"][section][field] = value
    with pytest.raises(SpecError) as err:
        load_job_dict(doc)
    assert message in str(err.value)
