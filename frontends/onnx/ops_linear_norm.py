"""ONNX frontend converters for linear layers and normalisations (the `asgnas_ir.opdefs.linear_norm` family).

MatMul with a constant weight (fused with a following per-feature bias Add) and Gemm as linear
layers; BatchNormalization, LayerNormalization, InstanceNormalization (including torch's
Reshape-InstanceNormalization-Reshape export of group norm) and GroupNormalization with their
affine params. Split out of `ops.py` so each file holds one op family; importing this module
registers its converters in `OPS`.
"""

from __future__ import annotations

import numpy as np
import onnx

from asgnas_ir.frontends.onnx._ops_common import OPS, _axis
from asgnas_ir.frontends.onnx.builder import FUSED, Builder, Const
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


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
