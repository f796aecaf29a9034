"""The op library implements exactly the ops the spec names, with the spec's parameter models."""

from __future__ import annotations

import pytest

from recprep.errors import SpecError
from recprep.op_params import PARAMS
from recprep.spec import TransformSpec
from recprep.workloads.ops import REGISTRY, build_op


def test_every_named_op_has_an_implementation_and_no_more():
    assert sorted(REGISTRY) == sorted(PARAMS)
    for name, cls in REGISTRY.items():
        assert cls.name == name and cls.Params is PARAMS[name], name


def test_every_parameter_and_op_is_documented():
    for name, model in PARAMS.items():
        assert model.summary, name
        for field, text in model.field_docs().items():
            assert text, f"{name}.{field} has no description"


def test_build_op_makes_the_op_with_validated_parameters():
    op = build_op(TransformSpec(op="sigrid_hash", columns="sparse", maxValue=10), 0)
    assert op.name == "sigrid_hash" and op.params.max_value == 10 and op.params.salt == 0
    with pytest.raises(SpecError, match=r"spec\.transforms\[3\]\.k: .* -- k: Keep the first"):
        build_op(TransformSpec(op="firstx", columns="sparse", k=0), 3)
