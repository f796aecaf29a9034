"""Compressed inputs are split like the same text uncompressed: the same cuts, the same bytes per
split, the same line numbers, for gzip (one member or several), bz2, xz and zstd; the plan and
index are made once and reused; a task reads its split with memory bounded by the split."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
import textwrap

import fsspec
import fsspec.implementations.local
import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from recprep.errors import SourceError
from recprep.spec import load_job_dict
from recprep.workloads.sources import compressed, open_source
from recprep.workloads.sources.cuts import StreamCutter, seek_bounds, target

from ...conftest import job_doc


def criteo_text(rows: int, seed: int = 0) -> bytes:
    """Criteo-shaped lines: a label, 13 integers (some empty), 26 hex IDs (some empty)."""
    rng = np.random.default_rng(seed)
    ints = rng.integers(0, 5000, (rows, 13)).astype(str)
    ints[rng.random((rows, 13)) < 0.2] = ""
    cats = np.char.mod("%08x", rng.integers(0, 1 << 31, (rows, 26)))
    cats[rng.random((rows, 26)) < 0.1] = ""
    label = rng.integers(0, 2, (rows, 1)).astype(str)
    fields = np.concatenate([label, ints, cats], axis=1)
    return ("\n".join("\t".join(r) for r in fields.tolist()) + "\n").encode()


def thirds(text: bytes) -> list[bytes]:
    """The text in three pieces cut at line ends (one compressed member each)."""
    a = text.rfind(b"\n", 0, len(text) // 3) + 1
    b = text.rfind(b"\n", 0, 2 * len(text) // 3) + 1
    return [text[:a], text[a:b], text[b:]]


def zstd_frames(text: bytes) -> bytes:
    c = zstandard.ZstdCompressor(level=3)
    return b"".join(c.compress(p) for p in thirds(text))


CODECS = {
    "data.tsv.gz": lambda t: gzip.compress(t, 6),
    "members.tsv.gz": lambda t: b"".join(gzip.compress(p, 6) for p in thirds(t)),
    "data.tsv.bz2": lambda t: b"".join(bz2.compress(p) for p in thirds(t)),
    "data.tsv.xz": lambda t: lzma.compress(t, preset=1),
    "data.tsv.zst": zstd_frames,
    "one-frame.tsv.zst": zstandard.ZstdCompressor(level=3).compress,
}


def source(path, index_dir, **fields):
    doc = job_doc(str(path), "unused", transforms=[], **fields)
    return open_source(load_job_dict(doc).spec.source, index_dir=str(index_dir))


@pytest.fixture(scope="module")
def text() -> bytes:
    return criteo_text(24000)  # ~4.5 MB: several gzip seek points, a sample of 1 MiB


@pytest.mark.parametrize("name", list(CODECS))
def test_a_compressed_file_is_split_where_the_same_text_uncompressed_is(tmp_path, text, name, monkeypatch):
    monkeypatch.setattr(compressed, "CHUNK", (64 << 10, 64 << 10))  # many seek points in 4.5 MB
    monkeypatch.setattr(compressed, "CHUNK_ONE_THREAD", 64 << 10)
    plain = tmp_path / "data.tsv"
    plain.write_bytes(text)
    packed = tmp_path / name
    packed.write_bytes(CODECS[name](text))
    a, b = source(plain, tmp_path / "idx"), source(packed, tmp_path / "idx")
    ours, theirs = b.splits(1000), a.splits(1000)
    assert len(ours) == len(theirs) > 24000 // 1000 - 2
    assert [(s.start, s.stop) for s in ours] == [(s.start, s.stop) for s in theirs]
    for x, y in zip(ours, theirs):
        assert b._bytes(x) == a._bytes(y)
        assert b._first_line(x) == a._first_line(y)
        assert x.est_rows == a._bytes(y).count(b"\n")  # its exact rows (counted by the pass)
    for x, y in [(ours[0], theirs[0]), (ours[-1], theirs[-1])]:
        assert b.read(x).table.equals(a.read(y).table)
    if name.endswith(".gz"):  # the kept index holds one seek point per split start, not all
        (index,) = (tmp_path / "idx").glob("*.gzidx")
        points = int.from_bytes(index.read_bytes()[31:35], "little")
        assert 1 < points <= len(ours)
    else:
        (plan,) = (tmp_path / "idx").glob("*.json")
        plan = json.loads(plan.read_text())
        if name.endswith(".bz2"):  # where each ~900 kB block of text starts, across the 3 streams
            assert len(plan["blocks"]) >= 6 and plan["members"] == []
        else:  # a split no member starts in front of is written again as a frame of its own
            one = name.endswith(".xz") or name.startswith("one-frame")
            assert len(plan["members"]) == (1 if one else 3)
            members = [m[1] for m in plan["members"]]
            alone = [
                s.start for p, s in zip(ours, ours[1:]) if not any(p.start < m <= s.start for m in members)
            ]
            assert [f[0] for f in plan["frames"]] == alone
            assert len(alone) == (len(ours) - 1 if one else len(ours) - 3)


@pytest.mark.parametrize("name", list(CODECS))
def test_a_file_shorter_than_the_sample_is_split_as_its_text_is(tmp_path, name):
    # 300 rows (60 kB), less than the 1 MiB the cut rule samples: the pass must count its text
    # (a gzip file's end check took it for empty: "cannot decompress it (its text ends at byte N, not 0)")
    text = criteo_text(300, seed=2)
    plain, packed = tmp_path / "small.tsv", tmp_path / name.replace("data", "small")
    plain.write_bytes(text)
    packed.write_bytes(CODECS[name](text))
    a, b = source(plain, tmp_path / "idx"), source(packed, tmp_path / "idx")
    ours, theirs = b.splits(50), a.splits(50)
    assert len(ours) == len(theirs) > 4
    assert [(s.start, s.stop) for s in ours] == [(s.start, s.stop) for s in theirs]
    assert b"".join(b._bytes(x) for x in ours) == text


@pytest.mark.parametrize("name", ["data.tsv.xz", "one-frame.tsv.zst"])
def test_the_tasks_of_a_one_member_file_read_their_own_frame_not_the_file(tmp_path, text, name):
    """A file of one xz stream or zstd frame would make every task decompress the file from its
    start (a job's time growing with the file's size squared): the planning pass writes each
    split after the first again as a zstd frame of its own, and a task reads only that. Proved
    by destroying the file after the plan (same size and time: the plan still holds): every
    split but the first still reads the same bytes as the text uncompressed."""
    plain, packed = tmp_path / "data.tsv", tmp_path / name
    plain.write_bytes(text)
    packed.write_bytes(CODECS[name](text))
    a = source(plain, tmp_path / "idx")
    theirs = a.splits(1000)
    ours = source(packed, tmp_path / "idx").splits(1000)
    (copy,) = (tmp_path / "idx").glob("*.frames.zst")
    assert copy.stat().st_size < len(text) / 1.5  # compressed (random hex IDs: about 2x)
    stat = packed.stat()
    packed.write_bytes(b"\0" * stat.st_size)
    os.utime(packed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    b = source(packed, tmp_path / "idx")  # a worker: the plan from the store
    assert len(ours) == len(theirs) > 20
    for x, y in zip(ours[1:], theirs[1:]):
        assert b._bytes(x) == a._bytes(y)
    assert b.read(ours[-1]).table.equals(a.read(theirs[-1]).table)
    with pytest.raises(SourceError, match=name):  # the first split reads the file, now damaged
        b.read(ours[0])


def test_a_frame_damaged_in_the_store_fails_its_task_naming_the_copy(tmp_path, text):
    """The frames are written with zstd's content checksum: a byte changed in the copy (a
    literal, which decompresses without complaint) is caught by that checksum, not read as
    other text."""
    packed = tmp_path / "one-frame.tsv.zst"
    packed.write_bytes(CODECS["one-frame.tsv.zst"](text))
    ours = source(packed, tmp_path / "idx").splits(1000)
    (copy,) = (tmp_path / "idx").glob("*.frames.zst")
    (plan,) = (tmp_path / "idx").glob("*.json")
    _, _, offset, length = json.loads(plan.read_text())["frames"][-1]
    data = bytearray(copy.read_bytes())
    data[offset + length // 2] ^= 0x20  # mid-frame: inside the compressed blocks
    copy.write_bytes(bytes(data))
    b = source(packed, tmp_path / "idx")
    with pytest.raises(SourceError, match=r"frames\.zst"):
        b.read(ours[-1])


def test_a_gzip_split_starts_mid_block_at_every_bit_offset(tmp_path, monkeypatch):
    """Seek points fall anywhere inside a byte; reading from each gives the plain text."""
    monkeypatch.setattr(compressed, "CHUNK", (16 << 10, 16 << 10))
    monkeypatch.setattr(compressed, "CHUNK_ONE_THREAD", 16 << 10)
    text = criteo_text(12000, seed=3)
    path = tmp_path / "data.tsv.gz"
    path.write_bytes(gzip.compress(text, 9))
    src = source(path, tmp_path / "idx")
    src.splits(100)
    layout = src._layout(str(path))
    (index,) = (tmp_path / "idx").glob("*.gzidx")
    data = index.read_bytes()
    points = compressed._Gzidx.parse(lambda offset, length: data[offset : offset + length]).points
    assert len({p[2] for p in points}) >= 6  # many bit offsets among the kept points
    for p in points:
        start = p[1]
        assert (
            compressed.read_range(src.fs, str(path), layout, src.store, start, start + 5000)
            == (text[start : start + 5000])
        )


def test_the_plan_is_made_once_and_remade_when_the_file_changes(tmp_path, text, monkeypatch):
    path = tmp_path / "data.tsv.gz"
    path.write_bytes(gzip.compress(text, 1))
    first = source(path, tmp_path / "idx").splits(2000)

    def no_pass(*args, **kwargs):
        raise AssertionError("the file was decompressed again")

    with monkeypatch.context() as m:
        m.setattr(compressed, "_gzip_pass", no_pass)
        again = source(path, tmp_path / "idx")  # a resumed run, a worker: the kept plan
        assert again.splits(2000) == first
        assert again._bytes(first[3]) == text[first[3].start : first[3].stop]
    shorter = text[: text.rfind(b"\n", 0, len(text) // 2) + 1]
    path.write_bytes(gzip.compress(shorter, 1))
    os.utime(path, (1, 1))
    assert source(path, tmp_path / "idx").splits(2000)[-1].stop == len(shorter)


def test_a_plan_removed_between_two_runs_of_one_process_is_made_again(tmp_path, text):
    import shutil

    path = tmp_path / "data.tsv.gz"
    path.write_bytes(gzip.compress(text, 1))
    src = source(path, tmp_path / "idx")
    first = src.splits(2000)
    shutil.rmtree(tmp_path / "idx")  # the output removed; the same process plans the job again
    assert src.splits(2000) == first
    fresh = source(path, tmp_path / "idx")  # a worker: finds the plan on disk
    assert fresh._bytes(first[-1]) == text[first[-1].start :]


def test_a_worker_without_the_plan_is_told_where_it_should_be(tmp_path, text):
    path = tmp_path / "data.tsv.gz"
    path.write_bytes(gzip.compress(text, 1))
    split = source(path, tmp_path / "planned").splits(2000)[2]
    with pytest.raises(SourceError, match=r"data.tsv.gz: its index is not in .*elsewhere"):
        source(path, tmp_path / "elsewhere").read(split)


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("data.tsv.gz", lambda b: b[: len(b) // 2], "truncated"),
        ("data.tsv.gz", lambda b: b"not gzip at all\n" * 10, "Not a gzipped file"),
        ("data.tsv.bz2", lambda b: b[: len(b) // 2], "ended before the end-of-stream"),
        ("data.tsv.bz2", lambda b: b"not bz2 at all\n" * 10, "Invalid data stream"),
        ("data.tsv.xz", lambda b: b[:100] + b"\0" * 50 + b[150:], "Corrupt input data"),
        # cut in the last 8 bytes (CRC, size), or a wrong size there: rapidgzip's RuntimeError
        # was raised as it is
        ("data.tsv.gz", lambda b: b[:-1], "ended before the end-of-stream"),
        ("data.tsv.gz", lambda b: b[:-4] + bytes([b[-4] ^ 1]) + b[-3:], "Incorrect length"),
        # zstandard's ZstdError was raised as it is
        ("data.tsv.zst", lambda b: b"not zstd at all\n" * 10, "Unknown frame descriptor"),
        ("data.tsv.zst", lambda b: b + b"garbage", "Unknown frame descriptor"),
        # null bytes after a frame: the planning pass read on past them, then a split task
        # reading across frames failed on them (zstd's tool refuses them too)
        ("data.tsv.zst", lambda b: b + b"\0" * 8, "Unknown frame descriptor"),
        # bytes after the last bz2 stream that are not another: rapidgzip stopped there, its
        # warning aside, as at the end of the text
        ("data.tsv.bz2", lambda b: b + b"garbage", "not bz2"),
    ],
)
def test_a_damaged_compressed_file_is_one_error_naming_it(tmp_path, text, name, damage, message):
    path = tmp_path / name
    path.write_bytes(damage(CODECS[name](text)))
    with pytest.raises(SourceError, match=rf"{name}: cannot .*{message}"):
        src = source(path, tmp_path / "idx")
        for split in src.splits(2000):
            src.read(split)


def test_bz2_streams_after_null_padding_are_an_error_not_left_out(tmp_path, text):
    # rapidgzip stops at the null bytes with a warning on stderr: the job wrote the first
    # stream's rows only, and said nothing
    a, b, c = thirds(text)
    path = tmp_path / "data.tsv.bz2"
    path.write_bytes(bz2.compress(a) + b"\0" * 100 + bz2.compress(b) + bz2.compress(c))
    with pytest.raises(SourceError, match=r"data.tsv.bz2: cannot read it whole .*null bytes at byte \d+"):
        source(path, tmp_path / "idx").splits(2000)
    path.write_bytes(bz2.compress(text) + b"\0" * 100)  # null bytes at the end: padding
    assert sum(s.stop - s.start for s in source(path, tmp_path / "idx").splits(2000)) == len(text)


@pytest.mark.parametrize("name", list(CODECS))
def test_an_empty_file_has_no_splits(tmp_path, name):
    # gzip: rapidgzip refused a file of 0 bytes ("Failed to detect a valid file format"), where
    # the other codecs, and Python's gzip, read no text
    path = tmp_path / name
    path.write_bytes(b"")
    assert source(path, tmp_path / "idx").splits(100) == []


@pytest.mark.parametrize("name", ["data.csv.zst", "data.csv.gz", "data.csv.bz2", "data.csv.xz"])
def test_the_header_of_a_compressed_csv_is_read_from_its_text(tmp_path, name):
    # zstd: fsspec's reader has no readline ("cannot read the header of it (UnsupportedOperation)");
    # a first frame that is a skippable one holds no text
    rows = [f"{i % 2},{i * 3},{i:08x}" for i in range(3000)]
    text = ("label,I1,C1\n" + "\n".join(rows) + "\n").encode()
    data = CODECS[name.replace("csv", "tsv")](text)
    if name.endswith(".zst"):
        data = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"skip" + data
    plain, packed = tmp_path / "data.csv", tmp_path / name
    plain.write_bytes(text)
    packed.write_bytes(data)
    fields = {"format": "csv", "header": True, "label": "label", "dense": ["I1"], "sparse": ["C1"]}
    a, b = source(plain, tmp_path / "idx", **fields), source(packed, tmp_path / "idx", **fields)
    assert b.names == a.names == ["label", "I1", "C1"]
    ours, theirs = b.splits(500), a.splits(500)
    assert len(ours) == len(theirs) > 3
    for x, y in zip(ours, theirs):
        assert b.read(x).table.equals(a.read(y).table)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=120),
    trailing=st.booleans(),
    header=st.booleans(),
    rows=st.integers(1, 30),
    block=st.integers(1, 300),
)
@pytest.mark.parametrize("counter", ["C", "bytes.count"])
def test_the_stream_cutter_cuts_where_seeking_does(
    lines, trailing, header, rows, block, counter, tmp_path_factory
):
    """(Newlines counted by the C extension's memchr loop, and by bytes.count where it is not
    built.)"""
    from recprep.workloads.sources import cuts

    built = cuts._count_lines
    assert built is not None  # the built extension (a source tree falls back)
    data = b"\n".join(lines) + (b"\n" if trailing and lines else b"")
    path = tmp_path_factory.mktemp("cut") / "f"
    path.write_bytes(data)
    with open(path, "rb") as f:
        rule = target(f.read(1 << 20), header, rows)
        expected = seek_bounds(f, len(data), rule)
    cutter = StreamCutter(rows, header)
    cuts._count_lines = built if counter == "C" else None
    try:
        for i in range(0, len(data), block):
            cutter.feed(data[i : i + block])
        bounds, newlines = cutter.finish()
    finally:
        cuts._count_lines = built
    assert bounds == expected
    assert newlines == [data.count(b"\n", 0, b) for b in bounds]


def read_growth(path, index_dir, split) -> tuple[int, int]:
    """(bytes a fresh process's resident memory peaks above where it was, while it reads
    ``split`` of ``path``; the rows read). The peak is Linux's VmHWM reset just before the read:
    the imports' own peak would hide it from ru_maxrss."""
    script = textwrap.dedent(
        f"""
        from recprep.spec import load_job_dict
        from recprep.workloads.sources import open_source
        from recprep.workloads.sources.base import Split
        def status(key):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
        doc = {job_doc(str(path), "unused", transforms=[])!r}
        src = open_source(load_job_dict(doc).spec.source, index_dir={str(index_dir)!r})
        split = Split(*{(split.index, str(path), split.start, split.stop, split.est_rows)!r})
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS:")
        table = src.read(split).table
        print(status("VmHWM:") - before, table.num_rows)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grew, rows = map(int, done.stdout.split())
    return grew, rows


@pytest.mark.parametrize(
    "name", ["data.tsv.gz", "repetitive.tsv.gz", "repetitive.tsv.xz", "repetitive.tsv.zst"]
)
def test_a_split_task_reads_with_memory_bounded_by_its_split(tmp_path, name):
    """A fresh process reading one 20,000-row split of 50-100 MB of compressed text needs little
    more memory than reading the same split of the text uncompressed (its text, its Arrow
    columns), not the file's (the old reader held the whole text), also when a chunk of the file
    stands for far more text than a split (one row repeated: a decompressor call makes at most
    ``STEP`` bytes; zstd's reads through zstandard's stream reader, whose decompressobj has no
    bound: the whole file's text in one call)."""
    if name.startswith("repetitive"):
        text = criteo_text(1, seed=5) * 230_000  # compresses about 1000 to 1
    else:
        text = criteo_text(24000, seed=5) * 16
    plain, path = tmp_path / "data.tsv", tmp_path / name
    plain.write_bytes(text)
    compress = {
        ".gz": lambda t: gzip.compress(t, 1),
        ".xz": lambda t: lzma.compress(t, preset=1),
        ".zst": zstandard.ZstdCompressor(level=3).compress,
    }
    path.write_bytes(compress[path.suffix](text))
    splits = source(path, tmp_path / "idx").splits(20000)
    split = splits[len(splits) // 2]
    size = split.stop - split.start
    grew, rows = read_growth(path, tmp_path / "idx", split)
    baseline, same = read_growth(plain, tmp_path / "idx", split)
    assert rows == same == split.est_rows and grew > size  # it read the split: its text was held
    assert grew < baseline + 3 * size, (grew, baseline, size)  # the decompression's share
    assert baseline + 3 * size < len(text)  # less than the file's text alone


def plan_growth(path, index_dir) -> int:
    """Bytes a fresh process's resident memory peaks above where it was while it plans
    ``path`` (``read_growth``'s way, for the planning pass)."""
    script = textwrap.dedent(
        f"""
        import fsspec
        from recprep.workloads.sources import compressed
        def status(key):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
        store = compressed.IndexStore({str(index_dir)!r})
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS:")
        compressed.plan_file(fsspec.filesystem("file"), {str(path)!r}, False, 20000, store, cores=1)
        print(status("VmHWM:") - before)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.parametrize("frames", [1, 3])
def test_a_zstd_planning_pass_holds_memory_bounded_by_its_steps(tmp_path, frames):
    """A file of one row repeated, 57 MB of text in 60 kB of zstd: the planning pass read it a
    64 kB of input at a time with zstandard's decompressobj, which has no bound on what a call
    makes (the whole text at once); it now reads each frame (found from the frames' headers)
    through the stream reader, at most ``STEP`` bytes at a time."""
    text = criteo_text(1, seed=5) * 230_000
    path = tmp_path / "repetitive.tsv.zst"
    step = -(-len(text) // frames)
    zc = zstandard.ZstdCompressor(level=3)
    path.write_bytes(b"".join(zc.compress(text[i : i + step]) for i in range(0, len(text), step)))
    grew = plan_growth(path, tmp_path / "idx")
    assert grew < len(text) // 3, (grew, len(text))
    splits = source(path, tmp_path / "idx").splits(20000)  # the plan kept: the same text's cuts
    assert sum(s.stop - s.start for s in splits) == len(text)


def test_a_gzip_planning_pass_holds_memory_that_does_not_grow_with_the_file(tmp_path):
    """The pass runs on a worker beside its shard tasks (``workloads.planning``): what it holds
    is rapidgzip's buffers (63 and 67 MB measured here with the 1 MiB chunks of one thread; with
    4 MiB chunks, 230 MB for 485 MB of text), about the same for a file twice as long."""
    text = criteo_text(24000, seed=5) * 8  # 51 MB
    grew = []
    for copies in (1, 2):
        path = tmp_path / f"data-{copies}.tsv.gz"
        path.write_bytes(gzip.compress(text * copies, 1))
        grew.append(plan_growth(path, tmp_path / f"idx-{copies}"))
    assert grew[1] < grew[0] + (16 << 20), grew  # not the file's size
    assert grew[1] < 128 << 20, grew  # a small multiple of a 65,536-row shard's 16 MB of text


def test_the_files_of_a_source_are_planned_at_once_each_pass_with_its_share_of_the_cores(
    tmp_path, text, monkeypatch
):
    """Three compressed files, three passes at once (a barrier that each pass waits at until all
    three are in it: passes one after the other break it), on 6 cores: 2 each; the splits are
    the same as those of the same files planned one at a time."""
    import threading

    names = ["a.tsv.gz", "b.tsv.bz2", "c.tsv.xz"]
    for i, name in enumerate(names):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / name).write_bytes(CODECS[f"data{name[1:]}"](criteo_text(6000, seed=i)))
    monkeypatch.setattr(compressed, "usable_cores", lambda: 6)
    monkeypatch.setattr(compressed, "memory_limit", lambda: 16 << 30)
    barrier, seen, real = threading.Barrier(3, timeout=60), {}, compressed.plan_file

    def spy(fs, path, header, rows, store, cores=None, stop=None, info=None):
        seen[os.path.basename(path)] = (threading.current_thread().name, cores)
        barrier.wait()
        return real(fs, path, header, rows, store, cores, stop, info)

    asked, real_info = [], fsspec.implementations.local.LocalFileSystem.info

    def info(self, path, **kw):
        asked.append(os.path.basename(path))
        return real_info(self, path, **kw)

    monkeypatch.setattr(compressed, "plan_file", spy)
    monkeypatch.setattr(fsspec.implementations.local.LocalFileSystem, "info", info)
    files = source(tmp_path / "data", tmp_path / "idx")
    asked.clear()  # (the listing's)
    at_once = files.splits(1000)
    assert sorted(seen) == names
    assert sorted(asked) == names  # planning asks once for each file's details (in S3: one HEAD)
    assert len({thread for thread, _ in seen.values()}) == 3
    assert {cores for _, cores in seen.values()} == {2}
    monkeypatch.setattr(compressed, "plan_file", real)
    monkeypatch.setattr(compressed, "concurrent_passes", lambda stored: 1)
    one_by_one = source(tmp_path / "data", tmp_path / "idx-serial").splits(1000)
    assert at_once == one_by_one and len(at_once) >= 15


def test_a_damaged_file_among_several_is_named_and_stops_the_other_passes(tmp_path, text, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.tsv.gz").write_bytes(gzip.compress(text, 1)[:-5000])  # cut short
    (tmp_path / "data" / "b.tsv.gz").write_bytes(gzip.compress(text, 1))
    monkeypatch.setattr(compressed, "usable_cores", lambda: 2)
    monkeypatch.setattr(compressed, "memory_limit", lambda: 16 << 30)
    ended, real = {}, compressed.plan_file

    def spy(fs, path, header, rows, store, cores=None, stop=None, info=None):
        name = os.path.basename(path)
        if name == "b.tsv.gz":  # starts once the error has stopped the passes
            assert stop.wait(60)
        try:
            return real(fs, path, header, rows, store, cores, stop, info)
        except BaseException as exc:
            ended[name] = type(exc).__name__
            raise

    monkeypatch.setattr(compressed, "plan_file", spy)
    with pytest.raises(SourceError, match=r"a.tsv.gz: cannot decompress it \(.*end-of-stream"):
        source(tmp_path / "data", tmp_path / "idx").splits(2000)
    assert ended == {"a.tsv.gz": "SourceError", "b.tsv.gz": "PassStopped"}
    assert not list((tmp_path / "idx").glob("*.json"))  # no plan kept of either


def test_passes_at_once_are_as_many_as_the_cores_and_half_the_memory_hold(monkeypatch):
    monkeypatch.setattr(compressed, "usable_cores", lambda: 8)
    monkeypatch.setattr(compressed, "memory_limit", lambda: 64 << 30)
    assert compressed.concurrent_passes([100 << 20] * 3) == 3
    assert compressed.concurrent_passes([100 << 20] * 24) == 8
    assert compressed.concurrent_passes([]) == 1
    # a pod of 2 GiB planning Criteo Terabyte days (about 14 GB of gzip each): one at a time
    monkeypatch.setattr(compressed, "memory_limit", lambda: 2 << 30)
    assert compressed.concurrent_passes([14 << 30] * 24) == 1
    assert compressed.concurrent_passes([200 << 20] * 24) == 3


def test_an_interrupt_while_files_are_planned_stops_every_pass(tmp_path, text, monkeypatch):
    """Ctrl-C (a real SIGINT to the main thread, waiting for the passes): both passes stop at
    their next block and the interrupt goes on up."""
    import signal
    import threading

    (tmp_path / "data").mkdir()
    for name in ("a.tsv.gz", "b.tsv.gz"):
        (tmp_path / "data" / name).write_bytes(gzip.compress(text, 1))
    monkeypatch.setattr(compressed, "usable_cores", lambda: 2)
    monkeypatch.setattr(compressed, "memory_limit", lambda: 16 << 30)
    started, ended, real = threading.Barrier(3, timeout=60), {}, compressed.plan_file

    def spy(fs, path, header, rows, store, cores=None, stop=None, info=None):
        started.wait()
        assert stop.wait(60)  # the passes go on only once told to stop
        try:
            return real(fs, path, header, rows, store, cores, stop, info)
        except BaseException as exc:
            ended[os.path.basename(path)] = type(exc).__name__
            raise

    def interrupt():
        started.wait()  # both passes are running: the main thread waits for them
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    monkeypatch.setattr(compressed, "plan_file", spy)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's, as a CLI has
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            source(tmp_path / "data", tmp_path / "idx").splits(2000)
    finally:
        signal.signal(signal.SIGINT, previous)
    # a pass whose thread the interrupt caught while starting is not joined before the interrupt
    # goes up (the executor had not yet counted it): it stops all the same
    for thread in threading.enumerate():
        if thread.name.startswith("recprep-plan"):
            thread.join(60)
    assert ended == {"a.tsv.gz": "PassStopped", "b.tsv.gz": "PassStopped"}


def _one_pass_growth(path) -> int:
    """Bytes a fresh process's peak memory grows by while it iterates a ``OnePass`` over
    ``path`` in splits of 20,000 rows, holding each split's text as a file task does."""
    script = textwrap.dedent(
        f"""
        import fsspec
        from recprep.workloads.sources import compressed

        def status(key):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS:")
        for piece in compressed.OnePass(fsspec.filesystem("file"), {str(path)!r}, False, 20000):
            text = piece.text
        print(status("VmHWM:") - before)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_one_pass_holds_one_split_of_text_whatever_the_file_size(tmp_path):
    """A file decoded once (``decode_once``) holds a split's text, the text the pass has made
    past its end (at most a block) and the next split's as it is joined, not the file."""
    text = criteo_text(24000, seed=5) * 8  # 51 MB; splits of 20,000 rows: ~5.3 MB of text
    grew = []
    for copies in (1, 2):
        path = tmp_path / f"data-{copies}.tsv.gz"
        path.write_bytes(gzip.compress(text * copies, 1))
        grew.append(_one_pass_growth(path))
    assert grew[1] < grew[0] + (8 << 20), grew  # not the file's size
    # 25 MB measured: a few splits' text and the decompressor's buffers, of 103 MB of text
    assert grew[1] < 40 << 20, grew


def test_one_pass_gives_the_splits_a_plan_finds_with_their_text(tmp_path, text):
    """Every codec: the same bounds and line counts as the planning pass, each split's text the
    file's bytes between them, and a plan kept that a run by splits does not take for its own."""
    fs = fsspec.filesystem("file")
    for name, pack in CODECS.items():
        path = tmp_path / name
        path.write_bytes(pack(text))
        stream = compressed.OnePass(fs, str(path), False, 1000)
        pieces = list(stream)
        store = compressed.IndexStore(str(tmp_path / f"idx-{name}"))
        stream.keep(store)
        assert compressed.kept_plan(fs, str(path), False, 1000, store).bounds == stream.layout.bounds
        assert compressed._kept(fs, str(path), False, 1000, store, None)[2] is None  # not seekable
        layout = compressed.plan_file(fs, str(path), False, 1000, store)
        assert (layout.bounds, layout.lines) == (stream.layout.bounds, stream.layout.lines), name
        assert [(p.start, p.stop) for p in pieces] == list(zip(layout.bounds, layout.bounds[1:]))
        assert all(p.text == text[p.start : p.stop] for p in pieces)
        assert [p.lines for p in pieces] == layout.lines[:-1]
        stream.keep(store)  # a seekable plan of the same file stays
        assert compressed._kept(fs, str(path), False, 1000, store, None)[2].seekable
