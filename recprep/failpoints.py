"""Failpoints: named places where a process can be made to die on purpose, once.

Some windows cannot be hit by timing from outside: an operator killed between recording a scaling
decision and carrying it out is a few milliseconds wide. A failpoint makes that crash happen there,
in the real process, for the tests that prove recovery from it (as etcd's gofail and TiKV's fail-rs
do).

``RECPREP_FAILPOINT=<name>`` arms the failpoint ``<name>``; ``RECPREP_FAILPOINT_MARK=<path>`` must
name a file that does not exist yet. The first process to reach the failpoint creates that file
(exclusively: one process, once, across restarts of a container) and SIGKILLs itself: no cleanup,
no exit handler, as the kernel's OOM killer or a node's loss would. Unarmed (the default), a
failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

#: The environment variable naming the armed failpoint.
ENV = "RECPREP_FAILPOINT"
#: The environment variable naming the file that marks the failpoint as fired.
MARK_ENV = "RECPREP_FAILPOINT_MARK"


def failpoint(name: str) -> None:
    """Die here (SIGKILL) if ``name`` is the armed failpoint and it has not fired yet."""
    if os.environ.get(ENV) != name:
        return
    mark = os.environ.get(MARK_ENV)
    if not mark:
        return  # armed without a mark it would kill every restart: not armed
    try:
        fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return  # fired already
    with os.fdopen(fd, "w") as f:
        f.write(f"{name} {os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)
