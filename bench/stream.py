"""Shard streaming throughput: the shard service to 1 and 2 trainer processes, beside the same
trainers reading the same shards from local Parquet, measured in the same run.

  parquet-1 / parquet-2   trainer processes read the job's shards from the output directory
                          (recprep.delivery.shards.LocalShards: read the file, check its sha256
                          against the ledger, decode the Parquet), each rank every 2nd shard
  service-1 / service-2   trainer processes read the same shards from the shard service
                          (`recprep serve` in its own process, a bearer token, sha256 checked by
                          the server) through ShardClient, acknowledging each shard

The job output is made by recprep itself first (not timed): `synthetic://criteo?rows=N` through
the Criteo recipe (or any recprep source URI with --source), written to a temporary directory or
--workdir, never into the repository. Every trainer is a fresh process that imports, connects
and reads one shard untimed, then waits for the start signal; a contender's time runs from the
signal to the last trainer's last row; rows/s and MB/s (bytes of Arrow buffers handed to the
trainer) are totals over its trainers. --repeat N keeps the best of N.
Timings are only printed: this script never fails because something is slow.

    python bench/stream.py                         # 1,000,000 rows in shards of 32,768
    python bench/stream.py --rows 300000 --json    # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from recipe import criteo_transforms

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
PARQUET_1, PARQUET_2, SERVICE_1, SERVICE_2 = "parquet_1", "parquet_2", "service_1", "service_2"
LABELS = {
    PARQUET_1: "local Parquet, 1 trainer",
    PARQUET_2: "local Parquet, 2 trainers",
    SERVICE_1: "shard service, 1 trainer",
    SERVICE_2: "shard service, 2 trainers",
}
TRAINERS = {PARQUET_1: 1, PARQUET_2: 2, SERVICE_1: 1, SERVICE_2: 2}
DEADLINE = 600.0  # seconds any one step may take before the bench gives up on it


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Trainer processes (this file run with --trainer): import, warm up, wait for GO, consume.
# ---------------------------------------------------------------------------------------------
def trainer_main(kind: str, where: str, group: str, rank: int, world: int) -> int:
    if kind == "parquet":
        from recprep.delivery.shards import LocalShards

        stream = LocalShards(where, rank, world).open()
        next(iter(stream))  # warm-up: one shard, untimed
    else:
        from recprep.delivery.service import ShardClient

        warm = ShardClient(where, group=f"{group}-warmup", rank=rank, world_size=world, token=TOKEN)
        with contextlib.closing(iter(warm)) as it:
            next(it, None)
        warm.close()
        stream = ShardClient(where, group=group, rank=rank, world_size=world, token=TOKEN)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    rows = nbytes = shards = 0
    first = None
    start = time.time()
    for delivery in stream:
        table = delivery.table
        if first is None:
            first = time.time()
        rows += table.num_rows
        nbytes += table.nbytes
        shards += 1
        stream.ack(delivery.index)
    end = time.time()
    print(
        json.dumps(
            {
                "rows": rows,
                "bytes": nbytes,
                "shards": shards,
                "start": start,
                "first": first or end,
                "end": end,
            }
        ),
        flush=True,
    )
    return 0


class Trainer:
    def __init__(self, kind: str, where: str, group: str, rank: int, world: int):
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--trainer",
            kind,
            where,
            group,
            str(rank),
            str(world),
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, what: str) -> str:
        try:
            line = self.lines.get(timeout=DEADLINE)
        except queue.Empty:
            self.proc.kill()
            raise RuntimeError(f"a trainer sent nothing in {DEADLINE:g} s (waiting for {what})") from None
        if line is None:
            raise RuntimeError(
                f"a trainer ended (exit {self.proc.wait()}) before {what}: {self.proc.stderr.read()[-2000:]}"
            )
        return line

    def go(self):
        self.proc.stdin.write("GO\n")
        self.proc.stdin.flush()

    def finish(self) -> dict:
        result = json.loads(self.expect("its result"))
        self.proc.wait(timeout=DEADLINE)
        return result


@dataclass
class Result:
    contender: str
    trainers: int
    rows: int
    bytes: int
    shards: int
    seconds: float
    first_shard_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict:
        return {
            **asdict(self),
            "rows_per_second": round(self.rows_per_second),
            "mb_per_second": round(self.mb_per_second, 1),
        }


def run_contender(contender: str, output: Path, location: str, round_: int) -> Result:
    world = TRAINERS[contender]
    kind, where = ("parquet", str(output)) if contender.startswith("parquet") else ("service", location)
    group = f"{contender}-{round_}"
    trainers = [Trainer(kind, where, group, rank, world) for rank in range(world)]
    try:
        for t in trainers:
            ready = t.expect("READY").strip()
            if ready != "READY":
                raise RuntimeError(f"a trainer said {ready!r} instead of READY")
        for t in trainers:
            t.go()
        results = [t.finish() for t in trainers]
    finally:
        for t in trainers:
            if t.proc.poll() is None:
                t.proc.kill()
    start = min(r["start"] for r in results)
    return Result(
        contender,
        world,
        sum(r["rows"] for r in results),
        sum(r["bytes"] for r in results),
        sum(r["shards"] for r in results),
        max(r["end"] for r in results) - start,
        min(r["first"] for r in results) - start,
    )


# ---------------------------------------------------------------------------------------------
# The job output and the shard service.
# ---------------------------------------------------------------------------------------------
def make_output(source: str, rows_per_shard: int, output: Path):
    from recprep.spec import load_job_dict
    from recprep.workloads.runner import run_job

    doc = {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "bench-stream"},
        "spec": {
            "source": {"uri": source, "format": "criteo"},
            "transforms": criteo_transforms(),
            "output": {"uri": str(output), "format": "parquet", "rowsPerShard": rows_per_shard},
        },
    }
    return run_job(load_job_dict(doc), workers=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def shard_service(output: Path, state: Path, batch_rows: int):
    """`recprep serve` in its own process, as a deployment runs it; yields its location."""
    from recprep.delivery.service import ShardClient, ShardServiceError

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "BENCH_SHARD_TOKEN": TOKEN,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recprep.cli",
            "serve",
            str(output),
            "--port",
            str(port),
            "--token-env",
            "BENCH_SHARD_TOKEN",
            "--state-dir",
            str(state),
            "--batch-rows",
            str(batch_rows),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    location = f"grpc://127.0.0.1:{port}"
    try:
        probe = ShardClient(location, token=TOKEN, timeout=5)
        deadline = time.monotonic() + 120
        while True:
            try:
                probe.status()
                break
            except ShardServiceError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"recprep serve did not come up: {proc.stderr.read()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        probe.close()
        yield location
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------
def ratios(best: dict[str, Result]) -> dict[str, float]:
    pairs = {
        "service_1_vs_parquet_1": (SERVICE_1, PARQUET_1),
        "service_2_vs_parquet_2": (SERVICE_2, PARQUET_2),
        "service_2_vs_service_1": (SERVICE_2, SERVICE_1),
        "parquet_2_vs_parquet_1": (PARQUET_2, PARQUET_1),
    }
    return {
        name: round(best[a].rows_per_second / best[b].rows_per_second, 3)
        for name, (a, b) in pairs.items()
        if a in best and b in best and best[b].rows_per_second
    }


def parse_args(argv):
    p = argparse.ArgumentParser(description="Shard service throughput to 1 and 2 trainers vs local Parquet.")
    p.add_argument(
        "--rows", type=int, default=1_000_000, help="rows of the synthetic job (default 1,000,000)"
    )
    p.add_argument("--rows-per-shard", type=int, default=32_768, help="rows per shard (default 32,768)")
    p.add_argument(
        "--source",
        default=None,
        help="any recprep source URI instead of synthetic://criteo?rows=ROWS&seed=1 (Criteo schema)",
    )
    p.add_argument(
        "--batch-rows", type=int, default=16_384, help="rows per streamed record batch (default 16,384)"
    )
    p.add_argument("--repeat", type=int, default=1, help="best of N runs per contender (default 1)")
    p.add_argument(
        "--workdir", type=Path, help="keep the job output here and reuse it (default: a temporary dir)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = p.parse_args(argv)
    if min(args.rows, args.rows_per_shard, args.batch_rows, args.repeat) < 1:
        p.error("--rows, --rows-per-shard, --batch-rows and --repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--trainer"]:
        kind, where, group, rank, world = argv[1:6]
        return trainer_main(kind, where, group, int(rank), int(world))
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # benchmark the recprep of this working tree
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if args.workdir is not None and args.workdir.resolve().is_relative_to(REPO_ROOT):
        sys.exit(f"stream: --workdir {args.workdir} is inside the repository; choose a directory outside it")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="recprep-bench-stream-"))
    source = args.source or f"synthetic://criteo?rows={args.rows}&seed=1"
    figures = {
        "source": source,
        "rows_per_shard": args.rows_per_shard,
        "batch_rows": args.batch_rows,
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    best: dict[str, Result] = {}
    try:
        output = workdir / "out"
        log(f"making the job output in {output} ({source})")
        quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
        with quiet:
            summary = make_output(source, args.rows_per_shard, output)
        figures.update(rows=summary.rows_written, shards=summary.shards)
        shutil.rmtree(workdir / "state", ignore_errors=True)
        with shard_service(output, workdir / "state", args.batch_rows) as location:
            for round_ in range(args.repeat):
                for contender in (PARQUET_1, SERVICE_1, PARQUET_2, SERVICE_2):
                    r = run_contender(contender, output, location, round_)
                    log(
                        f"{LABELS[contender]:<28} {r.rows_per_second:>12,.0f} rows/s "
                        f"{r.mb_per_second:>8,.1f} MB/s ({r.rows:,} rows, {r.seconds:.2f} s, "
                        f"first shard after {r.first_shard_seconds * 1000:.0f} ms)"
                    )
                    if contender not in best or r.rows_per_second > best[contender].rows_per_second:
                        best[contender] = r
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["ratios"] = ratios(best)
    warnings = [
        f"{LABELS[c]}: {r.rows:,} rows, the job wrote {figures['rows']:,}"
        for c, r in best.items()
        if r.rows != figures["rows"]
    ]
    figures["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        figures.update(results={c: r.as_json() for c, r in best.items()}, warnings=warnings)
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"\n{figures['rows']:,} rows in {figures['shards']} shards of {args.rows_per_shard:,} rows; "
        f"record batches of {args.batch_rows:,} rows; best of {args.repeat}; {os.cpu_count()} cores; "
        f"load average {figures['loadavg_start'][0]} at the start"
    )
    print(f"{'contender':<28} {'rows/s':>12} {'MB/s':>8} {'seconds':>8} {'first shard':>12}")
    for c in (PARQUET_1, SERVICE_1, PARQUET_2, SERVICE_2):
        if c in best:
            r = best[c]
            print(
                f"{LABELS[c]:<28} {r.rows_per_second:>12,.0f} {r.mb_per_second:>8,.1f} {r.seconds:>8.2f} "
                f"{r.first_shard_seconds * 1000:>9.0f} ms"
            )
    print()
    for name, value in figures["ratios"].items():
        print(f"{name:<28} {value:.2f}x")
    for message in warnings:
        print(f"WARNING: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
