"""Deterministic synthetic data with the Criteo Kaggle (DAC) schema, so demos need no download.

Schema (see :func:`criteo_schema`), in this order:

* ``label``: int64, 0/1, never null.
* ``I1`` .. ``I13``: float64, nullable, integer-valued counts (``I2`` can be -1 or -2, like the real data).
* ``C1`` .. ``C26``: ``dictionary<int32, string>``, nullable, values are 8 lowercase hex digits
  (``68fd1e64``).

Distributions (all constants below were measured once from the public 10,000-row head of the Criteo
Kaggle ``train.txt``; see "Where the constants come from"):

* label: Bernoulli(``LABEL_POSITIVE_RATE`` = 0.2182), independent of the features.
* nulls: in the real data some columns are always missing together (``I1``/``I10``, ``I4``/``I13``,
  ``I7``/``I9``/``I11``, ``C3``/``C4``/``C12``/``C16``/``C21``/``C24``, ``C19``/``C20``/``C25``/``C26``).
  Each group in ``NULL_GROUPS`` shares one Bernoulli(rate) null mask per row, so both the per-column
  null rates (``NULL_RATES``) and the co-missingness are reproduced.
* dense ``I*``: the measured empirical distribution of the present values, stored compactly in
  ``DENSE_SPECS`` as ``(vmin, head, tail)``: ``head[k]`` is P(x <= vmin + k) for the small integers
  (exact point masses for 0, 1, 2, ...), and ``tail`` is a list of ``(p, quantile)`` knots for the
  heavy right tail, interpolated linearly in log space and rounded to integers. This reproduces the
  zero share, median, p90, p99 and maximum of every column (e.g. ``I5``: median ~2,500, max ~1.6M).
* sparse ``C*``: each row draws a rank r (1 = most frequent) and shows the ID string of that rank.
  For the 19 columns with a large vocabulary, ranks follow a truncated Zipf-Mandelbrot law
  ``P(r) ~ (r + q)^-a`` for r = 1 .. ``cap`` (``SPARSE_SPECS``). ``cap`` is the column's cardinality
  in the full 45.8M-row Kaggle data (from 105 for ``C25`` to ~10.1M for ``C3``); ``a`` and ``q`` are
  fitted so that the top-1 share and the number of distinct values in ~10k rows match the sample
  (a ~= 1.03-1.23 for the big columns, a classic Zipf skew: in 1M rows the top 1% of ``C3``'s IDs
  cover ~55% of the rows and ~80% of its IDs occur once). The 7 columns with at most 32 values in
  the full data (``C6``, ``C9``, ``C14``, ``C17``, ``C20``, ``C22``, ``C23``) use the sample's value
  counts directly (``SPARSE_COUNTS``): a power law cannot fit "a few common values plus a very rare
  tail".
  Rank r of column j is shown as the 8-hex-digit form of a keyed 32-bit *bijection* of r (keys from
  the seed and the column), so distinct ranks never collide, the vocabulary depends only on
  (seed, column), and it is computed on demand for the ranks used: no vocabulary is materialised.
  The dictionary of each returned column holds only the values that occur in its non-null rows,
  ordered by rank (most frequent ID first); two tables built from different row ranges therefore
  have equal *values* but may have different dictionaries.

Determinism: row ``i`` depends only on (seed, i), never on how rows are split into calls. Rows are
grouped into blocks of ``BLOCK_ROWS``; each (block, column) pair (and each (block, null group) pair)
has its own PCG64 stream seeded by ``SeedSequence(seed, spawn_key=(0, block, stream))``, and every
row consumes exactly one 64-bit output of each stream, so ``generate_criteo(a, b)`` jumps to row
``a`` with ``PCG64.advance``. Only the raw PCG64 output and SeedSequence are used (both are fixed,
published algorithms); all distributions are inverse-CDF transforms written here, not ``Generator``
methods, whose streams numpy's compatibility policy allows to change between versions. The
transforms use float64 ``exp``/``log``/``pow``, so a platform whose libm differs in the last bit
could in rare cases round a dense value or a far-tail rank differently.

Where the constants come from: a one-off script (not part of the package; the data must not be
committed) read ``criteo_kaggle_train_10k.tsv.gz`` (first 10,000 lines of the Kaggle DAC
``train.txt``) and measured the label mean, per-column null rates and identical null masks, the
empirical CDF of each I column (head: P(x <= v) for every integer up to the largest value with >= 1%
mass; tail: quantiles at 0.05, 0.10, ..., 0.95, 0.99, 0.995, 0.999 and the maximum), and per C
column the value counts; ``(a, q)`` were fitted to each large column's top-1 share and distinct count
by nested bisection on the exact expected values. The caps are the per-column cardinalities of the
full Kaggle train set as used for DLRM's embedding tables (1460, 583, 10131227, 2202608, ...).

Speed: fully vectorised numpy/pyarrow, roughly 1M rows per second on one core (run this module as a
script to measure).
"""

from __future__ import annotations

import math
import operator

import numpy as np
import pyarrow as pa

from ... import spec

__all__ = [
    "BLOCK_ROWS",
    "CRITEO_COLUMNS",
    "CRITEO_DENSE",
    "CRITEO_LABEL",
    "CRITEO_SPARSE",
    "DENSE_SPECS",
    "LABEL_POSITIVE_RATE",
    "NULL_GROUPS",
    "NULL_RATES",
    "SPARSE_COUNTS",
    "SPARSE_SPECS",
    "criteo_schema",
    "generate_criteo",
]

CRITEO_LABEL = spec.CRITEO_LABEL
CRITEO_DENSE = list(spec.CRITEO_DENSE)
CRITEO_SPARSE = list(spec.CRITEO_SPARSE)
CRITEO_COLUMNS = [CRITEO_LABEL, *CRITEO_DENSE, *CRITEO_SPARSE]

SPARSE_TYPE = pa.dictionary(pa.int32(), pa.string())

#: Rows per independently seeded block. Changing it changes the data set.
BLOCK_ROWS = 65_536
_MAX_BLOCKS = 1 << 32  # spawn-key words are 32-bit

# ---------------------------------------------------------------------------------------------
# Measured constants. Source: criteo_kaggle_train_10k.tsv.gz = first 10,000 rows of the Criteo
# Kaggle Display Advertising Challenge train.txt (public sample, measured once by a one-off script).
# ---------------------------------------------------------------------------------------------

#: Share of label == 1 in the sample (2182 of 10000).
LABEL_POSITIVE_RATE = 0.2182

#: (null rate, columns): the columns of a group are always missing together in the sample.
#: Columns not listed are never null (I2, C1, C2, C5, C7..C11, C13..C15, C17, C18, C23).
NULL_GROUPS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (0.4481, ("I1", "I10")),
    (0.2037, ("I3",)),
    (0.1978, ("I4", "I13")),
    (0.0494, ("I5",)),
    (0.2511, ("I6",)),
    (0.0492, ("I7", "I9", "I11")),
    (0.0010, ("I8",)),
    (0.7735, ("I12",)),
    (0.0357, ("C3", "C4", "C12", "C16", "C21", "C24")),
    (0.1332, ("C6",)),
    (0.4496, ("C19", "C20", "C25", "C26")),
    (0.8182, ("C22",)),
)

#: Per-column null rate (derived from NULL_GROUPS; 0.0 for columns that are never null).
NULL_RATES: dict[str, float] = {c: 0.0 for c in CRITEO_COLUMNS}
NULL_RATES.update({c: rate for rate, cols in NULL_GROUPS for c in cols})

#: Dense columns, distribution of the present values: (vmin, head, tail).
#: head[k] = P(x <= vmin + k) (exact point masses of the small integers); tail = ((p, x_p), ...)
#: quantile knots above head[-1], interpolated linearly in log(x) and rounded.
#: Sample stats for comparison (present values): I1 zero 47.5% median 1 p99 44 max 214;
#: I2 negative 9.8% zero 17.9% median 3 p99 2214; I5 median 2480 p99 312261 max 1618112.
DENSE_SPECS: dict[str, tuple[int, tuple[float, ...], tuple[tuple[float, int], ...]]] = {
    "I1": (
        0,
        (0.4753, 0.6369, 0.7262, 0.784, 0.8261, 0.8529, 0.8759, 0.892, 0.9056),
        ((0.95, 15), (0.99, 44), (0.995, 62), (0.999, 103), (1.0, 214)),
    ),
    "I2": (
        -2,
        (
            0.0006,
            0.0975,
            0.277,
            0.4344,
            0.4895,
            0.5199,
            0.5388,
            0.5552,
            0.568,
            0.5799,
            0.5918,
            0.6018,
            0.6121,
        ),
        (
            (0.65, 16),
            (0.7, 25),
            (0.75, 38),
            (0.8, 60),
            (0.85, 100),
            (0.9, 192),
            (0.95, 574),
            (0.99, 2223),
            (0.995, 2868),
            (0.999, 3596),
            (1.0, 18522),
        ),
    ),
    "I3": (
        0,
        (
            0.008,
            0.158,
            0.2563,
            0.3347,
            0.3972,
            0.4488,
            0.4891,
            0.5234,
            0.5591,
            0.5848,
            0.6086,
            0.6285,
            0.6452,
            0.6631,
            0.6795,
            0.693,
            0.7061,
            0.7187,
            0.7295,
            0.7399,
        ),
        (
            (0.75, 21),
            (0.8, 27),
            (0.85, 37),
            (0.9, 52),
            (0.95, 93),
            (0.99, 303),
            (0.995, 526),
            (0.999, 3446),
            (1.0, 65535),
        ),
    ),
    "I4": (
        0,
        (
            0.0714,
            0.2214,
            0.3453,
            0.4358,
            0.5146,
            0.5724,
            0.6213,
            0.6628,
            0.6986,
            0.7274,
            0.7543,
            0.775,
            0.7959,
            0.8156,
            0.8322,
            0.848,
            0.8613,
            0.8724,
            0.8851,
        ),
        ((0.9, 20), (0.95, 28), (0.99, 44), (0.995, 52), (0.999, 79), (1.0, 280)),
    ),
    "I5": (
        0,
        (0.0166, 0.0361, 0.0507, 0.0507, 0.0626),
        (
            (0.1, 12),
            (0.15, 40),
            (0.2, 113),
            (0.25, 272),
            (0.3, 541),
            (0.35, 1048),
            (0.4, 1507),
            (0.45, 1795),
            (0.5, 2491),
            (0.55, 3238),
            (0.6, 4471),
            (0.65, 6026),
            (0.7, 7778),
            (0.75, 10493),
            (0.8, 15120),
            (0.85, 21693),
            (0.9, 32451),
            (0.95, 51223),
            (0.99, 312517),
            (0.995, 484316),
            (0.999, 775584),
            (1.0, 1618112),
        ),
    ),
    "I6": (
        0,
        (
            0.0629,
            0.0941,
            0.1215,
            0.1463,
            0.1662,
            0.1844,
            0.2044,
            0.2221,
            0.2404,
            0.252,
            0.2673,
            0.2804,
            0.2912,
            0.3032,
            0.3129,
            0.3223,
            0.331,
            0.3408,
            0.3488,
            0.3572,
            0.3679,
        ),
        (
            (0.4, 24),
            (0.45, 32),
            (0.5, 40),
            (0.55, 51),
            (0.6, 65),
            (0.65, 81),
            (0.7, 101),
            (0.75, 129),
            (0.8, 173),
            (0.85, 234),
            (0.9, 335),
            (0.95, 590),
            (0.99, 1737),
            (0.995, 2197),
            (0.999, 3960),
            (1.0, 12167),
        ),
    ),
    "I7": (
        0,
        (
            0.2525,
            0.3923,
            0.4815,
            0.5458,
            0.5946,
            0.6363,
            0.6698,
            0.696,
            0.7181,
            0.7362,
            0.7539,
            0.7682,
            0.781,
            0.7932,
            0.8042,
        ),
        ((0.85, 20), (0.9, 30), (0.95, 58), (0.99, 190), (0.995, 324), (0.999, 711), (1.0, 1658)),
    ),
    "I8": (
        0,
        (
            0.1177,
            0.2023,
            0.2714,
            0.3259,
            0.3762,
            0.4197,
            0.46,
            0.5008,
            0.5276,
            0.554,
            0.5776,
            0.602,
            0.6218,
            0.6443,
            0.6621,
            0.6792,
            0.6958,
            0.7121,
            0.7308,
            0.7453,
            0.7584,
            0.7701,
            0.7832,
            0.7954,
            0.807,
        ),
        ((0.85, 29), (0.9, 35), (0.95, 42), (0.99, 48), (0.995, 49), (0.999, 79), (1.0, 682)),
    ),
    "I9": (
        0,
        (
            0.0318,
            0.0736,
            0.1066,
            0.1351,
            0.1574,
            0.178,
            0.1976,
            0.2129,
            0.2275,
            0.2419,
            0.2581,
            0.2696,
            0.2789,
            0.2911,
            0.3009,
            0.3102,
            0.3206,
        ),
        (
            (0.35, 20),
            (0.4, 26),
            (0.45, 33),
            (0.5, 41),
            (0.55, 51),
            (0.6, 63),
            (0.65, 78),
            (0.7, 98),
            (0.75, 123),
            (0.8, 162),
            (0.85, 219),
            (0.9, 308),
            (0.95, 502),
            (0.99, 1229),
            (0.995, 1634),
            (0.999, 3189),
            (1.0, 7335),
        ),
    ),
    "I10": (0, (0.5015, 0.9337, 0.9895), ((0.995, 3), (0.999, 4), (1.0, 6))),
    "I11": (
        0,
        (0.2649, 0.6265, 0.761, 0.8347, 0.876, 0.904, 0.9244, 0.9394),
        ((0.95, 9), (0.99, 22), (0.995, 32), (0.999, 52), (1.0, 79)),
    ),
    "I12": (0, (0.7364, 0.8843, 0.9258, 0.9435, 0.9554), ((0.99, 14), (0.995, 21), (0.999, 39), (1.0, 98))),
    "I13": (
        0,
        (
            0.0616,
            0.2037,
            0.3184,
            0.4034,
            0.4706,
            0.5219,
            0.5671,
            0.6038,
            0.6407,
            0.6677,
            0.6921,
            0.7143,
            0.7346,
            0.7565,
            0.7739,
            0.7888,
            0.8025,
            0.8145,
            0.8281,
            0.8407,
        ),
        ((0.85, 21), (0.9, 27), (0.95, 38), (0.99, 74), (0.995, 98), (0.999, 223), (1.0, 770)),
    ),
}

#: Sparse columns with a large vocabulary: (cap, a, q) of P(rank r) ~ (r + q)^-a, r = 1..cap.
#: cap = distinct values of the column in the full Kaggle train set (DLRM's embedding table sizes);
#: a and q were fitted so that the expected top-1 share and distinct count in as many rows as the
#: sample has non-null values match the sample.
SPARSE_SPECS: dict[str, tuple[int, float, float]] = {
    "C1": (1460, 1.9665, 0.3411),  # sample: 175 distinct in 10000 non-null, top-1 share 0.500
    "C2": (583, 1.8604, 5.6574),  # sample: 386 distinct in 10000 non-null, top-1 share 0.123
    "C3": (10131227, 1.0327, 0.6306),  # sample: 5520 distinct in 9643 non-null, top-1 share 0.049
    "C4": (2202608, 1.1028, 0.7016),  # sample: 4032 distinct in 9643 non-null, top-1 share 0.076
    "C5": (305, 2.6299, 0.4064),  # sample: 56 distinct in 10000 non-null, top-1 share 0.666
    "C7": (12517, 1.1712, 23.7342),  # sample: 3184 distinct in 10000 non-null, top-1 share 0.011
    "C8": (633, 2.2966, 0.3924),  # sample: 93 distinct in 10000 non-null, top-1 share 0.589
    "C10": (93145, 1.0435, -0.6984),  # sample: 2986 distinct in 10000 non-null, top-1 share 0.276
    "C11": (5683, 1.2852, 16.1898),  # sample: 2084 distinct in 10000 non-null, top-1 share 0.020
    "C12": (8351593, 1.0466, 0.8227),  # sample: 5283 distinct in 9643 non-null, top-1 share 0.049
    "C13": (3194, 1.2838, 15.3521),  # sample: 1725 distinct in 10000 non-null, top-1 share 0.022
    "C15": (14992, 1.4553, 23.43),  # sample: 2035 distinct in 10000 non-null, top-1 share 0.019
    "C16": (5461306, 1.0822, 1.3454),  # sample: 4723 distinct in 9643 non-null, top-1 share 0.049
    "C18": (5652, 1.5766, 10.3259),  # sample: 1149 distinct in 10000 non-null, top-1 share 0.051
    "C19": (2173, 1.124, -0.8426),  # sample: 546 distinct in 5504 non-null, top-1 share 0.601
    "C21": (7046547, 1.0621, 1.0426),  # sample: 5036 distinct in 9643 non-null, top-1 share 0.049
    "C24": (286181, 1.2341, 2.0769),  # sample: 2524 distinct in 9643 non-null, top-1 share 0.078
    "C25": (105, 5.6102, 10.5521),  # sample: 39 distinct in 5504 non-null, top-1 share 0.328
    "C26": (142572, 1.1477, 1.121),  # sample: 1938 distinct in 5504 non-null, top-1 share 0.082
}

#: Sparse columns with at most 32 values in the full data: the sample's value counts, most frequent
#: first, used directly as the rank distribution (values never seen in the sample are left out).
SPARSE_COUNTS: dict[str, tuple[int, ...]] = {
    "C6": (4593, 1940, 1229, 414, 343, 146, 3),  # full data: 24 values
    "C9": (8871, 1125, 4),  # full data: 3 values
    "C14": (
        3629,
        3456,
        1604,
        362,
        245,
        226,
        140,
        108,
        70,
        45,
        26,
        25,
        12,
        8,
        7,
        6,
        6,
        6,
        5,
        5,
        4,
        3,
        1,
        1,
    ),  # full data: 27 values
    "C17": (4304, 1333, 1269, 769, 602, 494, 442, 420, 367),  # full data: 10 values
    "C20": (1990, 1772, 1742),  # full data: 4 values
    "C22": (956, 698, 68, 58, 33, 4, 1),  # full data: 18 values
    "C23": (4515, 2024, 1045, 724, 605, 406, 315, 141, 107, 49, 45, 24),  # full data: 15 values
}


def criteo_schema() -> pa.Schema:
    """label int64 (not nullable), I1..I13 float64, C1..C26 dictionary<int32, string> (nullable)."""
    return pa.schema(
        [pa.field(CRITEO_LABEL, pa.int64(), nullable=False)]
        + [pa.field(c, pa.float64()) for c in CRITEO_DENSE]
        + [pa.field(c, SPARSE_TYPE) for c in CRITEO_SPARSE]
    )


# ---------------------------------------------------------------------------------------------
# Random streams
# ---------------------------------------------------------------------------------------------

# Stream ids inside a block: columns use their position in CRITEO_COLUMNS (0 = label, 1..13 dense,
# 14..39 sparse); null group g uses _NULL_STREAM + g.
_NULL_STREAM = 64
_PURPOSE_ROWS = 0  # spawn_key[0] for per-block row streams
_PURPOSE_VOCAB = 1  # spawn_key[0] for per-column vocabulary keys
_TWO_M53 = 2.0**-53


def _uniforms(seed: int, block: int, stream: int, lo: int, hi: int) -> np.ndarray:
    """Uniform [0, 1) doubles for rows [lo, hi) of `block` from one stream (53 bits of each output)."""
    bg = np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_PURPOSE_ROWS, block, stream)))
    if lo:
        bg.advance(lo)
    raw = bg.random_raw(hi - lo)
    return (raw >> np.uint64(11)).astype(np.float64) * _TWO_M53


def _column_uniforms(seed: int, stream: int, start: int, stop: int) -> np.ndarray:
    """Uniforms of one stream for global rows [start, stop), assembled from the blocks they span."""
    first, last = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS
    if first == last:
        base = first * BLOCK_ROWS
        return _uniforms(seed, first, stream, start - base, stop - base)
    out = np.empty(stop - start, dtype=np.float64)
    pos = 0
    for b in range(first, last + 1):
        base = b * BLOCK_ROWS
        lo, hi = max(start, base) - base, min(stop, base + BLOCK_ROWS) - base
        out[pos : pos + hi - lo] = _uniforms(seed, b, stream, lo, hi)
        pos += hi - lo
    return out


# ---------------------------------------------------------------------------------------------
# Inverse-CDF lookups: a guide table turns the binary search into one gather for almost all rows
# ---------------------------------------------------------------------------------------------

_GUIDE_BITS = 14


class _Guide:
    """``np.searchsorted(cum, u * total, side="right")`` for uniforms u, via a guide table.

    Bucket j = floor(u * 2^bits) bounds the answer between S(j) and S(j + 1), where S(j) is the
    search result at the bucket's lower edge; only rows in the few buckets that contain a boundary of
    `cum` need the binary search. The table packs S(j) * 2 + (S(j) != S(j + 1)) into one int32 per
    bucket. Results are identical to the plain searchsorted on v = u * total (rounding is monotone
    and j / 2^bits is exact).
    """

    __slots__ = ("cum", "total", "m", "packed")

    def __init__(self, cum: np.ndarray, total: float, bits: int = _GUIDE_BITS):
        self.cum, self.total, self.m = cum, float(total), 1 << bits
        edges = (np.arange(self.m + 1, dtype=np.float64) / self.m) * self.total
        at = np.searchsorted(cum, edges, side="right").astype(np.int32)
        self.packed = at[:-1] * 2 + (at[:-1] != at[1:])

    def search(self, u: np.ndarray) -> np.ndarray:
        g = self.packed[(u * self.m).astype(np.intp)]
        ambiguous = np.flatnonzero(g & 1)
        g >>= 1
        if len(ambiguous):
            v = u[ambiguous] * self.total if self.total != 1.0 else u[ambiguous]
            g[ambiguous] = np.searchsorted(self.cum, v, side="right")
        return g


# ---------------------------------------------------------------------------------------------
# Dense columns: inverse CDF of the measured (head, tail) tables
# ---------------------------------------------------------------------------------------------


class _Dense:
    """The quantile function of a DENSE_SPECS entry as segments of u in [0, 1).

    Head segment k (u in [head[k-1], head[k])) is the constant vmin + k; tail segments interpolate
    log(x) linearly in u between the knots, starting from log(top + 0.5) at head[-1] so that rounding
    yields only values above the head. Every segment is evaluated branch-free as
    floor(exp(c0 + c1 * u) + 0.5) + offset, with c0 = -inf, c1 = 0 for the constant ones.
    """

    __slots__ = ("guide", "c0", "c1", "offset")

    def __init__(self, vmin: int, head: tuple[float, ...], tail: tuple[tuple[float, int], ...]):
        top = vmin + len(head) - 1
        tail_p = np.array([head[-1], *(p for p, _ in tail)], dtype=np.float64)
        tail_l = np.log(np.array([top + 0.5, *(x for _, x in tail)], dtype=np.float64))
        slope = np.diff(tail_l) / np.diff(tail_p)
        nh = len(head)
        self.c0 = np.concatenate([np.full(nh, -np.inf), tail_l[:-1] - tail_p[:-1] * slope])
        self.c1 = np.concatenate([np.zeros(nh), slope])
        self.offset = np.concatenate([np.arange(vmin, top + 1, dtype=np.float64), np.zeros(len(slope))])
        bounds = np.concatenate([np.asarray(head, dtype=np.float64), tail_p[1:-1]])  # upper ends
        self.guide = _Guide(bounds, 1.0)

    def sample(self, u: np.ndarray) -> np.ndarray:
        s = self.guide.search(u)
        out = np.exp(self.c0[s] + self.c1[s] * u)
        out += 0.5
        np.floor(out, out=out)
        out += self.offset[s]
        return out


# ---------------------------------------------------------------------------------------------
# Sparse columns: Zipf-Mandelbrot ranks (exact head + continuous tail) and hex vocabulary
# ---------------------------------------------------------------------------------------------

_HEAD_RANKS = 1024  # ranks 1.._HEAD_RANKS are drawn from exact probabilities


class _Ranks:
    """Inverse CDF of a rank distribution, as 0-based ranks.

    Either P(r) ~ (r + q)^-a for r = 1..cap (SPARSE_SPECS) or P(r) ~ counts[r - 1] (SPARSE_COUNTS).
    In the first case ranks up to _HEAD_RANKS use the exact cumulative weights; above that the
    weights are replaced by the density (x + q)^-a on [K + 0.5, cap + 0.5) and the inverse is
    closed-form (relative error of a rank's probability ~ a(a+1) / (24 (r+q)^2) < 1e-6). Weights are
    relative to rank 1.
    """

    __slots__ = ("cap", "a", "k", "guide", "head_mass", "total", "c", "s_lo")

    def __init__(self, cap: int, a: float = 1.0, q: float = 0.0, counts: tuple[int, ...] | None = None):
        self.cap, self.a = cap, a
        self.k = k = min(cap, _HEAD_RANKS)
        c = 1.0 + q  # weights are ((r + q) / c)^-a, i.e. 1 for rank 1
        if counts is not None:
            cum = np.cumsum(np.asarray(counts, dtype=np.float64))
        else:
            r = np.arange(1, k + 1, dtype=np.float64)
            cum = np.cumsum(np.exp(-a * np.log((r + q) / c)))
        self.head_mass = float(cum[-1])
        self.c = c
        self.s_lo = (k + 0.5 + q) / c
        tail = 0.0
        if cap > k:
            s_hi = (cap + 0.5 + q) / c
            if abs(1.0 - a) < 1e-12:
                tail = c * math.log(s_hi / self.s_lo)
            else:
                tail = c * (s_hi ** (1.0 - a) - self.s_lo ** (1.0 - a)) / (1.0 - a)
        self.total = self.head_mass + tail
        self.guide = _Guide(cum, self.total)

    def sample(self, u: np.ndarray) -> np.ndarray:
        ranks = self.guide.search(u)  # 0-based; == k means "in the tail"
        if self.cap > self.k:
            in_tail = np.flatnonzero(ranks >= self.k)
            if len(in_tail):
                w = (u[in_tail] * self.total - self.head_mass) / self.c  # tail mass to cover, units of c
                a1 = 1.0 - self.a
                if abs(a1) < 1e-12:
                    s = self.s_lo * np.exp(w)
                else:
                    s = self.s_lo * np.exp(np.log1p(a1 * w * self.s_lo ** (-a1)) / a1)
                x = s * self.c - (self.c - 1.0)  # back to rank space: x = s*c - q
                r1 = np.clip(np.floor(x + 0.5), self.k + 1, self.cap)  # 1-based rank
                ranks[in_tail] = r1.astype(np.intp) - 1
        else:
            np.minimum(ranks, self.k - 1, out=ranks)  # u*total may round up to total
        return ranks


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE_SHIFTS = np.arange(28, -1, -4, dtype=np.uint32)


def _mix32(x: np.ndarray) -> np.ndarray:
    """A bijection of uint32 (lowbias32 finaliser), in place."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def _vocab_keys(seed: int, col: int) -> tuple[np.uint32, np.uint32]:
    k0, k1 = np.random.SeedSequence(seed, spawn_key=(_PURPOSE_VOCAB, col)).generate_state(2, dtype=np.uint32)
    return np.uint32(k0), np.uint32(k1)


def _hex_ids(ranks: np.ndarray, keys: tuple[np.uint32, np.uint32]) -> pa.Array:
    """The 8-hex-digit strings of 0-based ranks: a keyed bijection of uint32, so no collisions."""
    x = ranks.astype(np.uint32)
    x ^= keys[0]
    _mix32(x)
    x ^= keys[1]
    _mix32(x)
    chars = _HEX_DIGITS[(x[:, None] >> _NIBBLE_SHIFTS) & np.uint32(0xF)]  # (k, 8) uint8, C order
    n = len(x)
    offsets = np.arange(0, 8 * n + 1, 8, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars)])


_DENSE_RANKS = 1 << 16  # ranks below this are encoded with a presence table, the rest with np.unique


def _encode(ranks: np.ndarray, mask: np.ndarray | None, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode 0-based ranks: (int32 indices, sorted ranks used by the non-null rows).

    Ranks below _DENSE_RANKS go through a presence table (no sort), larger ones (only in columns with
    a bigger cap) through np.unique. The dictionary is sorted by rank, i.e. roughly most frequent
    value first. Indices under null rows are arbitrary but in range.
    """
    present = ranks if mask is None else ranks[~mask]
    if len(present) == 0:
        return np.zeros(len(ranks), dtype=np.int32), np.zeros(0, dtype=np.intp)
    size = min(cap, _DENSE_RANKS)
    seen = np.zeros(size, dtype=bool)
    seen[present if cap <= size else present[present < size]] = True
    used_small = np.flatnonzero(seen)
    lookup = np.cumsum(seen, dtype=np.int32)
    lookup -= 1  # lookup[r] = index of rank r among used_small
    np.maximum(lookup, 0, out=lookup)  # ranks that occur only under nulls -> any valid index
    if cap <= size:
        return lookup[ranks], used_small
    big = ranks >= size
    indices = lookup[np.where(big, 0, ranks)]
    if mask is not None:
        big &= ~mask
    where_big = np.flatnonzero(big)
    used_big, inverse = np.unique(ranks[where_big], return_inverse=True)
    indices[where_big] = inverse.astype(np.int32) + np.int32(len(used_small))
    return indices, np.concatenate([used_small, used_big])


# Built once at import (a few ms).
_DENSE = {c: _Dense(*DENSE_SPECS[c]) for c in CRITEO_DENSE}
_RANKS = {
    c: (
        _Ranks(*SPARSE_SPECS[c])
        if c in SPARSE_SPECS
        else _Ranks(len(SPARSE_COUNTS[c]), counts=SPARSE_COUNTS[c])
    )
    for c in CRITEO_SPARSE
}
_STREAM = {c: i for i, c in enumerate(CRITEO_COLUMNS)}
_GROUP_OF = {c: g for g, (_, cols) in enumerate(NULL_GROUPS) for c in cols}


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def generate_criteo(start: int, stop: int, seed: int = 0) -> pa.Table:
    """Rows [start, stop) of the synthetic data set identified by `seed`.

    Row i depends only on (seed, i): concatenating the tables of adjacent ranges gives the same values
    as one call over their union (dictionaries of the sparse columns may differ). The result has
    schema :func:`criteo_schema` with one chunk per column.
    """
    start, stop, seed = operator.index(start), operator.index(stop), operator.index(seed)
    if start < 0 or stop < start:
        raise ValueError(f"generate_criteo: need 0 <= start <= stop, got start={start}, stop={stop}")
    if seed < 0:
        raise ValueError(f"generate_criteo: seed must be >= 0, got {seed}")
    if stop > _MAX_BLOCKS * BLOCK_ROWS:
        raise ValueError(f"generate_criteo: stop must be <= {_MAX_BLOCKS * BLOCK_ROWS}, got {stop}")
    schema = criteo_schema()
    if stop == start:
        return schema.empty_table()

    masks: dict[int, np.ndarray | None] = {}

    def null_mask(col: str) -> np.ndarray | None:
        g = _GROUP_OF.get(col)
        if g is None:
            return None
        if g not in masks:
            masks[g] = _column_uniforms(seed, _NULL_STREAM + g, start, stop) < NULL_GROUPS[g][0]
        return masks[g]

    arrays: list[pa.Array] = []
    u = _column_uniforms(seed, _STREAM[CRITEO_LABEL], start, stop)
    arrays.append(pa.array((u < LABEL_POSITIVE_RATE).astype(np.int64), type=pa.int64()))

    for col in CRITEO_DENSE:
        values = _DENSE[col].sample(_column_uniforms(seed, _STREAM[col], start, stop))
        arrays.append(pa.array(values, type=pa.float64(), mask=null_mask(col)))

    for col in CRITEO_SPARSE:
        ranks = _RANKS[col].sample(_column_uniforms(seed, _STREAM[col], start, stop))
        mask = null_mask(col)
        indices, used = _encode(ranks, mask, _RANKS[col].cap)
        dictionary = _hex_ids(used, _vocab_keys(seed, _STREAM[col]))
        indices_arr = pa.array(indices, type=pa.int32(), mask=mask)
        arrays.append(pa.DictionaryArray.from_arrays(indices_arr, dictionary))

    return pa.Table.from_arrays(arrays, schema=schema)


if __name__ == "__main__":  # timing: python -m recprep.workloads.sources.synthetic [rows]
    import sys
    import time

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    generate_criteo(0, 1000)  # warm up
    t0 = time.perf_counter()
    table = generate_criteo(0, n, seed=0)
    dt = time.perf_counter() - t0
    print(f"{n:,} rows in {dt:.3f} s = {n / dt:,.0f} rows/s ({table.nbytes / 1e6:.0f} MB in Arrow)")
