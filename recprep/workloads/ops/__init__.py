"""The RecSys op library: the implementations of the ops ``recprep.op_params`` names.

``REGISTRY`` maps each op name of ``recprep.op_params.PARAMS`` to its class; ``build_op`` makes
the op of a validated transform. The names and parameters are the spec's (plain data); what an
op does with a column is here.
"""

from __future__ import annotations

from ...errors import SpecError
from ...spec import TransformSpec, validate_params
from .base import Op, OpParams
from .boxcox import BoxCox
from .bucketize import Bucketize
from .categorify import Categorify
from .clamp import Clamp
from .cross import Cross
from .fill_null import FillNull
from .hex_to_int import HexToInt
from .history import History
from .is_in import IsIn
from .lists import FirstX, ToList
from .log import Log
from .ngram import NGram
from .normalize import Normalize
from .sigrid_hash import SigridHash
from .time import Time
from .to_int import ToInt

#: op name -> op class, for every op of ``recprep.op_params.PARAMS``
REGISTRY: dict[str, type[Op]] = {
    cls.name: cls
    for cls in (
        FillNull,
        Clamp,
        Log,
        Bucketize,
        HexToInt,
        ToInt,
        IsIn,
        SigridHash,
        Cross,
        Time,
        ToList,
        FirstX,
        NGram,
        History,
        Categorify,
        Normalize,
        BoxCox,
    )
}


def build_op(transform: TransformSpec, index: int) -> Op:
    """The op of ``spec.transforms[index]``; a SpecError naming the field when it is invalid."""
    params = validate_params(transform, index)
    cls = REGISTRY.get(transform.op)
    if cls is None:  # an op of op_params.PARAMS without an implementation (a test checks there is none)
        raise SpecError(f"spec.transforms[{index}].op: op {transform.op!r} has no implementation")
    return cls(params)


__all__ = ["REGISTRY", "Op", "OpParams", "build_op"]
