"""The string-ID, cross and time ops against their numpy / pyarrow.compute fallbacks, in the same
process (a measurement, not a test): ``python bench/ids.py``. Prints the best of five runs of each
(three for the fallbacks), on one core, and the ratio."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa

from recprep.workloads.ops import REGISTRY, strings
from recprep.workloads.ops import cross as cross_module

N, DISTINCT = 1_000_000, 100_000


def make(name: str, **params):
    cls = REGISTRY[name]
    return cls(cls.Params.model_validate(params))


def best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    vocab = np.array([f"{v:x}{'u' * (v % 7)}" for v in rng.integers(0, 2**40, DISTINCT)], dtype=object)
    picks = rng.integers(0, DISTINCT, N)
    plain = pa.array(vocab[picks], pa.string())
    encoded = plain.dictionary_encode()
    ids = pa.array(rng.integers(0, 10**9, N), pa.int64())
    other = pa.array(rng.integers(0, 10**6, N), pa.int64())
    decimal = pa.array(rng.integers(-(10**12), 10**12, N).astype(str), pa.string())
    sigrid = make("sigrid_hash", salt=1, maxValue=10**7)
    cross = make("cross", output="x", salt=1, maxValue=10**7)
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[0]} on {os.cpu_count()} cores")
    print(f"{N:,} rows, {DISTINCT:,} distinct strings (mean {np.mean([len(v) for v in vocab]):.1f} bytes)")
    rows = [
        ("sigrid_hash, plain string column", lambda: sigrid.transform(plain)),
        ("sigrid_hash, dictionary<int32,string> column", lambda: sigrid.transform(encoded)),
        ("sigrid_hash, int64 column (for comparison)", lambda: sigrid.transform(ids)),
        ("cross of 2 int64 columns", lambda: cross.transform_many([ids, other])),
        ("cross of dictionary string x int64", lambda: cross.transform_many([encoded, ids])),
        ("cross of plain string x int64 x int64", lambda: cross.transform_many([plain, ids, other])),
        ("to_int, 1M decimal strings", lambda: make("to_int").transform(decimal)),
        ("time hour, 1M unix seconds", lambda: make("time", part="hour").transform(ids)),
    ]
    timed = {}
    for name, fn in rows:
        timed[name] = best(fn)
        print(f"  {name:48s} {timed[name] * 1e3:8.1f} ms")
    saved = strings._fnv_kernel, strings._decimal_kernel, cross_module._fold
    strings._fnv_kernel = strings._decimal_kernel = cross_module._fold = None
    try:
        print("without the C kernels (numpy / pyarrow.compute fallbacks):")
        for name, fn in rows[:2] + rows[3:5] + rows[6:7]:
            slow = best(fn, 3)
            print(f"  {name:48s} {slow * 1e3:8.1f} ms  (C kernels {slow / timed[name]:.1f}x faster)")
    finally:
        strings._fnv_kernel, strings._decimal_kernel, cross_module._fold = saved


if __name__ == "__main__":
    main()
