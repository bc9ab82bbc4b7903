"""Converters for Embedding and MultiHeadAttention.

`MultiHeadAttention` (self-attention) is lowered to its parts, as the torch.fx frontend does for
`nn.MultiheadAttention`: the q, k and v projections (their (E, H, Dh) EinsumDense kernels read as
(E, H*Dh) `IO` linear weights), the head reshape [B, T, H, Dh] and permute, attention with scale
1/sqrt(Dh), the merge back to [B, T, H*Dh] and the output projection ((H, Dh, E) read as
(H*Dh, E)). Each head is then one channel group: its q/k/v rows and its output columns.
"""

from __future__ import annotations

import math
from typing import Any

from keras import layers as L

from asgnas_ir.frontends.keras.builder import Builder
from asgnas_ir.frontends.keras.layers import LAYERS
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


@LAYERS.register(L.Embedding)
def embedding(b: Builder, layer: Any, xs: list[str]) -> str:
    """Embedding(input_dim, output_dim, mask_zero=False)"""
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        raise b.fail("quantized or LoRA Embedding layers are not supported")
    table = layer.embeddings
    weight = b.add_param(table, "VO")
    attrs = A.EmbeddingAttrs(num_embeddings=int(table.shape[0]), dim=int(table.shape[1]))
    return b.emit(Op.EMBEDDING, xs, attrs, {"weight": weight})


def _no_lora(b: Builder, dense: Any) -> None:
    # A head-shaped LoRA kernel (E, H, r) @ (r, Dh) mixes the lines of a head's (E, H*Dh) view, so the
    # effective kernel could not be zeroed or written back through its variables.
    if getattr(dense, "lora_enabled", False):
        raise b.fail(f"LoRA on the MultiHeadAttention projection '{dense.name}' is not supported; merge it into the kernel first")


def _projection(b: Builder, dense: Any, x: str, role: str) -> str:
    _no_lora(b, dense)
    kernel = dense.kernel
    shape = tuple(int(d) for d in kernel.shape)
    if dense.equation != "abc,cde->abde" or len(shape) != 3:
        raise b.fail(f"MultiHeadAttention {role} projection '{dense.equation}' is not supported (rank-3 inputs only)")
    params = {"weight": b.add_param(kernel, "IO")}
    if dense.bias is not None:
        params["bias"] = b.add_param(dense.bias, "O")
    # the sublayer's own unique key (`query`, `key`, ... under this layer), as its weights are named
    y = b.emit(Op.LINEAR, [x], None, params, source=params["weight"].rsplit("/", 1)[0], name=f"{b.source}_{role}")
    batch, tokens = b.value(x).shape[:2]
    y = b.emit(Op.RESHAPE, [y], A.ReshapeAttrs(shape=(batch, tokens, shape[1], shape[2])), name=f"{b.source}_{role}_split")
    return b.emit(Op.PERMUTE, [y], A.PermuteAttrs(perm=(0, 2, 1, 3)), name=f"{b.source}_{role}_heads")


@LAYERS.register(L.MultiHeadAttention)
def multi_head_attention(b: Builder, layer: Any, xs: list[str]) -> str:
    """MultiHeadAttention(num_heads, key_dim, value_dim=None, use_bias=True, output_shape=None, attention_axes=None)
    called as (query, value, key=None, attention_mask=None, return_attention_scores=False, use_causal_mask=False)"""
    args, kwargs = b.call_args, b.call_kwargs
    query = args[0] if args else kwargs.get("query")
    value = args[1] if len(args) > 1 else kwargs.get("value")
    key = args[2] if len(args) > 2 else kwargs.get("key", None)
    if query != value or (key is not None and key != query):
        raise b.fail("only self-attention (query, value and key the same tensor) is supported for MultiHeadAttention")
    if kwargs.get("attention_mask") is not None or kwargs.get("query_mask") is not None:
        raise b.fail("MultiHeadAttention with an attention_mask is not supported")
    if kwargs.get("return_attention_scores"):
        raise b.fail("return_attention_scores=True is not supported")
    x = query
    if b.rank(x) != 3:
        raise b.fail("MultiHeadAttention on inputs of rank other than 3 [batch, tokens, features] is not supported")
    if tuple(layer._attention_axes) != (1,) or layer._output_shape is not None:
        raise b.fail("attention_axes and output_shape other than the defaults are not supported")
    q, k, v = (_projection(b, dense, x, role) for dense, role in ((layer._query_dense, "q"), (layer._key_dense, "k"), (layer._value_dense, "v")))
    scale = 1.0 / math.sqrt(float(layer._key_dim))
    attended = b.emit(Op.ATTENTION, [q, k, v], A.AttentionAttrs(scale=scale, causal=bool(kwargs.get("use_causal_mask", False))), name=f"{b.source}_attention")
    merged = b.emit(Op.PERMUTE, [attended], A.PermuteAttrs(perm=(0, 2, 1, 3)), name=f"{b.source}_tokens")
    batch, tokens, heads, head_dim = b.value(merged).shape
    merged = b.emit(Op.RESHAPE, [merged], A.ReshapeAttrs(shape=(batch, tokens, heads * head_dim)), name=f"{b.source}_merged")
    out = layer._output_dense
    _no_lora(b, out)
    kernel = out.kernel
    shape = tuple(int(d) for d in kernel.shape)
    if out.equation != "abcd,cde->abe" or len(shape) != 3:
        raise b.fail(f"MultiHeadAttention output projection '{out.equation}' is not supported")
    params = {"weight": b.add_param(kernel, "IO")}
    if out.bias is not None:
        params["bias"] = b.add_param(out.bias, "O")
    return b.emit(Op.LINEAR, [merged], None, params, name=f"{b.source}_out")
