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
        tq, tk = p.shape(node.inputs[0])[-2], p.shape(node.inputs[1])[-2]
        causal = np.triu(np.full((tq, tk), -np.inf, dtype=np.dtype(p.dtype(node.inputs[0]))), k=1)
        scores = p.op(node, "Add", [scores, p.const(node, "causal_mask", causal)], "causal")
    weights = p.op(node, "Softmax", [scores], "weights", axis=-1)
    p.out(node, "MatMul", [weights, v])


@emits(Op.EXPAND)
def _expand(p: OnnxPrinter, node: NodeBase) -> None:
    p.out(node, "Expand", [p.x(node), p.ints(node, "shape", p.shape(node.outputs[0]))])
