"""The pipeline plan: spec transforms resolved against the source schema, checked before any
data is read, and applied to whole Arrow tables.

Compilation resolves each transform's column selector (roles, names, globs) against the columns
that exist at that point, checks every input's kind against what the op accepts, and names
generated features. Fitted ops are grouped into *fit stages*: a stage's ops read only columns that
no unfitted op of the same stage has touched, so one pass over the data fits a whole stage.

Scan pushdown: a ``hex_to_int`` that is the first step to touch a source string column may be
done by the source while it parses (``Plan.scan_hex``); the step then finds the column already
integer and leaves it as it is. A source that does not decode (or declines a split) hands the
strings over as usual and the step decodes them: the result is the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadDataError, SpecError
from ..spec import PreprocessJob
from .ops import build_op
from .ops.base import FLOAT, INT, LIST, STRING, Op, kind_of, null_values
from .ops.hex_to_int import HexToInt
from .output.dedup import Unique, first_rows, inverse_column, pack
from .output.derived import Derivation
from .output.records import FeatureRoles
from .sessions import KEY_RUN, SESSION_RUN, check_schema
from .sources import Roles
from .sources.base import select

#: fitted state of one (step, input column): what Op.finalize returned
States = dict[tuple[int, str], Any]
#: per (step, input column): [values the step made null, values it saw]; how an op that nulls a
#: feature's values (hex_to_int on IDs that are not hex, say) is found and reported
NullCounts = dict[tuple[int, str], list[int]]


@dataclass
class Step:
    index: int  #: position in spec.transforms
    op: Op
    inputs: list[str]
    outputs: list[str]  #: same as inputs unless the op generates new features
    #: inputs the source may have decoded already (hex_to_int pushed down into the scan)
    pushed: frozenset[str] = frozenset()


@dataclass
class Plan:
    steps: list[Step]
    schema_kinds: dict[str, str]  #: column -> kind (every column: source, generated)
    columns: list[str]  #: output columns, in order (the features, the label, kept columns)
    roles: Roles  #: roles of the output (generated features are sparse)
    fit_stages: list[list[int]] = field(default_factory=list)
    #: columns in no role that the output leaves out (``spec.output.keep`` keeps them)
    dropped: list[str] = field(default_factory=list)
    #: columns in no role that ``spec.output.keep`` writes anyway
    kept: list[str] = field(default_factory=list)
    #: a session job (``spec.source.session``): its (key, time) columns; its rows come sorted
    #: by session, with hidden key and session columns
    sessions: tuple[str, str] | None = None
    #: ``spec.dedup``: (group, its features), stored once per session
    groups: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    #: columns constant within a session once made (the groups' source columns, history outputs
    #: and what steps make from those alone); the steps that make them run once per session
    constant: frozenset[str] = frozenset()
    #: the groups' source columns (each checked to be constant within every session)
    constant_sources: tuple[str, ...] = ()
    #: the groups' history lists that a shard stores only where the row before and their source
    #: column do not give them (``output.derived``)
    derived: tuple[Derivation, ...] = ()

    @property
    def needs_fit(self) -> bool:
        return bool(self.fit_stages)

    @property
    def scan_hex(self) -> frozenset[str]:
        """Source columns the source may decode with hex_to_int while it reads them."""
        return frozenset().union(*(s.pushed for s in self.steps))

    def apply(
        self,
        table: pa.Table,
        states: States,
        stop: int | None = None,
        nulled: NullCounts | None = None,
        source_nulled: dict[str, int] | None = None,
        start: int = 0,
        context: int = 0,
    ) -> pa.Table:
        """Run the steps (all, or those in ``[start, stop)``) on ``table``. With ``nulled``, count
        into it the values each step makes null; ``source_nulled`` holds what the source made
        null while doing a step pushed down into the read (``ReadResult.nulled``). Steps
        ``[0, k)`` then ``[k, n)`` give the same table as all ``n`` at once (the ISP pool runs
        the first part of a shard, the CPU pool the rest). ``context``: leading rows that only
        give the others their history (a session read's); they are counted nowhere and left out
        of the output. A plan with dedup groups writes the deduplicated layout
        (:meth:`apply_dedup`)."""
        if self.groups and stop is None and start == 0:
            return self.apply_dedup(table, states, nulled, source_nulled, context)
        columns = _columns(table)
        for step in self.steps[start:stop]:
            apply_step(columns, step, states, nulled, source_nulled or {}, context)
        if stop is not None:
            return pa.table(columns)
        # the output: its columns in order, with the roles every shard carries (the contract's
        # FeatureRoles in the schema metadata)
        out = pa.table({name: columns[name].slice(context) for name in self.columns})
        return out.replace_schema_metadata(self.feature_roles().metadata())

    def apply_dedup(
        self,
        table: pa.Table,
        states: States,
        nulled: NullCounts | None = None,
        source_nulled: dict[str, int] | None = None,
        context: int = 0,
    ) -> pa.Table:
        """All the steps on a session read, the steps that make session-constant columns once per
        session (RecD), and the output in the deduplicated layout (``output.dedup``): each
        group's features once per session of the shard, with the inverse index. The values are
        those :meth:`apply` gives per sample. For the steps run once per session, ``nulled``
        counts sessions, not samples."""
        columns = _columns(table)
        sessions = columns[SESSION_RUN].to_numpy()
        starts, row_session = first_rows(sessions)
        first = pa.array(starts)
        unique: Columns = {}
        for name in self.constant_sources:
            unique[name] = pa.chunked_array([_one_chunk(columns[name]).take(first)])
            check_constant(name, columns[name], unique[name], row_session, starts, columns, self.sessions)
        for step in (part for s in self.steps for part in _parts(s)):
            if step.op.per_session:
                keys = columns[KEY_RUN].to_numpy()
                for inp, out in zip(step.inputs, step.outputs):
                    lists = step.op.session_lists(
                        _one_chunk(_sample(columns, unique, inp, row_session)), keys, sessions
                    )
                    unique[out] = pa.chunked_array([lists])
            elif all(c in self.constant for c in step.outputs):
                apply_step(unique, step, states, nulled, source_nulled or {})
            else:
                for inp in step.inputs:
                    columns[inp] = _sample(columns, unique, inp, row_session)
                apply_step(columns, step, states, nulled, source_nulled or {}, context)
                for out in step.outputs:
                    unique.pop(out, None)
        # the shard's own rows: its sessions from the first row after the context
        s0 = int(row_session[context]) if context < len(row_session) else len(starts)
        inverse = (row_session[context:] - s0).astype(np.int32)
        grouped = {c for _, features in self.groups for c in features}
        samples = {}
        for name in self.columns:
            if name in grouped:
                continue
            samples[name] = (
                unique[name].slice(s0).take(pa.array(inverse))
                if name in unique
                else columns[name].slice(context)
            )
        uniques = [
            Unique(group, pa.table({c: unique[c].slice(s0) for c in features}), inverse)
            for group, features in self.groups
        ]
        out = pa.table(samples).replace_schema_metadata(self.feature_roles().metadata())
        return pack(out, uniques, order=self.columns, derive=self.derived)

    @property
    def offloadable(self) -> int:
        """How many leading steps ISP units may run: up to the first op the registry does not
        offload (``OpParams.offload``); the steps after it run on the CPU pool. A session job's
        shards are read from the staged, sorted partitions (a grouped one's, from their split and
        the edges of the splits around it): the CPU pool runs them whole."""
        if self.sessions:
            return 0
        for i, step in enumerate(self.steps):
            if step.op.Params.offload is None:
                return i
        return len(self.steps)

    def offload_values(self, rows: int, stop: int) -> dict[str, int]:
        """Values (rows x input columns) each op class pushes through steps ``[0, stop)``."""
        values: dict[str, int] = {}
        for step in self.steps[:stop]:
            kind = step.op.Params.offload
            if kind is not None:
                values[kind] = values.get(kind, 0) + rows * len(step.inputs)
        return values

    def feature_roles(self) -> FeatureRoles:
        return FeatureRoles(self.roles.label, self.roles.dense, self.roles.sparse)

    def fit_partials(
        self, table: pa.Table, stage: int, states: States, context: int = 0
    ) -> dict[tuple[int, str], Any]:
        """Partial statistics of one fit stage's ops on one shard's table (over every sample,
        with or without dedup; ``context`` rows left out)."""
        fitting = set(self.fit_stages[stage])
        last = max(fitting)
        partials: dict[tuple[int, str], Any] = {}
        columns = _columns(table)
        for step in self.steps[: last + 1]:
            if step.index in fitting:
                for col in step.inputs:
                    partials[(step.index, col)] = step.op.partial(_one_chunk(columns[col].slice(context)))
            elif not step.op.fitted or all((step.index, c) in states for c in step.inputs):
                apply_step(columns, step, states)
            # a fitted op of a later stage is left out: nothing in this stage reads its output
        return partials


#: a table under transformation: column name -> column, in output order (one Table is built at
#: the end: pyarrow's set_column copies the whole column list every time)
Columns = dict[str, pa.ChunkedArray]


def _columns(table: pa.Table) -> Columns:
    return dict(zip(table.column_names, table.columns))


def _one_chunk(col: pa.ChunkedArray) -> pa.Array:
    if col.num_chunks == 1:
        return col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.unify_dictionaries()
    return col.combine_chunks()


def apply_step(
    columns: Columns,
    step: Step,
    states: States,
    nulled: NullCounts | None = None,
    source_nulled: dict[str, int] | None = None,
    context: int = 0,
) -> None:
    """Run one step on ``columns`` in place (replaced columns keep their position, generated
    ones are appended); with ``nulled``, count the values it makes null (see ``Plan.apply``),
    the first ``context`` rows left out."""
    if step.op.combines:  # one new column from all the inputs at once (cross)
        arrays = [_one_chunk(columns[c]) for c in step.inputs]
        result = step.op.transform_many(arrays)
        if nulled is not None:
            counted = [a.slice(context) for a in arrays]
            made = step.op.nulls_made(counted, result.slice(context))
            _count(nulled, (step.index, step.outputs[0]), made, len(result) - context)
        columns[step.outputs[0]] = pa.chunked_array([result])
        return
    if step.op.per_session:  # one list per session, every event of the session gets it
        sessions = columns[SESSION_RUN].to_numpy()
        _, row_session = first_rows(sessions)
        keys = columns[KEY_RUN].to_numpy()
        for inp, out in zip(step.inputs, step.outputs):
            lists = step.op.session_lists(_one_chunk(columns[inp]), keys, sessions)
            columns[out] = pa.chunked_array([lists.take(pa.array(row_session))])
        return
    for inp, out in zip(step.inputs, step.outputs):
        state = states.get((step.index, inp))
        col = columns[inp]
        if inp in step.pushed and kind_of(col.type) == INT:
            # the source decoded it while scanning
            if nulled is not None:
                _count(nulled, (step.index, inp), (source_nulled or {}).get(inp, 0), len(col) - context)
            continue
        if col.num_chunks == 1:
            result = pa.chunked_array([step.op.transform(col.chunk(0), state)])
        elif col.num_chunks:
            result = pa.chunked_array([step.op.transform(chunk, state) for chunk in col.chunks])
        else:
            result = col
        if nulled is not None:
            before, seen = _nulls(col.slice(context))
            after, _ = _nulls(result.slice(context))
            _count(nulled, (step.index, inp), max(after - before, 0), seen)
        columns[out] = result


def _parts(step: Step) -> list[Step]:
    """``step`` as the steps of its columns, one each, for an op that treats each input on its
    own (so a step over both session-constant and per-event columns runs each part where it
    belongs); a combining op stays whole."""
    if step.op.combines or len(step.inputs) == 1:
        return [step]
    return [
        Step(step.index, step.op, [inp], [out], step.pushed & {inp})
        for inp, out in zip(step.inputs, step.outputs)
    ]


def _sample(columns: Columns, unique: Columns, name: str, row_session: np.ndarray) -> pa.ChunkedArray:
    """Column ``name`` per sample: as it is, or a session-constant one expanded."""
    if name in unique:
        return pa.chunked_array([_one_chunk(unique[name]).take(pa.array(row_session))])
    return columns[name]


def check_constant(
    name: str,
    col: pa.ChunkedArray,
    unique: pa.ChunkedArray,
    row_session: np.ndarray,
    starts: np.ndarray,
    columns: Columns,
    session: tuple[str, str] | None,
) -> None:
    """BadDataError naming ``name`` and the first session in which it is not constant."""
    expanded = _one_chunk(unique).take(pa.array(row_session))
    same = pc.fill_null(pc.equal(_one_chunk(col), expanded), False)
    both_null = pc.and_(pc.is_null(_one_chunk(col)), pc.is_null(expanded))
    ok = np.asarray(pc.or_(same, both_null).to_numpy(zero_copy_only=False), bool)
    if ok.all():
        return
    row = int(np.flatnonzero(~ok)[0])
    first = int(starts[row_session[row]])
    named = [c for c in session or () if c in columns and c != name]
    where = ", ".join(f"{c}={_one_chunk(columns[c])[first].as_py()!r}" for c in named) or f"row {first + 1}"
    raise BadDataError(
        f"spec.dedup: feature {name!r} is not constant within a session: the session starting at "
        f"({where}) has {_one_chunk(col)[first].as_py()!r} and then {_one_chunk(col)[row].as_py()!r}; "
        "only features that are the same for every event of a session can be deduplicated"
    )


def _nulls(col: pa.ChunkedArray) -> tuple[int, int]:
    counts = [null_values(chunk) for chunk in col.chunks]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _count(nulled: NullCounts, key: tuple[int, str], made: int, seen: int) -> None:
    entry = nulled.setdefault(key, [0, 0])
    entry[0] += made
    entry[1] += seen


def compile_plan(job: PreprocessJob, schema: pa.Schema, roles: Roles) -> Plan:
    kinds: dict[str, str] = {}
    for f in schema:
        k = kind_of(f.type)
        if k is not None:
            kinds[f.name] = k
    columns = list(schema.names)
    # role selectors (dense | sparse | label) name the source's columns; generated features are
    # addressed by name, and are sparse features of the output
    label, dense, sparse = roles.label, list(roles.dense), list(roles.sparse)
    generated: list[str] = []
    steps: list[Step] = []
    session = job.spec.source.session
    if session is not None:
        check_schema(session, schema)
    for i, t in enumerate(job.spec.transforms):
        where = f"spec.transforms[{i}]"
        op = build_op(t, i)
        if op.per_session and session is None:
            raise SpecError(f"{where}: op {op.name} needs spec.source.session (the key and time of sessions)")
        inputs = _resolve(t.columns, columns, label, dense, sparse, f"{where}.columns")
        for name in inputs:
            kind = kinds.get(name)
            if kind not in op.accepts:
                raise SpecError(
                    f"{where}: op {op.name} cannot take column {name!r} of kind "
                    f"{kind or schema.field(name).type}; it takes: {', '.join(sorted(op.accepts))}"
                )
        outputs = list(inputs)
        target = getattr(op.params, "output", None)
        if op.generates and target:
            if op.combines and len(inputs) < op.min_inputs:
                raise SpecError(
                    f"{where}.columns: op {op.name} combines {op.min_inputs} or more columns into one; "
                    f"the selector picks {len(inputs)}: {', '.join(inputs) or 'none'}"
                )
            if len(inputs) > 1 and "{column}" not in target and not op.combines:
                raise SpecError(
                    f"{where}.output: {len(inputs)} columns are selected; use {{column}} in the name "
                    f"(e.g. '{{column}}_{op.name}') so each gets its own output"
                )
            outputs = [target] if op.combines else [target.replace("{column}", c) for c in inputs]
            for out in outputs:
                if out in columns:
                    raise SpecError(f"{where}.output: column {out!r} already exists")
                columns.append(out)
                generated.append(out)
        for inp, out in zip(inputs, outputs):
            kinds[out] = op.output_kind(kinds[inp])
        steps.append(Step(i, op, inputs, outputs))
    wanted = job.spec.source.label
    if label is None and wanted in generated:  # the label is a transform's output (is_in)
        if kinds.get(wanted) not in (INT, FLOAT):
            raise SpecError(f"spec.source.label: {wanted!r} is made as {kinds.get(wanted)}, not a number")
        label = wanted
        generated.remove(wanted)
    source_kinds = {f.name: kind_of(f.type) for f in schema}
    # a dense column an op turned into IDs (bucketize in place) is a sparse feature of the output
    to_ids = [c for c in dense if kinds.get(c) in (INT, LIST) and source_kinds.get(c) not in (INT, LIST)]
    roles = Roles(
        label,
        tuple(c for c in dense if c not in to_ids),
        tuple(sorted([*sparse, *to_ids], key=columns.index) + generated),
    )
    in_role = {label, *roles.dense, *roles.sparse}
    unroled = [c for c in columns if c not in in_role]
    keep = job.spec.output.keep
    kept = select(unroled, keep, "spec.output.keep") if keep is not None and unroled else []
    if keep is not None and not unroled:
        raise SpecError(
            "spec.output.keep: every column already has a role (label, dense, sparse or a transform's "
            "output), so there is nothing to keep; remove keep"
        )
    plan = Plan(
        _push_down(steps, schema),
        kinds,
        [c for c in columns if c in in_role or c in kept],
        roles,
        dropped=[c for c in unroled if c not in kept],
        kept=kept,
    )
    plan.fit_stages = _fit_stages(plan.steps)
    if session is not None:
        plan.sessions = (session.key, session.time)
        _dedup(plan, job, set(schema.names))
    return plan


def _dedup(plan: Plan, job: PreprocessJob, source_columns: set[str]) -> None:
    """The plan's dedup groups, the session-constant columns and the checks that name the field:
    a group's features are sparse output features, each constant within a session once made."""
    grouped = [(g.name, tuple(g.features)) for g in job.spec.dedup]
    sources = tuple(f for _, features in grouped for f in features if f in source_columns)
    constant = set(sources)
    made_by: dict[str, Step] = {}
    for step in plan.steps:
        for part in _parts(step):
            if part.op.per_session or all(c in constant for c in part.inputs):
                constant |= set(part.outputs)
            else:
                constant -= set(part.outputs)
            for out in part.outputs:
                made_by[out] = part
    for i, (_, features) in enumerate(grouped):
        for name in features:
            where = f"spec.dedup[{i}].features"
            if name not in plan.columns:
                raise SpecError(
                    f"{where}: no output column {name!r}; output columns: {', '.join(plan.columns)}"
                )
            if name not in plan.roles.sparse:
                raise SpecError(
                    f"{where}: {name!r} is not a sparse feature (the label and dense features stay "
                    "per sample)"
                )
            if name not in constant:
                step = made_by[name]
                others = [c for c in step.inputs if c not in constant]
                raise SpecError(
                    f"{where}: {name!r} is not constant within a session: spec.transforms[{step.index}] "
                    f"({step.op.name}) makes it from {', '.join(map(repr, others))}, which is not in a dedup "
                    "group (only a group's features, history outputs and what is made from them alone are)"
                )
    plan.groups = grouped
    plan.constant = frozenset(constant) if grouped else frozenset()
    plan.constant_sources = sources
    plan.derived = _derivations(plan, job)
    # a shard holds each group's inverse index and flags beside the output columns: a column of
    # the same name would be overwritten by them
    for i, (name, features) in enumerate(grouped):
        inverse = inverse_column(name)
        if inverse in plan.columns:
            raise SpecError(
                f"spec.dedup[{i}].name: group {name!r} stores its inverse index in column {inverse!r}, "
                "which is already an output column; rename the group or the column"
            )
        for d in plan.derived:
            if d.column in features and d.flags in plan.columns:
                raise SpecError(
                    f"spec.dedup[{i}].features: {d.column!r} stores its flags in column {d.flags!r}, "
                    "which is already an output column; rename the column (or set deriveHistories: false)"
                )


def _derivations(plan: Plan, job: PreprocessJob) -> tuple[Derivation, ...]:
    """The grouped history lists whose source column the shard keeps per sample, neither
    written by a later step: each may follow from the session before (``output.derived``; the
    writer checks every list it leaves out), in groups that do not say ``deriveHistories: false``."""
    derived = {c for g in job.spec.dedup if g.derive_histories for c in g.features}
    grouped = {c for _, features in plan.groups for c in features}
    parts = [part for step in plan.steps for part in _parts(step)]
    out = []
    for i, part in enumerate(parts):
        if not part.op.per_session:
            continue
        later = {c for p in parts[i + 1 :] for c in p.outputs}
        for inp, made in zip(part.inputs, part.outputs):
            if made in derived and inp in plan.columns and inp not in grouped and not {inp, made} & later:
                out.append(Derivation(made, inp, part.op.params.k))
    return tuple(out)


def _push_down(steps: list[Step], schema: pa.Schema) -> list[Step]:
    """Mark each hex_to_int input that is a source string column no earlier step touches."""
    touched: set[str] = set()
    out = []
    for step in steps:
        if isinstance(step.op, HexToInt):
            pushed = frozenset(
                c
                for c in step.inputs
                if c not in touched and c in schema.names and kind_of(schema.field(c).type) == STRING
            )
            if pushed:
                step = Step(step.index, step.op, step.inputs, step.outputs, pushed)
        touched |= set(step.inputs) | set(step.outputs)
        out.append(step)
    return out


def _resolve(selector, columns, label, dense, sparse, where) -> list[str]:
    if isinstance(selector, str) and selector in ("dense", "sparse", "label"):
        chosen = {"dense": dense, "sparse": sparse, "label": [label] if label else []}[selector]
        if not chosen:
            raise SpecError(f"{where}: selects no columns (the source has no {selector} columns)")
        return list(chosen)
    return select(columns, selector, where)


def _fit_stages(steps: list[Step]) -> list[list[int]]:
    stages: list[list[int]] = []
    current: list[int] = []
    dirty: set[str] = set()  # columns an unfitted op of the current stage has produced
    for step in steps:
        if step.op.fitted:
            if any(c in dirty for c in step.inputs):
                stages.append(current)
                current, dirty = [], set()
            current.append(step.index)
            dirty |= set(step.outputs)
        elif any(c in dirty for c in step.inputs):
            dirty |= set(step.outputs)
    if current:
        stages.append(current)
    return stages


__all__ = ["Plan", "Step", "States", "compile_plan"]
