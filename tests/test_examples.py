"""Every example in examples/ works as written: each PreprocessJob is run with ``recprep run``
and trained on with ``recprep train``, and README.md's job block is one of them, byte for byte.

The jobs that read ../shared/data are skipped cleanly without it. The Kubernetes example reads
its input from the chart's storage mount (/data): here that prefix is the only thing changed.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from .conftest import REPO, recprep

EXAMPLES = REPO / "examples"
SHARED_DATA = REPO.parent / "shared" / "data"


def _jobs() -> list[str]:
    return sorted(
        p.name
        for p in EXAMPLES.glob("*.yaml")
        if any(d and d.get("kind") == "PreprocessJob" for d in yaml.safe_load_all(p.read_text()))
    )


def test_the_readme_job_is_the_example_it_names():
    readme = (REPO / "README.md").read_text()
    named = re.search(r"## A job\n\n```yaml\n(.*?)```\n\nThis is `(examples/[^`]+)`", readme, re.S)
    assert named, "README.md: the job block under '## A job' must be followed by 'This is `examples/...`'"
    block, path = named.groups()
    text = (REPO / path).read_text()
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert block == body, f"README.md's job block differs from {path} (its comment header aside)"


def test_every_example_job_is_run_by_this_file():
    assert set(_jobs()) == {
        "avazu-sample.yaml",
        "criteo-sample-k8s.yaml",
        "criteo-sample.yaml",
        "demo.yaml",
        "taobao-sample.yaml",
    }


@pytest.mark.integration
@pytest.mark.parametrize("name", _jobs())
def test_an_example_runs_and_trains_as_written(name, tmp_path):
    text = (EXAMPLES / name).read_text()
    if "../shared/data" in text or "/data/" in text:
        if not SHARED_DATA.exists():
            pytest.skip("../shared/data is absent")
    if name == "criteo-sample-k8s.yaml":  # the chart's storage mount, here the shared folder
        text = text.replace("uri: /data/", f"uri: {SHARED_DATA}/")
    job = tmp_path / name
    job.write_text(text)
    out = tmp_path / "out"
    ran = recprep("run", str(job), "--output", str(out), "--workers", "2", timeout=900)
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr and "poorly aligned" not in ran.stderr
    assert list(out.glob("part-*.parquet"))
    pytest.importorskip("torch")
    trained = recprep("train", str(out), "--json", "--steps", "30", "--batch-size", "256", timeout=900)
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["steps"] == 30 or report["samples"] > 0
    assert "Warning" not in trained.stderr, trained.stderr
