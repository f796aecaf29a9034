"""The 64-bit mix behind sigrid_hash and ngram, identical on every machine and version.

``mix64(x, salt)`` is the splitmix64 finaliser applied to ``x + salt * 0x9E3779B97F4A7C15``,
all in unsigned 64-bit arithmetic (mod 2**64)::

    z = x + salt * 0x9E3779B97F4A7C15
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z =  z ^ (z >> 31)

Signed int64 IDs are reinterpreted as their two's-complement uint64 bit pattern. The constants
and shifts are fixed forever: changing them changes every hashed ID of every trained model.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def mix64(values: np.ndarray, salt: int = 0) -> np.ndarray:
    """Mix int64 or uint64 ``values`` (any shape) with ``salt``; returns uint64."""
    z = np.asarray(values).astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        if salt:
            z += np.uint64(salt % 2**64) * GOLDEN
        z ^= z >> _S30
        z *= _M1
        z ^= z >> _S27
        z *= _M2
        z ^= z >> _S31
    return z


def reduce_range(hashed: np.ndarray, max_value: int) -> np.ndarray:
    """Map uint64 hashes into ``[0, max_value)`` as int64 (plain modulo)."""
    return (hashed % np.uint64(max_value)).astype(np.int64)
