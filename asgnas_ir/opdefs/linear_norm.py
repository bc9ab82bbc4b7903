"""Linear layers and normalisations.

A norm's affine params follow their channels. Batch and instance norm act per channel, so with
their scale and shift zeroed a channel's output is exactly zero. Group norm normalises blocks of
C/G channels together, so a block is removed whole. Layer norm over the channel axis mixes every
channel into every other through the mean and variance: its channels are pinned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    carry_zeros,
    channel_axis_for,
    consume,
    has_param,
    out_numel,
    passthrough,
    preserves_zero,
    register,
    same_as_input,
    zeroed_by,
)

if TYPE_CHECKING:
    from asgnas_ir.ir.graph import Graph
    from asgnas_ir.ir.node import NodeBase


def _infer_linear(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    weight = ctx.require_param("weight")
    o_axis, i_axis = axis_letter(weight, "O"), axis_letter(weight, "I")
    if o_axis is None or i_axis is None:
        ctx.fail(f"linear weight axes '{weight.axes}' must name O and I")
    if x.shape[-1] != weight.shape[i_axis]:  # type: ignore[index]
        ctx.fail(f"linear expects {weight.shape[i_axis]} input features, its input has {x.shape[-1]}")  # type: ignore[index]
    rank = len(x.shape)
    mixes_channels = x.channel_axis is None or x.channel_axis == rank - 1
    channel_axis = rank - 1 if mixes_channels else x.channel_axis
    shape = (*x.shape[:-1], weight.shape[o_axis])  # type: ignore[index]
    return [Value(shape=shape, dtype=x.dtype, channel_axis=channel_axis if rank >= 2 else None)]


def _couple_linear(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    weight = ctx.graph.params[node.params["weight"]]
    o_axis, i_axis = axis_letter(weight, "O"), axis_letter(weight, "I")
    in_labels = ctx.labels(node.inputs[0])
    if x.channel_axis is not None and x.channel_axis != len(x.shape) - 1:
        # The layer acts along a non-channel axis: channels pass through, features are not prunable.
        ctx.set_labels(node.outputs[0], in_labels)
        carry_zeros(ctx, node.outputs[0], ctx.zeros(node.inputs[0]))
        return
    out_labels = ctx.fresh(weight.shape[o_axis])  # type: ignore[index]
    ctx.param_slice("weight", o_axis, out_labels, "out")  # type: ignore[arg-type]
    if "bias" in node.params:
        ctx.param_slice("bias", 0, out_labels, "out")
    consume(ctx, "weight", i_axis, node.inputs[0])  # type: ignore[arg-type]
    ctx.set_labels(node.outputs[0], out_labels)
    ctx.set_zeros(node.outputs[0], np.full(len(out_labels), zeroed_by(ctx, "weight", "bias")))


def _linear_flops(node, graph) -> int:  # noqa: ANN001
    weight = graph.params[node.params["weight"]]
    in_features = weight.shape[axis_letter(weight, "I")]
    flops = 2 * out_numel(node, graph) * in_features
    if "bias" in node.params:
        flops += out_numel(node, graph)
    return flops


# Without a bias a linear layer maps 0 to 0. A bias zeroed with a group is the group's doing, not
# the op's: the flag describes the node with its params as they are.
register(OpDef(Op.LINEAR, _infer_linear, _couple_linear, _linear_flops, "stem", zero_preserving=has_param("bias")))


def _norm_zeros(ctx: CoupleCtx, zeros: np.ndarray | None) -> np.ndarray | None:
    """A norm's channel is exactly zero once zeroed when its scale (and shift, if any) are zeroable
    params of the group: (x - mean) / std * 0 + 0. Otherwise `zeros` (the input's flags, already
    reduced to what the norm keeps zero) if the node maps 0 to 0."""
    node = ctx.node
    labels = ctx.labels(node.inputs[0])
    if labels is None:
        return None
    if "weight" in node.params and zeroed_by(ctx, "weight", "bias"):
        return np.ones(len(labels), dtype=bool)
    if zeros is not None and preserves_zero(node, ctx.graph):
        return zeros
    return np.zeros(len(labels), dtype=bool)


def _couple_per_channel_norm(ctx: CoupleCtx) -> None:
    node = ctx.node
    labels = ctx.labels(node.inputs[0])
    if labels is not None:
        for role in ("weight", "bias"):
            if role in node.params:
                ctx.param_slice(role, 0, labels, "out")
        for role in ("running_mean", "running_var"):
            if role in node.params:
                ctx.param_slice(role, 0, labels, "stat")
    ctx.set_labels(node.outputs[0], labels)
    ctx.set_zeros(node.outputs[0], _norm_zeros(ctx, ctx.zeros(node.inputs[0])))


def _norm_flops(node, graph) -> int:  # noqa: ANN001
    return 2 * out_numel(node, graph)


def _infer_channel_norm(ctx: InferCtx) -> list[Value]:
    [value] = same_as_input(ctx)
    if value.channel_axis is None and len(value.shape) >= 2:
        # A reshape that scattered the channels (HaloNet folding its attention blocks back into an
        # image) leaves none marked; the norm says where its channels are: the layout's channel axis.
        # Its input carries no channel labels, so nothing here is pruned.
        value = Value(shape=value.shape, dtype=value.dtype, channel_axis=channel_axis_for(len(value.shape), ctx.graph.meta.layout))
    if value.channel_axis is None:
        ctx.fail(f"{ctx.node.op.value} needs an input with a channel axis, got shape {list(value.shape)}")
    channels = value.shape[value.channel_axis]  # type: ignore[index]
    for role in ("weight", "bias", "running_mean", "running_var"):
        param = ctx.param(role)
        if param is not None and param.shape != (channels,):
            ctx.fail(f"{ctx.node.op.value} param '{role}' has shape {list(param.shape)}, expected [{channels}]")
    return [value]


def _instance_norm_keeps_zero(node: NodeBase, graph: Graph) -> bool:
    """An all-zero channel normalised by its own statistics is 0 / sqrt(eps) = 0; running statistics
    or a shift move it."""
    return not {"bias", "running_mean"} & set(node.params)


# Batch norm in inference uses running statistics: (0 - mean) / std * gamma + beta is not 0.
register(OpDef(Op.BATCH_NORM, _infer_channel_norm, _couple_per_channel_norm, _norm_flops, "accessory", zero_preserving=False))
register(
    OpDef(
        Op.INSTANCE_NORM, _infer_channel_norm, _couple_per_channel_norm, _norm_flops, "accessory",
        zero_preserving=_instance_norm_keeps_zero,
    )
)


def _infer_group_norm(ctx: InferCtx) -> list[Value]:
    [value] = _infer_channel_norm(ctx)
    channels = value.shape[value.channel_axis]  # type: ignore[index]
    if channels % ctx.attrs.num_groups:
        ctx.fail(f"group_norm: {channels} channels do not split into {ctx.attrs.num_groups} groups")
    return [value]


def _couple_group_norm(ctx: CoupleCtx) -> None:
    node = ctx.node
    labels = ctx.labels(node.inputs[0])
    if labels is not None:
        groups = node.attrs.num_groups  # type: ignore[attr-defined]
        for block in np.split(labels, groups):
            ctx.tie_all(block)
    _couple_per_channel_norm(ctx)
    zeros = ctx.zeros(node.inputs[0])
    if zeros is not None:
        # a block's statistics are its own only when the whole block is zero
        blocks = np.repeat(zeros.reshape(node.attrs.num_groups, -1).all(axis=1), len(zeros) // node.attrs.num_groups)  # type: ignore[attr-defined]
        ctx.set_zeros(node.outputs[0], _norm_zeros(ctx, blocks))


def _resize_group_norm(ctx: ResizeCtx) -> A.Attrs:
    attrs: A.GroupNormAttrs = ctx.node.attrs  # type: ignore[assignment]
    axis = ctx.old_inputs[0].channel_axis
    old, new = ctx.old_inputs[0].shape[axis], ctx.new_input_shapes[0][axis]  # type: ignore[index]
    return attrs.model_copy(update={"num_groups": new * attrs.num_groups // old})


register(
    OpDef(
        Op.GROUP_NORM, _infer_group_norm, _couple_group_norm, _norm_flops, "accessory", _resize_group_norm,
        zero_preserving=has_param("bias"),  # an all-zero block normalises to 0 / sqrt(eps) = 0
    )
)


def _infer_layer_norm(ctx: InferCtx) -> list[Value]:
    [value] = same_as_input(ctx)
    axes: tuple[int, ...] = ctx.attrs.axes
    normalized = tuple(value.shape[a] for a in axes)
    for role in ("weight", "bias"):
        param = ctx.param(role)
        if param is not None and param.shape != normalized:
            ctx.fail(f"layer_norm param '{role}' has shape {list(param.shape)}, expected {list(normalized)}")
    return [value]


def _couple_layer_norm(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    if x.channel_axis in node.attrs.axes:  # type: ignore[attr-defined]
        ctx.pin(ctx.labels(node.inputs[0]), "layer norm over the channel axis mixes all channels")
    passthrough(ctx)


# Over its own axes an all-zero input normalises to 0 / sqrt(eps) = 0; its shift (not per channel,
# so never zeroed with a group) moves it.
register(OpDef(Op.LAYER_NORM, _infer_layer_norm, _couple_layer_norm, _norm_flops, "accessory", zero_preserving=has_param("bias")))
