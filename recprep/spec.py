"""The PreprocessJob model: one source of truth for the CLI, the CRD schema and the operator.

A PreprocessJob document is the same YAML for ``recprep run job.yaml`` and ``kubectl apply``.
Every field has a description; validation errors name the field path (``spec.transforms[2].k``)
and, where the choice is closed, the allowed values.

Plain data: this module (with ``recprep.op_params``, the ops' parameters) imports no numpy,
pyarrow or C extension, so the operator and the CRD generator load none of them.
The resource's API facts (group, version, kind, plural) are defined here, once.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .errors import SpecError
from .isp_nodes.model import IspModel
from .manifest import decode, load_documents
from .op_params import PARAMS, OpParams

#: The Kubernetes API of the resource: ``recprep.io/v1alpha1``, kind PreprocessJob, plural
#: preprocessjobs (short name ppj). Everything else (CRD, operator, kubectl in tests) reads these.
GROUP = "recprep.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PreprocessJob"
PLURAL = "preprocessjobs"
SINGULAR = "preprocessjob"
SHORT_NAMES = ("ppj",)

#: A column selector: a role (dense | sparse | label), a column name, a glob, or a list of them.
Selector = str | list[str]

ROLES = ("dense", "sparse", "label")
FORMATS = ("criteo", "csv", "tsv", "parquet")

#: The Criteo schema (format criteo, and synthetic://criteo): a 0/1 label, 13 dense and 26 sparse
#: columns, and the role selectors a criteo source gets when dense/sparse are omitted.
CRITEO_LABEL = "label"
CRITEO_DENSE = tuple(f"I{i}" for i in range(1, 14))
CRITEO_SPARSE = tuple(f"C{i}" for i in range(1, 27))
CRITEO_COLUMNS = (CRITEO_LABEL, *CRITEO_DENSE, *CRITEO_SPARSE)
CRITEO_SELECTORS = {"dense": "I*", "sparse": "C*"}


class Model(BaseModel):
    """Spec models: camelCase in manifests, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


def _one_char(delimiter: str | None) -> str | None:
    if delimiter is not None and len(delimiter) != 1:
        raise ValueError("delimiter must be exactly one character")
    return delimiter


def _selects_something(selector: Selector, what: str) -> Selector:
    """``selector`` when it can select a column: a non-empty name or a non-empty list of them."""
    names = selector if isinstance(selector, list) else [selector]
    if not selector or any(not isinstance(c, str) or not c for c in names):
        raise ValueError(f"selects no column: give {what}")
    return selector


#: spec.source.joins[].maxBytes by default: 1 GiB of in-memory Arrow data per side table.
DEFAULT_JOIN_MAX_BYTES = 1 << 30


class JoinSpec(Model):
    """A side table (users, items) joined into every row of the source by key, before the
    transforms: a left join that keeps the source's rows and their order; a key missing from the
    side table gives nulls. Every worker reads the side table whole, once (a broadcast join)."""

    uri: str = Field(
        min_length=1,
        description="Path or fsspec-style URI of the side table: a CSV, TSV or Parquet file, a "
        "directory of them or a glob.",
    )
    format: Literal["csv", "tsv", "parquet"] | None = Field(
        None, description="csv | tsv | parquet; inferred from the URI when omitted."
    )
    header: bool = Field(False, description="csv/tsv: the first line of each file holds column names.")
    names: list[str] | None = Field(
        None, description="csv/tsv: the side table's column names when its files have no header."
    )
    delimiter: str | None = Field(
        None, description="csv/tsv field delimiter (default ',' for csv, tab for tsv)."
    )
    key: str = Field(
        description="The key column of the source's rows (e.g. user_id), matched with the side table's "
        "column of the same name (or sideKey)."
    )
    side_key: str | None = Field(
        None, description="The side table's key column, when its name differs from key."
    )
    columns: list[str] | None = Field(
        None,
        min_length=1,
        description="Side-table columns brought into each row (default: all but the key); "
        "spec.source.dense and sparse can select them (by their names, prefix included).",
    )
    prefix: str = Field("", description="Put before the name of every joined column (avoids clashes).")
    max_bytes: int = Field(
        DEFAULT_JOIN_MAX_BYTES,
        ge=1,
        description="Largest side table broadcast to the workers: its key and joined columns as "
        "in-memory Arrow data, in bytes (default 1 GiB); a larger one fails the job.",
    )

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        return _one_char(v)

    @field_validator("names", "columns")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (any(not c for c in v) or len(set(v)) != len(v)):
            raise ValueError("must be distinct, non-empty column names")
        return v


#: spec.source.session.gap by default: 30 minutes without an event end a session.
DEFAULT_SESSION_GAP = 1800


class SessionSpec(Model):
    """How the source's events form sessions (RecD): the events of one key (a user), in time
    order, cut where the key is inactive for ``gap`` seconds (rule gap) or at each UTC calendar day
    (rule day). Shards then hold whole sessions, each in time order."""

    key: str = Field(description="The column whose events form sessions (e.g. user_id).")
    time: str = Field(
        description="The event time column: integer unix seconds (a text source reads it as an integer; "
        "a malformed time makes its row malformed: quarantined with its line)."
    )
    rule: Literal["gap", "day"] = Field(
        "gap",
        description="gap: a session ends after gap seconds without an event of its key; day: a session is "
        "a key's events of one UTC calendar day.",
    )
    gap: int = Field(
        DEFAULT_SESSION_GAP,
        ge=0,
        description="rule gap: seconds of inactivity that end a session (default 1800).",
    )
    grouped: bool = Field(
        False,
        description="The source already holds each key's events together and in time order (a log "
        "clustered by key, as RecD's logging writes it, or an export sorted by key and time): shards are cut "
        "from the source's own splits, with no staging and no sort. Checked as it is read: a key found in "
        "two places, or a time before its key's previous one, fails the job naming the column and the line.",
    )

    @model_validator(mode="after")
    def _two_columns(self):
        if self.key == self.time:
            raise ValueError(f"key and time must be two columns (both are {self.key!r})")
        return self


class DedupGroupSpec(Model):
    """Sparse features that are constant within a session, stored and processed once per session
    (RecD's deduplication; the shard layout is docs/dedup.md's)."""

    name: str = Field(
        json_schema_extra={"pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$"},
        description="Name of the group (its inverse column in a shard is _inverse.<name>).",
    )
    features: list[str] = Field(
        min_length=1,
        description="The group's sparse features (output columns): each must be constant within a session; "
        "the job fails naming the feature and the session when one is not.",
    )
    derive_histories: bool = Field(
        default=True,
        description="Leave out of a shard each history list of the group that follows from the key's "
        "session before and the events between, which the shard keeps per sample (checked value by "
        "value when written; made again by recprep's readers: docs/dedup.md, layout version 2). "
        "false: every unique row stored whole (version 1, for readers of your own).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}", v):
            raise ValueError("must be 1-63 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
        return v

    @field_validator("features")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if any(not c for c in v) or len(set(v)) != len(v):
            raise ValueError("must be distinct, non-empty column names")
        return v


class SourceSpec(Model):
    """Where the raw samples are and how to read them."""

    uri: str = Field(
        min_length=1,
        description="Path or fsspec-style URI of the raw data: a file, a directory of files, a glob, "
        "or synthetic://criteo?rows=N&seed=S for generated Criteo-schema data.",
    )
    format: Literal["criteo", "csv", "tsv", "parquet"] | None = Field(
        None,
        description="criteo (TSV, no header, label I1..I13 C1..C26) | csv | tsv | parquet; "
        "inferred from the URI when omitted.",
    )
    header: bool = Field(False, description="csv/tsv: the first line of each file holds column names.")
    columns: list[str] | None = Field(
        None, description="Column names when the text files have no header (criteo implies them)."
    )
    delimiter: str | None = Field(
        None, description="csv/tsv field delimiter (default ',' for csv, tab for tsv and criteo)."
    )
    label: str | None = Field("label", description="Name of the label column (none if null).")
    dense: Selector | None = Field(
        None, description='Dense feature columns: names or globs such as "I*" (criteo: I*).'
    )
    sparse: Selector | None = Field(
        None, description="Sparse (categorical ID) columns: names or globs (criteo: C*)."
    )
    session: SessionSpec | None = Field(
        None,
        description="Group the events into sessions (a key, a time column, a rule): shards then hold whole "
        "sessions in time order, and history features and spec.dedup become possible (absent: rows keep "
        "source order).",
    )
    non_finite: Literal["quarantine", "null"] = Field(
        "quarantine",
        description="What a non-finite number (inf, -inf, NaN, 1e309) in a dense or label column is: a "
        "malformed row (quarantine, counted against maxBadFraction) or a null (fill_null can then "
        "give it a value).",
    )
    joins: list[JoinSpec] = Field(
        default_factory=list,
        description="Side tables (users, items) whose columns are joined into every row by key before "
        "the transforms, in order (a left join: rows and their order are kept).",
    )
    max_bad_fraction: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Fail the job when more than this fraction of rows is malformed; malformed rows "
        "are written to _quarantine/ in the output either way.",
    )

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        return _one_char(v)

    @field_validator("columns")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (any(not c for c in v) or len(set(v)) != len(v)):
            raise ValueError("must be distinct, non-empty column names")
        return v

    def role_selectors(self, fmt: str) -> dict[str, Selector]:
        """The dense and sparse selectors as written; for a ``fmt`` of criteo, the schema's
        (``CRITEO_SELECTORS``) where they are omitted, otherwise none."""
        defaults = CRITEO_SELECTORS if fmt == "criteo" else {}
        given = {"dense": self.dense, "sparse": self.sparse}
        return {role: given[role] if given[role] is not None else defaults.get(role, []) for role in given}


class TransformSpec(BaseModel):
    """One step of the pipeline: ``op`` names the op, ``columns`` selects its input columns and
    the remaining fields are the op's parameters (checked against the op when the spec loads)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    op: str = Field(description="Name of the op: " + " | ".join(PARAMS))
    columns: Selector = Field(
        description="Input columns: dense | sparse | label | a name | a glob | a list of names/globs."
    )

    @field_validator("columns")
    @classmethod
    def _selects_something(cls, v: Selector) -> Selector:
        return _selects_something(v, "dense, sparse, label, a name, a glob or a non-empty list")

    def params(self) -> dict[str, Any]:
        """The op's parameters as written in the manifest (everything but op and columns)."""
        return dict(self.model_extra or {})


class OutputSpec(Model):
    """Where prepared shards go."""

    # min_length: an empty URI would be the working directory, filled with shards unasked
    uri: str = Field(min_length=1, description="Output directory (path or file:// URI).")
    format: Literal["parquet"] = Field("parquet", description="Shard file format: parquet.")
    rows_per_shard: int = Field(
        65536,
        ge=1,
        description="Target rows per output shard (text sources, compressed or not, are split on "
        "line boundaries by size, so shards hold about this many rows).",
    )
    compression: Literal["snappy", "zstd", "lz4", "gzip", "none"] = Field(
        "snappy", description="Parquet compression codec: snappy | zstd | lz4 | gzip | none."
    )
    keep: Selector | None = Field(
        None,
        description="Columns in no role (not the label, a dense or a sparse feature, nor made by a "
        "transform) that are written anyway: names or globs. Without it they are left out of the "
        "shards (recprep validate lists them); kept columns travel beside the features and trainers "
        "ignore them.",
    )

    @field_validator("keep")
    @classmethod
    def _keeps_something(cls, v: Selector | None) -> Selector | None:
        return v if v is None else _selects_something(v, "a name, a glob or a non-empty list (or omit keep)")


class PoolBounds(Model):
    """Bounds of one worker pool; the predictor sizes the pool within them."""

    min: int = Field(0, ge=0, description="Fewest workers the pool keeps, even when idle.")
    max: int = Field(20, ge=0, description="Most workers the pool may have at once.")

    @model_validator(mode="after")
    def _min_le_max(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class PoolSpec(PoolBounds):
    """The general-purpose CPU pool."""

    preemptible: bool = Field(
        True, description="Run the pool on preemptible (spot) nodes; workers may be reclaimed."
    )


class IspPoolSpec(PoolBounds):
    """The ISP pool: one worker per storage node, running the offloadable transforms of the
    shards whose raw data the node holds (``recprep.isp_nodes``)."""

    max: int = Field(4, ge=0, description="Most ISP workers (storage nodes) the pool may have at once.")
    mode: Literal["native", "paced"] = Field(
        "native",
        description="native: ISP workers run at the storage node's own speed (near-data processing on its "
        "cores); paced: every offloaded task is held to the time the ISP model gives it, to emulate "
        "SmartSSD-class hardware on ordinary machines.",
    )
    units: int = Field(
        1,
        ge=1,
        le=64,
        description="ISP units per storage node: tasks one ISP worker runs at once (Dask isp=N).",
    )
    model: IspModel = Field(
        default_factory=IspModel,
        description="The ISP emulation model: per-unit throughput per op class, bandwidths, power and prices "
        "(any subset overrides the defaults; docs/isp.md gives each default's source).",
    )
    data_root: str | None = Field(
        None,
        description="On Kubernetes: the storage nodes' directory holding the raw data, mounted into the ISP "
        "pods at the same path (hostPath).",
    )


class PoolsSpec(Model):
    """The two worker pools the operator sizes (does not change the output bytes)."""

    cpu: PoolSpec = Field(
        default_factory=PoolSpec, description="General-purpose CPU workers (spot by default)."
    )
    isp: IspPoolSpec = Field(
        default_factory=IspPoolSpec, description="ISP-emulation workers on storage nodes."
    )


#: The shard service's default port (``spec.serve.port``, ``recprep serve --port``).
DEFAULT_SHARD_PORT = 8815
#: The environment variable holding the shard service's bearer token, for ``recprep serve``,
#: ``recprep run --serve`` and ``recprep train`` alike (the operator sets it from the Secret).
SHARD_TOKEN_ENV = "RECPREP_SHARD_TOKEN"

#: A Secret's name (a DNS-1123 subdomain).
SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class ServeSpec(Model):
    """The job's shard service on Kubernetes: ``recprep serve`` on the job's output in a
    Deployment ``<job>-shards`` behind a Service of the same name, so trainers read
    ``grpc://<job>-shards:<port>`` (does not change the output bytes)."""

    port: int = Field(
        DEFAULT_SHARD_PORT,
        ge=1,
        le=65535,
        description="Port of the shard service (the pod's and the Service's).",
    )
    token_secret: str | None = Field(
        None,
        json_schema_extra={"pattern": SECRET_NAME.pattern},
        description="Name of a Secret in the job's namespace whose key `token` is the bearer token every "
        "trainer must send (it reaches the server as an environment variable); without it anyone who can "
        "reach the Service reads the shards.",
    )
    seed: int = Field(0, ge=0, description="Seed of every epoch's shard order (recprep serve --seed).")

    @field_validator("token_secret")
    @classmethod
    def _secret_name(cls, v: str | None) -> str | None:
        if v is not None and not SECRET_NAME.fullmatch(v):
            raise ValueError(
                "must be the name of a Secret: lowercase letters, digits, '-' and '.', at most 253 characters"
            )
        return v


#: The scaling policies of ``spec.autoscale.policy`` (``recprep.predictor.policies``: ours, and
#: the baselines it is measured against).
AUTOSCALE_POLICIES = ("predictive", "reactive", "adaptive", "hill-climbing", "moving-window", "static-peak")


class AutoscaleSpec(Model):
    """How the operator sizes the worker pools within spec.pools (does not change the output bytes)."""

    policy: Literal[AUTOSCALE_POLICIES] = Field(  # type: ignore[valid-type]
        "predictive",
        description="predictive: forecast the trainers' demand over the workers' start-up lag and plan the "
        "cheapest mix of cpu and isp workers that meets it; reactive: dask-kubernetes' rule (the scheduler's "
        "adaptive target every 5 s, at most 25% removed per step); adaptive: distributed's Adaptive; "
        "hill-climbing: Cachew's climb on the trainers' batch time; moving-window: the decayed p95 of recent "
        "demand (Autopilot); static-peak: every pool at its max.",
    )
    interval: float = Field(
        10.0,
        gt=0,
        description="Seconds between scaling decisions of the predictive and moving-window policies (the "
        "baselines keep the interval of the system they stand for).",
    )
    quantile: float = Field(
        0.8,
        ge=0.5,
        le=0.99,
        description="Quantile of the demand forecast the predictive policy provisions for (0.5 to 0.99): "
        "higher buys fewer trainer stalls with more workers.",
    )
    deadline: int | None = Field(
        None,
        ge=1,
        description="Seconds from the job's start by which every shard must be committed (absent: none); "
        "the predictive policy finishes by it at least cost, or reports early that the pools' max cannot.",
    )
    budget: float | None = Field(
        None,
        gt=0,
        description="Most the workers may cost, in USD per hour at the pools' modelled prices (absent: no "
        "limit); when it binds, the plan is the most capacity the budget buys.",
    )


#: JobSpec fields that only steer how the job runs on Kubernetes, never the output bytes;
#: PreprocessJob.identity() leaves them out.
RUNTIME_FIELDS = ("pools", "backoffLimit", "ttlSecondsAfterFinished", "serve", "autoscale")
#: Fields added after outputs were first written, with their default: identity() leaves them out
#: while they hold the default, so a job that does not set them keeps the identity (and the
#: outputs) it had before they existed.
LATER_FIELDS = {
    ("source", "nonFinite"): "quarantine",
    ("output", "keep"): None,
    ("source", "joins"): [],
}


class JobSpec(Model):
    """What data, which transforms, where the results go."""

    source: SourceSpec
    transforms: list[TransformSpec] = Field(
        default_factory=list, description="Ordered transforms applied to every shard."
    )
    output: OutputSpec
    pools: PoolsSpec = Field(
        default_factory=PoolsSpec,
        description="Worker pool bounds on Kubernetes (ignored by recprep run).",
    )
    backoff_limit: int = Field(
        2, ge=0, description="Retries of a failed driver before the job is marked Failed."
    )
    ttl_seconds_after_finished: int = Field(
        600,
        ge=0,
        description="Seconds after Succeeded/Failed before the operator deletes the job's "
        "scheduler and workers (the PreprocessJob itself, its output and its shard service stay).",
    )
    serve: ServeSpec | None = Field(
        None,
        description="Run the job's shard service on Kubernetes (absent: none); it stays after the job "
        "succeeds, until the PreprocessJob is deleted (ignored by recprep run: see --serve).",
    )
    autoscale: AutoscaleSpec = Field(
        default_factory=AutoscaleSpec,
        description="How the operator sizes the worker pools within spec.pools: the scaling policy and its "
        "settings (ignored by recprep run).",
    )
    dedup: list[DedupGroupSpec] = Field(
        default_factory=list,
        description="Groups of sparse features constant within a session (needs spec.source.session): their "
        "transforms run once per session and shards store them once per session with an inverse index "
        "(RecD's IKJT; docs/dedup.md).",
    )

    @model_validator(mode="after")
    def _dedup_needs_sessions(self):
        if self.dedup and self.source.session is None:
            raise ValueError("dedup: needs spec.source.session (a group is deduplicated per session)")
        seen: dict[str, str] = {}
        names = set()
        for i, group in enumerate(self.dedup):
            if group.name in names:
                raise ValueError(f"dedup[{i}].name: {group.name!r} names two groups")
            names.add(group.name)
            for feature in group.features:
                if feature in seen:
                    raise ValueError(
                        f"dedup[{i}].features: {feature!r} is already in group {seen[feature]!r}"
                    )
                seen[feature] = group.name
        return self

    @property
    def isp_runs_whole_shards(self) -> bool:
        """Whether an ISP worker runs every transform of a shard (each op has an ISP class,
        ``recprep.op_params``); otherwise the CPU pool finishes the shards the ISP pool starts."""
        return all(getattr(PARAMS.get(t.op), "offload", None) is not None for t in self.transforms)


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(description="Job name (a DNS-1123 label).")
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _dns1123(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", v):
            raise ValueError(
                "must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters"
            )
        return v


class PreprocessJob(BaseModel):
    """The PreprocessJob resource (apiVersion ``API_VERSION``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal[API_VERSION] = Field(alias="apiVersion")  # type: ignore[valid-type]
    kind: Literal[KIND]  # type: ignore[valid-type]
    metadata: Metadata
    spec: JobSpec
    status: dict[str, Any] | None = Field(None, description="Written by the operator; ignored here.")

    @model_validator(mode="after")
    def _ops(self):
        for i, t in enumerate(self.spec.transforms):
            validate_params(t, i)
        return self

    def identity(self) -> str:
        """A hash of everything that decides the output bytes (not the name, not output.uri)."""
        spec = self.spec.model_dump(mode="json", by_alias=True)
        spec["output"].pop("uri")
        spec["source"].pop("maxBadFraction")
        for key in RUNTIME_FIELDS:
            spec.pop(key)
        for (section, key), default in LATER_FIELDS.items():
            if spec[section].get(key) == default:
                spec[section].pop(key)
        if not spec["dedup"]:  # added later too, at the top level
            spec.pop("dedup")
        for group in spec.get("dedup", ()):  # added later still, inside each group
            if group["deriveHistories"]:
                group.pop("deriveHistories")
        blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def validate_params(transform: TransformSpec, index: int) -> OpParams:
    """The validated parameters of ``spec.transforms[index]``, or a SpecError naming the field,
    with the field's description (``recprep.op_params``) and the op's fields."""
    where = f"spec.transforms[{index}]"
    model = PARAMS.get(transform.op)
    if model is None:
        raise SpecError(f"{where}.op: unknown op {transform.op!r}; allowed: {', '.join(sorted(PARAMS))}")
    try:
        return model.model_validate(transform.params())
    except ValidationError as exc:
        docs = model.field_docs()
        hint = f"(op {transform.op}; fields: {', '.join(['columns', *docs])})"
        raise SpecError(_format_errors(exc, where, hint, docs)) from None


def _format_errors(
    exc: ValidationError, prefix: str, hint: str = "", docs: dict[str, str] | None = None
) -> str:
    """One line per error: the field path, what is wrong, the value given and (with ``docs``,
    field -> description) what the field is for."""
    lines = []
    for err in exc.errors():
        path = prefix
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif re.fullmatch(r"[A-Za-z0-9_$-]+", str(part)):
                path += f".{part}"
            else:  # a key with spaces, dots or control characters: quoted, so the path stays one line
                path += f"[{str(part)!r}]"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "literal_error":
            msg = "must be one of " + err["ctx"]["expected"]
        elif err["type"].startswith("value_error"):
            msg = msg.removeprefix("Value error, ")
        given = err.get("input")
        if err["type"] not in ("missing", "extra_forbidden") and not isinstance(given, (dict, list)):
            msg += f" (got {given!r})"
        field = err["loc"][0] if err["loc"] else None
        if docs and docs.get(field):
            msg += f" -- {field}: {docs[field].rstrip('.')}"
        lines.append(f"{path.lstrip('.')}: {msg}")
    text = "; ".join(lines)
    return f"{text} {hint}".rstrip()


def load_job_dict(doc: Any, source: str = "<document>") -> PreprocessJob:
    """Validate a parsed YAML/JSON document as a PreprocessJob."""
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: expected a PreprocessJob mapping, got {type(doc).__name__}")
    try:
        return PreprocessJob.model_validate(doc)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    except ValidationError as exc:
        raise SpecError(f"{source}: {_format_errors(exc, '').lstrip('.')}") from None


def load_job_text(text: str, source: str) -> PreprocessJob:
    """Validate YAML text holding exactly one PreprocessJob; errors name ``source`` and line.
    The YAML is read with bounds (``recprep.manifest``: size, alias expansion, no repeated keys)."""
    docs = [d for d in load_documents(text, source) if d is not None]
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if len(jobs) != 1:
        raise SpecError(f"{source}: expected exactly one document of kind {KIND}, found {len(jobs)}")
    return load_job_dict(jobs[0], source)


def load_job(path: str | Path) -> PreprocessJob:
    """Read and validate a PreprocessJob YAML file (the very file ``kubectl apply`` takes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the job file ({exc.strerror})") from None
    return load_job_text(decode(data, str(path)), str(path))
