"""``recprep run | validate``: the same PreprocessJob file as ``kubectl apply`` takes."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .errors import RecprepError, SpecError

err = Console(stderr=True)
out = Console()


class RichProgress:
    """Rows, shards, rows/s and ETA on the terminal (rows estimated until every shard lands)."""

    def __init__(self, console: Console):
        self.bar = Progress(
            TextColumn("[bold]{task.fields[phase]}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]}"),
            TextColumn("shards {task.fields[shards]}"),
            TextColumn("{task.fields[rate]} rows/s"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None
        self.shards_total = self.shards_done = 0
        self.rows = 0
        self.t0 = time.perf_counter()
        self.phase_name = "plan"

    def __enter__(self):
        self.bar.__enter__()
        self.task = self.bar.add_task("job", total=None, phase=self.phase_name, shards="-", rate="-", rows="")
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def phase(self, name: str) -> None:
        self.phase_name = name
        self.bar.update(self.task, phase=name)

    def warn(self, message: str) -> None:
        self.bar.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)

    def start(self, total_shards, est_rows, done_shards, done_rows, done_quarantined=0) -> None:
        self.shards_total, self.shards_done, self.rows = total_shards, done_shards, done_rows
        self.t0 = time.perf_counter()
        self._first_rows = done_rows
        self.bar.update(
            self.task,
            total=max(est_rows, done_rows),
            completed=done_rows,
            shards=f"{done_shards}/{total_shards}",
            rows=f"{done_rows:,}/~{est_rows:,} rows",
            rate="-",  # the rate counts this stage's rows, not those an earlier run committed
        )

    def advance(self, result) -> None:
        self._moved(result.rows + result.bad_rows, estimated=False)

    def fitted(self, est_rows: int) -> None:
        self._moved(est_rows, estimated=True)

    def _moved(self, rows: int, estimated: bool) -> None:
        self.shards_done += 1
        self.rows += rows
        rate = (self.rows - self._first_rows) / max(time.perf_counter() - self.t0, 1e-9)
        total = self.bar.tasks[0].total or 0
        if self.shards_done == self.shards_total:
            total = self.rows
        else:
            total = max(total, self.rows)
        self.bar.update(
            self.task,
            completed=self.rows,
            total=total,
            shards=f"{self.shards_done}/{self.shards_total}",
            rate=f"{'~' if estimated else ''}{rate:,.0f}",
            rows=f"{'~' if estimated else ''}{self.rows:,}/"
            f"{'' if self.shards_done == self.shards_total and not estimated else '~'}{total:,} rows",
        )


def _summary(s) -> Table:
    from .workloads.output import QUARANTINE_DIR

    t = Table(title=f"job {s.job}", show_header=False)
    t.add_row("output", s.output)
    t.add_row("rows read", f"{s.rows_read:,}")
    t.add_row("rows written", f"{s.rows_written:,}")
    t.add_row(
        "rows quarantined",
        f"{s.rows_quarantined:,}" + (f"  ({s.output}/{QUARANTINE_DIR}/)" if s.rows_quarantined else ""),
    )
    t.add_row(
        "shards", f"{s.shards} ({s.shards_skipped} already committed)" if s.shards_skipped else f"{s.shards}"
    )
    t.add_row("seconds", f"{s.seconds:.2f}")
    t.add_row("workers", f"{s.workers} ({s.cores} cores)")
    if s.rows_processed:
        t.add_row(
            "rows/s per core",
            f"{s.rows_per_second_per_core:,.0f} (the {s.rows_processed:,} rows this run read)",
        )
    else:
        t.add_row("rows/s per core", "- (every shard was committed by an earlier run)")
    for i, line in enumerate(s.scaling):
        t.add_row("autoscaler" if i == 0 else "", line)
    a = s.accounting
    if a.get("shards"):
        by_pool = ", ".join(f"{n} {p}" for p, n in a["shardsByPool"].items())
        t.add_row("placement", f"{a['placement']} ({by_pool}; why per shard: the ledger's placement)")
        net = a["networkBytes"]
        mb = {k: f"{v / 1e6:,.1f}" for k, v in net.items()}
        t.add_row(
            "bytes",
            f"{a['storedBytes'] / 1e6:,.1f} MB read from storage; {mb['total']} MB over the network "
            f"(raw {mb['raw']}, handed over {mb['handoff']}, shards {mb['shard']})",
        )
        busy = a["busySeconds"]
        t.add_row("busy seconds", f"isp {busy['isp']:,.2f}, cpu {busy['cpu']:,.2f}")
        m = a["modelled"]
        if m["rowsPerDollar"]:
            t.add_row(
                "modelled",
                f"{m['joules']:,.1f} J, ${m['dollars']:.6f}: {m['rowsPerJoule']:,.0f} rows/J, "
                f"{m['rowsPerDollar']:,.0f} rows/$ (spec.pools.isp.model)",
            )
        for name, w in a["ispWorkers"].items():
            if "ratio" in w:
                behind = f"; {w['tasksBehind']} tasks behind the model" if w["tasksBehind"] else ""
                t.add_row(
                    f"paced {name}",
                    f"{w['rowsPerSecond']:,.0f} rows/s measured, {w['modelRowsPerSecond']:,.0f} modelled "
                    f"({w['ratio']:.0%}{behind})",
                )
    return t


def _load_job_from_env(var: str):
    """The PreprocessJob YAML held by environment variable ``var`` (the operator's driver gets
    it from the job's ConfigMap through ``configMapKeyRef``)."""
    import os

    from .spec import load_job_text

    text = os.environ.get(var)
    if not text:
        raise SpecError(f"${var}: the environment variable is not set or empty")
    return load_job_text(text, f"${var}")


def cmd_run(args) -> int:
    from .spec import load_job
    from .workloads.runner import run_job
    from .workloads.tasks import prepare

    if args.output is not None and not args.output.strip():
        # an empty --output would silently leave spec.output.uri in force
        raise SpecError(f"--output: give the output directory (got {args.output!r})")
    if args.job_env:
        if args.job != "-":
            raise SpecError(f"give '-' as the job file with --job-env (got {args.job!r})")
        job = _load_job_from_env(args.job_env)
    elif args.job == "-":
        raise SpecError("job file '-' needs --job-env VAR (the variable holding the job YAML)")
    else:
        job = load_job(args.job)
    prepare(job)  # spec, source and plan errors surface before the progress bar
    dashboard = _dashboard(args.dashboard, job) if args.dashboard else None
    if args.serve:
        from .delivery.service.running import serve_alongside

        run_job = serve_alongside(args.serve, job, run_job, err)
    monitor = dashboard[1] if dashboard else None
    try:
        if args.scheduler:
            return _run_on_scheduler(job, args, run_job, monitor)
        with RichProgress(err) as bar:
            progress = bar
            if monitor is not None:
                from .progress import ProgressPublisher

                progress = ProgressPublisher(bar, sinks={"the dashboard": monitor.sink})
            summary = run_job(
                job,
                workers=args.workers,
                output=args.output,
                overwrite=args.overwrite,
                progress=progress,
                fsync=args.fsync,
                isp_workers=args.isp_workers,
                monitor=monitor,
                decode=args.decode,
            )
        out.print(_summary(summary))
        return 0
    except BaseException as exc:
        if monitor is not None:
            monitor.finished(False, str(exc))
        raise
    finally:
        if dashboard:
            dashboard[0].close()


def _dashboard(address: str, job):
    """``recprep run --dashboard [HOST:]PORT``: the server (started) and the run's monitor."""
    try:
        import prometheus_client  # noqa: F401 - /metrics needs it

        from .dashboard.local import LocalMonitor
        from .dashboard.server import Board, DashboardServer, parse_address, plotly_path
    except ImportError as exc:
        raise RecprepError(
            f'--dashboard: {exc.name} is not installed: pip install "recprep[dashboard]"'
        ) from None
    if plotly_path() is None:
        raise RecprepError('--dashboard: plotly is not installed: pip install "recprep[dashboard]"')
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise RecprepError(f"--dashboard: {exc}") from None
    board = Board()
    monitor = LocalMonitor(job, board)
    try:
        server = DashboardServer(board, host, port)
    except OSError as exc:
        raise RecprepError(f"--dashboard {address}: cannot listen ({exc.strerror or exc})") from None
    err.print(f"dashboard: {server.url} (metrics: {server.url}metrics)", highlight=False, soft_wrap=True)
    return server, monitor


def _run_on_scheduler(job, args, run_job, monitor=None) -> int:
    """``recprep run --scheduler``: the same run, with its progress also published on the
    scheduler (``recprep.progress``), where the operator reads it."""
    from distributed import Client

    from .progress import SchedulerProgress

    try:
        client = Client(args.scheduler, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise RecprepError(f"--scheduler {args.scheduler}: cannot connect ({exc})") from None
    with client, RichProgress(err) as bar:
        sinks = {"the dashboard": monitor.sink} if monitor is not None else None
        progress = SchedulerProgress(client, bar, sinks=sinks)
        summary = run_job(
            job,
            output=args.output,
            overwrite=args.overwrite,
            client=client,
            progress=progress,
            fsync=args.fsync,
            monitor=monitor,
            decode=args.decode,
            # a cluster the operator grows (its pool up to spec.pools.cpu.max workers) or the
            # user's own: the decode policy weighs the files against the most it may have
            threads=max(job.spec.pools.cpu.max, 1),
        )
        progress.finish()
    out.print(_summary(summary))
    return 0


def cmd_isp_worker(args) -> int:
    from .isp_nodes.worker import run_worker

    try:
        return run_worker(args.scheduler, args.node, args.name, args.units)
    except ValueError as exc:
        raise SpecError(f"--node {args.node!r}: {exc}") from None


def cmd_validate(args) -> int:
    from .spec import load_job
    from .uris import output_location
    from .workloads.tasks import prepare, split_rows

    job = load_job(args.job)
    output_location(job.spec.output.uri)  # a URI that names no place to write is an error here too
    # a compressed input is planned (one pass over it) in a directory of its own, not in the output
    with tempfile.TemporaryDirectory(prefix="recprep-validate-") as index:
        source, plan = prepare(job, index_dir=index)
        splits = source.splits(split_rows(job))
    rows = sum(s.est_rows for s in splits)
    # a session job's shards are cut at session boundaries once its rows are grouped; a grouped
    # source's splits are its shards, each cut at the session boundaries around it
    grouped = plan.sessions and job.spec.source.session.grouped
    if plan.sessions and not grouped:
        shards = f"{len(splits)} source splits to group, shards by session"
    else:
        shards = f"{len(splits)} shards" + (" (cut at session boundaries)" if grouped else "")
    out.print(
        f"[green]ok[/green] {args.job}: job {job.metadata.name}, {len(plan.steps)} transforms, "
        f"{shards} (~{rows:,} rows), "
        f"{len(plan.fit_stages)} fit stage(s); output columns: {', '.join(plan.columns)}"
    )
    roles = plan.roles
    out.print(
        f"  label: {roles.label or '(none)'}; dense: {', '.join(roles.dense) or '(none)'}; "
        f"sparse: {', '.join(roles.sparse) or '(none)'}"
        + (f"; kept (spec.output.keep): {', '.join(plan.kept)}" if plan.kept else ""),
        highlight=False,
        soft_wrap=True,
    )
    if plan.dropped:
        out.print(
            f"  left out (in no role; spec.output.keep keeps them): {', '.join(plan.dropped)}",
            highlight=False,
            soft_wrap=True,
        )
    for name, features in plan.groups:
        derived = [f"{d.column} from {d.source}" for d in plan.derived if d.column in features]
        note = f"; where the session before gives it, not stored: {', '.join(derived)}" if derived else ""
        out.print(
            f"  dedup group {name}: {', '.join(features)} (once per session{note})",
            highlight=False,
            soft_wrap=True,
        )
    out.print(
        f"  ISP units (spec.pools.isp): {_offload_line(plan, grouped)}", highlight=False, soft_wrap=True
    )
    unhashed = [c for c in roles.sparse if plan.schema_kinds.get(c) == "string"]
    if unhashed:
        out.print(
            f"  [yellow]warning:[/yellow] sparse features still strings after the transforms (trainers "
            f"need integer IDs: hash them with sigrid_hash, or convert them with to_int, hex_to_int or "
            f"categorify): {', '.join(unhashed)}",
            highlight=False,
            soft_wrap=True,
        )
    return 0


def _offload_line(plan, grouped: bool = False) -> str:
    """Which transforms ISP units run (the op registry's classes) and which the CPU pool does."""
    k, n = plan.offloadable, len(plan.steps)
    if grouped:
        return (
            "none: a grouped session job's shard reads the edges of the splits around it (its first "
            "session's history, its last session's end), so the CPU pool runs them"
        )
    if plan.sessions:
        return "none: a session job's shards are read from its staged sessions, so the CPU pool runs them"
    if n == 0:
        return "the read and the write (no transform)"
    classes = ", ".join(f"{s.op.name} ({s.op.Params.offload})" for s in plan.steps[:k])
    if k == n:
        return f"every transform: {classes}; an ISP worker reads, transforms and writes its shards"
    first = plan.steps[k]
    head = f"transforms [0:{k}] ({classes})" if k else "none of the transforms"
    return (
        f"{head}; from spec.transforms[{k}] ({first.op.name}, not offloaded) on, the CPU pool "
        "finishes each shard"
    )


def cmd_operator(args) -> int:
    from .operator.main import run

    run(namespace=args.namespace, liveness=args.liveness, standalone=args.standalone, verbose=args.verbose)
    return 0


def cmd_train(args) -> int:
    from .train.command import run

    return run(args, out, err)


def cmd_serve(args) -> int:
    from .delivery.service.running import serve_command

    return serve_command(args, err)


def _at_least(least: int, what: str):
    """An argparse type: an integer of at least ``least`` (``what`` names such a number)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return convert


_positive = _at_least(1, "a positive integer")
_count = _at_least(0, "a whole number (0 or more)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recprep", description="Elastic RecSys preprocessing.")
    p.add_argument("--version", action="version", version=f"recprep {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a PreprocessJob on a local (embedded) or remote Dask cluster")
    run.add_argument("job", help="PreprocessJob YAML file ('-' with --job-env)")
    run.add_argument(
        "--workers", type=_positive, default=None, help="local worker processes (default: one per core)"
    )
    run.add_argument(
        "--isp-workers",
        type=_count,
        default=None,
        metavar="N",
        help="ISP workers (storage nodes) of the local cluster, beside --workers (default: max(1, "
        "spec.pools.isp.min) when the job names spec.pools.isp, else 0)",
    )
    run.add_argument(
        "--decode",
        choices=("auto", "once", "splits"),
        default="auto",
        help="compressed files: 'once' gives each file to one task that decompresses it once and "
        "makes its shards as it goes; 'splits' plans each file's splits first (a pass over it) and "
        "gives them out one by one (parallel within a file; decompressed twice); 'auto' (default) "
        "decodes once when the files to plan are at least as many as the worker threads",
    )
    run.add_argument("--output", default=None, help="override spec.output.uri")
    run.add_argument("--overwrite", action="store_true", help="replace another job's shards in the output")
    run.add_argument(
        "--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)"
    )
    run.add_argument(
        "--fsync", action="store_true", help="fsync every shard and ledger line (survives power loss)"
    )
    run.add_argument(
        "--job-env",
        metavar="VAR",
        default=None,
        help="read the job YAML from environment variable VAR (job file '-')",
    )
    run.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        default=None,
        help="also serve the shards to trainers (the shard service) while the job runs, "
        "and after it until Ctrl-C/SIGTERM; token from $RECPREP_SHARD_TOKEN",
    )
    run.add_argument(
        "--dashboard",
        metavar="[HOST:]PORT",
        default=None,
        help="serve the autoscaler dashboard (a web page, its JSON API under /api and Prometheus "
        "metrics on /metrics) while the job runs; host 127.0.0.1 unless given; needs the dashboard "
        'extra (pip install "recprep[dashboard]")',
    )
    run.set_defaults(fn=cmd_run)

    isp = sub.add_parser(
        "isp-worker",
        help="run an ISP worker (a Dask worker standing for one storage node) against a scheduler",
    )
    isp.add_argument("scheduler", help="address of the job's Dask scheduler (tcp://host:8786)")
    isp.add_argument("--node", required=True, help="the storage node's name (the pods: spec.nodeName)")
    isp.add_argument("--name", required=True, help="tells apart workers of one node (the pods: their name)")
    isp.add_argument("--units", type=_positive, default=1, help="ISP units: tasks run at once (Dask isp=N)")
    isp.set_defaults(fn=cmd_isp_worker)

    val = sub.add_parser("validate", help="check a PreprocessJob: spec, source, plan and output schema")
    val.add_argument("job")
    val.set_defaults(fn=cmd_validate)

    from .delivery.service.running import add_serve_arguments

    sv = sub.add_parser(
        "serve", help="serve a job's shards to trainers over Arrow Flight (the shard service)"
    )
    add_serve_arguments(sv)
    sv.set_defaults(fn=cmd_serve)

    op = sub.add_parser("operator", help="run the Kubernetes operator (kopf) for PreprocessJobs")
    op.add_argument("--namespace", default=None, help="watch only this namespace (default: every namespace)")
    op.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    op.add_argument("--standalone", action="store_true", help="no peering with other operator instances")
    op.add_argument("--verbose", action="store_true", help="kopf's debug logging")
    op.set_defaults(fn=cmd_operator)

    from .train.command import add_arguments as add_train_arguments

    tr = sub.add_parser(
        "train", help="train a small DLRM on a job's shards (local output or the shard service)"
    )
    add_train_arguments(tr)
    tr.set_defaults(fn=cmd_train)
    return p


def _quiet(prefix: str) -> None:
    """distributed sets INFO on its own loggers at import; a CLI user wants only errors."""
    import distributed  # noqa: F401  (its logging config must exist before it is overridden)

    for name in list(logging.root.manager.loggerDict):
        if name == prefix or name.startswith(prefix + "."):
            logging.getLogger(name).setLevel(logging.ERROR)


def _one_line(exc: BaseException) -> str:
    from rich.markup import escape

    return escape(" ".join(str(exc).split()))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet("distributed")
    try:
        return args.fn(args)
    except SpecError as exc:
        # soft_wrap: one line whatever the width (a pod's log is read line by line); a message
        # that quotes another library's multi-line error is folded into that line too.
        err.print(f"[red]invalid job:[/red] {_one_line(exc)}", highlight=False, soft_wrap=True)
        return 2
    except RecprepError as exc:
        err.print(f"[red]error:[/red] {_one_line(exc)}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted: committed shards are kept; run again to resume")
        return 130
    except Exception as exc:  # anything else is a bug, but the user still gets one clear line
        if args.debug:
            raise
        err.print(
            f"[red]internal error:[/red] {type(exc).__name__}: {_one_line(exc)} "
            "(run with --debug for details)",
            highlight=False,
            soft_wrap=True,
        )
        return 3


def entry() -> None:
    """The ``recprep`` command: :func:`main`, then the process's exit. Where torch is loaded
    (``recprep train``), the exit skips the C++ libraries' static destructors: torch 2.13's and
    pyarrow's race there, and about one process in eight that read a shard aborted after its
    work was done and its exit code decided ("terminate called without an active exception",
    SIGABRT: a test of a one-line error saw exit -6 instead of 1). Python's own exit handlers
    run first; only the C++ teardown is left to the kernel."""
    code = main()
    if "torch" not in sys.modules:
        sys.exit(code)
    import atexit
    import os

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
