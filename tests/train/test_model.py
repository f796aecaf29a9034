"""The DLRM against a plain re-computation: bags from distinct rows equal EmbeddingBag on the raw
IDs, and the interaction is the pairwise dot products below the diagonal; bags of one ID each,
taken without EmbeddingBag, give the same outputs and gradients."""

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


def test_one_id_per_bag_without_offsets_gives_the_bags_outputs_and_gradients():
    """``offsets`` None (every bag one ID, as ``firstx(k=1)`` makes them): the same logits and
    the same gradients, table rows and MLPs, as the same IDs pooled as bags of one."""
    dim, b, rows = 4, 50, 30
    rng = np.random.default_rng(1)
    dense = torch.tensor(rng.normal(size=(b, 3)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 2, b), dtype=torch.float32)
    lookups = []
    for _ in range(3):
        unique, inverse = np.unique(rng.integers(0, rows, b), return_inverse=True)
        lookups.append((torch.from_numpy(unique), torch.from_numpy(inverse)))

    def run(with_offsets: bool):
        torch.manual_seed(0)
        tables = [
            torch.nn.Embedding(rows, dim, sparse=True, _weight=init_table(rows, dim, i)) for i in range(3)
        ]
        model = DLRM(3, tables, dim, bottom=(8,), top=(6,))
        offsets = torch.arange(b) if with_offsets else None
        out = model(dense, [(u, i, offsets) for u, i in lookups])
        torch.nn.functional.binary_cross_entropy_with_logits(out, labels).backward()
        grads = [p.grad.to_dense() if p.grad.is_sparse else p.grad for p in model.parameters()]
        return out.detach(), grads

    (bags, bag_grads), (ids, id_grads) = run(True), run(False)
    assert torch.equal(bags, ids)
    for g, h in zip(bag_grads, id_grads):
        torch.testing.assert_close(g, h, rtol=1e-6, atol=1e-7)


def test_one_each_tells_bags_of_one_from_bags_that_sum_to_as_many():
    from recprep.train.loop import one_each

    ids = np.arange(3)
    assert one_each(ids, np.array([0, 1, 2]))
    assert not one_each(ids, np.array([0, 0, 2]))  # an empty bag and a bag of two: 3 IDs, 3 bags
    assert not one_each(ids, np.array([0, 2]))
    assert one_each(ids[:1], np.array([0])) and one_each(ids[:0], np.array([], np.int64))
