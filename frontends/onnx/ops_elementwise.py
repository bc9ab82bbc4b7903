"""ONNX frontend converters for elementwise ops (the `asgnas_ir.opdefs.elementwise` family).

Unary activations, Log, Pow, Clip, HardSigmoid, Identity/Dropout and Cast; the four binary ops (a
constant scalar operand becomes an attribute); and the export patterns that are one IR op: exact
GELU written with Erf, SiLU as x * Sigmoid(x), and the NaN guard Where(IsNaN(x), 0, x). Bools and
integers computed at run time (masks, positions, T5's relative position buckets) are held as floats:
comparisons, Abs, Min/Max, Where and casts on them are exact lowerings to float ops. Split out
of `ops.py` so each file holds one op family; importing this module registers its converters in
`OPS`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx

from asgnas_ir.frontends.onnx._ops_common import OPS, _scalar
from asgnas_ir.frontends.onnx.builder import FUSED, Builder, Const
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


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
OPS.add(["Log"], unary(Op.LOG))
OPS.add(["Sin"], unary(Op.SIN))
OPS.add(["Cos"], unary(Op.COS))


@OPS.register("Reciprocal")
def reciprocal(b: Builder, node: onnx.NodeProto) -> str:
    """Reciprocal(X) as 1 / x (torch exports `rsqrt`, RMSNorm's, as Reciprocal(Sqrt(x)))"""
    return b.emit(Op.DIV, [b.tensor(node, 0)], A.BinaryAttrs(scalar=1.0, reverse=True))


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


# NOTE: [Bools as 0/1 floats] The IR has no bool (or integer) arithmetic. A model that builds its
# attention mask from an input (`attention_mask.bool()`, and-ed with a causal triangle, turned into
# an additive mask by `where(mask, 0, -inf)`) is lowered with each run-time bool held as a float
# tensor of 0.0 and 1.0: `and` is a product, `or` a + b - a * b, `not` 1 - a, and `where(c, x, y)`
# y + c * (x - y). Constant bools are folded as before and become 0/1 constants where a run-time op
# reads them. An infinite `where` operand (-inf, what attention masks add) is the dtype's most
# negative (or positive) finite value instead: 0 * inf is NaN, and softmax gives a masked position
# weight 0 either way; only a row masked whole differs (uniform instead of NaN, which exporters turn
# to 0), a row the model's own output leaves meaningless. The ONNX type still says bool: converters
# read it there (`_is_flag`).


def _is_flag(b: Builder, name: str) -> bool:
    found = b.types.get(name)
    return found is not None and found.dtype == "bool"


def _flag(b: Builder, node: onnx.NodeProto, index: int) -> str:
    """Bool input `index` as an IR tensor of 0.0/1.0 (NOTE: [Bools as 0/1 floats])."""
    name = node.input[index]
    value = b.get(name)
    if isinstance(value, Const):
        alias = f"{name}_flag"
        if name in b.sized:
            b.sized.setdefault(alias, b.sized[name])
        return b.constant_node(Const(np.asarray(value.array).astype(np.float32)), alias)
    if not isinstance(value, str) or not _is_flag(b, name):
        raise b.fail(f"input {index} ('{name}') is not a bool tensor")
    return value


# NOTE: [Integers held as floats] What a model counts at run time from such flags (RoBERTa's
# position ids: `cumsum(ids != pad) * (ids != pad) + pad`) is integer arithmetic, which the IR does
# not have either: those integers are held as float32 tensors (exact below 2**24, far beyond any
# position or vocabulary size) and cast back to int64 where the IR needs indices (an embedding's
# input). `ids == c` of integers is the flag 1 - min((ids - c)**2, 1), exact for whole numbers.
# The ONNX type still says int (`_held_int`).


def _held_int(b: Builder, name: str) -> bool:
    """A run-time ONNX integer tensor the IR holds as float (NOTE: [Integers held as floats])."""
    found = b.types.get(name)
    value = b.env.get(name)
    return (isinstance(value, str) and found is not None and (found.dtype or "").startswith(("int", "uint"))
            and b.value(value).dtype.startswith(("float", "bfloat")))


def _integral(b: Builder, name: str) -> bool:
    value = b.env.get(name)
    if isinstance(value, Const):
        return np.asarray(value.array).dtype.kind in "iub"
    found = b.types.get(name)
    return found is not None and (found.dtype or "").startswith(("int", "uint", "bool"))


def _as_float(b: Builder, node: onnx.NodeProto, index: int) -> str:
    """Input `index` as a float32 IR tensor (an integer or bool constant converted, an int64 tensor cast)."""
    value = b.get(node.input[index])
    if isinstance(value, Const) and value.origin is None and value.pieces is None and value.array.dtype.kind in "iub":
        alias = f"{node.input[index]}_float"
        if node.input[index] in b.sized:
            b.sized.setdefault(alias, b.sized[node.input[index]])
        return b.constant_node(Const(np.asarray(value.array).astype(np.float32)), alias)
    x = b.tensor(node, index)
    if b.value(x).dtype.startswith(("float", "bfloat")):
        return x
    return b.emit(Op.CAST, [x], A.CastAttrs(dtype="float32"), name=f"{node.input[index]}_float")


@OPS.register("Equal")
def equal(b: Builder, node: onnx.NodeProto) -> str:
    """Equal(A, B) of integers (or bools), as the flag 1 - min((a - b)**2, 1): exact for whole numbers
    (NOTE: [Bools as 0/1 floats], NOTE: [Integers held as floats])"""
    if not (_integral(b, node.input[0]) and _integral(b, node.input[1])):
        raise b.fail("Equal of run-time tensors is supported for integers and bools only (a float compared for "
                     "equality has no exact lowering in the IR)")
    constant = next((i for i in (1, 0) if isinstance(b.get(node.input[i]), Const)), None)
    scalar = _scalar(b.const(node, constant)) if constant is not None else None
    if scalar is not None:
        x = _as_float(b, node, 1 - constant)  # type: ignore[operator]
        diff = b.emit(Op.ADD, [x], A.BinaryAttrs(scalar=-scalar), name=f"{node.output[0]}_diff")
    else:
        diff = b.emit(Op.SUB, [_as_float(b, node, 0), _as_float(b, node, 1)], A.BinaryAttrs(), name=f"{node.output[0]}_diff")
    square = b.emit(Op.POW, [diff], A.PowAttrs(exponent=2.0), name=f"{node.output[0]}_square")
    differs = b.emit(Op.CLAMP, [square], A.ClampAttrs(min=None, max=1.0), name=f"{node.output[0]}_differs")
    return _reshape_like(b, node, b.emit(Op.SUB, [differs], A.BinaryAttrs(scalar=1.0, reverse=True)))


def _uniform(const: Const | None) -> float | None:
    """The one value of a constant filled with it (a scalar, or what `full_like` folds to), else None."""
    if const is None or const.origin is not None or const.pieces is not None or not const.array.size:
        return None
    array = np.asarray(const.array)
    first = array.reshape(-1)[0]
    return float(first) if bool(np.all(array == first)) else None


# a < b is b > a; a <= b is b >= a
_COMPARISONS = {"Greater": (False, 0.0), "GreaterOrEqual": (False, 1.0), "Less": (True, 0.0), "LessOrEqual": (True, 1.0)}


@OPS.register("Greater", "GreaterOrEqual", "Less", "LessOrEqual")
def compare(b: Builder, node: onnx.NodeProto) -> str:
    """Greater(A, B) / GreaterOrEqual / Less / LessOrEqual of integers (or bools), as the flag
    clamp(a - b + k, 0, 1) with k 0 for a strict comparison and 1 otherwise (operands swapped for Less):
    exact for whole numbers, whose differences are never strictly between 0 and 1 (NOTE: [Bools as
    0/1 floats], NOTE: [Integers held as floats])"""
    if not (_integral(b, node.input[0]) and _integral(b, node.input[1])):
        raise b.fail(f"{node.op_type} of run-time tensors is supported for integers and bools only (a comparison of "
                     "floats is a step function the IR has no exact op for)")
    swapped, offset = _COMPARISONS[node.op_type]
    big, small = (1, 0) if swapped else (0, 1)
    low, high = _scalar(b.const(node, small)), _scalar(b.const(node, big))
    out = node.output[0]
    if low is not None and b.value(x := _as_float(b, node, big)).shape == b.out_shape(node):
        diff = b.emit(Op.ADD, [x], A.BinaryAttrs(scalar=offset - low), name=f"{out}_diff")
    elif high is not None and b.value(y := _as_float(b, node, small)).shape == b.out_shape(node):
        diff = b.emit(Op.SUB, [y], A.BinaryAttrs(scalar=high + offset, reverse=True), name=f"{out}_diff")
    else:
        diff = b.emit(Op.SUB, [_as_float(b, node, big), _as_float(b, node, small)], A.BinaryAttrs(), name=f"{out}_diff")
        if offset:
            diff = b.emit(Op.ADD, [diff], A.BinaryAttrs(scalar=offset), name=f"{out}_shifted")
    return _reshape_like(b, node, b.emit(Op.CLAMP, [diff], A.ClampAttrs(min=0.0, max=1.0)))


@OPS.register("Abs")
def abs_(b: Builder, node: onnx.NodeProto) -> str:
    """Abs(X) as relu(x) - min(x, 0): exact for every value, one of the two terms being 0 (an integer
    tensor is held as floats, NOTE: [Integers held as floats])"""
    x = _as_float(b, node, 0)
    out = node.output[0]
    positive = b.emit(Op.RELU, [x], name=f"{out}_positive")
    negative = b.emit(Op.CLAMP, [x], A.ClampAttrs(min=None, max=0.0), name=f"{out}_negative")
    return b.emit(Op.SUB, [positive, negative], A.BinaryAttrs())


@OPS.register("Min", "Max")
def min_max(b: Builder, node: onnx.NodeProto) -> str:
    """Min(data_0, ...) / Max(data_0, ...): constant bounds (scalars, or arrays of one value) are a
    clamp, exact; two run-time tensors are a - relu(a - b) / a + relu(b - a), exact for integers (held
    as floats, NOTE: [Integers held as floats]) and refused for floats, where a - b rounds"""
    is_min = node.op_type == "Min"
    bounds: list[float] = []
    tensors: list[int] = []
    for i, name in enumerate(node.input):
        if not name:
            continue
        bound = _uniform(b.const(node, i))
        if bound is not None:
            bounds.append(bound)
        else:
            tensors.append(i)
    if not tensors:
        raise b.fail(f"{node.op_type} of constants only was not folded (its inputs' shapes are unknown)")
    out = node.output[0]
    x = _as_float(b, node, tensors[0])
    for i in tensors[1:]:
        if not (_integral(b, node.input[tensors[0]]) and _integral(b, node.input[i])):
            raise b.fail(f"{node.op_type} of two run-time float tensors is not supported (its lowering a - relu(a - b) "
                         "is exact for integers only)")
        y = _as_float(b, node, i)
        gap = b.emit(Op.SUB, [x, y] if is_min else [y, x], A.BinaryAttrs(), name=f"{out}_gap{i}")
        excess = b.emit(Op.RELU, [gap], name=f"{out}_excess{i}")
        x = b.emit(Op.SUB if is_min else Op.ADD, [x, excess], A.BinaryAttrs(), name=f"{out}_{i}")
    if bounds:
        bound = min(bounds) if is_min else max(bounds)
        attrs = A.ClampAttrs(min=None, max=bound) if is_min else A.ClampAttrs(min=bound, max=None)
        x = b.emit(Op.CLAMP, [x], attrs, name=f"{out}_bounded")
    return _reshape_like(b, node, x)


@OPS.register("CumSum")
def cumsum(b: Builder, node: onnx.NodeProto) -> str:
    """CumSum(x, axis) exclusive=0 reverse=0: the running sum along a constant axis"""
    if b.attr(node, "exclusive", 0) or b.attr(node, "reverse", 0):
        raise b.fail("CumSum is supported without exclusive or reverse")
    axis = _scalar(b.const(node, 1))
    if axis is None:
        raise b.fail("CumSum's axis (input 1) must be a constant scalar")
    x = b.tensor(node, 0)
    return b.emit(Op.CUMSUM, [x], A.CumsumAttrs(axis=int(axis) % b.rank(x)))


@OPS.register("And", "Or")
def and_or(b: Builder, node: onnx.NodeProto) -> str:
    """And(A, B) / Or(A, B) of bools, as a * b / a + b - a * b on 0/1 floats (NOTE: [Bools as 0/1 floats])"""
    x, y = _flag(b, node, 0), _flag(b, node, 1)
    both = b.emit(Op.MUL, [x, y], A.BinaryAttrs(), name=f"{node.output[0]}_both" if node.op_type == "Or" else None)
    if node.op_type == "And":
        return both
    total = b.emit(Op.ADD, [x, y], A.BinaryAttrs(), name=f"{node.output[0]}_sum")
    return b.emit(Op.SUB, [total, both], A.BinaryAttrs())


@OPS.register("Not")
def not_(b: Builder, node: onnx.NodeProto) -> str:
    """Not(X) of a bool, as 1 - x on 0/1 floats (NOTE: [Bools as 0/1 floats])"""
    return b.emit(Op.SUB, [_flag(b, node, 0)], A.BinaryAttrs(scalar=1.0, reverse=True))


def _finite(value: float, dtype: str) -> float:
    if not math.isinf(value):
        return value
    limit = float(np.finfo(np.dtype(dtype)).max) if dtype.startswith("float") else 3.4028234663852886e38
    return limit if value > 0 else -limit


@OPS.register("Where")
def where(b: Builder, node: onnx.NodeProto) -> Any:
    """Where(condition, X, Y) with a run-time bool condition, as c * x + (1 - c) * y (NOTE: [Bools
    as 0/1 floats]): exact for finite X and Y; an infinite constant X or Y is the dtype's largest
    finite value instead. (A run-time X with an IsNaN condition is the NaN guard, see IsNaN.)"""
    found = b.types.get(node.output[0])
    dtype = found.dtype if found is not None and found.dtype else "float32"
    if dtype.startswith(("int", "uint")):
        dtype = "float32"  # whole numbers, held as floats (NOTE: [Integers held as floats])
    elif not dtype.startswith(("float", "bfloat")):
        raise b.fail(f"Where choosing between {dtype} values is not supported (only numeric ones)")
    c = _flag(b, node, 0)
    if b.value(c).dtype != dtype:
        c = b.emit(Op.CAST, [c], A.CastAttrs(dtype=dtype), name=f"{node.output[0]}_as_{dtype}")
    taken = _chosen(b, node, 1, c, dtype, "taken")
    other = b.emit(Op.SUB, [c], A.BinaryAttrs(scalar=1.0, reverse=True), name=f"{node.output[0]}_not")
    left = _chosen(b, node, 2, other, dtype, "left")
    if taken is None and left is None:
        return _reshape_like(b, node, b.emit(Op.MUL, [c], A.BinaryAttrs(scalar=0.0)))
    if taken is None or left is None:
        return _reshape_like(b, node, taken or left)  # type: ignore[arg-type]
    return _reshape_like(b, node, b.emit(Op.ADD, [taken, left], A.BinaryAttrs()))


def _chosen(b: Builder, node: onnx.NodeProto, index: int, weight: str, dtype: str, what: str) -> str | None:
    """`weight` (0/1) times Where's branch `index`; None where the branch is the constant 0."""
    value = _scalar(b.const(node, index))
    if value is not None:
        value = _finite(value, dtype)
        if value == 0.0:
            return None
        if value == 1.0:
            return weight
        return b.emit(Op.MUL, [weight], A.BinaryAttrs(scalar=value), name=f"{node.output[0]}_{what}")
    branch = _as_float(b, node, index) if _integral(b, node.input[index]) else b.tensor(node, index)
    if b.value(branch).dtype != dtype:
        raise b.fail(f"Where's input {index} is {b.value(branch).dtype}, its output {dtype}")
    return b.emit(Op.MUL, [weight, branch], A.BinaryAttrs(), name=f"{node.output[0]}_{what}")


def _reshape_like(b: Builder, node: onnx.NodeProto, x: str) -> str:
    """`x` broadcast to the node's inferred output shape (a scalar branch of Where can raise its rank)."""
    shape = b.out_shape(node)
    if b.value(x).shape == shape:
        return x
    if b.rank(x) < len(shape):
        x = b.emit(Op.RESHAPE, [x], A.ReshapeAttrs(shape=(1,) * (len(shape) - b.rank(x)) + b.value(x).shape), name=f"{node.output[0]}_rank")
    return b.emit(Op.EXPAND, [x], A.ExpandAttrs(shape=shape))


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


def binary(op: Op):  # noqa: ANN201
    def convert(b: Builder, node: onnx.NodeProto) -> str:
        if any(_held_int(b, name) or _is_flag(b, name) for name in node.input):
            return _counted(b, node, op)
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


def _counted(b: Builder, node: onnx.NodeProto, op: Op) -> str:
    """A binary op on whole numbers held as floats (NOTE: [Integers held as floats]): every operand
    as float, a constant scalar as the op's scalar."""
    for position in (1, 0):
        const = b.const(node, position)
        scalar = _scalar(const) if const is not None and const.origin is None else None
        if scalar is not None and b.value(x := _as_float(b, node, 1 - position)).shape == b.out_shape(node):
            return b.emit(op, [x], A.BinaryAttrs(scalar=scalar, reverse=position == 0))
    return b.emit(op, [_as_float(b, node, 0), _as_float(b, node, 1)], A.BinaryAttrs())


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
    """Cast(input) to / CastLike(input, target_type) of a computed tensor: to a floating dtype (from
    a float, an integer or a bool), or an integer tensor to bool (NOTE: [Bools as 0/1 floats])"""
    x = b.tensor(node, 0)
    found = b.types.get(node.output[0])
    source = b.value(x).dtype
    if found is None or found.dtype is None or found.dtype == source:
        return x
    target = found.dtype
    counted = _is_flag(b, node.input[0]) or _held_int(b, node.input[0])  # whole numbers held as floats
    if target == "bool":
        if _is_flag(b, node.input[0]):
            return x
        if not (counted or source.startswith(("int", "uint"))):
            raise b.fail(f"{node.op_type} from {source} to bool of a computed tensor is supported for integers only")
        # nonzero -> 1: exact for the counts and 0/1 flags masks hold (negative integers would read as 0)
        if not counted:
            x = b.emit(Op.CAST, [x], A.CastAttrs(dtype="float32"), name=f"{node.output[0]}_float")
        return b.emit(Op.CLAMP, [x], A.ClampAttrs(min=0.0, max=1.0))
    if target.startswith(("float", "bfloat")):
        return b.emit(Op.CAST, [x], A.CastAttrs(dtype=target))
    if target.startswith(("int", "uint")) and (counted or source.startswith(("int", "uint"))):
        # another integer width, or whole numbers that stay held as floats (NOTE: [Integers held as
        # floats]): the values do not change, and the IR's indices take any integer dtype
        return x
    if target.startswith(("int", "uint")) and source.startswith(("float", "bfloat")):
        # NOTE: [Floats cast to integers] Truncation toward zero, as ONNX and torch's `.to(torch.int64)` do,
        # then held as floats again for the integer arithmetic after it. The value is the integer the
        # framework's own cast gives, NaN and infinities included (the C cast of a non-finite float is
        # undefined; on x86 it is the most negative integer): the generated code runs the same cast, and
        # the result is finite, so a Where lowered as c * x + (1 - c) * y drops it exactly where the model
        # discards it (T5's log(0) = -inf in the relative-position buckets it does not select).
        whole = b.emit(Op.CAST, [x], A.CastAttrs(dtype=target), name=f"{node.output[0]}_truncated")
        return b.emit(Op.CAST, [whole], A.CastAttrs(dtype="float32"))
    raise b.fail(f"{node.op_type} from {source} to {target} of a computed tensor is not supported")
