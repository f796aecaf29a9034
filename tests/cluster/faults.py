"""
Injected API faults: requests matching a rule fail with an HTTP error, as an overloaded or
broken API server answers them, for a number of requests or for a while.

A ``Fault`` is registered with ``ClusterEmulator.inject_fault`` (or ``Cluster.inject_fault``
from a test's thread) and applies to every request that reaches the emulator's HTTP server, from
any process: the operator pod's kopf and Kubernetes client included. It matches on the HTTP
method, a regular expression searched in the path with its query (``path?query``) and,
optionally, the authenticated user's name (``user``, a regular expression matched in full, e.g.
``system:serviceaccount:default:op``), so that the process kubelet and the test's own requests
(the cluster admin) are not disturbed.

The error is a Kubernetes ``Status`` body, as kube-apiserver words it for the status code:
429 ``TooManyRequests`` (with a ``Retry-After`` header and ``details.retryAfterSeconds``, as API
Priority and Fairness answers), 500 ``InternalError``, 503 ``ServiceUnavailable``, 504
``Timeout``. By default the request is refused before it is served; with ``served=True`` it is
carried out and only the answer is replaced by the error (a write that happened although the
client was told it failed: a client must not create twice what it retries).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

_REASONS = {
    400: ("BadRequest", "the server rejected our request for an unknown reason (injected fault)"),
    409: ("Conflict", "the object has been modified (injected fault)"),
    429: ("TooManyRequests", "Too many requests, please try again later. (injected fault)"),
    500: ("InternalError", "Internal error occurred: injected fault"),
    502: ("InternalError", "Bad Gateway: injected fault"),
    503: ("ServiceUnavailable", "The server is currently unable to handle the request (injected fault)"),
    504: ("Timeout", "Timeout: request did not complete within the allotted timeout (injected fault)"),
}


@dataclass(eq=False)
class Fault:
    """One fault rule (see the module docstring); ``hits`` lists the requests it failed."""

    status: int
    method: str = "*"
    path: str = ""
    user: str | None = None
    #: Fail at most this many matching requests (None: no limit).
    count: int | None = None
    #: Fail matching requests until this ``time.monotonic()`` (None: no deadline).
    until: float | None = None
    #: Fail every n-th matching request only (1: all of them).
    every: int = 1
    #: Seconds for ``Retry-After`` (429 only; default 1).
    retry_after: int | None = None
    #: Serve the request, then answer the error.
    served: bool = False
    #: Watch requests too (False: a watch request is never failed by this rule).
    watches: bool = True
    #: Matching requests seen (failed or not).
    seen: int = 0
    #: ``"METHOD path?query user"`` of every request this rule failed.
    hits: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.status < 400:
            raise ValueError(f"a fault needs an error status (>= 400), got {self.status}")
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        self._path = re.compile(self.path)
        self._user = re.compile(self.user) if self.user is not None else None

    @property
    def expired(self) -> bool:
        """No request will fail any more (count used up or deadline passed)."""
        return (self.count is not None and len(self.hits) >= self.count) or (
            self.until is not None and time.monotonic() >= self.until
        )

    def matches(self, method: str, target: str, user: str, watch: bool) -> bool:
        return (
            self.method in ("*", method.upper())
            and bool(self._path.search(target))
            and (self._user is None or bool(self._user.fullmatch(user)))
            and (self.watches or not watch)
        )

    def take(self, method: str, target: str, user: str, watch: bool) -> bool:
        """Whether this request fails (and count it)."""
        if self.expired or not self.matches(method, target, user, watch):
            return False
        with self._lock:
            self.seen += 1
            if (self.seen - 1) % self.every:
                return False
            self.hits.append(f"{method.upper()} {target} {user}")
        return True

    def error(self) -> tuple[str, str, dict, dict[str, str]]:
        """(reason, message, details, headers) of the answer."""
        reason, message = _REASONS.get(
            self.status, ("InternalError" if self.status >= 500 else "BadRequest", "")
        )
        details: dict = {}
        headers: dict[str, str] = {}
        if self.status == 429:
            seconds = 1 if self.retry_after is None else int(self.retry_after)
            details["retryAfterSeconds"] = seconds
            headers["Retry-After"] = str(seconds)
        return reason, message or f"injected fault {self.status}", details, headers


def make_fault(
    status: int,
    *,
    method: str = "*",
    path: str = "",
    user: str | None = None,
    count: int | None = None,
    seconds: float | None = None,
    every: int = 1,
    retry_after: int | None = None,
    served: bool = False,
    watches: bool = True,
) -> Fault:
    """A ``Fault`` lasting ``count`` requests and/or ``seconds`` from now (neither: until cleared)."""
    return Fault(
        status=status,
        method=method.upper(),
        path=path,
        user=user,
        count=count,
        until=None if seconds is None else time.monotonic() + seconds,
        every=every,
        retry_after=retry_after,
        served=served,
        watches=watches,
    )
