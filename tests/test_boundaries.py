"""Who may import whom: the operator and the CRD generator load no data plane.

Checked in a fresh interpreter by looking at ``sys.modules`` after the imports, so an indirect
import (the spec importing the op library, say) is caught too, not only the direct ones that
``tests/operator/test_builders.py`` reads from the source.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO

#: Modules the operator side must never load: recprep's data plane and its heavy dependencies.
FORBIDDEN_PREFIXES = ("recprep.workloads", "recprep.delivery", "recprep.train")
FORBIDDEN_ROOTS = {"pyarrow", "numpy", "pandas", "torch", "sklearn"}

_PROBE = """
import json, sys
import recprep.cli
import recprep.operator.main, recprep.operator.handlers, recprep.operator.follow, recprep.operator.pools
import recprep.crd
recprep.crd.render()
from recprep.spec import load_job
load_job(sys.argv[1])  # a whole job validated: every op's parameters checked
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_by(code: str, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_the_operator_and_the_crd_generator_load_no_data_plane():
    loaded = _loaded_by(_PROBE, str(REPO / "examples" / "criteo-sample.yaml"))
    assert "recprep.operator.handlers" in loaded and "recprep.op_params" in loaded  # the probe ran
    bad = [m for m in loaded if m.startswith(FORBIDDEN_PREFIXES) or m.split(".")[0] in FORBIDDEN_ROOTS]
    assert bad == [], f"loaded by the operator or the CRD generator: {bad}"


def test_the_probe_would_see_an_indirect_import():
    # the same check on the data plane's op library does find pyarrow: the probe is not blind
    loaded = _loaded_by(
        "import json, sys; import recprep.workloads.ops; print(json.dumps(sorted(sys.modules)))"
    )
    assert "pyarrow" in loaded and "recprep.op_params" in loaded


# --- who may import whom, read from the source (the layout in README.md) ------------------------

PACKAGE = REPO / "recprep"

#: module prefix -> (recprep modules it may import, third-party roots it must not import).
#: The most specific prefix applies. Imports inside functions count too.
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "recprep.errors": ((), ("pyarrow", "numpy")),
    "recprep.op_params": ((), ("pyarrow", "numpy")),
    "recprep.uris": (("recprep.errors",), ("pyarrow", "numpy")),
    "recprep.manifest": (("recprep.errors",), ("pyarrow", "numpy")),
    "recprep.spec": (
        ("recprep.errors", "recprep.op_params", "recprep.manifest", "recprep.isp_nodes.model"),
        ("pyarrow", "numpy"),
    ),
    # the ISP emulation model is plain data (the spec validates with it)
    "recprep.isp_nodes.model": ((), ("pyarrow", "numpy", "dask", "distributed", "kopf", "kubernetes")),
    # ISP workers, placement and accounting: data plane, never Kubernetes
    "recprep.isp_nodes": (("recprep.isp_nodes",), ("kopf", "kubernetes", "pyarrow", "torch")),
    "recprep.progress": ((), ("pyarrow", "numpy")),
    "recprep.workloads": (
        (
            "recprep.errors",
            "recprep.spec",
            "recprep.op_params",
            "recprep.uris",
            "recprep.workloads",
            "recprep.isp_nodes",
            "recprep.predictor",
            "recprep.delivery.service.acks",
            # the planning pass's failpoint, for the tests of a worker dying in it (a leaf: os)
            "recprep.failpoints",
            "recprep._moved",
            "recprep",
            "recprep.__version__",
        ),
        ("kopf", "kubernetes", "torch"),
    ),
    "recprep.delivery": (
        (
            "recprep.errors",
            "recprep.spec",
            "recprep.uris",
            "recprep.delivery",
            "recprep.workloads.output",
            "recprep.workloads.ops.hashing",
            # the driver's stages (a leaf: ``recprep run --serve`` starts its server past planning)
            "recprep.progress",
        ),
        ("kopf", "kubernetes", "torch"),
    ),
    "recprep.train": (
        (
            "recprep.errors",
            "recprep.spec",
            "recprep.op_params",
            "recprep.uris",
            "recprep.train",
            "recprep.delivery",
            "recprep.workloads.output",
            # the shard tasks' malloc thresholds, which recprep train sets too (a leaf: ctypes)
            "recprep.workloads.memory",
            # the cores and memory the process may use, for torch's threads and the tables' fit
            # (a leaf: os)
            "recprep.workloads.machine",
        ),
        ("kopf", "kubernetes"),
    ),
    "recprep.operator": (
        (
            "recprep",
            "recprep.__version__",
            "recprep.errors",
            "recprep.spec",
            "recprep.op_params",
            "recprep.uris",
            "recprep.progress",
            "recprep.failpoints",
            "recprep.operator",
            "recprep.dashboard",
            # only inside the functions that run a job's policy (spec.autoscale): an operator
            # without autoscaled jobs never loads numpy (the probe above checks it)
            "recprep.predictor",
        ),
        ("pyarrow", "numpy", "torch"),
    ),
    "recprep.crd": (("recprep.spec", "recprep.op_params", "recprep.operator.status"), ("pyarrow", "numpy")),
    # the dashboard: what a job's looks give, served; neither Kubernetes nor the data plane (the
    # operator and recprep run feed it what they see)
    "recprep.dashboard": (
        ("recprep.dashboard",),
        ("kopf", "kubernetes", "pyarrow", "numpy", "dask", "distributed", "torch"),
    ),
    # the autoscaler's brain: pure code (numpy, scikit-learn), neither Kubernetes nor the data plane
    "recprep.predictor": (
        ("recprep.predictor",),
        ("kopf", "kubernetes", "pyarrow", "dask", "distributed", "torch"),
    ),
}


def _module_name(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    import ast

    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            if node.module is not None:
                found.add(name)
            # from pkg import a: a may be a submodule; pkg.a is checked (names in pkg are allowed with it)
            found.update(f"{name}.{a.name}" for a in node.names)
    return found


def _rule(module: str):
    prefixes = [p for p in RULES if module == p or module.startswith(p + ".")]
    return RULES[max(prefixes, key=len)] if prefixes else None


def _allowed(name: str, allowed: tuple[str, ...]) -> bool:
    return any(name == a or (a != "recprep" and name.startswith(a + ".")) for a in allowed)


def test_every_package_imports_only_what_the_layout_allows():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        rule = _rule(module)
        if rule is None:
            continue
        allowed, banned = rule
        for name in sorted(_imports(path)):
            if name.split(".")[0] == "recprep":
                if not _allowed(name, allowed):
                    problems.append(f"{module} imports {name}")
            elif name.split(".")[0] in banned:
                problems.append(f"{module} imports {name}")
    assert problems == []


def test_the_layout_check_sees_a_forbidden_import(tmp_path, monkeypatch):
    # the reader resolves relative imports: an operator module reaching the data plane is found
    fake = PACKAGE / "operator" / "_probe_for_test.py"
    monkeypatch.setattr(type(fake), "read_text", lambda self, *a, **k: "from ..workloads import runner\n")
    assert _imports(fake) == {"recprep.workloads", "recprep.workloads.runner"}
    assert not _allowed("recprep.workloads.runner", _rule("recprep.operator.x")[0])
