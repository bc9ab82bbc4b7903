"""ONNX frontend converters for elementwise ops (the `asgnas_ir.opdefs.elementwise` family).

Unary activations, Pow, Clip, HardSigmoid, Identity/Dropout and Cast; the four binary ops (a
constant scalar operand becomes an attribute); and the export patterns that are one IR op: exact
GELU written with Erf, SiLU as x * Sigmoid(x), and the NaN guard Where(IsNaN(x), 0, x). Split out
of `ops.py` so each file holds one op family; importing this module registers its converters in
`OPS`.
"""

from __future__ import annotations

import math
from typing import Any

import onnx

from asgnas_ir.frontends.onnx._ops_common import OPS, _scalar
from asgnas_ir.frontends.onnx.builder import FUSED, Builder, Const
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


def unary(op: Op, attrs_of=None):  # noqa: ANN001, ANN201
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        attrs = attrs_of(b, node) if attrs_of else None
        return b.emit(op, [b.tensor(node, 0)], attrs)

    convert.__doc__ = f"ONNX unary op lowered to {op.value}"
    return convert


OPS.add(["Relu"], unary(Op.RELU))
OPS.add(["Sigmoid"], unary(Op.SIGMOID))
OPS.add(["Tanh"], unary(Op.TANH))
OPS.add(["HardSwish"], unary(Op.HARDSWISH))
OPS.add(["Mish"], unary(Op.MISH))
OPS.add(["Neg"], unary(Op.NEG))
OPS.add(["Exp"], unary(Op.EXP))
OPS.add(["Sqrt"], unary(Op.SQRT))


@OPS.register("Pow")
def pow_(b: Builder, node: onnx.NodeProto) -> str:
    """Pow(X, Y) with a constant scalar exponent Y"""
    exponent = _scalar(b.const(node, 1))
    if exponent is None:
        raise b.fail("Pow is supported with a constant scalar exponent")
    return b.emit(Op.POW, [b.tensor(node, 0)], A.PowAttrs(exponent=float(exponent)))
OPS.add(["LeakyRelu"], unary(Op.LEAKY_RELU, lambda b, n: A.LeakyReluAttrs(negative_slope=float(b.attr(n, "alpha", 0.01)))))
OPS.add(["Elu"], unary(Op.ELU, lambda b, n: A.EluAttrs(alpha=float(b.attr(n, "alpha", 1.0)))))
OPS.add(["Softplus"], unary(Op.SOFTPLUS))
OPS.add(["Gelu"], unary(Op.GELU, lambda b, n: A.GeluAttrs(approximate=b.attr(n, "approximate", "none"))))


@OPS.register("Identity", "Dropout")
def identity(b: Builder, node: onnx.NodeProto) -> Any:
    """Identity(input) / Dropout(data, ratio?, training_mode?) in inference: no node, the output is the input"""
    x = b.tensor(node, 0)
    return [x, None] if len(node.output) > 1 else x


@OPS.register("Clip")
def clip(b: Builder, node: onnx.NodeProto) -> str:
    """Clip(input, min?, max?) (min/max were attributes before opset 11)"""
    if b.opset >= 11:
        low, high = _scalar(b.const(node, 1)), _scalar(b.const(node, 2))
        if (b.has_input(node, 1) and low is None) or (b.has_input(node, 2) and high is None):
            raise b.fail("Clip bounds must be constant scalars")
    else:
        low, high = b.attr(node, "min"), b.attr(node, "max")
    if low is None and high is None:
        return b.tensor(node, 0)
    if low == 0.0 and high is None:
        return b.emit(Op.RELU, [b.tensor(node, 0)])
    return b.emit(Op.CLAMP, [b.tensor(node, 0)], A.ClampAttrs(min=low, max=high))


@OPS.register("HardSigmoid")
def hard_sigmoid(b: Builder, node: onnx.NodeProto) -> str:
    """HardSigmoid(X) alpha=0.2, beta=0.5: max(0, min(1, alpha*x + beta))"""
    alpha, beta = float(b.attr(node, "alpha", 0.2)), float(b.attr(node, "beta", 0.5))
    x = b.tensor(node, 0)
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return b.emit(Op.HARDSIGMOID, [x])
    y = b.emit(Op.MUL, [x], A.BinaryAttrs(scalar=alpha), name=f"{node.output[0]}_scaled")
    y = b.emit(Op.ADD, [y], A.BinaryAttrs(scalar=beta), name=f"{node.output[0]}_shifted")
    return b.emit(Op.CLAMP, [y], A.ClampAttrs(min=0.0, max=1.0))


def _close(value: float | None, target: float) -> bool:
    return value is not None and math.isclose(value, target, rel_tol=1e-5)


@OPS.register("IsNaN")
def is_nan(b: Builder, node: onnx.NodeProto) -> Any:
    """IsNaN(x), supported as the NaN guard exporters put after attention softmax:
    Where(IsNaN(x), 0, x) is x for the finite values a lowered graph computes"""
    guard = b.only_consumer(node.output[0])
    x = node.input[0]
    if guard is None or guard.op_type != "Where" or guard.input[0] != node.output[0] or guard.input[2] != x:
        raise b.fail("IsNaN is supported only as the guard Where(IsNaN(x), 0, x)")
    if _scalar(b.const(guard, 1)) != 0.0:
        raise b.fail("IsNaN is supported only as the guard Where(IsNaN(x), 0, x)")
    b.fused.add(id(guard))
    b.env[guard.output[0]] = b.env[x]
    return FUSED


@OPS.register("Where")
def where(b: Builder, node: onnx.NodeProto) -> Any:
    """Where(condition, x, y) on run-time tensors: only as part of the IsNaN guard (see IsNaN)"""
    raise b.fail("Where on run-time tensors is supported only as the NaN guard Where(IsNaN(x), 0, x)")


@OPS.register("Erf")
def erf(b: Builder, node: onnx.NodeProto) -> str:
    """Erf(input), supported as part of exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))) in any association"""
    scaled = b.producers.get(node.input[0])
    x = None
    if scaled is not None and scaled.op_type in ("Div", "Mul") and b.is_tensor(scaled, 0):
        factor = _scalar(b.const(scaled, 1))
        if (scaled.op_type == "Div" and _close(factor, math.sqrt(2))) or (scaled.op_type == "Mul" and _close(factor, 1 / math.sqrt(2))):
            x = scaled.input[0]
    add = b.only_consumer(node.output[0])
    if x is None or add is None or add.op_type != "Add" or not _close(_scalar(b.env.get(add.input[1] if add.input[0] == node.output[0] else add.input[0])), 1.0):
        raise b.fail("a standalone Erf is not supported (only the exact-GELU pattern x*0.5*(1+erf(x/sqrt2)))")
    fused = [add]
    m1 = b.only_consumer(add.output[0])
    if m1 is None or m1.op_type != "Mul":
        raise b.fail("Erf outside the GELU pattern is not supported")
    other = m1.input[1] if m1.input[0] == add.output[0] else m1.input[0]
    fused.append(m1)
    half = b.producers.get(other)
    if other == x:  # (x * (1 + erf)) * 0.5
        m2 = b.only_consumer(m1.output[0])
        if m2 is None or m2.op_type != "Mul" or not any(_close(_scalar(b.env.get(i)), 0.5) for i in m2.input):
            raise b.fail("Erf outside the GELU pattern is not supported")
        fused.append(m2)
    elif _close(_scalar(b.env.get(other)), 0.5):  # x * (0.5 * (1 + erf))
        m2 = b.only_consumer(m1.output[0])
        if m2 is None or m2.op_type != "Mul" or x not in m2.input:
            raise b.fail("Erf outside the GELU pattern is not supported")
        fused.append(m2)
    elif half is None or half.op_type != "Mul" or x not in half.input or not any(_close(_scalar(b.env.get(i)), 0.5) for i in half.input):
        raise b.fail("Erf outside the GELU pattern is not supported")
    last = fused[-1].output[0]
    for item in fused:
        b.fused.add(id(item))
    out = b.emit(Op.GELU, [b.env[x]], A.GeluAttrs(approximate="none"), name=last)
    b.env[last] = out
    b.check_shape(last, out)
    return out


def binary(op: Op):  # noqa: ANN201
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        lhs, rhs = b.get(node.input[0]), b.get(node.input[1])
        if op == Op.MUL:
            silu = _silu(b, node)
            if silu is not None:
                return silu
        for tensor_first, const in ((True, rhs), (False, lhs)):
            scalar = _scalar(const) if isinstance(const, Const) and const.origin is None else None
            if scalar is not None:
                x = b.tensor(node, 0 if tensor_first else 1)
                shape = b.out_shape(node)
                if b.value(x).shape != shape:
                    break  # the scalar broadcasts the tensor up: keep it a tensor operand
                return b.emit(op, [x], A.BinaryAttrs(scalar=scalar, reverse=not tensor_first))
        return b.emit(op, [b.tensor(node, 0), b.tensor(node, 1)], A.BinaryAttrs())

    convert.__doc__ = f"ONNX binary op (numpy broadcasting) lowered to {op.value}"
    return convert


def _silu(b: Builder, node: onnx.NodeProto) -> str | None:
    """x * Sigmoid(x) is SiLU (torch exports nn.SiLU so at opsets without a Silu op)."""
    for i in (0, 1):
        producer = b.producers.get(node.input[i])
        x = node.input[1 - i]
        if producer is not None and producer.op_type == "Sigmoid" and producer.input[0] == x and isinstance(b.env.get(x), str):
            return b.emit(Op.SILU, [b.env[x]])
    return None


OPS.add(["Add"], binary(Op.ADD))
OPS.add(["Sub"], binary(Op.SUB))
OPS.add(["Mul"], binary(Op.MUL))
OPS.add(["Div"], binary(Op.DIV))


@OPS.register("Cast", "CastLike")
def cast(b: Builder, node: onnx.NodeProto) -> str:
    """Cast(input) to / CastLike(input, target_type): supported when the dtype does not change"""
    x = b.tensor(node, 0)
    found = b.types.get(node.output[0])
    if found is not None and found.dtype is not None and found.dtype != b.value(x).dtype:
        raise b.fail(f"{node.op_type} from {b.value(x).dtype} to {found.dtype} of a computed tensor is not supported")
    return x
