"""Elementwise unary and binary ops.

Binary ops broadcast like numpy. Operands aligned on the output's channel axis with the full
channel count are tied channel for channel (a residual add, a squeeze-excitation gate). A
per-channel constant operand (layer scale, a bias vector) is sliced with the channels. An operand
that broadcasts a single channel against many (spatial attention maps) keeps that one channel
pinned: removing it would change the shape of what it multiplies.
"""

from __future__ import annotations

from asgnas_ir.ir.graph import Value
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs._opdef import (
    CoupleCtx,
    InferCtx,
    OpDef,
    broadcast_shapes,
    elementwise_flops,
    passthrough,
    register,
    same_as_input,
)

# f(0) == 0 for these, so a zeroed channel stays zero through them.
_ZERO_PRESERVING = {
    Op.RELU: True, Op.LEAKY_RELU: True, Op.CLAMP: False, Op.GELU: True, Op.SILU: True,
    Op.SIGMOID: False, Op.TANH: True, Op.HARDSWISH: True, Op.HARDSIGMOID: False, Op.ELU: True,
    Op.SOFTPLUS: False, Op.MISH: True, Op.NEG: True, Op.EXP: False, Op.SQRT: True,
    Op.IDENTITY: True, Op.DROPOUT: True,
}

for _op, _zero in _ZERO_PRESERVING.items():
    register(OpDef(_op, same_as_input, passthrough, elementwise_flops, "accessory", zero_preserving=_zero))
# 0 ** e is 0 only for a positive exponent; the flag must hold for every instance, so no.
register(OpDef(Op.POW, same_as_input, passthrough, elementwise_flops, "accessory", zero_preserving=False))


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
    # Per-channel operands that carry no labels: a param to slice with the channels (name, axis),
    # or anything else (None), which pins them. Resolved once the output labels are known.
    per_channel: list[tuple[str | None, int]] = []
    for position, name in enumerate(node.inputs):
        value = ctx.graph.values[name]
        labels = ctx.labels(name)
        if node.op is Op.DIV and labels is not None and (position == 1 or node.attrs.reverse):  # type: ignore[attr-defined]
            # A zeroed divisor gives 0/0 = NaN, which no zeroed consumer column can cancel.
            ctx.pin(labels, "divisor channels")
        aligned = axis - (len(out.shape) - len(value.shape))
        size = value.shape[aligned] if aligned >= 0 else 1
        if labels is not None and value.channel_axis == aligned and size == channels:
            if out_labels is None:
                out_labels = labels
            else:
                ctx.tie(out_labels, labels)
            continue
        if labels is not None:
            ctx.pin(labels, "channels broadcast against a different channel count")
        if size == channels and channels > 1:
            per_channel.append((ctx.constant_param(name), aligned))
    if out_labels is None:
        out_labels = ctx.fresh(channels)
        ctx.pin(out_labels, "binary op of operands without channel labels")
    for param, aligned in per_channel:
        if param is None:
            ctx.pin(out_labels, "per-channel operand that is neither a channel value nor a param")
        else:
            ctx.param_slice_named(param, aligned, out_labels, "out")
    ctx.set_labels(node.outputs[0], out_labels)


for _op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV):
    register(OpDef(_op, _infer_binary, _couple_binary, elementwise_flops, "joint", zero_preserving=_op is not Op.DIV))
