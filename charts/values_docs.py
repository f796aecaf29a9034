"""Generate charts/recprep/README.md from the ``# --`` comments of charts/recprep/values.yaml, the way
helm-docs documents charts (KubeRay's among them), with PyYAML only.

Conventions of values.yaml:

- a comment block directly above a key (no blank line between) whose line starts with ``# --``
  documents that key; the comment lines after it, up to the key (``#    ...``), continue it;
- other ``#`` comments (section headers, notes) document nothing;
- a key inside a documented value (the fields of a ``resources`` block) needs no comment of its own.

Every documented key gets one row (Key | Type | Default | Description), in file order, keyed by its
dotted path; a documented mapping with documented children gets its own row and one per child.
A ``# --`` comment that documents no key is an error, so no description is dropped silently.

    python charts/values_docs.py > charts/recprep/README.md   # regenerate
    python charts/values_docs.py --check                       # exit 1 when the README is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "recprep"
README = CHART / "README.md"
REGENERATE = "python charts/values_docs.py > charts/recprep/README.md"
DOC_MARK = "# --"


class ValuesDocError(ValueError):
    """values.yaml breaks the comment conventions (e.g. a ``# --`` comment that documents no key)."""


@dataclass(frozen=True)
class Row:
    """One documented value: its dotted path, inferred type, compact JSON default and description."""

    key: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class _Key:
    """A key of a block mapping: its path, the line it starts on, its value and whether that value
    is a mapping with keys of its own."""

    path: tuple[str, ...]
    line: int
    value: yaml.Node
    has_children: bool


def _keys(node: yaml.Node, prefix: tuple[str, ...] = ()) -> Iterator[_Key]:
    """Every key of the block mappings under ``node``, depth first in file order (sequences and
    flow mappings are values: their insides are not keys of values.yaml)."""
    if not isinstance(node, yaml.MappingNode) or node.flow_style:
        return
    for key_node, value_node in node.value:
        path = (*prefix, str(key_node.value))
        nested = isinstance(value_node, yaml.MappingNode) and bool(value_node.value)
        yield _Key(path, key_node.start_mark.line, value_node, nested)
        yield from _keys(value_node, path)


def _comment_block(lines: list[str], line: int) -> tuple[int, list[str]]:
    """The comment lines directly above ``line``: (index of the first, their stripped texts)."""
    start = line
    while start > 0 and lines[start - 1].strip().startswith("#"):
        start -= 1
    return start, [text.strip() for text in lines[start:line]]


def _description(comments: list[str]) -> tuple[int, str] | None:
    """(offset in ``comments``, joined text) of the last ``# --`` comment, or None."""
    marks = [i for i, text in enumerate(comments) if text.startswith(DOC_MARK)]
    if not marks:
        return None
    first = marks[-1]
    parts = [comments[first][len(DOC_MARK) :].strip()]
    parts += [text.lstrip("#").strip() for text in comments[first + 1 :]]
    return first, " ".join(part for part in parts if part)


def _documented(text: str) -> tuple[list[_Key], dict[tuple[str, ...], str]]:
    """All keys of ``text`` and the descriptions of the documented ones, by path.

    Raises ValuesDocError for a ``# --`` comment that documents no key."""
    lines = text.splitlines()
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    keys = list(_keys(root)) if root is not None else []
    docs: dict[tuple[str, ...], str] = {}
    used: set[int] = set()
    for key in keys:
        start, comments = _comment_block(lines, key.line)
        found = _description(comments)
        if found is not None:
            offset, description = found
            docs[key.path] = description
            used.add(start + offset)
    for number, line in enumerate(lines):
        if line.strip().startswith(DOC_MARK) and number not in used:
            raise ValuesDocError(
                f"values.yaml:{number + 1}: this '# --' comment documents no key: put it "
                "directly above the key (no blank line, no other '# --' between)"
            )
    return keys, docs


def _type(value: Any) -> str:
    """The helm-docs style type name of a default value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return "string"


def _cell(text: str) -> str:
    """``text`` made safe for one cell of a Markdown table."""
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    """``text`` as a Markdown code span."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def rows(text: str) -> list[Row]:
    """The documented values of a values.yaml text, in file order."""
    keys, docs = _documented(text)
    result = []
    for key in keys:
        if key.path not in docs:
            continue
        value = yaml.safe_load(yaml.serialize(key.value))
        default = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        result.append(Row(".".join(key.path), _type(value), default, docs[key.path]))
    return result


def undocumented(text: str) -> list[str]:
    """Dotted paths of the leaf values (scalars, lists, empty mappings) that neither they nor an
    enclosing key document with a ``# --`` comment."""
    keys, docs = _documented(text)
    return [
        ".".join(key.path)
        for key in keys
        if not key.has_children and not any(key.path[:n] in docs for n in range(1, len(key.path) + 1))
    ]


def table(text: str) -> str:
    """The Markdown Values table of a values.yaml text."""
    out = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in rows(text):
        out.append(
            f"| {_cell(_code(row.key))} | {row.type} | {_cell(_code(row.default))} "
            f"| {_cell(row.description)} |"
        )
    return "\n".join(out) + "\n"


def render(chart: Path = CHART) -> str:
    """The whole README of ``chart``: intro from Chart.yaml, then the Values table."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))
    values = (chart / "values.yaml").read_text(encoding="utf-8")
    return f"""# recprep Helm chart

Version {meta["version"]}, app version {meta["appVersion"]}. {meta["description"].rstrip(".")}.

The chart installs the recprep operator, a [kopf](https://kopf.readthedocs.io) operator that
watches PreprocessJobs and creates, for each one, its Dask scheduler, its worker pools, its driver
and (with `spec.serve`) its shard service. With it come the operator's RBAC (a Role and RoleBinding
in the release namespace, or a ClusterRole and ClusterRoleBinding with `rbac.clusterWide=true`) and
its ServiceAccount. The PreprocessJob CRD (`preprocessjobs.recprep.io`) is in `crds/`: Helm installs
it with the chart and never upgrades or deletes it, so apply `charts/recprep/crds/` yourself after
an upgrade.

## Install

```sh
helm install recprep charts/recprep -n recprep --create-namespace
```

Override the values below with `--set key=value` or `-f my-values.yaml`.

This file is generated from the `# --` comments of values.yaml by
`{REGENERATE}`: do not edit it by hand; edit values.yaml and regenerate it.

## Values

{table(values)}"""


def main(argv: list[str] | None = None) -> int:
    """Print the README, or with ``--check`` compare it with the committed one (exit 1 if stale)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if charts/recprep/README.md differs from what would be generated",
    )
    args = parser.parse_args(argv)
    try:
        text = render()
    except ValuesDocError as exc:
        print(f"charts/recprep/{exc}", file=sys.stderr)
        return 2
    if args.check:
        committed = README.read_text(encoding="utf-8") if README.is_file() else None
        if committed != text:
            state = "is missing" if committed is None else "is stale"
            print(f"charts/recprep/README.md {state}: regenerate it with `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.buffer.write(text.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
