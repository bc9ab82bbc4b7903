"""Data movement (concat, split, slice, reshape, flatten, permute, pad), reductions and leaves.

Reshape and flatten are handled by one rule: follow each input channel through the row-major
reshape (`reshape_channel_map`). Flatten of NCHW then maps channel c to its H*W block of features,
and a reshape that spreads channels over several axes pins them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from asgnas_ir.errors import IRValidationError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Value
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs._opdef import (
    CoupleCtx,
    InferCtx,
    OpDef,
    ResizeCtx,
    elementwise_flops,
    in_numel,
    no_flops,
    passthrough,
    register,
    require_zero,
    reshape_channel_map,
)

if TYPE_CHECKING:
    from asgnas_ir.ir.graph import Graph
    from asgnas_ir.ir.node import NodeBase

# ---- concat / split / slice ------------------------------------------------------------------


def _infer_concat(ctx: InferCtx) -> list[Value]:
    if not ctx.inputs:
        ctx.fail("concat needs at least one input")
    axis = ctx.attrs.axis
    first = ctx.inputs[0]
    for value in ctx.inputs[1:]:
        if len(value.shape) != len(first.shape) or any(
            a != b for i, (a, b) in enumerate(zip(value.shape, first.shape, strict=True)) if i != axis
        ):
            ctx.fail(f"concat on axis {axis}: shapes {[list(v.shape) for v in ctx.inputs]} differ off that axis")
    shape = list(first.shape)
    shape[axis] = sum(v.shape[axis] for v in ctx.inputs)
    channel_axis = next((v.channel_axis for v in ctx.inputs if v.channel_axis is not None), None)
    return [Value(shape=tuple(shape), dtype=first.dtype, channel_axis=channel_axis)]


def _couple_concat(ctx: CoupleCtx) -> None:
    node = ctx.node
    out = ctx.graph.values[node.outputs[0]]
    parts, zeros = [], []
    for name in node.inputs:
        labels, flags = ctx.labels(name), ctx.zeros(name)
        if labels is None and out.channel_axis is not None:
            labels = ctx.fresh(ctx.graph.values[name].shape[out.channel_axis])
            ctx.pin(labels, "concat operand without channel labels")
            flags = np.zeros(len(labels), dtype=bool)
        parts.append(labels)
        zeros.append(flags)
    if out.channel_axis is None:
        for labels in parts:
            ctx.pin(labels, "concat result has no channel axis")
        ctx.set_labels(node.outputs[0], None)
    elif node.attrs.axis == out.channel_axis:  # type: ignore[attr-defined]
        ctx.set_labels(node.outputs[0], np.concatenate(parts))
        ctx.set_zeros(node.outputs[0], np.concatenate(zeros))
    else:
        for labels in parts[1:]:
            ctx.tie(parts[0], labels)
        ctx.set_labels(node.outputs[0], parts[0])
        ctx.set_zeros(node.outputs[0], np.logical_and.reduce(zeros))  # channel c is zero in every piece


# Pieces of zeros side by side are zeros.
register(OpDef(Op.CONCAT, _infer_concat, _couple_concat, no_flops, "joint", zero_preserving=True))


def _infer_split(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    attrs: A.SplitAttrs = ctx.attrs
    if sum(attrs.sizes) != x.shape[attrs.axis]:
        ctx.fail(f"split sizes {list(attrs.sizes)} do not add up to axis {attrs.axis} of shape {list(x.shape)}")
    if len(attrs.sizes) != len(ctx.node.outputs):
        ctx.fail(f"split into {len(attrs.sizes)} pieces but the node has {len(ctx.node.outputs)} outputs")
    outs = []
    for size in attrs.sizes:
        shape = list(x.shape)
        shape[attrs.axis] = size
        outs.append(Value(shape=tuple(shape), dtype=x.dtype, channel_axis=x.channel_axis))
    return outs


def _couple_split(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    labels = ctx.labels(node.inputs[0])
    attrs: A.SplitAttrs = node.attrs  # type: ignore[assignment]
    if labels is None or attrs.axis != x.channel_axis:
        passthrough(ctx)
        return
    offsets = np.cumsum((0, *attrs.sizes))
    zeros = ctx.zeros(node.inputs[0])
    for i, out in enumerate(node.outputs):
        ctx.set_labels(out, labels[offsets[i] : offsets[i + 1]])
        ctx.set_zeros(out, zeros[offsets[i] : offsets[i + 1]])  # type: ignore[index]


def _resize_split(ctx: ResizeCtx) -> A.Attrs:
    attrs: A.SplitAttrs = ctx.node.attrs  # type: ignore[assignment]
    return attrs.model_copy(update={"sizes": tuple(shape[attrs.axis] for shape in ctx.new_output_shapes)})


register(OpDef(Op.SPLIT, _infer_split, _couple_split, no_flops, "other", _resize_split, zero_preserving=True))


def _infer_slice(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    attrs: A.SliceAttrs = ctx.attrs
    size = len(range(attrs.start, min(attrs.stop, x.shape[attrs.axis]), attrs.step))
    if size <= 0:
        ctx.fail(f"slice [{attrs.start}:{attrs.stop}:{attrs.step}] of axis {attrs.axis} (size {x.shape[attrs.axis]}) is empty")
    shape = list(x.shape)
    shape[attrs.axis] = size
    return [Value(shape=tuple(shape), dtype=x.dtype, channel_axis=x.channel_axis)]


def _couple_slice(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    labels = ctx.labels(node.inputs[0])
    attrs: A.SliceAttrs = node.attrs  # type: ignore[assignment]
    if labels is None or attrs.axis != x.channel_axis:
        passthrough(ctx)
        return
    if attrs.step != 1:
        # Removing channels inside a strided run leaves survivors no step can pick (of 0, 2, 4, 6
        # without 2, the new positions 0, 3, 5), so every channel of the input stays.
        ctx.pin(labels, "strided slice of the channel axis")
    ctx.set_labels(node.outputs[0], labels[attrs.start : attrs.stop : attrs.step])
    ctx.set_zeros(node.outputs[0], ctx.zeros(node.inputs[0])[attrs.start : attrs.stop : attrs.step])  # type: ignore[index]


def _resize_slice(ctx: ResizeCtx) -> A.Attrs:
    """The surviving picked channels at their new positions, as a start, stop and step."""
    attrs: A.SliceAttrs = ctx.node.attrs  # type: ignore[assignment]
    keep = ctx.input_keep[0]
    if keep is None or ctx.old_inputs[0].channel_axis != attrs.axis:
        return attrs
    picked = np.arange(attrs.start, min(attrs.stop, len(keep)), attrs.step)
    survivors = (np.cumsum(keep) - 1)[picked[keep[picked]]]
    if len(survivors) != ctx.new_output_shapes[0][attrs.axis] or not len(survivors):
        raise IRValidationError(
            f"slice [{attrs.start}:{attrs.stop}:{attrs.step}] keeps {len(survivors)} channels but its output "
            f"should have {ctx.new_output_shapes[0][attrs.axis]} (bug in the slice coupling rule)",
            node=ctx.node.id, source=ctx.node.source,
        )
    steps = np.diff(survivors)
    step = int(steps[0]) if len(steps) else 1
    if (steps != step).any():
        raise IRValidationError(
            f"slice [{attrs.start}:{attrs.stop}:{attrs.step}]: the surviving channels {survivors.tolist()} are not "
            "evenly spaced (bug in the slice coupling rule, which pins strided slices)",
            node=ctx.node.id, source=ctx.node.source,
        )
    start = int(survivors[0])
    return attrs.model_copy(update={"start": start, "stop": int(survivors[-1]) + 1, "step": step})


# A slice of zeros is zeros.
register(OpDef(Op.SLICE, _infer_slice, _couple_slice, no_flops, "accessory", _resize_slice, zero_preserving=True))

# ---- reshape / flatten / permute / pad --------------------------------------------------------


def _with_reshaped_channels(ctx: InferCtx, shape: tuple[int, ...]) -> list[Value]:
    x = ctx.inputs[0]
    channel_axis = None
    if x.channel_axis is not None:
        stored = ctx.graph.values.get(ctx.node.outputs[0])
        prefer = stored.channel_axis if stored is not None and stored.shape == shape else None
        channel_axis, _ = reshape_channel_map(x.shape, x.channel_axis, shape, prefer)
    return [Value(shape=shape, dtype=x.dtype, channel_axis=channel_axis)]


def _infer_reshape(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    target = list(ctx.attrs.shape)
    total = math.prod(x.shape)
    if target.count(-1) > 1:
        ctx.fail(f"reshape target {target} has more than one -1")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        if known == 0 or total % known:
            ctx.fail(f"cannot reshape {list(x.shape)} into {target}")
        target[target.index(-1)] = total // known
    if math.prod(target) != total:
        ctx.fail(f"cannot reshape {list(x.shape)} ({total} elements) into {target}")
    return _with_reshaped_channels(ctx, tuple(target))


def _infer_flatten(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    start, end = ctx.attrs.start_axis, ctx.attrs.end_axis
    shape = (*x.shape[:start], math.prod(x.shape[start : end + 1]), *x.shape[end + 1 :])
    return _with_reshaped_channels(ctx, shape)


def _couple_reshape(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    out = ctx.graph.values[node.outputs[0]]
    labels = ctx.labels(node.inputs[0])
    if labels is None:
        ctx.set_labels(node.outputs[0], None)
        return
    axis, ties = reshape_channel_map(x.shape, x.channel_axis, out.shape, out.channel_axis)  # type: ignore[arg-type]
    if axis is None or axis != out.channel_axis:
        ctx.pin(labels, "reshape spreads channels over several axes")
        ctx.set_labels(node.outputs[0], None if out.channel_axis is None else ctx.fresh(out.shape[out.channel_axis]))
        if out.channel_axis is not None:
            ctx.pin(ctx.labels(node.outputs[0]), "reshape output")
        return
    for row in ties if ties.shape[1] > 1 else ():  # type: ignore[union-attr]
        ctx.tie_all(labels[row])  # a split channel axis: the channels at one position go as one
    ctx.set_labels(node.outputs[0], labels[ties[:, 0]])  # type: ignore[index]
    ctx.set_zeros(node.outputs[0], ctx.zeros(node.inputs[0])[ties].all(axis=1))  # type: ignore[index]


def _resize_reshape(ctx: ResizeCtx) -> A.Attrs:
    attrs: A.ReshapeAttrs = ctx.node.attrs  # type: ignore[assignment]
    new = ctx.new_output_shapes[0]
    return attrs.model_copy(update={"shape": tuple(-1 if d == -1 else n for d, n in zip(attrs.shape, new, strict=True))})


# Moving elements around moves zeros with them (reshape, flatten, permute).
register(OpDef(Op.RESHAPE, _infer_reshape, _couple_reshape, no_flops, "other", _resize_reshape, zero_preserving=True))
register(OpDef(Op.FLATTEN, _infer_flatten, _couple_reshape, no_flops, "other", zero_preserving=True))


def _infer_permute(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    perm = ctx.attrs.perm
    if sorted(perm) != list(range(len(x.shape))):
        ctx.fail(f"permute order {list(perm)} is not a permutation of {len(x.shape)} axes")
    channel_axis = None if x.channel_axis is None else perm.index(x.channel_axis)
    return [Value(shape=tuple(x.shape[p] for p in perm), dtype=x.dtype, channel_axis=channel_axis)]


register(OpDef(Op.PERMUTE, _infer_permute, passthrough, no_flops, "other", zero_preserving=True))


def _infer_pad(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    pads = ctx.attrs.pads
    if len(pads) != len(x.shape):
        ctx.fail(f"pad has {len(pads)} (before, after) pairs for a rank-{len(x.shape)} input")
    shape = tuple(d + before + after for d, (before, after) in zip(x.shape, pads, strict=True))
    return [Value(shape=shape, dtype=x.dtype, channel_axis=x.channel_axis)]


def _couple_pad(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    if x.channel_axis is not None and any(node.attrs.pads[x.channel_axis]):  # type: ignore[attr-defined]
        ctx.pin(ctx.labels(node.inputs[0]), "padding along the channel axis")
        ctx.set_labels(node.outputs[0], ctx.fresh(ctx.graph.values[node.outputs[0]].shape[x.channel_axis]))
        ctx.pin(ctx.labels(node.outputs[0]), "padded channels")
        return
    passthrough(ctx)


def _pad_keeps_zero(node: NodeBase, graph: Graph) -> bool:
    """Zero fill keeps zeros zero. Reflect, replicate and circular modes copy values of the input
    itself, so an all-zero input pads to zeros too (a channel at a time: padding along the channel
    axis is pinned)."""
    attrs: A.PadAttrs = node.attrs  # type: ignore[assignment]
    return attrs.mode != "constant" or attrs.value == 0


register(OpDef(Op.PAD, _infer_pad, _couple_pad, no_flops, "accessory", zero_preserving=_pad_keeps_zero))

# ---- reductions ------------------------------------------------------------------------------


def _infer_reduce(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    axes: tuple[int, ...] = ctx.attrs.axes
    if ctx.attrs.keepdim:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        channel_axis = x.channel_axis
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        channel_axis = None
        if x.channel_axis is not None and x.channel_axis not in axes:
            channel_axis = x.channel_axis - sum(1 for a in axes if a < x.channel_axis)
    if x.channel_axis in axes:
        channel_axis = None
    return [Value(shape=shape, dtype=x.dtype, channel_axis=channel_axis)]


def _couple_reduce(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    if x.channel_axis in node.attrs.axes:  # type: ignore[attr-defined]
        if node.op is Op.SUM:
            # a sum without weights: a removed channel drops out only where it is exactly zero
            zeros = ctx.zeros(node.inputs[0])
            require_zero(ctx, [(ctx.labels(node.inputs[0]), zeros)], "sum over channels that are not zero once removed")
        else:
            ctx.pin(ctx.labels(node.inputs[0]), f"{node.op.value} over the channel axis (divides by the channel count)")
        ctx.set_labels(node.outputs[0], None)
        return
    passthrough(ctx)


# Sums and means of zeros are zero.
register(OpDef(Op.MEAN, _infer_reduce, _couple_reduce, lambda n, g: in_numel(n, g), "accessory", zero_preserving=True))
register(OpDef(Op.SUM, _infer_reduce, _couple_reduce, lambda n, g: in_numel(n, g), "accessory", zero_preserving=True))


def _infer_softmax(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    if ctx.attrs.axis >= len(x.shape):
        ctx.fail(f"softmax axis {ctx.attrs.axis} out of range for shape {list(x.shape)}")
    return [Value(shape=x.shape, dtype=x.dtype, channel_axis=x.channel_axis)]


def _couple_softmax(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    if node.attrs.axis == x.channel_axis:  # type: ignore[attr-defined]
        ctx.pin(ctx.labels(node.inputs[0]), "softmax over the channel axis")
    passthrough(ctx)


# softmax of zeros is uniform, 1/n.
register(OpDef(Op.SOFTMAX, _infer_softmax, _couple_softmax, lambda n, g: 3 * in_numel(n, g), "accessory", zero_preserving=False))

# ---- leaves ----------------------------------------------------------------------------------


def _infer_constant(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(0)
    param = ctx.require_param("value")
    return [Value(shape=param.shape, dtype=param.dtype, channel_axis=None)]


def _couple_none(ctx: CoupleCtx) -> None:
    for out in ctx.node.outputs:
        ctx.set_labels(out, None)


# Its output is its stored value whatever comes in.
register(OpDef(Op.CONSTANT, _infer_constant, _couple_none, no_flops, "other", zero_preserving=False))


def _infer_opaque(ctx: InferCtx) -> list[Value]:
    # The IR cannot know an opaque op's shape rule; the frontend recorded what the framework saw.
    return [ctx.graph.values[name] for name in ctx.node.outputs]


def _couple_opaque(ctx: CoupleCtx) -> None:
    node = ctx.node
    for name in node.inputs:
        ctx.pin(ctx.labels(name), f"input of opaque op '{node.attrs.target}'")  # type: ignore[attr-defined]
    for name in node.outputs:
        value = ctx.graph.values[name]
        labels = None if value.channel_axis is None else ctx.fresh(value.shape[value.channel_axis])
        ctx.pin(labels, "output of an opaque op")
        ctx.set_labels(name, labels)


# The IR cannot know what an opaque op does to zeros.
register(OpDef(Op.OPAQUE, _infer_opaque, _couple_opaque, elementwise_flops, "other", zero_preserving=False))
