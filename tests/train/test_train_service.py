"""recprep train through the Arrow Flight shard service: two ranks split the job's shards, and a
trainer stopped mid-stream acknowledges only the shards it finished, so its successor gets the
rest, the unfinished shard again whole."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("pyarrow.flight")

from recprep.delivery.shards import ServiceShards
from recprep.errors import RecprepError
from recprep.train.loop import TrainConfig, train

from ..shard_outputs import criteo_output

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Sparse invariant checks")]


@pytest.fixture()
def service(tmp_path_factory, criteo_tsv, dask_client, tmp_path):
    from recprep.delivery.service import ShardServer

    out = criteo_output(tmp_path_factory, criteo_tsv, dask_client)
    server = ShardServer(str(out), token="s3cret", state_dir=str(tmp_path / "state"), wait_timeout=30.0)
    try:
        yield (
            server,
            {
                e["shard"]: e["rows"]
                for e in map(json.loads, (out / "_ledger.jsonl").read_text().splitlines())
            },
        )
    finally:
        server.close()


def _train(server, group, rank, world, **kw):
    source = ServiceShards(server.location, group, rank, world, token="s3cret")
    return train(
        TrainConfig(source, batch_size=500, table_rows=2000, embedding_dim=4, device="cpu", **kw)
    ).report


def test_two_ranks_split_the_shards_between_them(service):
    server, rows = service
    a, b = _train(server, "split", 0, 2), _train(server, "split", 1, 2)
    assert a.acknowledged and b.acknowledged and not set(a.acknowledged) & set(b.acknowledged)
    assert sorted(a.acknowledged + b.acknowledged) == sorted(rows)
    assert a.samples == sum(rows[i] for i in a.acknowledged) and b.samples == sum(
        rows[i] for i in b.acknowledged
    )


def test_a_restarted_trainer_gets_what_its_predecessor_did_not_acknowledge(service):
    server, rows = service
    first = _train(server, "restart", 0, 1, steps=7)  # 3,500 rows: not every shard is finished
    assert first.samples == 3500 and 0 < len(first.acknowledged) < len(rows)
    second = _train(server, "restart", 0, 1)
    assert sorted(first.acknowledged + second.acknowledged) == sorted(rows)
    assert second.samples == sum(rows.values()) - sum(rows[i] for i in first.acknowledged)


def test_the_cli_reads_from_the_service_with_the_token_from_the_environment(service):
    import os
    import subprocess
    import sys

    from ..conftest import REPO

    server, rows = service
    env = {**os.environ, "RECPREP_SHARD_TOKEN": "s3cret"}
    args = [
        sys.executable,
        "-m",
        "recprep.cli",
        "train",
        "--service",
        server.location,
        "--group",
        "cli",
        "--batch-size",
        "1000",
        "--table-rows",
        "2000",
        "--threads",
        "1",
        "--json",
    ]
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["samples"] == sum(rows.values()) and sorted(report["acknowledged"]) == sorted(rows)


def test_a_wrong_token_is_a_clear_error(service):
    server, _ = service
    with pytest.raises(RecprepError, match="unauthenticated"):
        train(TrainConfig(ServiceShards(server.location, "bad", token="wrong"), device="cpu"))
