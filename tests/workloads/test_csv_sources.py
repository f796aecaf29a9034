"""CSV sources on the other real samples: Avazu (header line) and Taobao (no header, columns
named in the spec), through fitted and hashing ops on a Dask cluster."""

from __future__ import annotations

import csv
import gzip
import io

import pyarrow.parquet as pq
import pytest

from recprep.spec import load_job_dict
from recprep.workloads.runner import run_job

from ..conftest import SHARED_DATA

AVAZU = SHARED_DATA / "avazu_train_10k.csv.gz"
TAOBAO = SHARED_DATA / "taobao_userbehavior_84k.csv.gz"


def doc(source: dict, transforms: list, out) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "csv"},
        "spec": {
            "source": source,
            "transforms": transforms,
            "output": {"uri": str(out), "rowsPerShard": 4000},
        },
    }


@pytest.mark.integration
def test_avazu_with_header(tmp_path, dask_client):
    if not AVAZU.exists():
        pytest.skip(f"{AVAZU} not present")
    plain = tmp_path / "avazu.csv"
    plain.write_bytes(gzip.open(AVAZU).read())  # uncompressed: several byte-range shards
    job = load_job_dict(
        doc(
            {
                "uri": str(plain),
                "format": "csv",
                "header": True,
                "label": "click",
                "dense": ["hour"],
                "sparse": ["site_*", "app_*", "device_model", "C1*"],
            },
            [
                {"op": "categorify", "columns": ["site_id", "app_id"], "minCount": 2},
                {"op": "hex_to_int", "columns": ["device_model"]},
                {"op": "sigrid_hash", "columns": ["device_model"], "maxValue": 1000},
                {"op": "to_list", "columns": ["site_id", "app_id", "device_model"]},
            ],
            tmp_path / "out",
        )
    )
    summary = run_job(job, client=dask_client)
    assert summary.shards >= 2 and summary.rows_written == 9999 and summary.rows_quarantined == 0
    table = pq.read_table(tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(gzip.open(AVAZU).read().decode())))
    assert table["click"].to_pylist() == [int(r["click"]) for r in rows]
    # categorify: the most frequent site_id gets ID 1, singletons (below minCount) get 0
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["site_id"]] = counts.get(r["site_id"], 0) + 1
    top = max(counts, key=lambda k: (counts[k], [-ord(c) for c in k]))
    ids = [lst[0] for lst in table["site_id"].to_pylist()]
    assert {i for r, i in zip(rows, ids) if r["site_id"] == top} == {1}
    assert all(i == 0 for r, i in zip(rows, ids) if counts[r["site_id"]] < 2)
    assert all(0 <= v[0] < 1000 for v in table["device_model"].to_pylist() if v)


@pytest.mark.integration
def test_taobao_without_header(tmp_path, dask_client):
    if not TAOBAO.exists():
        pytest.skip(f"{TAOBAO} not present")
    job = load_job_dict(
        doc(
            {
                "uri": str(TAOBAO),
                "format": "csv",
                "columns": ["user_id", "item_id", "category_id", "behavior", "ts"],
                "label": None,
                "dense": ["ts"],
                "sparse": ["user_id", "item_id", "category_id", "behavior"],
                "session": {"key": "user_id", "time": "ts"},
            },
            [{"op": "normalize", "columns": "dense"}, {"op": "categorify", "columns": ["behavior"]}],
            tmp_path / "out",
        )
    )
    summary = run_job(job, client=dask_client)
    # the sample's last line is cut short ("100370,1968385,1875258,pv"): quarantined, job goes on
    assert summary.rows_written == 84475 and summary.rows_quarantined == 1
    # the compressed sample is split like the plain file: the bad line is in the last shard's
    (quarantine,) = (tmp_path / "out" / "_quarantine").iterdir()
    (record,) = quarantine.read_text().splitlines()
    assert '"line": 84476' in record and "expected 5 fields, found 4" in record
    table = pq.read_table(tmp_path / "out")
    assert set(table["behavior"].to_pylist()) <= {1, 2, 3, 4}
    assert table["behavior"].to_pylist().count(1) > 70000  # pv dominates
    assert abs(sum(table["ts"].to_pylist()) / table.num_rows) < 1e-6
