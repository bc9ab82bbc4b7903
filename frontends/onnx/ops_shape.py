"""ONNX frontend converters for data movement and reductions (the `asgnas_ir.opdefs.shape_ops` family).

Gather/GatherND (embedding lookups or constant-index slices), Concat, Split, SplitToSequence and
SequenceAt, Slice, Reshape/Squeeze/Unsqueeze, Flatten, Transpose, Expand, Pad, ReduceMean/ReduceSum,
ReduceL2/ReduceSumSquare (as sums of squares) and Softmax (split by opset at 13). Split out of
`ops.py` so each file holds one op family; importing this module registers its converters in `OPS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from asgnas_ir.frontends.onnx._ops_common import OPS, _axis, _reshape_to, _scalar
from asgnas_ir.frontends.onnx.builder import Builder, Const
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

_INT_MAX = 2**62


def _table_param(b: Builder, data: Const, node: onnx.NodeProto) -> str:
    """The [num, dim] weight of a lookup into constant 2-d `data`.

    A table read through a transpose (LeViT, TinyViT and EfficientFormer index their
    `attention_biases` [heads, positions] as `biases[:, idxs]`, which torch exports as GatherND on
    the transpose) has no param in that layout: the embedding's weight is then a frozen copy of the
    transposed table (NOTE: [Folded weights are frozen]), since an embedding reads rows only."""
    if data.origin is not None and data.origin.perm is not None:
        return b.param(Const(np.ascontiguousarray(data.array)), "VO", f"{node.name}_table")
    return b.param(data, "VO", f"{node.name}_weight")


@OPS.register("Gather")
def gather(b: Builder, node: onnx.NodeProto) -> str:
    """Gather(data, indices) axis: an embedding lookup (constant 2-d data) or a constant index (slice)"""
    data = b.const(node, 0)
    axis = int(b.attr(node, "axis", 0))
    if data is not None:
        if data.array.ndim != 2 or axis != 0 or b.const(node, 0) is None:
            raise b.fail("Gather of constant data is supported as an embedding lookup (2-d table, axis 0)")
        weight = _table_param(b, data, node)
        num, dim = data.array.shape
        return b.emit(Op.EMBEDDING, [b.tensor(node, 1)], A.EmbeddingAttrs(num_embeddings=int(num), dim=int(dim)), {"weight": weight})
    x = b.tensor(node, 0)
    axis = _axis(b, x, axis)
    index = b.const_array(node, 1, "Gather indices")
    size = b.value(x).shape[axis]
    flat = [int(i) % size for i in np.asarray(index).reshape(-1)]
    start = flat[0] if flat else 0
    steps = {j - i for i, j in zip(flat, flat[1:], strict=False)}
    if not flat or len(steps) > 1 or steps and next(iter(steps)) < 1:
        raise b.fail("Gather is supported with a constant scalar index or an increasing, evenly spaced index")
    step = next(iter(steps)) if steps else 1
    y = x
    if (start, len(flat), step) != (0, size, 1):
        y = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=start, stop=flat[-1] + 1, step=step))
    return _reshape_to(b, y, b.out_shape(node))


@OPS.register("GatherND")
def gather_nd(b: Builder, node: onnx.NodeProto) -> str:
    """GatherND(data, indices) batch_dims: with a constant 2-d table and [..., 1] indices, the same
    lookup as Gather on axis 0 (exporters write relative-position tables this way)"""
    data = b.const(node, 0)
    indices = b.const(node, 1)
    if data is None or indices is None or data.array.ndim != 2 or indices.array.shape[-1:] != (1,) or b.attr(node, "batch_dims", 0):
        raise b.fail("GatherND is supported as a table lookup: constant 2-d data, constant [..., 1] indices, batch_dims=0")
    weight = _table_param(b, data, node)
    rows = b.constant_node(Const(np.ascontiguousarray(indices.array[..., 0]).astype(np.int64)), f"{node.name}_rows")
    num, dim = data.array.shape
    return b.emit(Op.EMBEDDING, [rows], A.EmbeddingAttrs(num_embeddings=int(num), dim=int(dim)), {"weight": weight})


@OPS.register("Concat")
def concat(b: Builder, node: onnx.NodeProto) -> str:
    """Concat(inputs...) axis"""
    tensors = [b.tensor(node, i) for i in range(len(node.input)) if b.has_input(node, i)]
    if len(tensors) == 1:
        return tensors[0]
    return b.emit(Op.CONCAT, tensors, A.AxisAttrs(axis=_axis(b, tensors[0], b.attr(node, "axis"))))


@OPS.register("Split")
def split(b: Builder, node: onnx.NodeProto) -> Any:
    """Split(input, split?) axis=0, num_outputs (split was an attribute before opset 13)"""
    x = b.tensor(node, 0)
    axis = _axis(b, x, b.attr(node, "axis", 0))
    sizes = tuple(b.out_shape(node, i)[axis] for i in range(len(node.output)))
    if len(sizes) == 1:
        return x
    return b.emit(Op.SPLIT, [x], A.SplitAttrs(axis=axis, sizes=sizes), outputs=len(sizes))


@OPS.register("SplitToSequence")
def split_to_sequence(b: Builder, node: onnx.NodeProto) -> list[str]:
    """SplitToSequence(input, split?) axis=0, keepdims=1: a split whose pieces SequenceAt picks"""
    x = b.tensor(node, 0)
    axis = _axis(b, x, b.attr(node, "axis", 0))
    size = b.value(x).shape[axis]
    split_arg = b.const(node, 1)
    if b.has_input(node, 1) and split_arg is None:
        raise b.fail("SplitToSequence split sizes must be constant")
    if split_arg is None:
        if not b.attr(node, "keepdims", 1):
            raise b.fail("SplitToSequence with keepdims=0 is not supported")
        sizes = [1] * size
    elif split_arg.array.ndim == 0:
        chunk = int(split_arg.array)
        sizes = [chunk] * (size // chunk) + ([size % chunk] if size % chunk else [])
    else:
        sizes = [int(s) for s in split_arg.array]
    if len(sizes) == 1:
        return [x]
    return b.emit(Op.SPLIT, [x], A.SplitAttrs(axis=axis, sizes=tuple(sizes)), outputs=len(sizes))


@OPS.register("SequenceAt")
def sequence_at(b: Builder, node: onnx.NodeProto) -> str:
    """SequenceAt(input_sequence, position) with a constant position"""
    seq = b.get(node.input[0])
    if not isinstance(seq, list):
        raise b.fail("SequenceAt reads a sequence that is not a split")
    return seq[int(b.const_array(node, 1, "position")) % len(seq)]


@OPS.register("Slice")
def slice_(b: Builder, node: onnx.NodeProto) -> str:
    """Slice(data, starts, ends, axes?, steps?) (attributes before opset 10)"""
    x = b.tensor(node, 0)
    starts = b.ints(node, 1, "starts", 10) or []
    ends = b.ints(node, 2, "ends", 10) or []
    axes = b.ints(node, 3, "axes", 10) or list(range(len(starts)))
    steps = (b.ints(node, 4, "steps", 10) if b.opset >= 10 else None) or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = _axis(b, x, axis)
        size = b.value(x).shape[axis]
        if step < 1:
            raise b.fail("negative-step Slice is not supported")
        begin, stop, _ = slice(max(-_INT_MAX, start), min(_INT_MAX, end), step).indices(size)
        stop = max(stop, begin)
        if (begin, stop, step) != (0, size, 1):
            x = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=begin, stop=stop, step=step))
    return x


@OPS.register("Reshape", "Squeeze", "Unsqueeze")
def reshape(b: Builder, node: onnx.NodeProto) -> str:
    """Reshape(data, shape) / Squeeze(data, axes?) / Unsqueeze(data, axes): a reshape to the inferred shape
    (axes moved from attribute to input at opset 13; the inferred output shape already accounts for it)"""
    return _reshape_to(b, b.tensor(node, 0), b.out_shape(node))


@OPS.register("Flatten")
def flatten(b: Builder, node: onnx.NodeProto) -> str:
    """Flatten(input) axis=1: always 2-d [prod(d[:axis]), prod(d[axis:])]"""
    x = b.tensor(node, 0)
    rank = b.rank(x)
    axis = int(b.attr(node, "axis", 1)) % (rank + 1) if rank else 0
    if axis == 1 and rank > 2:
        return b.emit(Op.FLATTEN, [x], A.FlattenAttrs(start_axis=1, end_axis=rank - 1))
    return _reshape_to(b, x, b.out_shape(node))


@OPS.register("Transpose")
def transpose(b: Builder, node: onnx.NodeProto) -> str:
    """Transpose(data) perm (default: reversed axes)"""
    x = b.tensor(node, 0)
    perm = tuple(int(p) for p in (b.attr(node, "perm") or reversed(range(b.rank(x)))))
    if perm == tuple(range(len(perm))):
        return x
    return b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=perm))


@OPS.register("Expand")
def expand(b: Builder, node: onnx.NodeProto) -> str:
    """Expand(input, shape): broadcast to the inferred output shape; one to the inputs' batch stays an
    expand even where it changes nothing at the example's sizes (NOTE: [Input-sized expands])"""
    x = b.tensor(node, 0)
    shape = b.out_shape(node)
    if b.value(x).shape == shape and node.output[0] not in b.input_sized:
        return x
    if b.rank(x) < len(shape):
        x = _reshape_to(b, x, (1,) * (len(shape) - b.rank(x)) + b.value(x).shape, name=f"{node.output[0]}_rank")
    return b.emit(Op.EXPAND, [x], A.ExpandAttrs(shape=shape))


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@OPS.register("Pad")
def pad(b: Builder, node: onnx.NodeProto) -> str:
    """Pad(data, pads, constant_value?, axes?) mode (pads an attribute before opset 11)"""
    x = b.tensor(node, 0)
    rank = b.rank(x)
    flat = b.ints(node, 1, "pads", 11) or [0] * (2 * rank)
    axes = (b.ints(node, 3, "axes", 18) if b.opset >= 18 else None) or list(range(rank))
    n = len(axes)
    pads = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        pads[int(axis) % rank] = (flat[i], flat[i + n])
    if any(p < 0 for pair in pads for p in pair):
        raise b.fail("negative padding (cropping) is not supported")
    mode = b.attr(node, "mode", "constant")
    if mode not in _PAD_MODES:
        raise b.fail(f"Pad mode '{mode}' is not supported")
    value = _scalar(b.const(node, 2)) if b.opset >= 11 else b.attr(node, "value", 0.0)
    if all(p == (0, 0) for p in pads):
        return x
    return b.emit(Op.PAD, [x], A.PadAttrs(pads=tuple(pads), mode=_PAD_MODES[mode], value=float(value or 0.0)))  # type: ignore[arg-type]


def _reduce_attrs(b: Builder, node: onnx.NodeProto, x: str, since: int) -> A.ReduceAttrs | None:
    """The axes and keepdim of a Reduce* node (None: `noop_with_empty_axes` with no axes, the identity)."""
    rank = b.rank(x)
    axes = b.ints(node, 1, "axes", since)
    if not axes:
        if b.attr(node, "noop_with_empty_axes", 0):
            return None
        axes = list(range(rank))
    return A.ReduceAttrs(axes=tuple(sorted({int(a) % rank for a in axes})), keepdim=bool(b.attr(node, "keepdims", 1)))


def _reduce(op: Op, since: int):  # noqa: ANN202
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        x = b.tensor(node, 0)
        attrs = _reduce_attrs(b, node, x, since)
        return x if attrs is None else b.emit(op, [x], attrs)

    convert.__doc__ = f"Reduce(data, axes?) keepdims=1 lowered to {op.value} (axes an input from opset {since})"
    return convert


OPS.add(["ReduceMean"], _reduce(Op.MEAN, 18))
OPS.add(["ReduceSum"], _reduce(Op.SUM, 13))


def _sum_of_squares(b: Builder, node: onnx.NodeProto, root: bool) -> str:
    x = b.tensor(node, 0)
    attrs = _reduce_attrs(b, node, x, 18)
    squares = b.emit(Op.MUL, [x, x], A.BinaryAttrs(), name=f"{node.output[0]}_squares")
    # with no axes and noop_with_empty_axes, ONNX still squares (and takes the root of) each element
    total = squares if attrs is None else b.emit(Op.SUM, [squares], attrs, name=f"{node.output[0]}_sum" if root else None)
    return b.emit(Op.SQRT, [total]) if root else total


@OPS.register("ReduceL2")
def reduce_l2(b: Builder, node: onnx.NodeProto) -> str:
    """ReduceL2(data, axes?) keepdims=1, noop_with_empty_axes=0 (axes an input from opset 18): the
    Euclidean norm as sqrt(sum(x * x)), which is how `torch.norm` / `F.normalize` export"""
    return _sum_of_squares(b, node, root=True)


@OPS.register("ReduceSumSquare")
def reduce_sum_square(b: Builder, node: onnx.NodeProto) -> str:
    """ReduceSumSquare(data, axes?) keepdims=1, noop_with_empty_axes=0 (axes an input from opset 18): sum(x * x)"""
    return _sum_of_squares(b, node, root=False)


@OPS.register("Softmax")
def softmax_v1(b: Builder, node: onnx.NodeProto) -> str:
    """Softmax(input) axis=1 before opset 13: softmax over the input flattened from `axis` on"""
    x = b.tensor(node, 0)
    axis = _axis(b, x, b.attr(node, "axis", 1))
    if axis != b.rank(x) - 1:
        raise b.fail("Softmax before opset 13 over more than the last axis is not supported")
    return b.emit(Op.SOFTMAX, [x], A.AxisAttrs(axis=axis))


@OPS.register(("Softmax", 13))
def softmax(b: Builder, node: onnx.NodeProto) -> str:
    """Softmax(input) axis=-1 (opset 13 on)"""
    x = b.tensor(node, 0)
    return b.emit(Op.SOFTMAX, [x], A.AxisAttrs(axis=_axis(b, x, b.attr(node, "axis", -1))))
