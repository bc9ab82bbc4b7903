"""Channel-axis decisions a frontend makes once the whole graph is lowered, shared by all frontends.

Shape inference reads each op locally. Two readings need the graph around a value:
- a rank-3 float input is NCL for Conv1d/BatchNorm1d but [batch, tokens, features] for Linear and
  LayerNorm; what reads it decides (`choose_sequence_layout`);
- a packed projection reshaped [.., 3E] -> [.., 3, E] (or [.., 3, H, Dh]) reads by default on its
  outermost factor: three blocks (all of q, all of k, all of v), which ties every attention head
  together. When q, k and v are then picked apart along that axis (slices or a split of size 1,
  through permutes and unsqueezes), the next factor's reading is exact and keeps heads apart
  (`read_packed_splits_on_features`).
After changing a value's channel axis, every value type is inferred again from the inputs.
"""

from __future__ import annotations

from asgnas_ir.ir.graph import Graph, Param, Value
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs._opdef import factor_axes

_LAST_AXIS_OPS = {Op.LINEAR, Op.LAYER_NORM}
_CHANNEL_FIRST_OPS = {Op.CONV, Op.CONV_TRANSPOSE, Op.BATCH_NORM, Op.INSTANCE_NORM, Op.GROUP_NORM, Op.MAX_POOL, Op.AVG_POOL}


def _reinfer(values: dict[str, Value], params: dict[str, Param], nodes: list[NodeBase], keep: dict[str, Value]) -> None:
    from asgnas_ir.passes.analysis.shape_inference import infer_values

    seeds = dict(keep)
    for node in nodes:  # an opaque op has no shape rule: its outputs keep the types the frontend recorded
        if node.op is Op.OPAQUE:
            seeds.update({out: values[out] for out in node.outputs})
    draft = Graph.model_construct(inputs=list(keep), outputs=[], values=seeds, params=params, nodes=nodes)
    values.update(infer_values(draft))


def choose_sequence_layout(values: dict[str, Value], params: dict[str, Param], nodes: list[NodeBase], inputs: list[str]) -> None:
    """Rank-3 float inputs read by Linear/LayerNorm and no channels-first op are sequences: channel axis last."""
    changed = False
    for name in inputs:
        value = values[name]
        if len(value.shape) != 3 or value.channel_axis != 1:
            continue
        readers = {node.op for node in nodes if name in node.inputs}
        if readers & _LAST_AXIS_OPS and not readers & _CHANNEL_FIRST_OPS:
            values[name] = value.model_copy(update={"channel_axis": 2})
            changed = True
    if changed:
        _reinfer(values, params, nodes, {name: values[name] for name in inputs})


def _squeeze_map(in_shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int) -> int | None:
    """Where `axis` goes through a reshape that only adds or drops size-1 axes (None otherwise)."""
    kept_in = [i for i, d in enumerate(in_shape) if d != 1]
    kept_out = [i for i, d in enumerate(out_shape) if d != 1]
    if [in_shape[i] for i in kept_in] != [out_shape[i] for i in kept_out] or axis not in kept_in:
        return None
    return kept_out[kept_in.index(axis)]


def _picked_apart(value: str, axis: int, users: dict[str, list[NodeBase]], values: dict[str, Value]) -> bool:
    """Every path from `value` moves `axis` around and ends in a size-1 slice or split of it."""
    consumers = users.get(value, [])
    if not consumers:
        return False
    for node in consumers:
        shape = values[value].shape
        if node.op is Op.PERMUTE:
            ok = _picked_apart(node.outputs[0], node.attrs.perm.index(axis), users, values)  # type: ignore[attr-defined]
        elif node.op is Op.RESHAPE:
            moved = _squeeze_map(shape, values[node.outputs[0]].shape, axis)
            ok = moved is not None and _picked_apart(node.outputs[0], moved, users, values)
        elif node.op is Op.SLICE:
            ok = node.attrs.axis == axis and values[node.outputs[0]].shape[axis] == 1  # type: ignore[attr-defined]
        elif node.op is Op.SPLIT:
            ok = node.attrs.axis == axis and set(node.attrs.sizes) == {1}  # type: ignore[attr-defined]
        else:
            ok = False
        if not ok:
            return False
    return True


def read_packed_splits_on_features(values: dict[str, Value], params: dict[str, Param], nodes: list[NodeBase], inputs: list[str]) -> None:
    """Switch [.., kE] -> [.., k, E] reshapes whose k copies are picked apart to the strided reading."""
    users: dict[str, list[NodeBase]] = {}
    for node in nodes:
        for name in node.inputs:
            users.setdefault(name, []).append(node)
    chosen: dict[str, Value] = {}
    for node in nodes:
        if node.op is not Op.RESHAPE:
            continue
        x, out = values[node.inputs[0]], values[node.outputs[0]]
        if x.channel_axis is None or out.channel_axis is None:
            continue
        factors = factor_axes(x.shape, x.channel_axis, out.shape)
        if len(factors) < 2 or out.channel_axis != factors[0]:
            continue  # not split, or not read on its outermost factor
        if _picked_apart(node.outputs[0], factors[0], users, values):
            chosen[node.outputs[0]] = out.model_copy(update={"channel_axis": factors[1]})
    if chosen:
        _reinfer(values, params, nodes, {**{name: values[name] for name in inputs}, **chosen})
