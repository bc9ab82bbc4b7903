"""Convolutions and pooling.

Grouped convolution: input channels of group j feed only output channels of group j, so the two
are tied into one block and a group is removed whole (uniform group sizes are what the framework
layers can express). For a depthwise conv every group is one channel in and `multiplier` out.
"""

from __future__ import annotations

import math

import numpy as np

from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Value
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs._opdef import (
    CoupleCtx,
    InferCtx,
    OpDef,
    ResizeCtx,
    axis_letter,
    consume,
    has_param,
    in_numel,
    out_numel,
    passthrough,
    register,
    zeroed_by,
)


def _spatial_axes(rank: int, channels_last: bool) -> list[int]:
    return list(range(1, rank - 1)) if channels_last else list(range(2, rank))


def _channel_axis(rank: int, channels_last: bool) -> int:
    return rank - 1 if channels_last else 1


def _kernel(ctx: InferCtx, weight_axes_skip: str) -> tuple[int, ...]:
    weight = ctx.require_param("weight")
    return tuple(d for d, letter in zip(weight.shape, weight.axes or "", strict=False) if letter not in weight_axes_skip)


def _infer_conv(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    attrs: A.ConvAttrs = ctx.attrs
    x = ctx.inputs[0]
    weight = ctx.require_param("weight")
    o_axis, i_axis = axis_letter(weight, "O"), axis_letter(weight, "I")
    if o_axis is None or i_axis is None:
        ctx.fail(f"conv weight axes '{weight.axes}' must name O and I")
    c_axis = _channel_axis(len(x.shape), attrs.channels_last)
    in_channels = x.shape[c_axis]
    if in_channels != weight.shape[i_axis] * attrs.groups:
        ctx.fail(
            f"conv expects {weight.shape[i_axis] * attrs.groups} input channels "
            f"(weight {list(weight.shape)}, groups={attrs.groups}) but its input has {in_channels}"
        )
    kernel = _kernel(ctx, "OI")
    spatial = _spatial_axes(len(x.shape), attrs.channels_last)
    shape = list(x.shape)
    for i, axis in enumerate(spatial):
        before, after = attrs.padding[i]
        span = attrs.dilation[i] * (kernel[i] - 1) + 1
        shape[axis] = (x.shape[axis] + before + after - span) // attrs.stride[i] + 1
        if shape[axis] <= 0:
            ctx.fail(f"conv output size on axis {axis} is {shape[axis]} (input {x.shape[axis]}, kernel {kernel[i]})")
    shape[c_axis] = weight.shape[o_axis]
    return [Value(shape=tuple(shape), dtype=x.dtype, channel_axis=c_axis)]


def _couple_grouped(ctx: CoupleCtx, in_labels: np.ndarray | None, out_labels: np.ndarray, groups: int) -> None:
    """Tie the input and output channels of each group into one block."""
    if in_labels is None:
        ctx.pin(out_labels, "grouped conv on an input without channels")
        return
    # one row per group (its inputs, then its outputs), every row tied to its first label at once:
    # a depthwise conv has a group per channel, and a Python loop over them dominated labelling
    blocks = np.concatenate([in_labels.reshape(groups, -1), out_labels.reshape(groups, -1)], axis=1)
    ctx.tie(np.repeat(blocks[:, 0], blocks.shape[1] - 1), blocks[:, 1:].ravel())


def _elsewhere(ctx: CoupleCtx, channels_last: bool) -> bool:
    """Whether the IR's channels of the input lie on another axis than the one the conv reads as its
    channels (CoaT's conv over a stack of feature maps, a conv on a reshaped token grid): the conv then
    slides over them or sums them with others, so none can be removed; they are pinned."""
    x = ctx.graph.values[ctx.node.inputs[0]]
    labels = ctx.labels(ctx.node.inputs[0])
    if labels is None or x.channel_axis == _channel_axis(len(x.shape), channels_last):
        return False
    ctx.pin(labels, "conv reading its channels from another axis than the value's channel axis")
    return True


def _couple_conv(ctx: CoupleCtx) -> None:
    node = ctx.node
    attrs: A.ConvAttrs = node.attrs  # type: ignore[assignment]
    weight = ctx.graph.params[node.params["weight"]]
    o_axis, i_axis = axis_letter(weight, "O"), axis_letter(weight, "I")
    in_labels = ctx.labels(node.inputs[0])
    out_labels = ctx.fresh(weight.shape[o_axis])  # type: ignore[index]
    ctx.param_slice("weight", o_axis, out_labels, "out")  # type: ignore[arg-type]
    if "bias" in node.params:
        ctx.param_slice("bias", 0, out_labels, "out")
    if _elsewhere(ctx, attrs.channels_last):
        if attrs.groups > 1:
            ctx.pin(out_labels, "grouped conv reading its channels from another axis")
    elif attrs.groups == 1:
        consume(ctx, "weight", i_axis, node.inputs[0])  # type: ignore[arg-type]
    else:
        # a group's input channels meet only its own outputs, removed with them: nothing to require
        _couple_grouped(ctx, in_labels, out_labels, attrs.groups)
    ctx.set_labels(node.outputs[0], out_labels)
    ctx.set_zeros(node.outputs[0], np.full(len(out_labels), zeroed_by(ctx, "weight", "bias")))


def _conv_flops(node, graph) -> int:  # noqa: ANN001
    weight = graph.params[node.params["weight"]]
    per_output = 1
    for d, letter in zip(weight.shape, weight.axes or "", strict=False):
        if letter != "O":
            per_output *= d
    flops = 2 * out_numel(node, graph) * per_output
    if "bias" in node.params:
        flops += out_numel(node, graph)
    return flops


def _resize_groups(ctx: ResizeCtx) -> A.Attrs:
    """Whole groups were removed: the new group count follows from the surviving channels."""
    attrs = ctx.node.attrs
    groups = attrs.groups  # type: ignore[attr-defined]
    if groups == 1:
        return attrs
    out = ctx.old_outputs[0]
    axis = out.channel_axis
    old_out, new_out = out.shape[axis], ctx.new_output_shapes[0][axis]  # type: ignore[index]
    new_groups = new_out * groups // old_out
    return attrs.model_copy(update={"groups": new_groups})


# Without a bias a conv (any padding mode) maps 0 to 0; the bias is zeroed only as a group's param.
register(OpDef(Op.CONV, _infer_conv, _couple_conv, _conv_flops, "stem", _resize_groups, zero_preserving=has_param("bias")))


def _infer_conv_transpose(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    attrs: A.ConvTransposeAttrs = ctx.attrs
    x = ctx.inputs[0]
    weight = ctx.require_param("weight")
    o_axis, i_axis = axis_letter(weight, "O"), axis_letter(weight, "I")
    c_axis = _channel_axis(len(x.shape), attrs.channels_last)
    if x.shape[c_axis] != weight.shape[i_axis]:  # type: ignore[index]
        ctx.fail(f"conv_transpose expects {weight.shape[i_axis]} input channels, got {x.shape[c_axis]}")  # type: ignore[index]
    kernel = _kernel(ctx, "OI")
    shape = list(x.shape)
    for i, axis in enumerate(_spatial_axes(len(x.shape), attrs.channels_last)):
        shape[axis] = (
            (x.shape[axis] - 1) * attrs.stride[i]
            - 2 * attrs.padding[i]
            + attrs.dilation[i] * (kernel[i] - 1)
            + attrs.output_padding[i]
            + 1
        )
    shape[c_axis] = weight.shape[o_axis] * attrs.groups  # type: ignore[index]
    return [Value(shape=tuple(shape), dtype=x.dtype, channel_axis=c_axis)]


def _couple_conv_transpose(ctx: CoupleCtx) -> None:
    node = ctx.node
    attrs: A.ConvTransposeAttrs = node.attrs  # type: ignore[assignment]
    weight = ctx.graph.params[node.params["weight"]]
    o_axis, i_axis = axis_letter(weight, "O"), axis_letter(weight, "I")
    in_labels = ctx.labels(node.inputs[0])
    out_labels = ctx.fresh(weight.shape[o_axis] * attrs.groups)  # type: ignore[index]
    if "bias" in node.params:
        ctx.param_slice("bias", 0, out_labels, "out")
    if _elsewhere(ctx, attrs.channels_last):
        if attrs.groups == 1:
            ctx.param_slice("weight", o_axis, out_labels, "out")  # type: ignore[arg-type]
        else:
            ctx.pin(out_labels, "grouped conv reading its channels from another axis")
    elif attrs.groups == 1:
        consume(ctx, "weight", i_axis, node.inputs[0])  # type: ignore[arg-type]
        ctx.param_slice("weight", o_axis, out_labels, "out")  # type: ignore[arg-type]
    else:
        if in_labels is not None:  # the group's rows of the weight: zeroing them silences its outputs
            ctx.param_slice("weight", i_axis, in_labels, "in")  # type: ignore[arg-type]
        _couple_grouped(ctx, in_labels, out_labels, attrs.groups)
    ctx.set_labels(node.outputs[0], out_labels)
    ctx.set_zeros(node.outputs[0], np.full(len(out_labels), zeroed_by(ctx, "weight", "bias")))


def _conv_transpose_flops(node, graph) -> int:  # noqa: ANN001
    weight = graph.params[node.params["weight"]]
    per_input = 1
    for d, letter in zip(weight.shape, weight.axes or "", strict=False):
        if letter != "I":
            per_input *= d
    flops = 2 * in_numel(node, graph) * per_input
    if "bias" in node.params:
        flops += out_numel(node, graph)
    return flops


register(
    OpDef(
        Op.CONV_TRANSPOSE, _infer_conv_transpose, _couple_conv_transpose, _conv_transpose_flops, "stem", _resize_groups,
        zero_preserving=has_param("bias"),
    )
)


def _pool_out(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * pad - span
    out = (math.ceil(numerator / stride) if ceil_mode else numerator // stride) + 1
    # A window that would start entirely in the right padding is dropped (torch semantics).
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _infer_pool(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    attrs: A.PoolAttrs = ctx.attrs
    x = ctx.inputs[0]
    shape = list(x.shape)
    dilation = attrs.dilation or (1,) * len(attrs.kernel_size)
    for i, axis in enumerate(_spatial_axes(len(x.shape), attrs.channels_last)):
        shape[axis] = _pool_out(x.shape[axis], attrs.kernel_size[i], attrs.stride[i], attrs.padding[i], dilation[i], attrs.ceil_mode)
        if shape[axis] <= 0:
            ctx.fail(f"pooling output size on axis {axis} is {shape[axis]}")
    return [Value(shape=tuple(shape), dtype=x.dtype, channel_axis=x.channel_axis)]


def _pool_flops(node, graph) -> int:  # noqa: ANN001
    return out_numel(node, graph) * math.prod(node.attrs.kernel_size)


# A window of zeros pools to zero (max pool's padding never wins, avg pool's counts zeros).
register(OpDef(Op.MAX_POOL, _infer_pool, passthrough, _pool_flops, "accessory", zero_preserving=True))
register(OpDef(Op.AVG_POOL, _infer_pool, passthrough, _pool_flops, "accessory", zero_preserving=True))


def _infer_adaptive_pool(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    attrs: A.AdaptivePoolAttrs = ctx.attrs
    x = ctx.inputs[0]
    shape = list(x.shape)
    for i, axis in enumerate(_spatial_axes(len(x.shape), attrs.channels_last)):
        shape[axis] = attrs.output_size[i]
    return [Value(shape=tuple(shape), dtype=x.dtype, channel_axis=x.channel_axis)]


def _adaptive_pool_flops(node, graph) -> int:  # noqa: ANN001
    return in_numel(node, graph)


register(OpDef(Op.ADAPTIVE_AVG_POOL, _infer_adaptive_pool, passthrough, _adaptive_pool_flops, "accessory", zero_preserving=True))
register(OpDef(Op.ADAPTIVE_MAX_POOL, _infer_adaptive_pool, passthrough, _adaptive_pool_flops, "accessory", zero_preserving=True))
