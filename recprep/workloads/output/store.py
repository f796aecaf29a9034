"""Where a job output's bytes live: a local directory or an object store prefix, behind one
small interface the writer and the reader share.

- :class:`LocalStore`: a directory (a path, or a ReadWriteMany volume on Kubernetes). A file is
  written under a temporary name and renamed into place (the ledger appends to its file, and the
  lock is an ``flock``: neither needs a conditional write here).
- :class:`ObjectStore`: an fsspec file system and a prefix (``s3://``, ``gs://``, ``az://``).
  An object store has no rename and no append, but a PUT is whole: a reader sees the previous
  object or the new one, never part of one. ``create`` is a conditional PUT (``If-None-Match:
  *`` on S3; fsspec's ``mode="create"``), and ``replace`` one that holds only while the object
  is still the one read (``If-Match`` on its ETag, S3; a read-compare-write elsewhere).

Everything a store raises is an ``OSError`` (``FileNotFoundError`` when a name is absent): an
object store client's own errors (credentials, access, a missing bucket) are turned into one,
worded by :func:`storage_error`, so callers need one ``except``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator

from ...errors import OutputError
from ...uris import local_path
from .layout import temporary_name


def storage_error(exc: BaseException) -> str:
    """An error in a few words: an OSError's own words, a client's type and first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    if text and type(exc) is OSError:  # a client's error in OSError's clothes: its words name it
        return text[0][:300]
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


class LocalStore:
    """A job output in a local directory."""

    local = True

    def __init__(self, directory: str):
        self.location = os.path.abspath(directory)

    def path(self, name: str) -> str:
        """What an error names for ``name``: its path."""
        return os.path.join(self.location, name)

    def exists(self, name: str = "") -> bool:
        return os.path.exists(self.path(name))

    def read(self, name: str) -> bytes:
        with open(self.path(name), "rb") as f:
            return f.read()

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        with open(self.path(name), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def put(self, name: str, payload: bytes | list[bytes], fsync: bool = False) -> None:
        """``payload`` (or its parts, one after another) under ``name``, complete or not at all
        (temporary name, rename)."""
        with self._temporary(name, payload, fsync) as tmp:
            os.replace(tmp, self.path(name))

    def put_file(self, name: str, local: str) -> None:
        """The local file ``local`` under ``name``, complete or not at all (moved when it is on
        the same file system, else copied to a temporary name and renamed); ``local`` is gone."""
        dest = self.path(name)
        folder, base = os.path.split(dest)
        os.makedirs(folder, exist_ok=True)
        try:
            os.replace(local, dest)
            return
        except OSError:
            pass
        tmp = os.path.join(folder, temporary_name(base, uuid.uuid4().hex[:12]))
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            os.remove(local)

    @contextlib.contextmanager
    def _temporary(self, name: str, payload: bytes | list[bytes], fsync: bool) -> Iterator[str]:
        folder, base = os.path.split(self.path(name))
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, temporary_name(base, uuid.uuid4().hex[:12]))
        with open(tmp, "wb") as f:
            for part in payload if isinstance(payload, list) else [payload]:
                f.write(part)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        try:
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path(name))

    def names(self, folder: str = "") -> list[str]:
        """The names directly inside ``folder`` ([] when there is none)."""
        path = self.path(folder)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def remove_folder_if_empty(self, folder: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.path(folder))

    def check_writable(self) -> None:
        """Create the directory and prove a file can be written there, before any work."""
        try:
            os.makedirs(self.location, exist_ok=True)
        except OSError as exc:
            raise _not_writable(self, exc) from None
        _probe(self)


class ObjectStore:
    """A job output under a prefix of an object store (any fsspec file system but the local one)."""

    local = False

    def __init__(self, fs, root: str, location: str):
        self.fs = fs
        self.root = root.rstrip("/")
        #: the output's URI as the job names it, without a trailing slash
        self.location = location.rstrip("/")
        self._s3 = "s3" in protocols(fs)
        self._azure = "az" in protocols(fs) or "abfs" in protocols(fs)

    def path(self, name: str) -> str:
        return f"{self.location}/{name}" if name else self.location

    def _key(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def _fresh(self, key: str) -> str:
        """``key``, with what the client cached of it and of its folder forgotten (adlfs answers
        ``info`` from a cached listing of the folder, which misses objects written since)."""
        self.fs.invalidate_cache(key)
        self.fs.invalidate_cache(self.fs._parent(key))
        return key

    def exists(self, name: str = "") -> bool:
        with _client_errors():
            return self.fs.exists(self._fresh(self._key(name)))

    def read(self, name: str) -> bytes:
        with _client_errors():
            return self.fs.cat_file(self._key(name))

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        with _client_errors():
            return self.fs.cat_file(self._key(name), start=offset, end=offset + length)

    def read_many(self, names: list[str]) -> dict[str, bytes]:
        """The objects ``names`` that exist, fetched concurrently (one request each)."""
        if not names:
            return {}
        keys = {self._key(n): n for n in names}
        with _client_errors():
            found = self.fs.cat(list(keys), on_error="omit")
        return {keys[k]: v for k, v in found.items() if k in keys}

    def etag(self, name: str) -> str | None:
        """The object's version as the store names it (None when it names none)."""
        with _client_errors():
            info = self.fs.info(self._fresh(self._key(name)))
        tag = info.get("ETag") or info.get("etag") or info.get("generation")
        return str(tag) if tag else None

    def put(self, name: str, payload: bytes | list[bytes], fsync: bool = False) -> None:
        """``payload`` (or its parts, one after another) as the object ``name``: one PUT."""
        if isinstance(payload, list):
            payload = b"".join(payload)
        with _client_errors():
            self.fs.pipe_file(self._key(name), payload)

    def put_file(self, name: str, local: str) -> None:
        """The local file ``local`` uploaded under ``name`` (fsspec's streamed, multipart upload:
        the object appears whole when it completes); ``local`` is removed."""
        try:
            with _client_errors():
                self.fs.put_file(local, self._key(name))
        finally:
            os.remove(local)

    def create(self, name: str, payload: bytes, fsync: bool = False) -> bool:
        try:
            with _client_errors():
                self.fs.pipe_file(self._key(name), payload, mode="create")
        except FileExistsError:
            return False
        return True

    def replace(self, name: str, payload: bytes, etag: str | None) -> bool:
        """``payload`` under ``name`` if the object there is still version ``etag``; False when it
        changed (another writer got there first)."""
        if (self._s3 or self._azure) and etag:
            if self._s3:
                condition = {"IfMatch": etag}
            else:  # azure-storage-blob's upload_blob, under adlfs: If-Match
                from azure.core import MatchConditions

                condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            try:
                with _client_errors():
                    self.fs.pipe_file(self._key(name), payload, **condition)
            except (FileExistsError, FileNotFoundError):
                return False
            except OSError as exc:
                if _precondition_failed(exc):
                    return False
                raise
            return True
        try:  # no conditional write known for this store: compare, then write (a narrow race)
            if self.etag(name) != etag:
                return False
        except FileNotFoundError:
            return False
        self.put(name, payload)
        return True

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError), _client_errors():
            self.fs.rm_file(self._key(name))

    def names(self, folder: str = "") -> list[str]:
        key = self._key(folder)
        try:
            with _client_errors():
                found = self.fs.ls(self._fresh(key), detail=False)
        except FileNotFoundError:
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found if p.rstrip("/") != key)

    def remove_folder_if_empty(self, folder: str) -> None:
        """Nothing to do: an object store's folders are only the names' prefixes."""

    def check_writable(self) -> None:
        """Prove an object can be written under the prefix (and removed), before any work:
        a missing bucket, missing credentials or access denied fail here, naming the URI."""
        _probe(self)


Store = LocalStore | ObjectStore


def _probe(store: Store) -> None:
    """Write a small file in ``store`` and remove it; OutputError naming the output if either fails."""
    probe = f".recprep-probe-{uuid.uuid4().hex[:12]}"
    try:
        store.put(probe, b"ok")
        store.remove(probe)
    except OSError as exc:
        raise _not_writable(store, exc) from None


def _not_writable(store: Store, exc: OSError) -> OutputError:
    return OutputError(f"spec.output.uri: cannot write to {store.location!r} ({storage_error(exc)})")


@contextlib.contextmanager
def _client_errors() -> Iterator[None]:
    """An object store client's own exceptions (botocore's, google's, azure's) as OSError."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        raise OSError(storage_error(exc)) from exc


def _precondition_failed(exc: OSError) -> bool:
    """Whether a conditional write was refused because the object changed (S3's 412
    PreconditionFailed through s3fs; Azure's ConditionNotMet, ResourceModifiedError)."""
    cause = exc.__cause__
    return (
        "pre-condition" in str(exc)
        or "PreconditionFailed" in str(exc)
        or type(cause).__name__ in ("ResourceModifiedError", "ResourceNotFoundError")
        or getattr(cause, "status_code", None) == 412
    )


def protocols(fs) -> tuple[str, ...]:
    """The names an fsspec file system answers to (``("file", "local")``, ``("s3", "s3a")``)."""
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def open_store(location: str) -> Store:
    """The store of a job output: a local path (or ``file://`` URI) or an fsspec URI;
    OutputError naming the URI when no file system serves its scheme."""
    path = local_path(location)
    if path is not None:
        return LocalStore(path)
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(location)
    except (ValueError, ImportError) as exc:
        raise OutputError(f"spec.output.uri: cannot open {location!r}: {exc}") from None
    if "file" in protocols(fs):
        return LocalStore(root)
    return ObjectStore(fs, root, location)
