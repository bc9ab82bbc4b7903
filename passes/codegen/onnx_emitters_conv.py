"""codegen-onnx emitters for convolutions and pooling (the `asgnas_ir.opdefs.conv` family).

Conv and ConvTranspose (weights transposed into ONNX's "OI"/"IO" layout when the IR keeps another,
non-zero padding modes as an explicit Pad), MaxPool/AveragePool (ceil mode written as floor mode
with extra end padding) and adaptive pools (global, or the one regular pool with the same windows).
Channels-last nodes are refused. Kept apart from `onnx_codegen` so each file holds one op family;
importing this module registers its emitters in `ONNX_EMITTERS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgnas_ir.errors import CodegenError
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._onnx_printer import OnnxPrinter, emits

if TYPE_CHECKING:
    import onnx_ir as ir


def _refuse_channels_last(node: NodeBase) -> None:
    if getattr(node.attrs, "channels_last", False):
        raise CodegenError(
            f"node '{node.id}' (op {node.op.value}, from '{node.source}') is channels-last; codegen-onnx emits "
            "channels-first convolutions and pools only in this version"
        )


def _weight_in(p: OnnxPrinter, node: NodeBase, prefix: str) -> ir.Value:
    """The conv weight in ONNX's layout: `prefix` ("OI" or "IO") then the spatial axes."""
    info = p.param_info(node, "weight")
    weight = p.param(node, "weight")
    axes = info.axes or ""
    if not axes or axes.startswith(prefix):
        return weight
    spatial = [i for i, letter in enumerate(axes) if letter not in "OI"]
    perm = [axes.index(prefix[0]), axes.index(prefix[1]), *spatial]
    return p.op(node, "Transpose", [weight], "weight", perm=perm)


_PAD_MODES = {"constant": "constant", "zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@emits(Op.CONV)
def _conv(p: OnnxPrinter, node: NodeBase) -> None:
    _refuse_channels_last(node)
    attrs: A.ConvAttrs = node.attrs  # type: ignore[assignment]
    weight = _weight_in(p, node, "OI")
    info = p.param_info(node, "weight")
    kernel = [d for d, letter in zip(info.shape, info.axes or "OI" + "K" * (len(info.shape) - 2), strict=True) if letter not in "OI"]
    x = p.x(node)
    pads: list[int] = [b for b, _ in attrs.padding] + [a for _, a in attrs.padding]
    if attrs.padding_mode != "zeros" and any(pads):
        full = [0, 0, *[b for b, _ in attrs.padding], 0, 0, *[a for _, a in attrs.padding]]
        x = p.op(node, "Pad", [x, p.ints(node, "pads", full)], "padded", mode=_PAD_MODES[attrs.padding_mode])
        pads = [0] * len(pads)
    bias = p.param(node, "bias") if p.has(node, "bias") else None
    p.out(
        node, "Conv", [x, weight] + ([bias] if bias is not None else []),
        kernel_shape=kernel, strides=attrs.stride, pads=pads, dilations=attrs.dilation, group=attrs.groups,
    )


@emits(Op.CONV_TRANSPOSE)
def _conv_transpose(p: OnnxPrinter, node: NodeBase) -> None:
    """ConvTranspose; an output padding that is not below the stride is written as padding.

    torch accepts `output_padding < max(stride, dilation)`, onnxruntime only `< stride`. Output
    padding only lengthens the end of the uncropped output, so it is the same as cropping that
    much less at the end (`pads_end = padding - output_padding`); when that would be negative the
    end is not cropped and the missing positions, which no input reaches, are zeros plus the bias.
    """
    _refuse_channels_last(node)
    attrs: A.ConvTransposeAttrs = node.attrs  # type: ignore[assignment]
    weight = _weight_in(p, node, "IO")
    info = p.param_info(node, "weight")
    kernel = [d for d, letter in zip(info.shape, info.axes or "IO" + "K" * (len(info.shape) - 2), strict=True) if letter not in "OI"]
    bias = p.param(node, "bias") if p.has(node, "bias") else None
    kept, ends, extra = [], [], []
    for pad, out_pad, stride in zip(attrs.padding, attrs.output_padding, attrs.stride, strict=True):
        if out_pad < stride:
            kept.append(out_pad)
            ends.append(pad)
            extra.append(0)
        else:
            kept.append(0)
            ends.append(max(pad - out_pad, 0))
            extra.append(max(out_pad - pad, 0))
    conv_attrs = {
        "kernel_shape": kernel, "strides": attrs.stride, "pads": [*attrs.padding, *ends],
        "output_padding": kept if any(kept) else None, "dilations": attrs.dilation, "group": attrs.groups,
    }
    if not any(extra):
        p.out(node, "ConvTranspose", [p.x(node), weight] + ([bias] if bias is not None else []), **conv_attrs)
        return
    y = p.op(node, "ConvTranspose", [p.x(node), weight], "transposed", **conv_attrs)
    spatial = len(extra)
    pads = p.ints(node, "output_padding", [0] * (spatial + 2) + [0, 0, *extra])
    if bias is None:
        p.out(node, "Pad", [y, pads], mode="constant")
        return
    y = p.op(node, "Pad", [y, pads], "padded", mode="constant")
    shift = p.op(node, "Unsqueeze", [bias, p.ints(node, "bias_axes", range(1, spatial + 1))], "bias_c")
    p.out(node, "Add", [y, shift])


@emits(Op.MAX_POOL, Op.AVG_POOL)
def _pool(p: OnnxPrinter, node: NodeBase) -> None:
    """MaxPool / AveragePool. ceil_mode is written as floor mode with extra end padding: torch drops a
    last window that would start in the padding, ONNX's shape inference keeps it, so `ceil_mode=1`
    would make the file disagree with its own declared shapes."""
    _refuse_channels_last(node)
    attrs: A.PoolAttrs = node.attrs  # type: ignore[assignment]
    n = len(attrs.kernel_size)
    padding = list(attrs.padding or (0,) * n)
    stride = attrs.stride or attrs.kernel_size
    dilation = attrs.dilation or (1,) * n
    x = p.x(node)
    end = list(padding)
    count_include_pad = node.op is Op.AVG_POOL and attrs.count_include_pad
    if attrs.ceil_mode:
        in_sizes, out_sizes = p.shape(node.inputs[0])[2:], p.shape(node.outputs[0])[2:]
        extra = [
            max(0, (o - 1) * s + d * (k - 1) + 1 - (i + 2 * q))
            for i, o, k, s, d, q in zip(in_sizes, out_sizes, attrs.kernel_size, stride, dilation, padding, strict=True)
        ]
        if count_include_pad and any(padding):
            # torch counts the padding but not the ceil overhang: pad with zeros, then count nothing padded
            pads = p.ints(node, "pads", [0, 0, *padding, 0, 0, *padding])
            x = p.op(node, "Pad", [x, pads, p.scalar(node, "zero", 0.0)], "padded", mode="constant")
            padding = [0] * n
        end = [q + e for q, e in zip(padding, extra, strict=True)]
        count_include_pad = False
    common: dict[str, Any] = {
        "kernel_shape": attrs.kernel_size,
        "strides": stride,
        "pads": [*padding, *end],
        "dilations": dilation if set(dilation) != {1} else None,
    }
    if node.op is Op.MAX_POOL:
        p.out(node, "MaxPool", [x], **common)
    else:
        p.out(node, "AveragePool", [x], count_include_pad=1 if count_include_pad else None, **common)


def adaptive_window(in_size: int, out_size: int) -> tuple[int, int] | None:
    """(kernel, stride) of the regular pool equal to torch's adaptive pool from in_size to out_size,
    or None when torch's windows (start floor(i*in/out), end ceil((i+1)*in/out)) are not regular."""
    starts = [(i * in_size) // out_size for i in range(out_size)]
    ends = [-((-(i + 1) * in_size) // out_size) for i in range(out_size)]
    sizes = {e - s for s, e in zip(starts, ends, strict=True)}
    if len(sizes) != 1:
        return None
    kernel = sizes.pop()
    if out_size == 1:
        return kernel, 1
    steps = {b - a for a, b in zip(starts, starts[1:], strict=False)}
    if len(steps) != 1:
        return None
    stride = steps.pop()
    return (kernel, stride) if stride >= 1 else None


@emits(Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL)
def _adaptive_pool(p: OnnxPrinter, node: NodeBase) -> None:
    """Global pool for output 1, else the regular pool with the same windows, else refused."""
    _refuse_channels_last(node)
    attrs: A.AdaptivePoolAttrs = node.attrs  # type: ignore[assignment]
    kind = "Average" if node.op is Op.ADAPTIVE_AVG_POOL else "Max"
    spatial = p.shape(node.inputs[0])[2:]
    if set(attrs.output_size) == {1}:
        p.out(node, f"Global{kind}Pool", [p.x(node)])
        return
    windows = [adaptive_window(i, o) for i, o in zip(spatial, attrs.output_size, strict=True)]
    if any(w is None for w in windows):
        raise CodegenError(
            f"node '{node.id}' ({node.op.value}, from '{node.source}') pools {tuple(spatial)} to {attrs.output_size}: "
            "its windows have different sizes, which no single ONNX pool can express"
        )
    kernel = [w[0] for w in windows]  # type: ignore[index]
    stride = [w[1] for w in windows]  # type: ignore[index]
    p.out(node, f"{kind}Pool", [p.x(node)], kernel_shape=kernel, strides=stride)
