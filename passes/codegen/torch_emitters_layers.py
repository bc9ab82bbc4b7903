"""codegen-torch emitters for layers with weights and elementwise ops: convolutions, linear,
normalisations, activations and binary arithmetic."""

from __future__ import annotations

from collections.abc import Callable

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._layout import (
    Perm,
    identity,
    inverse,
)
from asgnas_ir.passes.codegen._printer import call, lit, lit_exact
from asgnas_ir.passes.codegen._torch_printer import EMITTERS, Emitter, TorchPrinter, emits


def _dims_suffix(rank: int) -> str:
    return f"{rank}d"


def _spatial_letters(axes: str | None) -> str:
    """The kernel's spatial letters in order (`OIHW` and `HWIO` -> `HW`)."""
    return "".join(letter for letter in axes or "" if letter not in "OI")


# torch's conv `padding_mode` as F.pad's `mode`
_PAD_MODE = {"zeros": None, "reflect": '"reflect"', "replicate": '"replicate"', "circular": '"circular"'}


def _pad(p: TorchPrinter, x: str, padding: tuple[tuple[int, int], ...], mode: str) -> str:
    """`x` padded explicitly in the conv's own padding mode (F.pad wants the last axis first)."""
    flat = tuple(v for before, after in reversed(padding) for v in (before, after))
    return call(p.F("pad"), x, lit_exact(flat), mode=_PAD_MODE[mode])


def _shared_params(node: NodeBase, x: str, owner: str) -> list[str]:
    """The input, weight and (if any) bias arguments of a functional conv on layer `owner`'s params."""
    return [x, f"self.{owner}.weight", *([f"self.{owner}.bias"] if "bias" in node.params else [])]


@emits(Op.CONV)
def _conv(p: TorchPrinter, node: NodeBase) -> None:
    """nn.ConvNd; an asymmetric padding (`padding="same"` with an even kernel, ONNX pads) is an F.pad
    in the conv's padding mode before an unpadded conv. Params already held by a conv with other
    settings (TridentNet's one weight at several dilations) are called through F.convNd."""
    attrs: A.ConvAttrs = node.attrs  # type: ignore[assignment]
    weight = p.param(node, "weight")
    n = len(weight.shape) - 2
    target = "OI" + _spatial_letters(weight.axes) if weight.axes and not weight.axes.startswith("OI") else weight.axes
    spatial = [d for d, letter in zip(weight.shape, weight.axes or "", strict=False) if letter not in "OI"]
    out_ch = weight.shape[weight.axes.index("O")]  # type: ignore[union-attr]
    in_ch = weight.shape[weight.axes.index("I")] * attrs.groups  # type: ignore[union-attr]
    symmetric = all(a == b for a, b in attrs.padding)
    padded = any(a or b for a, b in attrs.padding)
    padding = tuple(a for a, _ in attrs.padding) if symmetric and padded else None
    settings = {
        "stride": None if set(attrs.stride) == {1} else lit(attrs.stride),
        "dilation": None if set(attrs.dilation) == {1} else lit(attrs.dilation),
        "groups": None if attrs.groups == 1 else str(attrs.groups),
    }
    # inside a block class every setting is written (`_torch_blocks.py` drops the defaults again)
    explicit = p.explicit_settings
    ctor = call(
        f"nn.Conv{_dims_suffix(n)}",
        str(in_ch),
        str(out_ch),
        kernel_size=lit(tuple(spatial)),
        stride=lit(attrs.stride) if explicit else settings["stride"],
        padding=lit(padding) if padding is not None else "0" if explicit else None,
        dilation=lit(attrs.dilation) if explicit else settings["dilation"],
        groups=str(attrs.groups) if explicit else settings["groups"],
        bias=None if "bias" in node.params else "False",
        padding_mode=None if attrs.padding_mode == "zeros" or padding is None else lit(attrs.padding_mode),
    )
    x, out_perm = p.spatial_x(node)
    owner = p.owner(node, ctor)
    if owner is not None:
        if padded and (not symmetric or attrs.padding_mode != "zeros"):
            x, padding = _pad(p, x, attrs.padding, attrs.padding_mode), None
        expression = call(
            p.F(f"conv{_dims_suffix(n)}"), *_shared_params(node, x, owner),
            stride=settings["stride"], padding=None if padding is None else lit(padding),
            dilation=settings["dilation"], groups=settings["groups"],
        )
        p.assign(node, expression, out_perm)
        return
    if not symmetric:
        x = _pad(p, x, attrs.padding, attrs.padding_mode)
    name = p.layer(node, ctor, {"weight": target})
    p.assign(node, f"self.{name}({x})", out_perm)


@emits(Op.CONV_TRANSPOSE)
def _conv_transpose(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.ConvTransposeAttrs = node.attrs  # type: ignore[assignment]
    weight = p.param(node, "weight")
    n = len(weight.shape) - 2
    spatial = [d for d, letter in zip(weight.shape, weight.axes or "", strict=False) if letter not in "OI"]
    in_ch = weight.shape[weight.axes.index("I")]  # type: ignore[union-attr]
    out_ch = weight.shape[weight.axes.index("O")] * attrs.groups  # type: ignore[union-attr]
    settings = {
        "stride": None if set(attrs.stride) == {1} else lit(attrs.stride),
        "padding": None if set(attrs.padding) == {0} else lit(attrs.padding),
        "output_padding": None if set(attrs.output_padding) == {0} else lit(attrs.output_padding),
        "groups": None if attrs.groups == 1 else str(attrs.groups),
    }
    dilation = None if set(attrs.dilation) == {1} else lit(attrs.dilation)
    ctor = call(
        f"nn.ConvTranspose{_dims_suffix(n)}",
        str(in_ch),
        str(out_ch),
        kernel_size=lit(tuple(spatial)),
        **settings,
        bias=None if "bias" in node.params else "False",
        dilation=dilation,
    )
    x, out_perm = p.spatial_x(node)
    owner = p.owner(node, ctor)
    if owner is not None:
        functional = p.F(f"conv_transpose{_dims_suffix(n)}")
        p.assign(node, call(functional, *_shared_params(node, x, owner), **settings, dilation=dilation), out_perm)
        return
    target = "IO" + _spatial_letters(weight.axes) if weight.axes and not weight.axes.startswith("IO") else weight.axes
    name = p.layer(node, ctor, {"weight": target})
    p.assign(node, f"self.{name}({x})", out_perm)


@emits(Op.LINEAR)
def _linear(p: TorchPrinter, node: NodeBase) -> None:
    weight = p.param(node, "weight")
    out_f, in_f = weight.shape[weight.axes.index("O")], weight.shape[weight.axes.index("I")]  # type: ignore[union-attr]
    if p.loose_params(node):
        # params that are no Linear's own (MultiheadAttention's packed `in_proj_weight`) stay at
        # their source's keys and are applied functionally, as the source module does
        weight_ref = p.tensor(node.params["weight"], "OI")
        bias = f"self.{p.tensor(node.params['bias'])}" if "bias" in node.params else None
        p.assign(node, call(p.F("linear"), p.lx(node), f"self.{weight_ref}", *([bias] if bias else [])))
        return
    ctor = call("nn.Linear", str(in_f), str(out_f), bias=None if "bias" in node.params else "False")
    name = p.layer(node, ctor, {"weight": "OI"})
    p.assign(node, f"self.{name}({p.lx(node)})")


def _channels(p: TorchPrinter, node: NodeBase) -> int:
    """A norm's channel count: its output's channel axis (a norm marks it where its input has none)."""
    value = p.graph.values[node.outputs[0]]
    return value.shape[value.channel_axis]  # type: ignore[index]


def _norm_dims(p: TorchPrinter, node: NodeBase) -> str:
    rank = len(p.shape(node.inputs[0]))
    return _dims_suffix(max(1, rank - 2))


@emits(Op.BATCH_NORM)
def _batch_norm(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.BatchNormAttrs = node.attrs  # type: ignore[assignment]
    ctor = call(
        f"nn.BatchNorm{_norm_dims(p, node)}",
        str(_channels(p, node)),
        eps=None if attrs.eps == 1e-5 else lit(attrs.eps),
        momentum=None if attrs.momentum == 0.1 else lit(attrs.momentum),
        affine=None if "weight" in node.params else "False",
        track_running_stats=None if "running_mean" in node.params else "False",
    )
    name = p.layer(node, ctor)
    x, out_perm = p.spatial_x(node)
    p.assign(node, f"self.{name}({x})", out_perm)


@emits(Op.INSTANCE_NORM)
def _instance_norm(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.InstanceNormAttrs = node.attrs  # type: ignore[assignment]
    ctor = call(
        f"nn.InstanceNorm{_norm_dims(p, node)}",
        str(_channels(p, node)),
        eps=None if attrs.eps == 1e-5 else lit(attrs.eps),
        momentum=None if attrs.momentum == 0.1 else lit(attrs.momentum),
        affine="True" if "weight" in node.params else None,
        track_running_stats="True" if "running_mean" in node.params else None,
    )
    name = p.layer(node, ctor) if node.params else p.stateless(node, ctor)
    x, out_perm = p.spatial_x(node)
    p.assign(node, f"self.{name}({x})", out_perm)


@emits(Op.GROUP_NORM)
def _group_norm(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.GroupNormAttrs = node.attrs  # type: ignore[assignment]
    ctor = call(
        "nn.GroupNorm",
        str(attrs.num_groups),
        str(_channels(p, node)),
        eps=None if attrs.eps == 1e-5 else lit(attrs.eps),
        affine=None if "weight" in node.params else "False",
    )
    x, out_perm = p.spatial_x(node)
    if node.params:
        name = p.layer(node, ctor)
        p.assign(node, f"self.{name}({x})", out_perm)
    else:
        p.assign(node, call(p.F("group_norm"), x, str(attrs.num_groups), eps=lit(attrs.eps)), out_perm)


@emits(Op.LAYER_NORM)
def _layer_norm(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.LayerNormAttrs = node.attrs  # type: ignore[assignment]
    shape = tuple(p.shape(node.inputs[0])[a] for a in attrs.axes)
    normalized = str(shape[0]) if len(shape) == 1 else lit_exact(shape)
    if not node.params:
        p.assign(node, call(p.F("layer_norm"), p.lx(node), lit_exact(shape), eps=lit(attrs.eps)))
        return
    ctor = call(
        "nn.LayerNorm",
        normalized,
        eps=None if attrs.eps == 1e-5 else lit(attrs.eps),
        bias=None if "bias" in node.params else "False",
    )
    name = p.layer(node, ctor)
    p.assign(node, f"self.{name}({p.lx(node)})")


def _unary(template: Callable[[TorchPrinter, NodeBase, str], str]) -> Emitter:
    def emit(p: TorchPrinter, node: NodeBase) -> None:
        p.assign(node, template(p, node, p.x(node)), p.perm.get(node.inputs[0]))

    return emit


def _dropout(p: TorchPrinter, node: NodeBase, x: str) -> str:
    """F.dropout; channel-wise dropout as F.dropout{1,2,3}d when the channels are held on axis 1 (what
    those functions assume), else as x times a dropped-out ones tensor of shape (N, 1.., C, 1..)."""
    rate, training = lit(node.attrs.p), "self.training"  # type: ignore[attr-defined]
    value = node.inputs[0]
    rank = len(p.shape(value))
    if node.attrs.samplewise:  # type: ignore[attr-defined]
        dims = ", ".join([f"{x}.shape[0]"] + ["1"] * (rank - 1))
        return f"{x} * {call(p.F('dropout'), f'{x}.new_ones({dims})', rate, training)}"
    if not node.attrs.channelwise:  # type: ignore[attr-defined]
        return call(p.F("dropout"), x, rate, training)
    info = p.graph.values[value]
    logical = rank - 1 if info.channel_axis is None else info.channel_axis
    channel = inverse(p.held(value))[logical]
    if channel == 1 and 3 <= rank <= 5:
        return call(p.F(f"dropout{rank - 2}d"), x, rate, training)
    dims = ", ".join(f"{x}.shape[{j}]" if j in (0, channel) else "1" for j in range(rank))
    return f"{x} * {call(p.F('dropout'), f'{x}.new_ones({dims})', rate, training)}"


def _clamp(p: TorchPrinter, node: NodeBase, x: str) -> str:
    attrs: A.ClampAttrs = node.attrs  # type: ignore[assignment]
    if attrs.min == 0.0 and attrs.max == 6.0:
        return call(p.F("relu6"), x)
    return call("torch.clamp", x, min=None if attrs.min is None else lit(attrs.min), max=None if attrs.max is None else lit(attrs.max))


EMITTERS.update(
    {
        Op.RELU: _unary(lambda p, n, x: f"torch.relu({x})"),
        Op.SIGMOID: _unary(lambda p, n, x: f"torch.sigmoid({x})"),
        Op.TANH: _unary(lambda p, n, x: f"torch.tanh({x})"),
        Op.EXP: _unary(lambda p, n, x: f"torch.exp({x})"),
        Op.SQRT: _unary(lambda p, n, x: f"torch.sqrt({x})"),
        Op.LOG: _unary(lambda p, n, x: f"torch.log({x})"),
        Op.SIN: _unary(lambda p, n, x: f"torch.sin({x})"),
        Op.COS: _unary(lambda p, n, x: f"torch.cos({x})"),
        Op.NEG: _unary(lambda p, n, x: f"-{x}"),
        Op.POW: _unary(lambda p, n, x: f"torch.pow({x}, {lit(n.attrs.exponent)})"),
        Op.SILU: _unary(lambda p, n, x: call(p.F("silu"), x)),
        Op.HARDSWISH: _unary(lambda p, n, x: call(p.F("hardswish"), x)),
        Op.HARDSIGMOID: _unary(lambda p, n, x: call(p.F("hardsigmoid"), x)),
        Op.MISH: _unary(lambda p, n, x: call(p.F("mish"), x)),
        Op.CLAMP: _unary(_clamp),
        Op.LEAKY_RELU: _unary(lambda p, n, x: call(p.F("leaky_relu"), x, lit(n.attrs.negative_slope))),
        Op.GELU: _unary(
            lambda p, n, x: call(p.F("gelu"), x, approximate=None if n.attrs.approximate == "none" else lit(n.attrs.approximate))
        ),
        Op.ELU: _unary(lambda p, n, x: call(p.F("elu"), x, lit(n.attrs.alpha))),
        Op.SOFTPLUS: _unary(lambda p, n, x: call(p.F("softplus"), x, lit(n.attrs.beta), lit(n.attrs.threshold))),
        Op.DROPOUT: _unary(_dropout),
    }
)


@emits(Op.IDENTITY)
def _identity(p: TorchPrinter, node: NodeBase) -> None:
    p.alias(node, p.x(node), p.perm.get(node.inputs[0]))


_BINARY = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.DIV: "/"}


@emits(*_BINARY)
def _binary(p: TorchPrinter, node: NodeBase) -> None:
    attrs: A.BinaryAttrs = node.attrs  # type: ignore[assignment]
    symbol = _BINARY[node.op]
    if attrs.scalar is None:
        rank = len(p.shape(node.outputs[0]))
        held = [p.held(v) for v in node.inputs if len(p.shape(v)) == rank]
        perm = next((h for h in held if h != identity(rank)), identity(rank))
        a, b = p.follow_dtype(node, [_operand(p, v, rank, perm) for v in node.inputs])
        p.assign(node, f"{a} {symbol} {b}", perm if perm != identity(rank) else None)
    else:
        scalar = lit(_in_dtype_of(p.graph.values[node.inputs[0]].dtype, node.op, attrs.scalar))
        a, b = (scalar, p.x(node)) if attrs.reverse else (p.x(node), scalar)
        p.assign(node, f"{a} {symbol} {b}", p.perm.get(node.inputs[0]))


def _in_dtype_of(dtype: str, op: Op, scalar: float) -> float | int:
    """The scalar as an int where an integer tensor meets a whole number (`positions + 2`): torch
    promotes `int64 + 2.0` to float, and the indices after it (an embedding's) must stay integers."""
    if dtype.startswith(("int", "uint")) and op is not Op.DIV and float(scalar).is_integer():
        return int(scalar)
    return scalar


def _operand(p: TorchPrinter, value: str, rank: int, perm: Perm) -> str:
    """`value` as an operand of a rank-`rank` result held in `perm` (broadcasting as torch does)."""
    shape = p.shape(value)
    if len(shape) == rank:
        return p.view(value, perm)
    if perm == identity(rank) or all(d == 1 for d in shape):
        return p.logical(value)
    # a lower-rank operand of a permuted result: its leading 1s, then the same permutation
    full = (1,) * (rank - len(shape)) + tuple(shape)
    return f"{p.logical(value)}.reshape({', '.join(map(str, full))}).permute({', '.join(map(str, perm))})"


@emits(Op.CAST)
def _cast(p: TorchPrinter, node: NodeBase) -> None:
    """A dtype policy's rounding (Keras mixed precision): an explicit `.to`, exact in torch as in Keras."""
    p.assign(node, f"{p.x(node)}.to(torch.{node.attrs.dtype})", p.perm.get(node.inputs[0]))  # type: ignore[attr-defined]


@emits(Op.MAX)
def _max(p: TorchPrinter, node: NodeBase) -> None:
    """`x.amax(dim=...)`, with the axes as the input is held (a channels-last graph holds some permuted)."""
    attrs: A.ReduceAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    held = p.held(value)
    axes = tuple(sorted(p.axis(value, a) for a in attrs.axes))
    dim = str(axes[0]) if len(axes) == 1 else lit_exact(axes)
    keep = ", keepdim=True" if attrs.keepdim else ""
    kept = [a for a in held if a not in attrs.axes]
    out_perm = held if attrs.keepdim else tuple(sorted(kept).index(a) for a in kept)
    p.assign(node, f"{p.x(node)}.amax(dim={dim}{keep})", out_perm)


@emits(Op.CUMSUM)
def _cumsum(p: TorchPrinter, node: NodeBase) -> None:
    value = node.inputs[0]
    p.assign(node, f"torch.cumsum({p.x(node)}, dim={p.axis(value, node.attrs.axis)})", p.perm.get(value))  # type: ignore[attr-defined]


# the IR's resize modes as torch's F.interpolate modes, by the number of resized axes
_INTERPOLATE_MODES = {"nearest": {1: "nearest", 2: "nearest", 3: "nearest"}, "linear": {1: "linear", 2: "bilinear", 3: "trilinear"},
                      "cubic": {2: "bicubic"}}


@emits(Op.RESIZE)
def _resize(p: TorchPrinter, node: NodeBase) -> None:
    """F.interpolate with the source's scale factors where it gave them (then generated code resizes an
    input of any size as the source does), else with the output size. F.interpolate resizes every axis
    after the second, so the input is held with the resized axes last (for a torch graph: as it is)."""
    attrs: A.ResizeAttrs = node.attrs  # type: ignore[assignment]
    value = node.inputs[0]
    rank = len(p.shape(value))
    mode = _INTERPOLATE_MODES[attrs.mode].get(len(attrs.axes))
    kept = tuple(a for a in range(rank) if a not in attrs.axes)
    if mode is None or len(kept) != 2:
        what = f"{attrs.mode} interpolation over {len(attrs.axes)} axes" if mode is None else f"a resize of axes {attrs.axes} of a rank-{rank} value"
        raise CodegenError(f"node '{node.id}' (resize, from '{node.source}'): torch's F.interpolate has no {what}")
    perm = kept + tuple(attrs.axes)
    x = p.view(value, perm)
    by = {"scale_factor": lit(attrs.scale)} if attrs.scale is not None else {"size": lit(attrs.size)}
    corners = None if attrs.mode == "nearest" else lit(attrs.align_corners)
    p.assign(node, call(p.F("interpolate"), x, **by, mode=lit(mode), align_corners=corners), None if perm == identity(rank) else perm)
