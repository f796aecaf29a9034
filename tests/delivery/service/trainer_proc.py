"""A trainer process for the restart tests: consumes its rank's shards from the shard service
the way a real trainer must for exactly-once: a shard's rows become part of its state (here: the
shard's per-row digests, saved atomically as ``shard-N.npy`` in ``--state``, its "checkpoint")
and only then is the shard acknowledged. On start it restores that state, so a shard delivered
again because the previous process died between saving and acknowledging is acknowledged without
being counted twice.

``--block-mid-shard N``: after consuming N record batches (not at a shard's end), print BLOCKED
and wait for stdin (the test SIGKILLs it there: a shard half consumed, never saved or acked).
``--block-before-ack N``: after saving the N-th shard of this run, before acknowledging it.
At the end, prints one JSON line: shards received, shards already held, rows counted.

    python -m tests.delivery.service.trainer_proc grpc://127.0.0.1:PORT --state DIR [--rank R ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from recprep.delivery.service import ShardClient

from .rows import row_digests


def block(where: str) -> None:
    print(f"BLOCKED {where}", flush=True)
    sys.stdin.readline()  # the test kills this process here
    raise SystemExit("unblocked: the test should have killed this trainer")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("location")
    p.add_argument("--state", required=True)
    p.add_argument("--group", default="train")
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--world-size", type=int, default=1)
    p.add_argument("--token", default=None)
    p.add_argument("--block-mid-shard", type=int, default=None)
    p.add_argument("--block-before-ack", type=int, default=None)
    args = p.parse_args(argv)
    os.makedirs(args.state, exist_ok=True)
    held = {int(n[len("shard-") : -len(".npy")]) for n in os.listdir(args.state) if n.endswith(".npy")}
    client = ShardClient(
        args.location, group=args.group, rank=args.rank, world_size=args.world_size, token=args.token
    )
    received, already, rows, batches_seen, saved = [], [], 0, 0, 0
    for shard in client:
        received.append(shard.index)
        if shard.index in held:  # saved by a process that died before acknowledging
            already.append(shard.index)
            client.ack(shard.index)
            continue
        parts = []
        batches = shard.batches()
        for k, batch in enumerate(batches):
            parts.append(row_digests(batch))
            batches_seen += 1
            if batches_seen == args.block_mid_shard and k < len(batches) - 1:
                block(f"mid-shard {shard.index}")
        digests = np.concatenate(parts) if parts else np.array([], np.uint64)
        tmp = os.path.join(args.state, f".shard-{shard.index}.tmp.npy")
        np.save(tmp, digests)
        os.replace(tmp, os.path.join(args.state, f"shard-{shard.index}.npy"))
        held.add(shard.index)
        rows += len(digests)
        saved += 1
        if saved == args.block_before_ack:
            block(f"before-ack {shard.index}")
        client.ack(shard.index)
    print(json.dumps({"received": received, "already": already, "rows": rows}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
