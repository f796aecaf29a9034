"""
Pure helpers for the Kubernetes API semantics that the emulator implements.

Nothing here does I/O: these are plain functions over JSON-like dicts, so the
emulator (``emulator.py``) and the process kubelet (``kubelet.py``) share them
and they can be reasoned about (and tested) in isolation:

* timestamps and the ``kubectl``-style human-readable ages;
* label selectors (``a=b,c!=d,e in (x,y),!f``) and field selectors;
* patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902, via ``jsonpatch``),
  a best-effort strategic merge patch, and a simplified server-side apply;
* a small JSONPath evaluator, as used by CRD ``additionalPrinterColumns``;
* Kubernetes version ordering (``v1 > v1beta2 > v1beta1 > v1alpha1``).
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jsonpatch
import jsonpointer

# --------------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------------


def now_rfc3339() -> str:
    """The current time as Kubernetes renders it: RFC 3339, UTC, whole seconds."""
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_after(seconds: float) -> str:
    """The time ``seconds`` from now, rendered as ``now_rfc3339`` renders it."""
    later = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=seconds)
    return later.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """Render a duration like Kubernetes' ``duration.HumanDuration`` (``5s``, ``3m20s``, ``2d``)."""
    seconds = int(max(seconds, 0))
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def human_age(timestamp: Any, now: datetime.datetime | None = None) -> str:
    """The age of an RFC 3339 timestamp as shown in ``kubectl get`` (``<unknown>`` if unset)."""
    moment = parse_rfc3339(timestamp)
    if moment is None:
        return "<unknown>"
    now = now or datetime.datetime.now(tz=datetime.UTC)
    return human_duration((now - moment).total_seconds())


# --------------------------------------------------------------------------------------------------
# Label & field selectors
# --------------------------------------------------------------------------------------------------


class SelectorError(ValueError):
    """A selector could not be parsed (rendered as HTTP 400 by the emulator)."""


_LABEL_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_LABEL_VALUE = r"[-A-Za-z0-9_.]*"
_SET_TERM = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*({_LABEL_VALUE})\s*$")
_EXISTS_TERM = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")

# A parsed selector requirement: (key, operator, values); operators as in LabelSelectorRequirement.
Requirement = tuple[str, str, tuple[str, ...]]


def _split_terms(text: str) -> list[str]:
    """Split a selector by commas, but not by the commas inside ``in (a,b)`` parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse the string form of a label selector, e.g. ``app=web,tier!=db,env in (a,b),!legacy``."""
    requirements: list[Requirement] = []
    for term in _split_terms(text or ""):
        if match := _SET_TERM.match(term):
            values = tuple(value.strip() for value in match.group(3).split(",") if value.strip())
            op = "In" if match.group(2) == "in" else "NotIn"
            requirements.append((match.group(1), op, values))
        elif match := _EQ_TERM.match(term):
            op = "NotIn" if match.group(2) == "!=" else "In"
            requirements.append((match.group(1), op, (match.group(3),)))
        elif match := _EXISTS_TERM.match(term):
            op = "DoesNotExist" if match.group(1) else "Exists"
            requirements.append((match.group(2), op, ()))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
    return requirements


def requirements_from_spec(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """Convert a structured ``LabelSelector`` (matchLabels + matchExpressions) to requirements."""
    selector = selector or {}
    requirements: list[Requirement] = [
        (key, "In", (str(value),)) for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expr in selector.get("matchExpressions") or []:
        requirements.append((expr["key"], expr["operator"], tuple(expr.get("values") or ())))
    return requirements


def match_labels(requirements: Iterable[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in requirements:
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    """Parse ``metadata.name=x,status.phase!=Running`` into ``(path, op, value)`` triples."""
    requirements = []
    for term in _split_terms(text or ""):
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise SelectorError(f"invalid field selector: {term.strip()!r}")
        requirements.append((match.group(1), "!=" if match.group(2) == "!=" else "=", match.group(3)))
    return requirements


def match_fields(requirements: Iterable[tuple[str, str, str]], obj: Mapping[str, Any]) -> bool:
    """Match any dotted path of the object; absent fields compare as the empty string."""
    for path, op, expected in requirements:
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        actual = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        if (actual == expected) != (op == "="):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------------


class PatchError(ValueError):
    """A patch could not be applied. ``code`` is the HTTP status to answer with (400/409/422)."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; a failed ``test`` op or a bad path is 422 as in Kubernetes."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations", code=400)
    try:
        return jsonpatch.JsonPatch(operations).apply(copy.deepcopy(target))
    except jsonpatch.JsonPatchTestFailed as e:
        raise PatchError(f"the test operation of the JSON patch failed: {e}", code=422) from e
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise PatchError(f"the JSON patch cannot be applied: {e}", code=422) from e
    except (TypeError, KeyError, IndexError, ValueError) as e:
        raise PatchError(f"malformed JSON patch: {e!r}", code=400) from e


# Merge keys of the built-in kinds' lists (a subset of the Go struct tags' patchMergeKey),
# enough for what kubectl's client-side apply, label/annotate and rollout restart send.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "volumeDevices": "devicePath",
}
# Lists of scalars whose patch strategy is "merge" (set union) rather than "replace".
_MERGED_SCALAR_LISTS = {"finalizers"}


def _list_merge_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    if field == "ports":  # container ports vs. service ports
        return "containerPort" if all("containerPort" in item for item in items) else "port"
    key = _MERGE_KEYS.get(field)
    return key if key and all(key in item for item in items) else None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """
    A best-effort strategic merge patch (kmock has none; real ones need the Go type metadata).

    Dicts merge as in the JSON merge patch. Lists of the well-known built-in fields are merged
    by their merge keys (containers by name, ...), ``finalizers`` are merged as sets, other lists
    are replaced. The directives ``$patch`` (replace/delete/merge), ``$retainKeys``,
    ``$setElementOrder/<field>`` and ``$deleteFromPrimitiveList/<field>`` are understood.
    """
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field) or [] if item not in value]
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _strategic_merge_list(key, result.get(key), value)
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    if "$retainKeys" in patch:
        retained = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in retained}
    for field, order in orders.items():
        result[field] = _reorder(field, result.get(field) or [], order)
    return result


def _strategic_merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    current = current if isinstance(current, list) else []
    if field in _MERGED_SCALAR_LISTS and all(not isinstance(item, Mapping) for item in patch):
        return copy.deepcopy(current) + [item for item in patch if item not in current]
    if any(isinstance(item, Mapping) and item.get("$patch") == "replace" for item in patch):
        return [
            copy.deepcopy(item) for item in patch if not isinstance(item, Mapping) or "$patch" not in item
        ]
    key = _list_merge_key(
        field,
        [
            item
            for item in current + patch
            if not (isinstance(item, Mapping) and "$patch" in item and len(item) == 1)
        ],
    )
    if key is None:
        return copy.deepcopy(patch)
    result = copy.deepcopy(current)
    for item in patch:
        position = next((i for i, old in enumerate(result) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if position is not None:
                del result[position]
        elif position is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[position] = strategic_merge_patch(result[position], item)
    return result


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _list_merge_key(field, items)
    if key is None:
        return items
    rank = {(entry.get(key) if isinstance(entry, Mapping) else entry): i for i, entry in enumerate(order)}
    return sorted(items, key=lambda item: rank.get(item.get(key), len(rank)))


# Metadata fields that a user's applied configuration may set; the rest is server-owned.
_APPLIED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def _leaf_paths(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """All paths to non-dict values (lists are atomic leaves, as in an atomic list)."""
    if not isinstance(obj, Mapping) or not obj:
        return [prefix] if prefix else []
    return [path for key, value in obj.items() for path in _leaf_paths(value, prefix + (key,))]


def _has_path(obj: Any, path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(obj, Mapping) or part not in obj:
            return False
        obj = obj[part]
    return True


def _delete_path(obj: Any, path: tuple[str, ...]) -> None:
    parents = []
    for part in path[:-1]:
        if not isinstance(obj, dict) or part not in obj:
            return
        parents.append((obj, part))
        obj = obj[part]
    if isinstance(obj, dict):
        obj.pop(path[-1], None)
    for parent, part in reversed(parents):  # prune the emptied parents, as SSA does
        if parent[part] == {}:
            del parent[part]


def _deep_merge(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def applied_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an apply configuration that server-side apply manages (no identity/server fields)."""
    result = {k: copy.deepcopy(v) for k, v in config.items() if k not in ("apiVersion", "kind", "metadata")}
    metadata = {
        k: copy.deepcopy(v) for k, v in (config.get("metadata") or {}).items() if k in _APPLIED_METADATA
    }
    if metadata:
        result["metadata"] = metadata
    return result


def server_side_apply(
    live: Mapping[str, Any], config: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """
    A simplified server-side apply for one field manager.

    Fields that this manager applied previously but omits now are removed; the applied
    fields are merged in (dicts recursively, lists atomically). Conflicts between managers
    are not detected: the applier always wins (as with ``--force-conflicts``).
    """
    result = copy.deepcopy(dict(live))
    current = applied_config(config)
    for path in _leaf_paths(applied_config(previous or {})):
        if not _has_path(current, path):
            _delete_path(result, path)
    _deep_merge(result, current)
    return result


# --------------------------------------------------------------------------------------------------
# JSONPath (the subset used in printer columns: .a.b, [0], [*], ['k'], [?(@.x=="y")])
# --------------------------------------------------------------------------------------------------

_FILTER = re.compile(
    r"""^\?\(\s*@((?:\.[A-Za-z0-9_\-]+)+)\s*(?:(==|!=)\s*(?:"([^"]*)"|'([^']*)'|([-0-9.]+|true|false)))?\s*\)$"""
)


def _jsonpath_tokens(expr: str) -> list[tuple[str, Any]]:
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1].strip()
    expr = expr.removeprefix("$")
    tokens: list[tuple[str, Any]] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char == ".":
            i += 1
            name = ""
            while i < len(expr) and expr[i] not in ".[":
                if expr[i] == "\\" and i + 1 < len(expr):  # escaped dots in label keys
                    i += 1
                name += expr[i]
                i += 1
            if name:
                tokens.append(("wild", None) if name == "*" else ("key", name))
        elif char == "[":
            end = expr.index("]", i)
            if expr[i + 1 : i + 3] == "?(":
                end = expr.index(")]", i) + 1
            inner = expr[i + 1 : end].strip()
            i = end + 1
            if inner == "*":
                tokens.append(("wild", None))
            elif inner[:1] in "'\"":
                tokens.append(("key", inner[1:-1]))
            elif match := _FILTER.match(inner):
                literal = next((g for g in match.groups()[2:] if g is not None), None)
                tokens.append(("filter", (match.group(1).strip(".").split("."), match.group(2), literal)))
            elif ":" in inner:
                start, _, stop = inner.partition(":")
                tokens.append(("slice", (int(start) if start else None, int(stop) if stop else None)))
            else:
                tokens.append(("index", int(inner)))
        else:
            raise ValueError(f"unsupported JSONPath: {expr!r}")
    return tokens


def jsonpath(obj: Any, expr: str) -> list[Any]:
    """Evaluate a simple JSONPath and return all matched values (an empty list if none)."""
    current = [obj]
    for kind, arg in _jsonpath_tokens(expr):
        found: list[Any] = []
        for value in current:
            if kind == "key" and isinstance(value, Mapping) and arg in value:
                found.append(value[arg])
            elif kind == "index" and isinstance(value, list) and -len(value) <= arg < len(value):
                found.append(value[arg])
            elif kind == "slice" and isinstance(value, list):
                found.extend(value[arg[0] : arg[1]])
            elif kind == "wild":
                found.extend(
                    value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else []
                )
            elif kind == "filter" and isinstance(value, list):
                path, op, literal = arg
                for item in value:
                    probe: Any = item
                    for part in path:
                        probe = probe.get(part) if isinstance(probe, Mapping) else None
                    if op is None:
                        if probe is not None:
                            found.append(item)
                    elif (_jsonpath_str(probe) == literal) == (op == "=="):
                        found.append(item)
        current = found
    return current


def _jsonpath_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------------------------------
# API versions
# --------------------------------------------------------------------------------------------------

_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """A sort key putting versions in Kubernetes' priority order: v2, v1, v1beta1, v1alpha1, other."""
    match = _KUBE_VERSION.match(version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = int(match.group(1)), match.group(2), int(match.group(3) or 0)
    return ({None: 0, "beta": 1, "alpha": 2}[stage], -major, -minor, version)


# --------------------------------------------------------------------------------------------------
# Kubernetes protobuf: just enough to read what ``kubectl create namespace|configmap|secret|sa``
# sends. Typed client-go clients (as used by those kubectl commands) always encode bodies as
# protobuf and, in client-go 1.32, do not fall back to JSON when a server refuses it.
# --------------------------------------------------------------------------------------------------

# A schema maps field numbers to (json name, type); a type is a scalar name, a nested schema,
# 'map' (string->string), 'bmap' (string->bytes, rendered as base64), or a list [type] (repeated).
_PB_TIME = {1: ("seconds", "int"), 2: ("nanos", "int")}
_PB_OWNER_REF = {
    1: ("kind", "str"),
    3: ("name", "str"),
    4: ("uid", "str"),
    5: ("apiVersion", "str"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_PB_OBJECT_META = {
    1: ("name", "str"),
    2: ("generateName", "str"),
    3: ("namespace", "str"),
    5: ("uid", "str"),
    6: ("resourceVersion", "str"),
    7: ("generation", "int"),
    8: ("creationTimestamp", _PB_TIME),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    13: ("ownerReferences", [_PB_OWNER_REF]),
    14: ("finalizers", ["str"]),
}
_PB_OBJECT_REF = {
    1: ("kind", "str"),
    2: ("namespace", "str"),
    3: ("name", "str"),
    4: ("uid", "str"),
    5: ("apiVersion", "str"),
}
PROTOBUF_KINDS: dict[str, dict[int, tuple[str, Any]]] = {
    "Namespace": {
        1: ("metadata", _PB_OBJECT_META),
        2: ("spec", {1: ("finalizers", ["str"])}),
        3: ("status", {1: ("phase", "str")}),
    },
    "ConfigMap": {
        1: ("metadata", _PB_OBJECT_META),
        2: ("data", "map"),
        3: ("binaryData", "bmap"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", _PB_OBJECT_META),
        2: ("data", "bmap"),
        3: ("type", "str"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    "ServiceAccount": {
        1: ("metadata", _PB_OBJECT_META),
        2: ("secrets", [_PB_OBJECT_REF]),
        3: ("imagePullSecrets", [{1: ("name", "str")}]),
        4: ("automountServiceAccountToken", "bool"),
    },
}


class ProtobufError(ValueError):
    pass


def _pb_fields(data: bytes) -> list[tuple[int, int, Any]]:
    """Split a protobuf message into (field number, wire type, raw value) triples."""
    fields, i = [], 0

    def varint() -> int:
        nonlocal i
        result = shift = 0
        while True:
            if i >= len(data):
                raise ProtobufError("truncated varint")
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        tag = varint()
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            fields.append((number, wire, varint()))
        elif wire == 2:
            length = varint()
            fields.append((number, wire, data[i : i + length]))
            i += length
        elif wire == 1:
            fields.append((number, wire, data[i : i + 8]))
            i += 8
        elif wire == 5:
            fields.append((number, wire, data[i : i + 4]))
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return fields


def _pb_value(ftype: Any, raw: Any) -> Any:
    import base64

    if ftype == "str":
        return raw.decode("utf-8")
    if ftype == "int":
        return raw
    if ftype == "bool":
        return bool(raw)
    if ftype in ("map", "bmap"):
        entry = {n: v for n, _, v in _pb_fields(raw)}
        value = entry.get(2, b"")
        return entry.get(1, b"").decode(), (
            base64.b64encode(value).decode() if ftype == "bmap" else value.decode()
        )
    if isinstance(ftype, dict):
        return pb_decode_message(raw, ftype)
    raise ProtobufError(f"unsupported field type {ftype!r}")


def pb_decode_message(data: bytes, schema: Mapping[int, tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, _wire, raw in _pb_fields(data):
        if number not in schema:
            continue  # unknown or deliberately ignored field (e.g. managedFields)
        name, ftype = schema[number]
        if isinstance(ftype, list):
            result.setdefault(name, []).append(_pb_value(ftype[0], raw))
        elif ftype in ("map", "bmap"):
            key, value = _pb_value(ftype, raw)
            result.setdefault(name, {})[key] = value
        else:
            result[name] = _pb_value(ftype, raw)
    return result


def pb_decode_object(body: bytes) -> dict[str, Any]:
    """Decode a ``k8s\\0``-enveloped protobuf object of one of ``PROTOBUF_KINDS`` into JSON form."""
    if not body.startswith(b"k8s\x00"):
        raise ProtobufError("not a Kubernetes protobuf envelope")
    envelope = {n: v for n, _, v in _pb_fields(body[4:])}
    type_meta = {n: v.decode() for n, _, v in _pb_fields(envelope.get(1, b""))}
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    if kind not in PROTOBUF_KINDS:
        raise ProtobufError(
            f"protobuf bodies of kind {kind!r} are not supported; send JSON "
            f"(e.g. kubectl create/apply -f with a manifest)"
        )
    obj = pb_decode_message(envelope.get(2, b""), PROTOBUF_KINDS[kind])
    meta = obj.setdefault("metadata", {})
    for empty_default in (
        "creationTimestamp",
        "generation",
        "uid",
        "resourceVersion",
        "namespace",
        "generateName",
    ):
        if meta.get(empty_default) in ("", 0, {}):
            del meta[empty_default]
    for key in ("spec", "status"):
        if obj.get(key) == {}:
            del obj[key]
    return {"apiVersion": api_version, "kind": kind, **obj}
