"""DLRM: dense features through a bottom MLP, one embedding bag (sum) per sparse feature, pairwise
dot products of all those vectors, and a top MLP on [bottom output, dot products] to one logit.

The tables are handed in as ``nn.Embedding(rows, dim, sparse=True)`` modules, so a table can be a
whole table indexed by row, or the device cache of a larger host table indexed by cache slot
(``recprep.train.cache``). A lookup reads each distinct row of the batch once and pools the bags
from those (RecD's unique rows + inverse indices): ``(unique, inverse, offsets)`` per feature. The
gradient then reaches each table row as one summed entry, computed in the same order whatever
indexes the rows, which makes a cached run reproduce an uncached one bit for bit.

A feature of a RecD dedup group comes with its bags once per unique row of the batch (U bags)
and ``expand`` (B,), each sample's unique row: the U bags are pooled once and the pooled
vectors expanded, ``pooled[expand]``, before the interaction. The output equals pooling every
sample's bag bit for bit (the same IDs in the same order). The gradients sum the samples of a
unique row first, so a table row that several unique rows of a batch hold gets its gradient
summed in another order than a plain run's: the trained tables agree with the plain run's to
float32 rounding, not bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def mlp(sizes: Sequence[int], last_activation: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def init_table(rows: int, dim: int, seed: int) -> torch.Tensor:
    """A table initialised as the DLRM reference does: uniform in +-sqrt(1 / rows), from its own
    seeded generator (so a cached and an uncached run start from the same rows)."""
    g = torch.Generator().manual_seed(seed)
    bound = math.sqrt(1.0 / rows)
    return torch.empty(rows, dim).uniform_(-bound, bound, generator=g)


class DLRM(nn.Module):
    def __init__(
        self,
        n_dense: int,
        embeddings: Sequence[nn.Embedding],
        dim: int,
        bottom: Sequence[int] = (64,),
        top: Sequence[int] = (64, 32),
    ):
        """``embeddings``: one ``nn.Embedding(rows, dim, sparse=True)`` per sparse feature. The
        MLPs draw from torch's global generator: seed it before building the model."""
        super().__init__()
        # a job with no dense features (Avazu, Taobao): no bottom MLP; the sum of the embedding
        # vectors stands where its output would be
        self.bottom = mlp([n_dense, *bottom, dim]) if n_dense else None
        n = len(embeddings) + (1 if n_dense else 0)
        self.top = mlp([dim + n * (n - 1) // 2, *top, 1], last_activation=False)
        self.embeddings = nn.ModuleList(embeddings)
        li, lj = torch.tril_indices(n, n, offset=-1)
        # the pairs below the diagonal as positions in the flattened (n, n) products: one
        # index_select (its backward an index_add) where ``[:, li, lj]`` takes an advanced index
        # whose backward is an accumulating index_put, a fifth of a step here
        self.register_buffer("pairs", li * n + lj, persistent=False)

    def forward(self, dense: torch.Tensor, lookups: Sequence[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """``lookups``: per feature ``(unique, inverse, offsets)`` or ``(unique, inverse, offsets,
        expand)``: the distinct indices into its table, each ID's position in ``unique``, the bag
        offsets (B,), or, with ``expand`` (a dedup group's feature), the offsets of its U unique
        bags and each sample's bag (B,) int64 (``expand`` None: per-sample bags). ``offsets``
        None: one ID in every bag (``firstx(k=1)`` of a sparse ID), which are then taken as they
        are: the same sums, without the bag's backward (a sort of the IDs, 6x an index_add here)."""
        bags = []
        for table, (unique, inverse, offsets, *rest) in zip(self.embeddings, lookups):
            rows = table(unique)
            if offsets is None:
                pooled = rows.index_select(0, inverse)
            else:
                pooled = F.embedding_bag(inverse, rows, offsets, mode="sum")
            expand = rest[0] if rest else None
            bags.append(pooled if expand is None else pooled.index_select(0, expand))
        if self.bottom is not None:
            x = self.bottom(dense)
            vectors = [x, *bags]
        else:
            x = torch.stack(bags, dim=1).sum(dim=1)
            vectors = bags
        t = torch.stack(vectors, dim=1)  # (B, n, dim)
        z = torch.bmm(t, t.transpose(1, 2)).flatten(1).index_select(1, self.pairs)  # (B, n(n-1)/2)
        return self.top(torch.cat([x, z], dim=1)).squeeze(1)

    def dense_parameters(self) -> list[nn.Parameter]:
        bottom = list(self.bottom.parameters()) if self.bottom is not None else []
        return [*bottom, *self.top.parameters()]

    def embedding_parameters(self) -> list[nn.Parameter]:
        return list(self.embeddings.parameters())
