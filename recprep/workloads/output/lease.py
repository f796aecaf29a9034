"""The lock of a job output in an object store: a lease.

An object store has no ``flock`` and no process whose end drops a lock. The run that writes the
output holds ``_lock``, an object that says who holds it and until when (``expires``, wall-clock
seconds). It is taken with a conditional create, renewed every third of its length by a thread
with a conditional replace on the version it last wrote, and removed when the run ends.

- A second run finds the lease and waits: if the holder renews it meanwhile, the second run is
  refused with a line naming the holder; if it expires unrenewed (its run was killed), the
  second run takes it over with a conditional replace, so of two runs racing for it one wins.
- A holder that fails to renew (it was paused past its lease and another run took over) stops
  committing: :meth:`ObjectLease.check` raises, and the driver ends. Shards that both runs wrote
  hold the same bytes, and a shard's commit is a conditional create (``ledger.ObjectLedger``),
  so even two runs that both believe they hold the lease commit each shard once.

The lease's length is ``RECPREP_OUTPUT_LEASE`` seconds (default 60): a run killed without
releasing it delays the next run on the output by at most that long.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from typing import Any

from ...errors import OutputError
from .layout import LOCK_FILE
from .store import ObjectStore, storage_error

log = logging.getLogger(__name__)

#: Environment variable: the lease's length in seconds.
LEASE_ENV = "RECPREP_OUTPUT_LEASE"
DEFAULT_LEASE = 60.0


def lease_seconds() -> float:
    """The lease's length (``RECPREP_OUTPUT_LEASE``; at least 1 s); OutputError naming the
    variable when it is not a number of seconds a thread can wait (``inf``, ``nan``, ``1e300``
    would kill the renewing thread with a traceback)."""
    try:
        seconds = float(os.environ.get(LEASE_ENV, DEFAULT_LEASE))
    except ValueError:
        seconds = math.nan
    if not seconds <= threading.TIMEOUT_MAX:
        raise OutputError(f"{LEASE_ENV}: not a number of seconds: {os.environ[LEASE_ENV]!r}")
    return max(1.0, seconds)


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "another run (it has not recorded itself yet)"
    identity = str(holder.get("identity"))[:12]
    return (
        f"job {holder.get('job')!r} (identity {identity}, pid {holder.get('pid')} on {holder.get('host')}, "
        f"since {holder.get('since')})"
    )


class ObjectLease:
    """The lease on an object store output (see the module)."""

    def __init__(self, store: ObjectStore, seconds: float | None = None):
        self.store = store
        self.seconds = seconds if seconds is not None else lease_seconds()
        self.path = store.path(LOCK_FILE)
        self._token = uuid.uuid4().hex
        self._holder: dict[str, Any] = {}
        self._etag: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _payload(self) -> bytes:
        doc = {**self._holder, "token": self._token, "expires": time.time() + self.seconds}
        return json.dumps(doc, sort_keys=True).encode() + b"\n"

    def acquire(self, holder: dict[str, Any]) -> None:
        """Take the lease (waiting for an unrenewed one to expire), or OutputError naming the
        holder that renews it."""
        self._holder = {
            **holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lease": self.seconds,
        }
        seen: str | None = None
        try:
            while True:
                if self.store.create(LOCK_FILE, self._payload()):
                    break
                try:
                    etag = self.store.etag(LOCK_FILE)
                    other = _parse(self.store.read(LOCK_FILE))
                except FileNotFoundError:  # released meanwhile: try again
                    continue
                if seen is not None and etag != seen:
                    raise OutputError(
                        f"{self.store.location}: in use by {describe_holder(other)}; "
                        "a second run on the same output is refused while it runs"
                    )
                left = float(other.get("expires", 0)) - time.time()
                if left <= 0:
                    if self.store.replace(LOCK_FILE, self._payload(), etag):
                        log.warning(
                            "%s: took over the lease of %s, which expired unrenewed %.0f s ago",
                            self.path,
                            describe_holder(other),
                            -left,
                        )
                        break
                    continue
                if seen is None:
                    log.warning(
                        "%s: held by %s; waiting up to %.0f s for it to renew or expire",
                        self.store.location,
                        describe_holder(other),
                        left,
                    )
                seen = etag
                self._stop.wait(min(left + 0.05, 1.0))
            try:
                self._etag = self.store.etag(LOCK_FILE)
            except OSError:  # the lease is ours: given back, the next run need not wait it out
                with contextlib.suppress(OSError):
                    self.store.remove(LOCK_FILE)
                raise
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot take the output's lease ({storage_error(exc)})") from None
        self._thread = threading.Thread(target=self._renew, name="recprep-output-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3) and self.renew():
            pass

    def renew(self) -> bool:
        """Extend the lease (the renewing thread calls it every third of its length); False when
        another run took it over meanwhile (:meth:`check` raises from then on)."""
        try:
            if not self.store.replace(LOCK_FILE, self._payload(), self._etag):
                try:
                    taker = f"by {describe_holder(_parse(self.store.read(LOCK_FILE)))}"
                except FileNotFoundError:  # not "has not recorded itself yet": it is done
                    taker = "by another run, which has released it since"
                self._lost = f"the output's lease was taken over {taker}"
                log.error("%s: %s", self.path, self._lost)
                return False
            self._etag = self.store.etag(LOCK_FILE)
        except OSError as exc:  # a transient error: the lease lasts 3 renewals
            log.warning("%s: could not renew the lease (%s)", self.path, storage_error(exc))
        return True

    def check(self) -> None:
        """OutputError when the lease was lost (this run must stop committing)."""
        if self._lost:
            raise OutputError(f"{self.path}: {self._lost}; this run stops (its committed shards stand)")

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        try:
            if _parse(self.store.read(LOCK_FILE)).get("token") == self._token:
                self.store.remove(LOCK_FILE)
        except OSError:  # gone already, or unreachable: it expires on its own
            pass


def _parse(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
