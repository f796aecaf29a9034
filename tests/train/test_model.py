"""The DLRM against a plain re-computation: bags from distinct rows equal EmbeddingBag on the raw
IDs, and the interaction is the pairwise dot products below the diagonal."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recprep.train.model import DLRM, init_table  # noqa: E402


def test_forward_matches_a_plain_recomputation():
    torch.manual_seed(0)
    dim, b = 4, 5
    tables = [init_table(20, dim, seed=i) for i in range(3)]
    model = DLRM(
        2,
        [torch.nn.Embedding(20, dim, sparse=True, _weight=t.clone()) for t in tables],
        dim,
        bottom=(8,),
        top=(6,),
    )
    rng = np.random.default_rng(0)
    dense = torch.tensor(rng.normal(size=(b, 2)), dtype=torch.float32)
    lookups, raw = [], []
    for _ in tables:
        lengths = rng.integers(0, 4, b)
        ids = rng.integers(0, 20, lengths.sum())
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        unique, inverse = np.unique(ids, return_inverse=True)
        lookups.append((torch.from_numpy(unique), torch.from_numpy(inverse), torch.from_numpy(offsets)))
        raw.append((torch.from_numpy(ids), torch.from_numpy(offsets)))
    out = model(dense, lookups)
    assert out.shape == (b,)

    x = model.bottom(dense)
    vecs = [x] + [torch.nn.functional.embedding_bag(i, t, o, mode="sum") for t, (i, o) in zip(tables, raw)]
    pairs = [(vecs[i] * vecs[j]).sum(1) for i in range(4) for j in range(i)]
    expected = model.top(torch.cat([x, torch.stack(pairs, 1)], 1)).squeeze(1)
    torch.testing.assert_close(out, expected)


def test_init_table_is_seeded_and_bounded():
    a, b = init_table(100, 8, seed=3), init_table(100, 8, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, init_table(100, 8, seed=4))
    assert float(a.abs().max()) <= 0.1
