"""Sessions (spec.source.session), history features and dedup groups (spec.dedup), end to end on
a Dask cluster, against plain references written row by row."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recprep.errors import RecprepError, SpecError
from recprep.spec import SessionSpec, load_job_dict
from recprep.workloads.output.dedup import expand, groups_of
from recprep.workloads.output.derived import Derivation
from recprep.workloads.runner import run_job
from recprep.workloads.sessions import cut_points, session_starts
from recprep.workloads.sources.session_events import COLUMNS, write_session_events
from recprep.workloads.tasks import prepare

from .test_runner import run_with_workers, shard_bytes

K = 5
TRANSFORMS = [
    {"op": "is_in", "columns": "behavior_type", "values": ["cart", "fav", "buy"], "output": "engaged"},
    {"op": "to_int", "columns": "sparse"},
    {"op": "history", "columns": ["item_id", "category_id"], "k": K, "output": "{column}_history"},
    {"op": "sigrid_hash", "columns": ["item_id_history"], "salt": 3, "maxValue": 1000},
    {"op": "time", "columns": "timestamp", "part": "hour", "format": "unix", "output": "hour"},
]
GROUP = {"name": "user", "features": ["user_id", "item_id_history", "category_id_history"]}


def doc(source: Path, out: Path, rows_per_shard: int = 400, dedup: bool = False, **session) -> dict:
    spec = {
        "source": {
            "uri": str(source),
            "format": "csv",
            "columns": COLUMNS,
            "label": "engaged",
            "sparse": ["user_id", "item_id", "category_id"],
            "session": {"key": "user_id", "time": "timestamp", "gap": 600, **session},
        },
        "transforms": TRANSFORMS,
        "output": {"uri": str(out), "rowsPerShard": rows_per_shard, "keep": ["timestamp"]},
    }
    if dedup:
        spec["dedup"] = [GROUP]
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "s"},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    # 40 users x 6 sessions x 7 events, in time order across users; events 30 s apart, sessions
    # 2 h apart (gap 600 s finds them)
    return write_session_events(tmp_path_factory.mktemp("events") / "log.csv", 40, 6, 7, items=300, seed=3)


def read_rows(out: Path) -> list[pa.Table]:
    return [expand(pq.read_table(p)) for p in sorted(out.glob("part-*.parquet"))]


def reference(source: Path, gap: int) -> dict[tuple[int, int], dict]:
    """Per (user, time): the session's first time and the item/category histories, computed
    row by row in plain Python."""
    events = defaultdict(list)
    for line in source.read_text().splitlines():
        user, item, category, _, ts = line.split(",")
        events[int(user)].append((int(ts), int(item), int(category)))
    out = {}
    for user, rows in events.items():
        rows.sort(key=lambda r: r[0])  # stable: ties keep source order
        start = 0
        for i, (ts, _, _) in enumerate(rows):
            if i and ts - rows[i - 1][0] > gap:
                start = i
            before = rows[:start]
            out[(user, ts)] = {
                "session": rows[start][0],
                "items": [r[1] for r in before][-K:],
                "categories": [r[2] for r in before][-K:],
            }
    return out


# -- units -----------------------------------------------------------------------------------------
def test_sessions_are_cut_by_gap_or_by_day():
    keys = np.array([1, 1, 1, 1, 2, 2], np.uint64)
    times = np.array([0, 100, 800, 86_500, 86_000, 86_450], np.int64)
    new_key, gap = session_starts(keys, times, SessionSpec(key="u", time="t", gap=600))
    assert new_key.tolist() == [True, False, False, False, True, False]
    assert gap.tolist() == [True, False, True, True, True, False]
    _, day = session_starts(keys, times, SessionSpec(key="u", time="t", rule="day"))
    assert day.tolist() == [True, False, False, True, True, True]  # 86_400 is a new UTC day


def test_shards_take_whole_sessions_and_cut_only_a_session_longer_than_a_shard():
    # sessions of 3, 4, 2, 11 and 1 rows; shards of at most 5 rows
    starts = np.array([0, 3, 7, 9, 20])
    cuts = cut_points(starts, 21, 5)
    assert cuts == [0, 3, 7, 9, 14, 19, 21]
    # the 11-row session starts a shard and is cut every 5 rows of its time order; nothing else is
    for a, b in zip(cuts, cuts[1:]):
        assert b - a <= 5
    assert [c for c in cuts if c not in starts and c != 21] == [14, 19]


def test_staging_writes_few_pieces_and_the_cut_one_file_per_full_shard(events, tmp_path):
    from recprep.errors import SourceError
    from recprep.workloads.sessions import (
        SHARDS_PER_PARTITION,
        STAGE_SHARDS,
        SessionPlan,
        SessionSplit,
        cut_partition,
        partition_pieces,
        partitions_for,
        read_session_split,
        shard_name,
        stage_split,
        staged,
    )
    from recprep.workloads.tasks import history_context, prepare, split_rows

    rows_per_shard, out = 100, tmp_path / "out"
    job = load_job_dict(doc(events, out, rows_per_shard=rows_per_shard))
    source, plan = prepare(job)
    splits = source.splits(split_rows(job))  # a staging task reads STAGE_SHARDS shards' rows
    total = sum(s.est_rows for s in splits)
    assert split_rows(job) == STAGE_SHARDS * rows_per_shard and len(splits) <= total // split_rows(job) + 1
    partitions = partitions_for(total, rows_per_shard)
    assert partitions == math.ceil(total / (rows_per_shard * 0.8 * SHARDS_PER_PARTITION)) > 1
    session = job.spec.source.session
    done = [stage_split(source.inner, session, s, partitions, str(out), False) for s in splits]
    staged_rows = sum(s.rows for s in done)
    assert staged_rows == 40 * 6 * 7
    # one file per split, its pieces one after another
    assert sorted(p.name for p in (out / "_sessions" / "staged").iterdir()) == [
        f"s{s.index:05d}.arrows" for s in splits
    ]
    assert 1 < sum(len(s.pieces) for s in done) <= len(splits) * partitions
    context = history_context(plan)
    found = SessionPlan("i", partitions)
    for p, pieces in enumerate(partition_pieces(done, partitions)):
        cuts = cut_partition(session, p, pieces, rows_per_shard, str(out), context, False).cuts
        found.shards += [(p, a, b) for a, b in zip(cuts, cuts[1:])]
        # whole sessions (7 events) while they fit: every shard but a partition's last is nearly full
        assert all(rows_per_shard - 7 < b - a <= rows_per_shard for a, b in zip(cuts[:-2], cuts[1:-1]))
    assert staged(str(out), found)
    read = 0
    for i, (p, a, b) in enumerate(found.shards):
        r = read_session_split(SessionSplit(i, p, a, b, context if a else 0), str(out))
        assert r.table.num_rows - r.context == b - a and r.context <= (context if a else 0)
        read += b - a
    assert read == staged_rows
    # a shard's file gone: not staged (a rerun stages again), and its read names the file
    p, a, b = found.shards[-1]
    (out / shard_name(p, a)).unlink()
    assert not staged(str(out), found)
    with pytest.raises(SourceError, match=shard_name(p, a).rsplit("/", 1)[1]):
        read_session_split(SessionSplit(len(found.shards) - 1, p, a, b, context), str(out))


def test_dedup_and_history_errors_name_the_field(events, tmp_path):
    d = doc(events, tmp_path / "o")
    d["spec"]["source"].pop("session")
    with pytest.raises(SpecError, match=r"spec.transforms\[2\]: op history needs spec.source.session"):
        run_job(load_job_dict(d), workers=1)
    d = doc(events, tmp_path / "o", dedup=True)
    d["spec"]["dedup"] = [{"name": "user", "features": ["user_id", "hour"]}]
    with pytest.raises(SpecError, match=r"spec.dedup\[0\].features: 'hour' is not constant within a session"):
        run_job(load_job_dict(d), workers=1)
    d["spec"]["dedup"] = [{"name": "user", "features": ["nope"]}]
    with pytest.raises(SpecError, match=r"spec.dedup\[0\].features: no output column 'nope'"):
        run_job(load_job_dict(d), workers=1)
    # an output column named as a group's inverse index or flags would be overwritten by them
    cross = {"op": "cross", "columns": ["user_id", "item_id"], "maxValue": 100}
    d = doc(events, tmp_path / "o", dedup=True)
    d["spec"]["transforms"] = [*TRANSFORMS, {**cross, "output": "_inverse.user"}]
    with pytest.raises(
        SpecError,
        match=r"spec.dedup\[0\].name: group 'user' stores its inverse index in column '_inverse.user'",
    ):
        run_job(load_job_dict(d), workers=1)
    d["spec"]["transforms"] = [*TRANSFORMS, {**cross, "output": "_derived.category_id_history"}]
    with pytest.raises(
        SpecError,
        match=r"spec.dedup\[0\].features: 'category_id_history' stores its flags in column '_derived",
    ):
        run_job(load_job_dict(d), workers=1)
    d["spec"]["dedup"] = [{**GROUP, "deriveHistories": False}]  # no flags: nothing to overwrite
    _, plan = prepare(load_job_dict(d), index_dir=str(tmp_path / "index"))
    assert "_derived.category_id_history" in plan.columns and not plan.derived
    d = doc(events, tmp_path / "o", key="uid")
    with pytest.raises(SpecError, match=r"spec.source.session.key: no column 'uid'"):
        run_job(load_job_dict(d), workers=1)
    d = doc(events, tmp_path / "o")
    d["spec"]["dedup"] = [GROUP]
    d["spec"]["source"].pop("session")
    d["spec"]["transforms"] = TRANSFORMS[:1]
    with pytest.raises(SpecError, match="dedup: needs spec.source.session"):
        load_job_dict(d)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("part-*"))


# -- runs ------------------------------------------------------------------------------------------
class Calls:
    """A run's progress, as the calls it got."""

    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, args))


@pytest.mark.integration
def test_shards_hold_whole_sessions_in_time_order_with_their_history(events, tmp_path, dask_client):
    out = tmp_path / "out"
    progress = Calls()
    summary = run_job(load_job_dict(doc(events, out)), client=dask_client, progress=progress)
    assert summary.rows_written == 40 * 6 * 7 and summary.rows_conserved
    # grouping shows its progress over the source's splits, then the transform over the shards
    assert [args[0] for name, args in progress.calls if name == "phase"] == ["sessions", "transform"]
    starts = [args for name, args in progress.calls if name == "start"]
    grouped = [args[0] for name, args in progress.calls if name == "fitted"]
    assert len(starts) == 2 and starts[0][0] == len(grouped) > 1 and sum(grouped) == 1680
    assert starts[1][0] == summary.shards
    expected = reference(events, 600)
    seen_sessions: dict[tuple[int, int], int] = {}
    for shard, table in enumerate(read_rows(out)):
        assert table.num_rows <= 400
        users, times = table["user_id"].to_pylist(), table["timestamp"].to_pylist()
        runs = 1 + sum(a != b for a, b in zip(users, users[1:]))
        assert runs == len(set(users))  # each user's events together (users in key-hash order)
        for i in range(1, len(users)):
            if users[i] == users[i - 1]:
                assert times[i] >= times[i - 1]  # each user's events in time order
        items = table["item_id_history"].to_pylist()
        cats = table["category_id_history"].to_pylist()
        for user, ts, hist, cat in zip(users, times, items, cats):
            want = expected[(user, ts)]
            session = (user, want["session"])
            assert seen_sessions.setdefault(session, shard) == shard, f"session {session} is split"
            assert cat == want["categories"]
            hashed = pa.array([want["items"]], pa.list_(pa.int64()))
            assert hist == _sigrid(hashed)[0]
    assert len(seen_sessions) == 40 * 6
    plan = json.loads((out / "_sessions" / "plan.json").read_text())
    assert plan["sessions"] == 240 and plan["rows"] == 1680
    assert not [p for p in (out / "_sessions").iterdir() if p.name != "plan.json"], "pieces are removed"
    job = json.loads((out / "_job.json").read_text())
    assert job["shards"] == len(plan["shards"]) == len(list(out.glob("part-*.parquet")))


def _sigrid(lists: pa.Array) -> list:
    from recprep.op_params import SigridHashParams
    from recprep.workloads.ops.sigrid_hash import SigridHash

    return SigridHash(SigridHashParams(salt=3, max_value=1000)).transform(lists).to_pylist()


@pytest.mark.integration
def test_session_shards_are_byte_identical_with_one_and_two_workers(events, tmp_path):
    for workers in (1, 2):
        run_with_workers(doc(events, tmp_path / f"w{workers}", dedup=True), workers)
    assert shard_bytes(tmp_path / "w1") == shard_bytes(tmp_path / "w2")
    assert len(shard_bytes(tmp_path / "w1")) >= 4


@pytest.mark.integration
@pytest.mark.parametrize(
    "extra",
    [[], [{"op": "categorify", "columns": ["category_id_history", "user_id"]}]],
    ids=["stateless", "fitted"],
)
def test_dedup_is_exact_and_stores_each_session_once(events, tmp_path, dask_client, extra):
    # a fitted op on a group's features is fitted over every sample (as without dedup) and
    # applied once per session
    for name, dedup in (("plain", False), ("dedup", True)):
        d = doc(events, tmp_path / name, dedup=dedup)
        d["spec"]["transforms"] = [*TRANSFORMS, *extra]
        run_job(load_job_dict(d), client=dask_client)
    plain = sorted((tmp_path / "plain").glob("part-*.parquet"))
    dedup = sorted((tmp_path / "dedup").glob("part-*.parquet"))
    assert [p.name for p in plain] == [p.name for p in dedup]
    for a, b in zip(plain, dedup):
        stored = pq.read_table(b)
        (group,) = groups_of(stored.schema)
        assert group.columns == tuple(GROUP["features"])
        inverse = stored[group.inverse].to_numpy()
        assert group.unique == len(np.unique(inverse)) < stored.num_rows  # one row per session
        assert np.all(np.diff(inverse) >= 0)
        assert stored["item_id_history"].slice(group.unique).null_count == stored.num_rows - group.unique
        # category_id_history is left out where the session before gives it (docs/dedup.md);
        # item_id_history is hashed after the history op, and categorify rewrites the other
        if extra:
            assert group.derived == ()
        else:
            assert group.derived == (Derivation("category_id_history", "category_id", K),)
            flags = stored[group.derived[0].flags].slice(0, group.unique).to_numpy()
            assert 0 < flags.sum() < group.unique
            assert stored["category_id_history"].slice(0, group.unique).null_count == flags.sum()
        plain_table = pq.read_table(a)
        assert expand(stored).equals(plain_table.replace_schema_metadata(expand(stored).schema.metadata))
        # a plain reader still reads the per-sample columns
        assert pq.read_table(b, columns=["item_id", "engaged"]).equals(
            plain_table.select(["item_id", "engaged"])
        )


def test_derive_histories_false_stores_every_unique_row_whole_and_the_identity_says_which(events, tmp_path):
    from recprep.workloads.runner import _identity
    from recprep.workloads.tasks import prepare

    jobs = {}
    for derive in (None, True, False):
        d = doc(events, tmp_path / "o", dedup=True)
        if derive is not None:
            d["spec"]["dedup"][0]["deriveHistories"] = derive
        jobs[derive] = load_job_dict(d)
    # the default is not in the spec's identity; the run's names the lists left out, so an output
    # whose shards store every list (written before, or with false) is not resumed into others
    assert jobs[None].identity() == jobs[True].identity() != jobs[False].identity()
    plans = {derive: prepare(job)[1] for derive, job in jobs.items()}
    assert plans[None].derived == (Derivation("category_id_history", "category_id", K),)
    assert plans[False].derived == ()
    same_spec = jobs[None]
    assert _identity(same_spec, None, [], plans[None]) != _identity(same_spec, None, [], plans[False])


@pytest.mark.integration
def test_a_feature_that_varies_within_a_session_fails_naming_it_and_the_session(
    events, tmp_path, dask_client
):
    d = doc(events, tmp_path / "o", dedup=True)
    d["spec"]["dedup"] = [{"name": "user", "features": ["user_id", "category_id", "item_id_history"]}]
    d["spec"]["transforms"] = [t for t in TRANSFORMS if t["op"] != "sigrid_hash"]
    with pytest.raises(RecprepError) as info:
        run_job(load_job_dict(d), client=dask_client)
    message = str(info.value)
    assert "feature 'category_id' is not constant within a session" in message
    assert "user_id=" in message and "timestamp=" in message


@pytest.mark.integration
def test_a_session_longer_than_a_shard_is_cut_in_time_order(tmp_path, dask_client):
    # user 1: a session of 7 events, then one of 25; four users with 3 each; shards of at most 10
    source = tmp_path / "log.csv"
    lines = [f"1,{50 + i},7,pv,{100 + 10 * i}" for i in range(7)]
    lines += [f"1,{100 + i},7,pv,{10_000 + 10 * i}" for i in range(25)]
    lines += [f"{u},{200 + i},8,pv,{5000 + 10 * i}" for u in range(2, 6) for i in range(3)]
    source.write_text("\n".join(sorted(lines, key=lambda s: int(s.rsplit(",", 1)[1]))) + "\n")
    out = tmp_path / "out"
    run_job(load_job_dict(doc(source, out, rows_per_shard=10)), client=dask_client)
    tables = read_rows(out)
    long = [t.filter(pa.compute.greater_equal(t["timestamp"], 10_000)) for t in tables]
    pieces = [t for t in long if t.num_rows]
    # cut every rowsPerShard rows of its time order
    assert [p.num_rows for p in pieces] == [10, 10, 5]
    assert sum((p["timestamp"].to_pylist() for p in pieces), []) == [10_000 + 10 * i for i in range(25)]
    # every piece has the session's history: the last K events of the first session, even where
    # the shard begins more than K rows after the session did
    for p in pieces:
        assert set(map(tuple, p["category_id_history"].to_pylist())) == {(7,) * K}
        assert {tuple(h) for h in p["item_id_history"].to_pylist()} == {
            tuple(_sigrid(pa.array([[52, 53, 54, 55, 56]]))[0])
        }
    for t in tables:  # the other users' sessions are whole
        for u in range(2, 6):
            assert pa.compute.sum(pa.compute.equal(t["user_id"], u)).as_py() in (None, 0, 3)


@pytest.mark.integration
def test_malformed_times_are_quarantined_with_their_line(events, tmp_path, dask_client):
    source = tmp_path / "log.csv"
    lines = events.read_text().splitlines()
    lines[9] = lines[9].rsplit(",", 1)[0] + ",yesterday"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    summary = run_job(load_job_dict(doc(source, out)), client=dask_client)
    assert summary.rows_quarantined == 1 and summary.rows_written == len(lines) - 1
    (record,) = [json.loads(x) for f in (out / "_quarantine").iterdir() for x in f.read_text().splitlines()]
    assert record["line"] == 10 and "timestamp" in record["reason"]


@pytest.mark.integration
@pytest.mark.parametrize("field, column", [(0, "user_id"), (4, "timestamp")])
def test_an_event_without_a_key_or_time_fails_naming_the_column_and_its_line(
    events, tmp_path, dask_client, field, column
):
    source = tmp_path / "log.csv"
    lines = events.read_text().splitlines()
    lines[9] = lines[9].rsplit(",", 1)[0] + ",yesterday"  # quarantined: the lines after keep their numbers
    lines.insert(700, "")  # an empty line is no event, and is counted as a line
    values = lines[1199].split(",")
    values[field] = ""
    lines[1199] = ",".join(values)  # line 1200, in the third of the source's splits
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecprepError) as failed:
        run_job(load_job_dict(doc(source, tmp_path / "out")), client=dask_client)
    message = str(failed.value)
    assert f"{source}:1200:" in message, message
    assert f"spec.source.session.{'key' if field == 0 else 'time'}: column {column!r} is empty" in message


@pytest.mark.integration
def test_a_parquet_event_without_a_key_fails_naming_its_row_in_the_file(events, tmp_path, dask_client):
    import pyarrow.csv as pcsv

    strings = {c: pa.string() for c in ("user_id", "item_id", "category_id")}
    options = pcsv.ConvertOptions(column_types=strings)
    table = pcsv.read_csv(
        events, read_options=pcsv.ReadOptions(column_names=COLUMNS), convert_options=options
    )
    users = table["user_id"].to_pylist()
    users[1199] = None
    table = table.set_column(0, "user_id", pa.array(users, pa.string()))
    source = tmp_path / "log.parquet"
    pq.write_table(table, source, row_group_size=300)
    job = doc(source, tmp_path / "out")
    job["spec"]["source"].update(format="parquet")
    del job["spec"]["source"]["columns"]
    with pytest.raises(RecprepError, match=rf"{source}, row 1200: spec.source.session.key: column 'user_id'"):
        run_job(load_job_dict(job), client=dask_client)


@pytest.mark.integration
def test_a_second_run_reuses_the_sessions_and_commits_nothing_twice(events, tmp_path, dask_client):
    out = tmp_path / "out"
    job = load_job_dict(doc(events, out, dedup=True))
    first = run_job(job, client=dask_client)
    before = shard_bytes(out)
    # a shard lost after the pieces were removed: the next run stages again and redoes only it
    (out / "part-00001.parquet").unlink()
    second = run_job(job, client=dask_client)
    assert second.shards_skipped == first.shards - 1
    assert shard_bytes(out) == before
    ledger = [json.loads(x)["shard"] for x in (out / "_ledger.jsonl").read_text().splitlines()]
    assert sorted(set(ledger)) == list(range(first.shards))


def test_history_is_the_values_of_the_keys_last_k_events_before_the_session_nulls_left_out():
    from recprep.op_params import HistoryParams
    from recprep.workloads.ops.history import History

    rng = np.random.default_rng(5)
    n = 400
    key_run = np.cumsum(rng.random(n) < 0.1).astype(np.int32) + 1
    session_run = np.cumsum((rng.random(n) < 0.3) | np.r_[True, key_run[1:] != key_run[:-1]]).astype(np.int32)
    values = [None if rng.random() < 0.2 else int(v) for v in rng.integers(0, 50, n)]
    lists = History(HistoryParams(k=3, output="h")).session_lists(
        pa.array(values, pa.int64()), key_run, session_run
    )
    want = []
    for i in range(n):  # row by row: the session's first row, then its key's valid values before it
        if i == 0 or session_run[i] != session_run[i - 1]:
            start = i
            first_of_key = max(j for j in range(i + 1) if j == 0 or key_run[j] != key_run[j - 1])
            window = values[max(first_of_key, start - 3) : start]  # the key's last 3 events before
            want.append([v for v in window if v is not None])
    assert lists.to_pylist() == want and len(want) == session_run[-1]


@pytest.mark.integration
def test_training_a_deduplicated_job_through_the_shard_service_matches_the_plain_job(
    events, tmp_path, dask_client
):
    pytest.importorskip("torch")
    from recprep.delivery.service import ShardServer
    from recprep.delivery.shards import ServiceShards
    from recprep.train.config import TrainConfig
    from recprep.train.loop import train

    hashed = {"op": "sigrid_hash", "columns": ["user_id", "item_id", "category_id", "category_id_history"]}
    outputs = {}
    for name, dedup in (("plain", False), ("dedup", True)):
        d = doc(events, tmp_path / name, dedup=dedup)
        d["spec"]["transforms"] = [*TRANSFORMS, {**hashed, "salt": 1, "maxValue": 1000}]
        run_job(load_job_dict(d), client=dask_client)
        outputs[name] = tmp_path / name

    runs = {}
    # served: every epoch's shard order is seeded by shard index, so both runs see the same batches
    # (a directory streams in commit order, which varies); SGD: Adagrad's first steps divide by
    # near-zero gradient sums and blow up the rounding of the deduplicated backward's other order
    for name, out in outputs.items():
        with ShardServer(str(out), state_dir=str(tmp_path / f"state-{name}")) as server:
            runs[name] = train(
                TrainConfig(ServiceShards(server.location), batch_size=64, optimizer="sgd", lr=0.5, seed=3)
            )
    plain, deduped = runs["plain"], runs["dedup"]
    assert deduped.report.samples == plain.report.samples == 1680
    assert len(deduped.tables) == len(plain.tables) == 6
    for a, b in zip(plain.tables, deduped.tables):
        assert float((a - b).abs().max()) < 1e-5 < float(a.abs().max())


def test_a_shard_keeps_only_the_dictionary_entries_its_rows_use():
    from recprep.workloads.sessions import compact, take

    a = pa.array(["x", "y", "z", None, "y"]).dictionary_encode()
    b = pa.array(["w", "z", "v"]).dictionary_encode()
    col = pa.chunked_array([a, b]).take(pa.array([1, 5, 3, 4, 6]))
    out = compact(pa.table({"c": col, "n": pa.array([1, 2, 3, 4, 5])}))
    assert out["c"].to_pylist() == ["y", "w", None, "y", "z"] and out["c"].num_chunks == 1
    assert sorted(out["c"].chunk(0).dictionary.to_pylist()) == ["w", "y", "z"]  # not x, nor v
    assert (
        out["n"].to_pylist() == [1, 2, 3, 4, 5]
        and out.schema == pa.table({"c": col, "n": pa.array([1, 2, 3, 4, 5])}).schema
    )
    # a few rows of a large dictionary (pruned by sorting the rows' indices, not by a bitmap)
    big = pa.array([f"v{i}" for i in range(100)] + [None]).dictionary_encode(null_encoding="mask")
    table = pa.table({"c": pa.chunked_array([big, b]), "n": pa.array(range(104))})
    out = take(table, np.array([100, 7, 103, 7, 42]))
    assert out["c"].to_pylist() == [None, "v7", "v", "v7", "v42"] and out["n"].to_pylist() == [
        100,
        7,
        103,
        7,
        42,
    ]
    assert sorted(out["c"].chunk(0).dictionary.to_pylist()) == ["v", "v42", "v7"]


@pytest.mark.parametrize("seed", range(4))
def test_a_splits_pieces_are_what_take_makes_of_each_partitions_rows(seed):
    from recprep.workloads.sessions import split_by_partition, take

    rng = np.random.default_rng(seed)
    n, partitions = 300, 7
    words = [f"w{i}" for i in range(60)]
    chunks = []
    for size in (120, 180):  # two chunks, each its own dictionary (as a read of two blocks makes)
        values = [
            None if rng.random() < 0.1 else words[rng.integers(0, 60 if seed else 3)] for _ in range(size)
        ]
        chunks.append(pa.array(values).dictionary_encode())
    table = pa.table(
        {
            "c": pa.chunked_array(chunks),
            "n": pa.array(rng.integers(0, 1000, n)),
            "s": pa.array([None if i % 9 == 0 else f"s{i}" for i in range(n)]),
        }
    )
    part = rng.integers(0, partitions - 1, n)  # the last partition gets no rows
    pieces = split_by_partition(table, part, partitions)
    assert [p for p, _ in pieces] == sorted(set(part.tolist()))
    for p, piece in pieces:
        want = take(table, np.flatnonzero(part == p))
        assert piece.schema == want.schema and piece.equals(want)
        got, expected = piece["c"].chunk(0), want["c"].chunk(0)
        assert got.dictionary.equals(expected.dictionary) and got.indices.equals(expected.indices)
