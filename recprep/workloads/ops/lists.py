"""to_list and firstx: list features for KeyedJaggedTensor-style sparse inputs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from .base import FLOAT, INT, LIST, STRING, Op, OpParams, kind_of, numeric_values, validity


def _dictionary_lists(array: pa.DictionaryArray) -> pa.ListArray:
    """One-element lists of a dictionary column, the elements still dictionary-encoded (the
    dictionary is kept, not expanded: later element-wise ops and the shard writer work on its
    distinct values)."""
    n = len(array)
    dictionary = array.dictionary
    if not array.null_count and not dictionary.null_count:
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), array)
    valid = validity(array)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(valid, out=offsets[1:])
    indices = array.indices
    if indices.type == pa.int32() and not indices.offset:
        kept = pa.array(numeric_values(indices)[valid], type=pa.int32())
    else:
        kept = indices.filter(pa.array(valid))
    if dictionary.null_count:
        # no element refers to a null entry any more: give it a value so the elements count
        # as non-null without a look through the dictionary
        dictionary = dictionary.fill_null(pa.scalar(0 if kind_of(dictionary.type) != STRING else "",
                                                    dictionary.type))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.DictionaryArray.from_arrays(kept, dictionary))


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
        if isinstance(array, pa.DictionaryArray):
            return _dictionary_lists(array)
        if not array.null_count:
            offsets = np.arange(n + 1, dtype=np.int32)
            values = array
        else:
            valid = validity(array)
            offsets = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(valid, out=offsets[1:])
            if array.type in _FIXED:
                values = pa.array(numeric_values(array)[valid], type=array.type)
            else:
                values = array.filter(pa.array(valid))
        return pa.ListArray.from_arrays(pa.array(offsets), values)


_FIXED = frozenset({pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
                    pa.uint64(), pa.float32(), pa.float64()})


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
