"""The functions Dask runs on workers: one shard's fit partials, one shard's transform + write.

Workers rebuild the source and the plan from the job (cached per process), so a task carries
only the job, its split and the fitted states.

A task that fails returns a :class:`ShardFailure` (one line naming the shard and its input)
instead of raising: Dask would print the exception with its traceback in the worker's log, and
the user is to see one line. An error of recprep's own (bad data the source cannot read, say)
is that line; anything else (a bug) adds the path of a log file in the output's ``_errors/``
holding the traceback. The driver raises the line as a :class:`ShardError`.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

from ..errors import RecprepError
from ..spec import PreprocessJob
from ..uris import local_path, output_directory
from .memory import tune_allocator
from .output import put_error_log, put_quarantine, put_shard
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


@dataclass(frozen=True)
class ShardFailure:
    """What a failed task returns: the shard and one line saying why."""

    index: int
    message: str


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces folded (an error is one line)."""
    return " ".join(str(text).split())


def _failure(job: PreprocessJob, split: Split, stage: str, exc: Exception) -> ShardFailure:
    what = f"{'fit of ' if stage == 'fit' else ''}shard {split.index} ({_where(split)})"
    if isinstance(exc, RecprepError):
        return ShardFailure(split.index, one_line(f"{what}: {exc}"))
    line = one_line(f"{what}: {type(exc).__name__}: {exc}")
    try:
        details = "".join(traceback.format_exception(exc))
        path = put_error_log(
            output_directory(job.spec.output.uri), split.index, stage, line + "\n\n" + details
        )
    except (OSError, RecprepError) as log_exc:  # the error line matters more than its log
        return ShardFailure(split.index, f"{line} (its details could not be written: {log_exc})")
    return ShardFailure(split.index, f"{line}; details in {path}")


_PREPARED: dict[str, tuple] = {}


def _prepared(job: PreprocessJob):
    key = job.model_dump_json()
    if key not in _PREPARED:
        tune_allocator()  # once per process: the first shard task on a worker
        if len(_PREPARED) > 8:
            _PREPARED.clear()
        output = local_path(job.spec.output.uri)
        made = frozenset(str(t.params()["output"]) for t in job.spec.transforms if t.params().get("output"))
        source = open_source(job.spec.source, exclude=output, generated=made)
        _PREPARED[key] = (source, compile_plan(job, source.schema(), source.roles))
    return _PREPARED[key]


def _where(split: Split) -> str:
    return f"{split.path} [{split.start}:{split.stop}]"


def fit_shard(job: PreprocessJob, split: Split, stage: int, states: States) -> dict | ShardFailure:
    try:
        source, plan = _prepared(job)
        return plan.fit_partials(source.read(split, plan.scan_hex).table, stage, states)
    except Exception as exc:  # name the shard: the user needs to know which input broke
        return _failure(job, split, "fit", exc)


def combine_partials(
    job: PreprocessJob, left: dict | ShardFailure, right: dict | ShardFailure
) -> dict | ShardFailure:
    for side in (left, right):
        if isinstance(side, ShardFailure):
            return side  # the first failure travels up the tree to the driver
    _, plan = _prepared(job)
    ops = {s.index: s.op for s in plan.steps}
    return {key: ops[key[0]].combine(left[key], right[key]) for key in left}


def transform_shard(
    job: PreprocessJob, split: Split, states: States, directory: str, compression: str, fsync: bool
) -> ShardResult | ShardFailure:
    started = time.perf_counter()
    try:
        source, plan = _prepared(job)
        read = source.read(split, plan.scan_hex)
        nulled: dict = {}
        table = plan.apply(read.table, states, nulled=nulled, source_nulled=read.nulled)
        quarantine = put_quarantine(directory, split.index, read.bad, fsync) if read.bad else None
        written = put_shard(directory, split.index, shard_bytes(table, compression), fsync)
    except Exception as exc:
        return _failure(job, split, "transform", exc)
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
