"""Joins with side tables (``spec.source.joins``): user and item tables brought into every row
of the source by key, before the transforms.

A :class:`JoinedSource` wraps the source (text, Parquet or synthetic) and keeps its protocol:
the same splits, a schema holding the joined columns after the source's, roles that the dense
and sparse selectors give over both, and reads that join every split's table with the side
tables. It is a left join: the split's rows, their count and their order are kept exactly; a
key missing from a side table (or a null key) gives nulls in that table's joined columns.

Side tables are broadcast: each process that opens the source (the driver, and each worker
once, since tasks cache the prepared source) reads every side table whole with the source
readers (``TextSource``/``ParquetSource``: the same types, the same errors), checks it (its keys
unique, its size within ``maxBytes``) and keeps it in memory. A split is joined by vectorized
lookups: ``searchsorted`` on the sorted keys when both keys are integers, pyarrow's
``index_in`` (on the dictionary only, for a dictionary-encoded key) when they are strings, then
one ``take`` per joined column.

Types. Joined columns have the types the side table's reader gives them under the source's
roles: from a text side table, dense columns are float64, sparse columns dictionary<int32,
string>, the others strings; from Parquet, the stored types (sparse strings dictionary-encoded).
Keys must be integers or strings (dictionary-encoded or not) on both sides: a float key (a key
column selected as dense, say) is a SpecError. Integer keys are compared as integers, string
keys as strings; an integer key against a string key (CSV interactions and a Parquet user table,
say) is compared as text, the integer written in decimal (``"42"`` matches 42, ``"042"`` does
not).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import SourceError, SpecError
from ...spec import SourceSpec
from ...uris import infer_format
from .base import ReadResult, Roles, Split

#: rows per piece in which a side table is read (and its size checked against maxBytes)
_SIDE_ROWS = 1 << 18
_INT, _STR = "integer", "string"


@contextlib.contextmanager
def _as_join(where: str) -> Iterator[None]:
    """Errors of the source readers (which name ``spec.source.*``) renamed to the join's fields."""
    fields = {"columns": "names"}
    try:
        yield
    except (SpecError, SourceError) as exc:
        text = re.sub(
            r"spec\.source\.(\w+)", lambda m: f"{where}.{fields.get(m.group(1), m.group(1))}", str(exc)
        )
        raise type(exc)(text) from None


def _key_class(dtype: pa.DataType) -> str | None:
    """_INT or _STR for the types a join key may have, None for the others."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_integer(dtype):
        return _INT
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return _STR
    return None


def _one_array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.Array):
        return col
    if col.num_chunks == 1:
        return col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.unify_dictionaries()
    if col.num_chunks == 0:
        return pa.array([], type=col.type)
    return col.combine_chunks()


def _plain(array: pa.Array) -> pa.Array:
    """A key array without dictionary encoding, strings as ``string``, integers as int64."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_integer(array.type):
        return array.cast(pa.int64()) if array.type != pa.int64() else array
    return array.cast(pa.string()) if array.type != pa.string() else array


@dataclass
class _Side:
    """One side table, read and checked: its keys (unique, not null) and joined columns."""

    where: str  #: spec.source.joins[i]
    on: str
    key_class: str
    keys: pa.Array  #: int64 or string, no nulls, unique
    columns: dict[str, pa.Array]  #: output name -> column, aligned with keys
    types: dict[str, pa.DataType]  #: output name -> type (as in the schema)
    _sorted: np.ndarray | None = None
    _order: np.ndarray | None = None
    _text_keys: pa.Array | None = None

    def indices(self, key: pa.Array) -> pa.Array:
        """For each value of the source's key column, the side table's row holding it (null:
        none, or a null key)."""
        if pa.types.is_dictionary(key.type):  # look up each distinct key once
            found = self.indices(key.dictionary)
            return found.take(key.indices)
        cls = _key_class(key.type)
        if cls is None:
            raise SpecError(
                f"{self.where}.key: column {self.on!r} is {key.type}; join keys must be integers or strings"
            )
        key = _plain(key)
        if cls == _INT and self.key_class == _INT:
            return self._search(key)
        if cls == _INT:  # integer keys against string keys: compared as decimal text
            key = key.cast(pa.string())
        values = self.keys if self.key_class == _STR else self._as_text()
        return pc.index_in(key, value_set=values)

    def _search(self, key: pa.Array) -> pa.Array:
        if self._sorted is None:
            keys = self.keys.to_numpy()
            self._order = np.argsort(keys, kind="stable")
            self._sorted = keys[self._order]
        n = len(self._sorted)
        values = key.fill_null(0).to_numpy(zero_copy_only=False) if key.null_count else key.to_numpy()
        if not n:
            return pa.nulls(len(key), pa.int64())
        pos = np.minimum(np.searchsorted(self._sorted, values), n - 1)
        hit = self._sorted[pos] == values
        if key.null_count:
            hit &= np.asarray(key.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        return pa.array(self._order[pos], mask=~hit)

    def _as_text(self) -> pa.Array:
        if self._text_keys is None:
            self._text_keys = self.keys.cast(pa.string())
        return self._text_keys

    def join(self, table: pa.Table) -> pa.Table:
        rows = self.indices(_one_array(table[self.on]))
        for name, column in self.columns.items():
            joined = column.take(rows)
            if pa.types.is_dictionary(joined.type):
                # keep only the dictionary values this split uses, in order of appearance (what
                # the source readers give a sparse column), not the whole side table's
                joined = joined.dictionary_decode().dictionary_encode().cast(self.types[name])
            table = table.append_column(pa.field(name, self.types[name]), joined)
        return table


@dataclass
class _Plan:
    """A join as opened: its side table's reader (before its roles are known), the columns it
    brings and what they are called in the joined table."""

    index: int
    spec: object  #: the JoinSpec
    side_spec: SourceSpec
    fmt: str
    key: str
    columns: list[str]  #: side-table names
    outputs: list[str]  #: names in the joined table

    @property
    def where(self) -> str:
        return f"spec.source.joins[{self.index}]"


def _open_side(side_spec: SourceSpec, fmt: str, roles_fn):
    if fmt == "parquet":
        from .parquet import ParquetSource

        return ParquetSource(side_spec, roles_fn)
    from .text import TextSource

    return TextSource(side_spec, fmt, None, roles_fn)


def _no_roles(names: list[str]) -> Roles:
    return Roles(None, (), ())


def plan_joins(spec) -> list[_Plan]:
    """Each join of ``spec`` (a SourceSpec) with its side table's column names checked (the
    files listed and their header or schema read; no rows yet)."""
    plans = []
    for i, join in enumerate(spec.joins):
        where = f"spec.source.joins[{i}]"
        with _as_join(where):
            fmt = infer_format(join.uri, join.format)
            if fmt not in ("csv", "tsv", "parquet"):
                raise SpecError(f"{where}.format: a side table is csv, tsv or parquet (got {fmt})")
            side_spec = SourceSpec(
                uri=join.uri,
                format=fmt,
                header=join.header,
                columns=join.names,
                delimiter=join.delimiter,
                label=None,
                non_finite=spec.non_finite,
            )
            side = _open_side(side_spec, fmt, _no_roles)
        names = list(side.schema().names)
        first = side.files[0]
        key = join.side_key or join.key
        if key not in names:
            field = "sideKey" if join.side_key else "key"
            raise SpecError(
                f"{where}.{field}: no column {key!r} in the side table {first}; its columns are: "
                f"{', '.join(names)}"
                + (
                    ""
                    if join.side_key
                    else f" (set {where}.sideKey when the side table names its key otherwise)"
                )
            )
        if join.columns is None:
            columns = [n for n in names if n != key]
            if not columns:
                raise SpecError(f"{where}: the side table {first} has no column besides its key {key!r}")
        else:
            missing = [c for c in join.columns if c not in names]
            if missing:
                raise SpecError(
                    f"{where}.columns: no column {missing[0]!r} in the side table {first}; its columns "
                    f"are: {', '.join(names)}"
                )
            columns = list(join.columns)
        outputs = [join.prefix + c for c in columns]
        plans.append(_Plan(i, join, side_spec, fmt, key, columns, outputs))
    return plans


def check_names(plans: list[_Plan], names: list[str]) -> None:
    """SpecError when a join's key is not a column, or a joined column clashes with the
    source's columns or with another join's."""
    have = {n: "the source" for n in names}
    for p in plans:
        if p.spec.key not in have:
            raise SpecError(f"{p.where}.key: no column {p.spec.key!r}; columns are: {', '.join(have)}")
        for out in p.outputs:
            if out in have:
                hint = f"set {p.where}.prefix" if not p.spec.prefix else f"change {p.where}.prefix"
                raise SpecError(
                    f"{p.where}.columns: joined column {out!r} clashes with a column of {have[out]}; "
                    f"{hint} or leave the column out of {p.where}.columns"
                )
            have[out] = p.where


class JoinedSource:
    """A source whose every split is joined with the side tables of ``spec.source.joins``."""

    def __init__(self, spec, open_inner, roles_fn):
        """``open_inner(roles_fn)``: the wrapped source, opened with the roles function it gets;
        ``roles_fn(names)``: the roles over the source's and the joined columns."""
        self.spec = spec
        self._plans = plan_joins(spec)
        joined = [o for p in self._plans for o in p.outputs]
        full: dict[str, Roles] = {}

        def inner_roles(names: list[str]) -> Roles:
            check_names(self._plans, names)
            roles = full["roles"] = roles_fn([*names, *joined])
            keep = set(names)
            return Roles(
                roles.label if roles.label in keep else None,
                tuple(n for n in roles.dense if n in keep),
                tuple(n for n in roles.sparse if n in keep),
            )

        self.inner = open_inner(inner_roles)
        self.roles: Roles = full["roles"]
        inner_schema = self.inner.schema()
        self.names = [*inner_schema.names, *joined]
        self._keys = frozenset(p.spec.key for p in self._plans)
        self._sides: list[_Side] = []
        fields = list(inner_schema)
        for p in self._plans:
            side = self._load(p, {f.name: f.type for f in fields})
            self._sides.append(side)
            fields += [pa.field(n, side.types[n]) for n in p.outputs]
        self._schema = pa.schema(fields)

    # -- the source protocol ----------------------------------------------------------------------
    def schema(self) -> pa.Schema:
        return self._schema

    def splits(self, rows_per_shard: int) -> list[Split]:
        return self.inner.splits(rows_per_shard)

    def raw_bytes(self, split: Split):
        """The wrapped source's (the side tables are loaded once per worker, not per split)."""
        inner = getattr(self.inner, "raw_bytes", None)
        return inner(split) if inner else None

    def read(self, split: Split, decode_hex: frozenset[str] = frozenset()) -> ReadResult:
        """The wrapped source's read, joined (join keys are never hex-decoded by the source:
        they must keep the values the side tables hold; the plan decodes them after the join)."""
        result = self.inner.read(split, frozenset(decode_hex) - self._keys)
        table = result.table
        for side in self._sides:
            table = side.join(table)
        return ReadResult(table, result.bad, result.nulled)

    # -- side tables --------------------------------------------------------------------------------
    def _load(self, p: _Plan, types: dict[str, pa.DataType]) -> _Side:
        """Read, check and index the side table of ``p``; ``types``: the columns so far."""
        on_type = types[p.spec.key]
        if _key_class(on_type) is None:
            raise SpecError(
                f"{p.where}.key: column {p.spec.key!r} is {on_type}; join keys must be integers or strings"
                + (" (leave it out of spec.source.dense)" if p.spec.key in self.roles.dense else "")
            )
        rename = dict(zip(p.columns, p.outputs))

        def side_roles(names: list[str]) -> Roles:
            def mine(selected):
                return tuple(c for c in p.columns if rename[c] in selected)

            label = self.roles.label
            side_label = next((c for c in p.columns if rename[c] == label), None)
            return Roles(side_label, mine(self.roles.dense), mine(self.roles.sparse))

        with _as_join(p.where):
            side = _open_side(p.side_spec, p.fmt, side_roles)
        schema = side.schema()
        key_type = schema.field(p.key).type
        if _key_class(key_type) is None:
            field = "sideKey" if p.spec.side_key else "key"
            raise SpecError(
                f"{p.where}.{field}: the key column {p.key!r} of the side table {side.files[0]} is "
                f"{key_type}; join keys must be integers or strings"
            )
        keep = [p.key, *p.columns]
        pieces, files, size = [], [], 0
        for split in side.splits(_SIDE_ROWS):
            with _as_join(p.where):
                result = side.read(split)
            if result.bad:
                bad = result.bad[0]
                raise SourceError(
                    f"{bad.file}:{bad.line}: {bad.reason} (a row of the side table of {p.where}, which "
                    "cannot be quarantined)"
                )
            piece = result.table.select(keep)
            size += piece.nbytes
            if size > p.spec.max_bytes:
                raise SpecError(
                    f"{p.where}.maxBytes: the side table {p.spec.uri} ({split.path}) holds more than "
                    f"{p.spec.max_bytes} bytes of in-memory data, too large to broadcast to every worker "
                    "(raise maxBytes if the workers have the memory)"
                )
            pieces.append(piece)
            files.append((split.path, piece.num_rows))
        table = pa.concat_tables(pieces) if pieces else schema.empty_table().select(keep)
        keys = _one_array(table[p.key])
        file_of_row = np.repeat(np.arange(len(files)), [n for _, n in files])
        if keys.null_count:  # a null key matches nothing
            valid = keys.is_valid()
            table, keys = table.filter(valid), keys.filter(valid)
            file_of_row = file_of_row[np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)]
        keys = _plain(keys)
        _check_unique(keys, p, [path for path, _ in files], file_of_row)
        columns = {rename[c]: _one_array(table[c]) for c in p.columns}
        out_types = {rename[c]: schema.field(c).type for c in p.columns}
        return _Side(p.where, p.spec.key, _key_class(key_type), keys, columns, out_types)


def _check_unique(keys: pa.Array, p: _Plan, paths: list[str], file_of_row: np.ndarray) -> None:
    """SourceError naming the file(s) and the value when a key occurs more than once."""
    if len(keys) < 2:
        return
    ordered = keys.take(pc.sort_indices(keys))
    same = pc.equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1))
    if not pc.any(same).as_py():
        return
    first = int(np.flatnonzero(same.to_numpy(zero_copy_only=False))[0])
    value = ordered[first].as_py()
    rows = np.flatnonzero(pc.equal(keys, pa.scalar(value, keys.type)).to_numpy(zero_copy_only=False))
    where = ", ".join(dict.fromkeys(paths[int(file_of_row[r])] for r in rows))
    raise SourceError(
        f"{where}: key {value!r} occurs {len(rows)} times in column {p.key!r} of the side table of "
        f"{p.where}; a side table holds one row per key"
    )
