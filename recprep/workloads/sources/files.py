"""Listing source files behind a path, directory, glob or fsspec URI."""

from __future__ import annotations

import fsspec

from ...errors import SourceError

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zstd")


def list_files(uri: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The filesystem and the sorted data files behind ``uri`` (hidden/underscore files skipped)."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ValueError, ImportError) as exc:
        raise SourceError(f"spec.source.uri: cannot open {uri!r}: {exc}") from None
    if any(ch in path for ch in "*?["):
        files = sorted(fs.glob(path))
    elif fs.isdir(path):
        files = sorted(p for p in fs.find(path) if not _hidden(p))
    elif fs.exists(path):
        files = [path]
    else:
        raise SourceError(f"spec.source.uri: {uri!r} does not exist")
    files = [f for f in files if fs.isfile(f)]
    if not files:
        raise SourceError(f"spec.source.uri: no files found at {uri!r}")
    return fs, files


def _hidden(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith((".", "_"))


def is_compressed(path: str) -> bool:
    return path.endswith(COMPRESSED)
