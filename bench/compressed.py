"""Compressed inputs: a gzip-compressed Criteo input against the same text uncompressed, through
recprep's own job, on one single-threaded worker (the throughput bench's Criteo manifest).

Per contender: shards and whether they are byte-identical to the uncompressed run's (shard by
shard, in the ledger's order), rows/s (wall time from job submission to the last commit, on one
worker: per core), and the worker process's peak memory: in all, and above what the idle worker
process had ("job"), against the mean text of one shard. The gzip input runs three ways: as
recprep runs it on one worker thread (its one file decoded once: ``workloads.decode_once``, one
task that decompresses the file and makes each shard as the pass goes); read by splits
(``--decode splits``) with no kept plan (the planning pass over the file is in the time); and
read by splits reusing the plan that run kept in the output's ``_index/`` (a resumed run, a rerun
with --overwrite).

Planning several files (``--files N``, default 2; 0 skips it): a source of N gzip files (links
to the gzip input, each a file of its own to the planner) planned by ``TextSource.splits``, the
passes one at a time and then at once (``compressed.plan_files``: one per core this process
may use, within half its memory), each pass on one thread, and then on a local cluster of N
single-threaded worker processes (``workloads.planning``, as the operator's driver plans); wall
time to the plan, best of ``--repeat``, and the ratios to one at a time. A job on many
compressed files (a Criteo Terabyte month is 24 gzip days) waits for every pass before its first
shard task.

bz2, xz and zstd (one frame, and many frames as pzstd writes them) run on a smaller input
(``--codec-rows``): their tasks start at the last member before their bytes, so a file of one
member costs time growing with its size squared.

    python bench/compressed.py                       # 2,000,000 rows gzip; 200,000 rows others
    python bench/compressed.py --rows 300000 --codecs gz --repeat 1
    python bench/compressed.py --json

The Criteo sample is read from ../shared/data (or --data) and replicated in a temporary
directory (or --workdir, outside the repository); without it the script says so and exits 0.
Timings are only printed: this script never fails because something is slow.
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import gzip
import json
import logging
import lzma
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._inputs import replicate_tsv  # noqa: E402
from bench.throughput import recprep_job_document  # noqa: E402

CODECS = ("gz", "bz2", "xz", "zst", "zst-frames")
FRAME = 8 << 20  # text per zstd frame in "zst-frames" (pzstd's default is larger)


def compress(plain: Path, codec: str) -> Path:
    """``plain`` compressed as ``codec``, next to it (reused when present)."""
    suffix = {"gz": ".gz", "bz2": ".bz2", "xz": ".xz", "zst": ".zst", "zst-frames": ".zst"}[codec]
    path = plain.with_name(
        plain.name.replace(".tsv", "-frames.tsv" if codec == "zst-frames" else ".tsv") + suffix
    )
    if path.is_file():
        return path
    started = time.perf_counter()
    data = plain.read_bytes()
    if codec == "gz":
        packed = gzip.compress(data, 6)
    elif codec == "bz2":
        packed = bz2.compress(data, 9)
    elif codec == "xz":
        packed = lzma.compress(data, preset=6)
    else:
        import zstandard

        c = zstandard.ZstdCompressor(level=3)
        step = FRAME if codec == "zst-frames" else len(data)
        packed = b"".join(c.compress(data[i : i + step]) for i in range(0, len(data), step))
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(packed)
    partial.replace(path)
    log(f"wrote {path.name}: {len(packed) / 1e6:.0f} MB ({time.perf_counter() - started:.0f} s)")
    return path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _peak_reset() -> int:
    """In a worker: forget the process's peak resident memory (Linux: clear_refs 5), so the next
    reading of VmHWM is this job's (ru_maxrss cannot be reset, and a spawned worker's starts at
    what its parent had)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _peak()


def _peak() -> int:
    """In a worker: its peak resident memory since the last reset, bytes (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def worker_peak(client, reset: bool = False) -> int:
    """The worker process's peak resident memory, bytes (since the last reset)."""
    return max(client.run(_peak_reset if reset else _peak).values())


def run(path: Path, out: Path, keep_plan: bool, decode: str = "auto") -> dict:
    """One timed job on one fresh worker process (``decode``: ``recprep run --decode``); its
    figures."""
    from recprep.spec import load_job_dict
    from recprep.workloads.output.layout import INDEX_DIR
    from recprep.workloads.runner import run_job

    if not keep_plan:
        shutil.rmtree(out / INDEX_DIR, ignore_errors=True)
    job = load_job_dict(recprep_job_document(path, "tsv", out))
    with fresh_client() as client:  # a fresh worker process: its peak memory is this run's
        idle = worker_peak(client, reset=True)
        started = time.perf_counter()
        summary = run_job(job, client=client, output=str(out), overwrite=True, decode=decode)
        seconds = time.perf_counter() - started
        peak = worker_peak(client)
    return {
        "rows": summary.rows_written,
        "seconds": seconds,
        "rows_per_s": summary.rows_written / seconds,
        "worker_peak_bytes": peak,
        "job_peak_bytes": peak - idle,  # above what the idle worker process had reached
    }


@contextlib.contextmanager
def fresh_client():
    """A local Dask cluster of one single-threaded worker process, started before the timing."""
    import dask
    from distributed import Client, LocalCluster

    from recprep.workloads.runner import WORKER_CONFIG

    with dask.config.set(WORKER_CONFIG):
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
    with cluster, Client(cluster) as client:
        yield client


def best(path: Path, out: Path, keep_plan: bool, repeat: int, decode: str = "auto") -> dict:
    runs = [run(path, out, keep_plan, decode) for _ in range(repeat)]
    top = max(runs, key=lambda r: r["rows_per_s"])
    for key in ("worker_peak_bytes", "job_peak_bytes"):
        top[key] = max(r[key] for r in runs)
    return top


def shards(out: Path) -> list[Path]:
    """The committed shards' files, in shard order (a file decoded once names its shards by
    file and split: ``output.layout``)."""
    from recprep.workloads.output import read_commits

    return [out / r.file for r in sorted(read_commits(str(out)), key=lambda r: r.shard)]


def identical(a: Path, b: Path) -> bool:
    x, y = shards(a), shards(b)
    return len(x) == len(y) and all(p.read_bytes() == q.read_bytes() for p, q in zip(x, y))


def shard_text(plain: Path, out: Path) -> int:
    """Mean bytes of text per shard."""
    return plain.stat().st_size // max(len(shards(out)), 1)


def measure(plain: Path, codecs: list[str], workdir: Path, repeat: int, files: int = 0) -> dict:
    from recprep.workloads.sources import compressed

    # the single-core contract: the planning pass on one thread too (it runs on the one worker,
    # the driver being given the cluster: ``workloads.planning``, one thread a worker thread; and
    # here, where ``planning`` plans in this process)
    compressed.PASS_THREADS = 1
    results = {}
    base_out = workdir / "out-plain"
    log(f"plain: {plain.name}")
    results["plain"] = best(plain, base_out, True, repeat)
    results["plain"]["shards"] = len(shards(base_out))
    for codec in codecs:
        path = compress(plain, codec)
        out = workdir / f"out-{codec}"
        log(f"{codec}: {path.name}, first run (one file, one worker thread: decoded once)")
        first = best(path, out, False, repeat)
        entry = {"input_bytes": path.stat().st_size, "first": first, "shards": len(shards(out))}
        entry["identical"] = identical(out, base_out)
        if codec == "gz":
            log(f"{codec}: read by splits, first run (planning pass included)")
            entry["splits_first"] = best(path, out, False, repeat, "splits")
            entry["splits_identical"] = identical(out, base_out)
            log(f"{codec}: read by splits, plan kept from the first run")
            entry["reused"] = best(path, out, True, repeat, "splits")
            # decoded once, the file is decompressed once; read by splits on a first run, twice
            # (the planning pass, then every task its own part): with the rest as fast as the
            # uncompressed run, each is this fast at most
            entry["inflate_seconds"] = inflate_seconds(path, repeat)
            base = results["plain"]["seconds"]
            entry["once_ceiling"] = base / (base + entry["inflate_seconds"])
            entry["first_run_ceiling"] = base / (base + 2 * entry["inflate_seconds"])
            if files:
                log(f"{codec}: planning {files} files, one at a time and at once")
                results["planning"] = planning(path, files, workdir, repeat)
        results[codec] = entry
    text = shard_text(plain, base_out)
    for entry in results.values():
        for run_ in (entry, entry.get("first"), entry.get("splits_first"), entry.get("reused")):
            if run_ and "worker_peak_bytes" in run_:
                run_["job_peak_over_shard_text"] = run_["job_peak_bytes"] / text
    results["shard_text_bytes"] = text
    return results


def inflate_seconds(path: Path, repeat: int) -> float:
    """Seconds ISA-L takes to decompress the whole gzip file (streamed in 1 MiB reads, the text
    thrown away), best of ``repeat``: the least any one decompression of it costs here."""
    from isal import isal_zlib

    best_ = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        d = isal_zlib.decompressobj(wbits=31)
        with open(path, "rb") as f:
            for data in iter(lambda: f.read(1 << 20), b""):
                d.decompress(data)
        best_ = min(best_, time.perf_counter() - started)
    return best_


def planning(path: Path, files: int, workdir: Path, repeat: int) -> dict:
    """Seconds to plan a source of ``files`` links to ``path``, the passes one at a time and at
    once (best of ``repeat``, a fresh index each time)."""
    from recprep.spec import load_job_dict
    from recprep.workloads.machine import usable_cores
    from recprep.workloads.output.layout import INDEX_DIR
    from recprep.workloads.sources import compressed, open_source

    here = workdir / f"plan-{files}"
    shutil.rmtree(here, ignore_errors=True)
    (here / "data").mkdir(parents=True)
    for i in range(files):
        (here / "data" / f"day_{i}.tsv.gz").symlink_to(path.resolve())
    job = load_job_dict(recprep_job_document(here / "data", "tsv", here / "out"))
    rows = job.spec.output.rows_per_shard
    serial = compressed.concurrent_passes
    seconds: dict[str, float] = {}
    for name, passes in (("one_at_a_time", lambda stored: 1), ("at_once", serial)):
        compressed.concurrent_passes = passes
        try:
            for _ in range(repeat):
                shutil.rmtree(here / INDEX_DIR, ignore_errors=True)
                started = time.perf_counter()
                splits = open_source(job.spec.source, index_dir=str(here / INDEX_DIR)).splits(rows)
                took = time.perf_counter() - started
                seconds[name] = min(seconds.get(name, took), took)
        finally:
            compressed.concurrent_passes = serial
    # on the workers of a cluster the driver is given (``workloads.planning``): one single-threaded
    # worker process per file, started before the timing
    from distributed import Client, LocalCluster

    from recprep.workloads.planning import WorkerPasses

    with (
        LocalCluster(
            n_workers=files, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
        compressed.passes_run_by(WorkerPasses(client)),
    ):
        client.wait_for_workers(files)
        for _ in range(repeat):
            shutil.rmtree(here / INDEX_DIR, ignore_errors=True)
            started = time.perf_counter()
            on_workers = open_source(job.spec.source, index_dir=str(here / INDEX_DIR)).splits(rows)
            took = time.perf_counter() - started
            seconds["on_workers"] = min(seconds.get("on_workers", took), took)
    assert [s.describe() for s in on_workers] == [s.describe() for s in splits]
    sizes = [path.stat().st_size] * files
    return seconds | {
        "files": files,
        "splits": len(splits),
        "passes_at_once": serial(sizes),
        "cores": usable_cores(),
        "speedup": seconds["one_at_a_time"] / seconds["at_once"],
    }


def report(results: dict) -> None:
    plain = results["plain"]
    print(f"shard text: {results['shard_text_bytes'] / 1e6:.1f} MB (mean bytes of input text per shard)")
    print(
        f"{'contender':<26} {'rows':>10} {'shards':>6} {'same':>5} {'rows/s':>10} {'x plain':>8} "
        f"{'peak MB':>8} {'job MB':>7} {'x shard':>8}"
    )

    def line(name, r, shards_, same, base):
        print(
            f"{name:<26} {r['rows']:>10,} {shards_:>6} {same:>5} {r['rows_per_s']:>10,.0f} "
            f"{r['rows_per_s'] / base:>7.2f}x {r['worker_peak_bytes'] / 1e6:>8.0f} "
            f"{r['job_peak_bytes'] / 1e6:>7.0f} {r['job_peak_over_shard_text']:>7.1f}x"
        )

    line("plain", plain, plain["shards"], "-", plain["rows_per_s"])
    for codec, entry in results.items():
        if codec in ("plain", "shard_text_bytes", "planning"):
            continue
        base = plain["rows_per_s"]
        same = "yes" if entry["identical"] else "NO"
        once = " (decoded once)" if "splits_first" in entry else " (first run)"
        line(f"{codec}{once}", entry["first"], entry["shards"], same, base)
        if "splits_first" in entry:
            same_ = "yes" if entry["splits_identical"] else "NO"
            line(f"{codec} (splits, first run)", entry["splits_first"], entry["shards"], same_, base)
            line(f"{codec} (splits, plan kept)", entry["reused"], entry["shards"], same_, base)
        if "inflate_seconds" in entry:
            print(
                f"{codec}: ISA-L decompresses the file in {entry['inflate_seconds']:.2f} s: decoded once, "
                f"a run reaches {entry['once_ceiling']:.2f}x plain at most; read by splits, a first run "
                f"decompresses it twice and reaches {entry['first_run_ceiling']:.2f}x at most"
            )
    p = results.get("planning")
    if p:
        print(
            f"planning {p['files']} gzip files ({p['splits']} splits, {p['cores']} cores, "
            f"{p['passes_at_once']} passes at once): one at a time {p['one_at_a_time']:.2f} s, "
            f"at once {p['at_once']:.2f} s ({p['speedup']:.2f}x), on {p['files']} workers "
            f"{p['on_workers']:.2f} s ({p['one_at_a_time'] / p['on_workers']:.2f}x)"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows of the gzip input")
    ap.add_argument("--codec-rows", type=int, default=200_000, help="rows of the bz2/xz/zstd inputs")
    ap.add_argument("--codecs", nargs="+", default=list(CODECS), choices=CODECS)
    ap.add_argument("--repeat", type=int, default=2, help="keep the best of N runs")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--workdir", type=Path, help="inputs and outputs here (reused), not a temporary dir")
    ap.add_argument("--files", type=int, default=2, help="gzip files planned at once (0: skip)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    sample = args.data / "criteo_kaggle_train_10k.tsv.gz"
    if not sample.exists():
        print(f"the Criteo sample is not at {sample}: nothing to measure")
        return 0
    temporary = None if args.workdir else tempfile.mkdtemp(prefix="recprep-compressed-")
    workdir = args.workdir or Path(temporary)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        out = {}
        groups = [
            (args.rows, [c for c in args.codecs if c == "gz"]),
            (args.codec_rows, [c for c in args.codecs if c != "gz"]),
        ]
        for rows, codecs in groups:
            if not codecs:
                continue
            plain = replicate_tsv(sample, rows, workdir)
            here = workdir / f"rows-{rows}"
            here.mkdir(exist_ok=True)
            out[str(rows)] = measure(plain, codecs, here, args.repeat, args.files)
        if args.json:
            print(json.dumps(out, indent=1))
        else:
            for rows, results in out.items():
                print(f"\n{int(rows):,} rows")
                report(results)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
