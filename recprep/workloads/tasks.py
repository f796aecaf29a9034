"""The functions Dask runs on workers: one shard's fit partials, one shard's transform + write.

Workers rebuild the source and the plan from the job (cached per process), so a task carries
only the job, its split and the fitted states.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import RecprepError
from ..spec import PreprocessJob
from ..uris import local_path
from .memory import tune_allocator
from .output import put_quarantine, put_shard
from .plan import Plan, States, compile_plan
from .sources import Split, open_source
from .writer import shard_bytes


@dataclass
class ShardResult:
    index: int
    file: str
    rows: int
    bad_rows: int
    bytes: int
    sha256: str
    quarantine: str | None
    seconds: float
    #: per "<step>:<column>": [values the step made null, values it saw] (``plan.NullCounts``)
    nulled: dict[str, list[int]] = field(default_factory=dict)


class ShardError(RecprepError):
    """A shard failed; the message names the file and the byte/row range."""


_PREPARED: dict[str, tuple] = {}


def _prepared(job: PreprocessJob):
    key = job.model_dump_json()
    if key not in _PREPARED:
        tune_allocator()  # once per process: the first shard task on a worker
        if len(_PREPARED) > 8:
            _PREPARED.clear()
        output = local_path(job.spec.output.uri)
        source = open_source(job.spec.source, exclude=output)
        _PREPARED[key] = (source, compile_plan(job, source.schema(), source.roles))
    return _PREPARED[key]


def _where(split: Split) -> str:
    return f"{split.path} [{split.start}:{split.stop}]"


def fit_shard(job: PreprocessJob, split: Split, stage: int, states: States) -> dict:
    source, plan = _prepared(job)
    try:
        return plan.fit_partials(source.read(split, plan.scan_hex).table, stage, states)
    except RecprepError:
        raise
    except Exception as exc:  # name the shard: the user needs to know which input broke
        raise ShardError(
            f"fit of shard {split.index} ({_where(split)}): {type(exc).__name__}: {exc}"
        ) from exc


def combine_partials(job: PreprocessJob, left: dict, right: dict) -> dict:
    _, plan = _prepared(job)
    ops = {s.index: s.op for s in plan.steps}
    return {key: ops[key[0]].combine(left[key], right[key]) for key in left}


def transform_shard(
    job: PreprocessJob, split: Split, states: States, directory: str, compression: str, fsync: bool
) -> ShardResult:
    started = time.perf_counter()
    source, plan = _prepared(job)
    try:
        read = source.read(split, plan.scan_hex)
        nulled: dict = {}
        table = plan.apply(read.table, states, nulled=nulled, source_nulled=read.nulled)
        quarantine = put_quarantine(directory, split.index, read.bad, fsync) if read.bad else None
        written = put_shard(directory, split.index, shard_bytes(table, compression), fsync)
    except RecprepError:
        raise
    except Exception as exc:
        raise ShardError(f"shard {split.index} ({_where(split)}): {type(exc).__name__}: {exc}") from exc
    return ShardResult(
        split.index,
        written.name,
        table.num_rows,
        len(read.bad),
        written.bytes,
        written.sha256,
        quarantine,
        time.perf_counter() - started,
        {f"{i}:{col}": counts for (i, col), counts in nulled.items() if counts[0]},
    )


def prepare(job: PreprocessJob) -> tuple[object, Plan]:
    """Source and plan for ``job`` (the driver's checks run the same code as the workers)."""
    return _prepared(job)
