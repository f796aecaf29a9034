"""Joins with side tables (spec.source.joins): a left join that keeps the source's rows and their
order, nulls for missing keys, roles over the joined columns, and one clear error for a
duplicate key, a clashing name, a side table too large to broadcast and keys that cannot be
compared."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recprep.errors import SourceError, SpecError
from recprep.spec import load_job_dict, load_job_text
from recprep.workloads.plan import compile_plan
from recprep.workloads.sources import open_source


def job(source: dict, transforms=None) -> dict:
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "joins"},
        "spec": {
            "source": source,
            "transforms": transforms or [],
            "output": {"uri": "unused"},
        },
    }


def open_job(source: dict, transforms=None):
    loaded = load_job_dict(job(source, transforms))
    return loaded, open_source(loaded.spec.source)


def read_all(source, rows_per_shard: int = 3, decode_hex=frozenset()) -> pa.Table:
    tables = []
    for split in source.splits(rows_per_shard):
        result = source.read(split, decode_hex)
        assert not result.bad
        tables.append(result.table)
    assert len(tables) >= 1
    return pa.concat_tables(tables)


def plain(table: pa.Table) -> dict[str, list]:
    """The table's columns as lists of plain values (dictionaries decoded, nulls as None)."""
    return {n: table[n].to_pylist() for n in table.column_names}


@pytest.fixture
def csvs(tmp_path):
    inter = tmp_path / "inter.csv"
    inter.write_text(
        "user_id,item_id,rating\n"
        + "".join(
            f"{u},{i},{r}\n" for u, i, r in [(1, 10, 5), (2, 11, 3), (9, 10, 1), (1, 12, 4), (3, 99, 2)] * 3
        )
    )
    users = tmp_path / "users.csv"
    users.write_text("user_id,age,gender,zip\n1,24,M,85711\n2,53,F,94043\n3,23,M,32067\n4,24,M,43537\n")
    items = tmp_path / "items.tsv"
    items.write_text("item_id\ttitle\tyear\n10\tToy Story\t1995\n11\tGoldenEye\t1995\n12\tFour Rooms\t1994\n")
    return inter, users, items


def base(inter, **more) -> dict:
    return {"uri": str(inter), "header": True, "label": "rating", "sparse": ["item_id"], **more}


def test_left_join_keeps_rows_and_order_and_gives_nulls_for_missing_keys(csvs):
    inter, users, items = csvs
    _, source = open_job(
        base(
            inter,
            joins=[
                {"uri": str(users), "header": True, "key": "user_id"},
                {"uri": str(items), "header": True, "key": "item_id"},
            ],
        )
    )
    table = read_all(source)
    assert table.column_names == ["user_id", "item_id", "rating", "age", "gender", "zip", "title", "year"]
    assert table.schema == source.schema()
    left = pd.read_csv(inter, dtype=str)
    expected = left.merge(pd.read_csv(users, dtype=str), how="left", on="user_id").merge(
        pd.read_csv(items, dtype=str, sep="\t"), how="left", on="item_id"
    )
    got = plain(table)
    assert len(got["user_id"]) == len(left) == 15
    for col in ["user_id", "item_id", "age", "gender", "zip", "title", "year"]:
        assert got[col] == [None if pd.isna(v) else v for v in expected[col]], col
    assert got["rating"] == left["rating"].astype(int).tolist()
    assert got["age"][2] is None and got["title"][4] is None  # user 9 and item 99: no such row


def test_roles_select_joined_columns_and_give_them_the_reader_types(csvs):
    inter, users, _ = csvs
    loaded, source = open_job(
        base(
            inter,
            dense=["u_age"],
            sparse=["item_id", "u_[gz]*"],
            joins=[{"uri": str(users), "header": True, "key": "user_id", "prefix": "u_"}],
        ),
        transforms=[
            {"op": "fill_null", "columns": "dense", "value": 0},
            {"op": "categorify", "columns": "sparse"},
        ],
    )
    assert source.roles.dense == ("u_age",) and source.roles.sparse == ("item_id", "u_gender", "u_zip")
    schema = source.schema()
    assert schema.names == ["user_id", "item_id", "rating", "u_age", "u_gender", "u_zip"]
    assert schema.field("u_age").type == pa.float64()
    assert schema.field("u_gender").type == pa.dictionary(pa.int32(), pa.string())
    assert schema.field("u_zip").type == pa.dictionary(pa.int32(), pa.string())
    plan = compile_plan(loaded, schema, source.roles)  # the plan sees the joined columns
    assert plan.steps[0].inputs == ["u_age"] and plan.steps[1].inputs == ["item_id", "u_gender", "u_zip"]
    table = read_all(source, rows_per_shard=100)
    assert table.schema == schema
    assert table["u_age"].to_pylist()[:3] == [24.0, 53.0, None]
    # a joined dictionary column holds only the values its split uses, in order of appearance
    zips = table["u_zip"].chunk(0)
    assert zips.dictionary.to_pylist() == ["85711", "94043", "32067"]


def test_columns_and_prefix(csvs):
    inter, users, _ = csvs
    _, source = open_job(
        base(
            inter,
            joins=[
                {
                    "uri": str(users),
                    "header": True,
                    "key": "user_id",
                    "columns": ["gender", "age"],
                    "prefix": "user_",
                }
            ],
        )
    )
    table = read_all(source)
    assert table.column_names[3:] == ["user_gender", "user_age"]
    assert table["user_age"].to_pylist()[:3] == ["24", "53", None]


def test_a_clashing_column_names_the_field(csvs, tmp_path):
    inter, users, _ = csvs
    clash = tmp_path / "clash.csv"
    clash.write_text("user_id,rating\n1,3\n")
    with pytest.raises(
        SpecError,
        match=r"spec\.source\.joins\[0\]\.columns: joined column 'rating' clashes with a column of the "
        r"source; set spec\.source\.joins\[0\]\.prefix",
    ):
        open_job(base(inter, joins=[{"uri": str(clash), "header": True, "key": "user_id"}]))
    two = [
        {"uri": str(users), "header": True, "key": "user_id", "columns": ["age"]},
        {"uri": str(users), "header": True, "key": "user_id", "columns": ["age"]},
    ]
    with pytest.raises(
        SpecError,
        match=r"spec\.source\.joins\[1\]\.columns: joined column 'age' clashes with a column of "
        r"spec\.source\.joins\[0\]",
    ):
        open_job(base(inter, joins=two))
    two[1]["prefix"] = "again_"
    _, source = open_job(base(inter, joins=two))
    assert source.schema().names[-2:] == ["age", "again_age"]


def test_a_duplicate_key_names_the_file_and_the_key(csvs, tmp_path):
    inter, _, _ = csvs
    dup = tmp_path / "users.csv"
    dup.write_text("user_id,age\n1,24\n2,53\n1,31\n")
    with pytest.raises(
        SourceError,
        match=r"users\.csv: key '1' occurs 2 times in column 'user_id' of the side table of "
        r"spec\.source\.joins\[0\]",
    ):
        open_job(base(inter, joins=[{"uri": str(dup), "header": True, "key": "user_id"}]))
    # a directory of side files: the key's files are named
    d = tmp_path / "users"
    d.mkdir()
    pq.write_table(pa.table({"uid": pa.array([1, 2], pa.int64()), "age": [24, 53]}), d / "a.parquet")
    pq.write_table(pa.table({"uid": pa.array([5, 2], pa.int64()), "age": [30, 40]}), d / "b.parquet")
    with pytest.raises(SourceError, match=r"a\.parquet, .*b\.parquet: key 2 occurs 2 times in column 'uid'"):
        open_job(
            base(inter, joins=[{"uri": str(d), "format": "parquet", "key": "user_id", "sideKey": "uid"}])
        )


def test_a_side_table_too_large_to_broadcast_is_one_error(csvs):
    inter, users, _ = csvs
    with pytest.raises(
        SpecError,
        match=r"spec\.source\.joins\[0\]\.maxBytes: the side table .*users\.csv \(.*users\.csv\) "
        r"holds more than 16 bytes",
    ) as info:
        open_job(base(inter, joins=[{"uri": str(users), "header": True, "key": "user_id", "maxBytes": 16}]))
    assert "\n" not in str(info.value)
    _, source = open_job(
        base(inter, joins=[{"uri": str(users), "header": True, "key": "user_id", "maxBytes": 4096}])
    )
    assert read_all(source).num_rows == 15


def test_keys_that_are_not_integers_or_strings_are_a_spec_error(csvs, tmp_path):
    inter, users, _ = csvs
    with pytest.raises(
        SpecError,
        match=r"spec\.source\.joins\[0\]\.key: column 'user_id' is double; join keys must be integers or "
        r"strings \(leave it out of spec\.source\.dense\)",
    ):
        open_job(
            base(inter, dense=["user_id"], joins=[{"uri": str(users), "header": True, "key": "user_id"}])
        )
    side = tmp_path / "f.parquet"
    pq.write_table(pa.table({"uid": [1.0, 2.0], "age": [3, 4]}), side)
    with pytest.raises(
        SpecError,
        match=r"spec\.source\.joins\[0\]\.sideKey: the key column 'uid' of the side table "
        r".*f\.parquet is double",
    ):
        open_job(base(inter, joins=[{"uri": str(side), "key": "user_id", "sideKey": "uid"}]))


def test_integer_keys_on_both_sides_with_nulls(tmp_path):
    inter = tmp_path / "inter.parquet"
    users = tmp_path / "users.parquet"
    pq.write_table(
        pa.table({"user_id": pa.array([3, None, 1, 7, 3, -2], pa.int64()), "label": [1, 0, 1, 0, 1, 0]}),
        inter,
        row_group_size=2,
    )
    pq.write_table(
        pa.table({"user_id": pa.array([1, 3, None, -2], pa.int32()), "age": [10, 30, 99, -20]}), users
    )
    _, source = open_job({"uri": str(inter), "joins": [{"uri": str(users), "key": "user_id"}]})
    table = read_all(source, rows_per_shard=2)
    assert table["age"].to_pylist() == [30, None, 10, None, 30, -20]  # a null key matches nothing
    assert table["user_id"].to_pylist() == [3, None, 1, 7, 3, -2]


def test_integer_keys_against_string_keys_compare_as_decimal_text(tmp_path):
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,label\n42,1\n042,0\n7,1\n,0\nx,1\n")
    users = tmp_path / "users.parquet"
    pq.write_table(pa.table({"user_id": pa.array([42, 7], pa.int64()), "age": [1, 2]}), users)
    _, source = open_job(
        {"uri": str(inter), "header": True, "joins": [{"uri": str(users), "key": "user_id"}]}
    )
    assert read_all(source)["age"].to_pylist() == [1, None, 2, None, None]
    # and the other way round: integer keys in the source, string keys in the side table
    inter2 = tmp_path / "inter.parquet"
    pq.write_table(pa.table({"user_id": pa.array([7, 42, 5], pa.int64()), "label": [1, 0, 1]}), inter2)
    users2 = tmp_path / "users.csv"
    users2.write_text("user_id,age\n42,1\n7,2\n05,3\n")
    _, source = open_job(
        {"uri": str(inter2), "joins": [{"uri": str(users2), "header": True, "key": "user_id"}]}
    )
    assert read_all(source)["age"].to_pylist() == ["2", "1", None]


def test_dictionary_encoded_keys_on_both_sides(csvs, tmp_path):
    inter, _, _ = csvs
    users = tmp_path / "users.parquet"
    keys = pa.array(["3", "1", "2"]).dictionary_encode()
    pq.write_table(pa.table({"user_id": keys, "occupation": ["writer", "technician", "other"]}), users)
    assert pa.types.is_dictionary(pq.read_schema(users).field("user_id").type)
    # the source's key is a sparse feature: dictionary<int32, string> as text sources read them
    _, source = open_job(
        base(inter, sparse=["user_id", "item_id"], joins=[{"uri": str(users), "key": "user_id"}])
    )
    assert pa.types.is_dictionary(source.schema().field("user_id").type)
    table = read_all(source)
    assert table["occupation"].to_pylist()[:5] == ["technician", "other", None, "technician", "writer"]


def test_a_key_the_plan_hex_decodes_is_joined_on_its_text(csvs):
    inter, users, _ = csvs
    loaded, source = open_job(
        base(
            inter,
            sparse=["user_id", "item_id"],
            joins=[{"uri": str(users), "header": True, "key": "user_id"}],
        ),
        transforms=[{"op": "hex_to_int", "columns": ["user_id", "item_id"]}],
    )
    plan = compile_plan(loaded, source.schema(), source.roles)
    assert plan.scan_hex == {"user_id", "item_id"}
    table = read_all(source, decode_hex=plan.scan_hex)
    assert table["age"].to_pylist()[:3] == ["24", "53", None]
    assert pa.types.is_dictionary(table["user_id"].type)  # left to the plan's step to decode
    out = plan.apply(table, {})
    assert out["user_id"].to_pylist()[:3] == [1, 2, 9]


def test_side_table_errors_name_the_join_fields(csvs, tmp_path):
    inter, users, _ = csvs
    with pytest.raises(SourceError, match=r"spec\.source\.joins\[0\]\.uri: .*does not exist"):
        open_job(base(inter, joins=[{"uri": str(tmp_path / "nope.csv"), "key": "user_id"}]))
    with pytest.raises(SpecError, match=r"spec\.source\.joins\[0\]\.names: required for format csv"):
        open_job(base(inter, joins=[{"uri": str(users), "key": "user_id"}]))
    with pytest.raises(SpecError, match=r"spec\.source\.joins\[0\]\.format: cannot infer"):
        open_job(base(inter, joins=[{"uri": str(tmp_path), "key": "user_id"}]))
    with pytest.raises(
        SpecError, match=r"spec\.source\.joins\[0\]\.key: no column 'uid'; columns are: user_id"
    ):
        open_job(base(inter, joins=[{"uri": str(users), "header": True, "key": "uid", "sideKey": "user_id"}]))
    with pytest.raises(
        SpecError, match=r"spec\.source\.joins\[0\]\.sideKey: no column 'id' in the side table"
    ):
        open_job(base(inter, joins=[{"uri": str(users), "header": True, "key": "user_id", "sideKey": "id"}]))
    with pytest.raises(SpecError, match=r"spec\.source\.joins\[0\]\.columns: no column 'height'"):
        open_job(
            base(inter, joins=[{"uri": str(users), "header": True, "key": "user_id", "columns": ["height"]}])
        )
    with pytest.raises(SpecError, match=r"spec\.source\.joins\[0\]\.columns: must be distinct"):
        open_job(
            base(
                inter,
                joins=[{"uri": str(users), "header": True, "key": "user_id", "columns": ["age", "age"]}],
            )
        )
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,age\n1,24\n2,3,4\n")
    with pytest.raises(
        SourceError,
        match=r"bad\.csv:3: expected 2 fields, found 3 \(a row of the side table of spec\.source\.joins\[0\]",
    ):
        open_job(base(inter, joins=[{"uri": str(bad), "header": True, "key": "user_id"}]))


def test_headerless_side_table_with_names_and_a_delimiter(csvs, tmp_path):
    inter, _, _ = csvs
    users = tmp_path / "u.user"  # MovieLens 100k: pipe-separated, no header
    users.write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    _, source = open_job(
        base(
            inter,
            joins=[
                {
                    "uri": str(users),
                    "format": "csv",
                    "delimiter": "|",
                    "names": ["user_id", "age", "gender", "occupation", "zip"],
                    "key": "user_id",
                    "columns": ["occupation"],
                }
            ],
        )
    )
    assert read_all(source)["occupation"].to_pylist()[:3] == ["technician", "other", None]


def test_joins_change_the_identity_and_jobs_without_keep_theirs(csvs):
    inter, users, _ = csvs
    without = load_job_dict(job(base(inter)))
    empty = load_job_dict(job(base(inter, joins=[])))
    joined = load_job_dict(job(base(inter, joins=[{"uri": str(users), "header": True, "key": "user_id"}])))
    assert without.identity() == empty.identity() != joined.identity()
    assert "joins" not in without.spec.source.model_dump(by_alias=True, exclude_defaults=True)


def test_a_manifest_with_joins_reads_as_yaml(csvs):
    # YAML 1.1 reads a bare `on:` key as the boolean true (kubectl too): the fields are key/sideKey
    inter, users, items = csvs
    text = f"""
apiVersion: recprep.io/v1alpha1
kind: PreprocessJob
metadata: {{name: movielens}}
spec:
  source:
    uri: {inter}
    header: true
    label: rating
    dense: [age]
    sparse: [item_id, gender, occupation]
    joins:
      - uri: {users}
        header: true
        key: user_id
        columns: [age, gender, zip]
      - uri: {items}
        format: tsv
        header: true
        key: item_id
        sideKey: item_id
        columns: [title]
        prefix: item_
        maxBytes: 1048576
  output: {{uri: unused}}
"""
    with pytest.raises(SpecError, match=r"no column matches 'occupation'"):
        open_source(load_job_text(text, "job.yaml").spec.source)
    loaded = load_job_text(text.replace(", occupation]", ", zip]"), "job.yaml")
    source = open_source(loaded.spec.source)
    assert source.roles.sparse == ("item_id", "gender", "zip")
    assert source.schema().names[3:] == ["age", "gender", "zip", "item_title"]
