"""Converters for the torch calls real models (timm's above all) make between their layers, written
with ops the IR already has, so the passes and every codegen target handle them without a rule of
their own:
- `unbind`: a split into pieces of one and a reshape of each; `stack`: a reshape of each operand
  and a concat; `roll`: two slices and a concat per axis; `repeat`/`tile`: an expand of the axes of
  one, a concat of copies along longer ones; `repeat_interleave`: an expand of a new axis, merged;
- `addcmul`: a product and a sum; a 2-norm (`norm`, `linalg.vector_norm`, `F.normalize`): a power,
  a sum and a root; `rms_norm`: the same with a mean; `rsqrt`: a power of -1/2;
- padding layers and negative (cropping) pads: pads and slices; `einsum` of one or two operands:
  permutes, sums and one batched matmul.
What has no such form is an op of its own: `sin`, `cos`, `cumsum` and `max` (amax). Resampling and
sliding windows are in `spatial.py`, indexing by tensors and writes into a box in `indexing.py`.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import torch
import torch.fx
from torch import nn

from asgnas_ir.frontends.torch_fx.builder import Builder
from asgnas_ir.frontends.torch_fx.functions import (
    FUNCTIONS,
    _axis,
    _dims,
    _observed_shape,
    _rank,
    _same_dtype,
    _scalar,
    bind,
    emit_pad,
    op_label,
    reshape_to,
    unary,
)
from asgnas_ir.frontends.torch_fx.methods import METHODS
from asgnas_ir.frontends.torch_fx.modules import MODULES, _input
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

F = "torch.nn.functional"


def _tensor(b: Builder, node: torch.fx.Node, value: Any, what: str) -> str:
    if not b.is_tensor(value):
        raise b.fail(f"{op_label(node)} needs a tensor {what}, got {type(value).__name__}")
    return value


def _part(b: Builder, node: torch.fx.Node, suffix: str) -> str:
    """A name for the i-th helper node of a decomposition: `<fx node>_<suffix>`."""
    return f"{node.name}_{suffix}"


# ---- unbind / stack --------------------------------------------------------------------------


@FUNCTIONS.register("torch.unbind")
def unbind(b: Builder, node: torch.fx.Node) -> Any:
    """unbind(input, dim=0): the pieces of one along `dim`, that axis dropped (split + reshape each).

    timm's attention unpacks its fused projection this way (`q, k, v = qkv.unbind(0)`)."""
    call = bind(b, node, ("input", "dim"))
    x = _tensor(b, node, call.get("input"), "input")
    axis = _axis(b, x, call.get("dim", 0))
    size = b.value(x).shape[axis]
    pieces = [x] if size == 1 else b.emit(Op.SPLIT, [x], A.SplitAttrs(axis=axis, sizes=(1,) * size), outputs=size)
    shape = tuple(d for i, d in enumerate(b.value(x).shape) if i != axis)
    return tuple(reshape_to(b, piece, shape, name=_part(b, node, f"{i}")) for i, piece in enumerate(pieces))


METHODS.add(["unbind"], unbind)


@FUNCTIONS.register("torch.stack")
def stack(b: Builder, node: torch.fx.Node) -> Any:
    """stack(tensors, dim=0): each operand given a new axis of one at `dim`, then a concat on it."""
    call = bind(b, node, ("tensors", "dim"))
    tensors = [_tensor(b, node, t, "operand") for t in call["tensors"]]
    shape = b.value(tensors[0]).shape
    axis = int(call.get("dim", 0)) % (len(shape) + 1)
    grown = (*shape[:axis], 1, *shape[axis:])
    parts = [reshape_to(b, t, grown, name=_part(b, node, f"{i}")) for i, t in enumerate(tensors)]
    if len(parts) == 1:
        return parts[0]
    return b.emit(Op.CONCAT, parts, A.AxisAttrs(axis=axis))


# ---- roll / repeat -----------------------------------------------------------------------------


def roll_axis(b: Builder, x: str, shift: int, axis: int, name: str) -> str:
    """torch.roll along one axis: out[i] = x[(i - shift) mod n], the last `shift` rows moved to the front."""
    size = b.value(x).shape[axis]
    shift %= size
    if shift == 0:
        return x
    tail = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=size - shift, stop=size, step=1), name=f"{name}_tail")
    head = b.emit(Op.SLICE, [x], A.SliceAttrs(axis=axis, start=0, stop=size - shift, step=1), name=f"{name}_head")
    return b.emit(Op.CONCAT, [tail, head], A.AxisAttrs(axis=axis), name=name)


@FUNCTIONS.register("torch.roll")
def roll(b: Builder, node: torch.fx.Node) -> Any:
    """roll(input, shifts, dims=None): a cyclic shift along each axis in `dims`."""
    call = bind(b, node, ("input", "shifts", "dims"))
    x = _tensor(b, node, call.get("input"), "input")
    shifts, dims = call.get("shifts"), call.get("dims")
    if dims is None or dims == ():
        raise b.fail("roll without dims shifts the flattened tensor; pass dims explicitly (torch.roll(x, s, dims=d))")
    shifts = list(shifts) if isinstance(shifts, (list, tuple)) else [shifts]
    dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if len(shifts) != len(dims):
        raise b.fail(f"roll with {len(shifts)} shifts for {len(dims)} dims")
    for i, (shift, dim) in enumerate(zip(shifts, dims, strict=True)):
        if not isinstance(shift, int):
            raise b.fail("roll by a tensor amount is not supported; shift by a Python int")
        x = roll_axis(b, x, shift, _axis(b, x, dim), _part(b, node, f"axis{i}"))
    return x


METHODS.add(["roll"], roll)


def _repeat_to(b: Builder, node: torch.fx.Node, x: str, repeats: tuple[int, ...]) -> str:
    """x tiled `repeats[i]` times along axis i (leading new axes first, as torch does)."""
    rank = _rank(b, x)
    if len(repeats) < rank:
        raise b.fail(f"{op_label(node)} needs at least one repeat count per axis ({rank}), got {list(repeats)}")
    if any(r < 1 for r in repeats):
        raise b.fail(f"{op_label(node)} with a repeat count below 1 ({list(repeats)}) is not supported")
    if len(repeats) > rank:
        x = reshape_to(b, x, (1,) * (len(repeats) - rank) + b.value(x).shape, name=_part(b, node, "grown"))
    shape = b.value(x).shape
    # An axis of one repeated is a broadcast (`pos.repeat(B, 1, 1)` of a [1, N, C] table): one expand,
    # which follows a batch count in generated code; longer axes are copies side by side.
    broadcast = tuple(count if size == 1 else size for size, count in zip(shape, repeats, strict=True))
    if broadcast != shape:
        x = b.emit(Op.EXPAND, [x], A.ExpandAttrs(shape=broadcast), name=_part(b, node, "broadcast"))
    for axis, (size, count) in enumerate(zip(shape, repeats, strict=True)):
        if count > 1 and size > 1:
            x = b.emit(Op.CONCAT, [x] * count, A.AxisAttrs(axis=axis), name=_part(b, node, f"axis{axis}"))
    return x


@METHODS.register("repeat")
def repeat(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.repeat(*sizes): copies side by side along each axis (a concat of the tensor with itself)."""
    args, kwargs = b.args(node)
    if set(kwargs) - {"repeats"} or (len(args) < 2) == ("repeats" not in kwargs):
        raise b.fail("Tensor.repeat takes the repeat counts, as positional arguments or as repeats=")
    x = _tensor(b, node, args[0], "input")
    return _repeat_to(b, node, x, _dims(args, 1) if len(args) > 1 else tuple(int(r) for r in kwargs["repeats"]))


@FUNCTIONS.register("torch.tile")
def tile(b: Builder, node: torch.fx.Node) -> Any:
    """tile(input, dims): like Tensor.repeat, with fewer counts than axes meaning leading ones."""
    call = bind(b, node, ("input", "dims"))
    x = _tensor(b, node, call.get("input"), "input")
    dims = tuple(int(d) for d in call["dims"])
    dims = (1,) * max(0, _rank(b, x) - len(dims)) + dims
    return _repeat_to(b, node, x, dims)


METHODS.add(["tile"], tile)


# ---- arithmetic ----------------------------------------------------------------------------------


@FUNCTIONS.register("torch.addcmul")
def addcmul(b: Builder, node: torch.fx.Node) -> Any:
    """addcmul(input, tensor1, tensor2, value=1): input + value * tensor1 * tensor2."""
    call = bind(b, node, ("input", "tensor1", "tensor2", "value"))
    x = _tensor(b, node, call.get("input"), "input")
    t1, t2 = _tensor(b, node, call.get("tensor1"), "tensor1"), _tensor(b, node, call.get("tensor2"), "tensor2")
    value = _scalar(b, call, "value", 1.0)
    product = b.emit(Op.MUL, [t1, t2], A.BinaryAttrs(), name=_part(b, node, "product"))
    if value != 1.0:
        product = b.emit(Op.MUL, [product], A.BinaryAttrs(scalar=value), name=_part(b, node, "scaled"))
    return b.emit(Op.ADD, [x, product], A.BinaryAttrs())


METHODS.add(["addcmul", "addcmul_"], addcmul)


@METHODS.register("reshape_as", "view_as")
def reshape_as(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.reshape_as(other) / view_as(other): a reshape to other's shape."""
    args, kwargs = b.args(node)
    if kwargs or len(args) != 2:
        raise b.fail(f"{op_label(node)} takes one tensor argument")
    x = _tensor(b, node, args[0], "input")
    return reshape_to(b, x, _observed_shape(b, node))


FUNCTIONS.add(["torch.sin"], unary(Op.SIN, ("input",)))
FUNCTIONS.add(["torch.cos"], unary(Op.COS, ("input",)))
METHODS.add(["sin"], unary(Op.SIN, ("input",)))
METHODS.add(["cos"], unary(Op.COS, ("input",)))


@FUNCTIONS.register("torch.cumsum")
def cumsum(b: Builder, node: torch.fx.Node) -> Any:
    """cumsum(input, dim, dtype=None)"""
    call = bind(b, node, ("input", "dim", "dtype"))
    x = _tensor(b, node, call.get("input"), "input")
    _same_dtype(b, node, x, call.get("dtype"))
    if call.get("dim") is None:
        raise b.fail("cumsum needs dim")
    return b.emit(Op.CUMSUM, [x], A.CumsumAttrs(axis=_axis(b, x, call["dim"])))


METHODS.add(["cumsum"], cumsum)


# ---- norms ---------------------------------------------------------------------------------------


def _reduced_axes(b: Builder, x: str, dim: Any) -> tuple[int, ...]:
    rank = _rank(b, x)
    if dim is None:
        return tuple(range(rank))
    dims = dim if isinstance(dim, (list, tuple)) else [dim]
    return tuple(sorted({int(d) % rank for d in dims}))


def emit_two_norm(b: Builder, node: torch.fx.Node, x: str, axes: tuple[int, ...], keepdim: bool) -> str:
    """sqrt(sum(x ** 2)) over `axes`: the Euclidean (Frobenius) norm."""
    square = b.emit(Op.POW, [x], A.PowAttrs(exponent=2.0), name=_part(b, node, "square"))
    total = b.emit(Op.SUM, [square], A.ReduceAttrs(axes=axes, keepdim=keepdim), name=_part(b, node, "sum"))
    return b.emit(Op.SQRT, [total])


def _two_norm_order(b: Builder, node: torch.fx.Node, p: Any, names: tuple[str, ...]) -> None:
    if p not in (2, 2.0, "fro"):
        raise b.fail(f"{op_label(node)} with {names[0]}={p!r} is not supported; the fx frontend lowers the 2-norm only")


@METHODS.register("norm")
def norm(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.norm(p='fro', dim=None, keepdim=False, dtype=None) / torch.norm(input, p, dim, keepdim, out, dtype)"""
    names = ("input", "p", "dim", "keepdim", "out", "dtype") if node.op == "call_function" else ("input", "p", "dim", "keepdim", "dtype")
    call = bind(b, node, names, fixed={"out": None} if "out" in names else None)
    x = _tensor(b, node, call.get("input"), "input")
    _two_norm_order(b, node, call.get("p", "fro"), ("p",))
    _same_dtype(b, node, x, call.get("dtype"))
    return emit_two_norm(b, node, x, _reduced_axes(b, x, call.get("dim")), bool(call.get("keepdim", False)))


FUNCTIONS.add(["torch.norm"], norm)


@FUNCTIONS.register("torch.linalg_vector_norm")
def vector_norm(b: Builder, node: torch.fx.Node) -> Any:
    """linalg.vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None)"""
    call = bind(b, node, ("x", "ord", "dim", "keepdim", "dtype"))
    x = _tensor(b, node, call.get("x"), "input")
    _two_norm_order(b, node, call.get("ord", 2), ("ord",))
    _same_dtype(b, node, x, call.get("dtype"))
    return emit_two_norm(b, node, x, _reduced_axes(b, x, call.get("dim")), bool(call.get("keepdim", False)))


@FUNCTIONS.register(f"{F}.normalize")
def normalize(b: Builder, node: torch.fx.Node) -> Any:
    """normalize(input, p=2.0, dim=1, eps=1e-12, out=None): x / max(||x||_2 over dim, eps)."""
    call = bind(b, node, ("input", "p", "dim", "eps", "out"), fixed={"out": None})
    x = _tensor(b, node, call.get("input"), "input")
    _two_norm_order(b, node, call.get("p", 2.0), ("p",))
    axes = _reduced_axes(b, x, call.get("dim", 1))
    length = emit_two_norm(b, node, x, axes, keepdim=True)
    # a separate name: emit_two_norm's root is named after the fx node, which the result takes here
    floor = b.emit(Op.CLAMP, [length], A.ClampAttrs(min=_scalar(b, call, "eps", 1e-12)), name=_part(b, node, "norm"))
    return b.emit(Op.DIV, [x, floor], A.BinaryAttrs())


# ---- more reductions and normalisations ---------------------------------------------------------


@METHODS.register("amax")
def amax(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.amax(dim=(), keepdim=False) / torch.amax"""
    call = bind(b, node, ("input", "dim", "keepdim"))
    x = _tensor(b, node, call.get("input"), "input")
    dim = call.get("dim", ())
    axes = _reduced_axes(b, x, None if dim in ((), []) else dim)
    return b.emit(Op.MAX, [x], A.ReduceAttrs(axes=axes, keepdim=bool(call.get("keepdim", False))))


FUNCTIONS.add(["torch.amax"], amax)


class MaxResult(NamedTuple):
    """What `x.max(dim)` returns: the values, and indices the IR has no op for (None)."""

    values: Any
    indices: Any


@METHODS.register("max")
def max_(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.max() / max(dim, keepdim=False) / torch.max(input, dim, keepdim=False): the values. The
    indices of the dim form are refused where read, and so is the elementwise max of two tensors."""
    call = bind(b, node, ("input", "dim", "keepdim"))
    x = _tensor(b, node, call.get("input"), "input")
    dim = call.get("dim")
    if b.is_tensor(dim):
        raise b.fail(f"{op_label(node)} of two tensors (the elementwise maximum) is not supported")
    if dim is None:
        return b.emit(Op.MAX, [x], A.ReduceAttrs(axes=tuple(range(_rank(b, x))), keepdim=False))
    for user in node.users:
        reads_indices = user.op == "call_function" and user.target is operator.getitem and user.args[1] != 0
        if reads_indices or (user.target is getattr and user.args[1] == "indices"):
            raise b.fail(f"the indices {op_label(node)}(dim) returns are not supported; use only its values (x.amax(dim))")
    values = b.emit(Op.MAX, [x], A.ReduceAttrs(axes=_reduced_axes(b, x, dim), keepdim=bool(call.get("keepdim", False))))
    return MaxResult(values, None)


FUNCTIONS.add(["torch.max"], max_)


@FUNCTIONS.register(f"{F}.rms_norm")
def rms_norm(b: Builder, node: torch.fx.Node) -> Any:
    """rms_norm(input, normalized_shape, weight=None, eps=None): x / sqrt(mean(x^2) + eps) * weight over
    the trailing axes (eps None: the dtype's machine epsilon, as torch)."""
    call = bind(b, node, ("input", "normalized_shape", "weight", "eps"))
    x = _tensor(b, node, call.get("input"), "input")
    normalized = call["normalized_shape"]
    count = len(normalized) if isinstance(normalized, (list, tuple)) else 1
    eps = call.get("eps")
    eps = None if eps is None else _scalar(b, call, "eps", None)
    weight = call.get("weight")
    return _emit_rms_norm(b, node, x, count, eps, None if weight is None else _tensor(b, node, weight, "weight"))


@MODULES.register(nn.RMSNorm)
def rms_norm_module(b: Builder, node: torch.fx.Node) -> Any:
    """RMSNorm(normalized_shape, eps=None, elementwise_affine=True): as F.rms_norm with the module's
    weight, read through a constant as a hand-written norm's `self.weight * x` is."""
    m: nn.RMSNorm = b.module(node)  # type: ignore[assignment]
    weight = None
    if m.weight is not None:
        param = b.add_param(f"{node.target}.weight", m.weight, None, trainable=m.weight.requires_grad)
        weight = b.emit(Op.CONSTANT, [], params={"value": param}, name=_part(b, node, "weight"))
    return _emit_rms_norm(b, node, _input(b, node), len(m.normalized_shape), m.eps, weight)


def _emit_rms_norm(b: Builder, node: torch.fx.Node, x: str, count: int, eps: float | None, weight: str | None) -> str:
    """x / sqrt(mean(x^2) + eps) over the trailing `count` axes, times `weight` when given."""
    rank = _rank(b, x)
    axes = tuple(range(rank - count, rank))
    eps = float(torch.finfo(getattr(torch, b.value(x).dtype)).eps) if eps is None else float(eps)
    square = b.emit(Op.POW, [x], A.PowAttrs(exponent=2.0), name=_part(b, node, "square"))
    mean = b.emit(Op.MEAN, [square], A.ReduceAttrs(axes=axes, keepdim=True), name=_part(b, node, "mean"))
    shifted = b.emit(Op.ADD, [mean], A.BinaryAttrs(scalar=eps), name=_part(b, node, "eps"))
    root = b.emit(Op.SQRT, [shifted], name=_part(b, node, "rms"))
    if weight is None:
        return b.emit(Op.DIV, [x, root], A.BinaryAttrs())
    normed = b.emit(Op.DIV, [x, root], A.BinaryAttrs(), name=_part(b, node, "normed"))
    return b.emit(Op.MUL, [normed, weight], A.BinaryAttrs())


@METHODS.register("repeat_interleave")
def repeat_interleave(b: Builder, node: torch.fx.Node) -> Any:
    """Tensor.repeat_interleave(repeats, dim=None, *, output_size=None) with a Python int count: each
    slice along `dim` repeated in place (an expand of a new axis, merged back)."""
    call = bind(b, node, ("input", "repeats", "dim", "output_size"))
    x = _tensor(b, node, call.get("input"), "input")
    repeats, dim = call.get("repeats"), call.get("dim")
    if not isinstance(repeats, int) or isinstance(repeats, bool):
        raise b.fail("repeat_interleave with a tensor of counts is not supported; pass one Python int")
    if dim is None:
        raise b.fail("repeat_interleave without dim flattens the tensor; pass dim")
    axis = _axis(b, x, dim)
    shape = b.value(x).shape
    grown = reshape_to(b, x, (*shape[: axis + 1], 1, *shape[axis + 1 :]), name=_part(b, node, "grown"))
    copies = b.emit(Op.EXPAND, [grown], A.ExpandAttrs(shape=(*shape[: axis + 1], repeats, *shape[axis + 1 :])), name=_part(b, node, "copies"))
    return reshape_to(b, copies, (*shape[:axis], shape[axis] * repeats, *shape[axis + 1 :]))


FUNCTIONS.add(["torch.repeat_interleave"], repeat_interleave)


# ---- padding layers, rsqrt ------------------------------------------------------------------------

_PAD_MODES = {"Constant": "constant", "Zero": "constant", "Reflection": "reflect", "Replication": "replicate", "Circular": "circular"}


def _pad_layers() -> list[type]:
    layers = []
    for kind in _PAD_MODES:
        for n in (1, 2, 3):
            layer = getattr(nn, f"{kind}Pad{n}d", None)
            if layer is not None:
                layers.append(layer)
    return layers


@MODULES.register(*_pad_layers())
def pad_layer(b: Builder, node: torch.fx.Node) -> str:
    """ZeroPad{1,2,3}d(padding) / ConstantPad{1,2,3}d(padding, value) / ReflectionPad / ReplicationPad /
    CircularPad: `padding` lists (before, after) from the last axis backwards, as F.pad."""
    m = b.module(node)
    x = _input(b, node)
    kind = next(k for k in _PAD_MODES if type(m).__name__.startswith(f"{k}Pad") or any(
        c.__name__.startswith(f"{k}Pad") for c in type(m).__mro__))
    flat = [int(p) for p in m.padding]  # type: ignore[union-attr]
    return emit_pad(b, node, x, flat, _PAD_MODES[kind], float(getattr(m, "value", 0.0) or 0.0))


FUNCTIONS.add(["torch.rsqrt", "torch.rsqrt_"], unary(Op.POW, ("input",), lambda b, c: A.PowAttrs(exponent=-0.5)))
METHODS.add(["rsqrt", "rsqrt_"], unary(Op.POW, ("input",), lambda b, c: A.PowAttrs(exponent=-0.5)))


# ---- einsum -------------------------------------------------------------------------------------


@FUNCTIONS.register("torch.einsum")
def einsum(b: Builder, node: torch.fx.Node) -> Any:
    """einsum(equation, *operands) with one or two operands, written as permutes, sums and one batched
    matmul: the letters shared with the output are the matmul's batch, the shared ones missing from it
    are contracted, and the rest are each operand's own rows and columns."""
    args, kwargs = b.args(node)
    if kwargs or not args or not isinstance(args[0], str):
        raise b.fail("einsum is supported as torch.einsum(equation, *operands)")
    equation = args[0].replace(" ", "")
    operands = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    if "->" not in equation or "." in equation:
        raise b.fail(f"einsum '{equation}': write the output letters explicitly (a->b form) and no ellipsis")
    inputs, out = equation.split("->")
    specs = inputs.split(",")
    if len(specs) != len(operands) or not 1 <= len(specs) <= 2:
        raise b.fail(f"einsum '{equation}' with {len(operands)} operands: one or two are supported")
    for spec, x in zip(specs, operands, strict=True):
        _tensor(b, node, x, "operand")
        if len(set(spec)) != len(spec) or len(spec) != _rank(b, x):
            raise b.fail(f"einsum '{equation}': each operand needs one distinct letter per axis (no diagonals)")
    # letters an operand alone has and the output lacks are summed first
    reduced = []
    for i, (spec, x) in enumerate(zip(specs, operands, strict=True)):
        others = set(out) | {c for j, s in enumerate(specs) if j != i for c in s}
        gone = tuple(a for a, c in enumerate(spec) if c not in others)
        if gone:
            x = b.emit(Op.SUM, [x], A.ReduceAttrs(axes=gone, keepdim=False), name=_part(b, node, f"sum{i}"))
            spec = "".join(c for c in spec if c in others)
        reduced.append((spec, x))
    if len(reduced) == 1:
        spec, x = reduced[0]
        return _permute_letters(b, node, x, spec, out, "out")
    (sa, a), (sb, bt) = reduced
    batch = [c for c in sa if c in sb and c in out]
    contract = [c for c in sa if c in sb and c not in out]
    left = [c for c in sa if c not in sb]
    right = [c for c in sb if c not in sa]
    size = {c: b.value(a).shape[i] for i, c in enumerate(sa)} | {c: b.value(bt).shape[i] for i, c in enumerate(sb)}
    for c in batch + contract:
        if b.value(a).shape[sa.index(c)] != b.value(bt).shape[sb.index(c)]:
            raise b.fail(f"einsum '{equation}': letter '{c}' has sizes that differ between the operands (broadcasting)")

    def prod(letters: list[str]) -> int:
        total = 1
        for c in letters:
            total *= size[c]
        return total

    a = _permute_letters(b, node, a, sa, "".join(batch + left + contract), "lhs")
    a = reshape_to(b, a, (prod(batch), prod(left), prod(contract)), name=_part(b, node, "lhs_rows"))
    bt = _permute_letters(b, node, bt, sb, "".join(batch + contract + right), "rhs")
    bt = reshape_to(b, bt, (prod(batch), prod(contract), prod(right)), name=_part(b, node, "rhs_cols"))
    product = b.emit(Op.MATMUL, [a, bt], name=_part(b, node, "product"))
    letters = batch + left + right
    product = reshape_to(b, product, tuple(size[c] for c in letters), name=_part(b, node, "unflat"))
    return _permute_letters(b, node, product, "".join(letters), out, "out")


def _permute_letters(b: Builder, node: torch.fx.Node, x: str, have: str, want: str, tag: str) -> str:
    if have == want:
        return x
    perm = tuple(have.index(c) for c in want)
    return b.emit(Op.PERMUTE, [x], A.PermuteAttrs(perm=perm), name=None if tag == "out" else _part(b, node, tag))
