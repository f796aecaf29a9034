"""Compressed text files split into many splits, each read with bounded memory.

A compressed file is planned by one streaming pass over its decompressed text, which finds the
cuts the same text uncompressed would get (``cuts.StreamCutter``: same sample, same rule, on
decompressed offsets, so the shards are byte-identical) and, at the same time, what lets a split
task start reading near its first byte instead of at the file's start:

- **gzip** (``.gz``): the pass is rapidgzip's (ISA-L's inflate, on several threads where the
  machine has 4 cores or more: ``GZIP_PARALLEL_CORES``), and its zran index of seek points
  (deflate block starts, with the 32 KiB of text before each, every 1-4 MiB of text) is kept
  for the point at or before each split's start only. A task starts ISA-L's raw inflate at that
  point (the window as its dictionary, the compressed bits realigned to a byte when the block
  starts inside one: ``_aligned``), so it decompresses its own bytes and at most one point's
  spacing before them.
  A file of several gzip members (``cat a.gz b.gz``, bgzip) is read on across members.
- **bz2**: the pass is rapidgzip's IndexedBzip2File, which also finds where each bz2 block
  (about 900 kB of text, compressed on its own) starts; a task starts at the block before its
  first byte.
- **xz, zstd**: the starts of the file's independent members (xz streams, zstd frames: files
  written by parallel compressors such as pzstd have many). A task starts at the last member
  that begins at or before its first byte. A split that no member starts in front of (after the
  previous split's start) would make its task decompress more than its own text (a file of one
  member: everything before it, so that a job's time grew with the file's size squared): the
  pass writes such a split's text again as a zstd frame of its own (level 1, ``_Reframer``)
  into the store, ``<key>.frames.zst``, and its task reads only that frame.

The passes over a source's files run at once (``plan_files``, on threads: the decompressors
release the GIL), as many as the cores the process may use and half its memory hold
(``machine``: a pod's limits), the cores shared among them; or, for a driver given a cluster
(``passes_run_by``, ``workloads.planning``), as tasks on the cluster's workers. A job on many
files (a Criteo Terabyte month is 24 gzip days) waits for every pass before its first shard task.
A file can also be read without a plan, its splits and their text given by one pass
(:class:`OnePass`: ``workloads.decode_once``, where each worker thread has a file of its own).

The plan (cuts, newlines before each cut, members, frames) and the gzip index or the frames are
kept in an
:class:`IndexStore` (the job output's ``_index/``, in a directory or an object store), under the
file's identity (path, size, modification time): built once, read by every split task, and
reused by a resumed run.
"""

from __future__ import annotations

import bisect
import bz2
import contextlib
import contextvars
import gzip
import hashlib
import io
import json
import lzma
import os
import struct
import tempfile
import threading
from collections import deque
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

import numpy as np

from ...errors import SourceError
from ..machine import memory_limit, usable_cores
from ..output.store import open_store
from .cuts import SAMPLE, StreamCutter, target
from .files import READ_ERRORS, reading

GZIP, BZ2, XZ, ZSTD = "gzip", "bz2", "xz", "zstd"
_SUFFIX = {".gz": GZIP, ".bz2": BZ2, ".xz": XZ, ".zst": ZSTD, ".zstd": ZSTD}
#: decompressed bytes per step of a pass; compressed bytes per read, and at most the text one
#: decompressor call makes (``_bounded``), for a split task
BLOCK, READ, STEP = 8 << 20, 1 << 20, 1 << 20
#: threads of one planning pass, at most (rapidgzip decompresses chunks of a file in parallel),
#: within the cores the process may use (``machine.usable_cores``), shared among the passes that
#: run at once (``plan_files``)
PASS_THREADS = 4
#: cores a machine needs for the gzip pass to use more than one thread: a chunk's decoder starts
#: without the text before it (it finds a block start by trial and marks what refers back, to
#: resolve later), work that 2 threads on 2 cores do not win back: 1.5-1.6 s for 485 MB of text
#: where one thread took 1.0-1.3 s (bench/README.md, ``compressed.py``)
GZIP_PARALLEL_CORES = 4
#: memory one planning pass holds besides its index (rapidgzip's buffers, which grow with its
#: chunks: about 230 MB measured for a gzip pass with 4 MiB chunks, 87 MB with the 1 MiB chunks
#: of a pass on one thread), for how many run at once (``plan_files``)
PASS_MEMORY = 256 << 20
#: seconds between two looks of the thread that waits for passes running at once (a signal that
#: arrives just as it goes to sleep is seen at its next look, not when a pass ends)
WAKE = 0.5
#: bounds of the text between two seek points of a gzip index (its chunks in rapidgzip's pass)
#: on several threads (larger chunks, fewer decoders that start without the text before them)
CHUNK = (1 << 20, 4 << 20)
#: the text between two seek points of a pass on one thread: rapidgzip's memory grows with its
#: chunks (2,000,000 Criteo rows: 87 MB with 1 MiB, 134 MB with 2 MiB, 230 MB with 4 MiB, for
#: 1.19, 1.08 and 1.00 s; a pass runs on a worker beside its shard tasks), a split's task
#: decompresses at most one spacing before its bytes, and the temporary whole index holds a
#: 32 KiB window per point (3% of the text)
CHUNK_ONE_THREAD = 1 << 20
#: what a plan file's format is (a plan of another version is rebuilt)
VERSION = 3
#: zstd level of the frames a planning pass writes again (``_Reframer``): its fastest
REFRAME_LEVEL = 1


def codec_of(path: str) -> str:
    for suffix, codec in _SUFFIX.items():
        if path.endswith(suffix):
            return codec
    raise ValueError(f"{path}: not a compressed file name")


@dataclass
class Layout:
    """A compressed file's plan."""

    codec: str
    stored: int  #: compressed bytes
    size: int  #: decompressed bytes
    rows_per_shard: int
    header: bool
    bounds: list[int]  #: split bounds in the decompressed text: 0, cuts..., size
    lines: list[int]  #: newlines before each bound
    #: (compressed, decompressed) offset of each member's start (bz2, xz, zstd)
    members: list[list[int]] = field(default_factory=list)
    #: bz2: (bit offset, decompressed offset) of each block, where a task starts reading
    blocks: list[list[int]] = field(default_factory=list)
    index: str | None = None  #: gzip: the index's file name in the store
    #: xz, zstd: splits written again as zstd frames of their own (``_Reframer``): per split,
    #: [text start, text stop, offset in ``copy``, compressed length]
    frames: list[list[int]] = field(default_factory=list)
    copy: str | None = None  #: those frames' file name in the store
    version: int = VERSION
    #: False: the plan of a file decompressed once (``OnePass``), its bounds and lines only: no
    #: seek point for a split task to start at (a run that reads by splits plans it again)
    seekable: bool = True

    def line_of(self, start: int) -> int:
        """1-based line number of the split beginning at ``start``."""
        return self.lines[self.bounds.index(start)] + 1

    def stored_bytes(self, start: int, stop: int) -> int:
        """Compressed bytes a split stands for (its share of the file)."""
        return round((stop - start) * self.stored / max(self.size, 1))


class IndexStore:
    """Plans and gzip indexes of compressed inputs, in one directory or object store prefix (the
    job output's ``_index/``: a pod that runs a split task reads them where the driver put them),
    by file identity."""

    def __init__(self, directory: str | None):
        #: a local path or an object store URI
        self.directory = directory or os.path.join(tempfile.gettempdir(), "recprep-index")
        self.store = open_store(self.directory)
        self._points: dict[str, _Gzidx] = {}

    def key(self, fs, path: str) -> str:
        return self.identify(fs, path)[0]

    def identify(self, fs, path: str, info: dict | None = None) -> tuple[str, int]:
        """(the key of the file's plan: its path, size and modification time or ETag; its size),
        from one request for the file's details (none when ``info``, its details, is given)."""
        info = fs.info(path) if info is None else info
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        ident = json.dumps([VERSION, fs.unstrip_protocol(path), info.get("size"), str(stamp)])
        return hashlib.sha256(ident.encode()).hexdigest()[:32], int(info.get("size") or 0)

    def load(self, key: str) -> Layout | None:
        """The kept plan of the file ``key`` names, or None. Read from the store each time
        (once per planning, once per file in a worker, whose source keeps it): an output removed
        between two runs of one process takes its plan with it."""
        try:
            layout = Layout(**json.loads(self.store.read(f"{key}.json")))
            if layout.version != VERSION or any(
                name and not self.store.exists(name) for name in (layout.index, layout.copy)
            ):
                return None
        except (OSError, ValueError, TypeError):
            return None
        return layout

    def save(self, key: str, layout: Layout, gzidx: bytes | None, copy: str | None = None) -> None:
        """Keep the plan (and the gzip index, or the local file of frames written again, which
        is moved or uploaded): whole or not at all (two writers of the same plan write the same
        bytes)."""
        try:
            if gzidx is not None:
                layout.index = f"{key}.gzidx"
                self.store.put(layout.index, gzidx)
            if copy is not None:
                layout.copy = f"{key}.frames.zst"
                self.store.put_file(layout.copy, copy)
            self.store.put(f"{key}.json", json.dumps(asdict(layout)).encode())
        except OSError as exc:
            raise SourceError(
                f"cannot keep the index of a compressed input in {self.directory} ({exc.strerror or exc})"
            ) from None

    def point(self, layout: Layout, start: int) -> tuple[tuple[int, int, int, int], bytes]:
        """The gzip index's last seek point at or before ``start``, and its window (the index's
        points are read once; a window is read alone, with a ranged read)."""
        name = layout.index

        def read(offset: int, length: int) -> bytes:
            return self.store.read_range(name, offset, length)

        if name not in self._points:
            self._points[name] = _Gzidx.parse(read)
        return self._points[name].at(read, start)


# -- planning ---------------------------------------------------------------------------------
def plan_file(
    fs,
    path: str,
    header: bool,
    rows_per_shard: int,
    store: IndexStore,
    cores: int | None = None,
    stop: threading.Event | None = None,
    info: dict | None = None,
) -> Layout:
    """The file's plan from the store, or made by one pass over it (and kept in the store).
    ``cores``: the cores the pass may use (default: all this process may); ``stop``: set, the
    pass stops at its next block (``cuts.PassStopped``); ``info``: the file's details, if the
    caller has them (``fs.info``)."""
    key, stored, layout = _kept(fs, path, header, rows_per_shard, store, info)
    if layout is not None:
        return layout
    codec = codec_of(path)
    cores = usable_cores() if cores is None else cores
    cutter = StreamCutter(rows_per_shard, header, stop=stop)
    members: list[list[int]] = []
    blocks: list[list[int]] = []
    gzidx = reframer = None
    with fs.open(path, "rb") as raw:
        if not stored:
            pass  # an empty file: no text, for every codec (rapidgzip finds no gzip format in it)
        elif codec == GZIP:
            threads = min(PASS_THREADS, cores) if cores >= GZIP_PARALLEL_CORES else 1
            with _gzip_pass(raw, cutter, path, threads) as exported:
                read = _reader(exported)
                index = _Gzidx.parse(read)
                _check_end(raw, path, index, read, cutter.fed)
                gzidx = index.trimmed(read, cutter.finish()[0])  # finish: the same bounds again below
        elif codec == BZ2:
            blocks, end = _bz2_pass(raw, cutter, path, max(1, min(PASS_THREADS, cores)))
            if end < stored:  # bytes after where the pass stopped
                _check_bz2_end(raw, path, end, cutter.fed)
        else:
            reframer = _Reframer(path, cutter, members)
            try:
                for block in _pass_text(codec, raw, path, members):
                    cutter.feed(block)
                    reframer.feed(block)
            except BaseException:
                reframer.discard()
                raise
    bounds, lines = cutter.finish()
    frames, copy = reframer.finish(bounds) if reframer is not None else ([], None)
    layout = Layout(
        codec, stored, cutter.size, rows_per_shard, header, bounds, lines, members, blocks, frames=frames
    )
    store.save(key, layout, gzidx, copy)
    return layout


def _kept(
    fs,
    path: str,
    header: bool,
    rows_per_shard: int,
    store: IndexStore,
    info: dict | None,
    seekable: bool = True,
):
    """(the file's plan key, its compressed size, its plan kept in the store for this cut rule
    or None; ``seekable``: None unless split tasks can read by it, see ``Layout.seekable``)."""
    key, stored = store.identify(fs, path, info)
    layout = store.load(key)
    if layout is not None and (
        (layout.rows_per_shard, layout.header) != (rows_per_shard, header)
        or (seekable and not layout.seekable)
    ):
        layout = None
    return key, stored, layout


def kept_plan(fs, path: str, header: bool, rows_per_shard: int, store: IndexStore, info: dict | None = None):
    """The file's plan kept in the store for this cut rule, seekable or not (its bounds are the
    same), or None."""
    return _kept(fs, path, header, rows_per_shard, store, info, seekable=False)[2]


#: Where the planning passes of :func:`plan_files` run: None, on threads of this process; else
#: a function ``(fs, paths, infos, header, rows_per_shard, directory) -> list[Layout] | None``
#: that runs :func:`plan_file` for each path elsewhere (the job's workers: ``workloads.planning``)
#: with the plans kept in the store at ``directory``, or returns None when it has nowhere to run
#: them (then they run here). Set with :func:`passes_run_by`.
_PASSES: contextvars.ContextVar = contextvars.ContextVar("recprep_planning_passes", default=None)


@contextlib.contextmanager
def passes_run_by(run):
    """Within the block, :func:`plan_files` gives the passes it needs to ``run`` (see
    ``_PASSES``); the plans already kept are still read here."""
    token = _PASSES.set(run)
    try:
        yield
    finally:
        _PASSES.reset(token)


def plan_files(fs, paths: list[str], header: bool, rows_per_shard: int, store: IndexStore) -> list[Layout]:
    """The plans of several compressed files (:func:`plan_file`): those kept in the store are read,
    the passes still needed run where :func:`passes_run_by` says, else at once on threads of
    this process (``concurrent_passes``: the passes decompress outside the GIL), the cores shared
    among them. An error names its file (``files.reading``); the other passes stop, and the plans
    already made stay in the store for the next run."""
    at_once, infos = 1, [None] * len(paths)
    run = _PASSES.get()
    if len(paths) > 1 or (run is not None and paths):  # (one file here: its pass asks, once)
        for i, p in enumerate(paths):
            with reading(p, "plan the splits of"):
                infos[i] = fs.info(p)  # each file's details once: for its size, then its key
    if run is not None and paths:
        layouts = [_kept(fs, p, header, rows_per_shard, store, i)[2] for p, i in zip(paths, infos)]
        todo = [k for k, layout in enumerate(layouts) if layout is None]
        if not todo:
            return layouts
        made = run(
            fs, [paths[k] for k in todo], [infos[k] for k in todo], header, rows_per_shard, store.directory
        )
        if made is not None:
            for k, layout in zip(todo, made):
                layouts[k] = layout
            return layouts
    if len(paths) > 1:
        at_once = concurrent_passes([int(info.get("size") or 0) for info in infos])
    if at_once < 2:
        return [_planned(fs, p, header, rows_per_shard, store, None, None, i) for p, i in zip(paths, infos)]
    cores, stop = max(1, usable_cores() // at_once), threading.Event()
    with ThreadPoolExecutor(at_once, thread_name_prefix="recprep-plan") as pool:
        futures = []
        try:
            for p, i in zip(paths, infos):
                futures.append(pool.submit(_planned, fs, p, header, rows_per_shard, store, cores, stop, i))
            running = set(futures)
            while running:  # woken every WAKE s: a Ctrl-C is not left pending behind a long pass
                done, running = wait(running, timeout=WAKE, return_when=FIRST_EXCEPTION)
                for f in done:
                    f.result()  # the first error, whichever file's
            return [f.result() for f in futures]
        except BaseException:  # an error, or the user's interrupt: the other passes stop too
            stop.set()
            for f in futures:
                f.cancel()
            raise


def _planned(fs, path, header, rows_per_shard, store, cores, stop, info) -> Layout:
    with reading(path, "plan the splits of"):
        return plan_file(fs, path, header, rows_per_shard, store, cores, stop, info)


def concurrent_passes(stored: list[int]) -> int:
    """How many planning passes run at once over files of ``stored`` compressed bytes: at most
    one per core this process may use, and as many as half the memory it may have holds, a pass
    needing ``PASS_MEMORY`` and the index it keeps (one 32 KiB window per split: a tenth of its
    file covers splits of 4 MiB of text or more, text compressed up to 12x; rapidgzip's whole
    index goes to a temporary file, ``_gzip_pass``)."""
    need = PASS_MEMORY + max(stored, default=0) // 10
    by_memory = (memory_limit() // 2) // need
    return max(1, min(len(stored), usable_cores(), by_memory))


class _Reframer:
    """The planning pass's second consumer of an xz or zstd file's text (beside the cutter):
    each split that no member of the file starts in front of (a member starting after the
    previous split's start and at or before its own), compressed again on the way as one zstd
    frame of its own into a local spool file, so that its task decompresses that frame only.
    Text waits here only until the cutter has placed the cuts around it (the cut rule needs the
    file's first ``SAMPLE`` bytes): about ``SAMPLE`` plus a block at most."""

    def __init__(self, path: str, cutter: StreamCutter, members: list[list[int]]):
        self.zstandard = _zstandard(path)
        self.cutter, self.members = cutter, members
        self.pending: deque[bytes] = deque()
        self.at = 0  #: text offset of ``pending[0]``'s first byte
        self.split = 0  #: the split the text at ``at`` belongs to
        self.frames: list[list[int]] = []
        self.compressor = None
        self.spool = None

    def feed(self, block: bytes, final: bool = False) -> None:
        if block:
            self.pending.append(block)
        if self.cutter.rule is None and not final:
            return  # cuts may still fall in the text held so far
        cuts = self.cutter.cuts
        while self.pending:
            head = self.pending[0]
            nxt = cuts[self.split + 1] if self.split + 1 < len(cuts) else None
            n = len(head) if nxt is None else min(len(head), nxt - self.at)
            if n:
                if self.compressor is not None:
                    self.spool.write(self.compressor.compress(head[:n]))
                self.at += n
                if n == len(head):
                    self.pending.popleft()
                else:
                    self.pending[0] = head[n:]
            if nxt is not None and self.at == nxt:
                self._close()
                self.split += 1
                self._open(cuts[self.split - 1], nxt)

    def _open(self, previous: int, start: int) -> None:
        """Split ``self.split`` begins at ``start``: written again unless a member starts in
        ``(previous, start]`` (its task then decompresses less than a split's text before it)."""
        if any(previous < m[1] <= start for m in reversed(self.members)):
            return
        if self.spool is None:
            self.spool = tempfile.NamedTemporaryFile(prefix="recprep-frames-", suffix=".zst", delete=False)
            os.chmod(self.spool.name, 0o644)  # moved into the store as it is: readable by the workers
        # with its content checksum: a copy damaged in the store fails its task (naming the
        # frames' file) instead of giving other text
        self.compressor = self.zstandard.ZstdCompressor(
            level=REFRAME_LEVEL, write_checksum=True
        ).compressobj()
        self.frames.append([start, 0, self.spool.tell()])

    def _close(self) -> None:
        if self.compressor is not None:
            self.spool.write(self.compressor.flush())
            self.compressor = None
            frame = self.frames[-1]
            frame[1] = self.at
            frame.append(self.spool.tell() - frame[2])

    def finish(self, bounds: list[int]) -> tuple[list[list[int]], str | None]:
        """(the frames of splits of ``bounds``, the spool's path or None when no split needed one)."""
        self.feed(b"", final=True)
        self._close()
        starts = set(bounds[:-1])
        self.frames = [f for f in self.frames if f[0] in starts and f[1] > f[0]]
        if self.spool is None:
            return [], None
        self.spool.close()
        if not self.frames:
            os.remove(self.spool.name)
            return [], None
        return self.frames, self.spool.name

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.spool.name)


def _gzip_pass(raw, cutter: StreamCutter, path: str, threads: int):
    """Feed the decompressed text to ``cutter``; rapidgzip's index of the file (indexed_gzip's
    format), with a seek point every ``CHUNK_ONE_THREAD`` of text on one thread, or on several
    about every quarter of a split's bytes (within ``CHUNK``), in an anonymous temporary file
    (the caller closes it): the whole index is 0.8-3% of the text (0.4-1.4 GB for a Criteo
    Terabyte day), of which the plan keeps one point per split."""
    import rapidgzip

    sample = _gzip_sample(raw, path)
    rule = target(sample, cutter.header, cutter.rows_per_shard)
    chunk = CHUNK_ONE_THREAD if threads == 1 else min(max(rule.target // 4, CHUNK[0]), CHUNK[1])
    raw.seek(0)
    try:
        with rapidgzip.RapidgzipFile(raw, parallelization=threads, chunk_size=chunk) as gz:
            for block in iter(lambda: gz.read(BLOCK), b""):
                cutter.feed(block)
            out = tempfile.TemporaryFile(prefix="recprep-gzidx-")
            try:
                gz.export_index(out, rapidgzip.IndexFormat.INDEXED_GZIP)
            except BaseException:
                out.close()
                raise
    except (ValueError, RuntimeError) as exc:  # not gzip, damaged (ValueError); cut short (RuntimeError)
        raw.seek(0)
        raise SourceError(
            f"{path}: cannot decompress it ({_problem(GZIP, raw) or _first_line(exc)})"
        ) from None
    return out


def _reader(f):
    """``read(offset, length)`` of the open file ``f``."""

    def read(offset: int, length: int) -> bytes:
        f.seek(offset)
        return f.read(length)

    return read


def _check_end(raw, path: str, index: _Gzidx, read, size: int) -> None:
    """The pass read the whole file: from the index's last seek point, ISA-L reads on to the
    end of the last member and finds the text the pass found (rapidgzip ends a file cut short
    without a word)."""
    i = len(index.points) - 1
    while i > 0 and index.points[i][1] >= size:  # a point at the very end has nothing after it
        i -= 1
    point, window = index.points[i], index.window_in(read, i)
    end = point[1] + sum(len(b) for b in _gzip_blocks(raw, path, point, window))
    if end != size:
        raise SourceError(f"{path}: cannot decompress it (its text ends at byte {end}, not {size})")


def _gzip_sample(raw, path: str) -> bytes:
    """The first ``SAMPLE`` bytes of text (for the cut rule, and so the seek points' spacing)."""
    try:
        with gzip.GzipFile(fileobj=raw) as f:
            return f.read(SAMPLE)
    except READ_ERRORS as exc:
        raise SourceError(f"{path}: cannot decompress it ({exc})") from None


def _bz2_pass(raw, cutter: StreamCutter, path: str, threads: int) -> tuple[list[list[int]], int]:
    """Feed the decompressed text to ``cutter``; where each bz2 block starts (rapidgzip's
    IndexedBzip2File: bit offset in the file, offset in the text), so a task can start at the
    block before its bytes (bz2 blocks are independent, about 900 kB of text each); and the
    compressed byte where it stopped reading (``_check_bz2_end``)."""
    import rapidgzip

    try:
        with rapidgzip.IndexedBzip2File(raw, parallelization=threads) as f:
            for block in iter(lambda: f.read(BLOCK), b""):
                cutter.feed(block)
            offsets = f.block_offsets()
            end = f.tell_compressed() // 8
    except (ValueError, RuntimeError) as exc:  # not bz2, damaged, cut short
        raw.seek(0)
        raise SourceError(
            f"{path}: cannot decompress it ({_problem(BZ2, raw) or _first_line(exc)})"
        ) from None
    return sorted([int(bit), int(at)] for bit, at in offsets.items()), end


def _check_bz2_end(raw, path: str, end: int, size: int) -> None:
    """The bz2 pass read the whole file. rapidgzip stops without an error (a warning on stderr,
    as bzip2 does) at bytes after a stream that do not begin another: after null padding, or
    any other bytes, it leaves out the streams that follow. Null bytes alone after ``end``, where
    it stopped, are padding; else Python's decompressor reads the file again (it reads on past
    padding, and fails on bytes that are not bz2) and must find the ``size`` bytes of text the
    pass found (the text of an empty stream ends the pass at byte 0, where rapidgzip runs on
    several threads)."""
    raw.seek(end)
    if not any(block.strip(b"\0") for block in iter(lambda: raw.read(READ), b"")):
        return
    try:
        found = sum(len(block) for block in _member_blocks(BZ2, raw, path))
    except OSError as exc:
        raise SourceError(
            f"{path}: cannot decompress it (bytes after byte {end} are not bz2: {exc})"
        ) from None
    if found != size:
        raise SourceError(
            f"{path}: cannot read it whole (bz2 streams follow the null bytes at byte {end}, where "
            f"the reader stops: {found} bytes of text in all, not {size}; remove those null bytes)"
        )


def _problem(codec: str, raw) -> str | None:
    """What Python's own reader of ``codec`` says of a file rapidgzip refused (its words are
    clearer for a file that is not of the format or is cut short), or None if it reads it."""
    opener = {GZIP: lambda: gzip.GzipFile(fileobj=raw), BZ2: lambda: bz2.BZ2File(raw)}[codec]
    try:
        with opener() as f:
            while f.read(BLOCK):
                pass
    except READ_ERRORS as exc:
        return str(exc)
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _decompressor(codec: str):
    if codec == GZIP:
        from isal import isal_zlib

        return isal_zlib.decompressobj(wbits=31)
    return bz2.BZ2Decompressor() if codec == BZ2 else lzma.LZMADecompressor()


def _zstandard(path: str):
    try:
        import zstandard
    except ImportError:
        raise SourceError(
            f"{path}: reading zstd needs the zstandard package (pip install zstandard)"
        ) from None
    return zstandard


def _member_blocks(codec: str, raw, path: str, members: list | None = None, at=(0, 0)):
    """The decompressed text of a file of independent members (gzip members, bz2 and xz
    streams; zstd frames are read by :func:`_zstd_pass_blocks` and :func:`_zstd_blocks`), from
    the member starting at ``at`` (compressed, decompressed offsets) on, block by block; each
    member's start appended to ``members``."""
    pos, produced = at  # compressed offset of ``data``, bytes of text so far
    d = None
    raw.seek(pos)
    data = b""
    while True:
        if not data:
            data = raw.read(READ)
            if not data:
                break
        if d is None or d.eof:  # a member begins here (null bytes between members: padding)
            lead = len(data) - len(data.lstrip(b"\0"))
            pos, data = pos + lead, data[lead:]
            if not data:
                continue
            d = _decompressor(codec)
            if members is not None:
                members.append([pos, produced])
        for out in _bounded(d, data, codec):
            produced += len(out)
            yield out
        rest = d.unused_data if d.eof else b""
        pos, data = pos + len(data) - len(rest), rest
    if d is not None and not d.eof:
        raise EOFError("compressed data ends before the end of its stream (truncated?)")


#: zstd's frame magic numbers (RFC 8878): a frame's, and the range of a skippable frame's
_ZSTD_MAGIC, _SKIPPABLE = 0xFD2FB528, range(0x184D2A50, 0x184D2A60)


def _zstd_frames(raw):
    """(start, end) of each zstd frame of the file, in compressed bytes, skippable frames left
    out, read from the frames' and their blocks' headers alone (RFC 8878: a block's header gives
    the bytes it takes)."""
    pos, file_size = 0, raw.seek(0, os.SEEK_END)
    raw.seek(0)
    while head := raw.read(4):
        magic = int.from_bytes(_exactly(head, 4), "little")
        if magic in _SKIPPABLE:
            pos += 8 + int.from_bytes(_exactly(raw.read(4), 4), "little")
            raw.seek(pos)
            continue
        if magic != _ZSTD_MAGIC:
            raise OSError(f"Unknown frame descriptor at byte {pos}")
        start, fhd = pos, _exactly(raw.read(1), 1)[0]
        single, flag = fhd >> 5 & 1, fhd >> 6
        fcs = (1 if single else 0) if flag == 0 else 1 << flag
        pos += 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
        last = 0
        while not last:
            raw.seek(pos)
            header = int.from_bytes(_exactly(raw.read(3), 3), "little")
            last, kind, size = header & 1, header >> 1 & 3, header >> 3
            if kind == 3:
                raise OSError(f"Corrupted block detected (a reserved block type at byte {pos})")
            pos += 3 + (1 if kind == 1 else size)
        pos += 4 if fhd & 4 else 0  # the content checksum
        if pos > file_size:  # its last block, or its checksum, runs past the end of the file
            raise EOFError("compressed data ends before the end of its stream (truncated?)")
        yield start, pos
        raw.seek(pos)


def _exactly(data: bytes, n: int) -> bytes:
    if len(data) < n:
        raise EOFError("compressed data ends before the end of its stream (truncated?)")
    return data


def _pass_text(codec: str, raw, path: str, members: list):
    """The text of an xz, zstd (or, for a header, any) file from its start, block by block, each
    member's start appended to ``members``."""
    return (
        _zstd_pass_blocks(raw, path, members) if codec == ZSTD else _member_blocks(codec, raw, path, members)
    )


def _zstd_pass_blocks(raw, path: str, members: list):
    """A zstd file's text for its planning pass, at most ``STEP`` bytes at a time (zstandard's
    decompressobj has no bound: a file of one row repeated made its whole text in one call, 1.5
    GB from 49 kB), frame by frame (each frame's start appended to ``members``)."""
    zstandard = _zstandard(path)
    produced = 0
    for start, end in _zstd_frames(raw):
        members.append([start, produced])
        raw.seek(start)
        reader = zstandard.ZstdDecompressor().stream_reader(_Span(raw, end), read_size=READ, closefd=False)
        try:
            while block := reader.read(STEP):
                produced += len(block)
                yield block
        except zstandard.ZstdError as exc:
            raise OSError(_first_line(exc)) from None


class _Span:
    """The bytes of a file from where it stands to ``end``, as a file to read (a frame's: the
    stream reader's ``read_across_frames=False`` read on into the next frames here)."""

    def __init__(self, raw, end: int):
        self.raw, self.end = raw, end

    def read(self, n: int = -1) -> bytes:
        left = self.end - self.raw.tell()
        return self.raw.read(left if n < 0 else min(n, left)) if left > 0 else b""


def _zstd_blocks(raw, path: str, at: int):
    """A zstd file's text from the frame at compressed offset ``at`` on, across frames, at most
    ``STEP`` bytes at a time (zstandard's stream reader bounds its output, which its
    decompressobj does not). The planning pass checked the file whole: a file changed since has
    another plan key, and its task fails finding no plan."""
    zstandard = _zstandard(path)
    raw.seek(at)
    reader = zstandard.ZstdDecompressor().stream_reader(
        raw, read_size=READ, read_across_frames=True, closefd=False
    )
    try:
        while block := reader.read(STEP):
            yield block
    except zstandard.ZstdError as exc:
        raise OSError(_first_line(exc)) from None


def _bounded(d, data: bytes, codec: str):
    """What decompressor ``d`` makes of ``data``, at most ``STEP`` bytes at a time, all input
    consumed (or left in ``d.unused_data`` past the end of its stream): a chunk of very
    repetitive data may stand for far more text than memory should hold at once. zlib-style
    decompressors (ISA-L's) keep what they did not read in ``unconsumed_tail``, bz2 and lzma
    inside (``needs_input``)."""
    if codec == GZIP:
        while True:
            out = d.decompress(data, STEP)
            if out:
                yield out
            data = d.unconsumed_tail
            if d.eof or not data:
                return
    out = d.decompress(data, max_length=STEP)
    while True:
        if out:
            yield out
        if d.eof or d.needs_input:
            return
        out = d.decompress(b"", max_length=STEP)


# -- decoding once ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """One split of a file decoded once, with its text."""

    number: int  #: the split's number in its file
    start: int  #: its bounds in the decompressed text
    stop: int
    lines: int  #: newlines before ``start``
    rows: int  #: lines in it (its header line included)
    stored: int  #: compressed bytes read while its text was made
    text: bytes


class OnePass:
    """A compressed file's splits, with their text, from one pass over it: the cuts of
    ``cuts.StreamCutter`` (the rule of every plan, so the same splits as a planning pass finds),
    each split given as soon as the cut after it is found, its text held only until then (at
    most a split's text and one decompressed block, ``STEP``). The decompressors of the split
    tasks' reads (ISA-L's for gzip), from the file's start: no index is made. Iterate it once;
    then :attr:`layout` is the file's plan, its bounds and lines only (``Layout.seekable``
    False), which :meth:`keep` keeps in the store."""

    def __init__(self, fs, path: str, header: bool, rows_per_shard: int):
        self.fs, self.path, self.header, self.rows_per_shard = fs, path, header, rows_per_shard
        self.layout: Layout | None = None

    def __iter__(self):
        codec = codec_of(self.path)
        cutter = StreamCutter(self.rows_per_shard, self.header)
        held: deque[bytes] = deque()
        given, read = 0, [0]  # splits given so far; compressed bytes read when the last was
        with self.fs.open(self.path, "rb") as raw:
            stored = raw.seek(0, os.SEEK_END)
            raw.seek(0)

            def piece(k: int, bounds: list[int], lines: list[int]) -> Piece:
                now = min(raw.tell(), stored)
                done = Piece(
                    k,
                    bounds[k],
                    bounds[k + 1],
                    lines[k],
                    lines[k + 1] - lines[k],
                    now - read[0],
                    _take(held, bounds[k + 1] - bounds[k]),
                )
                read[0] = now
                return done

            for block in _pass_text(codec, raw, self.path, []) if stored else ():
                cutter.feed(block)
                held.append(block)
                while len(cutter.cuts) > given + 1:
                    yield piece(given, cutter.cuts, cutter.lines)
                    given += 1
            bounds, lines = cutter.finish()
            for k in range(given, len(bounds) - 1):
                if bounds[k + 1] > bounds[k]:
                    yield piece(k, bounds, lines)
        self.layout = Layout(
            codec, stored, cutter.size, self.rows_per_shard, self.header, bounds, lines, seekable=False
        )

    def keep(self, store: IndexStore) -> None:
        """Keep the plan the pass found (a seekable plan of the same file is left as it is: it
        has the same bounds and more)."""
        key, _ = store.identify(self.fs, self.path)
        kept = store.load(key)
        if kept is None or not kept.seekable:
            store.save(key, self.layout, None)


def _take(held: deque, n: int) -> bytes:
    """The first ``n`` bytes of the blocks ``held``, taken off them."""
    parts = []
    while n:
        head = held[0]
        if len(head) <= n:
            parts.append(held.popleft())
            n -= len(head)
        else:
            parts.append(head[:n])
            held[0] = head[n:]
            n = 0
    return b"".join(parts)


# -- reading ----------------------------------------------------------------------------------
def first_line(fs, path: str) -> bytes:
    """The first line of the file's text, its newline left off (a header): decompressed a block
    at a time, as far as its first newline (fsspec's zstd reader has no ``readline``, and stops
    at the end of the first frame)."""
    out, codec = [], codec_of(path)
    with fs.open(path, "rb") as raw:
        for block in _pass_text(codec, raw, path, []):
            end = block.find(b"\n")
            out.append(block if end < 0 else block[:end])
            if end >= 0:
                break
    return b"".join(out)


def read_range(fs, path: str, layout: Layout, store: IndexStore, start: int, stop: int) -> bytes:
    """Bytes ``[start, stop)`` of the file's decompressed text."""
    if frame := _frame_of(layout, start, stop):  # written again by the pass: the file is not read
        copy = store.store.path(layout.copy)
        return _slice(_frame_blocks(store, layout, frame, path), frame[0], start, stop, copy)
    with fs.open(path, "rb") as raw:
        if layout.codec == GZIP:
            point, window = store.point(layout, start)
            blocks = _gzip_blocks(raw, path, point, window)
            pos = point[1]
        elif layout.codec == BZ2 and layout.blocks:
            return _bz2_range(raw, layout, start, stop)
        else:
            offsets = [m[1] for m in layout.members]
            member = layout.members[max(bisect.bisect_right(offsets, start) - 1, 0)]
            if layout.codec == ZSTD:
                blocks = _zstd_blocks(raw, path, member[0])
            else:
                blocks = _member_blocks(layout.codec, raw, path, at=tuple(member))
            pos = member[1]
        return _slice(blocks, pos, start, stop)


def _slice(blocks, pos: int, start: int, stop: int, copy: str | None = None) -> bytes:
    """Bytes ``[start, stop)`` of the text that ``blocks`` give from offset ``pos`` on (read no
    further than ``stop``); EOFError when they end before it (the plan saw more text: the file,
    or ``copy``, the frames written again, was cut short or replaced since)."""
    out = []
    for block in blocks:
        a, b = max(start - pos, 0), min(stop - pos, len(block))
        if b > a:
            out.append(block[a:b])
        pos += len(block)
        if pos >= stop:
            break
    if pos < stop:
        if copy is not None:
            raise EOFError(f"{copy}: its frame ends before byte {stop} (cut short?)")
        raise EOFError(
            f"its text ends at byte {pos}, before byte {stop} of the split (changed since planned?)"
        )
    return b"".join(out)


def _frame_of(layout: Layout, start: int, stop: int) -> list[int] | None:
    """The frame written again that holds text ``[start, stop)``, if any."""
    i = bisect.bisect_right([f[0] for f in layout.frames], start) - 1
    return layout.frames[i] if i >= 0 and stop <= layout.frames[i][1] else None


def _frame_blocks(store: IndexStore, layout: Layout, frame: list[int], path: str):
    """The text of a frame written again (one ranged read of the frame, then
    :func:`_zstd_blocks`: at most ``STEP`` bytes at a time); its errors name the frames' file."""
    _, _, offset, length = frame
    data = store.store.read_range(layout.copy, offset, length)
    try:
        yield from _zstd_blocks(io.BytesIO(data), path, 0)
    except OSError as exc:
        raise OSError(f"{store.store.path(layout.copy)}: {exc}") from None


def _bz2_range(raw, layout: Layout, start: int, stop: int) -> bytes:
    """Bytes ``[start, stop)`` of a bz2 file's text, from the block before ``start`` on."""
    import rapidgzip

    try:
        with rapidgzip.IndexedBzip2File(raw, parallelization=1) as f:
            f.set_block_offsets({bit: at for bit, at in layout.blocks})
            f.seek(start)
            data = f.read(stop - start)
    except (ValueError, RuntimeError) as exc:  # damaged since it was planned
        raise OSError(_first_line(exc)) from None
    if len(data) != stop - start:
        raise EOFError("compressed data ends before the end of its stream (truncated?)")
    return data


def _gzip_blocks(raw, path: str, point: tuple[int, int, int, int], window: bytes):
    """The decompressed text from a seek point of the index on, block by block (and on into
    the file's next gzip members)."""
    from isal import isal_zlib

    c, u, bits, _ = point
    d = isal_zlib.decompressobj(wbits=-15, zdict=window) if window else isal_zlib.decompressobj(wbits=-15)
    used = 0  # aligned bytes fed to d and consumed
    for data in _aligned(raw, c, bits):
        for out in _bounded(d, data, GZIP):
            u += len(out)
            yield out
        used += len(data) - len(d.unused_data)
        if d.eof:
            break
    if not d.eof:
        raise EOFError("compressed data ends before the end of its stream (truncated?)")
    # the member ended: the next one starts 8 bytes (CRC, size) after the byte holding its last
    # bit, which an aligned byte ``used - 1`` may share with the byte after it
    ends = [c + used - 1] if not bits else [c + used - 2, c + used - 1]
    for end in ends:
        raw.seek(end + 9)
        if raw.read(2) == b"\x1f\x8b":
            yield from _member_blocks(GZIP, raw, path, at=(end + 9, u))
            return
    raw.seek(ends[-1] + 9)
    if raw.read(1):
        raise EOFError("no gzip member follows the end of the previous one")


def _aligned(raw, c: int, bits: int):
    """The compressed bytes from a seek point on, shifted so that its first bit begins a byte:
    a point of a zran index starts ``bits`` bits before byte ``c`` (in the high bits of byte
    ``c - 1``, deflate reading each byte from its low bit)."""
    if not bits:
        raw.seek(c)
        yield from iter(lambda: raw.read(READ), b"")
        return
    raw.seek(c - 1)
    prev = raw.read(1)
    while True:
        chunk = raw.read(READ)
        if not chunk:
            yield bytes([prev[0] >> (8 - bits)])
            return
        b = np.frombuffer(prev + chunk, dtype=np.uint8)
        yield ((b[:-1] >> (8 - bits)) | (b[1:] << bits)).tobytes()  # uint8: the high bits fall off
        prev = chunk[-1:]


# -- indexed_gzip's index file ----------------------------------------------------------------
_MAGIC, _HEAD, _POINT = b"GZIDX\x01", struct.Struct("<QQIII"), struct.Struct("<QQBB")


@dataclass
class _Gzidx:
    """A zran index file in indexed_gzip's format (version 1: a header, the seek points, then
    the 32 KiB window of text before each point that has one), as rapidgzip exports it: read to
    keep a few points, and to start reading at one."""

    header: bytes  #: the header, without its point count
    window: int
    points: list[tuple[int, int, int, int]]  #: (compressed, decompressed, bits, has window)
    windows: list[int]  #: each point's window's offset in the file (-1: none)
    starts: list[int] = field(init=False, repr=False)  #: each point's decompressed offset

    def __post_init__(self):
        self.starts = [p[1] for p in self.points]

    @classmethod
    def parse(cls, read) -> _Gzidx:
        """The index whose bytes ``read(offset, length)`` returns (its header and points only)."""
        head = read(0, 7 + _HEAD.size)
        if head[:6] != _MAGIC:
            raise SourceError("an index of indexed_gzip in a format this recprep does not read")
        _csize, _usize, _spacing, window, n = _HEAD.unpack(head[7:])
        table = read(len(head), n * _POINT.size)
        points = [_POINT.unpack_from(table, i * _POINT.size) for i in range(n)]
        at, windows = len(head) + len(table), []
        for p in points:
            windows.append(at if p[3] else -1)
            at += window if p[3] else 0
        return cls(head[:-4], window, points, windows)

    def _last(self, start: int) -> int:
        return max(bisect.bisect_right(self.starts, start) - 1, 0)

    def trimmed(self, read, bounds: list[int]) -> bytes:
        """The index with only the points a split of ``bounds`` starts from (its windows read
        with ``read(offset, length)``)."""
        keep = sorted({self._last(start) for start in bounds[:-1]})
        out = bytearray(self.header) + struct.pack("<I", len(keep))
        for i in keep:
            out += _POINT.pack(*self.points[i])
        for i in keep:
            out += self.window_in(read, i)
        return bytes(out)

    def window_in(self, read, i: int) -> bytes:
        """Point ``i``'s window, read with ``read(offset, length)`` (empty: it has none)."""
        return read(self.windows[i], self.window) if self.points[i][3] else b""

    def at(self, read, start: int) -> tuple[tuple[int, int, int, int], bytes]:
        """The last point at or before ``start`` and its window, read with ``read(offset, length)``."""
        i = self._last(start)
        return self.points[i], self.window_in(read, i)
