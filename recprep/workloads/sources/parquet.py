"""Parquet sources: splits are runs of consecutive row groups of about rowsPerShard rows.

Sparse string columns are read dictionary-encoded (Parquet usually stores them so), which keeps
their distinct values, and the ops on them, at one per distinct ID.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import SourceError
from .base import ReadResult, Roles, Split
from .files import list_files


class ParquetSource:
    def __init__(self, spec, roles_fn):
        self.spec = spec
        self.fs, self.files = list_files(spec.uri)
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

    def read(self, split: Split, decode_hex: frozenset[str] = frozenset()) -> ReadResult:
        """The split as a table of :meth:`schema`'s types (``decode_hex``: this source leaves
        hex decoding to the plan)."""
        table = self._file(split.path).read_row_groups(range(split.start, split.stop), use_threads=False)
        return ReadResult(table.cast(self._schema) if table.schema != self._schema else table)
