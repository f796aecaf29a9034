"""Following a job output's ledger, and refusing directories that are not job outputs."""

from __future__ import annotations

import json

import pytest

from recprep.delivery.service.committed import CommittedShards
from recprep.delivery.service.errors import ShardServiceError


def make_output(path, shards=3, identity="x" * 64):
    path.mkdir(exist_ok=True)
    (path / "_job.json").write_text(json.dumps({"identity": identity, "name": "j", "shards": shards}))
    return path


def commit(path, shard, rows=10):
    name = f"part-{shard:05d}.parquet"
    (path / name).write_bytes(b"")
    with (path / "_ledger.jsonl").open("a") as f:
        f.write(json.dumps({"shard": shard, "file": name, "rows": rows, "sha256": None}) + "\n")


def test_not_a_job_output(tmp_path):
    with pytest.raises(ShardServiceError, match="does not exist"):
        CommittedShards(str(tmp_path / "missing"))
    with pytest.raises(ShardServiceError, match=r"not a recprep job output \(no _job.json\)"):
        CommittedShards(str(tmp_path))
    (tmp_path / "_job.json").write_text("{not json")
    with pytest.raises(ShardServiceError, match="_job.json: unreadable"):
        CommittedShards(str(tmp_path))
    (tmp_path / "_job.json").write_text(json.dumps({"identity": "x"}))
    with pytest.raises(ShardServiceError, match="no planned shard count"):
        CommittedShards(str(tmp_path))


def test_new_lines_are_picked_up_and_a_half_written_line_waits(tmp_path):
    out = make_output(tmp_path / "out")
    c = CommittedShards(str(out))
    assert c.entries == {} and not c.complete
    commit(out, 1)
    with (out / "_ledger.jsonl").open("a") as f:
        f.write('{"shard": 0, "file": "part-00000.parquet", ')  # the driver is mid-append
    (out / "part-00000.parquet").write_bytes(b"")
    assert c.refresh() and c.order == [1]
    with (out / "_ledger.jsonl").open("a") as f:
        f.write('"rows": 5, "sha256": null}\n')
    commit(out, 1)  # a shard recorded twice is one shard
    commit(out, 2)
    assert c.refresh() and c.order == [1, 0, 2] and c.complete and c.entries[0].rows == 5


def test_a_replaced_output_is_an_error_for_the_streams(tmp_path):
    out = make_output(tmp_path / "out")
    commit(out, 0)
    c = CommittedShards(str(out))
    (out / "_ledger.jsonl").unlink()  # recprep run --overwrite of another job
    make_output(out, identity="y" * 64)
    assert not c.refresh()
    assert c.error and "replaced by another job" in c.error


def test_same_job_rewritten_is_followed_again(tmp_path):
    out = make_output(tmp_path / "out")
    commit(out, 0)
    c = CommittedShards(str(out))
    (out / "_ledger.jsonl").unlink()  # recprep run --overwrite of the same job
    commit(out, 1)
    c.refresh()
    assert c.error is None and c.order == [0, 1]


def test_a_ledger_rewritten_in_place_is_noticed(tmp_path):
    # same inode, already longer than what was read: only its content tells it was rewritten
    out = make_output(tmp_path / "out")
    commit(out, 0)
    c = CommittedShards(str(out))
    (out / "part-00001.parquet").write_bytes(b"")
    (out / "part-00002.parquet").write_bytes(b"")
    lines = [
        json.dumps({"shard": s, "file": f"part-{s:05d}.parquet", "rows": 10, "sha256": None}) for s in (2, 1)
    ]
    with (out / "_ledger.jsonl").open("r+") as f:
        f.write("\n".join(lines) + "\n")
    c.refresh()
    assert c.error is None and sorted(c.order) == [0, 1, 2]
