"""A MovieLens-style job end to end on Dask: interactions joined with a users table (CSV) and an
items table (Parquet) into Parquet shards equal, row for row, to a pandas left merge of the same
tables, and byte-identical with one and two workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recprep.errors import SourceError
from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job

from ..conftest import recprep

pytestmark = pytest.mark.integration

ROWS, USERS, ITEMS = 3000, 200, 300
OCCUPATIONS = ["technician", "writer", "other", "executive", "student", "artist"]
GENRES = ["Comedy", "Drama", "Action|Thriller", "Animation|Children's", "Romance"]


@pytest.fixture(scope="module")
def movielens(tmp_path_factory) -> Path:
    """inter.csv (user_id,item_id,rating,timestamp), users.csv, items.parquet; about one
    interaction in ten names a user or an item missing from the side tables."""
    root = tmp_path_factory.mktemp("ml")
    rng = np.random.default_rng(7)
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, USERS + 1),
            "age": rng.integers(7, 74, USERS),
            "gender": rng.choice(["M", "F"], USERS),
            "occupation": rng.choice(OCCUPATIONS, USERS),
            "zip": [f"{z:05d}" for z in rng.integers(0, 99999, USERS)],
        }
    )
    users.to_csv(root / "users.csv", index=False)
    years = rng.integers(1920, 1999, ITEMS).astype(float)
    years[rng.random(ITEMS) < 0.05] = np.nan  # some unknown years: nulls in the side table itself
    items = pa.table(
        {
            "item_id": pa.array(np.arange(1, ITEMS + 1), pa.int64()),
            "title": [f"Movie {i} ({i % 97})" for i in range(1, ITEMS + 1)],
            "genres": rng.choice(GENRES, ITEMS).tolist(),
            "year": pa.array(years, pa.int64(), from_pandas=True),
        }
    )
    pq.write_table(items, root / "items.parquet", row_group_size=128)
    inter = pd.DataFrame(
        {
            "user_id": rng.integers(1, USERS + 21, ROWS),  # users 201..220 do not exist
            "item_id": rng.integers(1, ITEMS + 31, ROWS),  # nor do items 301..330
            "rating": rng.integers(1, 6, ROWS),
            "timestamp": rng.integers(874724710, 893286638, ROWS),
        }
    )
    inter.to_csv(root / "inter.csv", index=False)
    return root


def ml_job(root: Path, output: Path, **users_join) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "movielens"},
        "spec": {
            "source": {
                "uri": str(root / "inter.csv"),
                "header": True,
                "label": "rating",
                "dense": ["timestamp", "age", "year"],
                "sparse": ["user_id", "item_id", "gender", "occupation", "zip", "title", "genres"],
                "joins": [
                    {"uri": str(root / "users.csv"), "header": True, "key": "user_id", **users_join},
                    {"uri": str(root / "items.parquet"), "key": "item_id"},
                ],
            },
            "transforms": [],
            "output": {"uri": str(output), "rowsPerShard": 400},
        },
    }


def shards(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("part-*.parquet"))}


def test_movielens_joins_equal_a_pandas_left_merge_and_do_not_depend_on_workers(
    movielens, tmp_path, dask_client
):
    two = run_job(load_job_dict(ml_job(movielens, tmp_path / "w2")), client=dask_client)
    assert two.workers == 2 and two.rows_written == ROWS and two.rows_conserved
    files = shards(tmp_path / "w2")
    assert len(files) >= 5
    table = pa.concat_tables(pq.read_table(tmp_path / "w2" / name) for name in files)

    inter = pd.read_csv(movielens / "inter.csv")
    users = pd.read_csv(movielens / "users.csv", dtype={"zip": str})
    items = pq.read_table(movielens / "items.parquet").to_pandas()
    expected = inter.merge(users, how="left", on="user_id").merge(items, how="left", on="item_id")
    assert len(expected) == table.num_rows == ROWS
    missing_users = ~inter["user_id"].isin(users["user_id"])
    missing_items = ~inter["item_id"].isin(items["item_id"])
    assert 100 < missing_users.sum() < ROWS // 2 and 100 < missing_items.sum() < ROWS // 2

    def column(name):
        return table[name].to_pylist()

    def wanted(name, convert):
        return [None if pd.isna(v) else convert(v) for v in expected[name]]

    # text columns read as the text reader reads them: ids and names as strings, dense as float64
    assert column("user_id") == wanted("user_id", str)
    assert column("item_id") == wanted("item_id", str)
    assert column("rating") == wanted("rating", int)
    assert column("timestamp") == wanted("timestamp", float)
    assert column("age") == wanted("age", float)
    for name in ("gender", "occupation", "zip"):
        assert column(name) == wanted(name, str), name
    # from the Parquet items table: its stored types, joined on the source's text item_id
    for name in ("title", "genres"):
        assert column(name) == wanted(name, str), name
    assert column("year") == wanted("year", int)
    assert all(v is None for v, m in zip(column("age"), missing_users) if m)
    assert all(v is None for v, m in zip(column("title"), missing_items) if m)

    one = run_job(load_job_dict(ml_job(movielens, tmp_path / "w1")), workers=1)
    assert one.workers == 1 and one.rows_written == ROWS
    assert shards(tmp_path / "w1") == files


def test_a_duplicate_side_key_fails_the_job_before_any_shard(movielens, tmp_path, dask_client):
    bad = tmp_path / "users.csv"
    bad.write_text((movielens / "users.csv").read_text() + "17,30,F,writer,12345\n")
    doc = ml_job(movielens, tmp_path / "out", uri=str(bad))
    with pytest.raises(SourceError, match=r"users\.csv: key '17' occurs 2 times in column 'user_id'"):
        run_job(load_job_dict(doc), client=dask_client)
    assert not list((tmp_path / "out").glob("part-*"))


def test_a_movielens_join_trains_end_to_end(movielens, tmp_path, dask_client):
    """Joined, transformed (a label from the rating, hashed string IDs, a time feature,
    normalized dense values) and trained on by ``recprep train`` with the roles the job gave."""
    pytest.importorskip("torch")
    doc = ml_job(movielens, tmp_path / "out")
    doc["spec"]["source"]["label"] = "liked"
    doc["spec"]["source"]["dense"] = ["age", "year"]
    doc["spec"]["source"]["sparse"] = ["user_id", "item_id", "gender", "occupation", "genres"]
    doc["spec"]["transforms"] = [
        {"op": "is_in", "columns": ["rating"], "values": ["4", "5"], "output": "liked"},
        {"op": "time", "columns": ["timestamp"], "part": "weekday", "format": "unix", "output": "weekday"},
        {"op": "fill_null", "columns": "dense", "value": 0},
        {"op": "normalize", "columns": "dense"},
        {"op": "sigrid_hash", "columns": "sparse", "maxValue": 5000},
    ]
    summary = run_job(load_job_dict(doc), client=dask_client)
    assert summary.rows_written == ROWS
    table = pq.read_table(sorted((tmp_path / "out").glob("part-*.parquet"))[0])
    assert "zip" not in table.column_names and "rating" not in table.column_names  # in no role
    trained = recprep("train", str(tmp_path / "out"), "--json", "--epochs", "3", timeout=600)
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["samples"] == 3 * ROWS and report["loss_last"] < report["loss_first"]
