"""TorchRec as the model side: recprep's batches, turned into torchrec's KeyedJaggedTensor by
``to_torchrec()``, train a real ``EmbeddingBagCollection`` inside ``torchrec.models.dlrm.DLRM``
(one table per sparse feature, sized from the job as ``recprep train`` sizes its tables), and the
KJT the model receives holds exactly the keys, lengths and values of the shards' rows. Without
torchrec (the ``torchrec`` extra, see docs/torchrec.md) the training test is skipped and
``to_torchrec()`` fails with one line saying how to install it."""

from __future__ import annotations

import importlib.abc
import sys

import pytest

torch = pytest.importorskip("torch")

from recprep.delivery.batching import iter_batches  # noqa: E402
from recprep.delivery.shards import LocalShards  # noqa: E402
from recprep.errors import RecprepError  # noqa: E402
from recprep.train.loader import (  # noqa: E402
    KeyedJagged,
    ShardLoader,
    TorchrecMissingError,
    to_torch,
    torchrec_available,
)
from recprep.train.tables import resolve_table_rows  # noqa: E402

from ..delivery.test_batching import reference_batch, reference_rows  # noqa: E402
from ..shard_outputs import layout_table, write_output  # noqa: E402

INSTALL = 'pip install "recprep[torchrec]" && pip install --no-deps torchrec==1.8.0'

ROWS, ROWS_PER_SHARD, BATCH, EPOCHS = 2400, 700, 100, 2  # batches span shard boundaries
SPARSE = [f"C{i}" for i in range(1, 27)] + ["I1_bucket"]
DENSE = [f"I{i}" for i in range(1, 14)]
TRANSFORMS = [
    {"op": "fill_null", "columns": "dense", "value": 0},
    {"op": "log", "columns": "dense", "offset": 3},
    {"op": "bucketize", "columns": ["I1"], "borders": [0.5, 1.0, 1.5], "output": "I1_bucket"},
    {"op": "hex_to_int", "columns": "sparse"},
    {"op": "sigrid_hash", "columns": "sparse", "salt": 0, "maxValue": 1000},
    {"op": "to_list", "columns": "sparse"},  # a null ID becomes an empty bag
]


@pytest.fixture(scope="module")
def synthetic_output(tmp_path_factory, request):
    """Synthetic Criteo through a real recprep run (hashed into 1,000 IDs: small tables)."""
    pytest.importorskip("torchrec")  # no job (nor Dask cluster) where the test is skipped
    from recprep.spec import load_job_dict
    from recprep.workloads.runner import run_job

    from ..conftest import job_doc

    out = tmp_path_factory.mktemp("torchrec") / "out"
    doc = job_doc(f"synthetic://criteo?rows={ROWS}&seed=11", str(out), transforms=TRANSFORMS)
    doc["spec"]["output"]["rowsPerShard"] = ROWS_PER_SHARD
    run_job(load_job_dict(doc), client=request.getfixturevalue("dask_client"))
    return out


def _kjt_matches_rows(kjt, rows: list[dict]) -> None:
    """The torchrec KJT holds the rows' IDs in the layout the loader promises (key-major)."""
    values, lengths, offsets, _, _ = reference_batch(rows, "label", DENSE, SPARSE)
    assert kjt.keys() == SPARSE and kjt.stride() == len(rows)
    assert kjt.values().dtype == torch.int64 and kjt.values().tolist() == values
    assert kjt.lengths().tolist() == lengths and kjt.offsets().tolist() == offsets
    per_key = [sum(lengths[i * len(rows) : (i + 1) * len(rows)]) for i in range(len(SPARSE))]
    assert kjt.length_per_key() == per_key
    c1 = kjt["C1"]  # a JaggedTensor: one key's bags
    assert c1.lengths().tolist() == lengths[: len(rows)] and c1.values().tolist() == values[: per_key[0]]


@pytest.mark.integration
def test_recprep_batches_train_a_torchrec_dlrm(synthetic_output):
    torchrec = pytest.importorskip("torchrec")
    from torchrec.models.dlrm import DLRM
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    source = LocalShards(str(synthetic_output))
    rows, _ = reference_rows(synthetic_output)
    assert len(rows) == ROWS
    sized = resolve_table_rows(source, SPARSE)  # what `recprep train` sizes its tables with
    assert sized.rows == 1000 and sized.note.startswith("from the job")

    torch.manual_seed(0)
    dim = 8
    ebc = torchrec.EmbeddingBagCollection(
        tables=[
            torchrec.EmbeddingBagConfig(
                name=f"t_{key}", embedding_dim=dim, num_embeddings=sized.rows, feature_names=[key]
            )
            for key in SPARSE
        ],
        device=torch.device("cpu"),
    )
    model = DLRM(
        embedding_bag_collection=ebc,
        dense_in_features=len(DENSE),
        dense_arch_layer_sizes=[16, dim],
        over_arch_layer_sizes=[16, 1],
    )
    seen = []
    ebc.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)

    losses, start = [], 0
    for batch in ShardLoader(source, BATCH, epochs=EPOCHS, device="cpu", prefetch=2):
        assert isinstance(batch.sparse, KeyedJagged)
        kjt = batch.sparse.to_torchrec()
        assert isinstance(kjt, KeyedJaggedTensor)
        epoch_rows = rows[start % ROWS : start % ROWS + len(batch)]  # ledger order every epoch
        _kjt_matches_rows(kjt, epoch_rows)
        assert int(kjt.values().max()) < sized.rows  # the job bounds the IDs: no folding needed
        assert batch.dense.shape == (len(batch), len(DENSE))
        logits = model(batch.dense, kjt).squeeze(1)
        assert seen[-1] is kjt  # the EmbeddingBagCollection got this very KJT
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        batch.acknowledge()
        start += len(batch)

    assert start == ROWS * EPOCHS and len(losses) == EPOCHS * (ROWS // BATCH)
    # seeded (torch, the synthetic data): about 0.68 over the first steps, 0.32 over the last
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < first - 0.15, f"loss did not fall: first steps {first:.4f}, last steps {last:.4f}"


def test_the_loader_hands_out_torchrec_batches_when_asked(tmp_path):
    pytest.importorskip("torchrec")
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    t = layout_table(40, seed=5)
    (ab,) = iter_batches(LocalShards(str(write_output(tmp_path / "o", [t]))).open(), 40)
    native = to_torch(ab).sparse
    for kjt in (to_torch(ab, kjt="torchrec").sparse, to_torch(ab, kjt="auto").sparse):
        assert isinstance(kjt, KeyedJaggedTensor) and kjt.keys() == native.keys()
        assert torch.equal(kjt.values(), native.values()) and torch.equal(kjt.lengths(), native.lengths())
        assert torch.equal(kjt.offsets(), native.offsets()) and kjt.stride() == native.stride() == 40
        for key in native.keys():
            assert torch.equal(kjt[key].lengths(), native[key].lengths)
            assert torch.equal(kjt[key].values(), native[key].values)


class _BrokenFbgemm(importlib.abc.MetaPathFinder):
    """torchrec present but its native ops failing to load, as with a CUDA fbgemm on a CPU torch."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchrec" or name.startswith("torchrec."):
            raise OSError("Could not load this library: /x/fbgemm_gpu/fbgemm_gpu_config.so")
        return None


def _hide_torchrec(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "torchrec" or m.startswith("torchrec.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test


def test_to_torchrec_without_torchrec_says_how_to_install_it(monkeypatch, tmp_path):
    t = layout_table(10, seed=1)
    (ab,) = iter_batches(LocalShards(str(write_output(tmp_path / "o", [t]))).open(), 10)
    kjt = to_torch(ab).sparse

    _hide_torchrec(monkeypatch)
    for name in ("torchrec", "torchrec.sparse", "torchrec.sparse.jagged_tensor"):
        monkeypatch.setitem(sys.modules, name, None)  # import of torchrec... halted: not installed
    with pytest.raises(TorchrecMissingError) as missing:
        kjt.to_torchrec()
    message = str(missing.value)
    assert message == f"to_torchrec() needs TorchRec, which is not installed: {INSTALL}"
    assert "\n" not in message
    assert isinstance(missing.value, ImportError) and isinstance(missing.value, RecprepError)
    with pytest.raises(ImportError, match="recprep\\[torchrec\\]"):
        to_torch(ab, kjt="torchrec")
    assert not torchrec_available()
    assert isinstance(to_torch(ab, kjt="auto").sparse, KeyedJagged)  # auto falls back to native

    _hide_torchrec(monkeypatch)
    monkeypatch.setattr(sys, "meta_path", [_BrokenFbgemm(), *sys.meta_path])
    with pytest.raises(TorchrecMissingError) as broken:
        kjt.to_torchrec()
    assert str(broken.value) == (
        "to_torchrec() needs TorchRec, which does not import (OSError: Could not load this library: "
        f"/x/fbgemm_gpu/fbgemm_gpu_config.so): {INSTALL}"
    )
    assert not torchrec_available()
