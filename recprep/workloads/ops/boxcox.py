"""boxcox: a Box-Cox power transform whose lambda is fitted with scikit-learn.

Fit: every shard contributes an evenly strided sample of its positive values (after ``shift``);
samples are merged in a tree and thinned back to ``sampleSize`` by the same stride rule, so the
sample (and lambda) depends only on the data and the shard plan, never on the worker count.
scikit-learn's ``PowerTransformer(method="box-cox", standardize=False)`` fits lambda on it.
Transform: y = ((x + shift)**lambda - 1) / lambda (ln(x + shift) when lambda == 0); values with
x + shift <= 0 have no Box-Cox image and become null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import BoxCoxParams
from .base import FLOAT, INT, ElementwiseOp, from_numpy, to_float64


def _thin(x: np.ndarray, size: int) -> np.ndarray:
    if len(x) <= size:
        return x
    return x[np.linspace(0, len(x) - 1, size).astype(np.int64)]


class BoxCox(ElementwiseOp):
    Params = BoxCoxParams
    name = BoxCoxParams.op
    accepts = frozenset({INT, FLOAT})
    fitted = True

    def output_kind(self, kind: str) -> str:
        return FLOAT

    def partial(self, array: pa.Array) -> np.ndarray:
        x, _ = to_float64(array)
        x = x[~np.isnan(x)] + self.params.shift
        return _thin(x[x > 0], self.params.sample_size)

    def combine(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return _thin(np.concatenate([left, right]), self.params.sample_size)

    def finalize(self, partial: np.ndarray) -> dict:
        from sklearn.preprocessing import PowerTransformer

        if len(partial) < 2 or np.all(partial == partial[0]):
            raise ValueError(
                "boxcox needs at least two distinct positive values (after shift) to fit lambda; "
                f"found {len(partial)} positive values"
            )
        pt = PowerTransformer(method="box-cox", standardize=False)
        pt.fit(partial.reshape(-1, 1))
        return {"lambda": float(pt.lambdas_[0]), "sampleSize": int(len(partial))}

    def values(self, array: pa.Array, state=None) -> pa.Array:
        if state is None:
            raise RuntimeError("boxcox used before it was fitted")
        x, valid = to_float64(array)
        x = x + self.params.shift
        positive = x > 0
        lam = state["lambda"]
        with np.errstate(divide="ignore", invalid="ignore"):
            # expm1 keeps (x**lam - 1) / lam accurate when lam is close to 0
            y = np.log(x) if lam == 0 else np.expm1(lam * np.log(x)) / lam
        valid = positive if valid is None else (valid & positive)
        return from_numpy(np.where(positive, y, 0.0), valid)
