"""RecD's deduplication, measured: the same session job with and without ``spec.dedup``, on the
Taobao sample and on generated session logs with a chosen number of events per session.

    python bench/dedup.py                                  # Taobao + generated 1,4,16 events/session
    python bench/dedup.py --json                           # one JSON object on stdout, nothing else
    python bench/dedup.py --events 2,8,32 --users 500 --sessions 8 --k 20 --repeat 5

Every dataset runs one job twice over, in the same process, on the same local Dask cluster
(--workers single-threaded worker processes, started once and warmed up by an untimed run):

  plain   ``spec.source.session`` (whole sessions per shard, in time order) and the transforms
          below, every feature stored per sample
  dedup   the same job with ``spec.dedup: [{name: user, features: [user_id, item_id_history,
          category_id_history]}]``: the group stored once per session with an inverse index, and
          the steps that make it (sigrid_hash of user_id) run once per session

Transforms (the README's Taobao session job): ``is_in(behavior_type, [cart, fav, buy]) ->
engaged`` (the label), ``sigrid_hash`` of user_id, item_id, category_id into 1,000,000,
``history(k=--k)`` of item_id and category_id, ``time(timestamp, hour) -> hour_of_day``.

Measures, for each variant, and their ratio (dedup's gain):

  storage           bytes of the ``part-*.parquet`` files, with each codec of --compression (the
                    first is the one the timed runs use; the others cost one untimed run each);
                    also the bytes of the group's column chunks (+ the inverse column and the
                    flags of its history lists that follow from the session before: docs/dedup.md).
                    Gain: plain bytes / dedup bytes.
  preprocessing     rows read (quarantined rows included) / wall seconds of ``run_job``, from the
                    call to its return: opening the source and planning, staging the source into
                    session partitions and cutting them (not for a grouped source), fit (no op of
                    this job fits), transform and write of every shard, commit, removal of the
                    staged pieces. Per phase from the job's progress calls; and the transform tasks'
                    own seconds, summed. A second line does the same work in this process on one
                    core, without Dask (stage every source split, cut every partition, then per
                    shard read its sessions, apply the plan, encode the Parquet file; nothing
                    committed; a grouped source: plan its splits, then per shard read its split
                    and its neighbours' rows, apply, encode), timed step by step: what dedup
                    changes, apart from scheduling and the cluster's noise.
  training          samples/s of ``recprep.train.loop.train`` (what ``recprep train <output>``
                    runs) on the output, --threads torch threads, one epoch (or --steps), the
                    tables sized from the job (sigrid_hash's 1,000,000) unless --table-rows.

Each timed measure runs --repeat times (preprocessing, on the cluster and on one core: more, until
each variant has run --min-seconds in all, at most 25 times), plain and dedup alternating (plain
first on odd runs, dedup first on even ones), and the median is reported beside the fastest and
slowest run. Storage is deterministic (the same bytes every run; the bench says so if not). After
the timed runs every deduplicated shard is expanded (``output.dedup.expand``) and compared with
the plain shard of the same number, values, types and order: a difference fails the bench
(exit 1).

Data: the Taobao sample ``taobao_userbehavior_84k.csv.gz`` is read in place from --data (default
``../shared/data``; its last line is malformed and is quarantined); without it that part is skipped.
The sample holds each user's events together, in time order, and its jobs say so
(``session.grouped``, docs/dedup.md): their shards are cut from the file's own splits, with no
staging and no cut (``--grouping shuffle``: the jobs group the events themselves, as for a log in
time order).
The generated logs (``recprep.workloads.sources.session_events``: --users users with --sessions
sessions of E events each, events 30 s apart, sessions 2 h apart, found with rule gap, gap 1800 s)
are written to a temporary directory (or --workdir, outside the repository), one per E of --events.
The Taobao job cuts sessions by day (rule day), as the README's example does.

Compared with RecD's published gains (up to 3.71x storage, 1.79x preprocessing, 2.48x training
throughput, at Meta's scale and features); the bars this bench reports on the Taobao sample:
storage >= 2x, preprocessing >= 1.5x, training > 1x. Benchmarks are not tests: a bar that is not
met is printed as FAIL, the exit code stays 0 (only an inexact dedup output makes it 1).
"""

from __future__ import annotations

import os

# One thread per worker process: BLAS/OpenMP/Arrow pools size themselves when the libraries load,
# and the worker processes the cluster starts inherit these.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ARROW_IO_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # benchmark the recprep of this working tree
    sys.path.insert(0, str(REPO_ROOT))

from recprep.spec import OutputSpec  # noqa: E402

TAOBAO_FILE = "taobao_userbehavior_84k.csv.gz"
COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
GROUP = "user"
GROUP_FEATURES = ["user_id", "item_id_history", "category_id_history"]
VARIANTS = ("plain", "dedup")
CODECS = ("snappy", "zstd", "lz4", "gzip", "none")
#: RecD's published gains (storage, preprocessing, training throughput), "up to".
PUBLISHED = {"storage": 3.71, "preprocess": 1.79, "train": 2.48}
#: The bars on the Taobao sample, (bar, strict): the gain must be >= bar, or > bar when strict.
BARS = {"storage": (2.0, False), "preprocess": (1.5, False), "train": (1.0, True)}
#: The generated logs: events ``STEP`` s apart, sessions ``PAUSE`` s apart, cut at ``GAP`` s.
STEP, PAUSE, GAP = 30, 7_200, 1_800
#: The jobs' rowsPerShard unless --rows-per-shard: the spec's default.
ROWS_PER_SHARD = OutputSpec.model_fields["rows_per_shard"].default
#: Timed preprocessing runs of one variant, at most (``--min-seconds``).
MAX_RUNS = 25


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the jobs -------------------------------------------------------------------------------------
def job_doc(
    uri: str,
    out: Path,
    session: dict,
    k: int,
    compression: str,
    dedup: bool,
    rows_per_shard: int = ROWS_PER_SHARD,
) -> dict:
    """The README's Taobao session job on ``uri``; with ``dedup``, the user group deduplicated."""
    spec = {
        "source": {
            "uri": uri,
            "format": "csv",
            "columns": COLUMNS,
            "label": "engaged",
            "sparse": ["user_id", "item_id", "category_id"],
            "session": session,
        },
        "transforms": [
            {
                "op": "is_in",
                "columns": "behavior_type",
                "values": ["cart", "fav", "buy"],
                "output": "engaged",
            },
            {"op": "sigrid_hash", "columns": "sparse", "salt": 0, "maxValue": 1_000_000},
            {"op": "history", "columns": ["item_id", "category_id"], "k": k, "output": "{column}_history"},
            {"op": "time", "columns": "timestamp", "part": "hour", "format": "unix", "output": "hour_of_day"},
        ],
        "output": {"uri": str(out), "rowsPerShard": rows_per_shard, "compression": compression},
    }
    if dedup:
        spec["dedup"] = [{"name": GROUP, "features": list(GROUP_FEATURES)}]
    name = "bench-dedup" if dedup else "bench-plain"
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": name},
        "spec": spec,
    }


class PhaseClock:
    """A ``runner.Progress`` that notes when each phase starts and sums the transform tasks' seconds."""

    def __init__(self):
        self.marks: list[tuple[str, float]] = []
        self.task_seconds = 0.0

    def phase(self, name: str) -> None:
        self.marks.append((name.split(" ")[0], time.perf_counter()))

    def start(self, *_args) -> None:
        pass

    def fitted(self, _est_rows: int) -> None:
        pass

    def warn(self, _message: str) -> None:
        pass

    def advance(self, result) -> None:
        self.task_seconds += sum(r.seconds for r in result.ran)

    def phases(self, started: float, ended: float) -> dict[str, float]:
        """Seconds of each phase: ``setup`` until the first phase call, then each phase (the
        fit's stages summed) until the next, the last until ``ended``."""
        out: dict[str, float] = {}
        marks = [("setup", started), *self.marks]
        for (name, t0), (_, t1) in zip(marks, [*marks[1:], ("end", ended)]):
            out[name] = out.get(name, 0.0) + (t1 - t0)
        return out


def preprocess(client, doc: dict) -> dict:
    """One timed ``run_job`` of ``doc`` (overwriting its output)."""
    from recprep.spec import load_job_dict
    from recprep.workloads.runner import run_job

    job = load_job_dict(doc)
    clock = PhaseClock()
    started = time.perf_counter()
    summary = run_job(job, client=client, overwrite=True, progress=clock)
    ended = time.perf_counter()
    seconds = ended - started
    return {
        "seconds": seconds,
        "rows_per_second": summary.rows_read / seconds,
        "phases": clock.phases(started, ended),
        "transform_task_seconds": clock.task_seconds,
        "rows_read": summary.rows_read,
        "rows_written": summary.rows_written,
        "rows_quarantined": summary.rows_quarantined,
        "shards": summary.shards,
    }


def one_core(doc: dict, out: Path) -> dict:
    """The job's work in this process, one step after another on one core, without Dask: seconds
    of staging every source split, cutting every partition (its shards' rows written), and per
    shard reading its rows, applying the plan and encoding the Parquet file (what a worker's tasks
    do; no commit)."""
    from recprep.spec import load_job_dict
    from recprep.workloads.sessions import (
        SessionSplit,
        cut_partition,
        partition_pieces,
        partitions_for,
        stage_split,
    )
    from recprep.workloads.tasks import history_context, prepare, split_rows

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    doc = copy.deepcopy(doc)
    doc["spec"]["output"]["uri"] = str(out)
    job = load_job_dict(doc)
    session, rows_per_shard = job.spec.source.session, job.spec.output.rows_per_shard
    compression = job.spec.output.compression
    source, plan = prepare(job)
    context = history_context(plan)
    seconds = dict.fromkeys(("stage", "cut", "read", "apply", "write"), 0.0)
    t0 = time.perf_counter()
    splits = source.splits(split_rows(job))
    if session.grouped:  # no staging, no cut: a shard is a source split and its neighbours' rows
        return _one_core_shards(source, plan, splits, out, compression, seconds, t0)
    partitions = partitions_for(sum(s.est_rows for s in splits), rows_per_shard)
    staged = [stage_split(source.inner, session, s, partitions, str(out), False) for s in splits]
    rows = sum(s.rows for s in staged)
    t1 = time.perf_counter()
    shards = []
    for p, pieces in enumerate(partition_pieces(staged, partitions)):
        cuts = cut_partition(session, p, pieces, rows_per_shard, str(out), context, False).cuts
        shards += [(p, a, b) for a, b in zip(cuts, cuts[1:])]
    t2 = time.perf_counter()
    seconds["stage"], seconds["cut"] = t1 - t0, t2 - t1
    splits = [SessionSplit(i, p, a, b, context if a > 0 else 0) for i, (p, a, b) in enumerate(shards)]
    return _one_core_shards(source, plan, splits, out, compression, seconds, None, rows)


def _one_core_shards(source, plan, splits, out: Path, compression: str, seconds: dict, t0, rows=None) -> dict:
    """Per shard: read its rows, apply the plan, encode the Parquet file (``t0``: when the
    planning of a grouped job's splits began, counted in its read)."""
    from recprep.workloads.writer import shard_bytes

    read_rows = 0
    for split in splits:
        t = time.perf_counter() if t0 is None else t0
        t0 = None
        read = source.read(split, plan.scan_hex)
        t_read = time.perf_counter()
        table = plan.apply(read.table, {}, nulled={}, source_nulled=read.nulled, context=read.context)
        t_apply = time.perf_counter()
        shard_bytes(table, compression)
        t_write = time.perf_counter()
        seconds["read"] += t_read - t
        seconds["apply"] += t_apply - t_read
        seconds["write"] += t_write - t_apply
        read_rows += read.table.num_rows - read.context
    shutil.rmtree(out, ignore_errors=True)
    total = sum(seconds.values())
    rows = read_rows if rows is None else rows
    return {"seconds": total, "rows_per_second": rows / total, "phases": seconds, "rows": rows}


def storage(outdir: Path) -> dict:
    """Bytes of the part files, and of the group's column chunks (and its inverse and flag
    columns) in them."""
    import pyarrow.parquet as pq

    from recprep.workloads.output.dedup import inverse_column
    from recprep.workloads.output.derived import FLAGS_PREFIX

    grouped = {*GROUP_FEATURES, inverse_column(GROUP), *(FLAGS_PREFIX + f for f in GROUP_FEATURES)}
    files = sorted(outdir.glob("part-*.parquet"))
    total = group = 0
    for path in files:
        total += path.stat().st_size
        meta = pq.ParquetFile(path).metadata
        for rg in range(meta.num_row_groups):
            row_group = meta.row_group(rg)
            for c in range(row_group.num_columns):
                chunk = row_group.column(c)
                if chunk.path_in_schema.split(".list.")[0] in grouped:
                    group += chunk.total_compressed_size
    return {"bytes": total, "group_bytes": group, "files": len(files)}


def check_exact(plain: Path, dedup: Path) -> dict:
    """Every deduplicated shard expanded against the plain shard of the same number."""
    import pyarrow.parquet as pq

    from recprep.workloads.output.dedup import expand, groups_of

    names = sorted(p.name for p in plain.glob("part-*.parquet"))
    others = sorted(p.name for p in dedup.glob("part-*.parquet"))
    out = {"exact": True, "shards": len(names), "rows": 0, "unique_rows": 0, "difference": None}
    if names != others:
        out.update(exact=False, difference=f"shard files differ: {len(names)} plain, {len(others)} dedup")
        return out
    for name in names:
        a = pq.read_table(plain / name)
        raw = pq.read_table(dedup / name)
        groups = groups_of(raw.schema)
        b = expand(raw)
        out["rows"] += a.num_rows
        out["unique_rows"] += sum(g.unique for g in groups)
        if not groups:
            out.update(exact=False, difference=f"{name}: the dedup shard has no dedup group")
        elif a.column_names != b.column_names or a.schema.remove_metadata() != b.schema.remove_metadata():
            out.update(exact=False, difference=f"{name}: schemas differ: {a.schema} vs {b.schema}")
        elif a.schema.metadata != b.schema.metadata:
            out.update(exact=False, difference=f"{name}: schema metadata differs")
        else:
            for col in a.column_names:
                if not a[col].equals(b[col]):
                    out.update(exact=False, difference=f"{name}: column {col!r} differs once expanded")
                    break
        if not out["exact"]:
            return out
    return out


def sessions_of(outdir: Path) -> dict:
    """The sessions of a deduplicated output: its shards' unique group rows (one per session of
    each shard; a grouped source's job keeps no session plan), and their events."""
    import pyarrow.parquet as pq

    sessions = rows = 0
    for path in sorted(outdir.glob("part-*.parquet")):
        groups = json.loads(pq.read_schema(path).metadata[b"recprep.dedup"])["groups"]
        sessions += next(g["unique"] for g in groups if g["name"] == GROUP)
        rows += pq.read_metadata(path).num_rows
    return {"sessions": sessions, "events_per_session": rows / max(sessions, 1)}


# -- training -------------------------------------------------------------------------------------
def train_once(outdir: Path, args, steps: int | None = None) -> dict:
    from recprep.delivery.shards import LocalShards
    from recprep.train.config import TrainConfig
    from recprep.train.loop import train

    config = TrainConfig(
        LocalShards(str(outdir)),
        batch_size=args.batch_size,
        epochs=1,
        steps=steps if steps is not None else args.steps,
        table_rows=args.table_rows,
        device="cpu",
        seed=0,
        threads=args.threads,
    )
    report = train(config).report
    return {
        "samples_per_second": report.samples_per_second,
        "samples": report.samples,
        "steps": report.steps,
        "seconds": report.seconds,
        "data_wait_fraction": report.data_wait_fraction,
        "table_rows": report.table_rows,
        "table_rows_note": report.table_rows_note,
        "loss_last": report.loss_last,
    }


# -- one dataset ----------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def _runs(args, runs: dict[str, list[dict]]):
    """Run numbers 0, 1, ...: at least ``--repeat`` runs of each variant, and more while either
    has run for less than ``--min-seconds`` in all (a small job's single runs are mostly the
    cluster's noise), at most ``MAX_RUNS``."""
    i = 0
    while i < args.repeat or (
        i < MAX_RUNS and min(sum(r["seconds"] for r in runs[v]) for v in VARIANTS) < args.min_seconds
    ):
        yield i
        i += 1


def _order(i: int) -> tuple[str, str]:
    return VARIANTS if i % 2 == 0 else VARIANTS[::-1]


def bench_dataset(client, name: str, uri: str, session: dict, args, work: Path) -> dict:
    """Every measure of one dataset (see the module docstring)."""
    codecs = args.compression
    dirs = {v: work / f"{name}-{v}" for v in VARIANTS}
    docs = {
        v: job_doc(uri, dirs[v], session, args.k, codecs[0], v == "dedup", args.rows_per_shard)
        for v in VARIANTS
    }
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    sizes: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for i in _runs(args, runs):
        for v in _order(i):
            log(f"{name}: preprocessing, {v}, run {i + 1}")
            runs[v].append(preprocess(client, docs[v]))
            sizes[v].append(storage(dirs[v]))
    exact = check_exact(dirs["plain"], dirs["dedup"])
    if not exact["exact"]:
        return {"exact": exact}
    result: dict = {"rows": runs["plain"][-1]["rows_read"], "exact": exact}
    result.update(sessions_of(dirs["dedup"]))
    result["rows_quarantined"] = runs["plain"][-1]["rows_quarantined"]
    result["shards"] = runs["plain"][-1]["shards"]
    result["grouping"] = "grouped source" if session.get("grouped") else "staged and cut by the job"
    result["storage_deterministic"] = all(s == sizes[v][0] for v in VARIANTS for s in sizes[v])

    # storage: the timed runs' codec, then one untimed run per other codec
    by_codec = {codecs[0]: {v: sizes[v][-1] for v in VARIANTS}}
    for codec in codecs[1:]:
        by_codec[codec] = {}
        for v in VARIANTS:
            log(f"{name}: storage with compression {codec}, {v}")
            doc = copy.deepcopy(docs[v])
            doc["spec"]["output"]["compression"] = codec
            doc["spec"]["output"]["uri"] = str(work / f"{name}-{v}-{codec}")
            preprocess(client, doc)
            by_codec[codec][v] = storage(work / f"{name}-{v}-{codec}")
            shutil.rmtree(work / f"{name}-{v}-{codec}", ignore_errors=True)
    result["storage"] = {
        codec: {
            "plain_bytes": s["plain"]["bytes"],
            "dedup_bytes": s["dedup"]["bytes"],
            "gain": s["plain"]["bytes"] / s["dedup"]["bytes"],
            "plain_group_bytes": s["plain"]["group_bytes"],
            "dedup_group_bytes": s["dedup"]["group_bytes"],
            "group_gain": s["plain"]["group_bytes"] / max(s["dedup"]["group_bytes"], 1),
        }
        for codec, s in by_codec.items()
    }

    pre = {}
    for v in VARIANTS:
        phases = list(dict.fromkeys(p for r in runs[v] for p in r["phases"]))  # in the order they ran
        pre[v] = {
            "rows_per_second": _stats([r["rows_per_second"] for r in runs[v]]),
            "seconds": _stats([r["seconds"] for r in runs[v]]),
            "phase_seconds": {
                p: statistics.median([r["phases"].get(p, 0.0) for r in runs[v]]) for p in phases
            },
            "transform_task_seconds": _stats([r["transform_task_seconds"] for r in runs[v]]),
        }
    pre["gain"] = pre["dedup"]["rows_per_second"]["median"] / pre["plain"]["rows_per_second"]["median"]
    pre["phase_gain"] = {
        p: pre["plain"]["phase_seconds"][p] / pre["dedup"]["phase_seconds"][p]
        for p in pre["plain"]["phase_seconds"]
        if pre["dedup"]["phase_seconds"].get(p)
    }
    pre["transform_task_gain"] = (
        pre["plain"]["transform_task_seconds"]["median"] / pre["dedup"]["transform_task_seconds"]["median"]
    )
    cores: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for i in _runs(args, cores):
        for v in _order(i):
            log(f"{name}: preprocessing on one core in this process, {v}, run {i + 1}")
            cores[v].append(one_core(docs[v], work / f"{name}-{v}-one-core"))
    one: dict = {}
    for v in VARIANTS:
        one[v] = {
            "rows_per_second": _stats([r["rows_per_second"] for r in cores[v]]),
            "phase_seconds": {
                p: statistics.median([r["phases"][p] for r in cores[v]]) for p in cores[v][0]["phases"]
            },
        }
    one["gain"] = one["dedup"]["rows_per_second"]["median"] / one["plain"]["rows_per_second"]["median"]
    one["phase_gain"] = {
        p: one["plain"]["phase_seconds"][p] / one["dedup"]["phase_seconds"][p]
        for p in one["plain"]["phase_seconds"]
        if one["dedup"]["phase_seconds"][p]
    }
    pre["one_core"] = one
    result["preprocess"] = pre

    if not args.skip_train and not name.startswith("taobao-x"):  # the sample's training is the measure
        trained: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for i in range(args.repeat):
            for v in _order(i):
                log(f"{name}: training, {v}, run {i + 1} of {args.repeat}")
                trained[v].append(train_once(dirs[v], args))
        tr: dict = {}
        for v in VARIANTS:
            last = trained[v][-1]
            tr[v] = {
                "samples_per_second": _stats([t["samples_per_second"] for t in trained[v]]),
                "samples": last["samples"],
                "steps": last["steps"],
                "data_wait_fraction": statistics.median(t["data_wait_fraction"] for t in trained[v]),
                "table_rows": last["table_rows"],
                "table_rows_note": last["table_rows_note"],
                "loss_last": last["loss_last"],
            }
        tr["gain"] = tr["dedup"]["samples_per_second"]["median"] / tr["plain"]["samples_per_second"]["median"]
        tr["same_samples"] = tr["plain"]["samples"] == tr["dedup"]["samples"]
        result["train"] = tr
    for v in VARIANTS:
        shutil.rmtree(dirs[v], ignore_errors=True)
    return result


def bars(result: dict) -> dict:
    """The Taobao bars against the measured gains (None: not measured)."""
    gains = {
        "storage": result["storage"][next(iter(result["storage"]))]["gain"],
        "preprocess": result["preprocess"]["gain"],
        "train": result["train"]["gain"] if "train" in result else None,
    }
    out = {}
    for measure, (bar, strict) in BARS.items():
        gain = gains[measure]
        ok = None if gain is None else (gain > bar if strict else gain >= bar)
        out[measure] = {"gain": gain, "bar": bar, "strict": strict, "pass": ok}
    return out


# -- the report -----------------------------------------------------------------------------------
def _range(s: dict, fmt: str) -> str:
    return f"{format(s['median'], fmt)} [{format(s['min'], fmt)}-{format(s['max'], fmt)}]"


def report_text(doc: dict, args) -> None:
    settings = doc["settings"]
    print(
        f"RecD dedup: plain vs spec.dedup [{GROUP}: {', '.join(GROUP_FEATURES)}], history k={args.k}, "
        f"{settings['workers']} workers, {settings['cpu_count']} cores, load average at the start "
        f"{settings['loadavg_start'][0]:.2f}; medians of at least {args.repeat} alternating runs "
        f"(preprocessing: until each variant has run {args.min_seconds:g} s) [min-max]"
    )
    for name, r in doc.items():
        if name in ("settings", "published"):
            continue
        print()
        if "skipped" in r:
            print(f"{name}: skipped, {r['skipped']}")
            continue
        if not r["exact"]["exact"]:
            print(f"{name}: DEDUP OUTPUT IS NOT EXACT: {r['exact']['difference']}")
            continue
        print(
            f"{name}: {r['rows']:,} rows ({r['rows_quarantined']} quarantined), {r['sessions']:,} sessions "
            f"({r['events_per_session']:.2f} events each), {r['shards']} shards ({r['grouping']}); "
            "expanded dedup == plain "
            f"on all {r['exact']['shards']} shards ({r['exact']['unique_rows']:,} unique group rows)"
        )
        if not r["storage_deterministic"]:
            print("  warning: the bytes differed between runs of the same variant (the last run's below)")
        print(f"  {'measure':<40}{'plain':>26}{'dedup':>26}{'gain':>9}{'RecD':>8}")
        for codec, s in r["storage"].items():
            print(
                f"  {'storage bytes, ' + codec:<40}{s['plain_bytes']:>26,}{s['dedup_bytes']:>26,}"
                f"{s['gain']:>8.2f}x{PUBLISHED['storage']:>7.2f}x"
            )
            print(
                f"  {'  the group (+inverse, flags), ' + codec:<40}{s['plain_group_bytes']:>26,}"
                f"{s['dedup_group_bytes']:>26,}{s['group_gain']:>8.2f}x"
            )
        p = r["preprocess"]
        print(
            f"  {'preprocessing rows/s (run_job wall)':<40}"
            f"{_range(p['plain']['rows_per_second'], ',.0f'):>26}"
            f"{_range(p['dedup']['rows_per_second'], ',.0f'):>26}{p['gain']:>8.2f}x"
            f"{PUBLISHED['preprocess']:>7.2f}x"
        )
        for phase, plain_s in p["plain"]["phase_seconds"].items():
            dedup_s = p["dedup"]["phase_seconds"].get(phase, 0.0)
            gain = p["phase_gain"].get(phase)
            print(
                f"  {'  ' + phase + ' s':<40}{plain_s:>26.3f}{dedup_s:>26.3f}"
                + (f"{gain:>8.2f}x" if gain else "")
            )
        print(
            f"  {'  transform task s, summed':<40}{_range(p['plain']['transform_task_seconds'], '.3f'):>26}"
            f"{_range(p['dedup']['transform_task_seconds'], '.3f'):>26}{p['transform_task_gain']:>8.2f}x"
        )
        one = p["one_core"]
        print(
            f"  {'preprocessing rows/s, one core, no Dask':<40}"
            f"{_range(one['plain']['rows_per_second'], ',.0f'):>26}"
            f"{_range(one['dedup']['rows_per_second'], ',.0f'):>26}{one['gain']:>8.2f}x"
        )
        for phase, plain_s in one["plain"]["phase_seconds"].items():
            dedup_s = one["dedup"]["phase_seconds"][phase]
            gain = one["phase_gain"].get(phase)
            print(
                f"  {'  ' + phase + ' s':<40}{plain_s:>26.3f}{dedup_s:>26.3f}"
                + (f"{gain:>8.2f}x" if gain else "")
            )
        if "train" in r:
            t = r["train"]
            print(
                f"  {'training samples/s':<40}{_range(t['plain']['samples_per_second'], ',.0f'):>26}"
                f"{_range(t['dedup']['samples_per_second'], ',.0f'):>26}{t['gain']:>8.2f}x"
                f"{PUBLISHED['train']:>7.2f}x"
            )
            print(
                f"    ({t['plain']['samples']:,} samples, {t['plain']['steps']} steps of {args.batch_size}, "
                f"tables of {t['plain']['table_rows']:,} rows ({t['plain']['table_rows_note']}); "
                "waiting for data "
                f"{t['plain']['data_wait_fraction']:.1%} plain, {t['dedup']['data_wait_fraction']:.1%} dedup)"
            )
        if "bars" in r:
            line = []
            for measure, b in r["bars"].items():
                if b["pass"] is None:
                    line.append(f"{measure}: not measured")
                    continue
                sign = ">" if b["strict"] else ">="
                line.append(
                    f"{measure} {b['gain']:.2f}x {sign} {b['bar']:g}x {'PASS' if b['pass'] else 'FAIL'}"
                )
            print("  bars: " + "; ".join(line))
    print()
    print(
        "gain: plain bytes / dedup bytes, dedup rows/s (samples/s) / plain's, plain seconds / dedup's; "
        "RecD: published, up to"
    )


# -- main -----------------------------------------------------------------------------------------
def _list(kind, name: str):
    def parse(text: str):
        try:
            values = [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name}: expected a comma-separated list, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"{name}: empty")
        return values

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help=f"directory holding {TAOBAO_FILE} (default: ../shared/data from the repo root)",
    )
    parser.add_argument("--users", type=int, default=2_000, help="generated: users (default 2000)")
    parser.add_argument("--sessions", type=int, default=8, help="generated: sessions per user (default 8)")
    parser.add_argument(
        "--events",
        type=_list(int, "--events"),
        default=[1, 4, 16],
        help="generated: events per session, a comma-separated list to sweep (default 1,4,16)",
    )
    parser.add_argument(
        "--taobao-copies",
        type=int,
        default=20,
        help="also run the Taobao sample replicated this many times, each copy its own users "
        "(default 20; 0: not)",
    )
    parser.add_argument(
        "--grouping",
        choices=["grouped", "shuffle"],
        default="grouped",
        help="the Taobao jobs: grouped (default) declares the log grouped by user, as it is, so shards are "
        "cut from its own splits; shuffle has the job group it (stage and cut). The generated logs are in "
        "time order: always shuffle",
    )
    parser.add_argument("--k", type=int, default=50, help="history length, both datasets (default 50)")
    parser.add_argument(
        "--rows-per-shard",
        type=int,
        default=ROWS_PER_SHARD,
        help=f"rowsPerShard of every job (default {ROWS_PER_SHARD:,}, the spec's default)",
    )
    parser.add_argument(
        "--compression",
        type=_list(str, "--compression"),
        default=["snappy", "none"],
        help="output codecs, comma-separated: the first for the timed runs, the others for storage only "
        "(default snappy,none)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of each variant, at least (default 3)"
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=3.0,
        help="preprocessing: more runs until each variant has run this long in all (default 3; at most "
        f"{MAX_RUNS} runs)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size (default 256)")
    parser.add_argument("--steps", type=int, default=None, help="training: stop after this many steps")
    parser.add_argument("--table-rows", type=int, default=None, help="rows per table (default: the job's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["taobao", "generated", "train"])
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the generated logs here (outside the repo)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    for name in ("users", "sessions", "k", "rows_per_shard", "repeat", "workers", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.taobao_copies < 0:
        parser.error("--taobao-copies must be 0 or more")
    for name in ("steps", "table_rows"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.min_seconds < 0:
        parser.error("--min-seconds must be 0 or more")
    if any(e < 1 for e in args.events):
        parser.error("--events must be positive")
    if any(c not in CODECS for c in args.compression):
        parser.error(f"--compression: each of {', '.join(CODECS)}")
    if args.workdir is not None and args.workdir.resolve().is_relative_to(REPO_ROOT):
        parser.error(f"--workdir {args.workdir} is inside the repository; choose a directory outside it")
    args.skip_train = "train" in args.skip
    return args


def datasets(args, work: Path) -> dict[str, tuple[str, dict] | str]:
    """name -> (source URI, session spec), or the reason it is skipped."""
    from recprep.workloads.sources.session_events import write_session_events

    out: dict[str, tuple[str, dict] | str] = {}
    if "taobao" not in args.skip:
        sample = args.data / TAOBAO_FILE
        if sample.is_file():
            session = {
                "key": "user_id",
                "time": "timestamp",
                "rule": "day",
                "grouped": args.grouping == "grouped",
            }
            out["taobao"] = (str(sample.resolve()), session)
            if args.taobao_copies > 1:
                path = replicate_taobao(sample, args.taobao_copies, work)
                out[f"taobao-x{args.taobao_copies}"] = (str(path), session)
        else:
            out["taobao"] = f"the Taobao sample {sample} is missing (give its directory with --data)"
    if "generated" not in args.skip:
        for e in args.events:
            path = work / f"events-u{args.users}-s{args.sessions}-e{e}.csv"
            if not path.is_file():
                log(f"writing {path.name}: {args.users * args.sessions * e:,} events")
                write_session_events(path, args.users, args.sessions, e, step=STEP, pause=PAUSE, seed=0)
            session = {"key": "user_id", "time": "timestamp", "rule": "gap", "gap": GAP}
            out[f"generated-e{e}"] = (str(path), session)
    return out


def replicate_taobao(sample: Path, copies: int, work: Path) -> Path:
    """The Taobao sample ``copies`` times over as one uncompressed CSV in ``work`` (never in the
    repository): copy ``c`` adds ``c * 10**7`` to every user_id (the sample's are below 10**7), so
    each copy is users of their own with the same events, still grouped by user as the sample is.
    Its malformed last line is left out (it is quarantined once in the sample's own run)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    path = work / f"taobao-x{copies}.csv"
    if path.is_file():
        return path
    table = pcsv.read_csv(
        sample,
        read_options=pcsv.ReadOptions(column_names=COLUMNS),
        parse_options=pcsv.ParseOptions(invalid_row_handler=lambda _row: "skip"),
        convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.string())),
    )
    user = pc.cast(table["user_id"], pa.int64())
    log(f"writing {path.name}: {copies} copies of the Taobao sample, {copies * table.num_rows:,} events")
    options = pcsv.WriteOptions(include_header=False, quoting_style="none")
    with pcsv.CSVWriter(path, table.schema, write_options=options) as writer:
        for c in range(copies):
            shifted = pc.cast(pc.add(user, c * 10**7), pa.string())
            writer.write_table(table.set_column(0, "user_id", shifted))
    return path


def warm_up(client, args, work: Path) -> None:
    """Both variants once, untimed, on a small generated log (imports and first calls in every
    worker and in this process: through Dask and on one core), and a few training steps of each."""
    from recprep.workloads.sources.session_events import write_session_events

    path = write_session_events(work / "warmup.csv", 50, 4, 4, step=STEP, pause=PAUSE, seed=1)
    session = {"key": "user_id", "time": "timestamp", "rule": "gap", "gap": GAP}
    for v in VARIANTS:
        out = work / f"warmup-{v}"
        doc = job_doc(str(path), out, session, args.k, args.compression[0], v == "dedup", args.rows_per_shard)
        preprocess(client, doc)
        one_core(doc, work / f"warmup-{v}-one-core")
        if not args.skip_train:
            train_once(out, args, steps=2)
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="recprep-bench-dedup-"))
    work.mkdir(parents=True, exist_ok=True)
    doc: dict = {
        "settings": {
            "cpu_count": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "workers": args.workers,
            "repeat": args.repeat,
            "min_seconds": args.min_seconds,
            "statistic": "median",
            "k": args.k,
            "users": args.users,
            "sessions": args.sessions,
            "events": args.events,
            "compression": args.compression,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "rows_per_shard": args.rows_per_shard,
            "group": {GROUP: GROUP_FEATURES},
        },
        "published": dict(PUBLISHED),
    }
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    inexact = []
    try:
        with quiet:
            chosen = datasets(args, work)
            for name, what in chosen.items():
                if isinstance(what, str):
                    doc[name] = {"skipped": what}
            todo = {n: w for n, w in chosen.items() if not isinstance(w, str)}
            if todo:
                from distributed import Client, LocalCluster

                if not args.skip_train:
                    import torch

                    torch.set_num_threads(args.threads)
                    warnings.filterwarnings("ignore", message="Sparse invariant checks")
                logging.getLogger("distributed").setLevel(logging.ERROR)
                with (
                    LocalCluster(
                        n_workers=args.workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=":0",
                        silence_logs=logging.ERROR,
                    ) as cluster,
                    Client(cluster) as client,
                ):
                    log("warming up (untimed)")
                    warm_up(client, args, work)
                    for name, (uri, session) in todo.items():
                        doc[name] = bench_dataset(client, name, uri, session, args, work)
                        if not doc[name]["exact"]["exact"]:
                            inexact.append(f"{name}: {doc[name]['exact']['difference']}")
                        elif name.startswith("taobao"):
                            doc[name]["bars"] = bars(doc[name])
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        report_text(doc, args)
    for line in inexact:
        log(f"dedup: FAILED, the deduplicated output is not the plain output: {line}")
    return 1 if inexact else 0


if __name__ == "__main__":
    sys.exit(main())
