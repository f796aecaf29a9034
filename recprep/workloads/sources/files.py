"""Listing source files behind a path, directory, glob or fsspec URI."""

from __future__ import annotations

import contextlib
import lzma
import os
import zlib
from collections.abc import Iterator

import fsspec

from ...errors import SourceError
from ..output.store import protocols

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zstd")


def list_files(uri: str, exclude: str | None = None) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The filesystem and the sorted data files behind ``uri`` (hidden/underscore files skipped,
    and, on the local file system, every file inside the directory ``exclude``)."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ValueError, ImportError) as exc:
        raise SourceError(f"spec.source.uri: cannot open {uri!r}: {exc}") from None
    try:
        if any(ch in path for ch in "*?["):
            files = sorted(fs.glob(path))
        elif fs.isdir(path):
            files = sorted(p for p in fs.find(path) if not _hidden(p))
        elif fs.exists(path):
            files = [path]
        else:
            raise SourceError(f"spec.source.uri: {uri!r} does not exist{_resolved(uri, fs, path)}")
        files = [f for f in files if fs.isfile(f)]
    except SourceError:
        raise
    except Exception as exc:  # an object store client raises its own (credentials, access, bucket)
        raise SourceError(f"spec.source.uri: cannot list {uri!r} ({_storage_error(exc)})") from None
    if exclude and "file" in protocols(fs):
        inside = os.path.join(os.path.abspath(exclude), "")
        files = [f for f in files if not os.path.abspath(f).startswith(inside)]
    if not files:
        raise SourceError(f"spec.source.uri: no files found at {uri!r}{_resolved(uri, fs, path)}")
    if "file" not in protocols(fs):  # full URIs: what every message names, and fs still opens
        files = [fs.unstrip_protocol(f) for f in files]
    return fs, files


def _storage_error(exc: Exception) -> str:
    """An object store client's error in a few words: its type and first line (missing
    credentials, access denied, no such bucket)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _resolved(uri: str, fs: fsspec.AbstractFileSystem, path: str) -> str:
    """For a relative local path, what it was resolved against (relative paths are relative to
    the working directory of the run, not to the job file)."""
    if "file" not in protocols(fs) or "://" in uri or os.path.isabs(uri):
        return ""
    return f" (a relative path: resolved against the working directory {os.getcwd()} as {path})"


def _hidden(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith((".", "_"))


def is_compressed(path: str) -> bool:
    return path.endswith(COMPRESSED)


def _codec_errors() -> tuple[type[Exception], ...]:
    """The errors of the decompressors that are not OSErrors (ISA-L's zlib, not ``zlib.error``;
    zstandard's), those installed."""
    errors: list[type[Exception]] = []
    with contextlib.suppress(ImportError):
        from isal.isal_zlib import error

        errors.append(error)
    with contextlib.suppress(ImportError):
        from zstandard import ZstdError

        errors.append(ZstdError)
    return tuple(errors)


#: What reading a damaged or mislabelled file raises (a plain file named .gz: BadGzipFile, an
#: OSError; a truncated one: EOFError; a corrupt stream: zlib/lzma errors, ISA-L's, zstandard's).
READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, *_codec_errors())


@contextlib.contextmanager
def reading(path: str, what: str = "read") -> Iterator[None]:
    """Turn the errors of reading ``path`` into one SourceError naming the file."""
    try:
        yield
    except READ_ERRORS as exc:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise SourceError(f"{path}: cannot {what} it ({detail})") from None
