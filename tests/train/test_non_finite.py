"""Training refuses what would silently ruin a model: a loss that is no longer finite stops the
run before the step (naming the step and the likely cause), and tables too large for the
machine are refused whether their size comes from the job or from --table-rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from recprep.delivery.shards import LocalShards  # noqa: E402
from recprep.train.config import TrainConfigError  # noqa: E402
from recprep.train.loop import NonFiniteLossError, TrainConfig, train  # noqa: E402
from recprep.train.tables import TableRows, check_fits  # noqa: E402

from ..shard_outputs import write_output  # noqa: E402


def table(rows: int, seed: int, poison: int | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=rows)
    if poison is not None:
        dense[poison] = np.inf  # a value recprep's sources quarantine, in a hand-made shard
    return pa.table(
        {
            "label": pa.array(rng.integers(0, 2, rows), pa.int64()),
            "d": pa.array(dense),
            "ids": pa.array([[int(x)] for x in rng.integers(0, 100, rows)], pa.list_(pa.int64())),
        }
    )


def config(source, **kw) -> TrainConfig:
    return TrainConfig(source, batch_size=50, epochs=1, table_rows=100, embedding_dim=4, device="cpu", **kw)


def test_a_non_finite_loss_stops_training_before_the_step(tmp_path):
    out = write_output(tmp_path / "out", [table(100, 1), table(100, 2, poison=70)])
    with pytest.raises(
        NonFiniteLossError,
        match=r"training stopped at step 4: the loss is (nan|inf) "
        r"\(the batch holds 1 non-finite dense values\)",
    ):
        train(config(LocalShards(str(out))))


def test_finite_inputs_train_normally(tmp_path):
    out = write_output(tmp_path / "out", [table(100, 1), table(100, 2)])
    report = train(config(LocalShards(str(out)))).report
    assert report.steps == 4 and np.isfinite(report.loss_last)


def test_tables_too_large_for_memory_are_refused_naming_the_option():
    with pytest.raises(TrainConfigError, match=r"--table-rows: --table-rows asks for 1,000,000,000,000 rows"):
        check_fits(TableRows(10**12, "--table-rows"), 27, 16, "adagrad", 24 * 2**30)
    with pytest.raises(TrainConfigError, match=r"--table-rows: the job's IDs span"):
        check_fits(TableRows(10**12, "from the job"), 27, 16, "adagrad", 24 * 2**30)
    check_fits(TableRows(10**5, "--table-rows"), 27, 16, "adagrad", 24 * 2**30)
