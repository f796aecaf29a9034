"""categorify(minCount): map values to dense IDs from a vocabulary fitted over the whole source.

Fit: per-shard value counts, merged in a tree. The vocabulary keeps values seen at least
``minCount`` times, ordered by descending count, ties by ascending value, so it is the same for any
number of workers. Transform: the i-th vocabulary value becomes ``i + 1``; unseen values and nulls
become 0 (reserved). Element-wise on list features.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...op_params import CategorifyParams
from .base import INT, LIST, STRING, ElementwiseOp


def _counts(values: pa.Array, weights: np.ndarray | None = None) -> pa.Table:
    """Counts of the distinct non-null values of a plain array (optionally pre-weighted)."""
    if weights is None:
        weights = np.ones(len(values), dtype=np.int64)
    table = pa.table({"value": values, "count": pa.array(weights, type=pa.int64())})
    table = table.filter(pc.is_valid(table["value"]))
    return table.group_by("value").aggregate([("count", "sum")]).rename_columns(["value", "count"])


class Categorify(ElementwiseOp):
    Params = CategorifyParams
    name = CategorifyParams.op
    accepts = frozenset({INT, STRING, LIST})
    fitted = True

    def __init__(self, params: CategorifyParams):
        super().__init__(params)
        self._cache: tuple[dict, pa.DataType, pa.Array] | None = None

    def output_kind(self, kind: str) -> str:
        return LIST if kind == LIST else INT

    # -- fit ------------------------------------------------------------------------------------
    def partial(self, array: pa.Array) -> pa.Table:
        if isinstance(array, (pa.ListArray, pa.LargeListArray)):
            array = array.flatten()
        if isinstance(array, pa.DictionaryArray):
            # count indices, not values: one pass over int32s, then the (small) dictionary
            idx = array.indices.drop_null().to_numpy()
            weights = np.bincount(idx, minlength=len(array.dictionary)).astype(np.int64)
            return _counts(array.dictionary, weights)
        return _counts(array)

    def combine(self, left: pa.Table, right: pa.Table) -> pa.Table:
        # combine_chunks: one copy into fresh buffers (partials that crossed the network may sit
        # at unaligned addresses, which Acero's group_by warns about on stderr)
        both = pa.concat_tables([left, right.cast(left.schema)]).combine_chunks()
        return both.group_by("value").aggregate([("count", "sum")]).rename_columns(["value", "count"])

    def finalize(self, partial: pa.Table) -> dict:
        kept = partial.filter(pc.greater_equal(partial["count"], self.params.min_count))
        kept = kept.sort_by([("count", "descending"), ("value", "ascending")])
        return {"vocabulary": kept["value"].to_pylist(), "counts": kept["count"].to_pylist()}

    # -- transform ------------------------------------------------------------------------------
    def _vocabulary(self, state: dict, value_type: pa.DataType) -> pa.Array:
        # keyed on the state object itself (held here, so its id cannot be reused by a new state)
        # and on the column's type
        cached = self._cache
        if cached is None or cached[0] is not state or cached[1] != value_type:
            cached = (state, value_type, pa.array(state["vocabulary"], type=value_type))
            self._cache = cached
        return cached[2]

    def values(self, array: pa.Array, state=None) -> pa.Array:
        if state is None:
            raise RuntimeError("categorify used before it was fitted")
        vocab = self._vocabulary(state, array.type)
        idx = pc.index_in(array, value_set=vocab)
        return pc.add(idx.cast(pa.int64()), 1).fill_null(0)
