"""The URI rules of a PreprocessJob: which URIs name local paths, and which format a source URI
implies. One owner, read by the data plane (``recprep run``, ``recprep serve``), the trainer
(``recprep train`` sizing its tables) and the operator (the path it hands to pods).

Plain data: no imports beyond the standard library and recprep's errors.
"""

from __future__ import annotations

import os

from .errors import OutputError, SpecError

FILE_SCHEME = "file://"


def local_path(uri: str) -> str | None:
    """The local path a URI names (a path as written, or a ``file://`` URI's path), or None for
    any other scheme (``s3://``, ``synthetic://``, ...)."""
    if uri.startswith(FILE_SCHEME):
        return uri[len(FILE_SCHEME) :]
    if "://" in uri:
        return None
    return uri


def output_location(uri: str) -> str:
    """``spec.output.uri`` as the output's location: an absolute local directory, or an object
    store URI (``s3://``, ``gs://``, ``az://``, any fsspec scheme) without a trailing slash;
    OutputError naming the field for a URI with no bucket or a scheme that is not storage, or
    with an empty segment (``s3://bucket//prefix``: the client writes keys starting with ``/``
    there, but lists nothing below such a prefix, so no run, resume or reader would see them)."""
    path = local_path(uri)
    if path is not None:
        return os.path.abspath(path)
    scheme, _, rest = uri.partition("://")
    if uri.startswith(SYNTHETIC_SCHEME) or not rest.strip("/"):
        raise OutputError(f"spec.output.uri: not a place to write to: {uri!r}")
    if "//" in "/" + rest.rstrip("/"):
        raise OutputError(f"spec.output.uri: an empty segment ('//') in {uri!r}")
    return uri.rstrip("/")


#: Source URI scheme of generated Criteo-schema data (``synthetic://criteo?rows=N&seed=S``).
SYNTHETIC_SCHEME = "synthetic://"
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")
_SUFFIXES = ((".parquet", "parquet"), (".pq", "parquet"), (".tsv", "tsv"), (".csv", "csv"))


def infer_format(uri: str, fmt: str | None) -> str:
    """``spec.source.format``, or the format the URI implies when it is omitted (its suffix, a
    compression suffix aside; ``synthetic://`` is criteo); SpecError naming the field otherwise."""
    if fmt:
        return fmt
    if uri.startswith(SYNTHETIC_SCHEME):
        return "criteo"
    path = uri.lower()
    for ext in _COMPRESSED:
        path = path.removesuffix(ext)
    for suffix, name in _SUFFIXES:
        if path.endswith(suffix):
            return name
    raise SpecError(
        f"spec.source.format: cannot infer the format of {uri!r}; allowed: criteo, csv, tsv, parquet"
    )
