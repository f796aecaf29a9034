"""The PreprocessJob CRD: generated from the spec model, committed, structural, and it accepts the
examples."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from recprep.crd import CRD_PATH, REGENERATE, build_crd, drift, main, render
from recprep.op_params import PARAMS
from recprep.spec import JobSpec, load_job, load_job_dict

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / CRD_PATH
#: The example PreprocessJobs (examples/ also holds other manifests, e.g. a trainer Job).
EXAMPLES = sorted(
    p
    for p in (REPO / "examples").glob("*.yaml")
    if any((d or {}).get("kind") == "PreprocessJob" for d in yaml.safe_load_all(p.read_text()))
)


def _version(crd: dict) -> dict:
    (version,) = crd["spec"]["versions"]
    return version


def _spec_schema(crd: dict) -> dict:
    return _version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_committed_crd_matches_the_spec_model():
    assert drift(CRD_FILE) is None
    assert yaml.safe_load(CRD_FILE.read_text()) == build_crd(), f"regenerate: {REGENERATE}"


def test_the_drift_check_names_the_file_and_the_fix(tmp_path, capsys):
    stale = tmp_path / "crd.yaml"
    stale.write_text(render().replace("Pending", "Waiting"))
    assert main(["--check", str(stale)]) == 1
    assert f"{stale}: the committed CRD differs" in capsys.readouterr().err
    assert main(["--check", str(tmp_path / "missing.yaml")]) == 1
    assert REGENERATE in capsys.readouterr().err
    assert main(["--check", str(CRD_FILE)]) == 0


def test_names_scope_subresources_and_columns():
    crd = build_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "preprocessjobs.recprep.io"
    assert spec["group"] == "recprep.io" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "PreprocessJob",
        "listKind": "PreprocessJobList",
        "plural": "preprocessjobs",
        "singular": "preprocessjob",
        "shortNames": ["ppj"],
    }
    version = _version(crd)
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Progress": ".status.progressText",
        "CPU": ".status.workers.cpu",
        "ISP": ".status.workers.isp",
        "Scaled": ".status.autoscaler.lastScale",
        "Age": ".metadata.creationTimestamp",
    }
    # status is typed (the API server prunes what it does not declare): every printer column
    # reads a declared field of the right type.
    schema = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        node = schema
        for part in column["jsonPath"].lstrip(".").split("."):
            if part == "metadata":
                node = {"type": "date"}  # creationTimestamp: server-set
                break
            node = node["properties"][part]
        assert column["type"] in (node["type"], "date"), column
    status = schema["properties"]["status"]
    assert status["type"] == "object" and "x-kubernetes-preserve-unknown-fields" not in status
    assert status["properties"]["phase"]["enum"] == ["Pending", "Fitting", "Running", "Succeeded", "Failed"]


def _structural_violations(node: dict, path: str, preserved: bool = False) -> list[str]:
    """Kubernetes' structural-schema rules that pydantic's output could break."""
    bad = []
    preserved = preserved or node.get("x-kubernetes-preserve-unknown-fields", False)
    if "type" not in node and not preserved:
        bad.append(f"{path}: no type")
    for key in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "const", "title"):
        if key in node:
            bad.append(f"{path}: {key} is not allowed here")
    if "properties" in node and "additionalProperties" in node:
        bad.append(f"{path}: properties and additionalProperties together")
    if node.get("default", 0) is None and not node.get("nullable"):
        bad.append(f"{path}: default null without nullable")
    for name, sub in node.get("properties", {}).items():
        bad += _structural_violations(sub, f"{path}.{name}", preserved)
    if "items" in node:
        bad += _structural_violations(node["items"], f"{path}[]", preserved)
    return bad


def test_crd_schema_is_structural():
    root = _version(build_crd())["schema"]["openAPIV3Schema"]
    assert _structural_violations(root, "") == []


def test_schema_keeps_what_the_model_says():
    spec = _spec_schema(build_crd())
    assert spec["required"] == ["source", "output"]
    source = spec["properties"]["source"]["properties"]
    assert source["format"] == {
        **source["format"],
        "type": "string",
        "nullable": True,
        "enum": ["criteo", "csv", "tsv", "parquet"],
    }
    assert source["maxBadFraction"]["minimum"] == 0 and source["maxBadFraction"]["maximum"] == 1
    assert source["maxBadFraction"]["default"] == 0.01
    # Selectors (string or list of strings) keep their value as written; the operator checks them.
    assert source["dense"]["x-kubernetes-preserve-unknown-fields"] is True
    assert "type" not in source["dense"]
    transform = spec["properties"]["transforms"]["items"]
    assert transform["type"] == "object" and transform["required"] == ["op", "columns"]
    assert transform["properties"]["op"]["enum"] == sorted(PARAMS)
    assert transform["x-kubernetes-preserve-unknown-fields"] is True
    output = spec["properties"]["output"]["properties"]
    assert output["format"]["enum"] == ["parquet"]
    pools = spec["properties"]["pools"]["properties"]
    assert pools["cpu"]["properties"]["max"] == {
        **pools["cpu"]["properties"]["max"],
        "type": "integer",
        "minimum": 0,
        "default": 20,
    }
    assert pools["isp"]["properties"]["max"]["default"] == 4
    assert spec["properties"]["backoffLimit"]["default"] == 2
    assert spec["properties"]["ttlSecondsAfterFinished"]["default"] == 600
    # every field of the model has a description in the CRD (kubectl explain shows them)
    for name in JobSpec.model_json_schema(by_alias=True)["properties"]:
        assert spec["properties"][name].get("description"), name


def test_op_parameters_are_described_for_kubectl_explain():
    transform = _spec_schema(build_crd())["properties"]["transforms"]["items"]
    for name, model in PARAMS.items():
        assert f"{name}: {model.summary}" in transform["properties"]["op"]["description"]
        for field, text in model.field_docs().items():
            node = transform["properties"][field]
            assert f"{name}: {text}" in node["description"], (name, field)
            # kept as written: the operator validates the value against the named op's model
            assert node["x-kubernetes-preserve-unknown-fields"] is True and "type" not in node
    assert "sigrid_hash: Size of the embedding table" in transform["properties"]["maxValue"]["description"]
    assert "ngram: Hash n-grams" in transform["properties"]["maxValue"]["description"]


def test_kubernetes_validate_accepts_the_crd():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(build_crd(), "1.32.0", strict=True)


def _to_jsonschema(node: dict) -> dict:
    """A CRD schema node as plain JSON Schema: nullable -> null allowed, and objects that do not
    preserve unknown fields reject them (what `kubectl apply --validate=strict` does)."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if "properties" in node:
        out["properties"] = {k: _to_jsonschema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if "items" in node:
        out["items"] = _to_jsonschema(node["items"])
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(flag) is True:  # OpenAPI v3.0's flag -> JSON Schema's exclusive bound
            out[flag] = out.pop(bound)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd(path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = _to_jsonschema(_version(build_crd())["schema"]["openAPIV3Schema"])
    doc = next(d for d in yaml.safe_load_all(path.read_text()) if d)
    jsonschema.validate(doc, schema)
    load_job(path)  # and the model agrees


def test_crd_rejects_what_the_model_rejects():
    jsonschema = pytest.importorskip("jsonschema")
    schema = _to_jsonschema(_version(build_crd())["schema"]["openAPIV3Schema"])
    doc = next(d for d in yaml.safe_load_all(EXAMPLES[0].read_text()) if d)
    for mutate in (
        lambda d: d["spec"]["source"].update(format="xml"),
        lambda d: d["spec"]["transforms"][0].update(op="nope"),
        lambda d: d["spec"].update(pools={"cpu": {"max": -1}}),
        lambda d: d["spec"].update(backoffLimit=-1),
        lambda d: d["spec"]["source"].update(surprise=1),
        lambda d: d["spec"].update(pools={"isp": {"model": {"networkBytesPerSecond": 0}}}),
        lambda d: d["spec"].update(pools={"isp": {"model": {"throughput": {"sorting": 1}}}}),
        lambda d: d["spec"].update(autoscale={"quantile": 1.5}),
        lambda d: d["spec"].update(autoscale={"policy": "magic"}),
    ):
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_runtime_fields_do_not_change_identity():
    doc = next(d for d in yaml.safe_load_all(EXAMPLES[0].read_text()) if d)
    base = load_job_dict(copy.deepcopy(doc)).identity()
    doc["spec"].update(
        pools={"cpu": {"min": 2, "max": 9, "preemptible": False}, "isp": {"max": 1}},
        backoffLimit=5,
        ttlSecondsAfterFinished=0,
        autoscale={"policy": "reactive", "interval": 5, "quantile": 0.95, "deadline": 3600, "budget": 1.5},
    )
    assert load_job_dict(doc).identity() == base


@pytest.mark.parametrize("pool", ["cpu", "isp"])
def test_pool_min_above_max_names_the_field(pool):
    from recprep.errors import SpecError

    doc = next(d for d in yaml.safe_load_all(EXAMPLES[0].read_text()) if d)
    doc["spec"]["pools"] = {pool: {"min": 3, "max": 2}}
    with pytest.raises(SpecError, match=rf"spec\.pools\.{pool}: min \(3\) must not exceed max \(2\)"):
        load_job_dict(doc)


def test_identity_of_the_demo_is_unchanged():
    # the hash before spec.pools/backoffLimit/ttlSecondsAfterFinished existed: adding runtime
    # fields must not invalidate outputs already written under the old identity
    job = load_job(REPO / "examples" / "demo.yaml")
    assert job.identity() == "d0a63048eb48431f8ae8f134e127ddbde49468d0af37382be6bea9dac9c4544a"
