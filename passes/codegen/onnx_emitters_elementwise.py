"""codegen-onnx emitters for elementwise unary and binary ops (the `asgnas_ir.opdefs.elementwise` family).

One-node activations through `_simple`, activations with attributes (LeakyRelu, Elu, Clip, Pow),
the decompositions ONNX has no exact node for (silu, mish, gelu, softplus with beta/threshold) and
the four binary ops with a tensor or scalar operand. Kept apart from `onnx_codegen` so each file
holds one op family; importing this module registers its emitters in `ONNX_EMITTERS`.
"""

from __future__ import annotations

import math
from typing import Any

from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._onnx_printer import ONNX_EMITTERS, Emitter, OnnxPrinter, emits


def _simple(op_type: str, **fixed: Any) -> Emitter:
    def emit(p: OnnxPrinter, node: NodeBase) -> None:
        p.out(node, op_type, [p.x(node)], **fixed)

    return emit


ONNX_EMITTERS.update(
    {
        Op.RELU: _simple("Relu"),
        Op.SIGMOID: _simple("Sigmoid"),
        Op.TANH: _simple("Tanh"),
        Op.EXP: _simple("Exp"),
        Op.SQRT: _simple("Sqrt"),
        Op.LOG: _simple("Log"),
        Op.SIN: _simple("Sin"),
        Op.COS: _simple("Cos"),
        Op.NEG: _simple("Neg"),
        Op.HARDSWISH: _simple("HardSwish"),
        Op.HARDSIGMOID: _simple("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),  # torch: relu6(x + 3) / 6
        Op.IDENTITY: _simple("Identity"),
        Op.DROPOUT: _simple("Identity"),  # inference: dropout is the identity
    }
)


@emits(Op.POW)
def _pow(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Pow", [p.x(node), p.scalar(node, "exponent", float(node.attrs.exponent))])  # type: ignore[attr-defined]


@emits(Op.LEAKY_RELU)
def _leaky_relu(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "LeakyRelu", [p.x(node)], alpha=float(node.attrs.negative_slope))  # type: ignore[attr-defined]


@emits(Op.ELU)
def _elu(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Elu", [p.x(node)], alpha=float(node.attrs.alpha))  # type: ignore[attr-defined]


@emits(Op.CLAMP)
def _clamp(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.ClampAttrs = node.attrs  # type: ignore[assignment]
    low = None if attrs.min is None else p.scalar(node, "min", attrs.min)
    high = None if attrs.max is None else p.scalar(node, "max", attrs.max)
    p.out(node, "Clip", [p.x(node), low, high])


@emits(Op.SILU)
def _silu(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Mul", [p.x(node), p.op(node, "Sigmoid", [p.x(node)], "sigmoid")])


@emits(Op.MISH)
def _mish(p: OnnxPrinter, node: NodeBase) -> None:
    """x * tanh(softplus(x))."""
    softplus = p.op(node, "Softplus", [p.x(node)], "softplus")
    p.out(node, "Mul", [p.x(node), p.op(node, "Tanh", [softplus], "tanh")])


@emits(Op.GELU)
def _gelu(p: OnnxPrinter, node: NodeBase) -> None:
    """Exact: x * 0.5 * (1 + erf(x / sqrt 2)); tanh: x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    x = p.x(node)
    if node.attrs.approximate == "tanh":  # type: ignore[attr-defined]
        cube = p.op(node, "Mul", [p.op(node, "Mul", [x, x], "square"), x], "cube")
        inner = p.op(node, "Add", [x, p.op(node, "Mul", [cube, p.scalar(node, "c", 0.044715)], "cube_c")], "inner")
        curve = p.op(node, "Tanh", [p.op(node, "Mul", [inner, p.scalar(node, "k", math.sqrt(2.0 / math.pi))], "scaled")], "tanh")
    else:
        curve = p.op(node, "Erf", [p.op(node, "Mul", [x, p.scalar(node, "rsqrt2", 1.0 / math.sqrt(2.0))], "scaled")], "erf")
    one_plus = p.op(node, "Add", [curve, p.scalar(node, "one", 1.0)], "one_plus")
    half_x = p.op(node, "Mul", [x, p.scalar(node, "half", 0.5)], "half_x")
    p.out(node, "Mul", [half_x, one_plus])


@emits(Op.SOFTPLUS)
def _softplus(p: OnnxPrinter, node: NodeBase) -> None:
    """torch: log(1 + exp(beta x)) / beta, and x itself where beta x > threshold."""
    attrs: A.SoftplusAttrs = node.attrs  # type: ignore[assignment]
    x = p.x(node)
    if attrs.beta == 1.0 and attrs.threshold >= 20.0:  # the linear region differs by < exp(-20)
        p.out(node, "Softplus", [x])
        return
    beta = p.scalar(node, "beta", attrs.beta)
    bx = p.op(node, "Mul", [x, beta], "beta_x")
    soft = p.op(node, "Div", [p.op(node, "Softplus", [bx], "softplus"), beta], "soft")
    linear = p.op(node, "Greater", [bx, p.scalar(node, "threshold", attrs.threshold)], "linear")
    p.out(node, "Where", [linear, x, soft])


_BINARY = {Op.ADD: "Add", Op.SUB: "Sub", Op.MUL: "Mul", Op.DIV: "Div"}


@emits(*_BINARY)
def _binary(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.BinaryAttrs = node.attrs  # type: ignore[assignment]
    op_type = _BINARY[node.op]
    if attrs.scalar is None:
        p.out(node, op_type, [p.x(node, 0), p.x(node, 1)])
        return
    scalar = p.scalar(node, "scalar", attrs.scalar)
    p.out(node, op_type, [scalar, p.x(node)] if attrs.reverse else [p.x(node), scalar])


@emits(Op.CAST)
def _cast(p: OnnxPrinter, node: NodeBase) -> None:
    from asgnas_ir.passes.codegen._onnx_printer import _data_type

    p.out(node, "Cast", [p.x(node)], to=_data_type(p.ir, node.attrs.dtype))  # type: ignore[attr-defined]
