"""ONNX frontend converters for convolutions and pooling (the `asgnas_ir.opdefs.conv` family).

Conv and ConvTranspose with constant weights, MaxPool/AveragePool (explicit or `auto_pad` pads,
read by the `_conv_pads` helper the two share) and GlobalAveragePool/GlobalMaxPool as adaptive
pools to size 1. Split out of `ops.py` so each file holds one op family; importing this module
registers its converters in `OPS`.
"""

from __future__ import annotations

import onnx

from asgnas_ir.frontends.onnx._ops_common import OPS
from asgnas_ir.frontends.onnx.builder import Builder, spatial_letters
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


def _conv_pads(b: Builder, node: onnx.NodeProto, x: str, kernel: tuple[int, ...], stride, dilation) -> A.Pads:  # noqa: ANN001
    n = len(kernel)
    auto = b.attr(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(b.value(x).shape[2:], kernel, stride, dilation, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return tuple(pads)
    if auto == "VALID":
        return tuple((0, 0) for _ in range(n))
    flat = b.attr(node, "pads") or [0] * (2 * n)
    return tuple((int(flat[i]), int(flat[i + n])) for i in range(n))


@OPS.register("Conv")
def conv(b: Builder, node: onnx.NodeProto) -> str:
    """Conv(X, W, B?) kernel_shape, strides, pads, dilations, group, auto_pad"""
    x = b.tensor(node, 0)
    weight = b.const(node, 1)
    if weight is None:
        raise b.fail("a Conv weight computed at run time is not supported (the weight must be an initializer)")
    n = weight.array.ndim - 2
    kernel = tuple(int(k) for k in weight.array.shape[2:])
    stride = tuple(int(s) for s in (b.attr(node, "strides") or [1] * n))
    dilation = tuple(int(d) for d in (b.attr(node, "dilations") or [1] * n))
    attrs = A.ConvAttrs(
        stride=stride,
        padding=_conv_pads(b, node, x, kernel, stride, dilation),
        dilation=dilation,
        groups=int(b.attr(node, "group", 1)),
    )
    params = {"weight": b.param(weight, "OI" + spatial_letters(n), f"{node.name}_weight")}
    bias = b.const(node, 2)
    if bias is not None and not (bias.origin is None and not bias.array.any()):
        params["bias"] = b.param(bias, "O", f"{node.name}_bias")
    elif b.is_tensor(node, 2):
        raise b.fail("a Conv bias computed at run time is not supported")
    return b.emit(Op.CONV, [x], attrs, params)


@OPS.register("ConvTranspose")
def conv_transpose(b: Builder, node: onnx.NodeProto) -> str:
    """ConvTranspose(X, W, B?) kernel_shape, strides, pads, output_padding, dilations, group (no output_shape)"""
    x = b.tensor(node, 0)
    weight = b.const(node, 1)
    if weight is None:
        raise b.fail("a ConvTranspose weight computed at run time is not supported")
    n = weight.array.ndim - 2
    if b.attr(node, "output_shape") is not None or b.attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise b.fail("ConvTranspose with output_shape or auto_pad SAME is not supported; give explicit pads")
    flat = b.attr(node, "pads") or [0] * (2 * n)
    if any(flat[i] != flat[i + n] for i in range(n)):
        raise b.fail(f"asymmetric ConvTranspose pads {flat} are not supported")
    attrs = A.ConvTransposeAttrs(
        stride=tuple(int(s) for s in (b.attr(node, "strides") or [1] * n)),
        padding=tuple(int(p) for p in flat[:n]),
        output_padding=tuple(int(p) for p in (b.attr(node, "output_padding") or [0] * n)),
        dilation=tuple(int(d) for d in (b.attr(node, "dilations") or [1] * n)),
        groups=int(b.attr(node, "group", 1)),
    )
    params = {"weight": b.param(weight, "IO" + spatial_letters(n), f"{node.name}_weight")}
    bias = b.const(node, 2)
    if bias is not None and not (bias.origin is None and not bias.array.any()):
        params["bias"] = b.param(bias, "O", f"{node.name}_bias")
    return b.emit(Op.CONV_TRANSPOSE, [x], attrs, params)


def _pool(op: Op):  # noqa: ANN202
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        if len([o for o in node.output if o]) > 1:
            raise b.fail("MaxPool's Indices output is not supported")
        x = b.tensor(node, 0)
        kernel = tuple(int(k) for k in b.attr(node, "kernel_shape"))
        n = len(kernel)
        stride = tuple(int(s) for s in (b.attr(node, "strides") or [1] * n))
        dilation = tuple(int(d) for d in (b.attr(node, "dilations") or [1] * n))
        pads = _conv_pads(b, node, x, kernel, stride, dilation)
        if any(lo != hi for lo, hi in pads):
            raise b.fail(f"asymmetric pooling pads {pads} are not supported")
        attrs = A.PoolAttrs(
            kernel_size=kernel,
            stride=stride,
            padding=tuple(lo for lo, _ in pads),
            dilation=dilation if op == Op.MAX_POOL else (),
            ceil_mode=bool(b.attr(node, "ceil_mode", 0)),
            count_include_pad=bool(b.attr(node, "count_include_pad", 0)) if op == Op.AVG_POOL else True,
        )
        return b.emit(op, [x], attrs)

    convert.__doc__ = f"{'MaxPool' if op == Op.MAX_POOL else 'AveragePool'}(X) kernel_shape, strides, pads, dilations, ceil_mode, auto_pad"
    return convert


OPS.add(["MaxPool"], _pool(Op.MAX_POOL))
OPS.add(["AveragePool"], _pool(Op.AVG_POOL))


def _global_pool(op: Op):  # noqa: ANN202
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        x = b.tensor(node, 0)
        return b.emit(op, [x], A.AdaptivePoolAttrs(output_size=(1,) * (b.rank(x) - 2)))

    convert.__doc__ = f"Global pooling lowered to {op.value} with output size 1"
    return convert


OPS.add(["GlobalAveragePool"], _global_pool(Op.ADAPTIVE_AVG_POOL))
OPS.add(["GlobalMaxPool"], _global_pool(Op.ADAPTIVE_MAX_POOL))
