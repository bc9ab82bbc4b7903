"""Converters keyed by ONNX op type (default domain).

A key is an op type, or `(op_type, since)` for an entry that applies from opset `since` on: the
driver picks the entry with the greatest `since` not above the model's opset. Most ops read their
opset-dependent inputs through `Builder.ints` (axes, split sizes and pads moved from attributes to
inputs at opsets 10-18), so one entry serves every opset; entries split by `since` where the
meaning itself changed (Softmax's axis before opset 13).

Each converter's docstring quotes the ONNX signature it reads. A converter returns the IR value
for the node's (first) output, or a list with one entry per output. Constant operands come as
`Const` (see builder.py); nodes whose inputs are all constant never reach a converter, the driver
folds them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx

from asgnas_ir.frontends._table import ConverterTable
from asgnas_ir.frontends.onnx.builder import FUSED, Builder, Const, spatial_letters
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

OPS = ConverterTable("onnx ops")
_INT_MAX = 2**62


def lookup(op_type: str, opset: int) -> Any:
    """The converter for `op_type` at `opset` (None when there is none)."""
    best, best_since = OPS.get(op_type), 0
    for key in OPS:
        if isinstance(key, tuple) and key[0] == op_type and best_since < key[1] <= opset:
            best, best_since = OPS.get(key), key[1]
    return best


def _axis(b: Builder, x: str, axis: int) -> int:
    return int(axis) % b.rank(x)


def _scalar(const: Const | None) -> float | None:
    if const is None or const.array.size != 1:
        return None
    return float(np.asarray(const.array).reshape(-1)[0])


def _reshape_to(b: Builder, x: str, shape: tuple[int, ...], name: str | None = None) -> str:
    if b.value(x).shape == tuple(shape):
        return x
    return b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=tuple(shape)), name=name)


# ---- convolution and linear ----------------------------------------------------------------------


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


def _bias_param(b: Builder, const: Const | None, out_features: int, fallback: str) -> str | None:
    if const is None or const.array.size != out_features or (const.origin is not None and const.origin.perm is not None):
        return None
    if const.origin is not None and b.initializers[const.origin.name].shape != (out_features,):
        # e.g. a (1, O) initializer: the param keeps the initializer's name with a 1-d array
        fallback = b.source_names.get(const.origin.name, const.origin.name)
        const = Const(const.array.reshape(out_features))
    elif const.origin is None:
        const = Const(const.array.reshape(out_features))
    return b.param(const, "O", fallback)


def _fused_bias(b: Builder, out_name: str, out_features: int) -> tuple[str | None, onnx.NodeProto | None]:
    """`MatMul` followed by its only consumer `Add(y, bias)` with a per-feature constant: one linear layer."""
    add = b.only_consumer(out_name)
    if add is None or add.op_type != "Add":
        return None, None
    other = 1 if add.input[0] == out_name else 0
    const = b.env.get(add.input[other])
    if not isinstance(const, Const) or const.array.ndim > 1 and any(d != 1 for d in const.array.shape[:-1]):
        return None, None
    name = _bias_param(b, const, out_features, f"{add.name}_bias")
    return (name, add) if name is not None else (None, None)


@OPS.register("MatMul")
def matmul(b: Builder, node: onnx.NodeProto) -> str:
    """MatMul(A, B): a constant B is a linear layer's weight (I, O), two activations an Op.MATMUL"""
    weight = b.const(node, 1)
    if weight is None or weight.array.ndim != 2 or b.const(node, 0) is not None:
        return b.emit(Op.MATMUL, [b.tensor(node, 0), b.tensor(node, 1)])
    x = b.tensor(node, 0)
    # B = W^T of a torch Linear weight W (O, I): bind to W itself, which reads "OI".
    name, _ = b.weight_param(weight, "IO", "OI", f"{node.name}_weight")
    params = {"weight": name}
    bias, add = _fused_bias(b, node.output[0], int(weight.array.shape[1]))
    if add is not None:
        params["bias"] = bias  # type: ignore[assignment]
        b.fused.add(id(add))
        b.env[add.output[0]] = out = b.emit(Op.LINEAR, [x], None, params, name=add.output[0])
        b.check_shape(add.output[0], out)
        return out
    return b.emit(Op.LINEAR, [x], None, params)


@OPS.register("Gemm")
def gemm(b: Builder, node: onnx.NodeProto) -> str:
    """Gemm(A, B, C?) alpha=1, beta=1, transA=0, transB: A activation, B constant -> linear"""
    weight = b.const(node, 1)
    if weight is None or b.attr(node, "transA", 0) or b.const(node, 0) is not None:
        raise b.fail("Gemm is supported as a linear layer: activation A (transA=0) and a constant B")
    alpha, beta = float(b.attr(node, "alpha", 1.0)), float(b.attr(node, "beta", 1.0))
    if alpha != 1.0 or beta != 1.0:
        raise b.fail(f"Gemm with alpha={alpha}, beta={beta} is not supported (only 1, 1)")
    if b.attr(node, "transB", 0):
        name, _ = b.weight_param(weight, "OI", "IO", f"{node.name}_weight")
        out_features = int(weight.array.shape[0])
    else:
        name, _ = b.weight_param(weight, "IO", "OI", f"{node.name}_weight")
        out_features = int(weight.array.shape[1])
    params = {"weight": name}
    if b.has_input(node, 2):
        bias = _bias_param(b, b.const(node, 2), out_features, f"{node.name}_bias")
        if bias is None:
            raise b.fail("Gemm's C must be a constant per-output bias")
        params["bias"] = bias
    return b.emit(Op.LINEAR, [b.tensor(node, 0)], None, params)


@OPS.register("Gather")
def gather(b: Builder, node: onnx.NodeProto) -> str:
    """Gather(data, indices) axis: an embedding lookup (constant 2-d data) or a constant index (slice)"""
    data = b.const(node, 0)
    axis = int(b.attr(node, "axis", 0))
    if data is not None:
        if data.array.ndim != 2 or axis != 0 or b.const(node, 0) is None:
            raise b.fail("Gather of constant data is supported as an embedding lookup (2-d table, axis 0)")
        weight = b.param(data, "VO", f"{node.name}_weight")
        num, dim = data.array.shape
        return b.emit(Op.EMBEDDING, [b.tensor(node, 1)], A.EmbeddingAttrs(num_embeddings=int(num), dim=int(dim)), {"weight": weight})
    x = b.tensor(node, 0)
    axis = _axis(b, x, axis)
    index = b.const_array(node, 1, "Gather indices")
    size = b.value(x).shape[axis]
    flat = [int(i) % size for i in np.asarray(index).reshape(-1)]
    start = flat[0] if flat else 0
    steps = {j - i for i, j in zip(flat, flat[1:], strict=False)}
    if not flat or len(steps) > 1 or steps and next(iter(steps)) < 1:
        raise b.fail("Gather is supported with a constant scalar index or an increasing, evenly spaced index")
    step = next(iter(steps)) if steps else 1
    y = x
    if (start, len(flat), step) != (0, size, 1):
        y = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=start, stop=flat[-1] + 1, step=step))
    return _reshape_to(b, y, b.out_shape(node))


@OPS.register("GatherND")
def gather_nd(b: Builder, node: onnx.NodeProto) -> str:
    """GatherND(data, indices) batch_dims: with a constant 2-d table and [..., 1] indices, the same
    lookup as Gather on axis 0 (exporters write relative-position tables this way)"""
    data = b.const(node, 0)
    indices = b.const(node, 1)
    if data is None or indices is None or data.array.ndim != 2 or indices.array.shape[-1:] != (1,) or b.attr(node, "batch_dims", 0):
        raise b.fail("GatherND is supported as a table lookup: constant 2-d data, constant [..., 1] indices, batch_dims=0")
    weight = b.param(data, "VO", f"{node.name}_weight")
    rows = b.constant_node(Const(np.ascontiguousarray(indices.array[..., 0]).astype(np.int64)), f"{node.name}_rows")
    num, dim = data.array.shape
    return b.emit(Op.EMBEDDING, [rows], A.EmbeddingAttrs(num_embeddings=int(num), dim=int(dim)), {"weight": weight})


# ---- normalisation ------------------------------------------------------------------------------


def _affine(b: Builder, node: onnx.NodeProto, scale_index: int, bias_index: int, axes: str) -> dict[str, str]:
    """Scale and shift params; an all-ones scale and all-zeros shift that are not weights mean none."""
    scale, shift = b.const(node, scale_index), b.const(node, bias_index)
    if (b.has_input(node, scale_index) and scale is None) or (b.has_input(node, bias_index) and shift is None):
        raise b.fail("normalisation scale and bias must be constants")
    plain_scale = scale is None or (scale.origin is None and np.all(scale.array == 1))
    plain_shift = shift is None or (shift.origin is None and not shift.array.any())
    params: dict[str, str] = {}
    if not (plain_scale and plain_shift):
        if scale is not None:
            params["weight"] = b.param(scale, axes, f"{node.name}_weight")
        if shift is not None:
            params["bias"] = b.param(shift, axes, f"{node.name}_bias")
    return params


@OPS.register("BatchNormalization")
def batch_norm(b: Builder, node: onnx.NodeProto) -> str:
    """BatchNormalization(X, scale, B, input_mean, input_var) epsilon, momentum (inference mode)"""
    if b.attr(node, "training_mode", 0) or len([o for o in node.output if o]) > 1:
        raise b.fail("BatchNormalization in training mode is not supported; export the model in eval mode")
    params = {}
    for role, index in (("weight", 1), ("bias", 2), ("running_mean", 3), ("running_var", 4)):
        const = b.const(node, index)
        if const is None:
            raise b.fail(f"BatchNormalization's {role} must be a constant")
        stat = role.startswith("running")
        params[role] = b.param(const, "C", f"{node.name}_{role}", trainable=False if stat else None)
    momentum = 1.0 - float(b.attr(node, "momentum", 0.9))
    attrs = A.BatchNormAttrs(eps=float(b.attr(node, "epsilon", 1e-5)), momentum=round(momentum, 6))
    return b.emit(Op.BATCH_NORM, [b.tensor(node, 0)], attrs, params)


@OPS.register("LayerNormalization")
def layer_norm(b: Builder, node: onnx.NodeProto) -> str:
    """LayerNormalization(X, Scale, B?) axis=-1, epsilon"""
    if len([o for o in node.output if o]) > 1:
        raise b.fail("LayerNormalization's mean / inv_std_dev outputs are not supported")
    x = b.tensor(node, 0)
    rank = b.rank(x)
    start = _axis(b, x, b.attr(node, "axis", -1))
    axes = tuple(range(start, rank))
    letters = "N" * (len(axes) - 1) + "C"
    params: dict[str, str] = {}
    for role, index in (("weight", 1), ("bias", 2)):
        const = b.const(node, index)
        if const is not None:
            params[role] = b.param(const, letters, f"{node.name}_{role}")
        elif b.has_input(node, index):
            raise b.fail(f"LayerNormalization's {role} must be a constant")
    return b.emit(Op.LAYER_NORM, [x], A.LayerNormAttrs(axes=axes, eps=float(b.attr(node, "epsilon", 1e-5))), params)


def _group_norm_pattern(b: Builder, node: onnx.NodeProto) -> str | None:
    """torch's group_norm export: Reshape(x, [N, G, -1]) -> InstanceNormalization(ones, zeros)
    -> Reshape(back) [-> Mul(scale) -> Add(shift)] is one GroupNorm."""
    producer = b.producers.get(node.input[0])
    if producer is None or producer.op_type != "Reshape" or not isinstance(b.env.get(producer.input[0]), str):
        return None
    x = b.env[producer.input[0]]
    grouped = b.types.get(node.input[0])
    shape = b.value(x).shape
    if grouped is None or grouped.shape is None or len(grouped.shape) != 3 or len(shape) < 3:
        return None
    groups = grouped.shape[1]
    if grouped.shape[0] != shape[0] or shape[1] % groups:
        return None
    if _affine(b, node, 1, 2, "C"):
        return None
    back = b.only_consumer(node.output[0])
    if back is None or back.op_type != "Reshape" or b.types.get(back.output[0]) is None or b.types[back.output[0]].shape != shape:
        return None
    fused = [back]
    last = back.output[0]
    params: dict[str, str] = {}
    for op_type, role in (("Mul", "weight"), ("Add", "bias")):
        nxt = b.only_consumer(last)
        if nxt is None or nxt.op_type != op_type:
            break
        other = nxt.input[1] if nxt.input[0] == last else nxt.input[0]
        const = b.env.get(other)
        if not isinstance(const, Const) or const.array.size != shape[1] or const.array.shape[0] not in (1, shape[1]) and const.array.ndim == len(shape):
            break
        flat = const.array.reshape(-1)
        if const.origin is None:
            const = Const(flat)
        elif b.initializers[const.origin.name].shape != (shape[1],):
            break
        params[role] = b.param(const, "C", f"{nxt.name}_{role}")
        fused.append(nxt)
        last = nxt.output[0]
    for item in fused:
        b.fused.add(id(item))
    eps = float(b.attr(node, "epsilon", 1e-5))
    out = b.emit(Op.GROUP_NORM, [x], A.GroupNormAttrs(num_groups=int(groups), eps=eps), params, name=last)
    b.env[last] = out
    b.check_shape(last, out)
    return FUSED


@OPS.register("InstanceNormalization")
def instance_norm(b: Builder, node: onnx.NodeProto) -> str:
    """InstanceNormalization(input, scale, B) epsilon"""
    grouped = _group_norm_pattern(b, node)
    if grouped is not None:
        return grouped
    params = _affine(b, node, 1, 2, "C")
    return b.emit(Op.INSTANCE_NORM, [b.tensor(node, 0)], A.InstanceNormAttrs(eps=float(b.attr(node, "epsilon", 1e-5))), params)


@OPS.register("GroupNormalization")
def group_norm(b: Builder, node: onnx.NodeProto) -> str:
    """GroupNormalization(X, scale, bias) num_groups, epsilon (scale per channel; opset 18's per-group form only when G == C)"""
    x = b.tensor(node, 0)
    groups = int(b.attr(node, "num_groups"))
    channels = b.value(x).shape[1]
    scale = b.const(node, 1)
    if scale is not None and scale.array.size != channels:
        raise b.fail(f"GroupNormalization with a per-group scale ({scale.array.size} of {channels} channels) is not supported")
    params = _affine(b, node, 1, 2, "C")
    return b.emit(Op.GROUP_NORM, [x], A.GroupNormAttrs(num_groups=groups, eps=float(b.attr(node, "epsilon", 1e-5))), params)


# ---- elementwise unary --------------------------------------------------------------------------


def unary(op: Op, attrs_of=None):  # noqa: ANN001, ANN201
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        attrs = attrs_of(b, node) if attrs_of else None
        return b.emit(op, [b.tensor(node, 0)], attrs)

    convert.__doc__ = f"ONNX unary op lowered to {op.value}"
    return convert


OPS.add(["Relu"], unary(Op.RELU))
OPS.add(["Sigmoid"], unary(Op.SIGMOID))
OPS.add(["Tanh"], unary(Op.TANH))
OPS.add(["HardSwish"], unary(Op.HARDSWISH))
OPS.add(["Mish"], unary(Op.MISH))
OPS.add(["Neg"], unary(Op.NEG))
OPS.add(["Exp"], unary(Op.EXP))
OPS.add(["Sqrt"], unary(Op.SQRT))


@OPS.register("Pow")
def pow_(b: Builder, node: onnx.NodeProto) -> str:
    """Pow(X, Y) with a constant scalar exponent Y"""
    exponent = _scalar(b.const(node, 1))
    if exponent is None:
        raise b.fail("Pow is supported with a constant scalar exponent")
    return b.emit(Op.POW, [b.tensor(node, 0)], A.PowAttrs(exponent=float(exponent)))
OPS.add(["LeakyRelu"], unary(Op.LEAKY_RELU, lambda b, n: A.LeakyReluAttrs(negative_slope=float(b.attr(n, "alpha", 0.01)))))
OPS.add(["Elu"], unary(Op.ELU, lambda b, n: A.EluAttrs(alpha=float(b.attr(n, "alpha", 1.0)))))
OPS.add(["Softplus"], unary(Op.SOFTPLUS))
OPS.add(["Gelu"], unary(Op.GELU, lambda b, n: A.GeluAttrs(approximate=b.attr(n, "approximate", "none"))))


@OPS.register("Identity", "Dropout")
def identity(b: Builder, node: onnx.NodeProto) -> Any:
    """Identity(input) / Dropout(data, ratio?, training_mode?) in inference: no node, the output is the input"""
    x = b.tensor(node, 0)
    return [x, None] if len(node.output) > 1 else x


@OPS.register("Clip")
def clip(b: Builder, node: onnx.NodeProto) -> str:
    """Clip(input, min?, max?) (min/max were attributes before opset 11)"""
    if b.opset >= 11:
        low, high = _scalar(b.const(node, 1)), _scalar(b.const(node, 2))
        if (b.has_input(node, 1) and low is None) or (b.has_input(node, 2) and high is None):
            raise b.fail("Clip bounds must be constant scalars")
    else:
        low, high = b.attr(node, "min"), b.attr(node, "max")
    if low is None and high is None:
        return b.tensor(node, 0)
    if low == 0.0 and high is None:
        return b.emit(Op.RELU, [b.tensor(node, 0)])
    return b.emit(Op.CLAMP, [b.tensor(node, 0)], A.ClampAttrs(min=low, max=high))


@OPS.register("HardSigmoid")
def hard_sigmoid(b: Builder, node: onnx.NodeProto) -> str:
    """HardSigmoid(X) alpha=0.2, beta=0.5: max(0, min(1, alpha*x + beta))"""
    alpha, beta = float(b.attr(node, "alpha", 0.2)), float(b.attr(node, "beta", 0.5))
    x = b.tensor(node, 0)
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return b.emit(Op.HARDSIGMOID, [x])
    y = b.emit(Op.MUL, [x], A.BinaryAttrs(scalar=alpha), name=f"{node.output[0]}_scaled")
    y = b.emit(Op.ADD, [y], A.BinaryAttrs(scalar=beta), name=f"{node.output[0]}_shifted")
    return b.emit(Op.CLAMP, [y], A.ClampAttrs(min=0.0, max=1.0))


def _close(value: float | None, target: float) -> bool:
    return value is not None and math.isclose(value, target, rel_tol=1e-5)


@OPS.register("IsNaN")
def is_nan(b: Builder, node: onnx.NodeProto) -> Any:
    """IsNaN(x), supported as the NaN guard exporters put after attention softmax:
    Where(IsNaN(x), 0, x) is x for the finite values a lowered graph computes"""
    guard = b.only_consumer(node.output[0])
    x = node.input[0]
    if guard is None or guard.op_type != "Where" or guard.input[0] != node.output[0] or guard.input[2] != x:
        raise b.fail("IsNaN is supported only as the guard Where(IsNaN(x), 0, x)")
    if _scalar(b.const(guard, 1)) != 0.0:
        raise b.fail("IsNaN is supported only as the guard Where(IsNaN(x), 0, x)")
    b.fused.add(id(guard))
    b.env[guard.output[0]] = b.env[x]
    return FUSED


@OPS.register("Where")
def where(b: Builder, node: onnx.NodeProto) -> Any:
    """Where(condition, x, y) on run-time tensors: only as part of the IsNaN guard (see IsNaN)"""
    raise b.fail("Where on run-time tensors is supported only as the NaN guard Where(IsNaN(x), 0, x)")


@OPS.register("Erf")
def erf(b: Builder, node: onnx.NodeProto) -> str:
    """Erf(input), supported as part of exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))) in any association"""
    scaled = b.producers.get(node.input[0])
    x = None
    if scaled is not None and scaled.op_type in ("Div", "Mul") and b.is_tensor(scaled, 0):
        factor = _scalar(b.const(scaled, 1))
        if (scaled.op_type == "Div" and _close(factor, math.sqrt(2))) or (scaled.op_type == "Mul" and _close(factor, 1 / math.sqrt(2))):
            x = scaled.input[0]
    add = b.only_consumer(node.output[0])
    if x is None or add is None or add.op_type != "Add" or not _close(_scalar(b.env.get(add.input[1] if add.input[0] == node.output[0] else add.input[0])), 1.0):
        raise b.fail("a standalone Erf is not supported (only the exact-GELU pattern x*0.5*(1+erf(x/sqrt2)))")
    fused = [add]
    m1 = b.only_consumer(add.output[0])
    if m1 is None or m1.op_type != "Mul":
        raise b.fail("Erf outside the GELU pattern is not supported")
    other = m1.input[1] if m1.input[0] == add.output[0] else m1.input[0]
    fused.append(m1)
    half = b.producers.get(other)
    if other == x:  # (x * (1 + erf)) * 0.5
        m2 = b.only_consumer(m1.output[0])
        if m2 is None or m2.op_type != "Mul" or not any(_close(_scalar(b.env.get(i)), 0.5) for i in m2.input):
            raise b.fail("Erf outside the GELU pattern is not supported")
        fused.append(m2)
    elif _close(_scalar(b.env.get(other)), 0.5):  # x * (0.5 * (1 + erf))
        m2 = b.only_consumer(m1.output[0])
        if m2 is None or m2.op_type != "Mul" or x not in m2.input:
            raise b.fail("Erf outside the GELU pattern is not supported")
        fused.append(m2)
    elif half is None or half.op_type != "Mul" or x not in half.input or not any(_close(_scalar(b.env.get(i)), 0.5) for i in half.input):
        raise b.fail("Erf outside the GELU pattern is not supported")
    last = fused[-1].output[0]
    for item in fused:
        b.fused.add(id(item))
    out = b.emit(Op.GELU, [b.env[x]], A.GeluAttrs(approximate="none"), name=last)
    b.env[last] = out
    b.check_shape(last, out)
    return out


# ---- elementwise binary -------------------------------------------------------------------------


def binary(op: Op):  # noqa: ANN201
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        lhs, rhs = b.get(node.input[0]), b.get(node.input[1])
        if op == Op.MUL:
            silu = _silu(b, node)
            if silu is not None:
                return silu
        for tensor_first, const in ((True, rhs), (False, lhs)):
            scalar = _scalar(const) if isinstance(const, Const) and const.origin is None else None
            if scalar is not None:
                x = b.tensor(node, 0 if tensor_first else 1)
                shape = b.out_shape(node)
                if b.value(x).shape != shape:
                    break  # the scalar broadcasts the tensor up: keep it a tensor operand
                return b.emit(op, [x], A.BinaryAttrs(scalar=scalar, reverse=not tensor_first))
        return b.emit(op, [b.tensor(node, 0), b.tensor(node, 1)], A.BinaryAttrs())

    convert.__doc__ = f"ONNX binary op (numpy broadcasting) lowered to {op.value}"
    return convert


def _silu(b: Builder, node: onnx.NodeProto) -> str | None:
    """x * Sigmoid(x) is SiLU (torch exports nn.SiLU so at opsets without a Silu op)."""
    for i in (0, 1):
        producer = b.producers.get(node.input[i])
        x = node.input[1 - i]
        if producer is not None and producer.op_type == "Sigmoid" and producer.input[0] == x and isinstance(b.env.get(x), str):
            return b.emit(Op.SILU, [b.env[x]])
    return None


OPS.add(["Add"], binary(Op.ADD))
OPS.add(["Sub"], binary(Op.SUB))
OPS.add(["Mul"], binary(Op.MUL))
OPS.add(["Div"], binary(Op.DIV))


@OPS.register("Cast", "CastLike")
def cast(b: Builder, node: onnx.NodeProto) -> str:
    """Cast(input) to / CastLike(input, target_type): supported when the dtype does not change"""
    x = b.tensor(node, 0)
    found = b.types.get(node.output[0])
    if found is not None and found.dtype is not None and found.dtype != b.value(x).dtype:
        raise b.fail(f"{node.op_type} from {b.value(x).dtype} to {found.dtype} of a computed tensor is not supported")
    return x


# ---- data movement ------------------------------------------------------------------------------


@OPS.register("Concat")
def concat(b: Builder, node: onnx.NodeProto) -> str:
    """Concat(inputs...) axis"""
    tensors = [b.tensor(node, i) for i in range(len(node.input)) if b.has_input(node, i)]
    if len(tensors) == 1:
        return tensors[0]
    return b.emit(Op.CONCAT, tensors, A.AxisAttrs(axis=_axis(b, tensors[0], b.attr(node, "axis"))))


@OPS.register("Split")
def split(b: Builder, node: onnx.NodeProto) -> Any:
    """Split(input, split?) axis=0, num_outputs (split was an attribute before opset 13)"""
    x = b.tensor(node, 0)
    axis = _axis(b, x, b.attr(node, "axis", 0))
    sizes = tuple(b.out_shape(node, i)[axis] for i in range(len(node.output)))
    if len(sizes) == 1:
        return x
    return b.emit(Op.SPLIT, [x], A.SplitAttrs(axis=axis, sizes=sizes), outputs=len(sizes))


@OPS.register("SplitToSequence")
def split_to_sequence(b: Builder, node: onnx.NodeProto) -> list[str]:
    """SplitToSequence(input, split?) axis=0, keepdims=1: a split whose pieces SequenceAt picks"""
    x = b.tensor(node, 0)
    axis = _axis(b, x, b.attr(node, "axis", 0))
    size = b.value(x).shape[axis]
    split_arg = b.const(node, 1)
    if b.has_input(node, 1) and split_arg is None:
        raise b.fail("SplitToSequence split sizes must be constant")
    if split_arg is None:
        if not b.attr(node, "keepdims", 1):
            raise b.fail("SplitToSequence with keepdims=0 is not supported")
        sizes = [1] * size
    elif split_arg.array.ndim == 0:
        chunk = int(split_arg.array)
        sizes = [chunk] * (size // chunk) + ([size % chunk] if size % chunk else [])
    else:
        sizes = [int(s) for s in split_arg.array]
    if len(sizes) == 1:
        return [x]
    return b.emit(Op.SPLIT, [x], A.SplitAttrs(axis=axis, sizes=tuple(sizes)), outputs=len(sizes))


@OPS.register("SequenceAt")
def sequence_at(b: Builder, node: onnx.NodeProto) -> str:
    """SequenceAt(input_sequence, position) with a constant position"""
    seq = b.get(node.input[0])
    if not isinstance(seq, list):
        raise b.fail("SequenceAt reads a sequence that is not a split")
    return seq[int(b.const_array(node, 1, "position")) % len(seq)]


@OPS.register("Slice")
def slice_(b: Builder, node: onnx.NodeProto) -> str:
    """Slice(data, starts, ends, axes?, steps?) (attributes before opset 10)"""
    x = b.tensor(node, 0)
    starts = b.ints(node, 1, "starts", 10) or []
    ends = b.ints(node, 2, "ends", 10) or []
    axes = b.ints(node, 3, "axes", 10) or list(range(len(starts)))
    steps = (b.ints(node, 4, "steps", 10) if b.opset >= 10 else None) or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = _axis(b, x, axis)
        size = b.value(x).shape[axis]
        if step < 1:
            raise b.fail("negative-step Slice is not supported")
        begin, stop, _ = slice(max(-_INT_MAX, start), min(_INT_MAX, end), step).indices(size)
        stop = max(stop, begin)
        if (begin, stop, step) != (0, size, 1):
            x = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=begin, stop=stop, step=step))
    return x


@OPS.register("Reshape", "Squeeze", "Unsqueeze")
def reshape(b: Builder, node: onnx.NodeProto) -> str:
    """Reshape(data, shape) / Squeeze(data, axes?) / Unsqueeze(data, axes): a reshape to the inferred shape
    (axes moved from attribute to input at opset 13; the inferred output shape already accounts for it)"""
    return _reshape_to(b, b.tensor(node, 0), b.out_shape(node))


@OPS.register("Flatten")
def flatten(b: Builder, node: onnx.NodeProto) -> str:
    """Flatten(input) axis=1: always 2-d [prod(d[:axis]), prod(d[axis:])]"""
    x = b.tensor(node, 0)
    rank = b.rank(x)
    axis = int(b.attr(node, "axis", 1)) % (rank + 1) if rank else 0
    if axis == 1 and rank > 2:
        return b.emit(Op.FLATTEN, [x], A.FlattenAttrs(start_axis=1, end_axis=rank - 1))
    return _reshape_to(b, x, b.out_shape(node))


@OPS.register("Transpose")
def transpose(b: Builder, node: onnx.NodeProto) -> str:
    """Transpose(data) perm (default: reversed axes)"""
    x = b.tensor(node, 0)
    perm = tuple(int(p) for p in (b.attr(node, "perm") or reversed(range(b.rank(x)))))
    if perm == tuple(range(len(perm))):
        return x
    return b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=perm))


@OPS.register("Expand")
def expand(b: Builder, node: onnx.NodeProto) -> str:
    """Expand(input, shape): broadcast to the inferred output shape"""
    x = b.tensor(node, 0)
    shape = b.out_shape(node)
    if b.value(x).shape == shape:
        return x
    if b.rank(x) < len(shape):
        x = _reshape_to(b, x, (1,) * (len(shape) - b.rank(x)) + b.value(x).shape, name=f"{node.output[0]}_rank")
    return b.emit(Op.EXPAND, [x], A.ExpandAttrs(shape=shape))


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@OPS.register("Pad")
def pad(b: Builder, node: onnx.NodeProto) -> str:
    """Pad(data, pads, constant_value?, axes?) mode (pads an attribute before opset 11)"""
    x = b.tensor(node, 0)
    rank = b.rank(x)
    flat = b.ints(node, 1, "pads", 11) or [0] * (2 * rank)
    axes = (b.ints(node, 3, "axes", 18) if b.opset >= 18 else None) or list(range(rank))
    n = len(axes)
    pads = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        pads[int(axis) % rank] = (flat[i], flat[i + n])
    if any(p < 0 for pair in pads for p in pair):
        raise b.fail("negative padding (cropping) is not supported")
    mode = b.attr(node, "mode", "constant")
    if mode not in _PAD_MODES:
        raise b.fail(f"Pad mode '{mode}' is not supported")
    value = _scalar(b.const(node, 2)) if b.opset >= 11 else b.attr(node, "value", 0.0)
    if all(p == (0, 0) for p in pads):
        return x
    return b.emit(Op.PAD, [x], A.PadAttrs(pads=tuple(pads), mode=_PAD_MODES[mode], value=float(value or 0.0)))  # type: ignore[arg-type]


# ---- pooling and reductions ---------------------------------------------------------------------


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


def _reduce(op: Op, since: int):  # noqa: ANN202
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        x = b.tensor(node, 0)
        rank = b.rank(x)
        axes = b.ints(node, 1, "axes", since)
        if not axes:
            if b.attr(node, "noop_with_empty_axes", 0):
                return x
            axes = list(range(rank))
        keepdim = bool(b.attr(node, "keepdims", 1))
        return b.emit(op, [x], A.ReduceAttrs(axes=tuple(sorted({int(a) % rank for a in axes})), keepdim=keepdim))

    convert.__doc__ = f"Reduce(data, axes?) keepdims=1 lowered to {op.value} (axes an input from opset {since})"
    return convert


OPS.add(["ReduceMean"], _reduce(Op.MEAN, 18))
OPS.add(["ReduceSum"], _reduce(Op.SUM, 13))


@OPS.register("Softmax")
def softmax_v1(b: Builder, node: onnx.NodeProto) -> str:
    """Softmax(input) axis=1 before opset 13: softmax over the input flattened from `axis` on"""
    x = b.tensor(node, 0)
    axis = _axis(b, x, b.attr(node, "axis", 1))
    if axis != b.rank(x) - 1:
        raise b.fail("Softmax before opset 13 over more than the last axis is not supported")
    return b.emit(Op.SOFTMAX, [x], A.AxisAttrs(axis=axis))


@OPS.register(("Softmax", 13))
def softmax(b: Builder, node: onnx.NodeProto) -> str:
    """Softmax(input) axis=-1 (opset 13 on)"""
    x = b.tensor(node, 0)
    return b.emit(Op.SOFTMAX, [x], A.AxisAttrs(axis=_axis(b, x, b.attr(node, "axis", -1))))
