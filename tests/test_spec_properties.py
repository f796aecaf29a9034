"""The bad-job half of the fault suite (property-based): any manifest, however mangled, either
loads or is refused with a SpecError that names the field; never another exception. Every spec
field and every op parameter is mutated; through the YAML text too, and through the CLI (exit 2,
one line, no traceback) for a sample.

In CI the examples are derandomized, so every run checks the same ones; ``RECPREP_EXPLORE=5000``
runs that many fresh random examples per test instead (a longer search).
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recprep.errors import SpecError
from recprep.op_params import PARAMS
from recprep.spec import load_job_dict, load_job_text
from recprep.workloads.ops import build_op

from .conftest import REPO

#: CI: the same 300 examples every run; RECPREP_EXPLORE=N: N fresh random examples per test
PROFILE = (
    settings(max_examples=int(os.environ["RECPREP_EXPLORE"]), deadline=None, database=None)
    if os.environ.get("RECPREP_EXPLORE")
    else settings(
        max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
)

#: A job using every op, every source field and every runtime field.
BASE: dict[str, Any] = {
    "apiVersion": "recprep.io/v1alpha1",
    "kind": "PreprocessJob",
    "metadata": {"name": "props", "labels": {"team": "recsys"}},
    "spec": {
        "source": {
            "uri": "synthetic://criteo?rows=100&seed=1",
            "format": "criteo",
            "header": False,
            "label": "label",
            "dense": "I*",
            "sparse": ["C*"],
            "nonFinite": "quarantine",
            "maxBadFraction": 0.01,
            "session": {"key": "C10", "time": "I5", "rule": "gap", "gap": 1800},
        },
        "transforms": [
            {"op": "fill_null", "columns": "dense", "value": 0},
            {"op": "clamp", "columns": ["I2"], "min": 0, "max": 100},
            {"op": "log", "columns": "dense", "offset": 3},
            {"op": "bucketize", "columns": ["I1"], "borders": [0.5, 1.0], "output": "I1_bucket"},
            {"op": "normalize", "columns": ["I3"]},
            {"op": "boxcox", "columns": ["I4"], "shift": 1, "sampleSize": 1000},
            {"op": "categorify", "columns": ["C1"], "minCount": 2},
            {"op": "hex_to_int", "columns": ["C2", "C3"]},
            {"op": "sigrid_hash", "columns": ["C2"], "salt": 1, "maxValue": 1000},
            {"op": "to_list", "columns": ["C2", "C3"]},
            {"op": "firstx", "columns": ["C2"], "k": 1},
            {"op": "ngram", "columns": ["C3"], "n": 2, "maxValue": 100, "output": "C3_ng"},
            {"op": "to_int", "columns": ["C4"]},
            {"op": "history", "columns": ["C4"], "k": 3, "output": "C4_hist"},
            {"op": "is_in", "columns": ["C9"], "values": ["68fd1e64"], "output": "C9_flag"},
            {"op": "cross", "columns": ["C5", "C6"], "output": "C5_C6", "maxValue": 1000, "salt": 2},
            {"op": "time", "columns": ["C7"], "part": "hour", "format": "%y%m%d%H", "output": "C7_hour"},
            {
                "op": "time",
                "columns": ["C8"],
                "part": "age",
                "format": "unix",
                "reference": "2014-10-21T00:00:00Z",
                "unit": "hours",
                "borders": [1, 24],
                "output": "C8_age",
            },
        ],
        "output": {
            "uri": "/tmp/recprep-props",
            "format": "parquet",
            "rowsPerShard": 50,
            "compression": "zstd",
        },
        "pools": {"cpu": {"min": 0, "max": 4, "preemptible": True}, "isp": {"min": 0, "max": 1}},
        "backoffLimit": 2,
        "ttlSecondsAfterFinished": 60,
        "serve": {"port": 8815, "tokenSecret": "props-token", "seed": 0},
        "autoscale": {
            "policy": "predictive",
            "interval": 15,
            "quantile": 0.9,
            "deadline": 3600,
            "budget": 2.0,
        },
        "dedup": [{"name": "user", "features": ["C10", "C4_hist"]}],
    },
}
assert {t["op"] for t in BASE["spec"]["transforms"]} == set(PARAMS), "BASE must use every op"


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in a document (keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, (*prefix, i))
    return out


PATHS = paths(BASE)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 0, -1, 2**63, 1e309, "", "  ", "I*", "sparse", "C1"]),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def mangled(draw) -> dict:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = doc
        try:
            for part in path[:-1]:
                parent = parent[part]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the way there
        key = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "extra"]))
        try:
            if action == "replace":
                parent[key] = draw(values)
            elif action == "delete":
                del parent[key]
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


def check(doc: dict, load) -> None:
    try:
        job = load(doc)
    except SpecError as exc:
        message = str(exc)
        assert "\n" not in message.strip()
        # "job.yaml[:line]: <field>: <what>" (or, for a file that holds no job, what it holds)
        source, _, rest = message.partition(": ")
        assert source.startswith("job.yaml") and rest, message
        return
    for i, transform in enumerate(job.spec.transforms):  # the data plane takes every valid spec
        build_op(transform, i)


@PROFILE
@given(doc=mangled())
def test_a_mangled_job_loads_or_is_refused_naming_the_field(doc):
    check(doc, lambda d: load_job_dict(d, "job.yaml"))


@PROFILE
@given(doc=mangled())
def test_a_mangled_manifest_text_loads_or_is_refused_naming_the_field(doc):
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        return
    check(text, lambda t: load_job_text(t, "job.yaml"))


@PROFILE
@given(data=st.binary(max_size=400))
def test_any_bytes_are_a_job_or_one_spec_error(data):
    from recprep.manifest import decode

    try:
        load_job_text(decode(data, "job.yaml"), "job.yaml")
    except SpecError:
        pass


@pytest.mark.integration
@settings(max_examples=6, derandomize=True, deadline=None)
@given(doc=mangled())
def test_the_cli_refuses_a_mangled_job_with_exit_2_and_one_line(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("mangled") / "job.yaml"
    try:
        path.write_text(yaml.safe_dump(doc))
    except yaml.YAMLError:
        return
    proc = subprocess.run(
        [sys.executable, "-m", "recprep.cli", "validate", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, 1, 2), proc.stderr  # 1: the job is valid, its data or output is not
    assert "Traceback" not in proc.stdout + proc.stderr
    if proc.returncode:
        assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
