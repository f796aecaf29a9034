"""normalize: standardise a dense column to zero mean and unit variance, fitted over the source.

Fit: per-shard (count, mean, M2) merged with Chan et al.'s parallel update, in a tree whose shape
depends only on the number of shards. Transform: (x - mean) / std, population std; a constant
column (std 0) is only centred. Nulls stay null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import NormalizeParams
from .base import FLOAT, INT, ElementwiseOp, from_numpy, to_float64


class Normalize(ElementwiseOp):
    Params = NormalizeParams
    name = NormalizeParams.op
    accepts = frozenset({INT, FLOAT})
    fitted = True

    def output_kind(self, kind: str) -> str:
        return FLOAT

    def partial(self, array: pa.Array) -> tuple[int, float, float]:
        x, _ = to_float64(array)
        x = x[~np.isnan(x)]
        if not len(x):
            return (0, 0.0, 0.0)
        mean = float(x.mean())
        return (len(x), mean, float(((x - mean) ** 2).sum()))

    def combine(self, left, right):
        n1, m1, s1 = left
        n2, m2, s2 = right
        n = n1 + n2
        if n == 0:
            return (0, 0.0, 0.0)
        delta = m2 - m1
        return (n, m1 + delta * n2 / n, s1 + s2 + delta * delta * n1 * n2 / n)

    def finalize(self, partial) -> dict:
        n, mean, m2 = partial
        std = float(np.sqrt(m2 / n)) if n else 0.0
        return {"count": n, "mean": mean, "std": std}

    def values(self, array: pa.Array, state=None) -> pa.Array:
        if state is None:
            raise RuntimeError("normalize used before it was fitted")
        x, valid = to_float64(array)
        y = x - state["mean"]
        if state["std"] > 0:
            y /= state["std"]
        return from_numpy(y, valid)
