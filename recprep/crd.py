"""The PreprocessJob CustomResourceDefinition, generated from the pydantic spec model.

``python -m recprep.crd > charts/recprep/crds/preprocessjobs.recprep.io.yaml`` regenerates the
committed file; ``python -m recprep.crd --check`` (run by ``.ci/run``) and ``tests/test_crd.py``
fail when the two drift.

Kubernetes only accepts *structural* schemas for ``apiextensions.k8s.io/v1``: every node names a
``type`` (except under ``x-kubernetes-preserve-unknown-fields``), ``anyOf``/``oneOf`` may not carry
types, ``properties`` and ``additionalProperties`` are exclusive, ``default: null`` needs
``nullable``. :func:`structural` turns pydantic's JSON schema into that form.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from .op_params import PARAMS
from .operator.status import STATUS_SCHEMA
from .spec import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, JobSpec

CRD_NAME = f"{PLURAL}.{GROUP}"
#: Where the chart keeps the generated CRD, relative to the repository root.
CRD_PATH = Path("charts") / "recprep" / "crds" / f"{CRD_NAME}.yaml"
REGENERATE = f"python -m recprep.crd > {CRD_PATH}"

#: Keys of a pydantic JSON schema that a CRD schema keeps (JSONSchemaProps has no const/title use).
_KEEP = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "format",
}

PRINTER_COLUMNS = [
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Pending, Fitting, Running, Succeeded or Failed.",
    },
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progressText",
        "description": "Shards committed out of the total, e.g. 12/40.",
    },
    {
        "name": "CPU",
        "type": "integer",
        "jsonPath": ".status.workers.cpu",
        "description": "Workers in the CPU pool.",
    },
    {
        "name": "ISP",
        "type": "integer",
        "jsonPath": ".status.workers.isp",
        "description": "Workers in the ISP-emulation pool.",
    },
    {
        "name": "Scaled",
        "type": "string",
        "jsonPath": ".status.autoscaler.lastScale",
        "description": "The autoscaler's latest scaling action, e.g. cpu 1->2 (spec.autoscale).",
    },
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
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema draft 2020 (pydantic's gt/lt) gives the bound; OpenAPI v3.0, which the
            # CRD speaks, gives the bound as minimum/maximum and the exclusiveness as a flag
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key in _KEEP:
            out[key] = copy.deepcopy(value)
    return out


def op_parameters() -> dict[str, dict]:
    """Every op parameter a transform may carry, with its description from ``recprep.op_params``.

    Parameters are checked by the operator against the named op's model, so here each keeps its
    value as written (x-kubernetes-preserve-unknown-fields, as ``columns``): the CRD documents
    them for ``kubectl explain`` without a second, weaker validation. A name shared by several
    ops gets each op's description."""
    docs: dict[str, list[str]] = {}
    for name, model in PARAMS.items():
        for field, text in model.field_docs().items():
            docs.setdefault(field, []).append(f"{name}: {text}")
    return {
        field: {"x-kubernetes-preserve-unknown-fields": True, "description": " ".join(texts)}
        for field, texts in sorted(docs.items())
    }


def transform_schema() -> dict:
    """A transform item: ``op`` and ``columns`` checked here, op parameters by the operator."""
    ops = "; ".join(f"{name}: {model.summary}" for name, model in sorted(PARAMS.items()))
    return {
        "type": "object",
        "description": "One step of the pipeline: op names the op, columns selects its input "
        "columns, the other fields are the op's parameters (validated by the operator).",
        "required": ["op", "columns"],
        "properties": {
            "op": {"type": "string", "enum": sorted(PARAMS), "description": f"Name of the op. {ops}."},
            "columns": {
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "Input columns: dense | sparse | label | a name | a glob | "
                "a list of names/globs.",
            },
            **op_parameters(),
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
    header = "# Generated by `python -m recprep.crd` from recprep/spec.py; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def drift(path: Path) -> str | None:
    """None when ``path`` holds what :func:`render` gives; otherwise what is wrong and the fix."""
    try:
        committed = path.read_text()
    except OSError as exc:
        return f"{path}: cannot read the committed CRD ({exc.strerror}); generate it: {REGENERATE}"
    if committed != render():
        return f"{path}: the committed CRD differs from recprep/spec.py; regenerate it: {REGENERATE}"
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m recprep.crd`` prints the CRD; ``--check [PATH]`` compares the committed one."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--check"]:
        problem = drift(Path(args[1]) if len(args) > 1 else CRD_PATH)
        print(problem or f"{CRD_PATH}: up to date", file=sys.stderr if problem else sys.stdout)
        return 1 if problem else 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
