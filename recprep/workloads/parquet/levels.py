"""Definition/repetition levels and the values behind them, built column-wise with numpy.

:func:`flatten` turns one Arrow column (flat or a list; values plain or dictionary-encoded)
into what a Parquet data page holds: the levels (None where the leaf needs none) and the
present values, either plain (a numpy array) or as dictionary indices into a dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..ops.base import numeric_values, validity
from ._encode import list_levels
from .schema import Leaf


@dataclass
class Flat:
    rep: np.ndarray | None  #: uint8 repetition levels, None when max_rep == 0
    defs: np.ndarray | None  #: uint8 definition levels, None when max_def == 0
    num_levels: int  #: level entries (rows for flat columns)
    values: np.ndarray | None  #: the present values (plain) ...
    indices: np.ndarray | None  #: ... or their int32 indices into ``dictionary``
    dictionary: np.ndarray | None


def has_nulls(array: pa.Array) -> bool:
    """Null rows, counting a dictionary's null entries (``null_count`` counts null indices only)."""
    if array.null_count:
        return True
    return isinstance(array, pa.DictionaryArray) and array.dictionary.null_count > 0


def _values(array: pa.Array, leaf: Leaf, keep: np.ndarray | None) -> tuple:
    """(values, indices, dictionary) of the elements selected by the bool mask ``keep``."""
    if isinstance(array, pa.DictionaryArray):
        idx = numeric_values(array.indices)
        return None, (idx if keep is None else idx[keep]), numeric_values(array.dictionary)
    values = numeric_values(array)
    return (values if keep is None else values[keep]), None, None


def flatten(array: pa.Array, leaf: Leaf) -> Flat:
    if not leaf.is_list:
        n = len(array)
        if not has_nulls(array):
            values, indices, dictionary = _values(array, leaf, None)
            defs = np.ones(n, np.uint8) if leaf.max_def else None
            return Flat(None, defs, n, values, indices, dictionary)
        valid = validity(array)
        values, indices, dictionary = _values(array, leaf, valid)
        return Flat(None, valid.view(np.uint8), n, values, indices, dictionary)
    return _flatten_list(array, leaf)


def _flatten_list(array: pa.ListArray, leaf: Leaf) -> Flat:
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32, count=n + 1, offset=4 * array.offset)
    first, last = int(offsets[0]), int(offsets[-1])
    child = array.values.slice(first, last - first)
    valid = validity(array) if has_nulls(array) else None
    item_valid = validity(child) if has_nulls(child) else None
    rep = np.empty(n + len(child), np.uint8)
    defs = np.empty(n + len(child), np.uint8)
    total = list_levels(
        offsets,
        None if valid is None else valid.view(np.uint8),
        None if item_valid is None else item_valid.view(np.uint8),
        1 if leaf.nullable else 0,
        leaf.max_def,
        rep,
        defs,
    )
    # the child slots that hold written values: not under a null list, not null items
    present = item_valid
    if valid is not None:
        lengths = np.diff(offsets)
        if (lengths[~valid] > 0).any():
            under_valid = np.repeat(valid, lengths)
            present = under_valid if present is None else present & under_valid
    values, indices, dictionary = _values(child, leaf, present)
    return Flat(rep[:total], defs[:total], total, values, indices, dictionary)
