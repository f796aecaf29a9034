"""Plain-Python references of the string-ID rules (independent of recprep's code): FNV-1a 64,
sigrid_hash of strings, to_int's decimal rule and cross."""

from __future__ import annotations

import re

from . import _reference_hash as ref

MASK = 2**64 - 1


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64: offset basis 14695981039346656037, prime 1099511628211 (the FNV spec)."""
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) % 2**64
    return h


def key(value) -> int | None:
    """The 64-bit key of an ID: an int's bit pattern, a string's FNV-1a 64 of its UTF-8 bytes, a
    binary value's of its bytes; None for a null or an empty string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes):
        return fnv1a64(value) if value else None
    return int(value) & MASK


def sigrid_hash(value, salt: int, max_value: int) -> int | None:
    k = key(value)
    return None if k is None else ref.sigrid_hash(k, salt, max_value)


def cross(values, salt: int, max_value: int) -> int | None:
    keys = [key(v) for v in values]
    return None if any(k is None for k in keys) else ref.ngram_hash(keys, salt, max_value)


_DECIMAL = re.compile(rb"[+-]?[0-9]+")


def to_int(value) -> int | None:
    if value is None:
        return None
    data = value.encode("utf-8") if isinstance(value, str) else value
    if not _DECIMAL.fullmatch(data):
        return None
    number = int(data.decode("ascii"))
    return number if -(2**63) <= number < 2**63 else None
