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
from asgnas_ir.frontends.torch_fx.modules import (
    adaptive_output,
    emit_avg_pool,
    ntuple,
    pool_attrs,
    require_batched,
)
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


def op_label(node: torch.fx.Node) -> str:
    """The torch name of the call an fx node makes, for messages."""
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return function_key(node.target)


def bind(
    b: Builder, node: torch.fx.Node, names: tuple[str, ...], *, fixed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Name the call's arguments by the torch signature `names` (in positional order).

    NOTE: [Honour or refuse every argument] A converter reads the arguments it lowers; any other
    argument must have the value the converter assumes (`fixed`: name -> its default), or the call
    is refused naming the op, the argument and the place. An argument the signature does not list
    is refused too, and so is an `out=` tensor, so a new torch argument can never be dropped
    silently.
    """
    args, kwargs = b.args(node)
    label = op_label(node)
    if len(args) > len(names):
        raise b.fail(f"{label} is called with {len(args)} positional arguments; the fx frontend reads {', '.join(names)}")
    call = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key == "out" and value is None:
            continue
        if key == "out" or key not in names:
            raise b.fail(f"{label}: argument '{key}' is not supported by the fx frontend; compute the result without it")
        call[key] = value
    for key, only in (fixed or {}).items():
        value = call.get(key, only)
        if not _same(value, only):
            raise b.fail(
                f"{label}({key}={value!r}) is not supported by the fx frontend, which lowers only {key}={only!r}; "
                "rewrite the call with ops the IR has"
            )
    return call


def _same(value: Any, only: Any) -> bool:
    if only is None or isinstance(only, bool):
        return value is only or (isinstance(only, bool) and value == only and isinstance(value, (bool, int)))
    return type(value) in (int, float, str) and value == only


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
        # alpha scales `other` (add/sub); rounding_mode turns div into floor/trunc division
        call = bind(b, node, ("input", "other", "alpha", "rounding_mode"), fixed={"alpha": 1, "rounding_mode": None})
        return emit_binary(b, op, call.get("input"), call.get("other"), node)

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
    if node.target is getattr and isinstance(args[0], tuple) and hasattr(args[0], "_fields"):
        return getattr(args[0], args[1])  # `x.max(1).values`: a field of a lowered named tuple
    result = _python_result(b, node)
    if isinstance(result, TensorMeta) or (node.target is not getattr and any(b.is_tensor(a) for a in args)):
        raise b.fail(f"{function_key(node.target)} producing a tensor is not supported")
    return result


@FUNCTIONS.register("torch.pow", "operator.pow")
def power(b: Builder, node: torch.fx.Node) -> Any:
    """pow(input, exponent) / input ** exponent: a tensor to a scalar power (or size arithmetic)"""
    call = bind(b, node, ("input", "exponent"))
    base, exponent = call.get("input"), call.get("exponent")
    if not b.is_tensor(base) and not b.is_tensor(exponent):
        return _python_result(b, node)
    if not b.is_tensor(base) or not isinstance(exponent, (int, float)):
        raise b.fail("pow is supported for a tensor raised to a scalar power")
    return b.emit(Op.POW, [base], A.PowAttrs(exponent=float(exponent)))


def unary(op: Op, names: tuple[str, ...] = ("input", "inplace"), attrs_of=None, fixed=None):  # noqa: ANN001, ANN201
    """An elementwise op. `inplace` is always accepted: the driver rebinds the written tensor
    (NOTE: [In-place writes as rebinding])."""

    def convert(b: Builder, node: torch.fx.Node) -> Any:
        call = bind(b, node, names, fixed=fixed)
        x = call.get("input")
        if not b.is_tensor(x):
            raise b.fail(f"{op_label(node)} needs a tensor input")
        return b.emit(op, [x], attrs_of(b, call) if attrs_of else None)

    return convert


def _scalar(b: Builder, call: dict[str, Any], name: str, default: float | None) -> float | None:
    value = call.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise b.fail(f"{name} must be a Python number here; a tensor {name} is not supported")
    return float(value)


F = "torch.nn.functional"
FUNCTIONS.add(["torch.relu", f"{F}.relu", "torch.relu_", f"{F}.relu_"], unary(Op.RELU))
FUNCTIONS.add(["torch.sigmoid", f"{F}.sigmoid", "torch.sigmoid_"], unary(Op.SIGMOID))
FUNCTIONS.add(["torch.tanh", f"{F}.tanh", "torch.tanh_"], unary(Op.TANH))
FUNCTIONS.add([f"{F}.silu"], unary(Op.SILU))
FUNCTIONS.add([f"{F}.hardswish"], unary(Op.HARDSWISH))
FUNCTIONS.add([f"{F}.hardsigmoid"], unary(Op.HARDSIGMOID))
FUNCTIONS.add([f"{F}.mish"], unary(Op.MISH))
FUNCTIONS.add(["torch.neg", "operator.neg", "torch.neg_"], unary(Op.NEG))
FUNCTIONS.add(["torch.exp", "torch.exp_"], unary(Op.EXP))
FUNCTIONS.add(["torch.sqrt", "torch.sqrt_"], unary(Op.SQRT))
FUNCTIONS.add(["torch.log", "torch.log_"], unary(Op.LOG))
FUNCTIONS.add([f"{F}.relu6"], unary(Op.CLAMP, attrs_of=lambda b, c: A.ClampAttrs(min=0.0, max=6.0)))
FUNCTIONS.add(
    [f"{F}.hardtanh", f"{F}.hardtanh_"],
    unary(
        Op.CLAMP, ("input", "min_val", "max_val", "inplace"),
        lambda b, c: A.ClampAttrs(min=_scalar(b, c, "min_val", -1.0), max=_scalar(b, c, "max_val", 1.0)),
    ),
)


def _bound(b: Builder, call: dict[str, Any], name: str) -> float | None:
    """A clamp bound: a Python number, or a one-element buffer (Gemma's clipped linear layers); an
    infinite bound is no bound."""
    value = call.get(name)
    if b.is_tensor(value):
        producer = next((n for n in b.nodes if value in n.outputs), None)
        array = b.weights[producer.params["value"]] if producer is not None and producer.op == Op.CONSTANT else None
        if array is None or array.size != 1:
            raise b.fail(f"clamp with a tensor {name} is supported for a one-element buffer only")
        bound = float(array.reshape(()))
        return None if bound in (float("inf"), float("-inf")) else bound
    return _scalar(b, call, name, None)


FUNCTIONS.add(
    ["torch.clamp", "torch.clip", "torch.clamp_", "torch.clip_"],
    unary(Op.CLAMP, ("input", "min", "max"), lambda b, c: A.ClampAttrs(min=_bound(b, c, "min"), max=_bound(b, c, "max"))),
)
FUNCTIONS.add(
    [f"{F}.leaky_relu", f"{F}.leaky_relu_"],
    unary(
        Op.LEAKY_RELU, ("input", "negative_slope", "inplace"),
        lambda b, c: A.LeakyReluAttrs(negative_slope=_scalar(b, c, "negative_slope", 0.01)),
    ),
)
FUNCTIONS.add(
    [f"{F}.gelu"], unary(Op.GELU, ("input", "approximate"), lambda b, c: A.GeluAttrs(approximate=c.get("approximate", "none")))
)
FUNCTIONS.add(
    [f"{F}.elu", f"{F}.elu_"],
    unary(Op.ELU, ("input", "alpha", "inplace"), lambda b, c: A.EluAttrs(alpha=_scalar(b, c, "alpha", 1.0))),
)
FUNCTIONS.add(
    [f"{F}.softplus"],
    unary(
        Op.SOFTPLUS, ("input", "beta", "threshold"),
        lambda b, c: A.SoftplusAttrs(beta=_scalar(b, c, "beta", 1.0), threshold=_scalar(b, c, "threshold", 20.0)),
    ),
)


@FUNCTIONS.register(f"{F}.dropout", f"{F}.dropout1d", f"{F}.dropout2d", f"{F}.dropout3d")
def dropout(b: Builder, node: torch.fx.Node) -> Any:
    """dropout(input, p=0.5, training=True, inplace=False): the functional form drops whenever
    `training` is True, whatever the module's mode, so only training=False (or p=0) is an identity
    at inference; the IR keeps the node so the generated model trains like the source one."""
    call = bind(b, node, ("input", "p", "training", "inplace"))
    p = _scalar(b, call, "p", 0.5)
    if call.get("training", True) and p:
        raise b.fail(
            f"{op_label(node)} with training=True drops activations at inference too; pass training=self.training "
            "(or use nn.Dropout) and compile the model in eval mode"
        )
    channelwise = not str(node.target.__name__).endswith("dropout")  # type: ignore[union-attr]
    return b.emit(Op.DROPOUT, [call["input"]], A.DropoutAttrs(p=p, channelwise=channelwise))


@FUNCTIONS.register("operator.setitem")
def setitem(b: Builder, node: torch.fx.Node) -> Any:
    """tensor[index] = value: a write into a box of slices (step 1) and ints, lowered as the tensor
    rebuilt around the new box (slices and concats); readers after it are pointed at the result
    (NOTE: [In-place writes as rebinding]). Any other index is refused."""
    from asgnas_ir.frontends.torch_fx.indexing import write_box  # imports this module

    return write_box(b, node)


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
    functional = node.op == "call_function" and function_key(node.target) == f"{F}.softmax"
    call = bind(b, node, ("input", "dim", "_stacklevel", "dtype") if functional else ("input", "dim", "dtype"))
    x, dim = call.get("input"), call.get("dim")
    _same_dtype(b, node, x, call.get("dtype"))
    if dim is None:
        raise b.fail("softmax without dim is ambiguous; pass dim explicitly")
    return b.emit(Op.SOFTMAX, [x], A.AxisAttrs(axis=_axis(b, x, dim)))


def _same_dtype(b: Builder, node: torch.fx.Node, x: str, dtype: Any) -> None:
    """A `dtype=` argument is honoured only when it is the input's own dtype (no cast in the IR)."""
    if dtype is None:
        return
    from asgnas_ir.frontends.torch_fx.builder import dtype_name

    if not isinstance(dtype, torch.dtype) or dtype_name(dtype) != b.value(x).dtype:
        raise b.fail(f"{op_label(node)} with dtype={dtype} casts its input; cast explicitly before the call is not supported either")


# ---- data movement -----------------------------------------------------------------------------


class Empty:
    """A slice with no elements (`x[:, :, :0]`: the prefix tokens of a model that has none). The IR has
    no empty values; `cat` drops it, and any other use is refused as not a tensor."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __repr__(self) -> str:
        return f"an empty slice of shape {list(self.shape)}"


@FUNCTIONS.register("torch.cat", "torch.concat", "torch.concatenate")
def cat(b: Builder, node: torch.fx.Node) -> Any:
    """cat(tensors, dim=0)"""
    call = bind(b, node, ("tensors", "dim"))
    tensors = [t for t in call["tensors"] if not isinstance(t, Empty)]
    dim = call.get("dim", 0)
    if not tensors:
        return Empty(_observed_shape(b, node))
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
    call = bind(b, node, ("input", "chunks", "dim"))
    return _emit_split(b, node, call["input"], call.get("dim", 0))


@FUNCTIONS.register("torch.split")
def split(b: Builder, node: torch.fx.Node) -> Any:
    """split(tensor, split_size_or_sections, dim=0)"""
    names = ("tensor", "split_size", "dim") if node.op == "call_method" else ("tensor", "split_size_or_sections", "dim")
    call = bind(b, node, names)
    return _emit_split(b, node, call["tensor"], call.get("dim", 0))


@FUNCTIONS.register("torch.flatten")
def flatten(b: Builder, node: torch.fx.Node) -> Any:
    """flatten(input, start_dim=0, end_dim=-1)"""
    call = bind(b, node, ("input", "start_dim", "end_dim"))
    x = call["input"]
    start = _axis(b, x, call.get("start_dim", 0))
    end = _axis(b, x, call.get("end_dim", -1))
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
    return reshape_to(b, x, _observed_shape(b, node))


def reshape_to(b: Builder, x: str, shape: tuple[int, ...], name: str | None = None) -> Any:
    """`x` reshaped to `shape` (no node when it has that shape already); a leading axis that keeps
    the input's size is written -1, so it follows the batch."""
    if shape == b.value(x).shape:
        return x
    batch = (-1,) if shape and b.value(x).shape and shape[0] == b.value(x).shape[0] and len(shape) > 1 else ()
    target = batch + shape[1:] if batch else shape
    return b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=target), name=name)


@FUNCTIONS.register("torch.squeeze", "torch.unsqueeze")
def squeeze(b: Builder, node: torch.fx.Node) -> Any:
    """squeeze(input, dim=None) / unsqueeze(input, dim)"""
    args, kwargs = b.args(node)
    return reshape_to_observed(b, node, _get(args, kwargs, 0, "input"))


def _reduce(op: Op):  # noqa: ANN202
    def convert(b: Builder, node: torch.fx.Node) -> Any:
        call = bind(b, node, ("input", "dim", "keepdim", "dtype"))
        x, dim = call["input"], call.get("dim")
        if isinstance(dim, torch.dtype):  # torch.sum(x, torch.float64): the dtype in dim's place
            call["dtype"], dim = dim, None
        keepdim = bool(call.get("keepdim", False))
        _same_dtype(b, node, x, call.get("dtype"))
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
            if len(range(start, stop, step)) == 0:
                return Empty(_observed_shape(b, node))
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
        elif b.is_tensor(item) or isinstance(item, (list, tuple)):
            from asgnas_ir.frontends.torch_fx.indexing import index_by_tensor  # imports this module

            if reshape_needed or x != obj:
                raise b.fail("indexing by a tensor together with ints, None or partial slices is not supported")
            return index_by_tensor(b, node, x, items)
        else:
            raise b.fail(f"tensor indexing with {type(item).__name__} is not supported (only ints, slices, None, ...)")
    if reshape_needed:
        x = reshape_to_observed(b, node, x)
    return x


# ---- pooling, padding, normalisation -----------------------------------------------------------


@FUNCTIONS.register(f"{F}.adaptive_avg_pool1d", f"{F}.adaptive_avg_pool2d", f"{F}.adaptive_avg_pool3d")
def adaptive_avg_pool(b: Builder, node: torch.fx.Node) -> Any:
    """adaptive_avg_pool{1,2,3}d(input, output_size)"""
    call = bind(b, node, ("input", "output_size"))
    x = call["input"]
    size = adaptive_output(b, x, call["output_size"])
    return b.emit(Op.ADAPTIVE_AVG_POOL, [x], A.AdaptivePoolAttrs(output_size=size))


@FUNCTIONS.register(f"{F}.max_pool1d", f"{F}.max_pool2d", f"{F}.max_pool3d")
def max_pool(b: Builder, node: torch.fx.Node) -> Any:
    """max_pool{1,2,3}d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False)"""
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    call = bind(b, node, names, fixed={"return_indices": False})
    x = call["input"]
    n = _rank(b, x) - 2
    attrs = pool_attrs(
        call["kernel_size"], call.get("stride"), call.get("padding", 0), call.get("dilation", 1), call.get("ceil_mode", False),
        True, n,
    )
    return b.emit(Op.MAX_POOL, [x], attrs)


@FUNCTIONS.register(f"{F}.avg_pool1d", f"{F}.avg_pool2d", f"{F}.avg_pool3d")
def avg_pool(b: Builder, node: torch.fx.Node) -> Any:
    """avg_pool{1,2,3}d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None)"""
    names = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    call = bind(b, node, names)
    x = call["input"]
    n = _rank(b, x) - 2
    attrs = pool_attrs(
        call["kernel_size"], call.get("stride"), call.get("padding", 0), None, call.get("ceil_mode", False),
        call.get("count_include_pad", True), n,
    )
    return emit_avg_pool(b, x, attrs, call.get("divisor_override"))


@FUNCTIONS.register(f"{F}.pad")
def pad(b: Builder, node: torch.fx.Node) -> Any:
    """pad(input, pad, mode='constant', value=None): `pad` lists (before, after) from the last axis backwards"""
    call = bind(b, node, ("input", "pad", "mode", "value"))
    value = call.get("value")
    return emit_pad(b, node, call["input"], list(call["pad"]), call.get("mode", "constant"), float(value or 0.0))


def emit_pad(b: Builder, node: torch.fx.Node, x: str, flat: list[int], mode: str, value: float) -> str:
    """torch's padding (`flat` lists (before, after) from the last axis backwards) as a pad node; a
    negative amount crops that side, a slice before the pad (NASNet's ZeroPad2d((-1, 1, -1, 1)) shifts
    the image by one pixel)."""
    rank = _rank(b, x)
    pads = [(0, 0)] * rank
    for i in range(len(flat) // 2):
        pads[rank - 1 - i] = (int(flat[2 * i]), int(flat[2 * i + 1]))
    if any(p < 0 for pair in pads for p in pair):
        if mode != "constant":
            raise b.fail(f"negative padding (cropping) in mode '{mode}' is not supported")
        for axis, (before, after) in enumerate(pads):
            if before < 0 or after < 0:
                size = b.value(x).shape[axis]
                start, stop = max(0, -before), size - max(0, -after)
                x = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=start, stop=stop, step=1), name=f"{node.name}_crop{axis}")
        pads = [(max(0, before), max(0, after)) for before, after in pads]
        if not any(p for pair in pads for p in pair):
            return x
    return b.emit(Op.PAD, [x], A.PadAttrs(pads=tuple(pads), mode=mode, value=value))  # type: ignore[arg-type]


def depends_on_inputs(b: Builder, value: str) -> bool:
    """Whether `value` is computed from a forward input (not from parameters and constants alone)."""
    producers = {out: n for n in b.nodes for out in n.outputs}
    stack, seen = [value], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        producer = producers.get(name)
        if producer is None:
            return True  # a graph input
        stack.extend(producer.inputs)
    return False


def is_constant(b: Builder, value: Any) -> bool:
    """Whether `value` is the output of a `constant` node (a module attribute read in forward)."""
    producer = next((n for n in b.nodes if value in n.outputs), None)
    return producer is not None and producer.op == Op.CONSTANT


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
    call = bind(b, node, ("input", "normalized_shape", "weight", "bias", "eps"))
    args, kwargs = b.args(node)
    x = call["input"]
    normalized = ntuple(call["normalized_shape"], 1)
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


def _norm_params(b: Builder, call: dict[str, Any], roles: tuple[str, ...]) -> dict[str, str]:
    """The per-channel tensors a functional norm reads, as params of the node (axis "C"). A weight
    without a bias (or a bias without a weight) is left out: the IR's affine norms have both or
    neither, like nn.BatchNorm/GroupNorm(affine=...), and `_lone_affine` applies it after the node."""
    lone = ("weight" in roles and "bias" in roles) and ((call.get("weight") is None) != (call.get("bias") is None))
    params = {}
    for role in roles:
        if lone and role in ("weight", "bias"):
            continue
        name = constant_param(b, call.get(role), "C")
        if name is not None:
            params[role] = name
    return params


def _lone_affine(b: Builder, node: torch.fx.Node, out: str, call: dict[str, Any]) -> str:
    """A norm's weight without a bias (timm's GroupNorm1 without bias) or bias without a weight, as a
    product or sum with the [C] tensor laid along the channel axis 1."""
    weight, bias = call.get("weight"), call.get("bias")
    if (weight is None) == (bias is None):
        return out
    factor = weight if weight is not None else bias
    if not b.is_tensor(factor):
        raise b.fail(f"{op_label(node)}: the affine {'weight' if weight is not None else 'bias'} must be a tensor")
    channels = b.value(factor).shape[0]
    along = reshape_to(b, factor, (channels,) + (1,) * (_rank(b, out) - 2), name=f"{node.name}_affine")
    return b.emit(Op.MUL if weight is not None else Op.ADD, [out, along], A.BinaryAttrs())


@FUNCTIONS.register(f"{F}.batch_norm")
def batch_norm(b: Builder, node: torch.fx.Node) -> Any:
    """batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-05)

    The functional form timm's BatchNormAct2d calls in its forward. In inference (training=False)
    it reads the running statistics, exactly what the IR's batch_norm node does with the module's
    buffers as params; `momentum` only steers the statistics update in training, so it is kept as
    the attribute the generated layer trains with."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    call = bind(b, node, names)
    if call.get("training", False) and not depends_on_inputs(b, call["input"]):
        raise b.fail(
            "batch_norm over a tensor computed from parameters only (weight standardisation, as NF-Nets' "
            "ScaledStdConv2d does) rewrites a layer's weight in forward; the IR holds weights as parameters, so the "
            "fx frontend cannot lower it. Use frontend='onnx'"
        )
    if call.get("training", False):
        raise b.fail(
            "batch_norm with training=True normalises by the statistics of the batch, which the IR's batch norm "
            "(running statistics) does not compute; compile the model in eval mode with its running statistics "
            "(track_running_stats=True)"
        )
    if call.get("running_mean") is None or call.get("running_var") is None:
        raise b.fail("batch_norm without running_mean and running_var normalises by the batch; this is not supported")
    params = _norm_params(b, call, ("weight", "bias", "running_mean", "running_var"))
    momentum = call.get("momentum", 0.1)
    attrs = A.BatchNormAttrs(
        eps=_scalar(b, call, "eps", 1e-5), momentum=None if momentum is None else _scalar(b, call, "momentum", 0.1)
    )
    return _lone_affine(b, node, _emit_norm(b, node, Op.BATCH_NORM, call, attrs, params), call)


@FUNCTIONS.register(f"{F}.instance_norm")
def instance_norm(b: Builder, node: torch.fx.Node) -> Any:
    """instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True, momentum=0.1, eps=1e-05)

    With use_input_stats=True (the default, and what nn.InstanceNorm passes unless it tracks running
    statistics in eval mode) each sample is normalised by its own statistics and the running ones
    are only updated: they are left out of the node. With use_input_stats=False they are read."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum", "eps")
    call = bind(b, node, names)
    roles = ("weight", "bias") if call.get("use_input_stats", True) else ("weight", "bias", "running_mean", "running_var")
    if not call.get("use_input_stats", True) and (call.get("running_mean") is None or call.get("running_var") is None):
        raise b.fail("instance_norm with use_input_stats=False needs running_mean and running_var")
    params = _norm_params(b, call, roles)
    momentum = call.get("momentum", 0.1)
    attrs = A.InstanceNormAttrs(
        eps=_scalar(b, call, "eps", 1e-5), momentum=None if momentum is None else _scalar(b, call, "momentum", 0.1)
    )
    return _lone_affine(b, node, _emit_norm(b, node, Op.INSTANCE_NORM, call, attrs, params), call)


@FUNCTIONS.register(f"{F}.group_norm")
def group_norm(b: Builder, node: torch.fx.Node) -> Any:
    """group_norm(input, num_groups, weight=None, bias=None, eps=1e-05)"""
    call = bind(b, node, ("input", "num_groups", "weight", "bias", "eps"))
    params = _norm_params(b, call, ("weight", "bias"))
    attrs = A.GroupNormAttrs(num_groups=int(call["num_groups"]), eps=_scalar(b, call, "eps", 1e-5))
    return _lone_affine(b, node, _emit_norm(b, node, Op.GROUP_NORM, call, attrs, params), call)


def _emit_norm(b: Builder, node: torch.fx.Node, op: Op, call: dict[str, Any], attrs: A.Attrs, params: dict[str, str]) -> str:
    """The norm node, named after the fx node unless a lone affine factor follows it (which takes the name)."""
    lone = (call.get("weight") is None) != (call.get("bias") is None)
    return b.emit(op, [call["input"]], attrs, params, name=f"{node.name}_normed" if lone else None)


@FUNCTIONS.register(f"{F}.linear")
def linear(b: Builder, node: torch.fx.Node) -> Any:
    """linear(input, weight, bias=None)"""
    bind(b, node, ("input", "weight", "bias"))
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    require_batched(b, x, "linear")
    params = {"weight": constant_param(b, _get(args, kwargs, 1, "weight"), "OI")}
    bias = _get(args, kwargs, 2, "bias")
    if bias is not None and not is_constant(b, bias):
        # a bias computed in forward (BEiT's cat of q_bias, zeros and v_bias): added after the layer
        if not b.is_tensor(bias):
            raise b.fail("linear: bias must be a tensor")
        out = b.emit(Op.LINEAR, [x], None, params, name=f"{node.name}_nobias")  # type: ignore[arg-type]
        return b.emit(Op.ADD, [out, bias], A.BinaryAttrs())
    bias = constant_param(b, bias, "O")
    if bias is not None:
        params["bias"] = bias
    return b.emit(Op.LINEAR, [x], None, params)  # type: ignore[arg-type]


@FUNCTIONS.register("torch.conv1d", "torch.conv2d", "torch.conv3d")
def conv(b: Builder, node: torch.fx.Node) -> Any:
    """conv{1,2,3}d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1)"""
    from asgnas_ir.frontends.torch_fx.builder import spatial_letters
    from asgnas_ir.frontends.torch_fx.modules import conv_padding

    bind(b, node, ("input", "weight", "bias", "stride", "padding", "dilation", "groups"))
    args, kwargs = b.args(node)
    x = _get(args, kwargs, 0, "input")
    n = {"torch.conv1d": 1, "torch.conv2d": 2, "torch.conv3d": 3}[function_key(node.target)]
    require_batched(b, x, function_key(node.target), n + 1)
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
