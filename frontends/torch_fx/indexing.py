"""Indexing by a tensor of known values or a list (`table[index]`, `x[:, [0, 3]]`) and writes into a
box of a tensor (`x[:, 1:, 1:] = v`), lowered with slices, concats, an embedding lookup or a constant
one-hot product. `functions.getitem` and `functions.setitem` hand these cases over.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.fx

from asgnas_ir.frontends.torch_fx.builder import Builder
from asgnas_ir.frontends.torch_fx.composite import _part
from asgnas_ir.frontends.torch_fx.functions import constant_param, is_constant, reshape_to
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

# ---- indexing by a tensor of known values -------------------------------------------------------

_ONE_HOT_LIMIT = 1 << 24  # entries of a one-hot selection matrix, a guard against huge constants


def constant_values(b: Builder, value: str) -> Any:
    """The array behind `value` when a constant node produces it (a buffer or a folded tensor), else None."""
    producer = next((n for n in b.nodes if value in n.outputs), None)
    if producer is None or producer.op != Op.CONSTANT:
        return None
    return b.weights[producer.params["value"]]


def _is_index_list(item: Any) -> bool:
    return isinstance(item, (list, tuple)) and bool(item) and all(isinstance(i, int) and not isinstance(i, bool) for i in item)


def index_by_tensor(b: Builder, node: torch.fx.Node, x: str, items: list[Any]) -> str:
    """x[:, ..., idx] with one integer index (a tensor whose values are known while lowering, or a list).

    Relative position biases are read this way (`table[index.view(-1)]`, `biases[:, idx]`), with an
    index buffer, and channel subsets with a list (`x[:, [0, 3, 5]]`). A one-dimensional index is a
    concat of slices, each run of consecutive indices one slice, so picked channels stay prunable; a
    lookup into the rows of a 2-d parameter is an embedding (the table's columns, attention heads,
    stay prunable); any other is a product with a constant one-hot selection matrix, exact in floating
    point because every term but one is a zero product.
    """
    positions = [i for i, item in enumerate(items) if b.is_tensor(item) or _is_index_list(item)]
    others = [item for i, item in enumerate(items) if i not in positions]
    if len(positions) != 1 or any(not (isinstance(s, slice) and s == slice(None)) for s in others):
        raise b.fail("indexing by a tensor or list is supported as x[idx] or x[:, ..., idx] with one integer index")
    axis = positions[0]
    index = items[axis]
    values = np.asarray(index, dtype=np.int64) if _is_index_list(index) else constant_values(b, index)
    if values is None:
        raise b.fail(
            "indexing by a tensor computed from the inputs (a gather) is not supported; index with a buffer or a "
            "tensor built from sizes"
        )
    if values.dtype.kind not in "iu":
        raise b.fail(f"indexing by a {values.dtype} tensor (a mask) is not supported; index with integers")
    shape = b.value(x).shape
    size = shape[axis]
    flat = values.reshape(-1).astype(np.int64) % size
    if b.is_tensor(index) and axis == 0 and len(shape) == 2 and (values >= 0).all() and is_constant(b, x):
        weight = constant_param(b, x, "VO")
        attrs = A.EmbeddingAttrs(num_embeddings=size, dim=shape[1])
        return b.emit(Op.EMBEDDING, [index], attrs, {"weight": weight})  # type: ignore[dict-item]
    if values.ndim == 1 and _runs(flat) <= _MAX_RUNS:
        return _pick(b, node, x, axis, flat)
    if size * flat.size > _ONE_HOT_LIMIT:
        raise b.fail(f"indexing axis {axis} (size {size}) by {flat.size} indices needs too large a selection matrix")
    dtype = b.value(x).dtype
    # an IR constant: host data whatever device the model is on (the graph keeps numpy weights)
    selection = torch.zeros(size, flat.size, dtype=getattr(torch, dtype), device="cpu")
    selection[torch.from_numpy(flat), torch.arange(flat.size, device="cpu")] = 1
    param = b.add_param(_part(b, node, "selection"), selection, None, trainable=False)
    one_hot = b.emit(Op.CONSTANT, [], params={"value": param}, name=_part(b, node, "selection"))
    rank = len(shape)
    last = tuple(a for a in range(rank) if a != axis) + (axis,)
    moved = x if axis == rank - 1 else b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=last), name=_part(b, node, "indexed_last"))
    if rank == 1:
        moved = b.emit(Op.RESHAPE, [moved], A.ReshapeAttrs(shape=(1, size)), name=_part(b, node, "row"))
    picked = b.emit(Op.MATMUL, [moved, one_hot], name=_part(b, node, "picked"))
    kept = tuple(shape[a] for a in range(rank) if a != axis)
    picked = b.emit(Op.RESHAPE, [picked], A.ReshapeAttrs(shape=kept + tuple(values.shape)), name=_part(b, node, "unflat"))
    if axis == rank - 1:
        return picked
    n = len(values.shape)
    perm = tuple(range(axis)) + tuple(range(rank - 1, rank - 1 + n)) + tuple(range(axis, rank - 1))
    return b.emit(Op.PERMUTE, [picked], A.PermuteAttrs(perm=perm))


_MAX_RUNS = 64  # a scattered index past this many runs of consecutive entries is a one-hot product instead


def _runs(picked: np.ndarray) -> int:
    return 1 + int(np.count_nonzero(np.diff(picked) != 1)) if picked.size else 0


def _pick(b: Builder, node: torch.fx.Node, x: str, axis: int, picked: np.ndarray) -> str:
    """x's entries `picked` along `axis`, in that order: one slice per run of consecutive indices."""
    runs: list[list[int]] = []
    for i in picked.tolist():
        if runs and i == runs[-1][1]:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    size = b.value(x).shape[axis]
    parts = [
        x if (start, stop) == (0, size) else
        b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=start, stop=stop, step=1), name=_part(b, node, f"run{i}"))
        for i, (start, stop) in enumerate(runs)
    ]
    return parts[0] if len(parts) == 1 else b.emit(Op.CONCAT, parts, A.AxisAttrs(axis=axis))


# ---- writes into a box ----------------------------------------------------------------------------


def write_box(b: Builder, node: torch.fx.Node) -> str:
    """`x[index] = value` with an index of slices of step 1, ints and `...`: x rebuilt around the box,
    axis by axis: the part before the box, the box (built the same way on the next axis, the value on
    the last), the part after, concatenated. MViTv2 adds its relative position terms this way."""
    args, _ = b.args(node)
    x, index, value = args
    refuse = (
        "indexed assignment (tensor[...] = value) is supported with slices of step 1, ints and ...; build the "
        "result out of place otherwise (torch.cat of the kept and new parts, or torch.where with a mask)"
    )
    if not b.is_tensor(x):
        raise b.fail(refuse)
    shape = b.value(x).shape
    items = list(index) if isinstance(index, tuple) else [index]
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items = items[:at] + [slice(None)] * (len(shape) - len(items) + 1) + items[at + 1 :]
    items += [slice(None)] * (len(shape) - len(items))
    if len(items) != len(shape):
        raise b.fail(refuse)
    box, dropped = [], []
    for axis, (item, size) in enumerate(zip(items, shape, strict=True)):
        if isinstance(item, slice):
            start, stop, step = item.indices(size)
            if step != 1 or start >= stop:
                raise b.fail(refuse)
            box.append((start, stop))
        elif isinstance(item, int) and not isinstance(item, bool):
            box.append((item % size, item % size + 1))
            dropped.append(axis)
        else:
            raise b.fail(refuse)
    box_shape = tuple(stop - start for start, stop in box)
    kept_shape = tuple(d for axis, d in enumerate(box_shape) if axis not in dropped)
    if b.is_tensor(value):
        if b.value(value).dtype != b.value(x).dtype:
            raise b.fail(f"indexed assignment of a {b.value(value).dtype} value into a {b.value(x).dtype} tensor")
        own = b.value(value).shape
        own = (1,) * (len(kept_shape) - len(own)) + own
        # the value broadcasts to the box without its int axes; give it those axes back as ones
        full = list(own)
        for axis in dropped:
            full.insert(axis, 1)
        block = reshape_to(b, value, tuple(full), name=_part(b, node, "value"))
        if b.value(block).shape != box_shape:
            block = b.emit(Op.EXPAND, [block], A.ExpandAttrs(shape=box_shape), name=_part(b, node, "filled"))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        fill = torch.full(box_shape, float(value), dtype=getattr(torch, b.value(x).dtype), device="cpu")
        param = b.add_param(_part(b, node, "fill"), fill, None, trainable=False)
        block = b.emit(Op.CONSTANT, [], params={"value": param}, name=_part(b, node, "fill"))
    else:
        raise b.fail(refuse)
    return _rebuild(b, node, x, block, box, 0)


def _rebuild(b: Builder, node: torch.fx.Node, x: str, block: str, box: list[tuple[int, int]], axis: int) -> str:
    """x with its box from `axis` on replaced by `block` (whose axes before `axis` are x's)."""
    partial = [a for a in range(axis, len(box)) if box[a] != (0, b.value(x).shape[a])]
    if not partial:
        return block
    axis = partial[0]
    start, stop = box[axis]
    size = b.value(x).shape[axis]
    parts = []
    if start > 0:
        parts.append(b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=0, stop=start, step=1), name=_part(b, node, f"before{axis}")))
    if len(partial) > 1:  # the box's rows along this axis still keep some of x on a later axis
        middle = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=start, stop=stop, step=1), name=_part(b, node, f"box{axis}"))
        parts.append(_rebuild(b, node, middle, block, box, axis + 1))
    else:
        parts.append(block)
    if stop < size:
        parts.append(b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=stop, stop=size, step=1), name=_part(b, node, f"after{axis}")))
    return parts[0] if len(parts) == 1 else b.emit(Op.CONCAT, parts, A.AxisAttrs(axis=axis), name=_part(b, node, f"axis{axis}"))
