"""The bearer token: every call carries ``authorization: Bearer <token>``; the server's
middleware refuses a call without it or with another token (Flight ``Unauthenticated``)."""

from __future__ import annotations

import hmac

import pyarrow.flight as flight

from .protocol import AUTH_HEADER


def bearer_headers(token: str | None) -> list[tuple[bytes, bytes]]:
    return [(AUTH_HEADER.encode(), f"Bearer {token}".encode())] if token else []


class BearerTokenFactory(flight.ServerMiddlewareFactory):
    """Server middleware: ``token`` required on every call (compared in constant time)."""

    def __init__(self, token: str):
        super().__init__()
        if not token:
            raise ValueError("an empty bearer token")
        self._expected = f"Bearer {token}".encode()

    def start_call(self, info, headers):
        values = headers.get(AUTH_HEADER) or headers.get(AUTH_HEADER.title()) or []
        if not values:
            raise flight.FlightUnauthenticatedError(
                "this shard service needs a bearer token (authorization: Bearer ...); none was sent"
            )
        given = values[0] if isinstance(values[0], bytes) else str(values[0]).encode()
        if not hmac.compare_digest(given, self._expected):
            raise flight.FlightUnauthenticatedError("wrong bearer token for this shard service")
        return None
