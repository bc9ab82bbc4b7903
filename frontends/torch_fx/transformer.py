"""Converters for transformer building blocks: embeddings, matmul, scaled-dot-product attention,
`nn.MultiheadAttention`, broadcasting and tensor factories.

`nn.MultiheadAttention` is lowered to the ops it is made of (packed q/k/v projection, split, head
reshape, attention, head merge, output projection) so that the dependency graph sees each head and
the generated code can shrink the head count. The attention-weights output is not lowered; code that
reads it is refused with a message.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx
from torch import nn

from asgnas_ir.frontends.torch_fx.builder import Builder
from asgnas_ir.frontends.torch_fx.functions import (
    FUNCTIONS,
    _get,
    _observed_shape,
    bind,
    constant_param,
    reshape_to,
)
from asgnas_ir.frontends.torch_fx.methods import METHODS
from asgnas_ir.frontends.torch_fx.modules import MODULES
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

F = "torch.nn.functional"


@MODULES.register(nn.Embedding)
def embedding_module(b: Builder, node: torch.fx.Node) -> str:
    """Embedding(num_embeddings, embedding_dim, padding_idx=None, max_norm=None, ...)"""
    m: nn.Embedding = b.module(node)  # type: ignore[assignment]
    if m.max_norm is not None:
        raise b.fail("Embedding with max_norm renormalises its table while running; it cannot be lowered")
    params = b.module_params(str(node.target), m, {"weight": "VO"})
    attrs = A.EmbeddingAttrs(num_embeddings=m.num_embeddings, dim=m.embedding_dim)
    return b.emit(Op.EMBEDDING, [b.args(node)[0][0]], attrs, params)


@FUNCTIONS.register(f"{F}.embedding")
def embedding(b: Builder, node: torch.fx.Node) -> Any:
    """embedding(input, weight, padding_idx=None, max_norm=None, ...)"""
    args, kwargs = b.args(node)
    if _get(args, kwargs, 3, "max_norm") is not None:
        raise b.fail("embedding with max_norm renormalises its table while running; it cannot be lowered")
    weight = constant_param(b, _get(args, kwargs, 1, "weight"), "VO")
    shape = b.params[weight].shape  # type: ignore[index]
    attrs = A.EmbeddingAttrs(num_embeddings=shape[0], dim=shape[1])
    return b.emit(Op.EMBEDDING, [_get(args, kwargs, 0, "input")], attrs, {"weight": weight})  # type: ignore[dict-item]


@FUNCTIONS.register("torch.matmul", "operator.matmul", "torch.bmm")
def matmul(b: Builder, node: torch.fx.Node) -> Any:
    """matmul(input, other) / input @ other / bmm(input, mat2)"""
    bmm = str(getattr(node.target, "__name__", node.target)) == "bmm"
    call = bind(b, node, ("input", "mat2") if bmm else ("input", "other"))
    lhs, rhs = call.get("input"), call.get("mat2" if bmm else "other")
    if not (b.is_tensor(lhs) and b.is_tensor(rhs)):
        raise b.fail("matmul needs two tensors")
    if len(b.value(lhs).shape) < 2 or len(b.value(rhs).shape) < 2:
        raise b.fail("matmul with a vector operand is not supported; unsqueeze it to a matrix first")
    return b.emit(Op.MATMUL, [lhs, rhs])


METHODS.add(["matmul", "__matmul__", "bmm"], matmul)


@FUNCTIONS.register(f"{F}.scaled_dot_product_attention")
def scaled_dot_product_attention(b: Builder, node: torch.fx.Node) -> Any:
    """scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False)"""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    # the functional form drops attention weights whenever dropout_p > 0, in eval mode too
    bind(b, node, names, fixed={"dropout_p": 0.0})
    args, kwargs = b.args(node)
    q, k, v = (_get(args, kwargs, i, name) for i, name in enumerate(("query", "key", "value")))
    mask = _get(args, kwargs, 3, "attn_mask")
    if _get(args, kwargs, 7, "enable_gqa", False):
        k, v = (_repeat_kv_heads(b, node, t, b.value(q).shape, role) for t, role in ((k, "k"), (v, "v")))
    # Multi-query attention (one key/value head for all query heads) relies on broadcasting: the
    # IR's attention takes the heads explicitly, so k and v are expanded to the query's head count.
    k, v = (_broadcast_heads(b, node, t, b.value(q).shape, role) for t, role in ((k, "k"), (v, "v")))
    inputs = [q, k, v]
    if mask is not None:
        if not b.is_tensor(mask) or not b.value(mask).dtype.startswith("float"):
            raise b.fail("attn_mask must be a float tensor (added to the scores); turn a boolean mask into 0/-inf first")
        inputs.append(mask)
    scale = _get(args, kwargs, 6, "scale")
    scale = 1.0 / math.sqrt(b.value(q).shape[-1]) if scale is None else float(scale)
    return b.emit(Op.ATTENTION, inputs, A.AttentionAttrs(scale=scale, causal=bool(_get(args, kwargs, 5, "is_causal", False))))


def _repeat_kv_heads(b: Builder, node: torch.fx.Node, t: str, q_shape: tuple[int, ...], role: str) -> str:
    """enable_gqa: query head h reads key/value head h // (Hq / Hkv). Written out as Hugging Face's
    `repeat_kv` (a new axis after the heads, expanded, merged back), so the dependency graph ties each
    KV head to the query heads that share it and generated code repeats the pruned head counts."""
    shape = b.value(t).shape
    if len(shape) < 3 or len(shape) != len(q_shape):
        raise b.fail(f"scaled_dot_product_attention with enable_gqa=True needs {role} of the query's rank "
                     f"[..., heads, tokens, dim]; got {role} {list(shape)} and query {list(q_shape)}")
    axis = len(shape) - 3
    heads, kv_heads = q_shape[axis], shape[axis]
    if kv_heads == heads:
        return t
    if heads % kv_heads:
        raise b.fail(f"scaled_dot_product_attention with enable_gqa=True: {heads} query heads cannot share "
                     f"{kv_heads} {role} heads evenly; the query head count must be a multiple of it")
    times = heads // kv_heads
    grown = reshape_to(b, t, (*shape[: axis + 1], 1, *shape[axis + 1 :]), name=f"{node.name}_{role}_grown")
    copies = b.emit(Op.EXPAND, [grown], A.ExpandAttrs(shape=(*shape[: axis + 1], times, *shape[axis + 1 :])),
                    name=f"{node.name}_{role}_copies")
    return reshape_to(b, copies, (*shape[:axis], heads, *shape[axis + 1 :]), name=f"{node.name}_{role}_heads")


def _broadcast_heads(b: Builder, node: torch.fx.Node, t: str, q_shape: tuple[int, ...], role: str) -> str:
    shape = b.value(t).shape
    if len(shape) != len(q_shape) or len(shape) < 3:
        return t
    target = tuple(qd if d == 1 and qd != 1 and i < len(shape) - 2 else d for i, (d, qd) in enumerate(zip(shape, q_shape, strict=True)))
    if target == shape:
        return t
    return b.emit(Op.EXPAND, [t], A.ExpandAttrs(shape=target), name=f"{node.name}_{role}_heads")


@METHODS.register("expand", "expand_as", "broadcast_to")
def expand(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.expand(*sizes) / expand_as(other) / broadcast_to(shape): the shape torch produced"""
    x = b.args(node)[0][0]
    shape = _observed_shape(b, node)
    if shape == b.value(x).shape:
        return x
    return b.emit(Op.EXPAND, [x], A.ExpandAttrs(shape=shape))


FUNCTIONS.add(["torch.broadcast_to"], expand)


@FUNCTIONS.register("torch.arange", "torch.zeros", "torch.ones", "torch.full", "torch.eye")
def factory(b: Builder, node: torch.fx.Node) -> Any:
    """arange/zeros/ones/full/eye built inside forward from Python values: a constant of the graph"""
    args, kwargs = b.args(node)
    if any(b.is_tensor(a) for a in [*args, *kwargs.values()]):
        raise b.fail(f"{node.target.__name__} from tensor arguments is not supported")  # type: ignore[union-attr]
    with torch.no_grad():
        tensor = node.target(*args, **kwargs)  # type: ignore[operator]
    param = b.add_param(f"{node.name}", tensor, None, trainable=False)
    return b.emit(Op.CONSTANT, [], params={"value": param})


@MODULES.register(nn.MultiheadAttention)
def multihead_attention(b: Builder, node: torch.fx.Node) -> Any:
    """MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False, kdim=None, vdim=None, batch_first=False)
    called as (query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False)"""
    m: nn.MultiheadAttention = b.module(node)  # type: ignore[assignment]
    path = str(node.target)
    args, kwargs = b.args(node)
    query, key, value = (_get(args, kwargs, i, name) for i, name in enumerate(("query", "key", "value")))
    if not (query == key == value):
        raise b.fail("only self-attention (query, key and value the same tensor) is supported for nn.MultiheadAttention")
    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise b.fail("nn.MultiheadAttention with kdim/vdim, add_bias_kv or add_zero_attn is not supported")
    if _get(args, kwargs, 3, "key_padding_mask") is not None:
        raise b.fail("key_padding_mask is not supported; fold it into a float attn_mask")
    for user in node.users:
        if user.op == "call_function" and user.target.__name__ == "getitem" and user.args[1] != 0 and user.users:  # type: ignore[union-attr]
            raise b.fail("the attention-weights output of nn.MultiheadAttention is not supported; call it with need_weights=False")
    mask = _get(args, kwargs, 5, "attn_mask")
    x = query
    if not m.batch_first:
        x = b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=(1, 0, 2)), source=path, name=f"{node.name}_batch_first")
    batch, tokens, embed = b.value(x).shape
    heads, head_dim = m.num_heads, m.head_dim
    projection = {"weight": b.add_param(f"{path}.in_proj_weight", m.in_proj_weight, "OI")}
    if m.in_proj_bias is not None:
        projection["bias"] = b.add_param(f"{path}.in_proj_bias", m.in_proj_bias, "O")
    base = node.name
    qkv = b.emit(Op.LINEAR, [x], None, projection, source=f"{path}.in_proj", name=f"{base}_qkv")
    parts = b.emit(Op.SPLIT, [qkv], A.SplitAttrs(axis=2, sizes=(embed, embed, embed)), outputs=3, source=path, name=f"{base}_split")
    split_heads = []
    for part, role in zip(parts, "qkv", strict=True):
        shaped = b.emit(Op.RESHAPE, [part], A.ReshapeAttrs(shape=(batch, tokens, heads, head_dim)), source=path, name=f"{base}_{role}")
        split_heads.append(b.emit(Op.PERMUTE, [shaped], A.PermuteAttrs(perm=(0, 2, 1, 3)), source=path, name=f"{base}_{role}_heads"))
    if mask is not None:
        if not b.value(mask).dtype.startswith("float"):
            raise b.fail("attn_mask must be a float tensor (added to the scores); turn a boolean mask into 0/-inf first")
        if len(b.value(mask).shape) == 3:
            mask = b.emit(Op.RESHAPE, [mask], A.ReshapeAttrs(shape=(batch, heads, tokens, tokens)), source=path, name=f"{base}_mask")
        split_heads.append(mask)
    attrs = A.AttentionAttrs(scale=1.0 / math.sqrt(head_dim), causal=False)
    attended = b.emit(Op.ATTENTION, split_heads, attrs, source=path, name=f"{base}_attention")
    merged = b.emit(Op.PERMUTE, [attended], A.PermuteAttrs(perm=(0, 2, 1, 3)), source=path, name=f"{base}_tokens")
    merged = b.emit(Op.RESHAPE, [merged], A.ReshapeAttrs(shape=(batch, tokens, embed)), source=path, name=f"{base}_merged")
    out_params = b.module_params(f"{path}.out_proj", m.out_proj, {"weight": "OI", "bias": "O"})
    out = b.emit(Op.LINEAR, [merged], None, out_params, source=f"{path}.out_proj", name=f"{base}_out")
    if not m.batch_first:
        out = b.emit(Op.PERMUTE, [out], A.PermuteAttrs(perm=(1, 0, 2)), source=path, name=f"{base}_sequence_first")
    return (out, None)
