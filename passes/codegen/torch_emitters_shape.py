"""codegen-torch emitters for data movement, pooling, reductions, transformer ops, constants and
opaque calls."""

from __future__ import annotations

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._layout import (
    identity,
    inverse,
    reduced,
    same_memory_order,
    transpose_axes,
)
from asgnas_ir.passes.codegen._printer import call, lit, lit_exact
from asgnas_ir.passes.codegen._symbols import constant_pattern, reshape_target, slice_bounds
from asgnas_ir.passes.codegen._torch_printer import TorchPrinter, emits


@emits(Op.CONCAT)
def _concat(p: TorchPrinter, node: NodeBase) -> None:
    rank = len(p.shape(node.outputs[0]))
    listed = p.lists.get(tuple(node.inputs))
    if listed is not None:  # the values a loop appended to one list (`ChainCall` in `_torch_blocks.py`)
        p.assign(node, f"torch.cat({listed}, dim={node.attrs.axis})")  # type: ignore[attr-defined]
        return
    perm = next((p.held(v) for v in node.inputs if p.held(v) != identity(rank)), identity(rank))
    parts = ", ".join(p.follow_dtype(node, [p.view(i, perm) for i in node.inputs]))
    axis = inverse(perm)[node.attrs.axis]  # type: ignore[attr-defined]
    p.assign(node, f"torch.cat([{parts}], dim={axis})", perm if perm != identity(rank) else None)


@emits(Op.SPLIT)
def _split(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.SplitAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    p.assign(node, f"torch.split({p.x(node)}, {list(attrs.sizes)}, dim={p.axis(value, attrs.axis)})", p.perm.get(value))


@emits(Op.SLICE)
def _slice(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.SliceAttrs = node.attrs  # type: ignore[assignment]
    step = "" if attrs.step == 1 else f":{attrs.step}"
    begin, end = slice_bounds(p.graph, node)
    start = "" if begin == 0 else str(begin)
    stop = "" if end is None else str(end)
    value = node.inputs[0]
    index = [":"] * p.axis(value, attrs.axis) + [f"{start}:{stop}{step}"]
    p.assign(node, f"{p.x(node)}[{', '.join(index)}]", p.perm.get(value))


@emits(Op.RESHAPE)
def _reshape(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.ReshapeAttrs = node.attrs  # type: ignore[assignment]
    del attrs  # the target is the output's (symbolic) shape, which the attrs hold at the example's sizes
    x = _source_order(p, node.inputs[0])
    target = reshape_target(p.graph, node, p.symbol)
    p.assign(node, f"{x}.reshape({', '.join(target)})" if target else f"{x}.reshape(())")  # () : to a 0-d scalar


@emits(Op.FLATTEN)
def _flatten(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.FlattenAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    if p.held(value) != identity(len(p.shape(value))) and same_memory_order(p.shape(value), p.held(value)):
        x = p.x(node)  # held permuted, but in the source's element order: a reshape is enough
        p.assign(node, f"{x}.reshape({', '.join(reshape_target(p.graph, node, p.symbol))})")
        return
    last = len(p.shape(node.inputs[0])) - 1
    end = "" if attrs.end_axis == last else f", {attrs.end_axis}"
    p.assign(node, f"torch.flatten({p.lx(node)}, {attrs.start_axis}{end})")


@emits(Op.PERMUTE)
def _permute(p: TorchPrinter, node: NodeBase) -> None:
    perm = tuple(node.attrs.perm)  # type: ignore[attr-defined]
    value, out = node.inputs[0], node.outputs[0]
    held = p.held(value)
    options = [(o, transpose_axes(held, tuple(perm[a] for a in o))) for o in (identity(len(perm)), p.channel_front(out))]
    out_perm, axes = next(((o, a) for o, a in options if a == identity(len(perm))), options[0])
    if axes == identity(len(perm)) and held != identity(len(perm)):
        p.alias(node, p.x(node), out_perm)  # the permute undoes the held layout
        return
    p.assign(node, f"{p.x(node)}.permute({', '.join(str(d) for d in axes)})", out_perm if out_perm != identity(len(perm)) else None)


def _source_order(p: TorchPrinter, value: str) -> str:
    """`value` with its elements in the source layout's row-major order (permuted only if needed)."""
    if same_memory_order(p.shape(value), p.held(value)):
        return p.expr[value]
    return p.logical(value)


@emits(Op.PAD)
def _pad(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.PadAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    pairs = list(attrs.pads)
    held = p.held(value)
    if held != identity(len(held)):
        full = [(0, 0)] * (len(held) - len(pairs)) + [tuple(pair) for pair in pairs]
        pairs = [full[axis] for axis in held]
    while pairs and pairs[0] == (0, 0):
        pairs.pop(0)
    flat = tuple(v for before, after in reversed(pairs) for v in (before, after))
    p.assign(
        node,
        call(
            p.F("pad"), p.x(node), lit_exact(flat),
            mode=None if attrs.mode == "constant" else lit(attrs.mode),
            value=lit(attrs.value) if attrs.mode == "constant" and attrs.value else None,
        ),
        p.perm.get(value),
    )


@emits(Op.MAX_POOL, Op.AVG_POOL)
def _pool(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.PoolAttrs = node.attrs  # type: ignore[assignment]
    n = len(attrs.kernel_size)
    kind = "max" if node.op is Op.MAX_POOL else "avg"
    x, out_perm = p.spatial_x(node)
    p.assign(
        node,
        call(
            p.F(f"{kind}_pool{n}d"),
            x,
            lit(attrs.kernel_size),
            stride=None if attrs.stride == attrs.kernel_size else lit(attrs.stride),
            padding=None if set(attrs.padding) <= {0} else lit(attrs.padding),
            dilation=None if kind == "avg" or not attrs.dilation or set(attrs.dilation) == {1} else lit(attrs.dilation),
            ceil_mode="True" if attrs.ceil_mode else None,
            count_include_pad=None if kind == "max" or attrs.count_include_pad else "False",
        ),
        out_perm,
    )


@emits(Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL)
def _adaptive_pool(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.AdaptivePoolAttrs = node.attrs  # type: ignore[assignment]
    kind = "avg" if node.op is Op.ADAPTIVE_AVG_POOL else "max"
    x, out_perm = p.spatial_x(node)
    p.assign(node, call(p.F(f"adaptive_{kind}_pool{len(attrs.output_size)}d"), x, lit(attrs.output_size)), out_perm)


@emits(Op.MEAN, Op.SUM)
def _reduce(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.ReduceAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    held = p.held(value)
    axes = attrs.axes if held == identity(len(held)) else tuple(sorted(p.axis(value, a) for a in attrs.axes))
    dim = str(axes[0]) if len(axes) == 1 else lit_exact(axes)
    keep = ", keepdim=True" if attrs.keepdim else ""
    out_perm = held if attrs.keepdim else reduced(held, attrs.axes)
    p.assign(node, f"{p.x(node)}.{node.op.value}(dim={dim}{keep})", out_perm)


@emits(Op.SOFTMAX)
def _softmax(p: TorchPrinter, node: NodeBase) -> None:
    value = node.inputs[0]
    p.assign(node, f"torch.softmax({p.x(node)}, dim={p.axis(value, node.attrs.axis)})", p.perm.get(value))  # type: ignore[attr-defined]


@emits(Op.EMBEDDING)
def _embedding(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.EmbeddingAttrs = node.attrs  # type: ignore[assignment]
    if p.loose_params(node):  # a table that is no Embedding's own (Swin's relative position bias table)
        p.assign(node, call(p.F("embedding"), p.lx(node), f"self.{p.tensor(node.params['weight'], 'VO')}"))
        return
    name = p.layer(node, call("nn.Embedding", str(attrs.num_embeddings), str(attrs.dim)), {"weight": "VO"})
    p.assign(node, f"self.{name}({p.lx(node)})")


@emits(Op.MATMUL)
def _matmul(p: TorchPrinter, node: NodeBase) -> None:
    a, b = p.follow_dtype(node, [p.lx(node, 0), p.lx(node, 1)])
    p.assign(node, f"{a} @ {b}")


@emits(Op.ATTENTION)
def _attention(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.AttentionAttrs = node.attrs  # type: ignore[assignment]
    q, k, v, *masks = p.follow_dtype(node, [p.lx(node, i) for i in range(len(node.inputs))])
    mask = masks[0] if masks else None
    causal = attrs.causal
    if mask is not None and causal:
        # torch refuses an explicit mask with is_causal=True: the causal rule joins the mask instead
        allowed = p.line(node, "causal", f"torch.ones({q}.shape[-2], {k}.shape[-2], dtype=torch.bool, device={q}.device).tril()")
        if p.graph.values[node.inputs[3]].dtype == "bool":
            mask = p.line(node, "mask", f"{mask} & {allowed}")
        else:
            mask = p.line(node, "mask", f'{mask}.masked_fill(~{allowed}, float("-inf"))')
        causal = False
    p.assign(
        node,
        call(
            p.F("scaled_dot_product_attention"), q, k, v,
            attn_mask=mask,
            is_causal="True" if causal else None,
            scale=lit(attrs.scale),
        ),
    )


@emits(Op.EXPAND)
def _expand(p: TorchPrinter, node: NodeBase) -> None:
    source, target = p.graph.values[node.inputs[0]].symbolic, p.graph.values[node.outputs[0]].symbolic
    offset = len(target) - len(source)
    # -1 keeps an axis the input already has at its size (symbolic or not)
    sizes = ["-1" if axis >= offset and source[axis - offset] == dim else p.dim(node.outputs[0], axis) for axis, dim in enumerate(target)]
    p.assign(node, f"{p.lx(node)}.expand({', '.join(sizes)})")


@emits(Op.CONSTANT)
def _constant(p: TorchPrinter, node: NodeBase) -> None:
    param_name = node.params["value"]
    sized = p.graph.values[node.outputs[0]].dims is not None
    if sized and constant_pattern(p.graph, node)[0] != "expand":
        _sized_constant(p, node)
        return
    handle = p.tensor(param_name)
    if sized:  # computed by the source from a batch of 1, the same for every row: expanded to the call's
        out = node.outputs[0]
        sizes = ", ".join(p.dim(out, a) if isinstance(d, str) else "-1" for a, d in enumerate(p.graph.values[out].symbolic))
        p.assign(node, f"self.{handle}.expand({sizes})")
        return
    p.alias(node, f"self.{handle}")


def _sized_constant(p: TorchPrinter, node: NodeBase) -> None:
    """A constant the source built inside forward at the input's size (`torch.arange(x.size(1))`,
    `torch.zeros(b, 1)`): rebuilt at the size of the call, never stored at the example's."""
    kind, fill = constant_pattern(p.graph, node)
    out = node.outputs[0]
    sizes = ", ".join(p.dim(out, a) for a in range(len(p.shape(out))))
    dtype = p.graph.values[out].dtype
    device = f"device={p.device_source()}.device"
    if kind == "arange":
        p.assign(node, f"torch.arange({sizes}, dtype=torch.{dtype}, {device})")
    elif kind == "triangle":  # a causal mask: one value on and below the diagonal, another above
        below, above = fill  # type: ignore[misc]
        rows, cols = (p.dim(out, a) for a in range(len(p.shape(out)) - 2, len(p.shape(out))))
        lead = "" if len(p.shape(out)) == 2 else f".reshape({', '.join(['1'] * (len(p.shape(out)) - 2))}, {rows}, {cols})"
        p.assign(node, f"torch.where(torch.ones({rows}, {cols}, dtype=torch.bool, {device}).tril(), {lit(below)}, {lit(above)})"
                       f".to(torch.{dtype}){lead}")
    else:
        p.assign(node, f"torch.full(({sizes},), {fill!r}, dtype=torch.{dtype}, {device})")


@emits(Op.OPAQUE)
def _opaque(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.OpaqueAttrs = node.attrs  # type: ignore[assignment]
    if attrs.kind == "module":
        raise CodegenError(
            f"node '{node.id}' is an opaque module call ({attrs.target}, from '{node.source}'); "
            "generated code cannot rebuild an unknown module. Add a converter for it (docs/adding_an_op.md)."
        )

    def render(value: object) -> str:
        if isinstance(value, dict) and set(value) == {"$input"}:
            return p.logical(node.inputs[value["$input"]])
        if isinstance(value, list):
            return "(" + ", ".join(render(v) for v in value) + ("," if len(value) == 1 else "") + ")"
        return repr(value)

    args = [render(a) for a in attrs.args]
    kwargs = [f"{k}={render(v)}" for k, v in attrs.kwargs.items()]
    if attrs.kind == "method":
        target = f"{args[0]}.{attrs.target.rsplit('.', 1)[-1]}"
        args = args[1:]
    elif attrs.target.startswith("torch.nn.functional."):
        target = p.F(attrs.target.rsplit(".", 1)[-1])
    elif attrs.target.startswith("torch."):
        target = attrs.target
    else:
        raise CodegenError(f"node '{node.id}' calls {attrs.target}, which generated code cannot import")
    p.assign(node, f"{target}({', '.join(args + kwargs)})")
