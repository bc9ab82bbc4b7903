"""Converters keyed by torch function or Python operator (fx `call_function` nodes).

Keys are qualified names (`torch.cat`, `torch.nn.functional.relu`, `operator.add`) so the table is
readable and `asgnas` can list it. Tensor methods reuse these converters (see `methods.py`):
`x.flatten(1)` and `torch.flatten(x, 1)` arrive with the same arguments.

Python-level arithmetic on sizes (`x.size(0) * 2`) never reaches the IR: when no operand is a
tensor the converter returns the value torch computed while recording.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from asgnas_ir.frontends._table import ConverterTable
from asgnas_ir.frontends.torch_fx.builder import Builder, TensorMeta
from asgnas_ir.frontends.torch_fx.modules import adaptive_output, ntuple, pool_attrs
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

FUNCTIONS = ConverterTable("torch.fx functions")


def function_key(target: Any) -> str:
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    if module in ("_operator", "operator"):
        module = "operator"
    elif module == "torch._C._nn":
        module = "torch.nn.functional"
    elif module.startswith("torch._C") or module == "torch.functional":
        module = "torch"
    return f"{module}.{name}" if module else name


def _get(args: list[Any], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _rank(b: Builder, x: str) -> int:
    return len(b.value(x).shape)


def _axis(b: Builder, x: str, dim: int) -> int:
    return int(dim) % _rank(b, x)


def _observed_shape(b: Builder, node: torch.fx.Node) -> tuple[int, ...]:
    seen = b.observed_value(node)
    return tuple(seen.shape)


def _python_result(b: Builder, node: torch.fx.Node) -> Any:
    """Value of an fx node that computes no tensor (size arithmetic)."""
    return b.observed_value(node)


# ---- elementwise -------------------------------------------------------------------------------


def emit_binary(b: Builder, op: Op, lhs: Any, rhs: Any, node: torch.fx.Node) -> Any:
    lhs_t, rhs_t = b.is_tensor(lhs), b.is_tensor(rhs)
    if lhs_t and rhs_t:
        return b.emit(op, [lhs, rhs], A.BinaryAttrs())
    if lhs_t or rhs_t:
        tensor, scalar = (lhs, rhs) if lhs_t else (rhs, lhs)
        if not isinstance(scalar, (int, float, bool)):
            raise b.fail(f"{op.value} with a {type(scalar).__name__} operand is not supported")
        return b.emit(op, [tensor], A.BinaryAttrs(scalar=float(scalar), reverse=not lhs_t))
    return _python_result(b, node)


def binary(op: Op):  # noqa: ANN201
    def convert(b: Builder, node: torch.fx.Node) -> Any:
        args, kwargs = b.args(node)
        lhs = _get(args, kwargs, 0, "input")
        rhs = _get(args, kwargs, 1, "other")
        if kwargs.get("alpha", 1) != 1:
            raise b.fail(f"{op.value} with alpha != 1 is not supported")
        return emit_binary(b, op, lhs, rhs, node)

    return convert


for _op, _keys in {
    Op.ADD: ["operator.add", "operator.iadd", "torch.add"],
    Op.SUB: ["operator.sub", "operator.isub", "torch.sub"],
    Op.MUL: ["operator.mul", "operator.imul", "torch.mul"],
    Op.DIV: ["operator.truediv", "operator.itruediv", "torch.div"],
}.items():
    FUNCTIONS.add(_keys, binary(_op))


@FUNCTIONS.register(
    "operator.floordiv", "operator.mod", "builtins.getattr", "math.sqrt", "math.ceil", "math.floor", "math.log"
)
def python_only(b: Builder, node: torch.fx.Node) -> Any:
    """Size arithmetic (`x.size(2) // 2`) and attribute reads (`x.shape`): Python values, no tensor."""
    args, _ = b.args(node)
    result = _python_result(b, node)
    if isinstance(result, TensorMeta) or (node.target is not getattr and any(b.is_tensor(a) for a in args)):
        raise b.fail(f"{function_key(node.target)} producing a tensor is not supported")
    return result


@FUNCTIONS.register("torch.pow", "operator.pow")
def power(b: Builder, node: torch.fx.Node) -> Any:
    """pow(input, exponent) / input ** exponent: a tensor to a scalar power (or size arithmetic)"""
    args, kwargs = b.args(node)
    base, exponent = _get(args, kwargs, 0, "input"), _get(args, kwargs, 1, "exponent")
    if not b.is_tensor(base) and not b.is_tensor(exponent):
        return _python_result(b, node)
    if not b.is_tensor(base) or not isinstance(exponent, (int, float)):
        raise b.fail("pow is supported for a tensor raised to a scalar power")
    return b.emit(Op.POW, [base], A.PowAttrs(exponent=float(exponent)))


def unary(op: Op, attrs_of=None):  # noqa: ANN001, ANN201
    def convert(b: Builder, node: torch.fx.Node) -> Any:
        args, kwargs = b.args(node)
        x = _get(args, kwargs, 0, "input")
        attrs = attrs_of(args, kwargs) if attrs_of else None
        return b.emit(op, [x], attrs)

    return convert


F = "torch.nn.functional"
FUNCTIONS.add(["torch.relu", f"{F}.relu", "torch.relu_", f"{F}.relu_"], unary(Op.RELU))
FUNCTIONS.add(["torch.sigmoid", f"{F}.sigmoid"], unary(Op.SIGMOID))
FUNCTIONS.add(["torch.tanh", f"{F}.tanh"], unary(Op.TANH))
FUNCTIONS.add([f"{F}.silu"], unary(Op.SILU))
FUNCTIONS.add([f"{F}.hardswish"], unary(Op.HARDSWISH))
FUNCTIONS.add([f"{F}.hardsigmoid"], unary(Op.HARDSIGMOID))
FUNCTIONS.add([f"{F}.mish"], unary(Op.MISH))
FUNCTIONS.add(["torch.neg", "operator.neg"], unary(Op.NEG))
FUNCTIONS.add(["torch.exp"], unary(Op.EXP))
FUNCTIONS.add(["torch.sqrt"], unary(Op.SQRT))
FUNCTIONS.add([f"{F}.relu6"], unary(Op.CLAMP, lambda a, k: A.ClampAttrs(min=0.0, max=6.0)))
FUNCTIONS.add(
    [f"{F}.hardtanh"],
    unary(Op.CLAMP, lambda a, k: A.ClampAttrs(min=_get(a, k, 1, "min_val", -1.0), max=_get(a, k, 2, "max_val", 1.0))),
)
FUNCTIONS.add(
    ["torch.clamp", "torch.clip"],
    unary(Op.CLAMP, lambda a, k: A.ClampAttrs(min=_get(a, k, 1, "min"), max=_get(a, k, 2, "max"))),
)
FUNCTIONS.add(
    [f"{F}.leaky_relu"],
    unary(Op.LEAKY_RELU, lambda a, k: A.LeakyReluAttrs(negative_slope=_get(a, k, 1, "negative_slope", 0.01))),
)
FUNCTIONS.add([f"{F}.gelu"], unary(Op.GELU, lambda a, k: A.GeluAttrs(approximate=k.get("approximate", "none"))))
FUNCTIONS.add([f"{F}.elu"], unary(Op.ELU, lambda a, k: A.EluAttrs(alpha=_get(a, k, 1, "alpha", 1.0))))
FUNCTIONS.add(
    [f"{F}.softplus"],
    unary(Op.SOFTPLUS, lambda a, k: A.SoftplusAttrs(beta=_get(a, k, 1, "beta", 1.0), threshold=_get(a, k, 2, "threshold", 20.0))),
)
FUNCTIONS.add([f"{F}.dropout"], unary(Op.DROPOUT, lambda a, k: A.DropoutAttrs(p=_get(a, k, 1, "p", 0.5))))


@FUNCTIONS.register("torch.fx._symbolic_trace._assert_is_none", "torch._assert", "operator.eq", "operator.ne")
def guard(b: Builder, node: torch.fx.Node) -> Any:
    """fx's guards on specialised forward arguments (`_assert_is_none`, `eq` + `_assert`): nothing to lower"""
    if any(b.is_tensor(a) for a in b.args(node)[0]):
        raise b.fail(f"{function_key(node.target)} on tensors is not supported")
    return _python_result(b, node)


@FUNCTIONS.register("torchvision.ops.stochastic_depth.stochastic_depth")
def stochastic_depth(b: Builder, node: torch.fx.Node) -> Any:
    """stochastic_depth(input, p, mode, training=True): traced in eval mode it is the identity"""
    args, kwargs = b.args(node)
    if _get(args, kwargs, 3, "training", True) and _get(args, kwargs, 1, "p", 0.0) > 0:
        raise b.fail("stochastic_depth in training mode cannot be lowered; call ai.compile on the model in eval mode")
    return _get(args, kwargs, 0, "input")


@FUNCTIONS.register("torch.softmax", f"{F}.softmax")
def softmax(b: Builder, node: torch.fx.Node) -> Any:
    """softmax(input, dim)"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    dim = _get(args, kwargs, 1, "dim")
    if dim is None:
        raise b.fail("softmax without dim is ambiguous; pass dim explicitly")
    return b.emit(Op.SOFTMAX, [x], A.AxisAttrs(axis=_axis(b, x, dim)))


# ---- data movement -----------------------------------------------------------------------------


@FUNCTIONS.register("torch.cat", "torch.concat", "torch.concatenate")
def cat(b: Builder, node: torch.fx.Node) -> Any:
    """cat(tensors, dim=0)"""
    args, kwargs = b.args(node)
    tensors = list(_get(args, kwargs, 0, "tensors"))
    dim = _get(args, kwargs, 1, "dim", 0)
    if len(tensors) == 1:
        return tensors[0]
    return b.emit(Op.CONCAT, tensors, A.AxisAttrs(axis=_axis(b, tensors[0], dim)))


def _emit_split(b: Builder, node: torch.fx.Node, x: str, dim: int) -> list[str]:
    seen = b.observed_value(node)
    axis = _axis(b, x, dim)
    sizes = tuple(meta.shape[axis] for meta in seen)
    if len(sizes) == 1:
        return [x]
    return b.emit(Op.SPLIT, [x], A.SplitAttrs(axis=axis, sizes=sizes), outputs=len(sizes))


@FUNCTIONS.register("torch.chunk")
def chunk(b: Builder, node: torch.fx.Node) -> Any:
    """chunk(input, chunks, dim=0)"""
    args, kwargs = b.args(node)
    return _emit_split(b, node, _get(args, kwargs, 0, "input"), _get(args, kwargs, 2, "dim", 0))


@FUNCTIONS.register("torch.split")
def split(b: Builder, node: torch.fx.Node) -> Any:
    """split(tensor, split_size_or_sections, dim=0)"""
    args, kwargs = b.args(node)
    return _emit_split(b, node, _get(args, kwargs, 0, "tensor"), _get(args, kwargs, 2, "dim", 0))


@FUNCTIONS.register("torch.flatten")
def flatten(b: Builder, node: torch.fx.Node) -> Any:
    """flatten(input, start_dim=0, end_dim=-1)"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    start = _axis(b, x, _get(args, kwargs, 1, "start_dim", 0))
    end = _axis(b, x, _get(args, kwargs, 2, "end_dim", -1))
    if start == end:
        return x
    return b.emit(Op.FLATTEN, [x], A.FlattenAttrs(start_axis=start, end_axis=end))


def _dims(args: list[Any], start: int) -> tuple[int, ...]:
    rest = args[start:]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        return tuple(int(d) for d in rest[0])
    return tuple(int(d) for d in rest)


@FUNCTIONS.register("torch.permute")
def permute(b: Builder, node: torch.fx.Node) -> Any:
    """permute(input, dims)"""
    args, kwargs = b.args(node)
    x = args[0]
    dims = _dims(args, 1) if len(args) > 1 else tuple(kwargs["dims"])
    perm = tuple(d % _rank(b, x) for d in dims)
    if perm == tuple(range(len(perm))):
        return x
    return b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=perm))


@FUNCTIONS.register("torch.transpose", "torch.swapaxes", "torch.swapdims")
def transpose(b: Builder, node: torch.fx.Node) -> Any:
    """transpose(input, dim0, dim1)"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    d0, d1 = _axis(b, x, _get(args, kwargs, 1, "dim0")), _axis(b, x, _get(args, kwargs, 2, "dim1"))
    perm = list(range(_rank(b, x)))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    if d0 == d1:
        return x
    return b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=tuple(perm)))


@FUNCTIONS.register("torch.reshape")
def reshape(b: Builder, node: torch.fx.Node) -> Any:
    """reshape(input, shape)"""
    args, kwargs = b.args(node)
    x = args[0]
    shape = _dims(args, 1) if len(args) > 1 else tuple(kwargs["shape"])
    return b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=shape))


def reshape_to_observed(b: Builder, node: torch.fx.Node, x: str) -> Any:
    """squeeze/unsqueeze and friends: a reshape to the shape torch produced."""
    shape = _observed_shape(b, node)
    if shape == b.value(x).shape:
        return x
    batch = (-1,) if shape and b.value(x).shape and shape[0] == b.value(x).shape[0] and len(shape) > 1 else ()
    target = batch + shape[1:] if batch else shape
    return b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=target))


@FUNCTIONS.register("torch.squeeze", "torch.unsqueeze")
def squeeze(b: Builder, node: torch.fx.Node) -> Any:
    """squeeze(input, dim=None) / unsqueeze(input, dim)"""
    args, kwargs = b.args(node)
    return reshape_to_observed(b, node, _get(args, kwargs, 0, "input"))


def _reduce(op: Op):  # noqa: ANN202
    def convert(b: Builder, node: torch.fx.Node) -> Any:
        args, kwargs = b.args(node)
        x = _get(args, kwargs, 0, "input")
        dim = _get(args, kwargs, 1, "dim")
        keepdim = bool(_get(args, kwargs, 2, "keepdim", False))
        if kwargs.get("dtype") is not None:
            raise b.fail(f"{op.value} with dtype= is not supported")
        rank = _rank(b, x)
        if dim is None:
            axes = tuple(range(rank))
        else:
            dims = dim if isinstance(dim, (list, tuple)) else [dim]
            axes = tuple(sorted({int(d) % rank for d in dims}))
        return b.emit(op, [x], A.ReduceAttrs(axes=axes, keepdim=keepdim))

    return convert


FUNCTIONS.add(["torch.mean"], _reduce(Op.MEAN))
FUNCTIONS.add(["torch.sum"], _reduce(Op.SUM))


@FUNCTIONS.register("operator.getitem")
def getitem(b: Builder, node: torch.fx.Node) -> Any:
    """container[index] (chunk pieces, sizes) or tensor[index] (basic slicing only)"""
    args, _ = b.args(node)
    obj, index = args
    if not b.is_tensor(obj):
        return obj[index]
    x = obj
    items = list(index) if isinstance(index, tuple) else [index]
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = _rank(b, x) - (len(items) - 1 - items.count(None))
        items = items[:at] + [slice(None)] * fill + items[at + 1 :]
    reshape_needed = False
    axis = 0
    for item in items:
        if item is None:
            reshape_needed = True
            continue
        size = b.value(x).shape[axis]
        if isinstance(item, slice):
            start, stop, step = item.indices(size)
            if (start, stop, step) != (0, size, 1):
                if step < 1:
                    raise b.fail("negative-step slicing is not supported")
                x = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=start, stop=stop, step=step))
            axis += 1
        elif isinstance(item, int):
            i = item % size
            x = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=i, stop=i + 1, step=1))
            reshape_needed = True
            axis += 1
        else:
            raise b.fail(f"tensor indexing with {type(item).__name__} is not supported (only ints, slices, None, ...)")
    if reshape_needed:
        x = reshape_to_observed(b, node, x)
    return x


# ---- pooling, padding, normalisation -----------------------------------------------------------


@FUNCTIONS.register(f"{F}.adaptive_avg_pool1d", f"{F}.adaptive_avg_pool2d", f"{F}.adaptive_avg_pool3d")
def adaptive_avg_pool(b: Builder, node: torch.fx.Node) -> Any:
    """adaptive_avg_pool{1,2,3}d(input, output_size)"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    size = adaptive_output(b, x, _get(args, kwargs, 1, "output_size"))
    return b.emit(Op.ADAPTIVE_AVG_POOL, [x], A.AdaptivePoolAttrs(output_size=size))


@FUNCTIONS.register(f"{F}.max_pool1d", f"{F}.max_pool2d", f"{F}.max_pool3d")
def max_pool(b: Builder, node: torch.fx.Node) -> Any:
    """max_pool{1,2,3}d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False)"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    if _get(args, kwargs, 6, "return_indices", False):
        raise b.fail("max_pool with return_indices=True is not supported")
    n = _rank(b, x) - 2
    attrs = pool_attrs(
        _get(args, kwargs, 1, "kernel_size"), _get(args, kwargs, 2, "stride"), _get(args, kwargs, 3, "padding", 0),
        _get(args, kwargs, 4, "dilation", 1), _get(args, kwargs, 5, "ceil_mode", False), True, n,
    )
    return b.emit(Op.MAX_POOL, [x], attrs)


@FUNCTIONS.register(f"{F}.avg_pool1d", f"{F}.avg_pool2d", f"{F}.avg_pool3d")
def avg_pool(b: Builder, node: torch.fx.Node) -> Any:
    """avg_pool{1,2,3}d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True)"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    n = _rank(b, x) - 2
    attrs = pool_attrs(
        _get(args, kwargs, 1, "kernel_size"), _get(args, kwargs, 2, "stride"), _get(args, kwargs, 3, "padding", 0),
        None, _get(args, kwargs, 4, "ceil_mode", False), _get(args, kwargs, 5, "count_include_pad", True), n,
    )
    return b.emit(Op.AVG_POOL, [x], attrs)


@FUNCTIONS.register(f"{F}.pad")
def pad(b: Builder, node: torch.fx.Node) -> Any:
    """pad(input, pad, mode='constant', value=None): `pad` lists (before, after) from the last axis backwards"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    flat = list(_get(args, kwargs, 1, "pad"))
    rank = _rank(b, x)
    pads = [(0, 0)] * rank
    for i in range(len(flat) // 2):
        pads[rank - 1 - i] = (int(flat[2 * i]), int(flat[2 * i + 1]))
    if any(p < 0 for pair in pads for p in pair):
        raise b.fail("negative padding (cropping) is not supported")
    mode = _get(args, kwargs, 2, "mode", "constant")
    value = _get(args, kwargs, 3, "value", None)
    return b.emit(Op.PAD, [x], A.PadAttrs(pads=tuple(pads), mode=mode, value=float(value or 0.0)))


def constant_param(b: Builder, value: Any, axes: str | None) -> str | None:
    """The param behind a `get_attr` value, retagged with the axes the consuming op gives it."""
    if value is None:
        return None
    producer = next((n for n in b.nodes if value in n.outputs), None)
    if producer is None or producer.op != Op.CONSTANT:
        raise b.fail("weights passed to a functional layer must be module attributes (parameters or buffers)")
    name = producer.params["value"]
    b.params[name] = b.params[name].model_copy(update={"axes": axes})
    return name


@FUNCTIONS.register(f"{F}.layer_norm")
def layer_norm(b: Builder, node: torch.fx.Node) -> Any:
    """layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05)"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    normalized = ntuple(_get(args, kwargs, 1, "normalized_shape"), 1)
    rank = _rank(b, x)
    axes = tuple(range(rank - len(normalized), rank))
    letters = "N" * (len(axes) - 1) + "C"
    params = {}
    for role, index in (("weight", 2), ("bias", 3)):
        name = constant_param(b, _get(args, kwargs, index, role), letters)
        if name is not None:
            params[role] = name
    eps = float(_get(args, kwargs, 4, "eps", 1e-5))
    return b.emit(Op.LAYER_NORM, [x], A.LayerNormAttrs(axes=axes, eps=eps), params)


@FUNCTIONS.register(f"{F}.linear")
def linear(b: Builder, node: torch.fx.Node) -> Any:
    """linear(input, weight, bias=None)"""
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    params = {"weight": constant_param(b, _get(args, kwargs, 1, "weight"), "OI")}
    bias = constant_param(b, _get(args, kwargs, 2, "bias"), "O")
    if bias is not None:
        params["bias"] = bias
    return b.emit(Op.LINEAR, [x], None, params)  # type: ignore[arg-type]


@FUNCTIONS.register("torch.conv1d", "torch.conv2d", "torch.conv3d")
def conv(b: Builder, node: torch.fx.Node) -> Any:
    """conv{1,2,3}d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1)"""
    from asgnas_ir.frontends.torch_fx.builder import spatial_letters
    from asgnas_ir.frontends.torch_fx.modules import conv_padding

    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    n = _rank(b, x) - 2
    weight = constant_param(b, _get(args, kwargs, 1, "weight"), "OI" + spatial_letters(n))
    kernel = b.params[weight].shape[2:]  # type: ignore[index]
    dilation = ntuple(_get(args, kwargs, 5, "dilation", 1), n)
    attrs = A.ConvAttrs(
        stride=ntuple(_get(args, kwargs, 3, "stride", 1), n),
        padding=conv_padding(b, _get(args, kwargs, 4, "padding", 0), tuple(kernel), dilation),
        dilation=dilation,
        groups=int(_get(args, kwargs, 6, "groups", 1)),
    )
    params = {"weight": weight}
    bias = constant_param(b, _get(args, kwargs, 2, "bias"), "O")
    if bias is not None:
        params["bias"] = bias
    return b.emit(Op.CONV, [x], attrs, params)  # type: ignore[arg-type]
