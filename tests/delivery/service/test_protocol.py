"""Consumer parameters are checked on both sides, with the parameter named."""

from __future__ import annotations

import pytest

from recprep.delivery.service import ShardClient, ShardServiceError
from recprep.delivery.service.protocol import Member


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rank=2, world_size=2), r"rank 2 is not in \[0, world_size=2\)"),
        (dict(rank=-1, world_size=2), r"rank -1 is not in \[0, world_size=2\)"),
        (dict(world_size=0), "world_size: expected 1 to 1048576, got 0"),
        (dict(world_size=2**70), "world_size: expected 1 to 1048576, got 1180591620717411303424"),
        (dict(epoch=-1), "epoch: expected 0 to 2147483647, got -1"),
        (dict(epoch=2**63), "epoch: expected 0 to 2147483647"),
        (dict(rank="0"), "rank: expected an integer"),
        (dict(group="a/b"), "group 'a/b': expected 1-64 letters"),
        (dict(group=""), "group '': expected"),
    ],
)
def test_bad_group_parameters_are_refused_before_any_call(kwargs, message):
    args = dict(location="grpc://127.0.0.1:1", group="train", rank=0, world_size=1, epoch=0) | kwargs
    with pytest.raises(ShardServiceError, match=message):
        ShardClient(**args)


def test_a_location_must_be_grpc():
    with pytest.raises(ShardServiceError, match="location: expected grpc://host:port"):
        ShardClient("http://localhost:8815")


def test_a_malformed_ticket_names_what_is_missing():
    with pytest.raises(ShardServiceError, match="ticket: missing session"):
        Member.decode(b'{"group": "g", "rank": 0, "world_size": 1, "epoch": 0}', "ticket")
    with pytest.raises(ShardServiceError, match="ticket: not JSON"):
        Member.decode(b"\xff", "ticket")
