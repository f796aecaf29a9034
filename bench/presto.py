"""PreSto's comparison, emulated: the same job and data, CPU-centric vs ISP placement, at an equal budget.

    python bench/presto.py                              # both jobs, 1,000,000 rows: a report (~1.5 min)
    python bench/presto.py --json                       # one JSON object on stdout, nothing else
    python bench/presto.py --jobs criteo --rows 200000 --repeat 1 --scale 8

Each job runs twice through ``recprep.workloads.runner.run_job``, each time on its own local Dask
cluster built like ``run_job``'s embedded one (single-threaded CPU workers; one ISP worker per
storage node, ``recprep.isp_nodes.worker.embedded_specs``):

  cpu-centric  the job as written, on --cpu-workers CPU workers and no ISP worker: every shard's
               raw bytes cross the network to the CPU worker that transforms it
  isp          the same job with ``spec.pools.isp: {mode: paced, units: --isp-units}`` on the
               storage nodes the budget buys, and no CPU worker: each shard is read and transformed
               on the node that holds it, only the finished shard leaves it, and every task is held
               to the time the ISP model gives it (``isp_nodes.worker.pace``)

Each cluster first runs the job untimed on a small input in small shards (so every worker,
every storage node included, has imported and touched what a shard needs: about a second per
worker process here, which no steady state pays), then the timed run --repeat times, keeping the
fastest. Times are the accounting's: first shard task submitted to last shard committed.

Jobs, on the public 10k-row Criteo sample (``../shared/data``, or --data) replicated to --rows rows
as an uncompressed TSV in a temporary directory (or --workdir, outside the repository, reused), never
copied into the repository; without the sample the bench says so and exits 0:

  criteo       the transforms of examples/criteo-sample.yaml, read from that file at run time
  generation   feature generation first (PreSto's costly stage): three bucketize of every dense
               column (before and after log), sigrid_hash of the sparse IDs, an ngram of their lists
               (n=1: Criteo's lists hold one ID each, so longer n-grams would be empty), firstx

Budget: --budget $/h (default: two ISP storage nodes) buys floor(budget / ispNodeHourly) storage
nodes for the ISP run, or floor(budget / CPU core hourly) CPU cores for the CPU-centric fleet, at
the model's prices. This machine cannot run that fleet (a storage node's price buys tens of spot
cores): the CPU-centric run uses this machine's cores, and its rows/s per core is scaled linearly to
the budget's cores (a model, and a generous one), no faster than the raw bytes cross the storage
nodes' links. The ISP run is the budget's own storage nodes.

Every line says where its figure comes from: [measured] timed or counted in this run on this
machine; [model] from the ISP model's parameters (printed at the end with their sources);
[measured x model] measured seconds or bytes priced or powered by the model; [plan] counted from
the job's compiled plan; [bench] this file's own choice or assumption; [published, PreSto] the
paper's figure. The JSON says the same in its "basis" map. Benchmarks are not tests: nothing here
fails on a figure.
"""

from __future__ import annotations

import os

# One thread per worker process: BLAS/OpenMP/Arrow pools size themselves when the libraries load,
# and the worker processes the clusters start inherit these.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ARROW_IO_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import dask  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # benchmark the recprep of this working tree
    sys.path.insert(0, str(REPO_ROOT))

from bench._inputs import replicate_tsv  # noqa: E402
from recprep.isp_nodes.model import IspModel, described  # noqa: E402
from recprep.manifest import decode, load_documents  # noqa: E402
from recprep.spec import load_job_dict  # noqa: E402

SAMPLE_FILE = "criteo_kaggle_train_10k.tsv.gz"
CRITEO_EXAMPLE = REPO_ROOT / "examples" / "criteo-sample.yaml"

#: PreSto's reported gains of ISP over a CPU-centric fleet (../shared/docs/BACKGROUND.md).
PUBLISHED = {"speedup": 9.6, "cost": 4.3, "energy": 11.3}
#: The storage server inside the model's ispNodeHourly, by that default's own source (an AWS
#: i3en.xlarge at $0.452/h on demand). Not a model parameter: only the lines that count a storage
#: server on both sides use it (a CPU-centric fleet's raw data lies on storage servers too).
STORAGE_SERVER_HOURLY = 0.452
#: The ISP run starts every storage node as a local worker process.
MAX_ISP_NODES = 8
DEFAULT_ROWS = 1_000_000
#: The untimed warm-up run on each cluster: rows per shard, and shards per storage node (the
#: holder rule hashes shards over the nodes: 8 per node leave a node without any once in ~30,000
#: runs at 2 nodes, once in ~600 at 8; its first timed shard then pays the warm-up).
WARMUP_SHARD_ROWS, WARMUP_SHARDS_PER_NODE = 500, 8

#: The generation-heavy job's transforms (Criteo schema; see the docstring).
GENERATION_TRANSFORMS = [
    {"op": "fill_null", "columns": "dense", "value": 0},
    {
        "op": "bucketize",
        "columns": "dense",
        "borders": [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
        "output": "{column}_b12",
    },
    {"op": "log", "columns": "dense", "offset": 3},
    {
        "op": "bucketize",
        "columns": "dense",
        "borders": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0],
        "output": "{column}_lb8",
    },
    {"op": "bucketize", "columns": "dense", "borders": [1.0, 2.0, 3.0], "output": "{column}_lb3"},
    {"op": "hex_to_int", "columns": "sparse"},
    {"op": "sigrid_hash", "columns": "sparse", "salt": 0, "maxValue": 1_000_000},
    {"op": "to_list", "columns": "sparse"},
    {"op": "ngram", "columns": "sparse", "n": 1, "maxValue": 1_000_000, "salt": 7, "output": "{column}_ng"},
    {"op": "firstx", "columns": "sparse", "k": 1},
]
JOBS = {
    "criteo": f"the transforms of {CRITEO_EXAMPLE.relative_to(REPO_ROOT)}",
    "generation": "generation-heavy: fill_null, 3 bucketize of every dense column (before and after log), "
    "hex_to_int, sigrid_hash, to_list, ngram (n=1), firstx",
}

#: Where each figure of the JSON comes from (the text report says it on every line).
BASIS = {
    "profile.bytesPerRow": "measured",
    "profile.valuesPerRow": "plan",
    "profile.modelSecondsPerRow": "model",
    "profile.modelRowsPerSecondPerUnit": "model",
    "*.workers": "bench",
    "*.dollarsPerHour": "model",
    "*.runSeconds": "measured (with the cluster's start-up and the warm-up run)",
    "*.wallSeconds": "measured (an ISP run's divided by --scale)",
    "*.rowsPerSecond": "measured",
    "*.networkBytes": "measured",
    "*.networkSeconds": "model",
    "*.busySeconds": "measured",
    "*.rowsPerDollar": "measured x model",
    "*.rowsPerJoule": "measured x model",
    "isp.model.*": "model",
    "isp.paced.*": "measured",
    "ratios.cpuFleetSeconds*": "measured rows/s per core x the budget's cores (model), links' floor (model)",
    "ratios.ispSecondsMeasured": "measured, links' floor (model)",
    "ratios.ispSecondsModel": "model",
    "ratios.*Measured*": "ISP measured (x model) over CPU-centric measured (x model)",
    "ratios.*Model*": "ISP model over CPU-centric measured (x model)",
    "ratios.networkBytes": "measured",
    "ratios.sameMachineSeconds": "measured",
    "ratios.parity": "model",
    "identical": "measured",
    "published": "published, PreSto",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Input and jobs.
# ---------------------------------------------------------------------------------------------
def job_documents(tsv: Path) -> dict[str, dict]:
    """The two jobs as manifests on ``tsv``: the Criteo example's source and output settings with
    its own transforms, or with the generation-heavy ones."""
    text = decode(CRITEO_EXAMPLE.read_bytes(), str(CRITEO_EXAMPLE))
    example = next(d for d in load_documents(text, str(CRITEO_EXAMPLE)) if isinstance(d, dict))
    example["spec"]["source"]["uri"] = str(tsv)
    example["spec"].pop("pools", None)
    generation = copy.deepcopy(example)
    generation["metadata"] = {"name": "presto-generation"}
    generation["spec"]["transforms"] = copy.deepcopy(GENERATION_TRANSFORMS)
    example["metadata"] = {"name": "presto-criteo"}
    return {"criteo": example, "generation": generation}


def with_pools(doc: dict, *, isp: tuple[int, int] | None, scale: float, preemptible: bool) -> dict:
    """``doc`` with its pools: the CPU pool's pricing, and for the ISP run ``isp = (nodes, units)``
    paced ISP workers whose unit rates are the model's divided by ``scale``."""
    doc = copy.deepcopy(doc)
    pools: dict = {"cpu": {"preemptible": preemptible}}
    if isp is not None:
        nodes, units = isp
        pools["isp"] = {"min": nodes, "max": nodes, "units": units, "mode": "paced"}
        if scale != 1:
            pools["isp"]["model"] = dilated(IspModel(), scale)
    doc["spec"]["pools"] = pools
    return doc


def dilated(model: IspModel, scale: float) -> dict:
    """The paced parts of ``model`` (unit throughputs, parse and flash read rates) divided by
    ``scale``, as a ``spec.pools.isp.model`` override; network, power and prices unchanged."""
    return {
        "throughput": {k: v / scale for k, v in model.throughput.model_dump().items()},
        "parseBytesPerSecond": model.parse_bytes_per_second / scale,
        "internalReadBytesPerSecond": model.internal_read_bytes_per_second / scale,
    }


def budget_counts(budget: float, model: IspModel, preemptible: bool) -> dict:
    """What ``budget`` $/h buys at the model's prices: ISP storage nodes, CPU cores, and CPU cores
    beside as many plain storage servers as the ISP side has nodes."""
    core = model.cpu_core_hourly(preemptible)
    nodes = math.floor(budget / model.isp_node_hourly + 1e-9)
    return {
        "dollarsPerHour": budget,
        "ispNodes": nodes,
        "ispNodeHourly": model.isp_node_hourly,
        "cpuCores": math.floor(budget / core + 1e-9),
        "cpuCoreHourly": core,
        "preemptible": preemptible,
        "cpuCoresBesideStorage": max(0, math.floor((budget - nodes * STORAGE_SERVER_HOURLY) / core + 1e-9)),
        "storageServerHourly": STORAGE_SERVER_HOURLY,
    }


# ---------------------------------------------------------------------------------------------
# Runs.
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def cluster(cpu_workers: int, isp_nodes: int, units: int):
    """A local Dask cluster like ``run_job``'s embedded one: ``cpu_workers`` single-threaded CPU
    workers and one ISP worker of ``units`` threads per storage node, kept for the warm-up run
    and the timed runs."""
    from distributed import Client, Nanny, Scheduler, SpecCluster

    from recprep.isp_nodes.placement import local_nodes
    from recprep.isp_nodes.worker import embedded_specs
    from recprep.workloads.runner import WORKER_CONFIG

    specs = {
        f"cpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "name": f"cpu-{i}"}} for i in range(cpu_workers)
    }
    specs |= embedded_specs(local_nodes(isp_nodes), units)
    for spec in specs.values():
        spec["options"]["silence_logs"] = logging.ERROR
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with (
        dask.config.set(WORKER_CONFIG),
        SpecCluster(workers=specs, scheduler=scheduler, silence_logs=logging.ERROR, name="presto") as local,
        Client(local) as client,
    ):
        yield client


def warm_variant(doc: dict, warm_tsv: Path) -> dict:
    """``doc`` on the small warm-up input, in shards small enough that every storage node holds
    some (the holder rule hashes shards over the nodes)."""
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] += "-warmup"
    doc["spec"]["source"]["uri"] = str(warm_tsv)
    doc["spec"]["output"]["rowsPerShard"] = WARMUP_SHARD_ROWS
    return doc


def run(doc: dict, warm_tsv: Path, outdir: Path, cpu_workers: int, isp: tuple[int, int], repeat: int) -> dict:
    """``doc`` once untimed on ``warm_tsv``, then ``repeat`` times into ``outdir``, on one cluster;
    the fastest run's seconds and accounting document."""
    from recprep.workloads.runner import run_job

    best = None
    with cluster(cpu_workers, *isp) as client:
        warm = load_job_dict(warm_variant(doc, warm_tsv), "warm-up")
        run_job(warm, client=client, output=str(outdir.with_name(outdir.name + "-warmup")), overwrite=True)
        job = load_job_dict(doc, doc["metadata"]["name"])
        for _ in range(repeat):
            summary = run_job(job, client=client, output=str(outdir), overwrite=True)
            log(f"  {summary.accounting['wallSeconds']:.2f} s")
            if best is None or summary.accounting["wallSeconds"] < best.accounting["wallSeconds"]:
                best = summary
    if best.rows_quarantined:
        log(f"  note: {best.rows_quarantined} rows quarantined in {outdir}")
    return {"seconds": best.seconds, "accounting": best.accounting, "warnings": best.warnings}


def offload_profile(doc: dict, tsv: Path, rows: int, model: IspModel) -> dict:
    """The job's transforms, how many lead the plan as offloadable, the values per row each op
    class pushes through an ISP unit, and the model's seconds per row on one unit (flash read,
    parse, each class: the terms of ``IspModel.unit_seconds``)."""
    from recprep.workloads.tasks import prepare

    _, plan = prepare(load_job_dict(doc, doc["metadata"]["name"]))
    values = plan.offload_values(1, plan.offloadable)
    row_bytes = tsv.stat().st_size / rows  # an uncompressed TSV: every stored byte is parsed
    terms = {
        "read": row_bytes / model.internal_read_bytes_per_second,
        "parse": row_bytes / model.parse_bytes_per_second,
    } | {c: n / model.class_rate(c) for c, n in values.items()}
    return {
        "transforms": len(plan.steps),
        "offloadable": plan.offloadable,
        "valuesPerRow": values,
        "bytesPerRow": round(row_bytes, 1),
        "modelSecondsPerRow": terms,
        "modelRowsPerSecondPerUnit": 1 / sum(terms.values()),
    }


def shard_digests(outdir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(outdir.glob("part-*.parquet"))}


# ---------------------------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------------------------
def side_figures(
    result: dict, model: IspModel, preemptible: bool, units: int = 1, scale: float = 1.0
) -> dict:
    """One run's figures from its accounting document. An ISP run's seconds, dollars and joules
    are divided by ``scale`` (its units ran ``scale`` times slower than the model's); its model
    figures come from the paced workers' modelled rates (``ispWorkers.*.modelRowsPerSecond``)."""
    acc = result["accounting"]
    rows, net, modelled = acc["rows"], acc["networkBytes"], acc["modelled"]
    hourly = acc["workers"]["isp"] * model.isp_node_hourly
    hourly += acc["workers"]["cpu"] * model.cpu_core_hourly(preemptible)
    wall = acc["wallSeconds"] / scale
    out = {
        "rows": rows,
        "shards": acc["shards"],
        "shardsByPool": acc["shardsByPool"],
        "workers": acc["workers"],
        "dollarsPerHour": hourly,
        "runSeconds": round(result["seconds"], 3),
        "wallSeconds": wall,
        "rowsPerSecond": rows / wall if wall else None,
        "networkBytes": net,
        "networkSeconds": model.network_seconds(net["total"]),
        "busySeconds": {k: v / scale for k, v in acc["busySeconds"].items()},
        "rowsPerDollar": modelled["rowsPerDollar"] * scale if modelled["rowsPerDollar"] else None,
        "rowsPerJoule": modelled["rowsPerJoule"] * scale if modelled["rowsPerJoule"] else None,
        "warnings": result["warnings"],
    }
    paced = {n: w for n, w in acc["ispWorkers"].items() if w.get("modelRowsPerSecond")}
    if paced:
        # per node: its rows over its units at the modelled rate (shards packed perfectly)
        seconds = {n: w["rows"] / (w["modelRowsPerSecond"] * scale) for n, w in paced.items()}
        unit_seconds = sum(seconds[n] * w.get("units", units) for n, w in paced.items())
        wall_model = max(seconds.values())
        dollars = acc["workers"]["isp"] * model.isp_node_hourly * wall_model / 3600
        joules = unit_seconds * model.isp_unit_watts
        out["model"] = {
            "wallSeconds": wall_model,
            "unitSeconds": unit_seconds,
            "rowsPerSecond": rows / wall_model,
            "rowsPerDollar": rows / dollars if dollars else None,
            "rowsPerJoule": rows / joules if joules else None,
            "rowsByNode": {n: w["rows"] for n, w in paced.items()},
        }
        out["paced"] = {
            "tasks": acc["shardsByPool"].get("isp", 0) + acc["shardsByPool"].get("isp+cpu", 0),
            "tasksBehind": sum(w["tasksBehind"] for w in paced.values()),
            "measuredOverModel": {n: w["ratio"] for n, w in paced.items()},
        }
    return out


def _over(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top and bottom else None


def ratios(cpu: dict, isp: dict, budget: dict, model: IspModel) -> dict:
    """ISP placement over CPU-centric (above 1: ISP better), and what the ISP units' rates would
    have to be, as a multiple of the model's, for parity."""
    links = budget["ispNodes"] * model.network_bytes_per_second  # the storage nodes' links
    per_core = cpu["rowsPerSecond"] / cpu["workers"]["cpu"]

    def fleet(cores: int) -> float | None:
        """CPU-centric seconds on ``cores``: the measured rows/s per core scaled linearly, no
        faster than the raw bytes cross the storage nodes' links."""
        if cores < 1:
            return None
        return max(cpu["rows"] / (per_core * cores), cpu["networkBytes"]["raw"] / links)

    shipped = isp["networkBytes"]["total"] / links  # the shards leave the storage nodes
    compute = isp.get("model", {}).get("wallSeconds")
    isp_measured = max(isp["wallSeconds"], shipped)
    isp_model = max(compute, shipped) if compute else None
    cpu_fleet, cpu_beside = fleet(budget["cpuCores"]), fleet(budget["cpuCoresBesideStorage"])
    out = {
        "cpuFleetSeconds": cpu_fleet,
        "cpuFleetSecondsBesideStorage": cpu_beside,
        "ispSecondsMeasured": isp_measured,
        "ispSecondsModel": isp_model,
        "speedupMeasured": _over(cpu_fleet, isp_measured),
        "speedupModel": _over(cpu_fleet, isp_model),
        "speedupMeasuredBesideStorage": _over(cpu_beside, isp_measured),
        "speedupModelBesideStorage": _over(cpu_beside, isp_model),
        "costMeasured": _over(isp["rowsPerDollar"], cpu["rowsPerDollar"]),
        "costModel": _over(isp.get("model", {}).get("rowsPerDollar"), cpu["rowsPerDollar"]),
        "energyMeasured": _over(isp["rowsPerJoule"], cpu["rowsPerJoule"]),
        "energyModel": _over(isp.get("model", {}).get("rowsPerJoule"), cpu["rowsPerJoule"]),
        "networkBytes": _over(cpu["networkBytes"]["total"], isp["networkBytes"]["total"]),
        "sameMachineSeconds": _over(cpu["wallSeconds"], isp["wallSeconds"]),
    }
    # every ISP unit rate times s divides the model's ISP seconds, dollars and joules by s
    # (unit_seconds is linear in 1/rate); the links' time does not shrink
    out["parity"] = {
        "speed": compute / cpu_fleet if compute and cpu_fleet and shipped <= cpu_fleet else None,
        "cost": 1 / out["costModel"] if out["costModel"] else None,
        "energy": 1 / out["energyModel"] if out["energyModel"] else None,
    }
    return out


# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
#: what each model parameter enters
USED_FOR = {
    "throughput": "ISP seconds [model], so its speedup, rows/$ and rows/J [model]",
    "parseBytesPerSecond": "ISP seconds [model], so its speedup, rows/$ and rows/J [model]",
    "internalReadBytesPerSecond": "ISP seconds [model], so its speedup, rows/$ and rows/J [model]",
    "networkBytesPerSecond": "network seconds; the links' floor under both sides' seconds at the budget",
    "ispUnitWatts": "ISP rows/J",
    "cpuCoreWatts": "CPU-centric rows/J",
    "ispNodeHourly": "the budget's ISP nodes; ISP rows/$",
    "cpuNodeHourly": "with --on-demand: the budget's CPU cores, CPU-centric rows/$",
    "cpuNodeHourlyPreemptible": "the budget's CPU cores, CPU-centric rows/$ (spot, the default)",
    "cpuNodeCores": "a CPU core's price: the node's over its cores",
}


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}x"


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.1f} MB"


def _row(label: str, cpu: str, isp: str) -> str:
    return f"  {label:<54}{cpu:>16}  {isp:>22}"


def _ratio_line(label: str, value: float | None, published: float | None = None) -> str:
    tail = f"   {published:g}x [published, PreSto]" if published else ""
    return f"    {label:<62}{_x(value):>9}{tail}"


def report_job(name: str, fig: dict) -> list[str]:
    prof, cpu, isp, r, b = fig["profile"], fig["cpu"], fig["isp"], fig["ratios"], fig["budget"]
    model = isp.get("model", {})
    values = ", ".join(f"{c} {n}" for c, n in prof["valuesPerRow"].items())
    terms = " + ".join(f"{k} {v * 1e6:.3f}" for k, v in prof["modelSecondsPerRow"].items())
    per_row = sum(prof["modelSecondsPerRow"].values()) * 1e6
    scaled = f" (ISP / {fig['scale']:g})" if fig["scale"] != 1 else ""
    lines = [
        f"job {name}: {JOBS[name]} [bench]; {prof['offloadable']} of {prof['transforms']} transforms "
        "offloadable [plan]",
        f"  per row: {prof['bytesPerRow']} bytes of TSV [measured]; values through ISP units: {values} "
        "[plan]",
        f"  one ISP unit per row, us [model]: {terms} = {per_row:.3f} "
        f"({prof['modelRowsPerSecondPerUnit']:,.0f} rows/s)",
        _row("", "CPU-centric", "ISP placement"),
        _row(
            "workers [bench]",
            f"{cpu['workers']['cpu']} CPU",
            f"{isp['workers']['isp']} nodes x {fig['units']} unit",
        ),
        _row("$/h of those workers [model]", f"{cpu['dollarsPerHour']:.4f}", f"{isp['dollarsPerHour']:.4f}"),
        _row(
            f"end-to-end seconds [measured]{scaled}", f"{cpu['wallSeconds']:.2f}", f"{isp['wallSeconds']:.2f}"
        ),
        _row("end-to-end seconds [model]", "-", f"{model['wallSeconds']:.2f}" if model else "n/a"),
        _row("rows/s [measured]", f"{cpu['rowsPerSecond']:,.0f}", f"{isp['rowsPerSecond']:,.0f}"),
        _row("rows/s [model]", "-", f"{model['rowsPerSecond']:,.0f}" if model else "n/a"),
        _row(
            "network bytes [measured]", _mb(cpu["networkBytes"]["total"]), _mb(isp["networkBytes"]["total"])
        ),
    ]
    for part, label in (
        ("raw", "raw data to compute"),
        ("handoff", "ISP to CPU hand-off"),
        ("shard", "shards"),
    ):
        lines.append(
            _row(f"  {label} [measured]", _mb(cpu["networkBytes"][part]), _mb(isp["networkBytes"][part]))
        )
    lines += [
        _row(
            "network seconds at networkBytesPerSecond [model]",
            f"{cpu['networkSeconds']:.3f}",
            f"{isp['networkSeconds']:.3f}",
        ),
        _row("rows/$ [measured x model]", _g(cpu["rowsPerDollar"]), _g(isp["rowsPerDollar"])),
        _row("rows/$ [model]", "-", _g(model.get("rowsPerDollar"))),
        _row("rows/J [measured x model]", _g(cpu["rowsPerJoule"]), _g(isp["rowsPerJoule"])),
        _row("rows/J [model]", "-", _g(model.get("rowsPerJoule"))),
    ]
    paced = isp.get("paced")
    if paced:
        kept = ", ".join(f"{v:.2f}" for v in paced["measuredOverModel"].values())
        lines += [
            _row(
                "paced ISP tasks behind the model [measured]",
                "",
                f"{paced['tasksBehind']} of {paced['tasks']}",
            ),
            _row("ISP rows/s per node, measured / model [measured]", "", kept),
            _row(
                "rows per storage node [measured]",
                "",
                ", ".join(f"{v:,}" for v in model["rowsByNode"].values()),
            ),
        ]
        if paced["tasksBehind"]:
            lines.append(
                "  (a task behind the model took this machine's core longer than the modelled unit: the "
                "[measured] ISP seconds are then this machine's, the [model] ones the modelled hardware's)"
            )
    same = fig["identical"]
    lines += [
        f"  shards byte-identical between the two runs [measured]: "
        f"{'yes' if same['identical'] else 'NO'}, {same['files']} files",
        f"  ratios, ISP placement / CPU-centric (above 1: ISP better){'':<9}{'here':>9}",
        f"    speedup at ${b['dollarsPerHour']:.3f}/h: {b['ispNodes']} ISP nodes vs {b['cpuCores']} "
        f"{'spot' if b['preemptible'] else 'on-demand'} cores (CPU-centric {_g(r['cpuFleetSeconds'])} s: "
        "[measured] per core x cores [model])",
        _ratio_line("ISP [measured] vs CPU-centric", r["speedupMeasured"], PUBLISHED["speedup"]),
        _ratio_line("ISP [model] vs CPU-centric", r["speedupModel"]),
        f"    the same, a storage server counted on both sides [bench]: {b['cpuCoresBesideStorage']} cores "
        f"beside {b['ispNodes']} storage servers (CPU-centric {_g(r['cpuFleetSecondsBesideStorage'])} s)",
        _ratio_line("ISP [measured] vs CPU-centric", r["speedupMeasuredBesideStorage"]),
        _ratio_line("ISP [model] vs CPU-centric", r["speedupModelBesideStorage"]),
        "    cost-efficiency: rows/$, each run's own workers for its own seconds",
        _ratio_line(
            "ISP [measured x model] vs CPU-centric [measured x model]", r["costMeasured"], PUBLISHED["cost"]
        ),
        _ratio_line("ISP [model] vs CPU-centric [measured x model]", r["costModel"]),
        "    energy-efficiency: rows/J of busy seconds",
        _ratio_line(
            "ISP [measured x model] vs CPU-centric [measured x model]",
            r["energyMeasured"],
            PUBLISHED["energy"],
        ),
        _ratio_line("ISP [model] vs CPU-centric [measured x model]", r["energyModel"]),
        _ratio_line("network bytes, CPU-centric / ISP [measured]", r["networkBytes"]),
        _ratio_line(f"seconds here, CPU-centric / ISP [measured]{scaled}", r["sameMachineSeconds"]),
    ]
    p = r["parity"]
    lines.append(
        f"  parity [model]: the ISP units' rates would have to be {_x(p['speed'])} the model's for equal "
        f"seconds at the budget, {_x(p['cost'])} for equal rows/$, {_x(p['energy'])} for equal rows/J"
    )
    for side, f in (("CPU-centric", cpu), ("ISP", isp)):
        lines += [f"  WARNING ({side} run): {message}" for message in f["warnings"]]
    return lines


def report_text(doc: dict) -> None:
    b, machine = doc["budget"], doc["machine"]
    fleet = "spot" if b["preemptible"] else "on-demand"
    print("PreSto, emulated: the same job and data, CPU-centric vs ISP placement, at an equal budget")
    print(
        f"machine: {machine['cpus']} CPUs, load average {machine['loadavgStart']} at the start; input: "
        f"{doc['rows']:,} rows ({SAMPLE_FILE} replicated, uncompressed TSV); best of {doc['repeat']}"
    )
    print(
        "labels: [measured] timed or counted here; [model] the ISP model (parameters below); [measured x "
        "model] measured seconds priced or powered by the model; [plan] the job's plan; [bench] this bench"
    )
    print(
        f"budget: ${b['dollarsPerHour']:.3f}/h [bench] buys, at the model's prices [model], "
        f"{b['ispNodes']} ISP storage nodes x ${b['ispNodeHourly']:.3f}/h "
        f"= ${b['ispNodes'] * b['ispNodeHourly']:.3f}/h, or {b['cpuCores']} {fleet} CPU cores x "
        f"${b['cpuCoreHourly']:.4f}/h = ${b['cpuCores'] * b['cpuCoreHourly']:.3f}/h"
    )
    print(
        f"  run here: ISP placement on {b['ispNodes']} paced ISP workers and no CPU worker; CPU-centric on "
        f"{doc['cpuWorkers']} CPU workers (this machine has {machine['cpus']} cores: more workers would only "
        f"share them), its rows/s per core scaled to {b['cpuCores']} cores [model: linear]"
    )
    if doc["scale"] != 1:
        print(
            f"  --scale {doc['scale']:g}: the paced ISP units ran {doc['scale']:g}x slower than the model; "
            "their measured seconds, dollars and joules are divided by it"
        )
    for name, fig in doc["jobs"].items():
        print()
        print("\n".join(report_job(name, fig)))
    print()
    print("ISP model parameters (spec.pools.isp.model defaults) [model]: value, what it enters; its source")
    for entry in doc["model"]:
        print(
            f"  {entry['name']} = {entry['value']:g} [model]: {USED_FOR.get(entry['name'].split('.')[0], '')}"
        )
        print(
            "\n".join(textwrap.wrap(entry["source"], 96, initial_indent=" " * 6, subsequent_indent=" " * 6))
        )
    print(
        f"  a storage server without ISP units: ${STORAGE_SERVER_HOURLY}/h [bench: the i3en.xlarge of "
        "ispNodeHourly's source]"
    )
    print(
        "  not in the model: encoding and writing the shard (an ISP worker writes it here, the whole job "
        "being offloadable); idle power; the storage servers under the CPU-centric fleet"
    )
    for message in doc["warnings"]:
        print(f"WARNING: {message}")


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="PreSto's comparison, emulated: CPU-centric vs ISP placement at an equal budget."
    )
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help=f"input rows (default {DEFAULT_ROWS:,})"
    )
    parser.add_argument(
        "--jobs", nargs="+", choices=list(JOBS), default=list(JOBS), help="jobs (default both)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        help="$/h for each side (default: the price of 2 ISP storage nodes in the model)",
    )
    parser.add_argument(
        "--cpu-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU workers of the CPU-centric run (default: this machine's cores)",
    )
    parser.add_argument(
        "--isp-units",
        type=int,
        default=1,
        help="ISP units per storage node (default 1: the model's node price holds one)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="run the paced ISP units this many times slower than the model, and divide their seconds, "
        "dollars and joules by it (default 1)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per side, the fastest kept (default 3)"
    )
    parser.add_argument("--on-demand", action="store_true", help="price CPU cores on demand (default: spot)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the input and outputs here, reusing the input (default: a temporary dir)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help=f"directory holding {SAMPLE_FILE} (default: ../shared/data from the repository root)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    if min(args.rows, args.cpu_workers, args.isp_units, args.repeat) < 1 or args.scale <= 0:
        parser.error("--rows, --cpu-workers, --isp-units, --repeat and --scale must be positive")
    if args.budget is not None and args.budget <= 0:
        parser.error("--budget must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sample = args.data / SAMPLE_FILE
    if not sample.is_file():
        log(f"presto: the Criteo sample {sample} is missing (give its directory with --data); nothing to run")
        if args.json:
            print(json.dumps({"skipped": f"{sample} is missing"}))
        return 0
    if args.workdir is not None and args.workdir.resolve().is_relative_to(REPO_ROOT):
        sys.exit(f"presto: --workdir {args.workdir} is inside the repository; choose a directory outside it")
    model = IspModel()
    preemptible = not args.on_demand
    dollars = args.budget if args.budget is not None else 2 * model.isp_node_hourly
    budget = budget_counts(dollars, model, preemptible)
    if not 1 <= budget["ispNodes"] <= MAX_ISP_NODES:
        sys.exit(
            f"presto: --budget ${dollars}/h buys {budget['ispNodes']} ISP storage nodes "
            f"(${model.isp_node_hourly}/h each); this bench runs 1 to {MAX_ISP_NODES}"
        )
    cpu_workers = min(args.cpu_workers, budget["cpuCores"])
    cores = os.cpu_count() or 1
    doc = {
        "rows": args.rows,
        "repeat": args.repeat,
        "machine": {"cpus": cores, "loadavgStart": [round(x, 2) for x in os.getloadavg()]},
        "budget": budget,
        "cpuWorkers": cpu_workers,
        "ispUnits": args.isp_units,
        "scale": args.scale,
        "published": PUBLISHED,
        "basis": BASIS,
        "model": [{"name": n, "value": v, "source": s} for n, v, s in described(model)],
        "jobs": {},
        "warnings": [],
    }
    if cpu_workers > cores:
        doc["warnings"].append(
            f"{cpu_workers} CPU workers share {cores} cores: the CPU-centric rows/s per core is understated"
        )
    if args.isp_units > 1:
        doc["warnings"].append(
            f"--isp-units {args.isp_units}: the model's ispNodeHourly prices a node with one unit, and the "
            "accounting counts a whole node whatever its units"
        )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="recprep-presto-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # in --json mode stdout carries the JSON object only
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with quiet:
            tsv = replicate_tsv(sample, args.rows, workdir)
            warm_rows = WARMUP_SHARD_ROWS * WARMUP_SHARDS_PER_NODE * max(2, budget["ispNodes"])
            warm_tsv = replicate_tsv(sample, warm_rows, workdir)
            docs = job_documents(tsv)
            for name in args.jobs:
                cpu_doc = with_pools(docs[name], isp=None, scale=1, preemptible=preemptible)
                isp = (budget["ispNodes"], args.isp_units)
                isp_doc = with_pools(docs[name], isp=isp, scale=args.scale, preemptible=preemptible)
                out_cpu, out_isp = workdir / "out" / f"{name}-cpu", workdir / "out" / f"{name}-isp"
                log(f"{name}: CPU-centric on {cpu_workers} CPU workers")
                cpu_run = run(cpu_doc, warm_tsv, out_cpu, cpu_workers, (0, 1), args.repeat)
                log(f"{name}: ISP placement on {isp[0]} ISP workers x {isp[1]} units")
                isp_run = run(isp_doc, warm_tsv, out_isp, 0, isp, args.repeat)
                digests = shard_digests(out_cpu)
                cpu = side_figures(cpu_run, model, preemptible)
                isp_figures = side_figures(isp_run, model, preemptible, args.isp_units, args.scale)
                doc["jobs"][name] = {
                    "units": args.isp_units,
                    "scale": args.scale,
                    "budget": budget,
                    "profile": offload_profile(cpu_doc, tsv, args.rows, model),
                    "cpu": cpu,
                    "isp": isp_figures,
                    "ratios": ratios(cpu, isp_figures, budget, model),
                    "identical": {
                        "identical": bool(digests) and digests == shard_digests(out_isp),
                        "files": len(digests),
                    },
                }
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        report_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
