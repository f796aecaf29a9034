"""Sessions of a source already grouped by key (spec.source.session.grouped): shards cut from the
source's own splits give the rows a job that groups the events itself gives, whole sessions per
shard, the same bytes with any number of workers; a source that is not grouped fails naming the
line."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from recprep.errors import RecprepError
from recprep.spec import SessionSpec, load_job_dict
from recprep.workloads.grouped_sessions import GroupingCheck, GroupingError, SplitKeys
from recprep.workloads.runner import run_job
from recprep.workloads.sessions import HIDDEN, KEY_RUN, SESSION_RUN
from recprep.workloads.sources.session_events import COLUMNS, write_session_events
from recprep.workloads.tasks import prepare, split_rows

from .test_runner import run_with_workers, shard_bytes
from .test_sessions import doc, read_rows


@pytest.fixture(scope="module")
def grouped(tmp_path_factory) -> pa.Table:
    """40 users x 6 sessions x 7 events (sessions 2 h apart, events 30 s apart), then one user
    with a session of 90 events: each user's events together, in time order."""
    folder = tmp_path_factory.mktemp("grouped")
    log = write_session_events(folder / "log.csv", 40, 6, 7, items=300, seed=3)
    table = pcsv.read_csv(log, read_options=pcsv.ReadOptions(column_names=COLUMNS))
    table = table.take(np.lexsort((table["timestamp"].to_numpy(), table["user_id"].to_numpy())))
    long = pa.table(
        {
            "user_id": [999] * 90,
            "item_id": list(range(90)),
            "category_id": [5] * 90,
            "behavior_type": ["pv"] * 90,
            "timestamp": [1_511_600_000 + 10 * i for i in range(90)],
        }
    )
    return pa.concat_tables([table, long.cast(table.schema)])


def write(table: pa.Table, path) -> object:
    pcsv.write_csv(table, path, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    return path


def sessions_of(table: pa.Table, gap: int) -> np.ndarray:
    """Each row's session number, for rows grouped by user in time order."""
    user, ts = table["user_id"].to_numpy(), table["timestamp"].to_numpy()
    new = np.ones(len(user), bool)
    new[1:] = (user[1:] != user[:-1]) | (ts[1:] - ts[:-1] > gap)
    return np.cumsum(new)


def rows_of(tables: list[pa.Table]) -> list[str]:
    """Every row of every shard, as text, sorted: the rows whatever the shard they are in."""
    out = []
    for t in tables:
        out += map(repr, zip(*[t[c].to_pylist() for c in sorted(t.column_names)]))
    return sorted(out)


# -- the shards, read without Dask ----------------------------------------------------------------------
@pytest.mark.parametrize("rows_per_shard", [8, 37, 100, 400])
def test_the_shards_hold_every_row_once_and_every_session_whole(grouped, tmp_path, rows_per_shard):
    source = write(grouped, tmp_path / "log.csv")
    job = load_job_dict(doc(source, tmp_path / "out", rows_per_shard=rows_per_shard, grouped=True))
    src, plan = prepare(job, index_dir=str(tmp_path / "index"))
    splits = src.splits(split_rows(job))
    assert len(splits) > 1
    sessions = sessions_of(grouped, 600)
    own, shard_of = [], []
    for split in splits:
        read = src.read(split)
        table = read.table.slice(read.context)
        own.append(table.drop_columns(list(set(HIDDEN) & set(table.column_names))))
        shard_of += [split.index] * table.num_rows
        # a session read: the key run and session columns number the rows' runs, context included
        runs = read.table[SESSION_RUN].to_numpy()
        assert np.all(np.diff(runs) >= 0) and np.all(np.diff(read.table[KEY_RUN].to_numpy()) >= 0)
    # every row once, in source order: the shards, one after another, are the source
    together = pa.concat_tables(own)
    for name in COLUMNS:
        assert [str(v) for v in together[name].to_pylist()] == [str(v) for v in grouped[name].to_pylist()]
    shard_of = np.array(shard_of)
    sizes = np.bincount(sessions)[1:]
    for s in np.unique(sessions):
        shards = np.unique(shard_of[sessions == s])
        # a session is cut only when it is longer than a shard (the 90-event session, or any
        # session with rowsPerShard 8)
        assert len(shards) == 1 or sizes[s - 1] > rows_per_shard


def test_a_shards_first_session_has_the_history_of_the_events_before_it(grouped, tmp_path):
    # shards of 8 rows: most shards begin inside a user's events, whose earlier sessions are in
    # earlier splits: their history comes from those splits' rows (the context): K = 5 events
    # before the shard's first session, and for a shard that begins inside the 90-event session
    # (cut: it is longer than a shard), the session's earlier events too
    source = write(grouped, tmp_path / "log.csv")
    job = load_job_dict(doc(source, tmp_path / "out", rows_per_shard=8, grouped=True))
    src, plan = prepare(job, index_dir=str(tmp_path / "index"))
    reads = [src.read(s) for s in src.splits(split_rows(job))]
    users = [r.table["user_id"].to_pylist()[r.context :] for r in reads]
    plain = [r.context for r, u in zip(reads, users) if u and u[0] != "999"]
    assert src.context == 5 and max(plain) == 5 and plain.count(5) > len(plain) / 2
    inside = [r.context for r, u in zip(reads, users) if u and u[0] == "999"]
    assert len(inside) > 2 and inside == sorted(inside) and inside[-1] > 8


# -- runs on a Dask cluster --------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("rows_per_shard, rule", [(400, "gap"), (60, "gap"), (60, "day")])
def test_a_grouped_source_gives_the_rows_of_a_job_that_groups_it(
    grouped, tmp_path, dask_client, rows_per_shard, rule
):
    source = write(grouped, tmp_path / "log.csv")
    tables = {}
    for name, flag in (("grouped", True), ("shuffled", False)):
        d = doc(source, tmp_path / name, rows_per_shard=rows_per_shard, dedup=True, grouped=flag, rule=rule)
        summary = run_job(load_job_dict(d), client=dask_client)
        assert summary.rows_written == grouped.num_rows
        tables[name] = read_rows(tmp_path / name)
    # the same rows, history features included; without staging
    assert rows_of(tables["grouped"]) == rows_of(tables["shuffled"])
    assert not (tmp_path / "grouped" / "_sessions").exists()


@pytest.mark.integration
def test_grouped_shards_are_byte_identical_with_one_and_two_workers(grouped, tmp_path):
    source = write(grouped, tmp_path / "log.csv")
    for workers in (1, 2):
        run_with_workers(
            doc(source, tmp_path / f"w{workers}", rows_per_shard=50, dedup=True, grouped=True), workers
        )
    assert shard_bytes(tmp_path / "w1") == shard_bytes(tmp_path / "w2")
    assert len(shard_bytes(tmp_path / "w1")) >= 4


@pytest.mark.integration
def test_a_users_events_may_run_on_into_the_next_file(grouped, tmp_path, dask_client):
    # two files, the cut in the middle of a user's events: one sequence, as in one file
    folder = tmp_path / "parts"
    folder.mkdir()
    write(grouped.slice(0, 803), folder / "a.csv")
    write(grouped.slice(803), folder / "b.csv")
    for name, uri in (("two", folder), ("one", write(grouped, tmp_path / "log.csv"))):
        run_job(
            load_job_dict(doc(uri, tmp_path / name, rows_per_shard=100, grouped=True)), client=dask_client
        )
    assert rows_of(read_rows(tmp_path / "two")) == rows_of(read_rows(tmp_path / "one"))


@pytest.mark.integration
def test_a_compressed_grouped_source_gives_the_shards_of_the_same_text_uncompressed(
    grouped, tmp_path, dask_client
):
    import gzip

    text = write(grouped, tmp_path / "log.csv")
    packed = tmp_path / "log.csv.gz"
    packed.write_bytes(gzip.compress(text.read_bytes()))
    for name, uri in (("gz", packed), ("csv", text)):
        run_job(
            load_job_dict(doc(uri, tmp_path / name, rows_per_shard=60, dedup=True, grouped=True)),
            client=dask_client,
        )
    assert shard_bytes(tmp_path / "gz") == shard_bytes(tmp_path / "csv")


@pytest.mark.integration
def test_a_grouped_parquet_source_reads_its_neighbours_whole(grouped, tmp_path, dask_client):
    path = tmp_path / "log.parquet"
    ids = ("user_id", "item_id", "category_id")  # as strings, as a CSV source reads them
    as_text = pa.table({n: grouped[n].cast(pa.string()) if n in ids else grouped[n] for n in COLUMNS})
    pq.write_table(as_text, path, row_group_size=70)
    csv = write(grouped, tmp_path / "log.csv")
    for name, uri in (("parquet", path), ("csv", csv)):
        d = doc(uri, tmp_path / name, rows_per_shard=100, dedup=True, grouped=True)
        if name == "parquet":
            d["spec"]["source"].update(format="parquet", columns=None)
            del d["spec"]["source"]["columns"]
        run_job(load_job_dict(d), client=dask_client)
    assert rows_of(read_rows(tmp_path / "parquet")) == rows_of(read_rows(tmp_path / "csv"))


# -- a source that is not grouped ------------------------------------------------------------------------
@pytest.mark.integration
def test_a_key_that_comes_back_within_a_split_fails_naming_both_lines(grouped, tmp_path, dask_client):
    # user 1's first 10 events, user 2's first 5, the rest of user 1's (from line 16), of user 2's
    rows = grouped.slice(0, 60)
    moved = pa.concat_tables([rows.slice(0, 10), rows.slice(42, 5), rows.slice(10, 32), rows.slice(47)])
    source = write(moved, tmp_path / "log.csv")
    with pytest.raises(RecprepError) as info:
        run_job(load_job_dict(doc(source, tmp_path / "out", grouped=True)), client=dask_client)
    message = str(info.value)
    assert "spec.source.session.grouped" in message and "'user_id'" in message
    assert f"{source}:16: " in message and f"at {source}:1, " in message
    assert "\n" not in message


@pytest.mark.integration
@pytest.mark.parametrize("field, column", [(0, "user_id"), (4, "timestamp")])
def test_an_event_without_a_key_or_time_fails_naming_its_line_whichever_task_finds_it(
    grouped, tmp_path, dask_client, field, column
):
    # the first line of a split, which the task before also reads (the rest of its last
    # session): both tasks name the line. The field is emptied and another padded, so that the
    # file's splits stay where they were.
    source = write(grouped, tmp_path / "log.csv")
    job = load_job_dict(doc(source, tmp_path / "out", rows_per_shard=50, grouped=True))
    second = prepare(job, index_dir=str(tmp_path / "index"))[0].splits(split_rows(job))[1]
    line = source.read_bytes()[: second.start].count(b"\n") + 1
    lines = source.read_text().splitlines()
    fields = lines[line - 1].split(",")
    fields[3] += " " * len(fields[field])
    fields[field] = ""
    lines[line - 1] = ",".join(fields)
    source.write_text("\n".join(lines) + "\n")
    src, _ = prepare(job, index_dir=str(tmp_path / "index2"))
    splits = src.splits(split_rows(job))
    assert splits[1].start == second.start
    what = (
        f"{source}:{line}: spec.source.session.{'key' if field == 0 else 'time'}: column {column!r} is empty"
    )
    for split in splits[:2]:  # the task before it, and its own
        with pytest.raises(RecprepError, match=re.escape(what)):
            src.read(split)
    with pytest.raises(RecprepError, match=re.escape(what)):
        run_job(job, client=dask_client)


@pytest.mark.integration
def test_a_time_that_goes_back_within_a_key_fails_naming_the_column_and_line(grouped, tmp_path, dask_client):
    table = grouped.slice(0, 60)
    times = table["timestamp"].to_numpy().copy()
    times[[20, 21]] = times[[21, 20]]
    source = write(table.set_column(4, "timestamp", pa.array(times)), tmp_path / "log.csv")
    with pytest.raises(
        RecprepError, match=rf"{source}:22: spec.source.session.grouped: column 'timestamp' goes back"
    ):
        run_job(load_job_dict(doc(source, tmp_path / "out", grouped=True)), client=dask_client)


@pytest.mark.integration
def test_a_key_in_two_far_apart_splits_fails_and_keeps_what_was_committed(grouped, tmp_path, dask_client):
    # daily files each grouped by user, the same users in both: not grouped as a whole
    folder = tmp_path / "days"
    folder.mkdir()
    first = grouped.slice(0, 600)
    write(first, folder / "a.csv")
    write(first.set_column(4, "timestamp", pa.compute.add(first["timestamp"], 86_400)), folder / "b.csv")
    out = tmp_path / "out"
    job = load_job_dict(doc(folder, out, rows_per_shard=100, grouped=True))
    source, _ = prepare(job)
    splits = len(source.splits(split_rows(job)))
    assert splits > GroupingCheck.FIRST_LOOK
    with pytest.raises(RecprepError) as info:
        run_job(job, client=dask_client)
    message = str(info.value)
    assert "not grouped by 'user_id'" in message and "a.csv:" in message and "b.csv:" in message
    assert "(user_id '" in message
    ledger = (out / "_ledger.jsonl").read_text()
    committed = [json.loads(line)["file"] for line in ledger.splitlines() if '"file"' in line]
    assert committed, "the shards committed before the check saw it are kept"
    assert all((out / name).is_file() for name in committed)
    # the driver looks while the shards land (at 8 of them; any 8 of the two files' splits hold
    # both places of some user): the job stops there, not after the last shard
    assert len(committed) < splits, (len(committed), splits)
    # a second run of the job, which would not see the committed shards' keys, fails at once
    with pytest.raises(RecprepError, match="found by an earlier run") as again:
        run_job(load_job_dict(doc(folder, out, rows_per_shard=100, grouped=True)), client=dask_client)
    assert message in str(again.value)
    assert (out / "_ledger.jsonl").read_text() == ledger


def test_the_drivers_check_allows_a_key_across_adjacent_splits_only():
    spec = SessionSpec(key="u", time="t")
    keys = lambda *k: SplitKeys(k[0], k[-1], np.unique(np.array(k, np.uint64)))  # noqa: E731
    grouping = GroupingCheck(spec, lambda split, key: f"split {split}")
    for index, held in [(0, (1, 2, 3)), (2, (3, 4)), (1, (3,)), (3, (4, 5)), (5, (6,))]:
        grouping.add(index, keys(*held))  # in any order; split 4 not known (an earlier run's)
    assert not grouping.due()  # the first look while the job runs comes at 8 splits
    grouping.check()  # 3 runs on through split 1 into split 2, 4 from split 2 into 3
    for index in range(6, 11):
        assert not grouping.due()  # a look at 5 splits: the next at twice as many
        grouping.add(index, keys(10 + index))
    assert grouping.due()
    grouping.check()
    assert not grouping.due()
    cases = [((7,), "the key at split 0 has events again at split 2"), ((2, 4), "at split 1 has events")]
    for between, message in cases:
        late = GroupingCheck(spec, lambda split, key: f"split {split}")
        late.add(0, keys(1, 2))
        late.add(2, keys(2, 3))
        late.add(1, keys(*between))  # another key between; or 2 again, then another
        with pytest.raises(GroupingError, match=message):
            late.check()
