"""The default --table-rows: the ID range the job's transforms leave each sparse feature in, from
the job's spec (a local output's _job.json and _fit.json, or the shard service's status)."""

from __future__ import annotations

import json

import pytest

from recprep.train.config import TrainConfigError
from recprep.train.tables import DEFAULT_TABLE_ROWS, TableRows, check_fits, id_bounds, table_rows_for

from ..conftest import CRITEO_TRANSFORMS

CRITEO = {"source": {"uri": "day0.tsv", "format": "criteo"}, "transforms": CRITEO_TRANSFORMS}
SPARSE = [f"C{i}" for i in range(1, 27)]


def spec(*transforms, **source):
    return {"source": {"uri": "synthetic://criteo?rows=10", **source}, "transforms": list(transforms)}


def test_the_readme_recipe_hashes_every_feature_into_its_max_value():
    bounds = id_bounds(CRITEO, [*SPARSE, "I1_bucket"])
    assert {bounds[c] for c in SPARSE} == {1_000_000}
    assert bounds["I1_bucket"] == 4  # three borders: buckets 0..3
    sized = table_rows_for(CRITEO, [*SPARSE, "I1_bucket"])
    assert sized.rows == 1_000_000 and sized.note.startswith("from the job: the ID range of C1, C2, C3")


def test_each_feature_keeps_the_bound_of_the_last_op_that_set_its_ids():
    s = spec(
        {"op": "hex_to_int", "columns": "sparse"},
        {"op": "sigrid_hash", "columns": "sparse", "maxValue": 5000},
        {"op": "categorify", "columns": ["C2"]},
        {"op": "sigrid_hash", "columns": "C1?", "max_value": 70_000},  # C10..C19; snake_case too
        {"op": "clamp", "columns": ["C20"], "min": 0, "max": 99.5},
        {"op": "fill_null", "columns": ["C21"], "value": 4999},
        {"op": "fill_null", "columns": ["C22"], "value": 5000},
        {"op": "to_list", "columns": "sparse"},
        {"op": "ngram", "columns": ["C3"], "n": 2, "maxValue": 123, "output": "C3_pairs"},
        {"op": "bucketize", "columns": "dense", "borders": [1, 2], "output": "{column}_b"},
        {"op": "firstx", "columns": "sparse", "k": 1},
    )
    features = [*SPARSE, "C3_pairs", "I1_b", "I13_b"]
    bounds = id_bounds(s, features, {"2:C2": 41})
    assert bounds["C1"] == 5000 and bounds["C2"] == 42 and bounds["C10"] == bounds["C19"] == 70_000
    assert bounds["C20"] == 100 and bounds["C21"] == 5000 and bounds["C22"] is None
    assert bounds["C3_pairs"] == 123 and bounds["I1_b"] == bounds["I13_b"] == 3
    assert id_bounds(s, ["C2"], {}) == {"C2": None}  # no fitted vocabulary: unknown
    assert table_rows_for(s, features, {"2:C2": 41}).rows == DEFAULT_TABLE_ROWS  # C22 is unbounded


def test_role_selectors_pick_source_columns_and_generated_features_are_named():
    s = spec(
        {"op": "bucketize", "columns": ["I1"], "borders": [0.5], "output": "C_extra"},
        {"op": "sigrid_hash", "columns": "sparse", "maxValue": 10},  # C*, but not C_extra
        {"op": "hex_to_int", "columns": ["C_*"]},  # names reach generated features
        dense=["I1"],
        sparse=["C1", "C2"],
    )
    assert id_bounds(s, ["C1", "C2", "C_extra"]) == {"C1": 10, "C2": 10, "C_extra": None}


def test_unbounded_ids_fall_back_to_the_default_and_say_which_features():
    s = spec(
        {"op": "hex_to_int", "columns": "sparse"}, {"op": "sigrid_hash", "columns": ["C1"], "maxValue": 9}
    )
    sized = table_rows_for(s, SPARSE[:8])
    assert sized.rows == DEFAULT_TABLE_ROWS
    assert sized.note == "default: the job does not bound the IDs of C2, C3, C4, C5, C6 and 2 more"
    assert table_rows_for(s, ["C1"]) == TableRows(9, "from the job: the ID range of C1")


def test_a_range_too_large_for_the_machine_is_a_clear_error():
    sized = TableRows(40_000_000, "from the job: the ID range of C1")
    check_fits(sized, 26, 16, "adagrad", memory=200 * 2**30)
    with pytest.raises(
        TrainConfigError,
        match=r"--table-rows: the job's IDs span 40,000,000 rows per table "
        r".*26 tables of dimension 16 need 124\.0 GiB .* has 64\.0 GiB",
    ):
        check_fits(sized, 26, 16, "adagrad", memory=64 * 2**30)
    check_fits(sized, 26, 16, "sgd", memory=64 * 2**30)  # no optimizer state: 62 GiB


# --- from a real job output, locally and through the shard service -------------------------

JOB_TRANSFORMS = [
    {"op": "fill_null", "columns": "dense", "value": 0},
    {"op": "bucketize", "columns": ["I2"], "borders": [1, 10, 100], "output": "I2_bucket"},
    {"op": "hex_to_int", "columns": "sparse"},
    {"op": "sigrid_hash", "columns": "sparse", "maxValue": 777},
    {"op": "categorify", "columns": ["C3"]},
    {"op": "to_list", "columns": "sparse"},
]


@pytest.fixture(scope="module")
def job_output(tmp_path_factory, dask_client):
    from recprep.spec import load_job_dict
    from recprep.workloads.runner import run_job

    from ..conftest import job_doc

    out = tmp_path_factory.mktemp("tables") / "out"
    doc = job_doc("synthetic://criteo?rows=3000&seed=5", str(out), transforms=JOB_TRANSFORMS)
    doc["spec"]["output"]["rowsPerShard"] = 1000
    run_job(load_job_dict(doc), client=dask_client)
    vocabulary = json.loads((out / "_fit.json").read_text())["states"]["4:C3"]["vocabulary"]
    return out, len(vocabulary)


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
def test_train_sizes_its_tables_from_the_local_output_unless_told(job_output):
    pytest.importorskip("torch")
    from recprep.delivery.shards import LocalShards
    from recprep.train.loop import TrainConfig, train

    out, vocabulary = job_output
    assert 0 < vocabulary < 777
    report = train(
        TrainConfig(LocalShards(str(out)), batch_size=500, steps=2, embedding_dim=4, device="cpu")
    ).report
    assert report.table_rows == 777 and report.table_rows_note.startswith("from the job: the ID range of C1,")
    told = train(
        TrainConfig(
            LocalShards(str(out)), batch_size=500, steps=2, table_rows=50, embedding_dim=4, device="cpu"
        )
    ).report
    assert (told.table_rows, told.table_rows_note) == (50, "--table-rows")


@pytest.mark.integration
def test_the_shard_service_status_carries_the_spec_and_the_vocabulary_sizes(job_output, tmp_path):
    pytest.importorskip("pyarrow.flight")
    from recprep.delivery.service import ShardServer
    from recprep.delivery.shards import ServiceShards
    from recprep.train.tables import resolve_table_rows

    out, vocabulary = job_output
    with ShardServer(str(out), token="t", state_dir=str(tmp_path / "state")) as server:
        source = ServiceShards(server.location, token="t")
        features = ["I2_bucket", *SPARSE]
        sized = resolve_table_rows(source, features)
        assert sized.rows == 777 and sized.note.startswith("from the job")
        assert id_bounds(
            json.loads((out / "_job.json").read_text())["spec"], ["C3"], {"4:C3": vocabulary}
        ) == {"C3": vocabulary + 1}
        from recprep.delivery.service import ShardClient

        with ShardClient(server.location, token="t") as client:
            status = client.status()
        assert status["spec"]["transforms"][3]["maxValue"] == 777
        assert status["vocabularies"] == {"4:C3": vocabulary}
        wrong = resolve_table_rows(ServiceShards(server.location, token="nope"), features)
        assert wrong.rows == DEFAULT_TABLE_ROWS and "unauthenticated" in wrong.note
