"""Which shards each rank of a consumer group gets in an epoch, and in what order: pure functions.

Epoch ``e``'s order is a permutation of all the job's planned shards ``0..total-1``: the shards
sorted by ``mix64(index, salt=epoch_salt(seed, e))``, recprep's fixed splitmix64 (see
``recprep/workloads/ops/hashing.py``), so the order is the same on every machine and in every
version, which the persisted acknowledgements rely on. Rank ``r`` of a group of ``world_size``
``W`` gets the positions ``r, r + W, r + 2W, ...`` of that order: the ranks' shards are disjoint,
together they are the whole job, and their counts differ by at most one.
"""

from __future__ import annotations

import numpy as np

from ...workloads.ops.hashing import mix64


def epoch_salt(seed: int, epoch: int) -> int:
    """One 64-bit salt per (seed, epoch)."""
    return int(mix64(np.array([epoch % 2**64], dtype=np.uint64), salt=seed % 2**64)[0])


def epoch_order(total: int, seed: int, epoch: int) -> np.ndarray:
    """Every shard index ``0..total-1`` in epoch ``epoch``'s order (int64)."""
    keys = mix64(np.arange(total, dtype=np.uint64), salt=epoch_salt(seed, epoch))
    return np.argsort(keys, kind="stable").astype(np.int64)


def rank_shards(total: int, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """The shards of ``rank`` in epoch ``epoch``, in delivery order."""
    return epoch_order(total, seed, epoch)[rank::world_size]


def owners(total: int, seed: int, epoch: int, world_size: int) -> np.ndarray:
    """``owners(...)[shard]`` is the rank that gets ``shard`` in epoch ``epoch``."""
    order = epoch_order(total, seed, epoch)
    out = np.empty(total, dtype=np.int64)
    out[order] = np.arange(total, dtype=np.int64) % world_size
    return out
