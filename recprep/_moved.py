"""Forwarding imports for modules that moved: the old import path keeps working for one release
and warns (``DeprecationWarning``) where it is imported from.

An old module's whole body is ``forward(__name__, "<new module>")``: the old name then *is* the
new module in ``sys.modules`` (same classes, so ``isinstance`` and pickles agree), and for a
package every submodule is forwarded too.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings

#: The release that drops the forwarding imports.
REMOVED_IN = "0.3.0"

#: old module -> new module, for every forwarding import (the README and the tests read it)
MOVED = {
    "recprep.workloads.service": "recprep.delivery.service",
    "recprep.workloads.shards": "recprep.delivery.shards",
    "recprep.workloads.batching": "recprep.delivery.batching",
    "recprep.workloads.loader": "recprep.train.loader",
    "recprep.workloads.cache_plan": "recprep.train.cache_plan",
}


def forward(old: str) -> None:
    """Make module ``old`` (being imported) the module it moved to, with a warning that points
    at the import statement."""
    new = MOVED[old]
    warnings.warn(
        f"{old} moved to {new}; the old import path goes in recprep {REMOVED_IN}",
        DeprecationWarning,
        stacklevel=3,
    )
    module = importlib.import_module(new)
    sys.modules[old] = module
    if hasattr(module, "__path__"):
        for info in pkgutil.iter_modules(module.__path__):
            sys.modules[f"{old}.{info.name}"] = importlib.import_module(f"{new}.{info.name}")
