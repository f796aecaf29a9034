"""to_list and firstx: list features for KeyedJaggedTensor-style sparse inputs."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...op_params import FirstXParams, ToListParams
from .base import FLOAT, INT, LIST, STRING, Op, kind_of, numeric_values, validity

try:
    from ._kernels import singleton_lists as _singletons
except ImportError:  # a source tree without the built extension: numpy does the same
    _singletons = None

#: fixed-width types whose values the kernel copies as 4- or 8-byte words
_WORDS = {pa.int32(): 4, pa.int64(): 8, pa.uint32(): 4, pa.uint64(): 8, pa.float32(): 4, pa.float64(): 8}


@functools.lru_cache(maxsize=16)
def _range_offsets(n: int) -> pa.Array:
    """Offsets 0..n of n one-element lists (shared: every shard of a job has the same size)."""
    return pa.array(np.arange(n + 1, dtype=np.int32))


def _singletons_of(values: pa.Array, entry_valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, kept values) of one-element lists: a list per valid row, empty for the others.
    ``entry_valid``: for dictionary indices, whether each dictionary entry is valid."""
    n = len(values)
    raw = numeric_values(values)
    bitmap = values.buffers()[0] if values.null_count else None
    if _singletons is not None and values.type in _WORDS:
        offsets = np.empty(n + 1, np.int32)
        out = np.empty(n, raw.dtype)
        kept = _singletons(
            np.ascontiguousarray(raw), _WORDS[values.type], bitmap, values.offset, entry_valid, offsets, out
        )
        return offsets, out[:kept]
    valid = validity(values)
    if entry_valid is not None:
        valid &= entry_valid.view(bool)[np.where(valid, raw, 0)]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(valid, out=offsets[1:])
    return offsets, raw[valid]


def _dictionary_lists(array: pa.DictionaryArray) -> pa.ListArray:
    """One-element lists of a dictionary column, the elements still dictionary-encoded (the
    dictionary is kept, not expanded: later element-wise ops and the shard writer work on its
    distinct values)."""
    n = len(array)
    dictionary = array.dictionary
    if not array.null_count and not dictionary.null_count:
        return pa.ListArray.from_arrays(_range_offsets(n), array)
    indices = array.indices
    if indices.type != pa.int32():
        indices = indices.cast(pa.int32())
    entry_valid = validity(dictionary).view(np.uint8) if dictionary.null_count else None
    offsets, kept = _singletons_of(indices, entry_valid)
    if dictionary.null_count:
        # no element refers to a null entry any more: give it a value so the elements count
        # as non-null without a look through the dictionary
        dictionary = dictionary.fill_null(
            pa.scalar(0 if kind_of(dictionary.type) != STRING else "", dictionary.type)
        )
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.DictionaryArray.from_arrays(pa.array(kept), dictionary)
    )


class ToList(Op):
    """to_list: a scalar becomes a one-element list; a null becomes an empty list."""

    Params = ToListParams
    name = ToListParams.op
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
            return pa.ListArray.from_arrays(_range_offsets(n), array)
        if array.type in _FIXED:
            offsets, kept = _singletons_of(array, None)
            return pa.ListArray.from_arrays(pa.array(offsets), pa.array(kept, type=array.type))
        valid = validity(array)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(valid, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), array.filter(pa.array(valid)))


_FIXED = frozenset(
    {
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
        pa.float32(),
        pa.float64(),
    }
)


class FirstX(Op):
    """firstx(k): truncate each list to its first k elements (null lists stay null)."""

    Params = FirstXParams
    name = FirstXParams.op
    accepts = frozenset({LIST})

    def transform(self, array: pa.Array, state=None) -> pa.Array:
        if not len(array):
            return array
        k = self.params.k
        offsets = array.offsets.to_numpy()  # zero-copy; a null list may span slots too
        if int(offsets[-1] - offsets[0]) <= k or int(np.diff(offsets).max()) <= k:
            return array  # nothing to cut: keep the buffers as they are
        return pc.list_slice(array, 0, k)
