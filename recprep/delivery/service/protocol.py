"""What crosses the wire between a trainer's ShardClient and the ShardServer, and its checks.

- ``do_get(ticket)``: the ticket is a :class:`Member` as JSON. The stream holds every shard of
  that rank in the epoch's order that the group has not acknowledged, waiting for shards the
  driver has yet to commit, and ends when the rank's last shard was sent. Each record batch
  carries app metadata (:func:`batch_metadata`): the shard index, the shard's row count from the
  ledger and whether the batch is the shard's last. A shard with no rows is one empty batch.
- ``do_action("ack", Member + {"shard": n})``: the shard is consumed; the reply comes once the
  acknowledgement is on disk.
- ``do_action("status")``: the job's progress, its spec (``_job.json``) and fitted vocabulary
  sizes (``_fit.json``, by ``"<step>:<column>"``), and the groups' acknowledgements, as JSON.

Both sides check a member with :func:`check_member`, so a bad rank is reported before any call.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from .errors import ShardServiceError

ACK, STATUS = "ack", "status"
GROUP_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Largest world size and epoch a consumer may give (far beyond any training job; bounded so that
#: no value overflows the 64-bit arithmetic of the shard assignment).
MAX_WORLD_SIZE, MAX_EPOCH = 2**20, 2**31 - 1
AUTH_HEADER = "authorization"


def check_member(group, rank, world_size, epoch) -> None:
    """Raise ShardServiceError naming the parameter when a consumer's parameters are invalid."""
    if not isinstance(group, str) or not GROUP_PATTERN.match(group):
        raise ShardServiceError(
            f"group {group!r}: expected 1-64 letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit)"
        )
    for name, value in (("rank", rank), ("world_size", world_size), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShardServiceError(f"{name}: expected an integer, got {value!r}")
    if not 1 <= world_size <= MAX_WORLD_SIZE:
        raise ShardServiceError(f"world_size: expected 1 to {MAX_WORLD_SIZE}, got {world_size}")
    if not 0 <= rank < world_size:
        raise ShardServiceError(f"rank {rank} is not in [0, world_size={world_size})")
    if not 0 <= epoch <= MAX_EPOCH:
        raise ShardServiceError(f"epoch: expected 0 to {MAX_EPOCH}, got {epoch}")


@dataclass(frozen=True)
class Member:
    """One consumer: rank ``rank`` of ``world_size`` in ``group``, reading epoch ``epoch``.
    ``session`` identifies one ShardClient: a newer session of the same rank and epoch (a
    restarted trainer) supersedes an older one, whose stream is cut and whose acks are refused."""

    group: str
    rank: int
    world_size: int
    epoch: int
    session: str

    def __post_init__(self):
        check_member(self.group, self.rank, self.world_size, self.epoch)
        if not isinstance(self.session, str) or not 1 <= len(self.session) <= 64:
            raise ShardServiceError(f"session: expected a short string, got {self.session!r}")

    def encode(self, **extra) -> bytes:
        return json.dumps({**asdict(self), **extra}, sort_keys=True).encode()

    @classmethod
    def decode(cls, payload: bytes, what: str) -> tuple[Member, dict]:
        """The member in ``payload`` and the remaining fields; ShardServiceError if malformed."""
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ShardServiceError(f"{what}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ShardServiceError(f"{what}: expected a JSON object")
        fields = ("group", "rank", "world_size", "epoch", "session")
        missing = [f for f in fields if f not in data]
        if missing:
            raise ShardServiceError(f"{what}: missing {', '.join(missing)}")
        member = cls(**{f: data.pop(f) for f in fields})
        return member, data


def batch_metadata(shard: int, rows: int, last: bool) -> bytes:
    return json.dumps({"shard": shard, "rows": rows, "last": last}).encode()


def parse_batch_metadata(buffer) -> tuple[int, int, bool]:
    if buffer is None:
        raise ShardServiceError("the shard service sent a record batch without shard metadata")
    try:
        data = json.loads(buffer.to_pybytes())
        return int(data["shard"]), int(data["rows"]), bool(data["last"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardServiceError(f"the shard service sent malformed batch metadata ({exc})") from None
