"""The README's Criteo recipe, read from examples/criteo-sample.yaml (one copy for every bench
that preprocesses the sample with recprep itself)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "criteo-sample.yaml"


@functools.lru_cache(maxsize=1)
def _transforms() -> tuple:
    return tuple(yaml.safe_load(EXAMPLE.read_text())["spec"]["transforms"])


def criteo_transforms() -> list[dict]:
    """The example job's ``spec.transforms`` (a fresh copy)."""
    return copy.deepcopy(list(_transforms()))
