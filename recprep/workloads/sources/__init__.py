"""Sources: list a spec's input as deterministic splits and read each split as an Arrow table."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from ...errors import SpecError
from ...spec import CRITEO_COLUMNS
from ...uris import SYNTHETIC_SCHEME, infer_format
from .base import BadRow, ReadResult, Roles, Split, select

CRITEO_NAMES = list(CRITEO_COLUMNS)

__all__ = ["BadRow", "ReadResult", "Roles", "Split", "open_source", "infer_format"]


def _roles_fn(spec, fmt: str, generated: frozenset[str] = frozenset()):
    def roles(names: list[str]) -> Roles:
        selectors = spec.role_selectors(fmt)
        dense, sparse = selectors["dense"], selectors["sparse"]
        label = spec.label
        if label is not None and label not in names:
            if label in generated:  # a transform makes it (is_in ... output: label): not the source's
                label = None
            else:
                raise SpecError(
                    f"spec.source.label: no column {label!r} (nor a transform's output); columns are: "
                    f"{', '.join(names)}"
                )
        d = select(names, dense, "spec.source.dense") if dense else []
        s = select(names, sparse, "spec.source.sparse") if sparse else []
        both = set(d) & set(s)
        if both:
            raise SpecError(f"spec.source: columns {sorted(both)} are both dense and sparse")
        if label in d or label in s:
            raise SpecError(f"spec.source.label: {label!r} is also selected as a feature")
        for what in ("key", "time"):
            name = getattr(spec.session, what) if spec.session is not None else None
            if name is not None and name not in names:
                raise SpecError(
                    f"spec.source.session.{what}: no column {name!r}; columns are: {', '.join(names)}"
                )
        return Roles(label, tuple(d), tuple(s))

    return roles


def open_source(
    spec,
    exclude: str | None = None,
    generated: frozenset[str] = frozenset(),
    index_dir: str | None = None,
):
    """The source object for a SourceSpec (checks that the data exists before any work).
    ``exclude``: a local directory whose files are never input (the job's own output, when it
    lies inside the source directory: a second run must not read the first run's shards).
    ``generated``: the columns the job's transforms make (the label may be one of them).
    ``index_dir``: where the plans and indexes of compressed inputs are kept (the job output's
    ``_index/``, which every worker reads; default: a directory under the system's temporary
    one).
    With ``spec.joins``, the source is wrapped in a ``joins.JoinedSource`` (side tables joined
    into every split's rows)."""
    fmt = infer_format(spec.uri, spec.format)
    roles = _roles_fn(spec, fmt, generated)
    if getattr(spec, "joins", None):
        from .joins import JoinedSource

        # the wrapped source's roles are those of its own columns among the roles over its and
        # the joined columns (a selector may name a joined column)
        return JoinedSource(
            spec, lambda inner_roles: _open(spec, fmt, inner_roles, exclude, index_dir), roles
        )
    return _open(spec, fmt, roles, exclude, index_dir)


def _open(spec, fmt: str, roles, exclude: str | None, index_dir: str | None = None):
    if spec.uri.startswith(SYNTHETIC_SCHEME):
        from .synthetic_source import SyntheticSource

        url = urlparse(spec.uri)
        if url.netloc != "criteo":
            raise SpecError(f"spec.source.uri: unknown synthetic data set {url.netloc!r}; allowed: criteo")
        query = parse_qs(url.query)
        try:
            rows = int(query.get("rows", ["100000"])[0])
            seed = int(query.get("seed", ["0"])[0])
        except ValueError:
            raise SpecError(f"spec.source.uri: rows and seed must be integers in {spec.uri!r}") from None
        if rows < 1:
            raise SpecError(f"spec.source.uri: rows must be positive in {spec.uri!r}")
        return SyntheticSource(rows, seed, roles)
    if fmt == "parquet":
        from .parquet import ParquetSource

        return ParquetSource(spec, roles, exclude)
    from .text import TextSource

    if fmt == "criteo" and spec.columns is None:
        return TextSource(spec, fmt, CRITEO_NAMES, roles, exclude, index_dir)
    if fmt == "criteo":
        return TextSource(spec, fmt, list(spec.columns), roles, exclude, index_dir)
    return TextSource(spec, fmt, None, roles, exclude, index_dir)
