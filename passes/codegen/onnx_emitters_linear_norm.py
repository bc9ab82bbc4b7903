"""codegen-onnx emitters for linear layers and normalisations (the `asgnas_ir.opdefs.linear_norm` family).

Linear as Gemm (2-d input) or MatMul (+ Add); batch norm as BatchNormalization with running
statistics or decomposed over this batch's statistics; instance norm; group norm as
InstanceNormalization over [N, G, -1] plus the per-channel affine; layer norm as
LayerNormalization over the trailing axes. Kept apart from `onnx_codegen` so each file holds one
op family; importing this module registers its emitters in `ONNX_EMITTERS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._onnx_printer import OnnxPrinter, emits

if TYPE_CHECKING:
    import onnx_ir as ir


@emits(Op.LINEAR)
def _linear(p: OnnxPrinter, node: NodeBase) -> None:
    """Gemm for [N, in] inputs; MatMul (+ Add) for any other rank. The weight is [out, in] ("OI")."""
    info = p.param_info(node, "weight")
    weight = p.param(node, "weight")
    transposed = (info.axes or "OI") == "OI"
    bias = p.param(node, "bias") if p.has(node, "bias") else None
    if len(p.shape(node.inputs[0])) == 2:
        p.out(node, "Gemm", [p.x(node), weight] + ([bias] if bias is not None else []), transB=1 if transposed else None)
        return
    if transposed:
        weight = p.op(node, "Transpose", [weight], "weight_t", perm=[1, 0])
    if bias is None:
        p.out(node, "MatMul", [p.x(node), weight])
        return
    product = p.op(node, "MatMul", [p.x(node), weight], "matmul")
    p.out(node, "Add", [product, bias])


def _channel_axis(p: OnnxPrinter, node: NodeBase) -> int:
    value = p.graph.values[node.inputs[0]]
    return 1 if value.channel_axis is None else value.channel_axis


def _per_channel(p: OnnxPrinter, node: NodeBase, role: str | None, fill: float, axis: int) -> ir.Value:
    """A [C] vector (the param `role`, or constant `fill`) shaped to broadcast along `axis`."""
    rank = len(p.shape(node.inputs[0]))
    channels = p.shape(node.inputs[0])[axis]
    trailing = rank - 1 - axis
    if role is not None and p.has(node, role):
        vector = p.param(node, role)
        if trailing == 0:
            return vector
        return p.op(node, "Unsqueeze", [vector, p.ints(node, f"{role}_axes", range(1, trailing + 1))], f"{role}_c")
    dtype = np.dtype(p.dtype(node.inputs[0]))
    return p.const(node, "ones" if fill == 1.0 else "zeros", np.full((channels,) + (1,) * trailing, fill, dtype=dtype))


def _vector(p: OnnxPrinter, node: NodeBase, role: str | None, fill: float, size: int) -> ir.Value:
    """The [size] param `role` or, when the node has none, a constant `fill` vector."""
    if role is not None and p.has(node, role):
        return p.param(node, role)
    dtype = np.dtype(p.dtype(node.inputs[0]))
    return p.const(node, "ones" if fill == 1.0 else "zeros", np.full((size,), fill, dtype=dtype))


def _batch_stats_norm(p: OnnxPrinter, node: NodeBase, eps: float, axis: int) -> None:
    """(x - mean) / sqrt(var + eps) * weight + bias with the statistics of this batch (per channel)."""
    rank = len(p.shape(node.inputs[0]))
    reduce_axes = p.ints(node, "axes", [a for a in range(rank) if a != axis])
    x = p.x(node)
    mean = p.op(node, "ReduceMean", [x, reduce_axes], "mean", keepdims=1)
    centred = p.op(node, "Sub", [x, mean], "centred")
    var = p.op(node, "ReduceMean", [p.op(node, "Mul", [centred, centred], "squared"), reduce_axes], "var", keepdims=1)
    std = p.op(node, "Sqrt", [p.op(node, "Add", [var, p.scalar(node, "eps", eps)], "var_eps")], "std")
    normed = p.op(node, "Div", [centred, std], "normed")
    if not p.has(node, "weight"):
        p.out(node, "Identity", [normed])
        return
    scaled = p.op(node, "Mul", [normed, _per_channel(p, node, "weight", 1.0, axis)], "scaled")
    p.out(node, "Add", [scaled, _per_channel(p, node, "bias", 0.0, axis)])


def _inference_batch_norm(p: OnnxPrinter, node: NodeBase, eps: float) -> None:
    """BatchNormalization with the running statistics (channel axis 1), or its decomposition."""
    axis = _channel_axis(p, node)
    channels = p.shape(node.inputs[0])[axis]
    if axis == 1:
        p.out(
            node, "BatchNormalization",
            [
                p.x(node), _vector(p, node, "weight", 1.0, channels), _vector(p, node, "bias", 0.0, channels),
                p.param(node, "running_mean"), p.param(node, "running_var"),
            ],
            epsilon=float(eps),
        )
        return
    x = p.x(node)
    centred = p.op(node, "Sub", [x, _per_channel(p, node, "running_mean", 0.0, axis)], "centred")
    var_eps = p.op(node, "Add", [_per_channel(p, node, "running_var", 1.0, axis), p.scalar(node, "eps", eps)], "var_eps")
    normed = p.op(node, "Div", [centred, p.op(node, "Sqrt", [var_eps], "std")], "normed")
    scaled = p.op(node, "Mul", [normed, _per_channel(p, node, "weight", 1.0, axis)], "scaled")
    p.out(node, "Add", [scaled, _per_channel(p, node, "bias", 0.0, axis)])


@emits(Op.BATCH_NORM)
def _batch_norm(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.BatchNormAttrs = node.attrs  # type: ignore[assignment]
    if p.has(node, "running_mean"):
        _inference_batch_norm(p, node, attrs.eps)
    else:  # track_running_stats=False: torch normalises with the batch's own statistics
        _batch_stats_norm(p, node, attrs.eps, _channel_axis(p, node))


@emits(Op.INSTANCE_NORM)
def _instance_norm(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.InstanceNormAttrs = node.attrs  # type: ignore[assignment]
    if p.has(node, "running_mean"):  # track_running_stats=True: eval mode uses the running statistics
        _inference_batch_norm(p, node, attrs.eps)
        return
    if _channel_axis(p, node) != 1:
        raise CodegenError(f"node '{node.id}' (instance_norm, from '{node.source}') is channels-last; not supported by codegen-onnx yet")
    channels = p.shape(node.inputs[0])[1]
    p.out(
        node, "InstanceNormalization",
        [p.x(node), _vector(p, node, "weight", 1.0, channels), _vector(p, node, "bias", 0.0, channels)],
        epsilon=float(attrs.eps),
    )


@emits(Op.GROUP_NORM)
def _group_norm(p: OnnxPrinter, node: NodeBase) -> None:
    """InstanceNormalization over x reshaped to [N, G, -1], reshaped back, then the per-channel affine."""
    attrs: A.GroupNormAttrs = node.attrs  # type: ignore[assignment]
    if _channel_axis(p, node) != 1:
        raise CodegenError(f"node '{node.id}' (group_norm, from '{node.source}') is channels-last; not supported by codegen-onnx yet")
    shape = p.shape(node.inputs[0])
    g = attrs.num_groups
    dtype = np.dtype(p.dtype(node.inputs[0]))
    # 0 copies the batch from x, -1 gathers each group's channels and positions: any batch size
    grouped = p.op(node, "Reshape", [p.x(node), p.ints(node, "grouped_shape", [0, g, -1])], "grouped")
    normed = p.op(
        node, "InstanceNormalization",
        [grouped, p.const(node, "group_ones", np.ones(g, dtype)), p.const(node, "group_zeros", np.zeros(g, dtype))],
        "normed", epsilon=float(attrs.eps),
    )
    original = p.op(node, "Shape", [p.x(node)], "shape") if p.graph.values[node.inputs[0]].dims is not None else p.ints(node, "shape", shape)
    if not p.has(node, "weight"):
        p.out(node, "Reshape", [normed, original])
        return
    restored = p.op(node, "Reshape", [normed, original], "restored")
    scaled = p.op(node, "Mul", [restored, _per_channel(p, node, "weight", 1.0, 1)], "scaled")
    p.out(node, "Add", [scaled, _per_channel(p, node, "bias", 0.0, 1)])


@emits(Op.LAYER_NORM)
def _layer_norm(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.LayerNormAttrs = node.attrs  # type: ignore[assignment]
    shape = p.shape(node.inputs[0])
    rank = len(shape)
    if tuple(attrs.axes) != tuple(range(rank - len(attrs.axes), rank)):
        raise CodegenError(f"node '{node.id}' (layer_norm, from '{node.source}') normalises axes {attrs.axes}, not the trailing ones")
    normalized = shape[attrs.axes[0]:]
    if p.has(node, "weight"):
        scale = p.param(node, "weight")
        if tuple(p.param_info(node, "weight").shape) != tuple(normalized):
            scale = p.op(node, "Reshape", [scale, p.ints(node, "scale_shape", normalized)], "scale")
    else:
        scale = p.const(node, "ones", np.ones(normalized, np.dtype(p.dtype(node.inputs[0]))))
    inputs = [p.x(node), scale]
    if p.has(node, "bias"):
        bias = p.param(node, "bias")
        if tuple(p.param_info(node, "bias").shape) != tuple(normalized):
            bias = p.op(node, "Reshape", [bias, p.ints(node, "bias_shape", normalized)], "bias")
        inputs.append(bias)
    p.out(node, "LayerNormalization", inputs, axis=attrs.axes[0], epsilon=float(attrs.eps))
