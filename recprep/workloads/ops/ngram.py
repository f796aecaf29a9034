"""ngram(n, maxValue, output?): hashed n-grams of consecutive IDs in a list feature.

For a list ``[a, b, c, d]`` and ``n = 2`` the result is ``[h(a, b), h(b, c), h(c, d)]``; a list
shorter than ``n`` gives an empty list. ``h`` folds the n IDs with :func:`mix64` (salted by the
position inside the n-gram) and reduces into [0, maxValue). A feature-generation op: with
``output`` the n-grams become a new sparse feature and the input list is kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import NGramParams
from .base import LIST, Op, decode
from .hashing import mix64, reduce_range


class NGram(Op):
    Params = NGramParams
    name = NGramParams.op
    accepts = frozenset({LIST})
    generates = True

    def transform(self, array: pa.Array, state=None) -> pa.Array:
        n = self.params.n
        offsets = np.asarray(array.offsets, dtype=np.int64)
        values = decode(array.values)
        if not pa.types.is_integer(values.type):
            raise TypeError(f"ngram needs lists of integer IDs, got {array.type}")
        ids = values.fill_null(0).to_numpy().astype(np.int64, copy=False)
        lengths = np.diff(offsets)
        counts = np.maximum(lengths - (n - 1), 0)
        new_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=new_offsets[1:])
        total = int(new_offsets[-1])
        # start position (into `ids`) of every n-gram, list by list
        starts = np.repeat(offsets[:-1], counts) + (
            np.arange(total, dtype=np.int64) - np.repeat(new_offsets[:-1], counts)
        )
        h = mix64(ids[starts], self.params.salt)
        with np.errstate(over="ignore"):
            for j in range(1, n):
                h = mix64(h ^ mix64(ids[starts + j], self.params.salt + j))
        out = pa.array(reduce_range(h, self.params.max_value))
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(pa.array(new_offsets.astype(np.int32)), out, mask=mask)
