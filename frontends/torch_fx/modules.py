"""Converters keyed by nn.Module class (fx `call_module` nodes).

Each converter's docstring quotes the torch signature it reads. Lookup walks the module's MRO, so
a subclass of a supported layer that keeps its forward (e.g. a custom Conv2d) is covered too.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from asgnas_ir.frontends._table import ConverterTable
from asgnas_ir.frontends.torch_fx.builder import Builder, spatial_letters
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

MODULES = ConverterTable("torch.fx modules")


def ntuple(value: int | tuple | list, n: int) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return tuple(int(value[0]) for _ in range(n))
        return tuple(int(v) for v in value)
    return tuple(int(value) for _ in range(n))


def _input(b: Builder, node: torch.fx.Node) -> str:
    """The one tensor a layer is called on; a converter reads its settings from the module, so any
    further forward argument would be dropped and is refused instead."""
    args, kwargs = b.args(node)
    if len(args) + len(kwargs) != 1:
        raise b.fail(
            f"{type(b.module(node)).__name__} is called with {len(args) + len(kwargs)} arguments; the fx frontend "
            "lowers this layer called on its input tensor alone"
        )
    x = args[0] if args else next(iter(kwargs.values()))
    if not b.is_tensor(x):
        raise b.fail("expected a tensor input")
    return x


def conv_padding(b: Builder, padding: str | int | tuple, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> A.Pads:
    """torch's padding argument as explicit (before, after) pairs."""
    n = len(kernel)
    if padding == "valid":
        return tuple((0, 0) for _ in range(n))
    if padding == "same":
        pads = []
        for k, d in zip(kernel, dilation, strict=True):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple((p, p) for p in ntuple(padding, n))


@MODULES.register(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv(b: Builder, node: torch.fx.Node) -> str:
    """Conv{1,2,3}d(in, out, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True, padding_mode='zeros')"""
    m: nn.Conv2d = b.module(node)  # type: ignore[assignment]
    n = len(m.kernel_size)
    x = _input(b, node)
    require_batched(b, x, f"{type(m).__name__} '{node.target}'", n + 1)
    attrs = A.ConvAttrs(
        stride=ntuple(m.stride, n),
        padding=conv_padding(b, m.padding, tuple(m.kernel_size), ntuple(m.dilation, n)),
        dilation=ntuple(m.dilation, n),
        groups=m.groups,
        padding_mode=m.padding_mode,
    )
    params = b.module_params(str(node.target), m, {"weight": "OI" + spatial_letters(n), "bias": "O"})
    return b.emit(Op.CONV, [x], attrs, params)


@MODULES.register(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose(b: Builder, node: torch.fx.Node) -> str:
    """ConvTranspose{1,2,3}d(in, out, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True, dilation=1)"""
    m: nn.ConvTranspose2d = b.module(node)  # type: ignore[assignment]
    if len(node.args) > 1 or "output_size" in node.kwargs:
        raise b.fail("ConvTranspose called with output_size is not supported; set output_padding on the layer instead")
    n = len(m.kernel_size)
    require_batched(b, _input(b, node), f"{type(m).__name__} '{node.target}'", n + 1)
    attrs = A.ConvTransposeAttrs(
        stride=ntuple(m.stride, n),
        padding=ntuple(m.padding, n),
        output_padding=ntuple(m.output_padding, n),
        dilation=ntuple(m.dilation, n),
        groups=m.groups,
    )
    params = b.module_params(str(node.target), m, {"weight": "IO" + spatial_letters(n), "bias": "O"})
    return b.emit(Op.CONV_TRANSPOSE, [_input(b, node)], attrs, params)


def require_batched(b: Builder, x: str, layer: str, unbatched_rank: int = 1) -> None:
    """Refuse an unbatched input (rank `unbatched_rank`) to a linear or conv layer.

    torch accepts `Linear(in)(x)` with x of shape [in] and `Conv2d` on [C, H, W], but the IR reads
    axis 0 of every value as the batch: a [in] vector would be one sample whose only axis is both
    batch and features, and a [C, H, W] image would put its channels on the batch axis, so no
    channel could be pruned or kept consistently. A user runs such a model on batches in practice,
    so the example input must show the batch axis.
    """
    shape = b.value(x).shape
    if len(shape) != unbatched_rank:
        return
    forward_input = any(n.op == "placeholder" and b.env.get(n) == x for n in b.env)
    what = f"forward input '{x}'" if forward_input else f"value '{x}'"
    raise b.fail(
        f"{layer} reads the {what} of shape {list(shape)} without a batch axis; the IR needs one. "
        f"Add a batch dimension (e.g. example input x.unsqueeze(0) of shape {[1, *shape]})"
    )


@MODULES.register(nn.Linear)
def linear(b: Builder, node: torch.fx.Node) -> str:
    """Linear(in_features, out_features, bias=True)"""
    x = _input(b, node)
    require_batched(b, x, f"nn.Linear '{node.target}'")
    params = b.module_params(str(node.target), b.module(node), {"weight": "OI", "bias": "O"})
    return b.emit(Op.LINEAR, [x], None, params)


_NORM_PARAMS = {"weight": "C", "bias": "C", "running_mean": "C", "running_var": "C", "num_batches_tracked": None}


@MODULES.register(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def batch_norm(b: Builder, node: torch.fx.Node) -> str:
    """BatchNorm{1,2,3}d(num_features, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"""
    m: nn.BatchNorm2d = b.module(node)  # type: ignore[assignment]
    params = b.module_params(str(node.target), m, _NORM_PARAMS)
    return b.emit(Op.BATCH_NORM, [_input(b, node)], A.BatchNormAttrs(eps=m.eps, momentum=m.momentum), params)


@MODULES.register(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def instance_norm(b: Builder, node: torch.fx.Node) -> str:
    """InstanceNorm{1,2,3}d(num_features, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)"""
    m: nn.InstanceNorm2d = b.module(node)  # type: ignore[assignment]
    params = b.module_params(str(node.target), m, _NORM_PARAMS)
    return b.emit(Op.INSTANCE_NORM, [_input(b, node)], A.InstanceNormAttrs(eps=m.eps, momentum=m.momentum), params)


@MODULES.register(nn.GroupNorm)
def group_norm(b: Builder, node: torch.fx.Node) -> str:
    """GroupNorm(num_groups, num_channels, eps=1e-05, affine=True)"""
    m: nn.GroupNorm = b.module(node)  # type: ignore[assignment]
    params = b.module_params(str(node.target), m, {"weight": "C", "bias": "C"})
    return b.emit(Op.GROUP_NORM, [_input(b, node)], A.GroupNormAttrs(num_groups=m.num_groups, eps=m.eps), params)


@MODULES.register(nn.LayerNorm)
def layer_norm(b: Builder, node: torch.fx.Node) -> str:
    """LayerNorm(normalized_shape, eps=1e-05, elementwise_affine=True, bias=True)"""
    m: nn.LayerNorm = b.module(node)  # type: ignore[assignment]
    x = _input(b, node)
    rank = len(b.value(x).shape)
    axes = tuple(range(rank - len(m.normalized_shape), rank))
    letters = "".join("C" if i == len(axes) - 1 else "N" for i in range(len(axes)))
    params = b.module_params(str(node.target), m, {"weight": letters, "bias": letters})
    return b.emit(Op.LAYER_NORM, [x], A.LayerNormAttrs(axes=axes, eps=m.eps), params)


def _unary(op: Op, attrs_of=None):  # noqa: ANN001, ANN202
    def convert(b: Builder, node: torch.fx.Node) -> str:
        attrs = attrs_of(b.module(node)) if attrs_of else None
        return b.emit(op, [_input(b, node)], attrs)

    convert.__doc__ = f"nn module lowered to {op.value}"
    return convert


MODULES.add([nn.ReLU], _unary(Op.RELU))
MODULES.add([nn.ReLU6], _unary(Op.CLAMP, lambda m: A.ClampAttrs(min=0.0, max=6.0)))
MODULES.add([nn.Hardtanh], _unary(Op.CLAMP, lambda m: A.ClampAttrs(min=m.min_val, max=m.max_val)))
MODULES.add([nn.LeakyReLU], _unary(Op.LEAKY_RELU, lambda m: A.LeakyReluAttrs(negative_slope=m.negative_slope)))
MODULES.add([nn.GELU], _unary(Op.GELU, lambda m: A.GeluAttrs(approximate=m.approximate)))
MODULES.add([nn.SiLU], _unary(Op.SILU))
MODULES.add([nn.Sigmoid], _unary(Op.SIGMOID))
MODULES.add([nn.Tanh], _unary(Op.TANH))
MODULES.add([nn.Hardswish], _unary(Op.HARDSWISH))
MODULES.add([nn.Hardsigmoid], _unary(Op.HARDSIGMOID))
MODULES.add([nn.ELU], _unary(Op.ELU, lambda m: A.EluAttrs(alpha=m.alpha)))
MODULES.add([nn.Softplus], _unary(Op.SOFTPLUS, lambda m: A.SoftplusAttrs(beta=m.beta, threshold=m.threshold)))
MODULES.add([nn.Mish], _unary(Op.MISH))
MODULES.add([nn.Dropout], _unary(Op.DROPOUT, lambda m: A.DropoutAttrs(p=m.p)))
MODULES.add([nn.Dropout1d, nn.Dropout2d, nn.Dropout3d], _unary(Op.DROPOUT, lambda m: A.DropoutAttrs(p=m.p, channelwise=True)))


@MODULES.register(nn.Identity)
def identity(b: Builder, node: torch.fx.Node) -> str:
    """Identity(): no node, the output is the input"""
    return _input(b, node)


@MODULES.register(nn.Softmax)
def softmax(b: Builder, node: torch.fx.Node) -> str:
    """Softmax(dim)"""
    x = _input(b, node)
    dim = b.module(node).dim
    if dim is None:
        raise b.fail("nn.Softmax() without dim is ambiguous; set dim explicitly")
    return b.emit(Op.SOFTMAX, [x], A.AxisAttrs(axis=dim % len(b.value(x).shape)))


def pool_attrs(kernel, stride, padding, dilation, ceil_mode, count_include_pad, n: int) -> A.PoolAttrs:  # noqa: ANN001
    kernel_t = ntuple(kernel, n)
    return A.PoolAttrs(
        kernel_size=kernel_t,
        stride=ntuple(stride if stride not in (None, ()) else kernel_t, n),
        padding=ntuple(padding, n),
        dilation=ntuple(dilation, n) if dilation is not None else (),
        ceil_mode=bool(ceil_mode),
        count_include_pad=bool(count_include_pad),
    )


@MODULES.register(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
def max_pool(b: Builder, node: torch.fx.Node) -> str:
    """MaxPool{1,2,3}d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False)"""
    m: nn.MaxPool2d = b.module(node)  # type: ignore[assignment]
    if m.return_indices:
        raise b.fail("MaxPool with return_indices=True is not supported")
    x = _input(b, node)
    n = len(b.value(x).shape) - 2
    attrs = pool_attrs(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, True, n)
    return b.emit(Op.MAX_POOL, [x], attrs)


@MODULES.register(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def avg_pool(b: Builder, node: torch.fx.Node) -> str:
    """AvgPool{1,2,3}d(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True)"""
    m: nn.AvgPool2d = b.module(node)  # type: ignore[assignment]
    x = _input(b, node)
    n = len(b.value(x).shape) - 2
    attrs = pool_attrs(m.kernel_size, m.stride, m.padding, None, m.ceil_mode, m.count_include_pad, n)
    return emit_avg_pool(b, x, attrs, getattr(m, "divisor_override", None))


def emit_avg_pool(b: Builder, x: str, attrs: A.PoolAttrs, divisor_override: int | None) -> str:
    """Average pooling; `divisor_override=d` divides each window's sum by d instead of its size.

    Where every window's average divides by the full kernel size (no partial windows from
    ceil_mode, and padding counted or absent), the sum over d is the average scaled by
    kernel/d, an exact rewrite. Elsewhere the divisor varies per window and the call is refused.
    """
    pooled = b.emit(Op.AVG_POOL, [x], attrs)
    if divisor_override is None:
        return pooled
    if attrs.ceil_mode or (any(attrs.padding) and not attrs.count_include_pad):
        raise b.fail(
            "avg_pool with divisor_override and ceil_mode=True or count_include_pad=False divides windows by "
            "different counts; this is not supported. Use sum pooling written out (avg_pool * kernel size)"
        )
    kernel = 1
    for k in attrs.kernel_size:
        kernel *= k
    return b.emit(Op.MUL, [pooled], A.BinaryAttrs(scalar=kernel / float(divisor_override)), name=f"{pooled}_divisor")


def adaptive_output(b: Builder, x: str, output_size: int | None | tuple) -> tuple[int, ...]:
    """torch's output_size with `None` entries (keep that axis) resolved to the input's sizes."""
    spatial = b.value(x).shape[2:]
    size = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * len(spatial)
    if len(size) == 1:
        size = size * len(spatial)
    return tuple(int(s if o is None else o) for o, s in zip(size, spatial, strict=True))


@MODULES.register(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def adaptive_avg_pool(b: Builder, node: torch.fx.Node) -> str:
    """AdaptiveAvgPool{1,2,3}d(output_size)"""
    x = _input(b, node)
    size = adaptive_output(b, x, b.module(node).output_size)
    return b.emit(Op.ADAPTIVE_AVG_POOL, [x], A.AdaptivePoolAttrs(output_size=size))


@MODULES.register(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
def adaptive_max_pool(b: Builder, node: torch.fx.Node) -> str:
    """AdaptiveMaxPool{1,2,3}d(output_size, return_indices=False)"""
    m = b.module(node)
    if m.return_indices:
        raise b.fail("AdaptiveMaxPool with return_indices=True is not supported")
    x = _input(b, node)
    return b.emit(Op.ADAPTIVE_MAX_POOL, [x], A.AdaptivePoolAttrs(output_size=adaptive_output(b, x, m.output_size)))


@MODULES.register(nn.Flatten)
def flatten(b: Builder, node: torch.fx.Node) -> str:
    """Flatten(start_dim=1, end_dim=-1)"""
    m: nn.Flatten = b.module(node)  # type: ignore[assignment]
    x = _input(b, node)
    rank = len(b.value(x).shape)
    return b.emit(Op.FLATTEN, [x], A.FlattenAttrs(start_axis=m.start_dim % rank, end_axis=m.end_dim % rank))
