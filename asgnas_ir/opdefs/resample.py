"""Resampling, periodic functions, running sums and the max reduction: ops real vision models use
between their layers.

- `resize` (torch's `F.interpolate` / `nn.Upsample`) resamples the axes it names, normally the
  spatial ones, one channel at a time, so channels pass through. Every output element is a weighted
  sum of input elements of its own channel (nearest: one of them), so an all-zero channel stays
  zero. Should a reshape have put the channels on a resized axis, they are pinned.
- `sin` / `cos` act elementwise; sin(0) = 0 but cos(0) = 1.
- `cumsum` sums along one axis. Along a spatial or token axis each channel keeps to itself; along the
  channel axis it adds every earlier channel into a later one, which no channel removal can undo, so
  those channels are pinned.
- `max` reduces axes like `mean` and `sum`. Over other axes each channel keeps to itself; over the
  channel axis a removed channel, even an exactly zero one, may have been the maximum (of negative
  values), so those channels are pinned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Value
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs._opdef import (
    CoupleCtx,
    InferCtx,
    OpDef,
    elementwise_flops,
    in_numel,
    no_zeros,
    out_numel,
    passthrough,
    register,
    same_as_input,
)
from asgnas_ir.opdefs.shape_ops import _infer_reduce

if TYPE_CHECKING:
    from asgnas_ir.ir.graph import Graph
    from asgnas_ir.ir.node import NodeBase


def _infer_resize(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    attrs: A.ResizeAttrs = ctx.attrs
    axes = list(attrs.axes)
    if not axes or axes != sorted(set(axes)) or axes[0] < 1 or axes[-1] >= len(x.shape):
        ctx.fail(f"resize axes {axes} must be distinct, ascending axes of shape {list(x.shape)} other than the batch axis 0")
    if len(attrs.size) != len(axes):
        ctx.fail(f"resize size {list(attrs.size)} does not name one size per resized axis {axes}")
    if attrs.scale is not None:
        if len(attrs.scale) != len(axes):
            ctx.fail(f"resize scale {list(attrs.scale)} does not name one factor per resized axis {axes}")
        expected = [int(x.shape[a] * s) for a, s in zip(axes, attrs.scale, strict=True)]
        if expected != list(attrs.size):
            ctx.fail(f"resize by {list(attrs.scale)} of axes {axes} of shape {list(x.shape)} gives sizes {expected}, not {list(attrs.size)}")
    if attrs.align_corners and attrs.mode == "nearest":
        ctx.fail("resize: align_corners applies to linear and cubic modes only")
    shape = list(x.shape)
    for axis, size in zip(axes, attrs.size, strict=True):
        if size < 1:
            ctx.fail(f"resize to size {size} on axis {axis}")
        shape[axis] = size
    return [Value(shape=tuple(shape), dtype=x.dtype, channel_axis=x.channel_axis)]


def _couple_resize(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    if x.channel_axis is None or x.channel_axis not in node.attrs.axes:  # type: ignore[attr-defined]
        passthrough(ctx)
        return
    # resampling the channel axis blends neighbouring channels into new ones: none can be removed
    ctx.pin(ctx.labels(node.inputs[0]), "resize along the channel axis")
    out = node.outputs[0]
    labels = ctx.fresh(ctx.graph.values[out].shape[x.channel_axis])
    ctx.pin(labels, "resize along the channel axis")
    ctx.set_labels(out, labels)
    ctx.set_zeros(out, no_zeros(ctx, out))


def _resize_flops(node: NodeBase, graph: Graph) -> int:
    """Nearest copies; linear blends 2 taps per spatial axis, cubic 4 (a multiply-add each)."""
    attrs: A.ResizeAttrs = node.attrs  # type: ignore[assignment]
    if attrs.mode == "nearest":
        return 0
    taps = (2 if attrs.mode == "linear" else 4) ** len(attrs.size)
    return 2 * taps * out_numel(node, graph)


# Each output element is a fixed weighted sum of its own channel's inputs: zero stays zero.
register(OpDef(Op.RESIZE, _infer_resize, _couple_resize, _resize_flops, "accessory", zero_preserving=True))

# sin(0) = 0; cos(0) = 1, so a removed channel's cosine is not zero.
register(OpDef(Op.SIN, same_as_input, passthrough, elementwise_flops, "accessory", zero_preserving=True))
register(OpDef(Op.COS, same_as_input, passthrough, elementwise_flops, "accessory", zero_preserving=False))


def _infer_cumsum(ctx: InferCtx) -> list[Value]:
    [value] = same_as_input(ctx)
    if ctx.attrs.axis >= len(value.shape):
        ctx.fail(f"cumsum axis {ctx.attrs.axis} is out of range for shape {list(value.shape)}")
    return [value]


def _couple_cumsum(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    passthrough(ctx)
    if node.attrs.axis == x.channel_axis:  # type: ignore[attr-defined]
        # channel j of the output holds channels 0..j of the input: removing one changes every later one
        ctx.pin(ctx.labels(node.inputs[0]), "cumsum along the channel axis adds channels together")
        ctx.set_zeros(node.outputs[0], no_zeros(ctx, node.outputs[0]))


# A running sum of zeros is zero.
register(OpDef(Op.CUMSUM, _infer_cumsum, _couple_cumsum, elementwise_flops, "accessory", zero_preserving=True))


def _couple_max(ctx: CoupleCtx) -> None:
    node = ctx.node
    x = ctx.graph.values[node.inputs[0]]
    if x.channel_axis in node.attrs.axes:  # type: ignore[attr-defined]
        ctx.pin(ctx.labels(node.inputs[0]), "max over the channel axis (a removed channel may be the maximum)")
        ctx.set_labels(node.outputs[0], None)
        return
    passthrough(ctx)


# The maximum of zeros is zero.
register(OpDef(Op.MAX, _infer_reduce, _couple_max, lambda n, g: in_numel(n, g), "accessory", zero_preserving=True))
