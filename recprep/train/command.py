"""``recprep train``: its options and the command (torch is imported only when it runs)."""

from __future__ import annotations

import argparse
import json
import os
import warnings

from ..errors import RecprepError
from ..spec import SHARD_TOKEN_ENV as TOKEN_ENV
from ..uris import output_location


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _pace(text: str):
    from .pace import Pace, PaceError

    try:
        return Pace.parse(text)
    except PaceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("source (one of)")
    src.add_argument("output", nargs="?", default=None, help="a job's local output directory")
    src.add_argument(
        "--service", metavar="URL", default=None, help="the shard service, grpc://host:port (recprep serve)"
    )
    src.add_argument("--group", default="train", help="consumer group at the shard service (default train)")
    src.add_argument("--rank", type=int, default=0, help="this trainer's rank in the group (default 0)")
    src.add_argument("--world-size", type=int, default=1, help="trainers in the group (default 1)")
    src.add_argument(
        "--token", default=None, help=f"bearer token for the shard service (default ${TOKEN_ENV})"
    )
    f = p.add_argument_group("features (default: the roles the job wrote with its shards)")
    f.add_argument("--label", default=None, help="the label column")
    f.add_argument("--dense", type=_names, default=None, help="dense feature columns, comma-separated")
    f.add_argument("--sparse", type=_names, default=None, help="sparse feature columns, comma-separated")
    m = p.add_argument_group("model and training")
    m.add_argument("--embedding-dim", type=int, default=16, help="embedding dimension (default 16)")
    m.add_argument("--batch-size", type=int, default=256, help="samples per batch (default 256)")
    m.add_argument("--epochs", type=int, default=1, help="passes over the shards (default 1)")
    m.add_argument(
        "--session-slack",
        type=int,
        default=0,
        help="deduplicated shards: a batch may end up to this many samples early where a session "
        "begins, so sessions are not split between batches (default 0: every batch is --batch-size)",
    )
    m.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    m.add_argument(
        "--table-rows",
        type=int,
        default=None,
        help="rows per embedding table; IDs are reduced modulo this (default: the ID range "
        "the job's transforms hash into, else 100000)",
    )
    m.add_argument(
        "--bottom-mlp", type=_sizes, default=(64,), help="hidden sizes of the bottom MLP (default 64)"
    )
    m.add_argument(
        "--top-mlp", type=_sizes, default=(64, 32), help="hidden sizes of the top MLP (default 64,32)"
    )
    m.add_argument("--optimizer", default="adagrad", help="adagrad | sgd (default adagrad)")
    m.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    m.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: one per core, within a container's CPU limit)",
    )
    m.add_argument(
        "--rows-per-second",
        type=_pace,
        default=None,
        metavar="SCHEDULE",
        help="hold the trainer to this demand, as a model of that speed would consume: RATE[@SECONDS],... "
        "(e.g. 5000,30000@20,2000@60: rises at 20 s, drops at 60 s; inf: no limit); to load-test a "
        "pipeline's autoscaling without the real trainers (default: as fast as it can)",
    )
    c = p.add_argument_group("embedding cache")
    c.add_argument("--cache", default="none", help="none | lookahead | lru (default none)")
    c.add_argument("--cache-rows", type=int, default=None, help="device rows per table (look-ahead and LRU)")
    c.add_argument("--window", type=int, default=4, help="look-ahead window in batches (default 4)")
    c.add_argument(
        "--horizon",
        type=int,
        default=0,
        help="look-ahead: batches read beyond the window to choose evictions (default 0)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args, out, err) -> int:
    """Exit code 2 for invalid options, 1 for runtime errors (raised as RecprepError)."""
    from ..delivery.batching import FeatureChoice
    from .config import TrainConfig, TrainConfigError

    try:
        config = TrainConfig(
            source=_source(args),
            embedding_dim=args.embedding_dim,
            batch_size=args.batch_size,
            epochs=args.epochs,
            steps=args.steps,
            table_rows=args.table_rows,
            bottom_mlp=args.bottom_mlp,
            top_mlp=args.top_mlp,
            optimizer=args.optimizer,
            lr=args.lr,
            cache=args.cache,
            cache_rows=args.cache_rows,
            window=args.window,
            horizon=args.horizon,
            device=args.device,
            seed=args.seed,
            threads=args.threads,
            features=FeatureChoice(args.label, args.dense, args.sparse),
            pace=args.rows_per_second,
            session_slack=args.session_slack,
        )
        config.check()
    except TrainConfigError as exc:
        _invalid(err, exc)
        return 2
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RecprepError("recprep train needs torch: pip install 'recprep[train]'") from None
    from ..workloads.memory import tune_allocator
    from .loop import train

    # A trainer frees and takes the same batch-sized buffers step after step: glibc's defaults
    # serve them from the heap, but a MALLOC_TRIM_THRESHOLD_ in the environment (Dask's nanny
    # puts 65536 in the environment of the process that starts its workers, which a trainer
    # started from there inherits) makes each one a fresh mmap: 1.75x slower on CPU, measured.
    tune_allocator()
    # torch warns once that sparse tensors skip invariant checks (Adagrad's sparse update)
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    try:
        result = train(config)
    except TrainConfigError as exc:
        _invalid(err, exc)
        return 2
    report = result.report
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        out.print(_summary(report))
    return 0


def _invalid(err, exc: Exception) -> None:
    """One line whatever the terminal's width (soft_wrap), the message's brackets as text."""
    from rich.markup import escape

    message = escape(" ".join(str(exc).split()))
    err.print(f"[red]invalid option:[/red] {message}", highlight=False, soft_wrap=True)


def _source(args):
    from ..delivery.shards import LocalShards, ServiceShards, read_ledger
    from .config import TrainConfigError

    if (args.output is None) == (args.service is None):
        raise TrainConfigError("give either a job output directory or --service grpc://host:port")
    if args.world_size < 1 or not 0 <= args.rank < args.world_size:
        raise TrainConfigError(f"--rank {args.rank} is not in [0, --world-size {args.world_size})")
    if args.service is not None:
        if not args.service.startswith(("grpc://", "grpc+tcp://", "grpc+tls://")):
            raise TrainConfigError(f"--service: expected grpc://host:port, got {args.service!r}")
        return ServiceShards(
            args.service,
            args.group,
            args.rank,
            args.world_size,
            args.token if args.token is not None else os.environ.get(TOKEN_ENV),
        )
    directory = output_location(args.output)  # a path, or an object store URI (s3://...)
    read_ledger(directory)  # a missing or foreign directory is reported before torch loads
    return LocalShards(directory, args.rank, args.world_size)


def _summary(r):
    from rich.table import Table

    t = Table(title=f"train ({r.device}, {r.threads} threads, cache {r.cache})", show_header=False)
    t.add_row("source", r.source)
    t.add_row("table rows", f"{r.table_rows:,} ({r.table_rows_note})")
    t.add_row("steps", f"{r.steps:,}")
    t.add_row("samples", f"{r.samples:,}")
    t.add_row("seconds", f"{r.seconds:.2f}")
    t.add_row("samples/s", f"{r.samples_per_second:,.0f}")
    t.add_row("waiting for data", f"{r.data_wait_fraction:.1%}")
    if r.pace is not None:
        t.add_row("held to the schedule", f"{r.held_seconds:.1f} s ({r.pace})")
    if r.loss_first is not None:
        t.add_row("loss (first 10 -> last 10 steps)", f"{r.loss_first:.4f} -> {r.loss_last:.4f}")
    t.add_row("shards acknowledged", f"{r.shards_acknowledged}")
    if r.cache_stats is not None:
        s = r.cache_stats
        t.add_row(
            "cache rows per table",
            f"{r.cache_rows:,}"
            + (f" (window {r.window}, horizon {r.horizon})" if r.window is not None else ""),
        )
        t.add_row("cache hit rate", f"{s.hit_rate:.2%} of {s.lookups:,} lookups")
        t.add_row("rows host->device / device->host", f"{s.rows_h2d:,} / {s.rows_d2h:,}")
        t.add_row("cache seconds (training thread)", f"{r.cache_seconds:.2f}")
    return t
