"""The PreprocessJob CustomResourceDefinition, generated from the pydantic spec model.

``python -m recprep.crd > charts/recprep/crds/preprocessjobs.recprep.io.yaml`` regenerates the
committed file; ``tests/test_crd.py`` fails when the two drift.

Kubernetes only accepts *structural* schemas for ``apiextensions.k8s.io/v1``: every node names a
``type`` (except under ``x-kubernetes-preserve-unknown-fields``), ``anyOf``/``oneOf`` may not carry
types, ``properties`` and ``additionalProperties`` are exclusive, ``default: null`` needs
``nullable``. :func:`structural` turns pydantic's JSON schema into that form.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from .operator.status import STATUS_SCHEMA
from .spec import API_VERSION, KIND, JobSpec
from .workloads.ops import REGISTRY

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "preprocessjobs"
SINGULAR = "preprocessjob"
SHORT_NAMES = ["ppj"]
CRD_NAME = f"{PLURAL}.{GROUP}"

#: Keys of a pydantic JSON schema that a CRD schema keeps (JSONSchemaProps has no const/title use).
_KEEP = {
    "type", "description", "properties", "required", "items", "enum", "default",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "format",
}

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase",
     "description": "Pending, Fitting, Running, Succeeded or Failed."},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progressText",
     "description": "Shards committed out of the total, e.g. 12/40."},
    {"name": "CPU", "type": "integer", "jsonPath": ".status.workers.cpu",
     "description": "Workers in the CPU pool."},
    {"name": "ISP", "type": "integer", "jsonPath": ".status.workers.isp",
     "description": "Workers in the ISP-emulation pool."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _is_selector(variants: list[dict]) -> bool:
    """``str | list[str]`` (the Selector type), possibly also ``| None``."""
    types = sorted(v.get("type", "") for v in variants if v.get("type") != "null")
    return types == ["array", "string"]


def structural(schema: dict, defs: dict) -> dict:
    """One pydantic JSON-schema node as a structural Kubernetes schema node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    out: dict[str, Any] = {}
    if "anyOf" in schema:
        variants = schema["anyOf"]
        nullable = any(v.get("type") == "null" for v in variants)
        rest = [v for v in variants if v.get("type") != "null"]
        if _is_selector(rest):
            # A Selector is a string OR a list of strings. A structural schema cannot say that:
            # types inside anyOf are forbidden and the node itself needs one type. So the node
            # keeps its value as written (x-kubernetes-preserve-unknown-fields, the one allowed
            # type-less form) and the operator validates it with the pydantic model.
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif len(rest) == 1:
            out.update(structural(rest[0], defs))
        else:
            raise ValueError(f"cannot express anyOf {variants} in a structural schema")
        if nullable:
            out["nullable"] = True
    for key, value in schema.items():
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = structural(value, defs)
        elif key == "default" and value is None:
            continue  # absent means null; Kubernetes would prune an explicit null anyway
        elif key in _KEEP:
            out[key] = copy.deepcopy(value)
    return out


def transform_schema() -> dict:
    """A transform item: ``op`` and ``columns`` checked here, op parameters by the operator."""
    return {
        "type": "object",
        "description": "One step of the pipeline: op names the op, columns selects its input "
        "columns, the other fields are the op's parameters (validated by the operator).",
        "required": ["op", "columns"],
        "properties": {
            "op": {"type": "string", "enum": sorted(REGISTRY), "description": "Name of the op."},
            "columns": {
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "Input columns: dense | sparse | label | a name | a glob | "
                "a list of names/globs.",
            },
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }


def spec_schema() -> dict:
    """The structural schema of ``spec``, from :class:`recprep.spec.JobSpec`."""
    raw = JobSpec.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    out = structural(raw, defs)
    out["properties"]["transforms"]["items"] = transform_schema()
    return out


def build_crd() -> dict:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of PreprocessJob."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A recprep preprocessing job: what data, which "
                            "transforms, where the results go.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": copy.deepcopy(STATUS_SCHEMA),
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    """The CRD as the YAML committed in charts/recprep/crds/."""
    header = (
        "# Generated by `python -m recprep.crd` from recprep/spec.py; do not edit by hand.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
