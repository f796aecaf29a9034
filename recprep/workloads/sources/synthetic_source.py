"""The synthetic://criteo source: generated Criteo-schema rows, split by row ranges."""

from __future__ import annotations

from ...uris import SYNTHETIC_SCHEME
from .base import ReadResult, Roles, Split


class SyntheticSource:
    def __init__(self, rows: int, seed: int, roles_fn):
        from .synthetic import CRITEO_COLUMNS, criteo_schema

        self.rows, self.seed = rows, seed
        self.names = list(CRITEO_COLUMNS)
        self.roles: Roles = roles_fn(self.names)
        self._schema = criteo_schema()

    def schema(self):
        return self._schema

    def splits(self, rows_per_shard: int) -> list[Split]:
        uri = f"{SYNTHETIC_SCHEME}criteo?rows={self.rows}&seed={self.seed}"
        return [
            Split(
                i, uri, start, min(start + rows_per_shard, self.rows), min(rows_per_shard, self.rows - start)
            )
            for i, start in enumerate(range(0, self.rows, rows_per_shard))
        ]

    def read(self, split: Split, decode_hex: frozenset[str] = frozenset()) -> ReadResult:
        """The split as a table of :meth:`schema`'s types (``decode_hex``: this source leaves
        hex decoding to the plan)."""
        from .synthetic import generate_criteo

        return ReadResult(generate_criteo(split.start, split.stop, self.seed))
