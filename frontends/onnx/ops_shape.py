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
from asgnas_ir.frontends.onnx.builder import FUSED, Builder, Const
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
        rows = b.tensor(node, 1)
        if b.value(rows).dtype.startswith(("float", "bfloat")):  # positions counted as floats (NOTE: [Integers held as floats])
            rows = b.emit(Op.CAST, [rows], A.CastAttrs(dtype="int64"), name=f"{node.input[1]}_index")
        return b.emit(Op.EMBEDDING, [rows], A.EmbeddingAttrs(num_embeddings=int(num), dim=int(dim)), {"weight": weight})
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


@OPS.register("GatherElements")
def gather_elements(b: Builder, node: onnx.NodeProto) -> Const:
    """GatherElements(data, indices) axis, of constant data that is the same all along `axis`: that
    data, whatever the indices. BERT-style models read their token_type_ids buffer (zeros) at the
    position ids so; RoBERTa's positions are computed from the ids at run time."""
    data = b.const(node, 0)
    if data is None:
        raise b.fail("GatherElements is supported on constant data only")
    array = np.asarray(data.array)
    axis = int(b.attr(node, "axis", 0)) % max(array.ndim, 1)
    first = np.take(array, [0], axis=axis)
    if not np.array_equal(array, np.broadcast_to(first, array.shape)):
        raise b.fail("GatherElements at run-time indices is supported where the data is the same all along the axis "
                     "(it then does not depend on the indices)")
    shape = b.out_shape(node)
    if any(size > have for a, (size, have) in enumerate(zip(shape, array.shape, strict=True)) if a != axis):
        raise b.fail(f"GatherElements indices of shape {list(shape)} exceed the data's {list(array.shape)}")
    corner = first[tuple(slice(0, size) if a != axis else slice(None) for a, size in enumerate(shape))]
    return Const(np.ascontiguousarray(np.broadcast_to(corner, shape)))


@OPS.register("GatherND")
def gather_nd(b: Builder, node: onnx.NodeProto) -> str:
    """GatherND(data, indices) batch_dims: with a constant 2-d table and [..., 1] indices, the same
    lookup as Gather on axis 0 (exporters write relative-position tables this way)"""
    data = b.const(node, 0)
    indices = b.const(node, 1)
    if data is None and indices is not None and not b.attr(node, "batch_dims", 0):
        return _gather_grid(b, node, indices.array)
    if data is None or indices is None or data.array.ndim != 2 or indices.array.shape[-1:] != (1,) or b.attr(node, "batch_dims", 0):
        raise b.fail("GatherND is supported as a table lookup: constant 2-d data, constant [..., 1] indices, batch_dims=0")
    weight = _table_param(b, data, node)
    rows = b.constant_node(Const(np.ascontiguousarray(indices.array[..., 0]).astype(np.int64)), f"{node.name}_rows")
    num, dim = data.array.shape
    return b.emit(Op.EMBEDDING, [rows], A.EmbeddingAttrs(num_embeddings=int(num), dim=int(dim)), {"weight": weight})


def _grid_axis(component: np.ndarray, size: int) -> int | None:
    """The axis along which `component` (one coordinate of a GatherND index) counts 0..size-1,
    being the same along every other axis; -1 when it is all 0 and `size` is 1; None otherwise."""
    if size == 1:
        return -1 if not np.any(component) else None
    for axis, length in enumerate(component.shape):
        if length != size:
            continue
        ramp = np.arange(size).reshape([size if a == axis else 1 for a in range(component.ndim)])
        if np.array_equal(component, np.broadcast_to(ramp, component.shape)):
            return axis
    return None


def _gather_grid(b: Builder, node: onnx.NodeProto, index: np.ndarray) -> str:
    """GatherND of a run-time tensor at a constant grid of coordinates: out[..., i, ..., j, ...] =
    data[i, j] for coordinates that each count along one output axis. That is `data` with its axes
    spread over the output's and broadcast along the others (a reshape and an expand).
    transformers' masks read the padding mask so: `padding_mask[batch_idx, kv_idx]` to [B, 1, 1, S]."""
    x = b.tensor(node, 0)
    shape = b.value(x).shape
    depth = int(index.shape[-1])
    if index.ndim < 2 or depth > len(shape):
        raise b.fail("GatherND of a run-time tensor is supported at a constant grid of coordinates only")
    lead = index.shape[:-1]
    axes = [_grid_axis(np.asarray(index[..., j]), shape[j]) for j in range(depth)]
    placed = [a for a in axes if a is not None and a >= 0]
    if any(a is None for a in axes) or len(set(placed)) != len(placed):
        raise b.fail("GatherND of a run-time tensor is supported where each index coordinate counts along one output axis")
    kept = [j for j in range(depth) if axes[j] >= 0]  # type: ignore[operator]
    order = sorted(kept, key=lambda j: axes[j])  # type: ignore[arg-type, return-value]
    if order != kept:  # the data's axes reach the output in another order
        perm = (*order, *(j for j in range(len(shape)) if j not in order))
        x = b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=perm), name=f"{node.output[0]}_order")
    spread = [1] * len(lead)
    for j in kept:
        spread[axes[j]] = shape[j]  # type: ignore[index]
    x = _reshape_to(b, x, (*spread, *shape[depth:]), name=f"{node.output[0]}_spread")
    out = b.out_shape(node)
    if b.value(x).shape != out:
        x = b.emit(Op.EXPAND, [x], A.ExpandAttrs(shape=out))
    return x


@OPS.register("Concat")
def concat(b: Builder, node: onnx.NodeProto) -> str:
    """Concat(inputs...) axis; empty inputs (see Slice) add nothing"""
    present = [i for i in range(len(node.input)) if b.has_input(node, i) and not _is_empty(b.get(node.input[i]))]
    if len(present) == 1:
        return b.tensor(node, present[0])
    tensors = [b.tensor(node, i) for i in present]
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


def _is_empty(value: Any) -> bool:
    return isinstance(value, Const) and value.array.size == 0 and value.origin is None


def _empty(b: Builder, node: onnx.NodeProto) -> Const:
    """The empty result of a Slice, as a constant: the IR has no empty tensors, and the one use
    models make of one is a Concat it adds nothing to (the pass-through part of a rotary embedding
    that covers the whole head, Phi-3's `q[..., rotary_dim:]`)."""
    users = b.consumers.get(node.output[0], [])
    if not users or any(user.op_type != "Concat" for user in users):
        raise b.fail("a Slice that selects nothing is supported only as an input to Concat")
    found = b.types.get(node.output[0])
    shape = found.shape if found is not None and found.shape is not None else (0,)
    return Const(np.zeros(shape, dtype=np.float32))  # no element is ever read: the dtype does not matter


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
        if stop == begin:
            return _empty(b, node)
        if (begin, stop, step) != (0, size, 1):
            x = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=begin, stop=stop, step=step))
    return x


@OPS.register("Reshape", "Squeeze", "Unsqueeze")
def reshape(b: Builder, node: onnx.NodeProto) -> str:
    """Reshape(data, shape) / Squeeze(data, axes?) / Unsqueeze(data, axes): a reshape to the inferred shape
    (axes moved from attribute to input at opset 13; the inferred output shape already accounts for it).
    The exporter's transpose of the last two axes of a rank > 3 tensor (see `_swap_last_two`) is one permute."""
    swapped = _swap_last_two(b, node)
    if swapped is not None:
        return swapped
    return _reshape_to(b, b.tensor(node, 0), b.out_shape(node))


def _swap_last_two(b: Builder, node: onnx.NodeProto) -> Any:
    """Reshape(x, [-1, M, N]) -> Transpose(perm=[0, 2, 1]) -> Reshape(to x's leading axes + [N, M]), as
    x.transpose(-2, -1), where x has rank > 3.

    torch's exporter writes the key's transpose inside scaled_dot_product_attention so (it handles any
    rank). Lowered op by op, the first reshape merges the batch with the heads, which then carry no
    channel labels: the heads of q would no longer be tied to those of k. One permute keeps them."""
    if node.op_type != "Reshape" or not b.is_tensor(node, 0) or b.rank(b.env[node.input[0]]) <= 3:
        return None
    x = b.env[node.input[0]]
    shape = b.value(x).shape
    merged = b.types.get(node.output[0])
    if merged is None or merged.shape != (int(np.prod(shape[:-2])), *shape[-2:]):
        return None
    turn = b.only_consumer(node.output[0])
    if turn is None or turn.op_type != "Transpose" or tuple(b.attr(turn, "perm") or ()) != (0, 2, 1):
        return None
    back = b.only_consumer(turn.output[0])
    if back is None or back.op_type != "Reshape":
        return None
    target = b.types.get(back.output[0])
    if target is None or target.shape != (*shape[:-2], shape[-1], shape[-2]):
        return None
    b.fused.update((id(turn), id(back)))
    rank = len(shape)
    out = b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=(*range(rank - 2), rank - 1, rank - 2)), name=back.output[0])
    b.env[back.output[0]] = out
    b.check_shape(back.output[0], out)
    return FUSED


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
