"""Reading manifests safely: YAML text to plain data, with limits a hostile file cannot get past.

PyYAML's safe loader builds no objects, but it still expands aliases: a few lines of nested
``&a [*b, *b, ...]`` anchors make a document of billions of nodes (an "alias bomb": nine levels
take seconds and gigabytes to validate, ten abort the process). Here, before anything is
built, each document's node graph is measured with aliases counted as many times as they expand,
and refused above ``MAX_NODES``; the text itself is refused above ``MAX_BYTES``. A mapping that
repeats a key is refused too (YAML forbids it; PyYAML silently keeps the last), naming the key
and its line. Errors are ``SpecError`` naming the source and the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import SpecError

#: Largest manifest accepted, in bytes (a Kubernetes object is at most about 1.5 MB in etcd).
MAX_BYTES = 1 << 20
#: Most YAML nodes one document may expand to (aliases counted as often as they are used); a
#: PreprocessJob has a few hundred.
MAX_NODES = 100_000


def decode(data: bytes, source: str) -> str:
    """Manifest bytes as text: UTF-8 (a byte order mark allowed), or a SpecError naming the byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            f"{source}:{line}: not UTF-8 text (byte {exc.start + 1} of the file is {data[exc.start]:#04x})"
        ) from None


def load_documents(text: str, source: str) -> list[Any]:
    """The YAML documents of ``text`` as plain data (None for empty documents)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecError(f"{source}: larger than {MAX_BYTES:,} bytes; a manifest is a few KiB")
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
        docs = []
        while loader.check_node():
            node = loader.get_node()
            _check(node, source)
            docs.append(loader.construct_document(node))
        return docs
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise SpecError(f"{where}: not valid YAML ({problem})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check(root: yaml.Node, source: str) -> None:
    """Refuse a document that expands to more than MAX_NODES nodes or repeats a mapping key."""
    sizes: dict[int, int] = {}  # node id -> expanded size (shared nodes, i.e. aliases, measured once)
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if done:
            visiting.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                raise SpecError(
                    f"{source}:{node.start_mark.line + 1}: the document expands to more than "
                    f"{MAX_NODES:,} YAML nodes (aliases included); refused"
                )
            continue
        if id(node) in visiting:
            raise SpecError(
                f"{source}:{node.start_mark.line + 1}: an alias refers to a node that contains it"
            )
        visiting.add(id(node))
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(node, source)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _no_duplicate_keys(node: yaml.MappingNode, source: str) -> None:
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            if key.value in seen:
                raise SpecError(
                    f"{source}:{key.start_mark.line + 1}: key {key.value!r} appears twice in one mapping "
                    f"(first on line {seen[key.value]}); YAML keeps only one of them"
                )
            seen[key.value] = key.start_mark.line + 1
