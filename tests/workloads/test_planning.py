"""Planning passes on the job's workers (``workloads.planning``): a driver given a cluster has
its workers decompress the compressed files to plan them, reads the plans kept, and plans
itself when the cluster has had no worker for longer than ``orphaned``."""

from __future__ import annotations

import gzip
import logging

import fsspec
import pytest

from recprep.errors import SourceError
from recprep.spec import load_job_dict
from recprep.workloads.output.layout import INDEX_DIR
from recprep.workloads.planning import WorkerPasses
from recprep.workloads.runner import run_job
from recprep.workloads.sources import compressed
from recprep.workloads.sources.compressed import IndexStore, passes_run_by, plan_files

from ..conftest import failpoint_cluster, job_doc


def _days(criteo_lines, folder, n=2, rows=20_000):
    folder.mkdir()
    paths = []
    for i in range(n):
        lines = criteo_lines[i * 1000 :] + criteo_lines[: i * 1000]  # each day other text
        text = b"".join((lines * (rows // len(lines) + 1))[:rows])
        path = folder / f"day_{i}.tsv.gz"
        path.write_bytes(gzip.compress(text, 1))
        paths.append(str(path))
    return paths


def _no_pass_here(monkeypatch):
    """This process (the driver) fails if it decompresses a file to plan it (a worker process
    does not see the patch)."""
    monkeypatch.setattr(compressed, "_gzip_pass", lambda *a, **k: pytest.fail("planned in the driver"))


@pytest.mark.integration
def test_a_driver_given_a_cluster_has_its_workers_plan_the_compressed_files(
    criteo_lines, tmp_path, dask_client, monkeypatch
):
    _days(criteo_lines, tmp_path / "days")
    doc = job_doc(str(tmp_path / "days"), str(tmp_path / "out"))
    doc["spec"]["output"]["rowsPerShard"] = 4096
    # read by splits (two files on two workers would each be decoded once: ``decode_once``)
    embedded = run_job(load_job_dict(doc), output=str(tmp_path / "embedded"), workers=1, decode="splits")
    _no_pass_here(monkeypatch)
    summary = run_job(load_job_dict(doc), client=dask_client, decode="splits")
    assert summary.rows_written == embedded.rows_written == 40_000
    ours = sorted((tmp_path / "out").glob("part-*.parquet"))
    theirs = sorted((tmp_path / "embedded").glob("part-*.parquet"))
    assert len(ours) == len(theirs) >= 8
    for a, b in zip(ours, theirs):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    assert len(list((tmp_path / "out" / INDEX_DIR).glob("*.gzidx"))) == 2  # kept where the tasks read


def test_only_the_files_without_a_kept_plan_are_given_to_the_runner(criteo_lines, tmp_path):
    paths = _days(criteo_lines, tmp_path / "days", rows=5_000)
    store, fs = IndexStore(str(tmp_path / "index")), fsspec.filesystem("file")
    given = []

    def run(fs_, todo, infos, header, rows, directory):
        given.append(list(todo))
        assert directory == store.directory and [i["name"] for i in infos] == todo
        return None  # nowhere to run them: the driver plans them

    plan_files(fs, paths[:1], False, 1024, store)  # the first day's plan is kept already
    with passes_run_by(run):
        layouts = plan_files(fs, paths, False, 1024, store)
        assert given == [paths[1:]]
        assert plan_files(fs, paths, False, 1024, store) == layouts  # both kept: nothing to run
        assert given == [paths[1:]]
        plan_files(fs, paths, False, 2048, store)  # another cut rule: planned again
        assert given == [paths[1:], paths]


@pytest.mark.integration
def test_a_cluster_without_workers_for_a_while_leaves_the_passes_to_the_driver(
    criteo_lines, tmp_path, monkeypatch
):
    from distributed import Client, LocalCluster

    paths = _days(criteo_lines, tmp_path / "days", rows=5_000)
    fs = fsspec.filesystem("file")
    made = []
    real = compressed.plan_file
    monkeypatch.setattr(compressed, "plan_file", lambda *a, **k: made.append(a[1]) or real(*a, **k))
    with (
        LocalCluster(
            n_workers=0, processes=False, dashboard_address=":0", silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        with passes_run_by(WorkerPasses(client, orphaned=0.3)):
            layouts = plan_files(fs, paths, False, 1024, IndexStore(str(tmp_path / "a")))
        assert sorted(made) == sorted(paths) and [len(x.bounds) for x in layouts] == [6, 6]
        assert not client.who_has()  # the passes given out were cancelled
        # a cluster that had a worker when the passes were given out and lost it: after
        # ``orphaned`` seconds without one (counted from then), the driver plans them
        made.clear()
        passes = WorkerPasses(client, orphaned=0.3)
        looks = iter([1])
        monkeypatch.setattr(passes, "_workers", lambda: next(looks, 0))
        with passes_run_by(passes):
            again = plan_files(fs, paths, False, 1024, IndexStore(str(tmp_path / "b")))
        assert sorted(made) == sorted(paths)
        assert [x.bounds for x in again] == [x.bounds for x in layouts]
        assert not client.who_has()  # the passes given out were cancelled


@pytest.mark.integration
def test_a_damaged_file_planned_on_a_worker_is_named_in_the_error(criteo_lines, tmp_path, dask_client):
    paths = _days(criteo_lines, tmp_path / "days", rows=5_000)
    with open(paths[1], "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)  # cut short in the middle of its deflate stream
    fs = fsspec.filesystem("file")
    with passes_run_by(WorkerPasses(dask_client)), pytest.raises(SourceError, match="day_1.tsv.gz"):
        plan_files(fs, paths, False, 1024, IndexStore(str(tmp_path / "index")))


def _cluster_whose_first_pass_kills_its_worker(tmp_path, allowed_failures: int):
    from recprep.workloads.planning import FAILPOINT

    return failpoint_cluster(tmp_path, FAILPOINT, allowed_failures)


@pytest.mark.integration
def test_a_worker_killed_in_a_pass_has_the_pass_run_again_elsewhere(criteo_lines, tmp_path, monkeypatch):
    from distributed import Client

    paths = _days(criteo_lines, tmp_path / "days", rows=5_000)
    fs = fsspec.filesystem("file")
    _no_pass_here(monkeypatch)
    with _cluster_whose_first_pass_kills_its_worker(tmp_path, 3) as cluster, Client(cluster) as client:
        with passes_run_by(WorkerPasses(client)):
            layouts = plan_files(fs, paths, False, 1024, IndexStore(str(tmp_path / "index")))
    assert (tmp_path / "fired").exists()  # a worker died in a pass
    assert len(layouts) == 2 and all(len(x.bounds) > 3 for x in layouts)


@pytest.mark.integration
def test_a_pass_that_kills_its_workers_is_an_error_naming_its_file(criteo_lines, tmp_path):
    from distributed import Client

    paths = _days(criteo_lines, tmp_path / "days", n=1, rows=5_000)
    fs = fsspec.filesystem("file")
    with _cluster_whose_first_pass_kills_its_worker(tmp_path, 0) as cluster, Client(cluster) as client:
        with passes_run_by(WorkerPasses(client)), pytest.raises(SourceError) as err:
            plan_files(fs, paths, False, 1024, IndexStore(str(tmp_path / "index")))
    assert str(err.value).startswith(f"{paths[0]}: cannot plan its splits: every worker")
