"""Every op kind is complete: attribute model, OpDef rules and a torch emitter, and nothing extra."""

from __future__ import annotations

from asgnas_ir.ir.node import NODE_CLASSES, OP_ATTRS
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs import OPDEFS
from asgnas_ir.passes.codegen.torch_codegen import EMITTERS


def test_every_op_has_attrs_a_node_class_and_an_opdef() -> None:
    """Adding an Op without its attribute model or OpDef fails here, not in a user's model."""
    assert set(OP_ATTRS) == set(Op)
    assert set(NODE_CLASSES) == set(Op)
    assert set(OPDEFS) == set(Op)
    for op, opdef in OPDEFS.items():
        assert opdef.op is op
        assert opdef.kind in ("stem", "accessory", "joint", "other")


def test_every_op_has_a_torch_emitter() -> None:
    """codegen-torch can print every op kind the IR has."""
    assert set(EMITTERS) == set(Op)


def test_every_op_has_an_onnx_emitter() -> None:
    """codegen-onnx can write every op kind except opaque ones (refused with a CodegenError)."""
    from asgnas_ir.passes.codegen.onnx_codegen import ONNX_EMITTERS

    assert set(ONNX_EMITTERS) | {Op.OPAQUE} == set(Op)


def test_every_op_has_a_keras_emitter() -> None:
    """codegen-keras can write every op kind except opaque ones (refused with a CodegenError)."""
    from asgnas_ir.passes.codegen.keras_codegen import KERAS_EMITTERS

    assert set(KERAS_EMITTERS) | {Op.OPAQUE} == set(Op)


def test_torch_fx_tables_only_produce_known_ops() -> None:
    """Every fx converter table is non-empty and keyed consistently (no duplicate registration at import)."""
    from asgnas_ir.frontends.torch_fx.functions import FUNCTIONS
    from asgnas_ir.frontends.torch_fx.methods import METHODS
    from asgnas_ir.frontends.torch_fx.modules import MODULES

    assert len(MODULES) > 30 and len(FUNCTIONS) > 40 and len(METHODS) > 30
    assert all(isinstance(k, str) for k in FUNCTIONS)
    assert all(isinstance(k, type) for k in MODULES)
