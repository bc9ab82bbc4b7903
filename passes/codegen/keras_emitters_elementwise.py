"""codegen-keras emitters for elementwise unary and binary ops (the `asgnas_ir.opdefs.elementwise` family).

Activations as `keras.ops` calls (hard_sigmoid is torch's relu6(x + 3) / 6 in Keras 3; mish and
softplus with beta/threshold are written out), dropout as a Dropout layer (the identity at
inference), and the four binary ops as Python operators. Every one keeps its input's layout; a
binary op brings its operands to one layout, broadcasting a lower-rank operand explicitly.
"""

from __future__ import annotations

from collections.abc import Callable

from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen._keras_printer import KERAS_EMITTERS, Emitter, KerasPrinter, emits, identity
from asgnas_ir.passes.codegen._printer import lit, lit_exact


def _unary(template: Callable[[NodeBase, str], str]) -> Emitter:
    def emit(p: KerasPrinter, node: NodeBase) -> None:
        p.assign(node, template(node, p.x(node)), p.perm[node.inputs[0]])

    return emit


def _clamp(node: NodeBase, x: str) -> str:
    attrs: A.ClampAttrs = node.attrs  # type: ignore[assignment]
    if attrs.min == 0.0 and attrs.max == 6.0:
        return f"keras.ops.relu6({x})"
    if attrs.max is None:
        return f"keras.ops.maximum({x}, {lit(float(attrs.min))})"  # type: ignore[arg-type]
    if attrs.min is None:
        return f"keras.ops.minimum({x}, {lit(float(attrs.max))})"
    return f"keras.ops.clip({x}, {lit(float(attrs.min))}, {lit(float(attrs.max))})"


def _softplus(node: NodeBase, x: str) -> str:
    """torch: log(1 + exp(beta x)) / beta, and x itself where beta x > threshold."""
    attrs: A.SoftplusAttrs = node.attrs  # type: ignore[assignment]
    if attrs.beta == 1.0 and attrs.threshold >= 20.0:  # the linear region differs by < exp(-20)
        return f"keras.ops.softplus({x})"
    beta, threshold = lit(float(attrs.beta)), lit(float(attrs.threshold))
    return f"keras.ops.where({x} * {beta} > {threshold}, {x}, keras.ops.softplus({x} * {beta}) / {beta})"


KERAS_EMITTERS.update(
    {
        Op.RELU: _unary(lambda n, x: f"keras.ops.relu({x})"),
        Op.SIGMOID: _unary(lambda n, x: f"keras.ops.sigmoid({x})"),
        Op.TANH: _unary(lambda n, x: f"keras.ops.tanh({x})"),
        Op.EXP: _unary(lambda n, x: f"keras.ops.exp({x})"),
        Op.SQRT: _unary(lambda n, x: f"keras.ops.sqrt({x})"),
        Op.LOG: _unary(lambda n, x: f"keras.ops.log({x})"),
        Op.SIN: _unary(lambda n, x: f"keras.ops.sin({x})"),
        Op.COS: _unary(lambda n, x: f"keras.ops.cos({x})"),
        Op.NEG: _unary(lambda n, x: f"keras.ops.negative({x})"),
        Op.POW: _unary(lambda n, x: f"keras.ops.power({x}, {lit(float(n.attrs.exponent))})"),
        Op.SILU: _unary(lambda n, x: f"keras.ops.silu({x})"),
        Op.HARDSWISH: _unary(lambda n, x: f"keras.ops.hard_silu({x})"),
        Op.HARDSIGMOID: _unary(lambda n, x: f"keras.ops.hard_sigmoid({x})"),  # relu6(x + 3) / 6, as torch
        Op.MISH: _unary(lambda n, x: f"{x} * keras.ops.tanh(keras.ops.softplus({x}))"),
        Op.CLAMP: _unary(_clamp),
        Op.LEAKY_RELU: _unary(lambda n, x: f"keras.ops.leaky_relu({x}, negative_slope={lit(float(n.attrs.negative_slope))})"),
        Op.GELU: _unary(lambda n, x: f"keras.ops.gelu({x}, approximate={n.attrs.approximate == 'tanh'})"),
        Op.ELU: _unary(lambda n, x: f"keras.ops.elu({x}, alpha={lit(float(n.attrs.alpha))})"),
        Op.SOFTPLUS: _unary(_softplus),
    }
)


@emits(Op.DROPOUT)
def _dropout(p: KerasPrinter, node: NodeBase) -> None:
    """A Dropout layer: the identity at inference, dropout again when the generated model trains.
    Channel-wise dropout (SpatialDropout, Dropout2d) shares one draw per sample and channel: a
    `noise_shape` of 1 on every other axis of the tensor as it is held."""
    noise = None
    if node.attrs.channelwise or node.attrs.samplewise:  # type: ignore[attr-defined]
        rank = p.rank(node.inputs[0])
        kept = (0, p.channel_axis(node.inputs[0])) if node.attrs.channelwise else (0,)  # type: ignore[attr-defined]
        noise = "(" + ", ".join("None" if j in kept else "1" for j in range(rank)) + ")"
    layer = p.layer(node, "Dropout", lit(float(node.attrs.p)), noise_shape=noise)  # type: ignore[attr-defined]
    p.assign(node, f"{layer}({p.x(node)})", p.perm[node.inputs[0]])


@emits(Op.IDENTITY)
def _identity(p: KerasPrinter, node: NodeBase) -> None:
    p.alias(node, p.x(node), p.perm[node.inputs[0]])


_BINARY = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.DIV: "/"}


def _operand(p: KerasPrinter, node: NodeBase, value: str, rank: int, perm: tuple[int, ...]) -> str:
    """`value` as an operand of a rank-`rank` result held in `perm` (numpy broadcasting)."""
    own = p.rank(value)
    if own == rank:
        return p.view(value, perm)
    if perm == identity(rank) or all(d == 1 for d in p.shape(value)):
        return p.logical(value)
    # a lower-rank operand of a permuted result: give it the leading 1s, then the same permutation
    full = (1,) * (rank - own) + p.shape(value)
    constant = p.constant_source(value)
    if constant is not None:
        array = p.graph.weights[constant].reshape(full).transpose(perm)
        return p.constant(("param", constant, perm), f"{p.layer_names_hint(constant)}_{'_'.join(map(str, perm))}", array)
    expanded = p.line(node, f"b{len(p.body)}", f"keras.ops.reshape({p.logical(value)}, {lit_exact(full)})")
    return p.line(node, f"b{len(p.body)}", f"keras.ops.transpose({expanded}, {lit_exact(perm)})")


@emits(*_BINARY)
def _binary(p: KerasPrinter, node: NodeBase) -> None:
    attrs: A.BinaryAttrs = node.attrs  # type: ignore[assignment]
    symbol = _BINARY[node.op]
    if attrs.scalar is not None:
        whole = p.graph.values[node.inputs[0]].dtype.startswith(("int", "uint")) and node.op is not Op.DIV
        # an integer tensor keeps its dtype with a whole scalar (positions + 2 index an embedding)
        value = int(attrs.scalar) if whole and float(attrs.scalar).is_integer() else float(attrs.scalar)
        x, scalar = p.x(node), lit(value)
        p.assign(node, f"{scalar} {symbol} {x}" if attrs.reverse else f"{x} {symbol} {scalar}", p.perm[node.inputs[0]])
        return
    rank = p.rank(node.outputs[0])
    candidates = [p.perm[v] for v in node.inputs if p.rank(v) == rank]
    perm = next((c for c in candidates if c != identity(rank)), identity(rank))
    a, b = (_operand(p, node, v, rank, perm) for v in node.inputs)
    p.assign(node, f"{a} {symbol} {b}", perm)


@emits(Op.CAST)
def _cast(p: KerasPrinter, node: NodeBase) -> None:
    """The rounding a Keras layer's dtype policy does on its inputs (or a float32 layer on its output)."""
    p.assign(node, f'keras.ops.cast({p.x(node)}, "{node.attrs.dtype}")', p.perm[node.inputs[0]])  # type: ignore[attr-defined]
