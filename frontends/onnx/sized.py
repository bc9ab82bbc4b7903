"""Constants that follow the inputs' sizes: kept as something generated code can rebuild at any size.

NOTE: [Sized constants] The driver folds everything computable at lowering time, which for an
export with a dynamic batch and sequence length (`export._dynamic_axes`) includes what the model
builds from its input's sizes: position ids (`arange(S)`), a causal mask ([B, 1, S, S] from
comparisons of ranges), rotary tables (`cos(arange(S)[:, None] * inv_freq)`). Folded, each is the
example's array; generated code must rebuild it at the size it is called with (DESIGN §2), and
codegen can rebuild only a few kinds of array (`passes/codegen/_symbols.constant_pattern`): a
range, one value everywhere, a causal triangle, one row expanded. The exporter says which values
follow the inputs' sizes: `torch.export` tracks sizes symbolically and the dynamo exporter writes
those symbols as `dim_param`s of each value's declared type (`symbolic_axes`). So, where a folded
value that follows the sizes is read by a run-time node:

- an axis it is constant along (the batch of a causal mask, every axis of a filled array) is
  stored at size 1 and expanded back (an `expand` node), so the stored part does not grow with it;
- what remains must be a range along one axis (stored 1-d: `arange(S)`, then reshaped) or a
  causal triangle over its last two axes;
- anything else (a rotary table) is not folded: the nodes that computed it are lowered as
  run-time nodes, back to the sized values they read that can be rebuilt (`unfold_sized`). The
  table is then computed in the generated code from `arange(S)` and the model's `inv_freq`, as the
  model computes it. Where a node on that way has no converter, the value stays folded and codegen
  names it (the graph is right at the example's sizes only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from asgnas_ir.frontends.onnx.builder import Const
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

if TYPE_CHECKING:
    from asgnas_ir.frontends.onnx.builder import Builder


def symbolic_axes(model: onnx.ModelProto) -> dict[str, frozenset[int]]:
    """Value name -> the axes its type gives as symbols (`dim_param`): as the file declares them,
    completed by ONNX shape inference on the file's own (symbolic) input shapes for the values it
    declares nothing for (the exporter's decompositions: attention's mask `Where`)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=False)
    except Exception:  # noqa: BLE001  (inference errors come as several types; the declared types still serve)
        inferred = model
    found: dict[str, frozenset[int]] = {}
    g = inferred.graph
    for info in [*g.input, *g.value_info, *g.output]:
        ttype = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not ttype.HasField("shape"):
            continue
        axes = frozenset(i for i, d in enumerate(ttype.shape.dim) if d.HasField("dim_param"))
        if axes:
            found[info.name] = axes
    return found


def _invariant(array: np.ndarray, axis: int) -> bool:
    return bool(np.array_equal(array, np.broadcast_to(np.take(array, [0], axis=axis), array.shape)))


def _is_range(array: np.ndarray, axis: int) -> bool:
    """0, 1, 2, ... along `axis`, every other axis of size 1."""
    if any(size != 1 for i, size in enumerate(array.shape) if i != axis):
        return False
    return bool(np.array_equal(array.reshape(-1), np.arange(array.shape[axis])))


def _is_triangle(array: np.ndarray) -> bool:
    """One value on and below the diagonal of the last two axes, another above (a causal mask)."""
    if array.ndim < 2 or any(size != 1 for size in array.shape[:-2]) or array.shape[-1] < 2 or array.shape[-2] < 2:
        return False
    square = array.reshape(array.shape[-2:])
    lower = np.tril(np.ones(square.shape, dtype=bool))
    below, above = square[lower], square[~lower]
    return bool(np.all(below == below[0]) and np.all(above == above[0]))


def plan(array: np.ndarray, axes: frozenset[int]) -> tuple[tuple[int, ...], str] | None:
    """How a constant whose `axes` follow the inputs' sizes is rebuilt: the axes stored at size 1
    (expanded back) and what is stored ("plain", "range" or "triangle"); None when it cannot be."""
    axes = frozenset(a for a in axes if a < array.ndim)
    reduced = tuple(a for a in sorted(axes) if _invariant(array, a))
    stored = array
    for axis in reduced:
        stored = np.take(stored, [0], axis=axis)
    left = sorted(axes - set(reduced))
    if not left:
        return reduced, "plain"
    if len(left) == 1 and _is_range(stored, left[0]):
        return reduced, "range"
    if left == [array.ndim - 2, array.ndim - 1] and _is_triangle(stored):
        return reduced, "triangle"
    return None


def materialize(b: Builder, const: Const, name: str, axes: frozenset[int], make: Callable[[Const, str], str]) -> str | None:
    """The IR value rebuilding sized constant `const` (NOTE: [Sized constants]), or None when it
    cannot be rebuilt; `make` lowers a constant that follows no size (`Builder.constant_node`)."""
    array = np.asarray(const.array)
    found = plan(array, axes)
    if found is None:
        return None
    reduced, kind = found
    stored = array
    for axis in reduced:
        stored = np.take(stored, [0], axis=axis)
    if kind == "range":  # stored 1-d, the one form codegen rebuilds as `arange`
        out = make(Const(np.ascontiguousarray(stored.reshape(-1))), name if stored.ndim == 1 else f"{name}_range")
        if stored.ndim != 1:
            out = b.emit(Op.RESHAPE, [out], A.ReshapeAttrs(shape=tuple(stored.shape)), name=f"{name}_shaped", check=False)
    else:
        out = make(Const(np.ascontiguousarray(stored)), name)
    if reduced:
        out = b.emit(Op.EXPAND, [out], A.ExpandAttrs(shape=tuple(int(d) for d in array.shape)), name=f"{name}_expanded", check=False)
    return out


# inputs converters read as numbers (shapes, axes, indices, bounds), never as tensors of the graph
_CONSTANT_INPUTS = {
    "Reshape": {1}, "Expand": {1}, "Unsqueeze": {1}, "Squeeze": {1}, "Slice": {1, 2, 3, 4}, "Pad": {1, 2, 3},
    "Tile": {1}, "Split": {1}, "GatherND": {1}, "Resize": {1, 2, 3}, "ConstantOfShape": {0}, "Range": {0, 1, 2},
    "ReduceMean": {1}, "ReduceSum": {1}, "ReduceMax": {1}, "ReduceL2": {1}, "ReduceSumSquare": {1}, "TopK": {1},
}


def _read_as_constant(node: onnx.NodeProto, index: int, env: dict[str, Any]) -> bool:
    if index in _CONSTANT_INPUTS.get(node.op_type, ()):
        return True
    # Gather of run-time data at constant indices is a slice; of a constant table, a lookup whose
    # indices (position ids) are a tensor
    return node.op_type == "Gather" and index == 1 and not isinstance(env.get(node.input[0]), Const)


def unfold_sized(
    nodes: list[onnx.NodeProto],
    folded: set[int],
    env: dict[str, Any],
    sized: dict[str, frozenset[int]],
    outputs: list[str],
    convertible: Callable[[onnx.NodeProto], bool],
) -> set[int]:
    """Ids of the folded nodes to lower at run time instead (NOTE: [Sized constants]): those that
    computed a sized constant read by a run-time node (or a graph output) that `plan` cannot
    rebuild, back to the constants that can be. A way back through a node without a converter
    leaves that constant folded."""
    producer = {out: node for node in nodes for out in node.output if out}

    def needs_unfolding(name: str) -> bool:
        value = env.get(name)
        node = producer.get(name)
        return (isinstance(value, Const) and name in sized and node is not None and id(node) in folded
                and plan(np.asarray(value.array), sized[name]) is None)

    boundary = [name for node in nodes if id(node) not in folded
                for i, name in enumerate(node.input) if name and not _read_as_constant(node, i, env)]
    boundary += outputs
    unfolded: set[int] = set()
    for start in boundary:
        if not needs_unfolding(start) or id(producer[start]) in unfolded:
            continue
        closure: dict[int, onnx.NodeProto] = {}
        stack = [producer[start]]
        ok = True
        while stack and ok:
            node = stack.pop()
            if id(node) in closure or id(node) in unfolded:
                continue
            if not convertible(node):
                ok = False
                break
            closure[id(node)] = node
            stack.extend(producer[name] for name in node.input if name and needs_unfolding(name))
        if ok:
            unfolded.update(closure)
    return unfolded
