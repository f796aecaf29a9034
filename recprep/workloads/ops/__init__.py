"""The RecSys op library, registered by name so a manifest can say ``op: sigrid_hash``."""

from __future__ import annotations

from .base import Op, OpParams
from .boxcox import BoxCox
from .bucketize import Bucketize
from .categorify import Categorify
from .clamp import Clamp
from .fill_null import FillNull
from .hex_to_int import HexToInt
from .lists import FirstX, ToList
from .log import Log
from .ngram import NGram
from .normalize import Normalize
from .sigrid_hash import SigridHash

#: op name -> op class; the one registry the spec, the plan and the docs read
REGISTRY: dict[str, type[Op]] = {
    cls.name: cls
    for cls in (
        FillNull,
        Clamp,
        Log,
        Bucketize,
        HexToInt,
        SigridHash,
        ToList,
        FirstX,
        NGram,
        Categorify,
        Normalize,
        BoxCox,
    )
}

__all__ = ["REGISTRY", "Op", "OpParams"]
