"""A dataset that is not Criteo, as a new user brings it: a CSV with a header whose label is
``click``, an ``id`` column too wide for int64, decimal and hex string IDs and a YYMMDDHH hour.
``recprep run`` then ``recprep train`` with no renaming and no workaround: the roles the job
gives travel with the shards, columns in no role are left out, and the trainer reads them."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest
import yaml

from .conftest import recprep

pytestmark = pytest.mark.integration


def _csv(path, rows: int = 4000, seed: int = 0) -> None:
    rnd = random.Random(seed)
    lines = ["id,click,hour,C1,banner_pos,site_id,device_model,price"]
    for i in range(rows):
        site = rnd.choice(["1fbe01fe", "85f751fd", "d9750ee7", "e151e245"])
        banner = rnd.choice(["0", "1", "7"])
        click = int(banner == "1" and rnd.random() < 0.8 or rnd.random() < 0.1)
        lines.append(
            f"{10**19 + i * 7919},{click},141021{rnd.randint(0, 23):02d},{rnd.choice([1005, 1002, 1010])},"
            f"{banner},{site},{rnd.choice(['8a4875bd', '1f0bc64f', '711ee120'])},{rnd.random() * 10:.3f}"
        )
    path.write_text("\n".join(lines) + "\n")


def _job(data, out, **output) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "clicks"},
        "spec": {
            "source": {
                "uri": str(data),
                "format": "csv",
                "header": True,
                "label": "click",
                "dense": "price",
                "sparse": ["C1", "banner_pos", "site_id", "device_model"],
            },
            "transforms": [
                {"op": "fill_null", "columns": "dense", "value": 0},
                {"op": "to_int", "columns": ["C1", "banner_pos"]},
                {"op": "sigrid_hash", "columns": "sparse", "maxValue": 10000},
                {
                    "op": "time",
                    "columns": ["hour"],
                    "part": "hour",
                    "format": "%y%m%d%H",
                    "output": "hour_of_day",
                },
            ],
            "output": {"uri": str(out), "rowsPerShard": 1000, **output},
        },
    }


def test_a_csv_labelled_click_goes_from_run_to_train_as_it_is(tmp_path):
    pytest.importorskip("torch")
    data, out = tmp_path / "clicks.csv", tmp_path / "out"
    _csv(data)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(_job(data, out)))

    checked = recprep("validate", str(job))
    assert checked.returncode == 0, checked.stderr
    assert "label: click" in checked.stdout and "left out" in checked.stdout and "id, hour" in checked.stdout

    ran = recprep("run", str(job), "--workers", "1")
    assert ran.returncode == 0, ran.stderr
    table = pq.read_table(sorted(out.glob("part-*.parquet"))[0])
    # the source's names; id and the raw hour (in no role) are left out
    assert table.column_names == [
        "click",
        "C1",
        "banner_pos",
        "site_id",
        "device_model",
        "price",
        "hour_of_day",
    ]
    roles = json.loads(table.schema.metadata[b"recprep.features"])
    assert roles == {
        "label": "click",
        "dense": ["price"],
        "sparse": ["C1", "banner_pos", "site_id", "device_model", "hour_of_day"],
    }

    trained = recprep("train", str(out), "--json", "--batch-size", "128", "--epochs", "2", "--seed", "1")
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["samples"] == 8000
    assert report["loss_last"] < report["loss_first"]  # banner_pos predicts the click


def test_kept_columns_travel_beside_the_features_and_the_trainer_can_choose_roles(tmp_path):
    pytest.importorskip("torch")
    data, out = tmp_path / "clicks.csv", tmp_path / "out"
    _csv(data, rows=1500)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(_job(data, out, keep=["id"])))
    ran = recprep("run", str(job), "--workers", "1")
    assert ran.returncode == 0, ran.stderr
    table = pq.read_table(sorted(out.glob("part-*.parquet"))[0])
    assert table.column_names[0] == "id" and table["id"][0].as_py() == str(10**19)

    # the trainer ignores id; --sparse narrows the features, --label must name a number
    narrowed = recprep("train", str(out), "--json", "--sparse", "banner_pos,site_id", "--steps", "3")
    assert narrowed.returncode == 0, narrowed.stderr
    wrong = recprep("train", str(out), "--label", "id", "--steps", "1")
    assert wrong.returncode == 1
    assert "label column 'id' has type string" in wrong.stderr and "Traceback" not in wrong.stderr


def test_keep_names_a_column_that_does_not_exist(tmp_path):
    data = tmp_path / "clicks.csv"
    _csv(data, rows=10)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(_job(data, tmp_path / "out", keep=["user_id"])))
    res = recprep("validate", str(job))
    assert res.returncode == 2
    assert "spec.output.keep: no column matches 'user_id'; columns are: id, hour" in res.stderr


def test_validate_warns_about_sparse_features_left_as_strings(tmp_path):
    data = tmp_path / "clicks.csv"
    _csv(data, rows=10)
    doc = _job(data, tmp_path / "out")
    doc["spec"]["transforms"] = [{"op": "to_int", "columns": ["C1"]}]  # the rest stay strings
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(doc))
    res = recprep("validate", str(job))
    assert res.returncode == 0, res.stderr
    assert "sparse features still strings" in res.stdout
    assert res.stdout.rstrip().endswith("banner_pos, site_id, device_model")
