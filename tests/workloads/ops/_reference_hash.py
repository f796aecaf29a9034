"""The splitmix64 finaliser in plain Python integers (mod 2**64): the reference for mix64,
sigrid_hash and ngram."""

from __future__ import annotations

MASK = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(x: int, salt: int = 0) -> int:
    z = (x + salt * GOLDEN) & MASK  # a negative int64 ID is read as its two's-complement pattern
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & MASK
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & MASK
    z ^= z >> 31
    return z


def sigrid_hash(x: int, salt: int, max_value: int) -> int:
    return mix64(x, salt) % max_value


def ngram_hash(ids, salt: int, max_value: int) -> int:
    """mix the first ID with ``salt``, then fold each next ID mixed with ``salt + position``."""
    h = mix64(ids[0], salt)
    for j in range(1, len(ids)):
        h = mix64(h ^ mix64(ids[j], salt + j))
    return h % max_value
