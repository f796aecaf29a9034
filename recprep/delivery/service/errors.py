"""Errors of the shard service, as users see them: one line naming the group, rank, shard or file."""

from __future__ import annotations

from ...errors import RecprepError


class ShardServiceError(RecprepError):
    """A request the shard service refuses or cannot serve (bad group parameters, an output
    directory that is not a recprep job output, a shard file gone, a superseded consumer)."""


class ShardAuthError(ShardServiceError):
    """The bearer token is missing or wrong."""


class ShardServiceUnavailable(ShardServiceError):
    """The service cannot be reached (not listening yet, restarting, its pod moving): the client
    retries for its ``retry`` seconds before raising this."""
