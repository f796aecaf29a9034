"""The Thrift compact protocol, write side only: what Parquet page headers and footers need.

A struct is a list of ``(field_id, type, value)`` in increasing field order; ``None`` values are
left out (optional fields). Types: ``bool``, ``i8``, ``i16``, ``i32``, ``i64``, ``binary``
(bytes or str, UTF-8), ``struct`` (a nested field list), ``raw`` (an already encoded struct, as
:func:`struct` returns it) and ``list:<type>`` (a Python list). Reference: the Thrift compact
protocol specification (field headers carry the id delta in the high nibble when it is 1..15,
varint zigzag integers, lists with a size/type header byte).
"""

from __future__ import annotations

from typing import Any

# compact protocol type codes
_BOOL_TRUE, _BOOL_FALSE, _I8, _I16, _I32, _I64, _BINARY, _LIST, _STRUCT = 1, 2, 3, 4, 5, 6, 8, 9, 12
_CODE = {
    "i8": _I8,
    "i16": _I16,
    "i32": _I32,
    "i64": _I64,
    "binary": _BINARY,
    "struct": _STRUCT,
    "raw": _STRUCT,
    "bool": _BOOL_TRUE,
}

Fields = list[tuple[int, str, Any]]

_SMALL = [bytes([i]) for i in range(128)]


def varint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 128:
        if value < 0:
            raise ValueError("varint of a negative number")
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> bytes:
    return varint(((-value) << 1) - 1 if value < 0 else value << 1)


def _binary(value) -> bytes:
    data = value.encode() if isinstance(value, str) else bytes(value)
    return varint(len(data)) + data


def _value(kind: str, value: Any) -> bytes:
    if kind == "i32" or kind == "i64" or kind == "i16":
        return zigzag(int(value))
    if kind == "binary":
        return _binary(value)
    if kind == "struct":
        return struct(value)
    if kind == "raw":
        return value
    if kind == "i8":
        return bytes([int(value) & 0xFF])
    if kind == "bool":  # only inside lists; fields carry booleans in their header
        return _SMALL[_BOOL_TRUE if value else _BOOL_FALSE]
    if kind.startswith("list:"):
        return _list(kind[5:], value)
    raise ValueError(f"thrift: unknown type {kind!r}")


def _list(element: str, items: list) -> bytes:
    code = _CODE[element]
    size = len(items)
    head = bytes([(size << 4) | code]) if size < 15 else bytes([0xF0 | code]) + varint(size)
    return head + b"".join([_value(element, item) for item in items])


def struct(fields: Fields) -> bytes:
    """One struct (ending with its stop byte)."""
    parts = []
    last = 0
    for field_id, kind, value in fields:
        if value is None:
            continue
        if field_id <= last:
            raise ValueError(f"thrift: field ids must increase ({field_id} after {last})")
        if kind == "bool":
            code, payload = (_BOOL_TRUE if value else _BOOL_FALSE), b""
        elif kind[0] == "l":  # list:<type>
            code, payload = _LIST, _list(kind[5:], value)
        else:
            code, payload = _CODE[kind], _value(kind, value)
        delta = field_id - last
        parts.append(
            _SMALL[(delta << 4) | code]
            if delta <= 7
            else bytes([(delta << 4) | code])
            if delta <= 15
            else bytes([code]) + zigzag(field_id)
        )
        parts.append(payload)
        last = field_id
    parts.append(b"\x00")
    return b"".join(parts)
