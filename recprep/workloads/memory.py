"""Allocator settings for the processes that run shard tasks.

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory goes back
to the OS at once. Setting any glibc malloc threshold also freezes the mmap threshold at 128 KiB,
so every column buffer of every shard (hundreds of KiB each) becomes a fresh ``mmap``: measured
on a 65,536-row Criteo shard, about 25,000 page faults and a third of the task's time spent
faulting and zeroing pages. A shard task allocates the same sizes shard after shard, so the
worker is better off keeping them: buffers up to 32 MiB come from the heap and up to 128 MiB of
freed heap stays with the process (what a worker holds at its peak anyway).

The nanny sets that variable in the environment of the process that starts the workers too, so
every process started from there later inherits it: ``recprep train`` applies the same
thresholds (its step's buffers are the same sizes step after step; measured under the
variable, 69,702 against 121,735 samples/s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 128 << 20

_done = False


def tune_allocator() -> bool:
    """Apply the thresholds once per process; False where the C library has no ``mallopt``."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in this C library: allocator left as it is")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _done = ok
    return ok
