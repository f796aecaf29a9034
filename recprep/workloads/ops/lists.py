"""to_list and firstx: list features for KeyedJaggedTensor-style sparse inputs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from .base import FLOAT, INT, LIST, Op, OpParams, decode, validity


class ToList(Op):
    """to_list: a scalar becomes a one-element list; a null becomes an empty list."""

    name = "to_list"
    Params = OpParams
    accepts = frozenset({INT, FLOAT, LIST})

    def output_kind(self, kind: str) -> str:
        return LIST

    def transform(self, array: pa.Array, state=None) -> pa.Array:
        if isinstance(array, (pa.ListArray, pa.LargeListArray)):
            return array
        n = len(array)
        if isinstance(array, pa.DictionaryArray) and not array.null_count and not array.dictionary.null_count:
            offsets = np.arange(n + 1, dtype=np.int32)
            return pa.ListArray.from_arrays(pa.array(offsets), array.dictionary.take(array.indices))
        if isinstance(array, pa.DictionaryArray):
            # drop null rows from the (narrow) indices before expanding the dictionary
            valid = validity(array)
            offsets = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(valid, out=offsets[1:])
            idx = array.indices.filter(pa.array(valid)) if not valid.all() else array.indices
            return pa.ListArray.from_arrays(pa.array(offsets), array.dictionary.take(idx))
        if array.null_count:
            valid = np.asarray(array.is_valid())
            offsets = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(valid, out=offsets[1:])
            values = array.filter(pa.array(valid))
        else:
            offsets = np.arange(n + 1, dtype=np.int32)
            values = array
        return pa.ListArray.from_arrays(pa.array(offsets), values)


class FirstXParams(OpParams):
    k: int = Field(..., ge=1)
    """Keep the first min(k, len) elements of each list (k >= 1)."""


class FirstX(Op):
    """firstx(k): truncate each list to its first k elements (null lists stay null)."""

    name = "firstx"
    Params = FirstXParams
    accepts = frozenset({LIST})

    def transform(self, array: pa.Array, state=None) -> pa.Array:
        if not len(array):
            return array
        lengths = pc.list_value_length(array)
        longest = pc.max(lengths).as_py()
        if longest is None or longest <= self.params.k:
            return array  # nothing to cut: keep the buffers as they are
        return pc.list_slice(array, 0, self.params.k)
