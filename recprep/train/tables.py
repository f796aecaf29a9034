"""How many rows an embedding table needs: ``recprep train``'s default ``--table-rows``, from the job.

The trainer reduces every sparse ID modulo the table size, so a table smaller than the range the
job hashed into folds different IDs onto one row. The job's spec says that range: walking its
transforms over the output's sparse features, the IDs of a feature lie in ``[0, bound)`` after

- ``sigrid_hash`` (of int or string IDs), ``ngram``, ``cross``: ``maxValue``;
- ``time``: 24 for ``part: hour``, 7 for ``weekday``, 32 for ``day`` (days 1-31), ``len(borders) + 1``
  for ``age``;
- ``categorify``: the fitted vocabulary's size + 1 (0 is unseen/null);
- ``bucketize``: ``len(borders) + 1``;
- ``is_in``: 2 (0 or 1);
- ``clamp`` with ``min >= 0`` and ``max``: ``floor(max) + 1``;

``to_list`` and ``firstx`` keep a bound, ``fill_null`` keeps it when its value lies inside it; any
other op (``hex_to_int`` and ``to_int`` give raw 64-bit IDs) leaves the IDs unbounded. An op
with an ``output`` makes a new feature and leaves its inputs' bounds as they were (``history``'s
feature lists its input's IDs: it has the input's bound at that step). The default is the largest
bound when every feature has one, else :data:`DEFAULT_TABLE_ROWS` with a note naming the
features without one. The spec comes from ``_job.json`` (and the vocabulary sizes from
``_fit.json``) of a local output directory, or from the shard service's status.

Selectors are resolved by name, as the plan does (``recprep.workloads.plan``): a role
(``dense``/``sparse``/``label``) picks the source's columns of that role, names and globs pick any
column, generated features (``output``) are named by the op.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..delivery.shards import LocalShards, ServiceShards, service_client_class
from ..errors import OutputError, RecprepError, SpecError
from ..op_params import (
    PARAMS,
    BucketizeParams,
    CategorifyParams,
    ClampParams,
    CrossParams,
    FillNullParams,
    FirstXParams,
    HistoryParams,
    IsInParams,
    NGramParams,
    OpParams,
    SigridHashParams,
    TimeParams,
    ToListParams,
)
from ..spec import ROLES, SourceSpec
from ..uris import infer_format
from ..workloads.machine import memory_limit
from ..workloads.output import read_job, read_vocabulary_sizes
from .config import TrainConfigError

DEFAULT_TABLE_ROWS = 100_000


@dataclass(frozen=True)
class TableRows:
    rows: int
    note: str  #: where ``rows`` comes from, for the report


def _patterns(selector: Any) -> list[str]:
    return [selector] if isinstance(selector, str) else [str(p) for p in selector or []]


def _role_patterns(source: Mapping[str, Any]) -> dict[str, list[str]]:
    """The source's role selectors as the data plane resolves them (``SourceSpec.role_selectors``);
    no roles when the source does not load (an output of another recprep version)."""
    try:
        spec = SourceSpec.model_validate(source)
        selectors = spec.role_selectors(infer_format(spec.uri, spec.format))
    except (ValidationError, SpecError):
        return {"dense": [], "sparse": [], "label": []}
    return {
        "dense": _patterns(selectors["dense"]),
        "sparse": _patterns(selectors["sparse"]),
        "label": [spec.label] if spec.label else [],
    }


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _selects(selector: Any, name: str, roles: Mapping[str, list[str]], source_column: bool) -> bool:
    """Whether ``selector`` picks column ``name`` (a role picks source columns only)."""
    if isinstance(selector, str) and selector in ROLES:
        return source_column and _matches(name, roles[selector])
    return _matches(name, _patterns(selector))


def _generated(transform: Mapping[str, Any], features: Sequence[str], roles) -> list[str]:
    """The features a generating op (``output``) makes among ``features``."""
    target = getattr(_params(transform), "output", None)  # the generating ops have an output
    if not isinstance(target, str):
        return []
    if "{column}" not in target:
        return [target] if target in features else []
    head, _, tail = target.partition("{column}")
    pattern = re.compile(re.escape(head) + "(.+)" + re.escape(tail))
    # the input may be a column the trainer never sees (bucketize of a dense feature)
    return [
        f
        for f in features
        if (m := pattern.fullmatch(f)) and _selects(transform.get("columns"), m.group(1), roles, True)
    ]


def _history_input(transform: Mapping[str, Any], feature: str) -> str | None:
    """The input column whose values a history feature lists."""
    target = str(getattr(_params(transform), "output", "") or "")
    if "{column}" not in target:
        columns = transform.get("columns")
        return columns if isinstance(columns, str) else (columns[0] if len(columns or []) == 1 else None)
    head, _, tail = target.partition("{column}")
    m = re.fullmatch(re.escape(head) + "(.+)" + re.escape(tail), feature)
    return m.group(1) if m else None


def _params(transform: Mapping[str, Any]) -> OpParams | None:
    """The transform's op parameters, parsed as the spec parses them (``recprep.op_params``);
    None for an op this version does not know or parameters it does not accept."""
    model = PARAMS.get(transform.get("op"))
    if model is None:
        return None
    try:
        return model.model_validate({k: v for k, v in transform.items() if k not in ("op", "columns")})
    except ValidationError:
        return None


#: the time op's IDs: hours 0-23, weekdays 0-6, days of the month 1-31
_TIME_BOUNDS = {"hour": 24, "weekday": 7, "day": 32}


def _bound(
    transform: Mapping[str, Any], index: int, column: str, before: int | None, vocabularies: Mapping[str, int]
) -> int | None:
    params = _params(transform)
    if isinstance(params, (SigridHashParams, NGramParams, CrossParams)):
        return params.max_value
    if isinstance(params, TimeParams):
        return _TIME_BOUNDS[params.part] if params.part != "age" else len(params.borders or ()) + 1
    if isinstance(params, CategorifyParams):
        size = vocabularies.get(f"{index}:{column}")
        return None if size is None else size + 1
    if isinstance(params, BucketizeParams):
        return len(params.borders) + 1
    if isinstance(params, IsInParams):
        return 2
    if isinstance(params, ClampParams):
        low, high = params.min, params.max
        return math.floor(high) + 1 if low is not None and low >= 0 and high is not None else None
    if isinstance(params, FillNullParams):
        inside = isinstance(params.value, int) and before is not None and 0 <= params.value < before
        return before if inside else None
    return before if isinstance(params, (ToListParams, FirstXParams)) else None


def id_bounds(
    spec: Mapping[str, Any], features: Sequence[str], vocabularies: Mapping[str, int] | None = None
) -> dict[str, int | None]:
    """Per sparse feature of the output, the bound of its IDs after the job's transforms
    (None: unbounded or unknown). ``vocabularies``: fitted vocabulary sizes by ``"<step>:<column>"``."""
    vocabularies = vocabularies or {}
    transforms = list(spec.get("transforms") or [])
    roles = _role_patterns(spec.get("source") or {})
    wanted, features = _with_history_inputs(transforms, features, roles), list(features)
    made = [_generated(t, wanted, roles) for t in transforms]
    generated = {f for names in made for f in names}
    bounds: dict[str, int | None] = {f: None for f in wanted}
    present = [f for f in wanted if f not in generated]  # the source's columns
    for i, t in enumerate(transforms):
        if made[i] or getattr(_params(t), "output", None):  # a new feature; the inputs stay as they are
            for f in made[i]:
                # history lists the input's IDs: its bound is the input's, as it stands here
                source = _history_input(t, f) if isinstance(_params(t), HistoryParams) else None
                bounds[f] = bounds.get(source) if source else _bound(t, i, f, None, vocabularies)
            present += [f for f in made[i] if f not in present]
            continue
        for f in present:
            if _selects(t.get("columns"), f, roles, f not in generated):
                bounds[f] = _bound(t, i, f, bounds[f], vocabularies)
    return {f: bounds[f] for f in features}


def _with_history_inputs(transforms: list, features: Sequence[str], roles) -> list[str]:
    """``features`` and the columns the history features among them list (and theirs, for a
    history of a history): a history's bound is its input's, trained or not."""
    wanted = list(features)
    grew = True
    while grew:
        grew = False
        for t in transforms:
            if not isinstance(_params(t), HistoryParams):
                continue
            for f in _generated(t, wanted, roles):
                source = _history_input(t, f)
                if source and source not in wanted:
                    wanted.append(source)
                    grew = True
    return wanted


def table_rows_for(
    spec: Mapping[str, Any], features: Sequence[str], vocabularies: Mapping[str, int] | None = None
) -> TableRows:
    """The table size the job implies for ``features``, or the default with the reason."""
    bounds = id_bounds(spec, features, vocabularies)
    unbounded = [f for f, b in bounds.items() if b is None]
    if unbounded or not bounds:
        names = ", ".join(unbounded[:5]) + (f" and {len(unbounded) - 5} more" if len(unbounded) > 5 else "")
        return TableRows(
            DEFAULT_TABLE_ROWS, f"default: the job does not bound the IDs of {names or 'any feature'}"
        )
    rows = max(bounds.values())
    widest = [f for f in features if bounds[f] == rows]
    return TableRows(
        rows,
        f"from the job: the ID range of {', '.join(widest[:3])}"
        + (f" and {len(widest) - 3} more" if len(widest) > 3 else ""),
    )


def _local_job(directory: str) -> tuple[dict | None, dict[str, int]]:
    try:
        job = read_job(directory)
    except OutputError:
        return None, {}
    if job.spec is None:
        return None, {}
    return job.spec, read_vocabulary_sizes(directory, job.identity)


def _service_job(source: ServiceShards) -> tuple[dict | None, dict[str, int]]:
    client = service_client_class()(
        location=source.location,
        group=source.group,
        rank=source.rank,
        world_size=source.world_size,
        token=source.token,
    )
    try:
        status = client.status()
    finally:
        client.close()
    spec = status.get("spec")
    return (spec if isinstance(spec, dict) else None), dict(status.get("vocabularies") or {})


def host_bytes(rows: int, tables: int, dim: int, optimizer: str) -> int:
    """Host memory of the full tables (float32) and, for Adagrad, their row-aligned state."""
    return rows * tables * dim * 4 * (2 if optimizer == "adagrad" else 1)


def host_memory() -> int | None:
    """Bytes this process may have: its cgroup's limit in a container (a trainer pod's
    ``resources.limits.memory``, which kills it beyond, whatever the node has), else the
    machine's memory; None where neither is known."""
    return memory_limit() or None


def check_fits(sized: TableRows, tables: int, dim: int, optimizer: str, memory: int | None) -> None:
    """Tables must fit in ``memory`` bytes, whether their size came from the job or from
    ``--table-rows``: too large is a one-line error naming the option, not an allocator's error
    or an out-of-memory kill."""
    need = host_bytes(sized.rows, tables, dim, optimizer)
    if memory is not None and need > memory:
        where = "the job's IDs span" if sized.note != "--table-rows" else "--table-rows asks for"
        raise TrainConfigError(
            f"--table-rows: {where} {sized.rows:,} rows per table ({sized.note}); "
            f"{tables} tables of dimension {dim} need {need / 2**30:.1f} GiB of host memory, "
            f"this machine (or container) has {memory / 2**30:.1f} GiB: "
            "give a smaller --table-rows (IDs are then reduced modulo it) or --embedding-dim"
        )


def resolve_table_rows(source: Any, features: Sequence[str]) -> TableRows:
    """The default ``--table-rows`` for training on ``source`` (a local output or the service)."""
    if isinstance(source, LocalShards):
        spec, vocabularies = _local_job(source.directory)
    elif isinstance(source, ServiceShards):
        try:
            spec, vocabularies = _service_job(source)
        except RecprepError as exc:
            return TableRows(
                DEFAULT_TABLE_ROWS, f"default: the shard service's status is unavailable ({exc})"
            )
    else:
        spec, vocabularies = None, {}
    if spec is None:
        return TableRows(DEFAULT_TABLE_ROWS, f"default: {source.describe()} does not say the job's spec")
    return table_rows_for(spec, features, vocabularies)
