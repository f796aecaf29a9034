"""End-to-end Criteo preprocessing throughput: recprep against baselines measured in the same run.

Every contender runs the same pipeline (read -> transform -> write Parquet shards) on one core,
one after the other in this process, so the ratios between them are comparable:

  naive        row-wise pandas: a Python loop over rows applies the transforms value by value
               (measured on a subsample: the first --naive-rows rows)
  dask         vectorised pandas/numpy on dask.dataframe (map_partitions, to_parquet)
  floor        read-only floor: pyarrow reads the input and does nothing else
  recprep      recprep.workloads.runner.run_job with workers=1 (and workers=2: "recprep-2w")

The pipeline is the Criteo manifest (TorchArrow/TorchRec reference semantics):
  dense  I1..I13: fill_null(0) -> log: ln(max(x, -2) + 3)
         bucketize(I1, borders [0.5, 1.0, 1.5]) -> new int32 column I1_bucket
  sparse C1..C26: hex_to_int -> sigrid_hash(salt 0, maxValue 1e6) -> to_list -> firstx(k=1)
  output Parquet shards of 65,536 rows: label int64, I* float64, I1_bucket int32, C* list<int64>

Inputs are the public 10k-row Criteo sample replicated to --rows rows (TSV, and once converted to
Parquet), written to a temporary directory or --workdir, never into the repository.
Timings are only printed: this script never fails because something is slow.

    python bench/throughput.py --rows 200000 --naive-rows 20000
    python bench/throughput.py --json --skip naive parquet
"""

from __future__ import annotations

import os

# Single-core contract: BLAS/OpenMP pools size themselves when numpy loads, so pin them first.
# Arrow sizes its CPU pool from OMP_NUM_THREADS and its I/O pool from ARROW_IO_THREADS; worker
# processes that recprep starts inherit these, where pa.set_cpu_count() in this process cannot reach.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ARROW_IO_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import bisect  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import dask  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # bench._inputs, and the recprep of this working tree
    sys.path.insert(0, str(REPO_ROOT))

from bench._inputs import replicate_tsv  # noqa: E402

SAMPLE_FILE = "criteo_kaggle_train_10k.tsv.gz"

# ---------------------------------------------------------------------------------------------
# The Criteo manifest: schema and transform parameters shared by every contender.
# ---------------------------------------------------------------------------------------------
LABEL = "label"
DENSE = [f"I{i}" for i in range(1, 14)]
SPARSE = [f"C{i}" for i in range(1, 27)]
COLUMNS = [LABEL, *DENSE, *SPARSE]

FILL_VALUE = 0
LOG_OFFSET = 3
LOG_FLOOR = 1 - LOG_OFFSET  # inputs below -2 are raised to -2 so that log(x + 3) >= 0
BUCKET_INPUT = "I1"
BUCKET_OUTPUT = "I1_bucket"
BORDERS = [0.5, 1.0, 1.5]
SIGRID_SALT = 0
SIGRID_MAX = 1_000_000
FIRSTX_K = 1
ROWS_PER_SHARD = 65_536

# splitmix64 finaliser constants (sigrid_hash)
MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

OUTPUT_SCHEMA = pa.schema(
    [(LABEL, pa.int64())]
    + [(c, pa.float64()) for c in DENSE]
    + [(BUCKET_OUTPUT, pa.int32())]
    + [(c, pa.list_(pa.int64())) for c in SPARSE]
)
# Typed columns of the raw input (the read-only floor and the Parquet conversion use these).
RAW_TYPES = {LABEL: pa.int64(), **{c: pa.int64() for c in DENSE}, **{c: pa.string() for c in SPARSE}}

# Contender keys (in results and JSON) and the names --skip accepts.
NAIVE, DASK, FLOOR, FLOOR_DICT, RECPREP_1W, RECPREP_2W = (
    "naive",
    "dask_pandas",
    "floor",
    "floor_dict",
    "recprep_1w",
    "recprep_2w",
)
LABELS = {
    NAIVE: "naive row-wise pandas",
    DASK: "dask.dataframe + vectorised pandas",
    FLOOR: "read-only floor (pyarrow)",
    FLOOR_DICT: "read-only floor, C* as dictionary",
    RECPREP_1W: "recprep, 1 worker",
    RECPREP_2W: "recprep, 2 workers",
}
SKIP_CHOICES = {
    "naive": {NAIVE},
    "dask": {DASK},
    "floor": {FLOOR, FLOOR_DICT},
    "recprep": {RECPREP_1W, RECPREP_2W},
    "recprep-2w": {RECPREP_2W},
}
CORES = {NAIVE: 1, DASK: 1, FLOOR: 1, FLOOR_DICT: 1, RECPREP_1W: 1, RECPREP_2W: 2}
FORMATS = ("tsv", "parquet")
WARMUP_ROWS = 10_000  # each contender first runs once, untimed, on an input this small


# ---------------------------------------------------------------------------------------------
# Inputs: the real sample replicated to --rows rows, as TSV and as Parquet.
# ---------------------------------------------------------------------------------------------
def prepare_inputs(sample: Path, rows: int, workdir: Path) -> dict[str, Path]:
    """Write (or reuse) the replicated TSV and its Parquet copy; return {format: path}."""
    tsv = replicate_tsv(sample, rows, workdir)

    parquet = workdir / f"criteo_{rows}.parquet"
    if parquet.is_file() and pq.ParquetFile(parquet).metadata.num_rows == rows:
        log(f"reusing {parquet}")
    else:
        log(f"writing {parquet} (row groups of {ROWS_PER_SHARD:,} rows)")
        # Empty C* fields become nulls, as they would be in a Parquet copy of Criteo.
        table = read_tsv(tsv, RAW_TYPES, strings_can_be_null=True)
        tmp = parquet.with_suffix(".parquet.partial")
        pq.write_table(table, tmp, row_group_size=ROWS_PER_SHARD)
        tmp.replace(parquet)
    return {"tsv": tsv, "parquet": parquet}


def read_tsv(path: Path, column_types: dict, **convert_options) -> pa.Table:
    """pyarrow's CSV reader on a Criteo TSV (no header), one thread."""
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=COLUMNS, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(column_types=column_types, **convert_options),
    )


# ---------------------------------------------------------------------------------------------
# (a) Naive row-wise pandas: the CPU-centric style, one Python call chain per value.
# ---------------------------------------------------------------------------------------------
def sigrid_hash_scalar(value: int) -> int:
    """splitmix64 finaliser of uint64(value) + salt * golden ratio, reduced into [0, maxValue)."""
    z = (value + SIGRID_SALT * GOLDEN) & MASK64
    z ^= z >> 30
    z = (z * MIX1) & MASK64
    z ^= z >> 27
    z = (z * MIX2) & MASK64
    z ^= z >> 31
    return z % SIGRID_MAX


def naive_row(row: tuple) -> tuple:
    """Apply the manifest to one raw row (label, I1..I13, C1..C26); pandas gives NaN for nulls."""
    dense = []
    for x in row[1:14]:
        if x != x:  # fill_null (NaN is the only value not equal to itself)
            x = FILL_VALUE
        dense.append(math.log(max(x, LOG_FLOOR) + LOG_OFFSET))  # log
    bucket = bisect.bisect_left(BORDERS, dense[0])  # bucketize I1 (== searchsorted side="left")
    sparse = []
    for s in row[14:]:
        value = int(s, 16) if isinstance(s, str) and s else None  # hex_to_int
        hashed = None if value is None else sigrid_hash_scalar(value)  # sigrid_hash
        ids = [] if hashed is None else [hashed]  # to_list
        sparse.append(ids[:FIRSTX_K])  # firstx
    return (int(row[0]), *dense, bucket, *sparse)


def run_naive(frame: pd.DataFrame, outdir: Path) -> int:
    """Loop over the rows of `frame`, write the results as shards with pyarrow; return rows."""
    buffered: list[tuple] = []
    shard = 0
    for row in frame.itertuples(index=False, name=None):
        buffered.append(naive_row(row))
        if len(buffered) == ROWS_PER_SHARD:
            write_rows_shard(buffered, outdir, shard)
            buffered, shard = [], shard + 1
    if buffered:
        write_rows_shard(buffered, outdir, shard)
    return len(frame)


def write_rows_shard(rows: list[tuple], outdir: Path, index: int) -> None:
    columns = [pa.array(values, type=f.type) for values, f in zip(zip(*rows), OUTPUT_SCHEMA)]
    pq.write_table(pa.Table.from_arrays(columns, schema=OUTPUT_SCHEMA), outdir / shard_name(index))


def naive_tsv(path: Path, outdir: Path, rows: int) -> int:
    frame = pd.read_csv(path, sep="\t", header=None, names=COLUMNS, nrows=rows)
    return run_naive(frame, outdir)


def naive_parquet(path: Path, outdir: Path, rows: int) -> int:
    # pandas.read_parquet cannot stop early, so read only the first row groups, as a user would.
    batches, have = [], 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=min(rows, ROWS_PER_SHARD), use_threads=False):
        batches.append(batch)
        have += batch.num_rows
        if have >= rows:
            break
    frame = pa.Table.from_batches(batches).slice(0, rows).to_pandas()
    return run_naive(frame, outdir)


# ---------------------------------------------------------------------------------------------
# (b) Vectorised pandas/numpy on dask.dataframe: what a user would write.
# ---------------------------------------------------------------------------------------------
# Hex digit value of each byte; -1 marks the padding NUL bytes of numpy's fixed-width strings,
# -2 anything that is not a hex digit.
_HEX_DIGITS = np.full(256, -2, dtype=np.int64)
_HEX_DIGITS[0] = -1
for _i, _ch in enumerate(b"0123456789abcdef"):
    _HEX_DIGITS[_ch] = _i
for _i, _ch in enumerate(b"ABCDEF", start=10):
    _HEX_DIGITS[_ch] = _i


def hex_to_int_np(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Hex strings -> (int64 values, valid mask); null and "" are not valid. Vectorised in numpy."""
    # 17 bytes wide: a 17th non-NUL byte reveals a string too long for 64 bits.
    raw = column.to_numpy(dtype="S17", na_value="").view(np.uint8).reshape(len(column), 17)
    if raw[:, 16].any():
        raise ValueError(f"{column.name}: hex id longer than 16 digits")
    digits = _HEX_DIGITS[raw[:, :16]]
    if (digits == -2).any():
        raise ValueError(f"{column.name}: value is not a hex string")
    value = np.zeros(len(column), dtype=np.uint64)
    for position in range(16):  # fixed-width strings are NUL-padded on the right
        digit = digits[:, position]
        value = np.where(digit >= 0, (value << np.uint64(4)) | digit.astype(np.uint64), value)
    return value.view(np.int64), digits[:, 0] >= 0


def sigrid_hash_np(ids: np.ndarray) -> np.ndarray:
    """sigrid_hash over an int64 array (uint64 arithmetic wraps mod 2^64, as intended)."""
    z = ids.view(np.uint64) + np.uint64((SIGRID_SALT * GOLDEN) & MASK64)
    z ^= z >> np.uint64(30)
    z *= np.uint64(MIX1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(MIX2)
    z ^= z >> np.uint64(31)
    return (z % np.uint64(SIGRID_MAX)).astype(np.int64)


def transform_partition(df: pd.DataFrame) -> pd.DataFrame:
    """The manifest, column at a time, on one pandas partition."""
    out = {LABEL: df[LABEL].astype(np.int64)}
    for c in DENSE:
        x = df[c].fillna(FILL_VALUE).to_numpy(dtype=np.float64)  # fill_null
        out[c] = np.log(np.maximum(x, LOG_FLOOR) + LOG_OFFSET)  # log
    out[BUCKET_OUTPUT] = np.searchsorted(BORDERS, out[BUCKET_INPUT], side="left").astype(np.int32)
    for c in SPARSE:
        ids, valid = hex_to_int_np(df[c])  # hex_to_int
        hashed = sigrid_hash_np(ids)  # sigrid_hash (nulls are dropped by to_list below)
        offsets = np.zeros(len(df) + 1, dtype=np.int32)  # to_list: null -> [], value -> [value]
        np.cumsum(valid, out=offsets[1:])
        lists = pa.ListArray.from_arrays(offsets, pa.array(hashed[valid], type=pa.int64()))
        out[c] = pd.Series(pd.arrays.ArrowExtensionArray(lists), index=df.index).list[:FIRSTX_K]  # firstx
    return pd.DataFrame(out, index=df.index)


def run_dask(ddf: dd.DataFrame, outdir: Path) -> int:
    # dask would infer the output by running the transform on fake strings ("foo"), which are
    # not hex; an empty partition of the real dtypes gives the same frame without that.
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in ddf.dtypes.items()})
    result = ddf.map_partitions(transform_partition, meta=transform_partition(empty))
    with dask.config.set(scheduler="synchronous"):
        result.to_parquet(outdir, write_index=False, name_function=shard_name)
    return count_rows(outdir)


def dask_tsv(path: Path, outdir: Path, rows: int) -> int:
    # Partitions of ~65,536 rows (from the mean line length), so that each becomes one shard.
    blocksize = max(1, int(path.stat().st_size / rows * ROWS_PER_SHARD))
    dtypes = {LABEL: "int64", **{c: "float64" for c in DENSE}, **{c: "str" for c in SPARSE}}
    ddf = dd.read_csv(path, sep="\t", header=None, names=COLUMNS, dtype=dtypes, blocksize=blocksize)
    return run_dask(ddf, outdir)


def dask_parquet(path: Path, outdir: Path) -> int:
    # One partition per row group (65,536 rows).
    return run_dask(dd.read_parquet(path, split_row_groups=True), outdir)


# ---------------------------------------------------------------------------------------------
# (c) Read-only floors.
# ---------------------------------------------------------------------------------------------
# They take the output directory like every contender, and write nothing into it.
def floor_tsv(path: Path, _outdir: Path, dictionary: bool = False) -> int:
    types = dict(RAW_TYPES)
    if dictionary:
        types.update({c: pa.dictionary(pa.int32(), pa.string()) for c in SPARSE})
    return read_tsv(path, types).num_rows


def floor_parquet(path: Path, _outdir: Path, dictionary: bool = False) -> int:
    return pq.read_table(path, use_threads=False, read_dictionary=SPARSE if dictionary else None).num_rows


# ---------------------------------------------------------------------------------------------
# (d) recprep.
# ---------------------------------------------------------------------------------------------
def recprep_job_document(input_path: Path, fmt: str, outdir: Path) -> dict:
    """The PreprocessJob (as the YAML document would load) for the Criteo manifest."""
    return {
        "apiVersion": "recprep.io/v1alpha1",
        "kind": "PreprocessJob",
        "metadata": {"name": f"bench-throughput-{fmt}"},
        "spec": {
            "source": {
                "uri": str(input_path),
                "format": "criteo" if fmt == "tsv" else "parquet",
                "dense": "I*",
                "sparse": "C*",
                "label": LABEL,
            },
            "transforms": [
                {"op": "fill_null", "columns": "dense", "value": FILL_VALUE},
                {"op": "log", "columns": "dense", "offset": LOG_OFFSET},
                {"op": "bucketize", "columns": [BUCKET_INPUT], "borders": BORDERS, "output": BUCKET_OUTPUT},
                {"op": "hex_to_int", "columns": "sparse"},
                {"op": "sigrid_hash", "columns": "sparse", "salt": SIGRID_SALT, "maxValue": SIGRID_MAX},
                {"op": "to_list", "columns": "sparse"},
                {"op": "firstx", "columns": "sparse", "k": FIRSTX_K},
            ],
            "output": {"uri": str(outdir), "format": "parquet", "rowsPerShard": ROWS_PER_SHARD},
        },
    }


def recprep_import_error() -> str | None:
    """None if recprep's runner can be imported, else the reason (shown instead of its figures)."""
    try:
        from recprep.spec import load_job_dict  # noqa: F401
        from recprep.workloads.runner import run_job  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


_CLUSTER: dict[int, tuple] = {}


def recprep_client(workers: int):
    """A local Dask cluster of `workers` single-threaded worker processes, started once and kept
    (like the dask baseline, which pays no process start-up, recprep is timed from job submission
    to the last committed shard: read -> transform -> write)."""
    from distributed import Client, LocalCluster

    if workers not in _CLUSTER:
        for cluster, client in _CLUSTER.values():  # one cluster at a time: idle workers hold memory
            client.close()
            cluster.close()
        _CLUSTER.clear()
        from recprep.workloads.runner import WORKER_CONFIG

        with dask.config.set(WORKER_CONFIG):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
        _CLUSTER[workers] = (cluster, Client(cluster))
    return _CLUSTER[workers][1]


def run_recprep(input_path: Path, fmt: str, outdir: Path, workers: int) -> int:
    """Run the manifest through recprep; return the rows it reports as written."""
    from recprep.spec import load_job_dict
    from recprep.workloads.runner import run_job

    job = load_job_dict(recprep_job_document(input_path, fmt, outdir))
    summary = run_job(job, client=recprep_client(workers), output=str(outdir), overwrite=True)
    return summary.rows_written


# ---------------------------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------------------------
@dataclass
class Result:
    contender: str
    format: str
    cores: int
    rows: int = 0
    seconds: float = 0.0  # best wall-clock time of --repeat runs
    cpu_seconds: float = 0.0  # CPU time of this process during that run (not of child processes)
    subsample: bool = False
    error: str | None = None

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.seconds if self.seconds and not self.error else None

    @property
    def rows_per_s_per_core(self) -> float | None:
        rate = self.rows_per_s
        return None if rate is None else rate / self.cores

    def as_json(self) -> dict:
        return {
            **asdict(self),
            "rows_per_s": self.rows_per_s,
            "rows_per_s_per_core": self.rows_per_s_per_core,
        }


def measure(
    result: Result, warmup: Callable[[Path], int], run: Callable[[Path], int], outdir: Path, repeat: int
) -> Result:
    """Best of `repeat` runs of run(outdir) -> rows, after one untimed warm-up run (imports and
    first-call costs would otherwise fall on whichever contender happens to go first)."""
    for attempt in range(repeat + 1):
        shutil.rmtree(outdir, ignore_errors=True)
        outdir.mkdir(parents=True)
        if attempt == 0:
            warmup(outdir)
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        rows = run(outdir)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if not result.seconds or wall < result.seconds:
            result.rows, result.seconds, result.cpu_seconds = rows, wall, cpu
    log(f"  {LABELS[result.contender]} [{result.format}]: {result.rows:,} rows in {result.seconds:.2f} s")
    return result


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def output_files(outdir: Path) -> list[Path]:
    return sorted(outdir.rglob("*.parquet"))


def count_rows(outdir: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in output_files(outdir))


def head_rows(outdir: Path, rows: int) -> pa.Table:
    """The first `rows` rows of the shards in outdir, in shard order."""
    tables, have = [], 0
    for f in output_files(outdir):
        if have >= rows:
            break
        tables.append(pq.read_table(f, use_threads=False))
        have += tables[-1].num_rows
    return pa.concat_tables(tables).slice(0, rows) if tables else OUTPUT_SCHEMA.empty_table()


def differing_columns(expected: pa.Table, actual: pa.Table) -> list[str]:
    """Columns of `expected` whose values differ in `actual` (floats compared to 1e-12)."""
    if expected.num_rows != actual.num_rows:
        return [f"row count {actual.num_rows:,} != {expected.num_rows:,}"]
    bad = []
    for f in expected.schema:
        if f.name not in actual.column_names:
            bad.append(f"{f.name} (missing)")
            continue
        want, got = expected.column(f.name), actual.column(f.name)
        try:
            if pa.types.is_floating(f.type):
                same = np.allclose(want.to_numpy(), got.to_numpy(), rtol=1e-12, atol=0, equal_nan=True)
            else:
                same = want.combine_chunks().equals(got.cast(f.type).combine_chunks())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError) as exc:  # type mismatch
            bad.append(f"{f.name} ({got.type}: {exc})")
            continue
        if not same:
            bad.append(f.name)
    return bad


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------
def contender_runs(fmt: str, path: Path, rows: int, naive_rows: int) -> dict[str, Callable[[Path], int]]:
    """run(outdir) -> rows, for each contender that applies to an input of `rows` rows."""
    if fmt == "tsv":
        runs = {
            NAIVE: partial(naive_tsv, path, rows=naive_rows),
            DASK: partial(dask_tsv, path, rows=rows),
            FLOOR: partial(floor_tsv, path),
            FLOOR_DICT: partial(floor_tsv, path, dictionary=True),
        }
    else:
        runs = {
            NAIVE: partial(naive_parquet, path, rows=naive_rows),
            DASK: partial(dask_parquet, path),
            FLOOR: partial(floor_parquet, path),
            FLOOR_DICT: partial(floor_parquet, path, dictionary=True),
        }
    runs[RECPREP_1W] = partial(run_recprep, path, fmt, workers=1)
    runs[RECPREP_2W] = partial(run_recprep, path, fmt, workers=2)
    return runs


def run_contenders(
    args,
    inputs: dict[str, Path],
    warmup_inputs: dict[str, Path],
    workdir: Path,
    skip: set[str],
    recprep_error: str | None,
) -> list[Result]:
    results = []
    warmup_rows = min(args.rows, WARMUP_ROWS)
    for fmt in (f for f in FORMATS if f not in skip):
        timed = contender_runs(fmt, inputs[fmt], args.rows, args.naive_rows)
        warmup = contender_runs(fmt, warmup_inputs[fmt], warmup_rows, min(args.naive_rows, warmup_rows))
        for key, run in timed.items():
            if key in skip:
                continue
            result = Result(key, fmt, CORES[key], subsample=key == NAIVE)
            if key in (RECPREP_1W, RECPREP_2W) and recprep_error:
                result.error = f"not available ({recprep_error})"
            else:
                # The floors warm up on the full input: read_table of the whole file pays the first
                # touch of ~1 GB of fresh memory, which no streaming contender pays per shard.
                warm = run if key in (FLOOR, FLOOR_DICT) else warmup[key]
                try:
                    measure(result, warm, run, workdir / "out" / f"{key}-{fmt}", args.repeat)
                except Exception as exc:
                    if key not in (RECPREP_1W, RECPREP_2W):
                        raise  # the baselines are this script's own code: a failure is a bug
                    traceback.print_exc(file=sys.stderr)
                    result.error = f"failed ({type(exc).__name__}: {exc})"
            results.append(result)
    return results


# The ratios the project tracks: (key, label, numerator, denominator, per core?). The worker
# ratio compares total rows/s: the speed-up a second worker gives (ideal 2.0 on 2 cores).
TRACKED_RATIOS = [
    (
        "recprep_tsv_vs_tsv_floor",
        "recprep TSV / TSV read-only floor",
        (RECPREP_1W, "tsv"),
        (FLOOR, "tsv"),
        True,
    ),
    (
        "recprep_tsv_vs_naive",
        "recprep TSV / naive row-wise pandas",
        (RECPREP_1W, "tsv"),
        (NAIVE, "tsv"),
        True,
    ),
    (
        "recprep_tsv_vs_dask_pandas",
        "recprep TSV / dask + vectorised pandas",
        (RECPREP_1W, "tsv"),
        (DASK, "tsv"),
        True,
    ),
    (
        "recprep_parquet_vs_parquet_floor",
        "recprep Parquet / Parquet read-only floor",
        (RECPREP_1W, "parquet"),
        (FLOOR, "parquet"),
        True,
    ),
    (
        "recprep_2_workers_vs_1_tsv",
        "recprep 2 workers / 1 worker (TSV, total rows/s)",
        (RECPREP_2W, "tsv"),
        (RECPREP_1W, "tsv"),
        False,
    ),
]


def ratios(results: list[Result]) -> dict[str, float | None]:
    """TRACKED_RATIOS by key; None where either side did not run."""
    rates = {(r.contender, r.format): r for r in results}

    def rate(which: tuple[str, str], per_core: bool) -> float | None:
        r = rates.get(which)
        return None if r is None else (r.rows_per_s_per_core if per_core else r.rows_per_s)

    figures = {}
    for key, _label, numerator, denominator, per_core in TRACKED_RATIOS:
        top, bottom = rate(numerator, per_core), rate(denominator, per_core)
        figures[key] = top / bottom if top and bottom else None
    return figures


def check_outputs(args, results: list[Result], workdir: Path) -> list[str]:
    """Row counts of the dask and recprep outputs; naive vs vectorised values on the subsample."""
    warnings = []
    ran = {(r.contender, r.format) for r in results if not r.error}
    for fmt in FORMATS:
        for key in (DASK, RECPREP_1W, RECPREP_2W):
            if (key, fmt) not in ran:
                continue
            written = count_rows(workdir / "out" / f"{key}-{fmt}")
            if written != args.rows:
                warnings.append(f"{LABELS[key]} [{fmt}] wrote {written:,} rows, input has {args.rows:,}")
            reported = next(r.rows for r in results if (r.contender, r.format) == (key, fmt))
            if reported != written:
                warnings.append(
                    f"{LABELS[key]} [{fmt}] reported {reported:,} rows, its shards hold {written:,}"
                )
        if (DASK, fmt) not in ran:
            continue
        vectorised = head_rows(workdir / "out" / f"{DASK}-{fmt}", args.naive_rows)
        # The baselines must do the same work: naive vs vectorised output on the subsample.
        if (NAIVE, fmt) in ran:
            bad = differing_columns(
                head_rows(workdir / "out" / f"{NAIVE}-{fmt}", args.naive_rows), vectorised
            )
            if bad:
                warnings.append(f"naive and vectorised baselines differ [{fmt}]: {', '.join(bad)}")
        # Informational: recprep's values against the baseline on the same rows.
        if (RECPREP_1W, fmt) in ran:
            bad = differing_columns(
                vectorised, head_rows(workdir / "out" / f"{RECPREP_1W}-{fmt}", args.naive_rows)
            )
            if bad:
                warnings.append(
                    f"recprep values differ from the baselines [{fmt}, first "
                    f"{args.naive_rows:,} rows]: {', '.join(bad)}"
                )
    return warnings


def report_text(args, results: list[Result], figures: dict, warnings: list[str], recprep: str) -> None:
    def cell(r: Result | None) -> str:
        if r is None:
            return "-"
        if r.error:
            return "n/a"
        return f"{r.rows_per_s_per_core:,.0f} ({r.seconds:.2f} s)"

    by_key = {(r.contender, r.format): r for r in results}
    print(
        f"Criteo preprocessing throughput: {args.rows:,} rows, best of {args.repeat}, "
        f"{os.cpu_count()} CPUs, load average at start {figures['loadavg_start']}"
    )
    print(f"recprep: {recprep}")
    print()
    print(
        f"{'contender':<40}{'cores':>6}  {'TSV rows/s/core (wall)':>26}  {'Parquet rows/s/core (wall)':>28}"
    )
    for key in LABELS:
        if not any(c == key for c, _ in by_key):
            continue
        name = LABELS[key] + (" *" if key == NAIVE else "")
        print(
            f"{name:<40}{CORES[key]:>6}  {cell(by_key.get((key, 'tsv'))):>26}  "
            f"{cell(by_key.get((key, 'parquet'))):>28}"
        )
    if any(r.contender == NAIVE for r in results):
        print(f"  * measured on a subsample: the first {args.naive_rows:,} rows")
    if args.repeat == 1:
        print("  best of 1: the fast contenders (the floors) vary most; use --repeat 3 for tracked figures")
    for r in results:
        if r.error and not recprep.startswith("not available"):  # that one is said above
            print(f"  {LABELS[r.contender]} [{r.format}]: {r.error}")
        elif r.cores == 1 and r.cpu_seconds > 1.3 * r.seconds:
            print(f"  note: {LABELS[r.contender]} [{r.format}] used {r.cpu_seconds / r.seconds:.1f} cores")
    print()
    print("ratios (rows/s per core)")
    for key, label, *_ in TRACKED_RATIOS:
        value = figures["ratios"][key]
        print(f"  {label:<52}{'n/a' if value is None else f'{value:.2f}x':>8}")
    for message in warnings:
        print(f"WARNING: {message}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Criteo preprocessing throughput: recprep against baselines, in one run."
    )
    parser.add_argument("--rows", type=int, default=2_000_000, help="input rows (default 2,000,000)")
    parser.add_argument(
        "--naive-rows",
        type=int,
        default=100_000,
        help="subsample for the naive row-wise baseline (default 100,000)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep inputs and outputs here, reusing inputs (default: a temporary dir, removed)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help=f"directory holding {SAMPLE_FILE} (default: ../shared/data from the repo root)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per contender (default 1)")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=[*SKIP_CHOICES, *FORMATS],
        help="contenders or input formats to skip",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.naive_rows < 1 or args.repeat < 1:
        parser.error("--rows, --naive-rows and --repeat must be positive")
    args.naive_rows = min(args.naive_rows, args.rows)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sample = args.data / SAMPLE_FILE
    if not sample.is_file():
        sys.exit(
            f"throughput: the Criteo sample {sample} is missing; "
            f"give the directory that holds {SAMPLE_FILE} with --data"
        )
    if args.workdir is not None and args.workdir.resolve().is_relative_to(REPO_ROOT):
        sys.exit(
            f"throughput: --workdir {args.workdir} is inside the repository; choose a directory outside it"
        )
    skip = set().union(*(SKIP_CHOICES.get(name, {name}) for name in args.skip))

    # One core for pyarrow too (its CPU and I/O pools), for every contender in this process.
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    # the recprep of this working tree (on sys.path from the top; it is not necessarily installed)
    recprep_error = None if {RECPREP_1W, RECPREP_2W} <= skip else recprep_import_error()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="recprep-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    figures = {
        "rows": args.rows,
        "naive_rows": args.naive_rows,
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        inputs = prepare_inputs(sample, args.rows, workdir)
        warmup_inputs = prepare_inputs(sample, min(args.rows, WARMUP_ROWS), workdir)
        # In --json mode stdout carries the JSON object only; anything a contender prints goes to stderr.
        quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
        with quiet:
            results = run_contenders(args, inputs, warmup_inputs, workdir, skip, recprep_error)
            warnings = check_outputs(args, results, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    figures["ratios"] = ratios(results)
    if recprep_error:
        recprep = f"not available ({recprep_error})"
    elif {RECPREP_1W, RECPREP_2W} <= skip:
        recprep = "skipped"
    else:
        recprep = f"from {sys.modules['recprep'].__file__}"
    if args.json:
        figures.update(
            recprep=recprep,
            results={fmt: {r.contender: r.as_json() for r in results if r.format == fmt} for fmt in FORMATS},
            warnings=warnings,
        )
        print(json.dumps(figures, indent=2))
    else:
        report_text(args, results, figures, warnings, recprep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
