"""Arrow schema -> Parquet schema, for the column types recprep's writer encodes itself.

Supported (everything else is written by pyarrow instead, see ``file.py``):

* flat ``int32``, ``int64``, ``float32``, ``float64`` columns, and dictionaries of them;
* ``list<T>`` of those (one level of nesting, the list and its items optional or not), the
  Parquet three-level LIST layout that pyarrow writes: ``<name> (LIST) / list / element``.

Levels: a flat optional column has max definition level 1; an optional list of optional items
has definition levels 0 (null list), 1 (empty list), 2 (null item), 3 (item), and repetition
level 1 (a required list or item takes one definition level less).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .thrift import Fields

# parquet.thrift enums
BOOLEAN, INT32, INT64, INT96, FLOAT, DOUBLE = 0, 1, 2, 3, 4, 5
REQUIRED, OPTIONAL, REPEATED = 0, 1, 2
CONVERTED_LIST = 3

#: Arrow type -> (Parquet physical type, numpy dtype)
PHYSICAL: dict[pa.DataType, tuple[int, np.dtype]] = {
    pa.int32(): (INT32, np.dtype(np.int32)),
    pa.int64(): (INT64, np.dtype(np.int64)),
    pa.float32(): (FLOAT, np.dtype(np.float32)),
    pa.float64(): (DOUBLE, np.dtype(np.float64)),
}


@dataclass(frozen=True)
class Leaf:
    """One Parquet column (leaf) of a top-level Arrow column."""

    name: str
    path: tuple[str, ...]
    value_type: pa.DataType  #: the plain Arrow type of the values
    physical: int
    dtype: np.dtype
    nullable: bool  #: the column (flat) or the list (nested) may be null
    is_list: bool = False
    item_nullable: bool = False

    @property
    def max_rep(self) -> int:
        return 1 if self.is_list else 0

    @property
    def max_def(self) -> int:
        if not self.is_list:
            return int(self.nullable)
        return int(self.nullable) + 1 + int(self.item_nullable)


def _values_type(dtype: pa.DataType) -> pa.DataType:
    return dtype.value_type if pa.types.is_dictionary(dtype) else dtype


def leaf_of(field: pa.Field) -> Leaf | None:
    """The Parquet leaf for an Arrow field, or None when this writer does not encode it."""
    t = field.type
    if pa.types.is_list(t):
        item = t.value_field
        if pa.types.is_dictionary(item.type) and item.type.index_type != pa.int32():
            return None
        value = _values_type(item.type)
        if value not in PHYSICAL:
            return None
        physical, dtype = PHYSICAL[value]
        return Leaf(
            field.name,
            (field.name, "list", "element"),
            value,
            physical,
            dtype,
            field.nullable,
            True,
            item.nullable,
        )
    if pa.types.is_dictionary(t) and t.index_type != pa.int32():
        return None
    value = _values_type(t)
    if value not in PHYSICAL:
        return None
    physical, dtype = PHYSICAL[value]
    return Leaf(field.name, (field.name,), value, physical, dtype, field.nullable)


def leaves(schema: pa.Schema) -> list[Leaf] | None:
    """One leaf per column, or None if any column is of a type this writer does not encode."""
    out = []
    for field in schema:
        leaf = leaf_of(field)
        if leaf is None:
            return None
        out.append(leaf)
    return out


def schema_elements(columns: list[Leaf]) -> list[Fields]:
    """The flattened Parquet schema (SchemaElement structs, depth first), root first."""
    elements: list[Fields] = [[(4, "binary", "schema"), (5, "i32", len(columns))]]
    for leaf in columns:
        repetition = OPTIONAL if leaf.nullable else REQUIRED
        if not leaf.is_list:
            elements.append([(1, "i32", leaf.physical), (3, "i32", repetition), (4, "binary", leaf.name)])
            continue
        elements.append(
            [
                (3, "i32", repetition),
                (4, "binary", leaf.name),
                (5, "i32", 1),
                (6, "i32", CONVERTED_LIST),
                (10, "struct", [(3, "struct", [])]),  # LogicalType.LIST
            ]
        )
        elements.append([(3, "i32", REPEATED), (4, "binary", "list"), (5, "i32", 1)])
        elements.append(
            [
                (1, "i32", leaf.physical),
                (3, "i32", OPTIONAL if leaf.item_nullable else REQUIRED),
                (4, "binary", "element"),
            ]
        )
    return elements
