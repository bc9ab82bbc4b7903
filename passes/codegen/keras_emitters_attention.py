"""codegen-keras emitters for the transformer ops (the `asgnas_ir.opdefs.attention` family).

Embedding as an Embedding layer, matmul as `keras.ops.matmul`, attention decomposed as
softmax(q @ k^T * scale (+ mask) (+ causal mask)) @ v with the IR's explicit scale (the layout is
torch's [B, H, T, D], not `keras.ops.dot_product_attention`'s [B, T, H, D]), and expand as
`keras.ops.broadcast_to`. All of them read their inputs in the logical layout.
"""

from __future__ import annotations

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._keras_printer import KerasPrinter, emits
from asgnas_ir.passes.codegen._printer import lit, lit_exact


@emits(Op.EMBEDDING)
def _embedding(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.EmbeddingAttrs = node.attrs  # type: ignore[assignment]
    table = p.array(node, "weight")  # [num_embeddings, dim] by the op's definition
    layer = p.layer(node, "Embedding", str(attrs.num_embeddings), str(attrs.dim), weights={"embeddings": table})
    p.assign(node, f"{layer}({p.logical(node.inputs[0])})")


@emits(Op.MATMUL)
def _matmul(p: KerasPrinter, node: NodeBase) -> None:
    p.assign(node, f"keras.ops.matmul({p.logical(node.inputs[0])}, {p.logical(node.inputs[1])})")


@emits(Op.ATTENTION)
def _attention(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.AttentionAttrs = node.attrs  # type: ignore[assignment]
    q, k, v = (p.logical(node.inputs[i]) for i in range(3))
    scores = p.line(node, "scores", f"keras.ops.matmul({q}, keras.ops.swapaxes({k}, -1, -2)) * {lit(float(attrs.scale))}")
    if len(node.inputs) > 3:
        mask = p.logical(node.inputs[3])
        if p.graph.values[node.inputs[3]].dtype == "bool":  # True = attend, as torch's scaled_dot_product_attention
            mask = f'keras.ops.where({mask}, 0.0, float("-inf"))'
        scores = p.line(node, "masked", f"{scores} + {mask}")
    if attrs.causal:
        tq, tk = p.shape(node.inputs[0])[-2], p.shape(node.inputs[1])[-2]
        scores = p.line(node, "causal", f'{scores} + keras.ops.triu(keras.ops.full({lit_exact((tq, tk))}, float("-inf")), 1)')
    weights = p.line(node, "weights", f"keras.ops.softmax({scores}, axis=-1)")
    p.assign(node, f"keras.ops.matmul({weights}, {v})")


@emits(Op.EXPAND)
def _expand(p: KerasPrinter, node: NodeBase) -> None:
    target = p.dims(node.outputs[0])
    source = p.dims(node.inputs[0])
    grown = [d for axis, d in enumerate(target) if isinstance(d, str) and (axis - len(target) + len(source) < 0 or source[axis - len(target) + len(source)] != d)]
    if grown and (grown != ["N"] or target[0] != "N"):
        raise CodegenError(
            f"node '{node.id}' (expand, from '{node.source}') broadcasts to the symbolic size(s) {grown}, which a Keras "
            "functional model cannot read while it is being built; use the torch or onnx target"
        )
    if grown:
        # to the batch (a class token): a functional model cannot read the batch size, but it can add a zero
        # of shape (N, 1, ..., 1) computed from the first input, which broadcasts every row into place
        x = p.logical(node.inputs[0])
        first = p.graph.inputs[0]
        rest = tuple(range(1, len(p.shape(first))))
        zeros = f"keras.ops.zeros_like({p.expr[first]})"
        if rest:
            zeros = f"keras.ops.sum({zeros}, axis={lit_exact(rest)})"
        column = p.line(node, "batch_zeros", f"keras.ops.cast(keras.ops.reshape({zeros}, {lit_exact((-1,) + (1,) * (len(target) - 1))}), {x}.dtype)")
        ones = tuple(1 if isinstance(d, str) else d for d in target)
        p.assign(node, f"{x} + {column} + keras.ops.zeros({lit_exact(ones)}, dtype={x}.dtype)")
        return
    if target != tuple(p.shape(node.outputs[0])):
        # the symbolic axes are the input's own: grow the others by adding zeros of size 1 on those
        ones = tuple(1 if isinstance(d, str) else d for d in target)
        x = p.logical(node.inputs[0])
        p.assign(node, f"{x} + keras.ops.zeros({lit_exact(ones)}, dtype={x}.dtype)")
        return
    p.assign(node, f"keras.ops.broadcast_to({p.logical(node.inputs[0])}, {lit_exact(p.shape(node.outputs[0]))})")
