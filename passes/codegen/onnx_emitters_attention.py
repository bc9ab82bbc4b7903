"""codegen-onnx emitters for the transformer ops (the `asgnas_ir.opdefs.attention` family).

Embedding as Gather on the (transposed if need be) table, MatMul of two activations, attention
decomposed into MatMul, Transpose, Mul, Add and Softmax (the causal mask a constant initializer),
and Expand to the output shape. Kept apart from `onnx_codegen` so each file holds one op family;
importing this module registers its emitters in `ONNX_EMITTERS`.
"""

from __future__ import annotations

import numpy as np

from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._onnx_printer import OnnxPrinter, emits


@emits(Op.EMBEDDING)
def _embedding(p: OnnxPrinter, node: NodeBase) -> None:
    info = p.param_info(node, "weight")
    weight = p.param(node, "weight")
    if info.axes and info.axes[0] != "V" and "V" in info.axes:
        weight = p.op(node, "Transpose", [weight], "weight_t", perm=[1, 0])
    p.out(node, "Gather", [weight, p.x(node)], axis=0)


@emits(Op.MATMUL)
def _matmul(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "MatMul", [p.x(node, 0), p.x(node, 1)])


@emits(Op.ATTENTION)
def _attention(p: OnnxPrinter, node: NodeBase) -> None:
    """softmax(q @ k^T * scale + mask [+ causal]) @ v, decomposed; the causal mask is an initializer."""
    attrs: A.AttentionAttrs = node.attrs  # type: ignore[assignment]
    q, k, v = p.x(node, 0), p.x(node, 1), p.x(node, 2)
    rank = len(p.shape(node.inputs[1]))
    perm = [*range(rank - 2), rank - 1, rank - 2]
    k_t = p.op(node, "Transpose", [k], "k_t", perm=perm)
    scores = p.op(node, "MatMul", [q, k_t], "scores")
    scores = p.op(node, "Mul", [scores, p.scalar(node, "scale", attrs.scale)], "scaled")
    if len(node.inputs) > 3:
        mask_name = node.inputs[3]
        mask = p.x(node, 3)
        if p.dtype(mask_name) == "bool":  # True = attend, as torch's scaled_dot_product_attention
            zero, neg_inf = p.scalar(node, "zero", 0.0), p.scalar(node, "neg_inf", -np.inf)
            mask = p.op(node, "Where", [mask, zero, neg_inf], "mask")
        scores = p.op(node, "Add", [scores, mask], "masked")
    if attrs.causal:
        tq, tk = p.graph.values[node.inputs[0]].symbolic[-2], p.graph.values[node.inputs[1]].symbolic[-2]
        dtype = np.dtype(p.dtype(node.inputs[0]))
        if isinstance(tq, int) and isinstance(tk, int):
            mask = p.const(node, "causal_mask", np.triu(np.full((tq, tk), -np.inf, dtype=dtype), k=1))
        else:  # the sequence length is symbolic: -inf above the diagonal of a mask built at the call's size
            filled = p.op(node, "Expand", [p.const(node, "neg_inf", np.full((1, 1), -np.inf, dtype=dtype)), p.sizes(node, "mask_shape", [tq, tk])], "filled")
            mask = p.op(node, "Trilu", [filled, p.ints(node, "diagonal", [1]) if False else p.const(node, "k", 1, np.int64)], "causal_mask", upper=1)
        scores = p.op(node, "Add", [scores, mask], "causal")
    weights = p.op(node, "Softmax", [scores], "weights", axis=-1)
    p.out(node, "MatMul", [weights, v])


@emits(Op.EXPAND)
def _expand(p: OnnxPrinter, node: NodeBase) -> None:
    source, target = p.graph.values[node.inputs[0]].symbolic, p.graph.values[node.outputs[0]].symbolic
    offset = len(target) - len(source)
    # 1 keeps an axis the input has at that size already (Expand broadcasts both ways)
    sizes = [1 if axis >= offset and source[axis - offset] == dim else dim for axis, dim in enumerate(target)]
    p.out(node, "Expand", [p.x(node), p.sizes(node, "shape", sizes)])
