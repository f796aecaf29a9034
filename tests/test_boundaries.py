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
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_the_operator_and_the_crd_generator_load_no_data_plane():
    loaded = _loaded_by(_PROBE, str(REPO / "examples" / "criteo-sample.yaml"))
    assert "recprep.operator.handlers" in loaded and "recprep.op_params" in loaded  # the probe ran
    bad = [m for m in loaded if m.startswith(FORBIDDEN_PREFIXES) or m.split(".")[0] in FORBIDDEN_ROOTS]
    assert bad == [], f"loaded by the operator or the CRD generator: {bad}"


def test_the_probe_would_see_an_indirect_import():
    # the same check on the data plane's op library does find pyarrow: the probe is not blind
    loaded = _loaded_by("import json, sys; import recprep.workloads.ops; print(json.dumps(sorted(sys.modules)))")
    assert "pyarrow" in loaded and "recprep.op_params" in loaded
