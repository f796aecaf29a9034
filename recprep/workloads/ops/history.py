"""history(k, output): each session's recent past, the sequence feature production recommenders use.

For a session job (``spec.source.session``: rows sorted by key, then time), the history of column
``c`` for a session ``s`` of key ``u`` is the list of the values of ``c`` in ``u``'s last ``k``
events *before* ``s`` starts, nulls left out (so it holds at most ``k`` values), oldest first (most
recent last), taken in the shard's order (key, then time; ties in source order). The window is
``k`` events, not ``k`` values, so a shard needs only the ``k`` events before a session to make its
history. Every event of ``s`` gets the same list; the first session
of a key gets an empty list. Values of the session itself never enter its own history (no label
leak from the future or the present). The input is an integer ID column (hash strings first, with
``sigrid_hash``); the result is a new list<int64> sparse feature.

Vectorized: the valid rows' positions are searched (``searchsorted``) for each session's window
``[key start, session start)``; one gather builds every list.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ...op_params import HistoryParams
from .base import INT, LIST, Op, numeric_values, validity


class History(Op):
    Params = HistoryParams
    name = HistoryParams.op
    accepts = frozenset({INT})
    generates = True
    #: needs the session structure of the rows (``sessions``: key and session runs)
    per_session = True

    def output_kind(self, kind: str) -> str:
        return LIST

    def session_lists(self, values: pa.Array, key_run: np.ndarray, session_run: np.ndarray) -> pa.Array:
        """One list per session of the rows (sessions numbered by ``session_run``, 1-based and
        non-decreasing; keys by ``key_run``): see the module docstring."""
        if isinstance(values, pa.DictionaryArray):
            values = values.dictionary_decode()
        if values.type != pa.int64():
            values = values.cast(pa.int64())
        n = len(values)
        if n == 0:
            return pa.array([], pa.list_(pa.int64()))
        raw = numeric_values(values)
        ok = validity(values) if values.null_count else None
        valid_rows = np.flatnonzero(ok) if ok is not None else np.arange(n)
        starts = np.flatnonzero(np.concatenate(([True], session_run[1:] != session_run[:-1])))
        key_new = np.concatenate(([True], key_run[1:] != key_run[:-1]))
        key_start_of_row = np.maximum.accumulate(np.where(key_new, np.arange(n), 0))
        window = np.maximum(key_start_of_row[starts], starts - self.params.k)  # the k events before
        first = np.searchsorted(valid_rows, window, side="left")
        lengths = np.searchsorted(valid_rows, starts, side="left") - first
        offsets = np.zeros(len(starts) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        idx = np.arange(total, dtype=np.int64) - np.repeat(offsets[:-1], lengths) + np.repeat(first, lengths)
        flat = raw[valid_rows[idx]] if total else np.empty(0, np.int64)
        return pa.ListArray.from_arrays(
            pa.array(offsets, pa.int64()).cast(pa.int32()), pa.array(flat, pa.int64())
        )


__all__ = ["History"]
