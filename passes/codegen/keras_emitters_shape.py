"""codegen-keras emitters for data movement, reductions and leaves (the `asgnas_ir.opdefs.shape_ops` family).

Concat, split, slice, pad, mean/sum and softmax keep their input's layout and remap their axes
through it. Reshape and flatten read their input in the source (logical) layout: row-major order
decides which elements end up where, so a channels-first value held channels-last is transposed
back first, unless that transpose would move no element (`same_memory_order`, e.g. [N, C, 1, 1]).
Permute composes with the held layout into one transpose (none when they cancel). Constants are
`Constant` layers (their values in the weights file); opaque ops are refused.
"""

from __future__ import annotations

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._keras_printer import (
    KerasPrinter,
    channels_last,
    emits,
    float_lit,
    identity,
    inverse,
    same_memory_order,
)
from asgnas_ir.passes.codegen._printer import lit_exact
from asgnas_ir.passes.codegen.keras_emitters_conv import edge_pad


def _axis(p: KerasPrinter, value: str, axis: int) -> int:
    """The physical index of logical `axis` of `value`."""
    return inverse(p.perm[value])[axis]


@emits(Op.CONCAT)
def _concat(p: KerasPrinter, node: NodeBase) -> None:
    rank = p.rank(node.outputs[0])
    perm = next((p.perm[v] for v in node.inputs if p.perm[v] != identity(rank)), identity(rank))
    parts = ", ".join(p.view(v, perm) for v in node.inputs)
    p.assign(node, f"keras.ops.concatenate([{parts}], axis={inverse(perm)[node.attrs.axis]})", perm)  # type: ignore[attr-defined]


@emits(Op.SPLIT)
def _split(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.SplitAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    cuts = [sum(attrs.sizes[: i + 1]) for i in range(len(attrs.sizes) - 1)]
    p.assign(node, f"keras.ops.split({p.x(node)}, {cuts}, axis={_axis(p, value, attrs.axis)})", p.perm[value])


@emits(Op.SLICE)
def _slice(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.SliceAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    step = "" if attrs.step == 1 else f":{attrs.step}"
    start = "" if attrs.start == 0 else str(attrs.start)
    stop = "" if attrs.stop >= p.shape(value)[attrs.axis] else str(attrs.stop)
    index = [":"] * _axis(p, value, attrs.axis) + [f"{start}:{stop}{step}"]
    p.assign(node, f"{p.x(node)}[{', '.join(index)}]", p.perm[value])


def _source_order(p: KerasPrinter, value: str) -> str:
    """`value` with its elements in the source layout's row-major order (transposed only if needed)."""
    if same_memory_order(p.shape(value), p.perm[value]):
        return p.expr[value]
    return p.logical(value)


@emits(Op.RESHAPE, Op.FLATTEN)
def _reshape(p: KerasPrinter, node: NodeBase) -> None:
    x = _source_order(p, node.inputs[0])
    target = p.dims(node.outputs[0])
    if sum(isinstance(d, str) for d in target) > 1:
        raise CodegenError(
            f"node '{node.id}' ({node.op.value}, from '{node.source}') reshapes to {list(target)}: more than one size "
            "follows the inputs, which a Keras functional model cannot compute while it is being built; use the "
            "torch or onnx target, or compile at the batch/sequence length you will deploy"
        )
    shape = tuple(-1 if isinstance(d, str) else d for d in target)  # the one symbolic size: the others fix it
    p.assign(node, f"keras.ops.reshape({x}, {lit_exact(shape)})")


@emits(Op.PERMUTE)
def _permute(p: KerasPrinter, node: NodeBase) -> None:
    """One transpose from the held layout; the output is held channels-last when that cancels it."""
    perm = node.attrs.perm  # type: ignore[attr-defined]
    value = node.inputs[0]
    rank = len(perm)
    held = inverse(p.perm[value])
    candidates = [identity(rank)]
    if p.channels_first and rank >= 3 and p.graph.values[node.outputs[0]].channel_axis == 1:
        candidates.append(channels_last(rank))
    options = [(out, tuple(held[perm[j]] for j in out)) for out in candidates]
    out_perm, axes = next(((o, a) for o, a in options if a == identity(rank)), options[0])
    if axes == identity(rank):
        p.alias(node, p.x(node), out_perm)
    else:
        p.assign(node, f"keras.ops.transpose({p.x(node)}, {lit_exact(axes)})", out_perm)


@emits(Op.PAD)
def _pad(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.PadAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    perm = p.perm[value]
    rank = p.rank(value)
    pairs = [(0, 0)] * (rank - len(attrs.pads)) + [tuple(pair) for pair in attrs.pads]
    width = lit_exact(tuple(pairs[axis] for axis in perm))
    x = p.x(node)
    if attrs.mode == "constant":
        value_arg = f", constant_values={float_lit(attrs.value)}" if attrs.value else ""
        p.assign(node, f"keras.ops.pad({x}, {width}{value_arg})", perm)
    elif attrs.mode == "reflect":
        p.assign(node, f'keras.ops.pad({x}, {width}, mode="reflect")', perm)
    elif attrs.mode == "replicate" and all(a <= 1 and b <= 1 for a, b in pairs):
        p.assign(node, f'keras.ops.pad({x}, {width}, mode="symmetric")', perm)  # one edge row == symmetric
    elif attrs.mode in ("replicate", "circular"):
        p.alias(node, edge_pad(p, node, x, [pairs[axis] for axis in perm], attrs.mode), perm)
    else:
        raise CodegenError(
            f"node '{node.id}' (pad, from '{node.source}') pads with mode '{attrs.mode}', which keras.ops.pad "
            "cannot express on the TensorFlow backend"
        )


@emits(Op.MEAN, Op.SUM)
def _reduce(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.ReduceAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    perm = p.perm[value]
    axes = tuple(sorted(_axis(p, value, a) for a in attrs.axes))
    axis = str(axes[0]) if len(axes) == 1 else lit_exact(axes)
    keep = ", keepdims=True" if attrs.keepdim else ""
    if attrs.keepdim:
        out_perm = perm
    else:  # the remaining axes, renumbered among the kept logical axes
        kept = [a for a in perm if a not in attrs.axes]
        out_perm = tuple(sorted(kept).index(a) for a in kept)
    p.assign(node, f"keras.ops.{node.op.value}({p.x(node)}, axis={axis}{keep})", out_perm)


@emits(Op.SOFTMAX)
def _softmax(p: KerasPrinter, node: NodeBase) -> None:
    value = node.inputs[0]
    p.assign(node, f"keras.ops.softmax({p.x(node)}, axis={_axis(p, value, node.attrs.axis)})", p.perm[value])  # type: ignore[attr-defined]


@emits(Op.CONSTANT)
def _constant(p: KerasPrinter, node: NodeBase) -> None:
    if any(isinstance(d, str) for d in p.dims(node.outputs[0])):
        raise CodegenError(
            f"node '{node.id}' (from '{node.source}') is a constant the source builds at the batch size "
            f"{list(p.dims(node.outputs[0]))}; a Keras functional model cannot read the batch while it is built. "
            "Use the torch or onnx target."
        )
    param_name = node.params["value"]
    param = p.graph.params[param_name]
    expression = p.constant(("param", param_name), p.layer_names_hint(param_name), p.array(node, "value"), param.trainable)
    p.constant_of[node.outputs[0]] = param_name
    p.alias(node, expression, identity(len(param.shape)))


@emits(Op.OPAQUE)
def _opaque(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.OpaqueAttrs = node.attrs  # type: ignore[assignment]
    raise CodegenError(
        f"node '{node.id}' is an opaque {attrs.kind} call ({attrs.target}, from '{node.source}'); codegen-keras cannot "
        "express an op the IR does not know. Add a converter for it (docs/adding_an_op.md)."
    )
