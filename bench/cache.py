"""Embedding cache on the Criteo sample: ScratchPipe's look-ahead cache against an LRU cache of
the same size, and what each costs a training step.

The public 10k-row Criteo sample is preprocessed by recprep itself (the README's recipe: 26
sparse features hashed by sigrid_hash into 1,000,000 rows, plus the I1_bucket feature) into a
temporary directory, never into the repository. Its batches (--batch-size rows, --epochs passes
over the shards, IDs reduced modulo --table-rows as the trainer does) are then replayed:

  planning   for each cache size (device rows per table, the same for all 27 tables) and each
             policy: the train-time hit rate (the share of lookups whose row is on the device
             when the training step starts), the rows copied host-to-device and the evictions.
             Look-ahead plans each batch --window batches before its step, evicting the least
             recently used rows outside the window ("lookahead"), or, reading --horizon batches
             further, the rows needed last within what it has read ("lookahead_hH"); LRU
             fetches its misses when the step needs them. "compulsory" is the number of distinct rows the
             run touches: no cache of any size moves fewer rows host-to-device. A look-ahead
             cache smaller than a window's distinct rows is refused (shown as "too small").
  training   recprep's DLRM (recprep.train) on the same batches: samples/s without a cache and
             with each cache at each size, the share of time spent carrying out cache plans on
             the training thread, and the share spent waiting for data. On a machine without a
             GPU the "device" is host memory, so the figures show the cache's overhead, not a
             GPU's gain; the hit rates and the rows moved are what carries over.

Timings are only printed: this script never fails because something is slow.

    python bench/cache.py
    python bench/cache.py --sizes 2048 8192 --epochs 2 --json
    python bench/cache.py --skip-train
"""

from __future__ import annotations

import os

# Pin BLAS/OpenMP pools before numpy and torch load (torch's intra-op pool is set with --threads).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from recipe import criteo_transforms  # noqa: E402  (bench/ is the script's directory)

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FILE = "criteo_kaggle_train_10k.tsv.gz"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def preprocess(sample: Path, outdir: Path) -> dict:
    """The sample through recprep (one local worker); returns what the run did."""
    from recprep.spec import load_job_dict
    from recprep.workloads.runner import run_job

    doc = {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": "bench-cache"},
        "spec": {
            "source": {
                "uri": str(sample),
                "format": "criteo",
                "dense": "I*",
                "sparse": ["C*"],
                "label": "label",
            },
            "transforms": criteo_transforms(),
            "output": {"uri": str(outdir), "format": "parquet", "rowsPerShard": 65536},
        },
    }
    summary = run_job(load_job_dict(doc), workers=1)
    return {"rows": summary.rows_written, "shards": summary.shards, "seconds": round(summary.seconds, 2)}


def batch_rows(
    outdir: Path, batch_size: int, epochs: int, table_rows: int
) -> tuple[list[str], list[list[np.ndarray]]]:
    """Per step, per table: the rows the batch looks up (what the trainer plans with)."""
    from recprep.delivery.batching import iter_batches
    from recprep.delivery.shards import LocalShards

    source = LocalShards(str(outdir))
    keys, steps = [], []
    for epoch in range(epochs):
        for b in iter_batches(source.open(epoch), batch_size):
            keys = list(b.keys)
            steps.append([np.remainder(b.feature(i)[0], table_rows) for i in range(len(b.keys))])
    return keys, steps


def policies(args) -> dict[str, int | None]:
    """Policy name: look-ahead horizon (None for LRU)."""
    out: dict[str, int | None] = {"lookahead": 0}
    if args.horizon:
        out[f"lookahead_h{args.horizon}"] = args.horizon
    out["lru"] = None
    return out


def simulate(
    keys: list[str],
    steps: list[list[np.ndarray]],
    table_rows: int,
    capacity: int,
    horizon: int | None,
    window: int,
) -> dict:
    """Replay the planners over every step and table, carrying plans out on slot mirrors."""
    from recprep.train.cache_plan import (
        CacheTooSmallError,
        LookaheadPlanner,
        LRUPlanner,
        SlotMirror,
        plan_ahead,
    )

    figures = {"hits": 0, "lookups": 0, "rows_h2d": 0, "evictions": 0}
    started = time.perf_counter()
    try:
        for t, key in enumerate(keys):
            table = [s[t] for s in steps]
            if horizon is not None:
                planner = LookaheadPlanner(table_rows, capacity, window, key)
                mirror = SlotMirror(planner.capacity)
                for rows, plan, due in plan_ahead(table, planner.admit, window, horizon):
                    for p in due:
                        mirror.apply(p)
                        figures["rows_h2d"] += p.fetch_rows.size
                        figures["evictions"] += p.evict_rows.size
                    figures["hits"] += mirror.resident(plan)
                    figures["lookups"] += rows.size
            else:
                planner = LRUPlanner(table_rows, capacity, key)
                mirror = SlotMirror(planner.capacity)
                for rows in table:
                    plan = planner.access(rows)
                    figures["hits"] += mirror.resident(plan)
                    figures["lookups"] += rows.size
                    mirror.apply(plan)
                    figures["rows_h2d"] += plan.fetch_rows.size
                    figures["evictions"] += plan.evict_rows.size
    except CacheTooSmallError as exc:
        return {"error": str(exc)}
    figures["hit_rate"] = figures["hits"] / figures["lookups"] if figures["lookups"] else 1.0
    figures["planning_seconds"] = round(time.perf_counter() - started, 3)
    return figures


def compulsory_rows(keys: list[str], steps: list[list[np.ndarray]]) -> int:
    return sum(np.unique(np.concatenate([s[t] for s in steps])).size for t in range(len(keys)))


def train_once(
    outdir: Path, args, cache: str, capacity: int | None, horizon: int | None = None, steps: int | None = None
) -> dict:
    from recprep.delivery.shards import LocalShards
    from recprep.errors import RecprepError
    from recprep.train.loop import TrainConfig, train

    config = TrainConfig(
        LocalShards(str(outdir)),
        embedding_dim=args.embedding_dim,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps=steps,
        table_rows=args.table_rows,
        cache=cache,
        cache_rows=capacity,
        window=args.window,
        horizon=horizon or 0,
        device="cpu",
        seed=0,
    )
    try:
        report = train(config).report
    except RecprepError as exc:
        return {"error": str(exc)}
    out = {
        "samples_per_second": report.samples_per_second,
        "steps": report.steps,
        "seconds": report.seconds,
        "data_wait_fraction": report.data_wait_fraction,
        "cache_fraction": report.cache_seconds / report.seconds if report.seconds else 0.0,
    }
    if report.cache_stats is not None:
        out["hit_rate"] = report.cache_stats.hit_rate
        out["rows_h2d"] = report.cache_stats.rows_h2d
    return out


def best(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    return max(ok, key=lambda r: r["samples_per_second"]) if ok else runs[0]


def run_training(outdir: Path, args, sizes: list[int]) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    log("training: warm-up (untimed)")
    train_once(outdir, args, "none", None, steps=3)
    results: dict = {}
    log("training: no cache")
    results["none"] = best([train_once(outdir, args, "none", None) for _ in range(args.repeat)])
    for policy, horizon in policies(args).items():
        results[policy] = {}
        cache = "lru" if horizon is None else "lookahead"
        for size in sizes:
            log(f"training: {policy}, {size:,} rows per table")
            results[policy][str(size)] = best(
                [train_once(outdir, args, cache, size, horizon) for _ in range(args.repeat)]
            )
    return results


def ratios(figures: dict) -> dict:
    """samples/s against no cache; rows moved host-to-device against LRU's."""
    out = {}
    base = figures.get("training", {}).get("none", {}).get("samples_per_second")
    for policy, runs in figures.get("training", {}).items():
        for size, r in runs.items() if policy != "none" else ():
            if base and "samples_per_second" in r:
                out[f"samples_per_second_{policy}_{size}_vs_none"] = r["samples_per_second"] / base
    plans = figures["planning"]
    for policy, runs in plans.items():
        for size, r in runs.items() if policy != "lru" else ():
            lru = plans["lru"][size]
            if "rows_h2d" in r and "rows_h2d" in lru and lru["rows_h2d"]:
                out[f"rows_h2d_{policy}_{size}_vs_lru"] = r["rows_h2d"] / lru["rows_h2d"]
    return out


def report_text(args, figures: dict) -> None:
    print(
        f"Embedding cache on the Criteo sample: {figures['preprocess']['rows']:,} rows preprocessed by "
        f"recprep, {figures['steps']} steps of {args.batch_size} ({args.epochs} epochs), "
        f"{figures['tables']} tables of {args.table_rows:,} rows, look-ahead window {args.window}"
    )
    print(
        f"compulsory rows (distinct rows the run touches, all tables): {figures['compulsory_rows']:,}; "
        f"lookups: {figures['lookups']:,}"
    )
    print()
    print(
        f"{'rows/table':>10}  {'policy':<16}{'hit rate':>10}{'rows H2D':>12}{'x compulsory':>14}{'x LRU':>10}"
        f"{'evictions':>12}"
    )
    for size in args.sizes:
        for policy in policies(args):
            r = figures["planning"][policy][str(size)]
            if "error" in r:
                print(f"{size:>10,}  {policy:<16}{'too small for the window':>52}")
                continue
            vs_lru = figures["ratios"].get(f"rows_h2d_{policy}_{size}_vs_lru")
            vs = "-" if vs_lru is None else f"{vs_lru:.2f}"
            print(
                f"{size:>10,}  {policy:<16}{r['hit_rate']:>10.2%}{r['rows_h2d']:>12,}"
                f"{r['rows_h2d'] / figures['compulsory_rows']:>14.2f}{vs:>10}{r['evictions']:>12,}"
            )
    if "training" not in figures:
        return
    t = figures["training"]
    print()
    print(f"training on {figures['device']} ({args.threads} torch thread(s)), best of {args.repeat}")
    print(
        f"{'rows/table':>10}  {'cache':<16}{'samples/s':>12}{'vs none':>9}{'in cache':>10}{'data wait':>11}"
    )
    n = t["none"]
    print(
        f"{'-':>10}  {'none':<16}{n['samples_per_second']:>12,.0f}{'1.00x':>9}{'-':>10}"
        f"{n['data_wait_fraction']:>11.1%}"
    )
    for size in args.sizes:
        for policy in policies(args):
            r = t[policy][str(size)]
            if "error" in r:
                print(f"{size:>10,}  {policy:<16}{'too small for the window':>42}")
                continue
            ratio = r["samples_per_second"] / n["samples_per_second"] if n.get("samples_per_second") else 0
            print(
                f"{size:>10,}  {policy:<16}{r['samples_per_second']:>12,.0f}{ratio:>8.2f}x"
                f"{r['cache_fraction']:>10.1%}{r['data_wait_fraction']:>11.1%}"
            )
    print("  in cache: share of the run spent carrying out cache plans on the training thread")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Look-ahead (ScratchPipe) vs LRU embedding cache on the Criteo sample."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help=f"directory holding {SAMPLE_FILE} (default: ../shared/data from the repo root)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1024, 2048, 4096, 8192],
        help="cache sizes, device rows per table (default 1024 2048 4096 8192)",
    )
    parser.add_argument("--window", type=int, default=4, help="look-ahead window in batches (default 4)")
    parser.add_argument(
        "--horizon",
        type=int,
        default=16,
        help="also plan with this many batches read beyond the window (0: not; default 16)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="default 256")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the shards (default 3)")
    parser.add_argument(
        "--table-rows",
        type=int,
        default=1_000_000,
        help="rows per embedding table (default 1,000,000: the recipe's sigrid_hash range)",
    )
    parser.add_argument("--embedding-dim", type=int, default=16, help="default 16")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads for training (default 1)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="best of N training runs (default 1)")
    parser.add_argument("--skip-train", action="store_true", help="planning figures only (no torch needed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    for name in (
        "window",
        "horizon",
        "batch_size",
        "epochs",
        "table_rows",
        "embedding_dim",
        "threads",
        "repeat",
    ):
        if getattr(args, name) < (0 if name in ("window", "horizon") else 1):
            bound = ">= 0" if name in ("window", "horizon") else "positive"
            parser.error(f"--{name.replace('_', '-')} must be {bound}")
    if any(s < 1 for s in args.sizes):
        parser.error("--sizes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sample = args.data / SAMPLE_FILE
    if not sample.is_file():
        message = f"cache: skipped, the Criteo sample {sample} is missing (give its directory with --data)"
        print(json.dumps({"skipped": message}) if args.json else message)
        return 0
    if str(REPO_ROOT) not in sys.path:  # benchmark the recprep of this working tree
        sys.path.insert(0, str(REPO_ROOT))
    workdir = Path(tempfile.mkdtemp(prefix="recprep-bench-cache-"))
    figures: dict = {
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "window": args.window,
        "table_rows": args.table_rows,
        "sizes": args.sizes,
    }
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with quiet:
            log(f"preprocessing {sample} with recprep into {workdir}")
            figures["preprocess"] = preprocess(sample, workdir / "out")
            keys, steps = batch_rows(workdir / "out", args.batch_size, args.epochs, args.table_rows)
            figures.update(
                tables=len(keys),
                steps=len(steps),
                compulsory_rows=compulsory_rows(keys, steps),
                lookups=int(sum(r.size for s in steps for r in s)),
            )
            figures["planning"] = {p: {} for p in policies(args)}
            for size in args.sizes:
                for policy, horizon in policies(args).items():
                    log(f"planning: {policy}, {size:,} rows per table")
                    figures["planning"][policy][str(size)] = simulate(
                        keys, steps, args.table_rows, size, horizon, args.window
                    )
            if not args.skip_train:
                try:
                    import torch  # noqa: F401
                except ImportError:
                    figures["training_skipped"] = "torch is not installed (pip install 'recprep[train]')"
                else:
                    figures["device"] = "cpu"
                    figures["training"] = run_training(workdir / "out", args, args.sizes)
            figures["ratios"] = ratios(figures)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        report_text(args, figures)
        if "training_skipped" in figures:
            print(f"training skipped: {figures['training_skipped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
