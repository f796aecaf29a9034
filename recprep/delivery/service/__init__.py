"""The shard service: a job's committed shards streamed to trainers over Arrow Flight.

- :mod:`.assignment`: which rank gets which shard in which epoch, in what order (pure functions)
- :mod:`.acks`: the acknowledgement log of each consumer group (append-only, fsynced)
- :mod:`.committed`: the job output followed while the driver commits shards
- :mod:`.protocol`: tickets, actions and batch metadata on the wire
- :mod:`.auth`: the bearer token
- :mod:`.server`: :class:`ShardServer` (``recprep serve``) and the delivery semantics
- :mod:`.client`: :class:`ShardClient`, what a trainer iterates
- :mod:`.running`: ``recprep serve`` and ``recprep run --serve``

Imports are lazy, so that ``recprep --help`` does not load pyarrow.flight.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ShardClient": ".client",
    "ShardDelivery": ".client",
    "ShardServer": ".server",
    "ShardServiceError": ".errors",
    "ShardServiceUnavailable": ".errors",
    "ShardAuthError": ".errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
