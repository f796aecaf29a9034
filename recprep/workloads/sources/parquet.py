"""Parquet sources: splits are runs of consecutive row groups of about rowsPerShard rows.

Sparse string columns are read dictionary-encoded (Parquet usually stores them so), which keeps
their distinct values, and the ops on them, at one per distinct ID.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import SourceError
from .base import NULL, BadRow, ReadResult, Roles, Split, non_finite_rows, null_non_finite
from .files import list_files, reading


class ParquetSource:
    def __init__(self, spec, roles_fn, exclude: str | None = None):
        self.spec = spec
        self.fs, self.files = list_files(spec.uri, exclude)
        try:
            base = pq.read_schema(self.fs.open(self.files[0], "rb"))
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"{self.files[0]}: not a readable Parquet file ({exc})") from None
        self.names = base.names
        self.roles: Roles = roles_fn(self.names)
        self._dict_cols = [
            n
            for n in self.roles.sparse
            if pa.types.is_string(base.field(n).type) or pa.types.is_binary(base.field(n).type)
        ]
        fields = []
        for f in base:
            t = pa.dictionary(pa.int32(), f.type) if f.name in self._dict_cols else f.type
            fields.append(pa.field(f.name, t))
        self._schema = pa.schema(fields)

    def schema(self) -> pa.Schema:
        return self._schema

    def _file(self, path: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open(path, "rb"), read_dictionary=self._dict_cols)

    def splits(self, rows_per_shard: int) -> list[Split]:
        out: list[Split] = []
        for path in self.files:
            with reading(path, "read the Parquet metadata of"):
                meta = self._file(path).metadata
            if meta.schema.to_arrow_schema().names != self.names:
                raise SourceError(f"{path}: columns differ from {self.files[0]}")
            start, rows = 0, 0
            for rg in range(meta.num_row_groups):
                rows += meta.row_group(rg).num_rows
                if rows >= rows_per_shard or rg == meta.num_row_groups - 1:
                    out.append(Split(len(out), path, start, rg + 1, rows))
                    start, rows = rg + 1, 0
        return out

    def raw_bytes(self, split: Split) -> tuple[int, int]:
        """(bytes the split's row groups occupy in storage, compressed; text parsed: none)."""
        with reading(split.path, "read the Parquet metadata of"):
            meta = self._file(split.path).metadata
        stored = sum(
            meta.row_group(rg).column(c).total_compressed_size
            for rg in range(split.start, split.stop)
            for c in range(meta.num_columns)
        )
        return stored, 0

    def locate(self, split: Split, bad: list[BadRow], row: int) -> str:
        """Where row ``row`` (0-based) of the table :meth:`read` returned for ``split`` is: its
        1-based row number in the file, as bad rows are numbered (the rows before it that went
        bad, ``bad``, counted back in)."""
        with reading(split.path, "read the Parquet metadata of"):
            meta = self._file(split.path).metadata
        first = sum(meta.row_group(rg).num_rows for rg in range(split.start))
        number = first + row + 1
        for line in sorted(b.line for b in bad):
            if line <= number:
                number += 1
        return f"{split.path}, row {number}"

    def read(self, split: Split, decode_hex: frozenset[str] = frozenset()) -> ReadResult:
        """The split as a table of :meth:`schema`'s types (``decode_hex``: this source leaves
        hex decoding to the plan). A row with a non-finite dense or label value is quarantined
        (its "line" is its 1-based row number in the file), unless ``spec.source.nonFinite`` is
        null."""
        try:
            with reading(split.path):
                pf = self._file(split.path)
                table = pf.read_row_groups(range(split.start, split.stop), use_threads=False)
        except pa.ArrowException as exc:
            raise SourceError(f"{split.path}: not a readable Parquet file ({exc})") from None
        if table.schema != self._schema:
            table = table.cast(self._schema)
        numeric = [n for n in (*self.roles.dense, self.roles.label) if n]
        if self.spec.non_finite == NULL:
            return ReadResult(null_non_finite(table, numeric))
        mask, why = non_finite_rows(table, numeric)
        if not mask.any():
            return ReadResult(table)
        first = sum(pf.metadata.row_group(rg).num_rows for rg in range(split.start))
        rows = table.filter(pa.array(mask)).to_pylist()
        bad = [
            BadRow(split.path, first + int(i) + 1, why[int(i)], json.dumps(row, default=str))
            for i, row in zip(np.flatnonzero(mask), rows)
        ]
        return ReadResult(table.filter(pa.array(~mask)), bad)
