"""codegen-onnx emitters for data movement, reductions and leaves (the `asgnas_ir.opdefs.shape_ops` family).

Concat, Split, Slice, Reshape, Flatten, Transpose and Pad (shapes, axes and pads as named int64
initializers), ReduceMean/ReduceSum and Softmax, constants (an alias of their initializer) and the
refusal of opaque ops. Kept apart from `onnx_codegen` so each file holds one op family; importing
this module registers its emitters in `ONNX_EMITTERS`.
"""

from __future__ import annotations

import numpy as np

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._onnx_printer import OnnxPrinter, emits
from asgnas_ir.passes.codegen._symbols import constant_pattern
from asgnas_ir.passes.codegen.onnx_emitters_conv import _PAD_MODES


@emits(Op.CONCAT)
def _concat(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Concat", [p.values[i] for i in node.inputs], axis=node.attrs.axis)  # type: ignore[attr-defined]


@emits(Op.SPLIT)
def _split(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.SplitAttrs = node.attrs  # type: ignore[assignment]
    p.out(node, "Split", [p.x(node), p.ints(node, "sizes", attrs.sizes)], axis=attrs.axis)


@emits(Op.SLICE)
def _slice(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.SliceAttrs = node.attrs  # type: ignore[assignment]
    p.out(
        node, "Slice",
        [
            p.x(node), p.ints(node, "starts", [attrs.start]), p.ints(node, "ends", [attrs.stop]),
            p.ints(node, "axes", [attrs.axis]), p.ints(node, "steps", [attrs.step]),
        ],
    )


@emits(Op.RESHAPE)
def _reshape(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Reshape", [p.x(node), p.reshape_sizes(node)])


@emits(Op.FLATTEN)
def _flatten(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.FlattenAttrs = node.attrs  # type: ignore[assignment]
    if attrs.start_axis == 1 and attrs.end_axis == len(p.shape(node.inputs[0])) - 1:  # ONNX Flatten is always 2-d
        p.out(node, "Flatten", [p.x(node)], axis=attrs.start_axis)
    else:
        p.out(node, "Reshape", [p.x(node), p.reshape_sizes(node)])


@emits(Op.PERMUTE)
def _permute(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Transpose", [p.x(node)], perm=node.attrs.perm)  # type: ignore[attr-defined]


@emits(Op.PAD)
def _pad(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.PadAttrs = node.attrs  # type: ignore[assignment]
    rank = len(p.shape(node.inputs[0]))
    pairs = [(0, 0)] * (rank - len(attrs.pads)) + list(attrs.pads)
    pads = p.ints(node, "pads", [b for b, _ in pairs] + [a for _, a in pairs])
    if attrs.mode == "constant":
        p.out(node, "Pad", [p.x(node), pads, p.scalar(node, "value", attrs.value)], mode="constant")
    else:
        p.out(node, "Pad", [p.x(node), pads], mode=_PAD_MODES[attrs.mode])


@emits(Op.MEAN, Op.SUM)
def _reduce(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.ReduceAttrs = node.attrs  # type: ignore[assignment]
    op_type = "ReduceMean" if node.op is Op.MEAN else "ReduceSum"
    p.out(node, op_type, [p.x(node), p.ints(node, "axes", attrs.axes)], keepdims=1 if attrs.keepdim else 0)


@emits(Op.SOFTMAX)
def _softmax(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Softmax", [p.x(node)], axis=node.attrs.axis)  # type: ignore[attr-defined]


@emits(Op.CONSTANT)
def _constant(p: OnnxPrinter, node: NodeBase) -> None:
    out = p.graph.values[node.outputs[0]]
    if out.dims is None:
        p.alias(node, p.param(node, "value"))
        return
    # built by the source at the input's size (torch.arange(x.size(1))): rebuilt at the call's
    kind, fill = constant_pattern(p.graph, node)
    dtype = np.dtype(out.dtype)
    if kind == "expand":  # one stored row per symbolic axis, broadcast to the call's size
        ones = [1 if isinstance(d, int) else d for d in out.symbolic]
        # the stored row under its own name: the node's output may share the param's name
        row = p.const(node, "row", p.graph.weights[node.params["value"]])
        p.out(node, "Expand", [row, p.sizes(node, "shape", ones)])
        return
    if kind == "triangle":  # a causal mask: Trilu keeps the lower triangle of `below`, adds `above` on top
        below, above = fill  # type: ignore[misc]
        dims = list(out.symbolic)
        shape = p.sizes(node, "shape", dims)
        ones = p.op(node, "Expand", [p.const(node, "one", np.ones([1] * len(dims), dtype)), shape], "ones")
        lower = p.op(node, "Trilu", [ones], "lower", upper=0)
        mask = p.op(node, "Cast", [lower], "lower_bool", to=_onnx_type(np.dtype(bool)))
        p.out(node, "Where", [mask, p.const(node, "below", below, dtype), p.const(node, "above", above, dtype)])
        return
    if kind == "arange":
        limit = p.op(node, "Squeeze", [p.sizes(node, "length", list(out.symbolic))], "limit")
        p.out(node, "Range", [p.const(node, "start", 0, dtype), p.op(node, "Cast", [limit], "limit_cast", to=_onnx_type(dtype)),
                              p.const(node, "delta", 1, dtype)])
    else:
        p.out(node, "Expand", [p.const(node, "fill", np.full([1] * len(out.shape), fill, dtype)), p.sizes(node, "shape", list(out.symbolic))])


def _onnx_type(dtype: np.dtype) -> int:
    import onnx

    return int(onnx.helper.np_dtype_to_tensor_dtype(dtype))


@emits(Op.OPAQUE)
def _opaque(p: OnnxPrinter, node: NodeBase) -> None:
    attrs: A.OpaqueAttrs = node.attrs  # type: ignore[assignment]
    raise CodegenError(
        f"node '{node.id}' is an opaque {attrs.kind} call ({attrs.target}, from '{node.source}'); codegen-onnx cannot "
        "express an op the IR does not know. Add a converter for it (docs/adding_an_op.md)."
    )
