"""The op protocol: one small class per op, registered by name.

An op is built from its validated parameters (a plain pydantic model in ``recprep.op_params``,
which the spec validates when it loads, naming the field). It transforms one column at a time, as
a whole Arrow array:

* ``Op.transform(array, state)`` is pure and vectorized; ``state`` is what ``fit`` produced, or
  ``None`` for ops that need no statistics.
* Fitted ops (``fitted = True``) also implement the distributed fit protocol:
  ``partial(array) -> S`` per shard, ``combine(S, S) -> S`` in a tree (order-preserving, so the
  result does not depend on the number of workers), ``finalize(S) -> state`` (JSON-able, saved with
  the output).

Column *kinds* let the plan check a pipeline before any data is read: ``int``, ``float``,
``string`` and ``list`` (a list of int64 IDs). An op declares the kinds it accepts and the kind it
produces.

:class:`CombiningOp` (``combines = True``) is the one exception to "one column at a time": it makes
one new column (``params.output``) from two or more input columns of the same table
(``transform_many(arrays) -> array``); the plan hands it all its inputs at once.

:class:`ElementwiseOp` covers ops that map each value on its own: it applies them to the
dictionary of a dictionary-encoded column (each distinct value is processed once, however often it
repeats: the RecD idea applied to preprocessing) and to the elements of list columns.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from ...op_params import OpParams

INT, FLOAT, STRING, LIST = "int", "float", "string", "list"
KINDS = (INT, FLOAT, STRING, LIST)


def kind_of(dtype: pa.DataType) -> str | None:
    """The kind of an Arrow type, or None when recprep has no ops for it."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_integer(dtype) or pa.types.is_boolean(dtype):
        return INT
    if pa.types.is_floating(dtype):
        return FLOAT
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_binary(dtype):
        return STRING
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return LIST
    return None


class Op:
    """Base class of all ops. Subclasses set ``Params`` (their model in ``recprep.op_params``),
    ``name = Params.op``, ``accepts`` and, where it differs from the input's, ``output_kind``."""

    name: ClassVar[str]
    Params: ClassVar[type[OpParams]] = OpParams
    accepts: ClassVar[frozenset[str]] = frozenset(KINDS)
    fitted: ClassVar[bool] = False
    #: ops that make a new feature write to ``params.output`` when it is set
    generates: ClassVar[bool] = False
    #: ops that combine all their input columns into one new column (:class:`CombiningOp`)
    combines: ClassVar[bool] = False
    #: ops that need the rows' sessions (``history``): they make one value per session
    #: (``session_lists``), which every event of the session gets
    per_session: ClassVar[bool] = False

    def __init__(self, params: OpParams):
        self.params = params

    def output_kind(self, kind: str) -> str:
        """The kind of the result for an input of ``kind`` (already checked against ``accepts``)."""
        return kind

    def transform(self, array: pa.Array, state: Any = None) -> pa.Array:
        raise NotImplementedError

    # -- fit protocol (fitted ops only) -------------------------------------------------------
    def partial(self, array: pa.Array) -> Any:
        raise NotImplementedError

    def combine(self, left: Any, right: Any) -> Any:
        raise NotImplementedError

    def finalize(self, partial: Any) -> Any:
        raise NotImplementedError


class CombiningOp(Op):
    """An op that makes one new column, ``params.output``, from several input columns at once
    (``cross``). The plan calls :meth:`transform_many` with the step's input columns (equal-length
    arrays, in the order the selector resolved them) instead of ``transform`` per column."""

    generates = True
    combines = True
    #: the fewest input columns the op takes (the plan refuses a selector that picks fewer)
    min_inputs: ClassVar[int] = 2

    def transform_many(self, arrays: list[pa.Array]) -> pa.Array:
        raise NotImplementedError

    def transform(self, array: pa.Array, state: Any = None) -> pa.Array:
        raise TypeError(f"{self.name} combines columns: call transform_many")

    @staticmethod
    def nulls_made(arrays: list[pa.Array], result: pa.Array) -> int:
        """Rows ``result`` has null although no input is (what the plan reports as made null)."""
        if not result.null_count:
            return 0
        valid = np.ones(len(result), dtype=bool)
        for array in arrays:
            if array.null_count or isinstance(array, pa.DictionaryArray):
                valid &= validity(array)
        return int(np.count_nonzero(valid & ~validity(result)))


class ElementwiseOp(Op):
    """An op defined value by value. Subclasses implement :meth:`values` on a plain array.

    ``transform`` handles dictionary arrays (``values`` runs on the dictionary only; null
    indices are first pointed at an appended null entry so ops that replace nulls see them) and
    list arrays (the op runs on the flat elements, themselves plain or dictionary-encoded;
    offsets and list validity are kept).
    """

    def values(self, array: pa.Array, state: Any = None) -> pa.Array:
        raise NotImplementedError

    def transform(self, array: pa.Array, state: Any = None) -> pa.Array:
        if isinstance(array, pa.DictionaryArray):
            return map_dictionary(array, lambda d: self.values(d, state))
        if isinstance(array, (pa.ListArray, pa.LargeListArray)):
            return map_list_values(array, lambda v: self.transform(v, state))
        return self.values(array, state)


def map_dictionary(array: pa.DictionaryArray, fn) -> pa.DictionaryArray:
    """Apply ``fn`` to the dictionary of ``array``; every row keeps its index."""
    indices, dictionary = array.indices, array.dictionary
    if indices.null_count:
        # Route null rows to one extra null dictionary entry, so `fn` decides what a null becomes.
        dictionary = pa.concat_arrays([dictionary, pa.nulls(1, dictionary.type)])
        routed = np.where(validity(indices), numeric_values(indices), len(dictionary) - 1)
        indices = pa.array(routed.astype(numeric_values(indices).dtype, copy=False), type=indices.type)
    return pa.DictionaryArray.from_arrays(indices, fn(dictionary))


def map_list_values(array: pa.ListArray, fn) -> pa.Array:
    """Apply ``fn`` to the elements of a list array, keeping its offsets and null lists."""
    list_type = pa.large_list if isinstance(array, pa.LargeListArray) else pa.list_
    new_values = fn(array.values)
    mask = array.is_null() if array.null_count else None
    offsets = array.offsets
    if mask is not None and offsets.offset:
        # from_arrays refuses a mask together with a sliced offsets array (a sliced list column)
        offsets = pa.array(offsets.to_numpy())
    return type(array).from_arrays(offsets, new_values, type=list_type(new_values.type), mask=mask)


def decode(array: pa.Array) -> pa.Array:
    """A plain (non-dictionary) array with the same values."""
    if isinstance(array, pa.DictionaryArray):
        return array.dictionary.take(array.indices)
    return array


def to_float64(array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Values as a float64 numpy array (nulls as NaN) and the validity mask (None if no nulls)."""
    array = decode(array)
    if not pa.types.is_float64(array.type):
        array = array.cast(pa.float64(), safe=False)  # int64 beyond 2**53: round, don't raise
    valid = None
    if array.null_count:
        valid = validity(array)
    return array.to_numpy(zero_copy_only=False), valid


_NUMPY = {
    pa.int8(): np.int8,
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.uint8(): np.uint8,
    pa.uint16(): np.uint16,
    pa.uint32(): np.uint32,
    pa.uint64(): np.uint64,
    pa.float16(): np.float16,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}


def numeric_values(array: pa.Array) -> np.ndarray:
    """The value buffer of a fixed-width numeric array as numpy, zero-copy (null slots hold
    whatever the buffer has: combine with the validity mask)."""
    dtype = _NUMPY[array.type]
    buf = array.buffers()[1]
    return np.frombuffer(buf, dtype=dtype, count=len(array) + array.offset)[array.offset :]


def validity(array: pa.Array) -> np.ndarray:
    """Row validity as a numpy bool array; for dictionary arrays, null indices and null
    dictionary entries both count as null (without expanding the dictionary)."""
    if isinstance(array, pa.DictionaryArray):
        indices = array.indices
        if not array.dictionary.null_count:
            return validity(indices)
        idx = numeric_values(indices)
        dict_valid = validity(array.dictionary)
        if not indices.null_count:
            return dict_valid[idx]
        valid = validity(indices)
        return valid & dict_valid[np.where(valid, idx, 0)]  # null slots may hold any index
    if not array.null_count:
        return np.ones(len(array), dtype=bool)
    return bitmap_to_bool(array.buffers()[0], array.offset, len(array))


def null_values(array: pa.Array) -> tuple[int, int]:
    """(nulls, values) of a column as a feature sees it: rows of a scalar column (a dictionary
    column's null entries count), elements of a list column (plus null lists)."""
    if isinstance(array, (pa.ListArray, pa.LargeListArray)):
        nulls, values = null_values(array.flatten())
        return nulls + array.null_count, values + array.null_count
    if isinstance(array, pa.DictionaryArray) and array.dictionary.null_count:
        return int(len(array) - np.count_nonzero(validity(array))), len(array)
    return array.null_count, len(array)


def bitmap_to_bool(bitmap: pa.Buffer, offset: int, length: int) -> np.ndarray:
    """An Arrow validity bitmap (LSB first) as a numpy bool array of ``length`` rows."""
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), count=offset + length, bitorder="little")
    return bits[offset:].view(bool)


def with_validity_of(array: pa.Array, values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """``values`` (one per row of ``array``) as an Arrow array with ``array``'s nulls, reusing
    its validity bitmap instead of rebuilding one from a mask."""
    if not array.null_count:
        return pa.Array.from_buffers(dtype, len(values), [None, pa.py_buffer(values)], 0)
    if array.offset % 8 == 0:
        bitmap = array.buffers()[0]
        start, size = array.offset // 8, (len(array) + 7) // 8
        return pa.Array.from_buffers(
            dtype, len(values), [bitmap.slice(start, size), pa.py_buffer(values)], array.null_count
        )
    return pa.array(values, type=dtype, mask=~validity(array))


def from_numpy(values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """An Arrow array from numpy values, null where ``valid`` is False."""
    if valid is None:
        return pa.array(values)
    return pa.array(values, mask=~valid)
