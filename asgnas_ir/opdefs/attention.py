"""Transformer ops: embedding lookup, products of two activations, scaled-dot-product attention,
and broadcasting (`expand`, e.g. a class token repeated over the batch).

Attention heads become channel groups without an attention-specific pass: the reshape that splits
the embedding axis E into (H, Dh) makes H the channel axis and ties each head's Dh channels into one
block (`reshape_channel_map`), so a head-split value carries one label per head. `attention` and
`matmul` then tie the head labels of q, k and v, and the reshape that merges heads back repeats
each head's label over its Dh features, which is where the output projection's columns join the
group. Zeroing a head's q/k/v rows and output-projection columns removes the head exactly: its
attention output reaches the rest of the network only through those zeroed columns.
"""

from __future__ import annotations

import numpy as np

from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Value
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs._opdef import (
    CoupleCtx,
    InferCtx,
    OpDef,
    ResizeCtx,
    broadcast_shapes,
    no_flops,
    numel,
    out_numel,
    register,
    require_zero,
    zeroed_by,
)

# ---- embedding -----------------------------------------------------------------------------------


def _infer_embedding(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    indices = ctx.inputs[0]
    if not indices.dtype.startswith(("int", "uint")):
        ctx.fail(f"embedding indices must be integers, got {indices.dtype}")
    weight = ctx.require_param("weight")
    # The table is [num_embeddings, dim] by the op's definition, whatever letters its axes carry: a
    # table tied to an output layer (GPT-2's lm_head) is that linear's "OI" weight as well.
    if len(weight.shape) != 2:
        ctx.fail(f"embedding weight must be [num_embeddings, dim], got {list(weight.shape)}")
    shape = (*indices.shape, weight.shape[1])
    return [Value(shape=shape, dtype=weight.dtype, channel_axis=len(shape) - 1)]


def _couple_embedding(ctx: CoupleCtx) -> None:
    out = ctx.graph.values[ctx.node.outputs[0]]
    labels = ctx.fresh(out.shape[-1])
    ctx.param_slice("weight", 1, labels, "out")
    ctx.set_labels(ctx.node.outputs[0], labels)
    ctx.set_zeros(ctx.node.outputs[0], np.full(len(labels), zeroed_by(ctx, "weight")))


def _resize_embedding(ctx: ResizeCtx) -> A.Attrs:
    return ctx.node.attrs.model_copy(update={"dim": ctx.new_output_shapes[0][-1]})


# Index 0 looks up row 0, not a zero vector.
register(OpDef(Op.EMBEDDING, _infer_embedding, _couple_embedding, no_flops, "stem", _resize_embedding, zero_preserving=False))

# ---- matmul ----------------------------------------------------------------------------------------


def _roles(a: Value, b: Value, out_rank: int) -> tuple[str | None, str | None, int | None]:
    """What each operand's channel axis is in `a @ b` and which output axis carries channels.

    Roles: "batch:<out axis>" (a broadcast batch axis), "row" (a's M: output rows), "col" (b's N:
    output columns), "contract" (the summed K axis), or None. The output channel axis is the first
    operand role that lands on an output axis.
    """

    def role(value: Value, is_left: bool) -> str | None:
        axis = value.channel_axis
        if axis is None:
            return None
        rank = len(value.shape)
        if axis < rank - 2:
            return f"batch:{axis + out_rank - rank}"
        if axis == rank - 2:
            return "row" if is_left else "contract"
        return "contract" if is_left else "col"

    ra, rb = role(a, True), role(b, False)

    def out_axis(r: str | None) -> int | None:
        if r is None or r == "contract":
            return None
        if r.startswith("batch:"):
            return int(r.split(":")[1])
        return out_rank - 2 if r == "row" else out_rank - 1

    axis = out_axis(ra)
    if axis is None:
        axis = out_axis(rb)
    return ra, rb, axis


def _infer_matmul(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(2)
    a, b = ctx.inputs
    if len(a.shape) < 2 or len(b.shape) < 2:
        ctx.fail(f"matmul needs operands of rank >= 2, got {list(a.shape)} and {list(b.shape)}")
    if a.shape[-1] != b.shape[-2]:
        ctx.fail(f"matmul of {list(a.shape)} and {list(b.shape)}: inner sizes {a.shape[-1]} and {b.shape[-2]} differ")
    batch = broadcast_shapes([a.shape[:-2], b.shape[:-2]])
    if batch is None:
        ctx.fail(f"matmul batch shapes {list(a.shape[:-2])} and {list(b.shape[:-2])} do not broadcast")
    shape = (*batch, a.shape[-2], b.shape[-1])  # type: ignore[misc]
    _, _, axis = _roles(a, b, len(shape))
    return [Value(shape=shape, dtype=a.dtype, channel_axis=axis)]


def _couple_matmul(ctx: CoupleCtx) -> None:
    node = ctx.node
    a, b = (ctx.graph.values[name] for name in node.inputs)
    la, lb = (ctx.labels(name) for name in node.inputs)
    out = ctx.graph.values[node.outputs[0]]
    za, zb = (ctx.zeros(name) for name in node.inputs)
    ra, rb, axis = _roles(a, b, len(out.shape))
    result = zeros = None
    if ra == "contract" and rb == "contract" and la is not None and lb is not None:
        # a channel of the summed axis meets only its partner, and drops out of the sum only if it
        # is exactly zero on one side: neither side is a weight the group zeroes
        ctx.tie(la, lb)
        require_zero(ctx, [(la, za), (lb, zb)], "matmul sums over channels that are not zero once removed")
        la = lb = None
    if ra is not None and ra.startswith("batch:") and ra == rb and la is not None and lb is not None and len(la) == len(lb):
        ctx.tie(la, lb)  # per-head products: head h of a only meets head h of b
        result, zeros, la, lb = la, za | zb, None, None  # type: ignore[operator]
    for labels, r, z in ((la, ra, za), (lb, rb, zb)):
        if labels is None:
            continue
        lands = r is not None and r != "contract" and axis is not None and result is None and len(labels) == out.shape[axis]
        if lands and (r == "row" or r == "col" or r.startswith("batch:")):  # type: ignore[union-attr]
            result, zeros = labels, z  # a zero row (column, batch slice) of one side gives a zero one
        else:
            ctx.pin(labels, "matmul operand channels meet unrelated channels")
    if out.channel_axis is not None and result is None:
        result = ctx.fresh(out.shape[out.channel_axis])
        ctx.pin(result, "matmul output without channel labels")
    ctx.set_labels(node.outputs[0], result)
    ctx.set_zeros(node.outputs[0], zeros)


def _matmul_flops(node, graph) -> int:  # noqa: ANN001
    inner = graph.values[node.inputs[0]].shape[-1]
    return 2 * out_numel(node, graph) * inner


# 0 @ b == a @ 0 == 0 for finite operands.
register(OpDef(Op.MATMUL, _infer_matmul, _couple_matmul, _matmul_flops, "other", zero_preserving=True))

# ---- scaled-dot-product attention ------------------------------------------------------------------


def _infer_attention(ctx: InferCtx) -> list[Value]:
    if len(ctx.inputs) not in (3, 4):
        ctx.fail(f"attention takes q, k, v and an optional mask, got {len(ctx.inputs)} inputs")
    q, k, v = ctx.inputs[:3]
    if not (len(q.shape) == len(k.shape) == len(v.shape) >= 3):
        ctx.fail(f"attention needs q, k, v of one rank >= 3, got {list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        ctx.fail(f"attention shapes q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)} do not fit [..., T, D]")
    scores = (*q.shape[:-1], k.shape[-2])
    if len(ctx.inputs) == 4 and broadcast_shapes([scores, ctx.inputs[3].shape]) != scores:
        ctx.fail(f"attention mask {list(ctx.inputs[3].shape)} does not broadcast to the scores {list(scores)}")
    shape = (*q.shape[:-1], v.shape[-1])
    heads_axis = q.channel_axis if q.channel_axis is not None and q.channel_axis < len(q.shape) - 2 else None
    channel_axis = heads_axis if heads_axis is not None else (len(shape) - 1 if v.channel_axis == len(v.shape) - 1 else None)
    return [Value(shape=shape, dtype=q.dtype, channel_axis=channel_axis)]


def _mask_heads(ctx: CoupleCtx, q: Value) -> np.ndarray | bool | None:
    """How the mask meets q's head axis: None when it broadcasts over the heads (its labels are pinned:
    it mixes into every kept head), its head labels when it has one entry per head on its own channel
    axis, else True (it differs per head but cannot follow a removed one; the heads are pinned)."""
    mask = ctx.node.inputs[3]
    m = ctx.graph.values[mask]
    labels = ctx.labels(mask)
    aligned = q.channel_axis - (len(q.shape) - len(m.shape))  # type: ignore[operator]
    if aligned < 0 or m.shape[aligned] == 1:  # type: ignore[operator]
        ctx.pin(labels, "attention mask")
        return None
    if labels is not None and m.channel_axis == aligned:
        return labels
    ctx.pin(labels, "attention mask")
    return True


def _couple_attention(ctx: CoupleCtx) -> None:
    node = ctx.node
    q, k, v = (ctx.graph.values[name] for name in node.inputs[:3])
    lq, lk, lv = (ctx.labels(name) for name in node.inputs[:3])
    out = ctx.graph.values[node.outputs[0]]
    batch_axis = q.channel_axis is not None and q.channel_axis < len(q.shape) - 2
    mask_heads = None
    if len(node.inputs) == 4:
        if batch_axis:
            mask_heads = _mask_heads(ctx, q)
        else:
            ctx.pin(ctx.labels(node.inputs[3]), "attention mask")
    zq, zk, zv = (ctx.zeros(name) for name in node.inputs[:3])
    if batch_axis and q.channel_axis == k.channel_axis == v.channel_axis and lq is not None and lk is not None and lv is not None:
        ctx.tie(lq, lk)  # whole heads: q, k and v slices of head h go together
        ctx.tie(lq, lv)
        if isinstance(mask_heads, np.ndarray):  # a mask of its own per head (a relative position bias)
            ctx.tie(lq, mask_heads)
        elif mask_heads:
            ctx.pin(lq, "attention heads whose mask cannot follow them")
        ctx.set_labels(node.outputs[0], lv)
        ctx.set_zeros(node.outputs[0], zv)  # softmax weights are finite: a zero head of v gives zero
        return
    if isinstance(mask_heads, np.ndarray):
        ctx.pin(mask_heads, "attention mask")
    last = len(q.shape) - 1
    result = zeros = None
    if q.channel_axis == last and k.channel_axis == last and lq is not None and lk is not None:
        ctx.tie(lq, lk)  # single-head features: q·k sums feature d of q with feature d of k only
        require_zero(ctx, [(lq, zq), (lk, zk)], "attention scores sum over features that are not zero once removed")
    else:
        ctx.pin(lq, "attention query channels")
        ctx.pin(lk, "attention key channels")
    if v.channel_axis == last and out.channel_axis == last and lv is not None:
        result, zeros = lv, zv
    else:
        ctx.pin(lv, "attention value channels")
    if out.channel_axis is not None and result is None:
        result = ctx.fresh(out.shape[out.channel_axis])
        ctx.pin(result, "attention output without channel labels")
    ctx.set_labels(node.outputs[0], result)
    ctx.set_zeros(node.outputs[0], zeros)


def _attention_flops(node, graph) -> int:  # noqa: ANN001
    q, k, v = (graph.values[name].shape for name in node.inputs[:3])
    scores = numel(q[:-1]) * k[-2]
    return 2 * scores * q[-1] + 2 * scores * v[-1] + 5 * scores


# Zero scores give uniform weights, which average a value input that need not be zero.
register(OpDef(Op.ATTENTION, _infer_attention, _couple_attention, _attention_flops, "other", zero_preserving=False))

# ---- expand ------------------------------------------------------------------------------------------


def _infer_expand(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    x = ctx.inputs[0]
    target = tuple(ctx.attrs.shape)
    lead = len(target) - len(x.shape)
    if lead < 0 or any(d not in (1, t) for d, t in zip(x.shape, target[lead:], strict=True)):
        ctx.fail(f"cannot expand {list(x.shape)} to {list(target)}")
    channel_axis = None
    if x.channel_axis is not None and x.shape[x.channel_axis] == target[lead + x.channel_axis]:
        channel_axis = x.channel_axis + lead
    return [Value(shape=target, dtype=x.dtype, channel_axis=channel_axis)]


def _couple_expand(ctx: CoupleCtx) -> None:
    node = ctx.node
    out = ctx.graph.values[node.outputs[0]]
    labels = ctx.labels(node.inputs[0])
    if out.channel_axis is None:
        ctx.pin(labels, "expand broadcasts the channel axis")
        ctx.set_labels(node.outputs[0], None)
        return
    ctx.set_labels(node.outputs[0], labels)
    ctx.set_zeros(node.outputs[0], ctx.zeros(node.inputs[0]))


def _resize_expand(ctx: ResizeCtx) -> A.Attrs:
    return ctx.node.attrs.model_copy(update={"shape": tuple(ctx.new_output_shapes[0])})


register(OpDef(Op.EXPAND, _infer_expand, _couple_expand, no_flops, "accessory", _resize_expand, zero_preserving=True))
