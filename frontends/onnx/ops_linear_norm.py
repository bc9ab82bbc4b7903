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

from asgnas_ir.frontends.onnx._ops_common import OPS, _axis, _reshape_to, _scalar
from asgnas_ir.frontends.onnx.builder import FUSED, Builder, Const
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


def _plain(const: Const | None, fill: float) -> bool:
    """A constant the exporter built (no initializer behind it) holding only `fill`: torch writes
    the missing affine of `BatchNorm2d(affine=False)`, `LayerNorm(elementwise_affine=False)` and
    `GroupNorm(affine=False)` as such ones and zeros. They are no weights (nothing in the model
    holds them), so they must not become params."""
    return const is not None and const.origin is None and bool(np.all(const.array == fill))


def _per_feature(shape: tuple[int, ...], features: int) -> bool:
    """Whether a constant of `shape` added to a [..., features] result adds one value per feature:
    `(F,)`, `(1, F)`, `(1, 1, F)`, or any size-1 shape when there is one feature."""
    if not shape:
        return features == 1
    return shape[-1] == features and all(d == 1 for d in shape[:-1])


def _reshaped_param(b: Builder, const: Const, shape: tuple[int, ...], axes: str, fallback: str) -> str | None:
    """A param of `shape` for a constant with the same elements in another shape (`(1, O)` as `(O,)`);
    one read from an initializer keeps the initializer's name (so `check` writes it back by
    reshaping, and a torch path still binds). None for a transposed view of an initializer."""
    if const.origin is not None and const.origin.perm is not None:
        return None
    if const.origin is not None and b.initializers[const.origin.name].shape != shape:
        fallback = b.source_names.get(const.origin.name, const.origin.name)
        const = Const(const.array.reshape(shape))
    elif const.origin is None:
        const = Const(const.array.reshape(shape))
    return b.param(const, axes, fallback)


def _bias_param(b: Builder, const: Const | None, out_features: int, fallback: str) -> str | None:
    # a concatenation of weights (BEiT's `cat(q_bias, k_bias, v_bias)`) is no one param: it stays a
    # tensor added after the layer, so each piece keeps its own binding (NOTE: [Folded weights are frozen])
    if const is None or const.pieces is not None or not _per_feature(tuple(const.array.shape), out_features):
        return None
    return _reshaped_param(b, const, (out_features,), "O", fallback)


def _fused_bias(b: Builder, out_name: str, out_features: int) -> tuple[str | None, onnx.NodeProto | None]:
    """`MatMul` followed by its only consumer `Add(y, bias)` with a per-feature constant: one linear layer.

    A bias of higher rank than the product broadcasts it up (`(1, 1, O)` on a rank-2 MatMul): the
    Add then stays a separate broadcasting add."""
    add = b.only_consumer(out_name)
    if add is None or add.op_type != "Add":
        return None, None
    other = 1 if add.input[0] == out_name else 0
    const = b.env.get(add.input[other])
    out_type = b.types.get(out_name)
    if not isinstance(const, Const) or out_type is None or out_type.shape is None or const.array.ndim > len(out_type.shape):
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
    in_features, out_features = (int(d) for d in weight.array.shape)
    # B = W^T of a torch Linear weight W (O, I): bind to W itself, which reads "OI".
    name, _ = b.weight_param(weight, "IO", "OI", f"{node.name}_weight")
    params = {"weight": name}
    bias, add = _fused_bias(b, node.output[0], out_features)
    if add is not None:
        params["bias"] = bias  # type: ignore[assignment]
        b.fused.add(id(add))
    last = add.output[0] if add is not None else node.output[0]
    if b.rank(x) == 1:
        # a vector times a matrix: a linear layer on one row, its features the row's entries
        row = _reshape_to(b, x, (1, in_features), name=f"{last}_row")
        out = b.emit(Op.LINEAR, [row], None, params, name=f"{last}_linear")
        out = _reshape_to(b, out, (out_features,), name=last)
    else:
        out = b.emit(Op.LINEAR, [x], None, params, name=last)
    if add is not None:
        b.env[last] = out
        b.check_shape(last, out)
    return out


@OPS.register("Gemm")
def gemm(b: Builder, node: onnx.NodeProto) -> str:
    """Gemm(A, B, C?) alpha, beta, transA=0, transB: A activation, B constant -> linear (+ scale, + add)

    C broadcasts to the [M, N] product. Only a C that holds one value per output column (`(N,)`,
    `(1, N)`), with alpha = beta = 1, is the linear layer's bias; any other C (a scalar, `(M, 1)`,
    `(M, N)`, a run-time tensor) is added after the layer, so a `(M, 1)` column is never read as a
    row when M == N. alpha and beta are scalar multiplications of the product and of C.
    """
    weight = b.const(node, 1)
    if weight is None or b.attr(node, "transA", 0) or b.const(node, 0) is not None:
        raise b.fail("Gemm is supported as a linear layer: activation A (transA=0) and a constant B")
    alpha, beta = float(b.attr(node, "alpha", 1.0)), float(b.attr(node, "beta", 1.0))
    if b.attr(node, "transB", 0):
        name, _ = b.weight_param(weight, "OI", "IO", f"{node.name}_weight")
        out_features = int(weight.array.shape[0])
    else:
        name, _ = b.weight_param(weight, "IO", "OI", f"{node.name}_weight")
        out_features = int(weight.array.shape[1])
    params = {"weight": name}
    x = b.tensor(node, 0)
    with_c = b.has_input(node, 2) and beta != 0.0
    c = b.const(node, 2) if with_c else None
    # alpha*P + beta*C = beta * ((alpha/beta)*P + C): C stays the constant it is (a param bound to
    # its initializer, whose channels a removal zeroes with the product's), and the scalings are
    # zero-preserving multiplications around it
    product_scale = alpha / beta if with_c else alpha
    bias = _bias_param(b, c, out_features, f"{node.name}_bias") if c is not None and product_scale == 1.0 else None
    steps: list[tuple[Op, list[str], A.BinaryAttrs | None]] = []
    if bias is not None:
        params["bias"] = bias
    else:
        if product_scale != 1.0:
            steps.append((Op.MUL, [], A.BinaryAttrs(scalar=product_scale)))
        if with_c:
            scalar = _scalar(c) if c is not None and c.origin is None else None
            if scalar is not None:
                steps.append((Op.ADD, [], A.BinaryAttrs(scalar=scalar)))
            else:
                steps.append((Op.ADD, [b.tensor(node, 2)], A.BinaryAttrs()))
    if with_c and beta != 1.0:
        steps.append((Op.MUL, [], A.BinaryAttrs(scalar=beta)))
    out = b.emit(Op.LINEAR, [x], None, params, name=f"{node.output[0]}_product" if steps else None)
    for i, (op, operands, attrs) in enumerate(steps):
        out = b.emit(op, [out, *operands], attrs, name=None if i == len(steps) - 1 else f"{node.output[0]}_step{i}")
    return out


def _affine(b: Builder, node: onnx.NodeProto, scale_index: int, bias_index: int, axes: str) -> dict[str, str]:
    """Scale and shift params; an all-ones scale and all-zeros shift that are not weights mean none."""
    scale, shift = b.const(node, scale_index), b.const(node, bias_index)
    if (b.has_input(node, scale_index) and scale is None) or (b.has_input(node, bias_index) and shift is None):
        raise b.fail("normalisation scale and bias must be constants")
    plain_scale = scale is None or _plain(scale, 1.0)
    plain_shift = shift is None or _plain(shift, 0.0)
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
    params: dict[str, str] = {}
    for role, index in (("running_mean", 3), ("running_var", 4)):
        const = b.const(node, index)
        if const is None:
            raise b.fail(f"BatchNormalization's {role} must be a constant")
        params[role] = b.param(const, "C", f"{node.name}_{role}", trainable=False)
    for role, index in (("weight", 1), ("bias", 2)):
        if b.const(node, index) is None:
            raise b.fail(f"BatchNormalization's {role} must be a constant")
    params.update(_affine(b, node, 1, 2, "C"))
    momentum = 1.0 - float(b.attr(node, "momentum", 0.9))
    attrs = A.BatchNormAttrs(eps=float(b.attr(node, "epsilon", 1e-5)), momentum=round(momentum, 6))
    return b.emit(Op.BATCH_NORM, [b.tensor(node, 0)], attrs, params)


@OPS.register("LayerNormalization")
def layer_norm(b: Builder, node: onnx.NodeProto) -> str:
    """LayerNormalization(X, Scale, B?) axis=-1, epsilon

    Scale and B broadcast to the normalized shape X.shape[axis:]. One with that many elements
    (`(1, F)` for `(F,)`) is the layer's param; a smaller one (a `(1, F)` scale over `(T, F)`) really
    broadcasts and is applied after an affine-free layer norm as a Mul / Add by the constant.
    """
    if len([o for o in node.output if o]) > 1:
        raise b.fail("LayerNormalization's mean / inv_std_dev outputs are not supported")
    x = b.tensor(node, 0)
    rank = b.rank(x)
    start = _axis(b, x, b.attr(node, "axis", -1))
    axes = tuple(range(start, rank))
    normalized = tuple(b.value(x).shape[start:])
    letters = "N" * (len(axes) - 1) + "C"
    scale, shift = b.const(node, 1), b.const(node, 2)
    for role, index, const in (("scale", 1, scale), ("bias", 2, shift)):
        if const is None and b.has_input(node, index):
            raise b.fail(f"LayerNormalization's {role} must be a constant")
        if const is not None:
            try:
                np.broadcast_shapes(const.array.shape, normalized)
            except ValueError:
                raise b.fail(
                    f"LayerNormalization's {role} of shape {list(const.array.shape)} does not broadcast to the "
                    f"normalized shape {list(normalized)} (axis {start})"
                ) from None
    if _plain(scale, 1.0) and (shift is None or _plain(shift, 0.0)):
        scale = shift = None  # torch's elementwise_affine=False, written as exporter constants

    def fits(const: Const | None) -> bool:
        return (const is not None and const.array.size == int(np.prod(normalized))
                and np.broadcast_shapes(const.array.shape, normalized) == normalized)

    params: dict[str, str] = {}
    after: list[tuple[Op, Const]] = []
    if scale is not None and fits(scale) and (shift is None or fits(shift)):
        for role, const in (("weight", scale), ("bias", shift)):
            if const is not None:
                params[role] = _reshaped_param(b, const, normalized, letters, f"{node.name}_{role}") or b.param(
                    Const(const.array.reshape(normalized)), letters, f"{node.name}_{role}"
                )
    else:
        after = [(op, const) for op, const in ((Op.MUL, scale), (Op.ADD, shift)) if const is not None]
    eps = float(b.attr(node, "epsilon", 1e-5))
    last = node.output[0]
    out = b.emit(Op.LAYER_NORM, [x], A.LayerNormAttrs(axes=axes, eps=eps), params, name=f"{last}_normalized" if after else last)
    for i, (op, const) in enumerate(after):
        name = last if i == len(after) - 1 else f"{last}_scaled"
        operand = b.constant_node(const, node.input[1 if op is Op.MUL else 2])
        out = b.emit(op, [out, operand], A.BinaryAttrs(), name=name)
    return out


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
    affine: dict[str, tuple[Const, onnx.NodeProto]] = {}
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
        affine[role] = (const, nxt)
        fused.append(nxt)
        last = nxt.output[0]
    params: dict[str, str] = {}
    # GroupNorm(affine=False) exports a Mul by ones and an Add of zeros: no params then
    if not all(_plain(const, 1.0 if role == "weight" else 0.0) for role, (const, _) in affine.items()):
        for role, (const, nxt) in affine.items():
            params[role] = b.param(const, "C", f"{nxt.name}_{role}")
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
