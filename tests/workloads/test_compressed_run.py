"""A job on a compressed input (gzip; zstd of one frame) writes the same shards, byte for byte,
as the same job on the input uncompressed: many shards (not one), planned once, on a Dask
cluster of 2 workers; a rerun reuses the plan (and a one-frame file's splits written again as
frames of their own)."""

from __future__ import annotations

import gzip
import json
import re

import pytest
import zstandard

from recprep.spec import load_job_dict
from recprep.workloads.output import read_commits
from recprep.workloads.output.layout import INDEX_DIR
from recprep.workloads.runner import run_job
from recprep.workloads.sources import compressed

from ..conftest import job_doc


@pytest.mark.integration
@pytest.mark.parametrize("name", ["day.tsv.gz", "day.tsv.zst"])
def test_a_compressed_input_writes_the_shards_of_the_same_input_uncompressed(
    criteo_lines, tmp_path, dask_client, name, monkeypatch
):
    text = b"".join(criteo_lines) * 12  # 120,000 real Criteo rows
    plain, packed = tmp_path / "day.tsv", tmp_path / name
    plain.write_bytes(text)
    compress = (
        (lambda t: gzip.compress(t, 6)) if name.endswith(".gz") else zstandard.ZstdCompressor().compress
    )
    packed.write_bytes(compress(text))  # zstd: one frame, as the zstd tool writes a file
    outputs = {}
    for path in (plain, packed):
        doc = job_doc(str(path), str(tmp_path / f"out-{path.name}"))
        doc["spec"]["output"]["rowsPerShard"] = 8192
        summary = run_job(load_job_dict(doc), client=dask_client)
        assert summary.rows_written == 120_000 and summary.rows_quarantined == 0
        outputs[path.name] = tmp_path / f"out-{path.name}"
    ours = sorted(outputs[name].glob("part-*.parquet"))
    theirs = sorted(outputs["day.tsv"].glob("part-*.parquet"))
    assert 12 <= len(ours) == len(theirs) <= 18  # ~120,000 / 8,192, as the plain file's
    for a, b in zip(ours, theirs):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    kept = sorted(p.suffix for p in (outputs[name] / INDEX_DIR).iterdir())
    if name.endswith(".gz"):
        assert kept == [".gzidx", ".json"]  # the plan and index the shard tasks read
    else:  # the plan, and the splits after the first written again as frames of their own
        assert kept == [".json", ".zst"]
        (plan,) = (outputs[name] / INDEX_DIR).glob("*.json")
        assert len(json.loads(plan.read_text())["frames"]) == len(ours) - 1
    # a second run over the same output resumes: nothing left to do, the plan is reused (no pass)
    for pass_ in ("_gzip_pass", "_member_blocks"):
        monkeypatch.setattr(compressed, pass_, lambda *a, **k: pytest.fail("planned again"))
    again = run_job(load_job_dict(doc), client=dask_client)
    assert again.shards_skipped == len(ours) and again.rows_processed == 0


@pytest.mark.integration
@pytest.mark.parametrize("decode", ["splits", "once"])
def test_a_source_of_several_compressed_days_writes_the_shards_of_the_same_days_uncompressed(
    criteo_lines, tmp_path, dask_client, decode
):
    """Three days, one each of gzip, bz2 and xz, planned at once (``compressed.plan_files``, as
    many passes as the cores allow) or each decoded once by a task of its own
    (``decode_once``, what the policy takes for 3 files on 2 workers): the shards of the same
    three days uncompressed."""
    import bz2
    import lzma

    packers = [lambda t: gzip.compress(t, 6), bz2.compress, lambda t: lzma.compress(t, preset=1)]
    for i, (suffix, pack) in enumerate(zip([".gz", ".bz2", ".xz"], packers)):
        text = b"".join(criteo_lines[i * 3000 :] + criteo_lines[: i * 3000]) * 4  # 40,000 rows a day
        for folder, data in (("plain", text), ("packed", pack(text))):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / f"day_{i}.tsv{suffix if folder == 'packed' else ''}").write_bytes(data)
    outputs = []
    for folder in ("plain", "packed"):
        doc = job_doc(str(tmp_path / folder), str(tmp_path / f"out-{folder}"))
        doc["spec"]["output"]["rowsPerShard"] = 8192
        summary = run_job(
            load_job_dict(doc), client=dask_client, decode="splits" if folder == "plain" else decode
        )
        assert summary.rows_written == 120_000 and summary.rows_quarantined == 0
        outputs.append(shards_by_number(tmp_path / f"out-{folder}"))
    plain, packed = outputs
    assert 15 <= len(packed) == len(plain) <= 21  # ~40,000 / 8,192 a day, each day cut on its own
    for (a, a_bytes), (b, b_bytes) in zip(plain, packed):
        assert a_bytes == b_bytes
        if decode == "splits":
            assert a == b
        else:  # named by (day, split in the day)
            assert re.fullmatch(r"part-0000[012]-[0-9]{5}\.parquet", b), b
    plans = [json.loads(p.read_text()) for p in (tmp_path / "out-packed" / INDEX_DIR).glob("*.json")]
    assert len(plans) == 3 and {p["seekable"] for p in plans} == {decode == "splits"}


def shards_by_number(output) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each committed shard of ``output``, in shard order."""
    records = sorted(read_commits(str(output)), key=lambda r: r.shard)
    assert [r.shard for r in records] == list(range(len(records)))
    return [(r.file, (output / r.file).read_bytes()) for r in records]
