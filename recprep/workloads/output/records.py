"""The records of the output contract, and the one parser of each.

- :class:`JobRecord` is ``_job.json``: the job's identity (a hash of everything that decides
  the output bytes, the split plan included), its name, its spec and its planned shard count.
- :class:`CommitRecord` is one line of ``_ledger.jsonl``: shard ``shard`` is in the file
  ``file`` with ``rows`` rows and checksum ``sha256``.
- :class:`FeatureRoles` travels in every shard's schema metadata (key ``recprep.features``): which
  column is the label and which are the dense and the sparse features, as the job said, so a
  trainer needs no column named ``label`` and no guessing from types.

A ledger line is a commit only when it is complete (ends with a newline: the driver may be
appending it) and well formed: ``shard`` an integer in the job's range, ``rows`` an integer,
``file`` a shard file name directly in the output. Anything else is skipped: a line torn by a
crash means that shard is committed again on resume. When a shard has several records, its
position in commit order is its first record's and its contents are its last one's (a shard
redone after its file went missing is recorded again, describing the file now in place).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .layout import is_shard_file


@dataclass(frozen=True)
class CommitRecord:
    shard: int
    file: str
    rows: int
    #: malformed input rows of the shard (quarantined, not in the file)
    bad_rows: int = 0
    bytes: int = 0
    sha256: str | None = None
    #: the shard's quarantine file, relative to the output, when it had malformed rows
    quarantine: str | None = None
    #: the input the shard was made from (its split: file and byte or row range)
    source: dict[str, Any] | None = None
    #: per "<step>:<column>", [values the step made null, values it saw], where it made any
    nulled: dict[str, list[int]] | None = None
    #: where the shard's tasks ran and why, and the bytes it moved
    #: (``recprep.isp_nodes.accounting.placement_record``)
    placement: dict[str, Any] | None = None

    def to_json(self) -> str:
        """The ledger line (without its newline)."""
        record = {
            "shard": self.shard,
            "file": self.file,
            "rows": self.rows,
            "badRows": self.bad_rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "quarantine": self.quarantine,
            "source": self.source,
        }
        if self.nulled:
            record["nulled"] = self.nulled
        if self.placement:
            record["placement"] = self.placement
        return json.dumps(record, sort_keys=True)


def parse_commit(line: bytes | str, total: int | None = None) -> CommitRecord | None:
    """The commit one ledger line records, or None when it records none (torn, malformed, or a
    shard outside ``[0, total)``)."""
    try:
        e = json.loads(line)
        shard, file, rows = e["shard"], e["file"], e["rows"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None
    if not (
        _is_int(shard)
        and shard >= 0
        and (total is None or shard < total)
        and _is_int(rows)
        and isinstance(file, str)
        and is_shard_file(file)
    ):
        return None
    bad_rows, size, sha = e.get("badRows", 0), e.get("bytes", 0), e.get("sha256")
    quarantine, source, nulled = e.get("quarantine"), e.get("source"), e.get("nulled")
    return CommitRecord(
        shard,
        file,
        rows,
        bad_rows if _is_int(bad_rows) else 0,
        size if _is_int(size) else 0,
        sha if isinstance(sha, str) else None,
        quarantine if isinstance(quarantine, str) else None,
        source if isinstance(source, dict) else None,
        _counts(nulled),
        e.get("placement") if isinstance(e.get("placement"), dict) else None,
    )


def _counts(value: Any) -> dict[str, list[int]] | None:
    """A commit record's null counts, when well formed."""
    if not isinstance(value, dict):
        return None
    out = {
        k: list(v)
        for k, v in value.items()
        if isinstance(k, str) and isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v)
    }
    return out or None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The schema metadata key of a shard's feature roles (a JSON object: label, dense, sparse).
FEATURES_KEY = b"recprep.features"


@dataclass(frozen=True)
class FeatureRoles:
    """The roles of a shard's columns: the label (None when the job has none), the dense and the
    sparse features, in the order trainers see them."""

    label: str | None
    dense: tuple[str, ...]
    sparse: tuple[str, ...]

    def metadata(self) -> dict[bytes, bytes]:
        """The schema metadata that records these roles."""
        doc = {"label": self.label, "dense": list(self.dense), "sparse": list(self.sparse)}
        return {FEATURES_KEY: json.dumps(doc, separators=(",", ":")).encode()}


def parse_roles(metadata: dict[bytes, bytes] | None) -> FeatureRoles | None:
    """The feature roles a schema's metadata records, or None when it records none (a shard
    written before roles travelled with the data, or a file recprep did not write)."""
    raw = (metadata or {}).get(FEATURES_KEY)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        label, dense, sparse = doc["label"], doc["dense"], doc["sparse"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None
    if not (label is None or isinstance(label, str)) or not _names(dense) or not _names(sparse):
        return None
    return FeatureRoles(label, tuple(dense), tuple(sparse))


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


@dataclass(frozen=True)
class JobRecord:
    identity: str
    name: str = "?"
    #: the spec as the driver ran it (what trainers size their tables from)
    spec: dict | None = None
    #: planned shard count; None in outputs written before the shard service existed
    shards: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identity": self.identity, "name": self.name}
        if self.spec is not None:
            out["spec"] = self.spec
        if self.shards is not None:
            out["shards"] = self.shards
        return out


def parse_job(data: Any) -> JobRecord | None:
    """The job record of a parsed ``_job.json``, or None when it is not one (no identity)."""
    if not isinstance(data, dict) or not isinstance(data.get("identity"), str):
        return None
    shards = data.get("shards")
    return JobRecord(
        data["identity"],
        str(data.get("name", "?")),
        data.get("spec") if isinstance(data.get("spec"), dict) else None,
        shards if _is_int(shards) and shards >= 0 else None,
    )


def encode_fit_states(states: dict[tuple[int, str], Any]) -> dict[str, Any]:
    """Fitted states keyed ``(step, column)`` as ``_fit.json`` keys them: ``"<step>:<column>"``."""
    return {f"{step}:{column}": value for (step, column), value in states.items()}


def decode_fit_states(data: dict[str, Any]) -> dict[tuple[int, str], Any]:
    out: dict[tuple[int, str], Any] = {}
    for key, value in data.items():
        step, column = key.split(":", 1)
        out[(int(step), column)] = value
    return out
