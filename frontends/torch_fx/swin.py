"""Converters for the functions torchvision's Swin Transformer hides from fx (`torch.fx.wrap`).

fx keeps `shifted_window_attention`, `_get_relative_position_bias` and `_patch_merging_pad` as
leaf calls because their bodies branch on tensor shapes. Shapes are static in the IR, so each
converter runs that control flow in Python and emits the ops the taken branch computes. Two
choices keep heads prunable: the packed q/k/v projection is split into q, k and v before the head
reshape (a [.., 3, H, Dh] reshape would tie all heads together), and the relative-position bias is
an embedding lookup into its table, added to the scores, so head h's table column joins head h.
The shifted-window mask depends only on shapes: it becomes a constant. Swin V2 (cosine attention
with a logit scale) is refused.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from asgnas_ir.frontends.torch_fx.builder import Builder
from asgnas_ir.frontends.torch_fx.composite import roll_axis
from asgnas_ir.frontends.torch_fx.functions import FUNCTIONS, constant_param
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

_SWIN = "torchvision.models.swin_transformer"


def _layer_path(b: Builder, param: str) -> str:
    return b.params[param].source.rsplit(".", 1)[0]


def _shift_mask(pad_h: int, pad_w: int, window: list[int], shift: list[int]) -> torch.Tensor:
    """The additive mask that keeps shifted windows from attending across the wrapped border."""
    regions = torch.zeros(pad_h, pad_w, device="cpu")  # an IR constant: host data, whatever the model's device
    count = 0
    for h in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for w in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            regions[h[0] : h[1], w[0] : w[1]] = count
            count += 1
    regions = regions.view(pad_h // window[0], window[0], pad_w // window[1], window[1])
    regions = regions.permute(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    differs = regions.unsqueeze(1) - regions.unsqueeze(2)
    mask = torch.zeros_like(differs).masked_fill(differs != 0, -100.0)
    return mask.unsqueeze(1).unsqueeze(0)  # [1, windows, 1, N, N]


@FUNCTIONS.register(f"{_SWIN}._get_relative_position_bias")
def relative_position_bias(b: Builder, node: torch.fx.Node) -> Any:
    """_get_relative_position_bias(relative_position_bias_table, relative_position_index, window_size)"""
    table, index, window = b.args(node)[0]
    weight = constant_param(b, table, "VO")
    tokens = window[0] * window[1]
    heads = b.params[weight].shape[1]  # type: ignore[index]
    attrs = A.EmbeddingAttrs(num_embeddings=b.params[weight].shape[0], dim=heads)  # type: ignore[index]
    bias = b.emit(Op.EMBEDDING, [index], attrs, {"weight": weight}, source=_layer_path(b, weight))  # type: ignore[dict-item]
    bias = b.emit(Op.RESHAPE, [bias], A.ReshapeAttrs(shape=(tokens, tokens, heads)))
    bias = b.emit(Op.PERMUTE, [bias], A.PermuteAttrs(perm=(2, 0, 1)))
    return b.emit(Op.RESHAPE, [bias], A.ReshapeAttrs(shape=(1, heads, tokens, tokens)))


@FUNCTIONS.register(f"{_SWIN}._patch_merging_pad")
def patch_merging_pad(b: Builder, node: torch.fx.Node) -> Any:
    """_patch_merging_pad(x): pad H and W to even sizes, gather the 2x2 neighbours along channels"""
    x = b.args(node)[0][0]
    shape = b.value(x).shape
    height, width = shape[-3], shape[-2]
    if height % 2 or width % 2:
        pads = [(0, 0)] * (len(shape) - 3) + [(0, height % 2), (0, width % 2), (0, 0)]
        x = b.emit(Op.PAD, [x], A.PadAttrs(pads=tuple(pads), mode="constant", value=0.0))
    rank = len(shape)
    parts = []
    for i, (dh, dw) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        part = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=rank - 3, start=dh, stop=b.value(x).shape[rank - 3], step=2), name=f"{node.name}_rows{i}")
        parts.append(b.emit(Op.SLICE, [part], A.SliceAttrs(axis=rank - 2, start=dw, stop=b.value(x).shape[rank - 2], step=2), name=f"{node.name}_x{i}"))
    return b.emit(Op.CONCAT, parts, A.AxisAttrs(axis=rank - 1))


@FUNCTIONS.register(f"{_SWIN}.shifted_window_attention")
def shifted_window_attention(b: Builder, node: torch.fx.Node) -> Any:
    """shifted_window_attention(input, qkv_weight, proj_weight, relative_position_bias, window_size, num_heads,
    shift_size, attention_dropout=0.0, dropout=0.0, qkv_bias=None, proj_bias=None, logit_scale=None, training=True)"""
    args, kwargs = b.args(node)
    names = (
        "input", "qkv_weight", "proj_weight", "relative_position_bias", "window_size", "num_heads", "shift_size",
        "attention_dropout", "dropout", "qkv_bias", "proj_bias", "logit_scale", "training",
    )
    call = dict(zip(names, args, strict=False)) | kwargs
    if call.get("logit_scale") is not None:
        raise b.fail("Swin V2 cosine attention (logit_scale) is not supported; Swin V1 models are")
    if call.get("training") and (call.get("dropout") or call.get("attention_dropout")):
        raise b.fail("shifted_window_attention in training mode cannot be lowered; call ai.compile on the model in eval mode")
    x, window, heads = call["input"], list(call["window_size"]), int(call["num_heads"])
    batch, height, width, channels = b.value(x).shape
    head_dim = channels // heads
    base = node.name

    pad_r = (window[1] - width % window[1]) % window[1]
    pad_b = (window[0] - height % window[0]) % window[0]
    if pad_r or pad_b:
        x = b.emit(Op.PAD, [x], A.PadAttrs(pads=((0, 0), (0, pad_b), (0, pad_r), (0, 0)), mode="constant", value=0.0))
    pad_h, pad_w = height + pad_b, width + pad_r
    shift = list(call["shift_size"])
    shift = [0 if window[0] >= pad_h else shift[0], 0 if window[1] >= pad_w else shift[1]]
    shifted = sum(shift) > 0
    if shifted:
        x = roll_axis(b, x, -shift[0], 1, f"{base}_roll_h")
        x = roll_axis(b, x, -shift[1], 2, f"{base}_roll_w")

    windows = (pad_h // window[0]) * (pad_w // window[1])
    tokens = window[0] * window[1]
    x = b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=(batch, pad_h // window[0], window[0], pad_w // window[1], window[1], channels)))
    x = b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=(0, 1, 3, 2, 4, 5)))
    x = b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=(batch * windows, tokens, channels)), name=f"{base}_windows")

    qkv_params = {"weight": constant_param(b, call["qkv_weight"], "OI")}
    if call.get("qkv_bias") is not None:
        qkv_params["bias"] = constant_param(b, call["qkv_bias"], "O")
    qkv = b.emit(Op.LINEAR, [x], None, qkv_params, source=_layer_path(b, qkv_params["weight"]), name=f"{base}_qkv")  # type: ignore[arg-type]
    parts = b.emit(Op.SPLIT, [qkv], A.SplitAttrs(axis=2, sizes=(channels,) * 3), outputs=3, name=f"{base}_split")
    q, k, v = (
        b.emit(
            Op.PERMUTE,
            [b.emit(Op.RESHAPE, [part], A.ReshapeAttrs(shape=(batch * windows, tokens, heads, head_dim)), name=f"{base}_{role}")],
            A.PermuteAttrs(perm=(0, 2, 1, 3)),
            name=f"{base}_{role}_heads",
        )
        for part, role in zip(parts, "qkv", strict=True)
    )
    q = b.emit(Op.MUL, [q], A.BinaryAttrs(scalar=float(head_dim) ** -0.5), name=f"{base}_q_scaled")
    k_t = b.emit(Op.PERMUTE, [k], A.PermuteAttrs(perm=(0, 1, 3, 2)), name=f"{base}_k_t")
    scores = b.emit(Op.MATMUL, [q, k_t], name=f"{base}_scores")
    scores = b.emit(Op.ADD, [scores, call["relative_position_bias"]], A.BinaryAttrs(), name=f"{base}_biased")
    if shifted:
        # stored beside the attention's own params (`features.1.1.attn.shift_mask`), so the block
        # that uses it owns it; torchvision computes it in forward, so no source state_dict has it
        owner = _layer_path(b, qkv_params["weight"]).rpartition(".")[0] or base  # type: ignore[arg-type]
        mask = b.add_param(f"{owner}.shift_mask", _shift_mask(pad_h, pad_w, window, shift), None, trainable=False)
        mask = b.emit(Op.CONSTANT, [], params={"value": mask}, name=f"{base}_shift_mask")
        scores = b.emit(Op.RESHAPE, [scores], A.ReshapeAttrs(shape=(batch, windows, heads, tokens, tokens)))
        scores = b.emit(Op.ADD, [scores, mask], A.BinaryAttrs(), name=f"{base}_masked")
        scores = b.emit(Op.RESHAPE, [scores], A.ReshapeAttrs(shape=(batch * windows, heads, tokens, tokens)))
    weights = b.emit(Op.SOFTMAX, [scores], A.AxisAttrs(axis=3), name=f"{base}_weights")
    x = b.emit(Op.MATMUL, [weights, v], name=f"{base}_context")
    x = b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=(0, 2, 1, 3)))
    x = b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=(batch * windows, tokens, channels)), name=f"{base}_merged")
    proj_params = {"weight": constant_param(b, call["proj_weight"], "OI")}
    if call.get("proj_bias") is not None:
        proj_params["bias"] = constant_param(b, call["proj_bias"], "O")
    x = b.emit(Op.LINEAR, [x], None, proj_params, source=_layer_path(b, proj_params["weight"]), name=f"{base}_proj")  # type: ignore[arg-type]

    x = b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=(batch, pad_h // window[0], pad_w // window[1], window[0], window[1], channels)))
    x = b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=(0, 1, 3, 2, 4, 5)))
    x = b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=(batch, pad_h, pad_w, channels)), name=f"{base}_unwindowed")
    if shifted:
        x = roll_axis(b, x, shift[0], 1, f"{base}_unroll_h")
        x = roll_axis(b, x, shift[1], 2, f"{base}_unroll_w")
    if pad_r or pad_b:
        x = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=1, start=0, stop=height, step=1))
        x = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=2, start=0, stop=width, step=1))
    return x
