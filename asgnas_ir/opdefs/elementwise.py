"""Elementwise unary and binary ops.

Binary ops broadcast like numpy. Operands aligned on the output's channel axis with the full
channel count are tied channel for channel (a residual add, a squeeze-excitation gate). A
per-channel constant operand (layer scale, a bias vector) is sliced with the channels. An operand
that broadcasts a single channel against many (spatial attention maps) keeps that one channel
pinned: removing it would change the shape of what it multiplies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from asgnas_ir.ir.graph import Value
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs._opdef import (
    CoupleCtx,
    InferCtx,
    OpDef,
    ZeroRule,
    broadcast_shapes,
    elementwise_flops,
    no_flops,
    passthrough,
    register,
    same_as_input,
)

if TYPE_CHECKING:
    from asgnas_ir.ir.graph import Graph
    from asgnas_ir.ir.node import NodeBase


def _clamp_keeps_zero(node: NodeBase, graph: Graph) -> bool:
    """clamp(0) == 0 when 0 lies inside [min, max] (relu6 does; a clamp with min > 0 does not)."""
    low, high = node.attrs.min, node.attrs.max  # type: ignore[attr-defined]
    return (low is None or low <= 0) and (high is None or high >= 0)


def _pow_keeps_zero(node: NodeBase, graph: Graph) -> bool:
    return node.attrs.exponent > 0  # type: ignore[attr-defined]  # 0 ** 0 == 1; 0 ** -1 is infinite


# Decided for every unary op: f(0) == 0? (sigmoid(0) = hardsigmoid(0) = 0.5, softplus(0) = log 2,
# exp(0) = 1; gelu, silu, mish, hardswish are x times something finite; elu is alpha (e^0 - 1) = 0.)
_ZERO_PRESERVING: dict[Op, bool | ZeroRule] = {
    Op.RELU: True, Op.LEAKY_RELU: True, Op.CLAMP: _clamp_keeps_zero, Op.GELU: True, Op.SILU: True,
    Op.SIGMOID: False, Op.TANH: True, Op.HARDSWISH: True, Op.HARDSIGMOID: False, Op.ELU: True,
    Op.SOFTPLUS: False, Op.MISH: True, Op.NEG: True, Op.EXP: False, Op.SQRT: True,
    Op.IDENTITY: True, Op.DROPOUT: True,
}

for _op, _zero in _ZERO_PRESERVING.items():
    register(OpDef(_op, same_as_input, passthrough, elementwise_flops, "accessory", zero_preserving=_zero))


def _couple_pow(ctx: CoupleCtx) -> None:
    if ctx.node.attrs.exponent < 0:  # type: ignore[attr-defined]
        # 0 ** -e is infinite, and zero times infinity is NaN even behind a zeroed weight
        ctx.pin(ctx.labels(ctx.node.inputs[0]), "negative power (infinite at zero)")
    passthrough(ctx)


register(OpDef(Op.POW, same_as_input, _couple_pow, elementwise_flops, "accessory", zero_preserving=_pow_keeps_zero))


def _couple_log(ctx: CoupleCtx) -> None:
    # log(0) is -inf, which a zeroed weight downstream turns into NaN (0 * -inf) rather than zero
    ctx.pin(ctx.labels(ctx.node.inputs[0]), "log (infinite at zero)")
    passthrough(ctx)


register(OpDef(Op.LOG, same_as_input, _couple_log, elementwise_flops, "accessory", zero_preserving=False))


def _infer_binary(ctx: InferCtx) -> list[Value]:
    has_scalar = ctx.attrs.scalar is not None
    ctx.expect_inputs(1 if has_scalar else 2)
    shapes = [v.shape for v in ctx.inputs]
    shape = broadcast_shapes(shapes)
    if shape is None:
        ctx.fail(f"{ctx.node.op.value} operands of shapes {[list(s) for s in shapes]} do not broadcast")
    channel_axis = None
    for value in ctx.inputs:
        if value.channel_axis is None:
            continue
        aligned = value.channel_axis + len(shape) - len(value.shape)  # type: ignore[arg-type]
        if value.shape[value.channel_axis] == shape[aligned]:  # type: ignore[index]
            channel_axis = aligned
            break
    if channel_axis is None and len(shape) >= 2:  # type: ignore[arg-type]
        # Only constants meet here; pick the layout's axis so later ops still know their channels.
        channel_axis = next((v.channel_axis + len(shape) - len(v.shape) for v in ctx.inputs if v.channel_axis is not None), None)  # type: ignore[arg-type, operator]
    dtype = ctx.inputs[0].dtype
    return [Value(shape=shape, dtype=dtype, channel_axis=channel_axis)]  # type: ignore[arg-type]


def _is_constant(graph: Graph, value: str) -> bool:
    producer = graph.producer(value)
    return producer is not None and producer.op is Op.CONSTANT


def _binary_keeps_zero(node: NodeBase, graph: Graph) -> bool:
    """With every data operand zero: a product is zero; a sum or difference is zero unless a
    constant operand or a non-zero scalar shifts it; a quotient only when it divides by a non-zero
    scalar (a divisor that can be zero gives NaN)."""
    scalar = node.attrs.scalar  # type: ignore[attr-defined]
    if node.op is Op.MUL:
        return True
    if node.op is Op.DIV:
        return scalar is not None and scalar != 0 and not node.attrs.reverse  # type: ignore[attr-defined]
    return (scalar is None or scalar == 0) and not any(_is_constant(graph, name) for name in node.inputs)


def _couple_binary(ctx: CoupleCtx) -> None:
    node = ctx.node
    out = ctx.graph.values[node.outputs[0]]
    axis = out.channel_axis
    if axis is None:
        for name in node.inputs:
            ctx.pin(ctx.labels(name), "binary op result has no channel axis")
        ctx.set_labels(node.outputs[0], None)
        return
    channels = out.shape[axis]
    out_labels = None
    scalar, reverse = node.attrs.scalar, node.attrs.reverse  # type: ignore[attr-defined]
    # What each operand is once the group is zeroed, for NOTE: [Exactly zero where summed]: the zero
    # flags of a channel operand, True for a zeroed per-channel param, False for anything else.
    terms: list[np.ndarray | bool] = [] if scalar is None else [scalar == 0]
    numerator: np.ndarray | bool = scalar == 0 if scalar is not None and reverse else False
    # Per-channel operands that carry no labels: a param to slice with the channels (name, axis,
    # divides), or anything else (None), which pins them. Resolved once the output labels are known.
    per_channel: list[tuple[str | None, int, bool]] = []
    for position, name in enumerate(node.inputs):
        value = ctx.graph.values[name]
        labels = ctx.labels(name)
        divides = node.op is Op.DIV and (position == 1 or reverse)
        if divides and labels is not None:
            # A zeroed divisor gives 0/0 = NaN, which no zeroed consumer column can cancel.
            ctx.pin(labels, "divisor channels")
        aligned = axis - (len(out.shape) - len(value.shape))
        size = value.shape[aligned] if aligned >= 0 else 1
        if labels is not None and value.channel_axis == aligned and size == channels:
            if out_labels is None:
                out_labels = labels
            else:
                ctx.tie(out_labels, labels)
            term: np.ndarray | bool = ctx.zeros(name)  # type: ignore[assignment]
        else:
            if labels is not None:
                ctx.pin(labels, "channels broadcast against a different channel count")
            term = False
            if size == channels and channels > 1:
                param = ctx.constant_param(name)
                per_channel.append((param, aligned, divides))
                term = param is not None and not divides and ctx.zeroable(param)
        if not divides:
            terms.append(term)
            numerator = term if node.op is Op.DIV else numerator
    if out_labels is None:
        out_labels = ctx.fresh(channels)
        ctx.pin(out_labels, "binary op of operands without channel labels")
    for param, aligned, divides in per_channel:
        if param is None:
            ctx.pin(out_labels, "per-channel operand that is neither a channel value nor a param")
        else:
            # A divisor is sliced with its channels but not zeroed: x / 0 is not a removed channel.
            ctx.param_slice_named(param, aligned, out_labels, "stat" if divides else "out")
    ctx.set_labels(node.outputs[0], out_labels)
    flags = [np.broadcast_to(np.asarray(t, dtype=bool), (channels,)) for t in terms]
    if node.op is Op.MUL:
        zeros = np.logical_or.reduce(flags) if flags else np.zeros(channels, dtype=bool)
    elif node.op is Op.DIV:
        zeros = np.broadcast_to(np.asarray(numerator, dtype=bool), (channels,))
    else:
        zeros = np.logical_and.reduce(flags) if flags else np.zeros(channels, dtype=bool)
    ctx.set_zeros(node.outputs[0], np.array(zeros, dtype=bool))


for _op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV):
    register(OpDef(_op, _infer_binary, _couple_binary, elementwise_flops, "joint", zero_preserving=_binary_keeps_zero))


def _infer_cast(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    src = ctx.inputs[0]
    dtype = ctx.attrs.dtype
    # a dtype policy's rounding; integer/bool values the model computes with as floats (position ids
    # into a rotary table, an attention mask made additive); whole numbers computed as floats used as
    # indices again (positions counted from a mask, ONNX frontend NOTE: [Integers held as floats])
    numeric = ("float", "bfloat", "int", "uint")
    if not dtype.startswith(numeric) or not src.dtype.startswith((*numeric, "bool")):
        ctx.fail(f"cast from {src.dtype} to {dtype}: only casts between numeric dtypes are supported")
    return [Value(shape=src.shape, dtype=dtype, channel_axis=src.channel_axis)]


# a cast rounds each element alone: channels flow through, and a zero stays zero
register(OpDef(Op.CAST, _infer_cast, passthrough, no_flops, "accessory", zero_preserving=True))
