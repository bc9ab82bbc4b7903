"""OpDef: everything the passes need to know about one op kind, registered in one table.

Each op states, beside its attribute model (in `asgnas_ir.ir.node.OP_ATTRS`):
- `infer`: output value types (shape, dtype, channel axis) from input types and params;
- `couple`: how channels of inputs, outputs and params are tied (the heart of the dependency graph,
  see `asgnas_ir.passes.analysis.dependency_graph` for the label algebra);
- `flops`: cost with a multiply-add counted as 2;
- `resize`: new attributes once channels were removed (groups, split sizes, reshape targets);
- `kind`: the erasing-mode vertex class (stem, accessory, joint, other).

NOTE: [Coupling by labels] The dependency pass gives every channel of every value a *label*
(an integer atom). A rule reads its inputs' labels, writes its outputs' labels, and may
- `tie` two label arrays elementwise (a residual add: channel i of both operands goes together),
- `tie_all` a block (a group of a grouped conv is removed whole),
- `pin` labels (an op that mixes channels without weights, e.g. layer norm over channels, or a
  graph output: removing one would change a result),
- record a `param_slice`: index i of a param axis belongs with label i.
Connected components of tied atoms are the channel groups. A group is zero-invariant by
construction: zero every slice recorded for it and each surviving output is unchanged, because the
only places where a removed channel meets a kept one are weighted sums whose weights are in the group.

NOTE: [Exactly zero where summed] Not every sum over channels has its weights in the group: a
matmul of two activations (q·kᵀ, linear attention's q·(kᵀv)), a sum over the channel axis, or a
layer whose weights are frozen (an optimizer cannot zero them, so they are `stat`, never zeroed).
There a removed channel drops out only if its value is exactly zero. So the pass also tracks, for
every channel of every value, whether it is *exactly zero once its group is zeroed* (`zeros`):
- a layer whose zeroable `out` slices make the channel (conv, linear, an affine norm, `x * gamma`)
  sets it, whatever its input;
- an op that maps 0 to 0 for that channel (relu, pooling, reshape, `x * y`) carries it;
- anything else clears it (sigmoid(0) = 0.5, `elu(x) + 1`, a norm's shift, an unknown op).
A channel-summing op then pins every channel that is not exactly zero on at least one side
(`require_zero`). Clearing is always safe: it only pins more. The same reasoning pins channels that
an op makes infinite at zero (a negative power, a division by them): zero times infinity is NaN even
behind a zeroed weight. A per-channel divisor param is sliced as `stat` rather than zeroed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from asgnas_ir.errors import IRValidationError
from asgnas_ir.ir.graph import Param, Value
from asgnas_ir.ir.ops import Op

if TYPE_CHECKING:
    from asgnas_ir.ir.attrs import Attrs
    from asgnas_ir.ir.graph import Graph
    from asgnas_ir.ir.node import NodeBase

SliceKind = Literal["out", "in", "stat"]


class InferCtx:
    """Inputs to a shape rule: the node, its input types and its params."""

    def __init__(self, graph: Graph, node: NodeBase, inputs: list[Value]) -> None:
        self.graph = graph
        self.node = node
        self.inputs = inputs

    @property
    def attrs(self) -> Any:
        return self.node.attrs

    def param(self, role: str) -> Param | None:
        name = self.node.params.get(role)
        return None if name is None else self.graph.params[name]

    def require_param(self, role: str) -> Param:
        param = self.param(role)
        if param is None:
            self.fail(f"{self.node.op.value} needs a '{role}' param")
        return param  # type: ignore[return-value]

    def fail(self, message: str) -> None:
        raise IRValidationError(message, node=self.node.id, source=self.node.source)

    def expect_inputs(self, count: int) -> None:
        if len(self.inputs) != count:
            self.fail(f"{self.node.op.value} takes {count} input(s), got {len(self.inputs)}")


class CoupleCtx(Protocol):
    """What a coupling rule may do (implemented by the dependency-graph pass)."""

    node: NodeBase
    graph: Graph

    def labels(self, value: str) -> np.ndarray | None: ...
    def set_labels(self, value: str, labels: np.ndarray | None) -> None: ...
    def fresh(self, count: int) -> np.ndarray: ...
    def tie(self, a: np.ndarray, b: np.ndarray) -> None: ...
    def tie_all(self, labels: np.ndarray) -> None: ...
    def pin(self, labels: np.ndarray | None, reason: str) -> None: ...
    def param_slice(self, role: str, axis: int, labels: np.ndarray, kind: SliceKind) -> None: ...
    def param_slice_named(self, param: str, axis: int, labels: np.ndarray, kind: SliceKind) -> None: ...
    def constant_param(self, value: str) -> str | None: ...
    # NOTE: [Exactly zero where summed]: per channel, whether it is exactly zero once its group is zeroed
    def zeros(self, value: str) -> np.ndarray | None: ...
    def set_zeros(self, value: str, zeros: np.ndarray | None) -> None: ...
    def zeroable(self, param: str) -> bool: ...


@dataclass
class ResizeCtx:
    """What a resize rule sees: old and new shapes of the node's inputs and outputs, and for every
    input with a channel axis the boolean mask of channels that survive."""

    node: NodeBase
    old_inputs: list[Value]
    new_input_shapes: list[tuple[int, ...]]
    old_outputs: list[Value]
    new_output_shapes: list[tuple[int, ...]]
    input_keep: list[np.ndarray | None]


InferFn = Callable[[InferCtx], list[Value]]
CoupleFn = Callable[[CoupleCtx], None]
FlopsFn = Callable[["NodeBase", "Graph"], int]
ResizeFn = Callable[[ResizeCtx], "Attrs"]
VertexKind = Literal["stem", "accessory", "joint", "other"]
# Whether f(0) == 0 holds for one node (a pad whose fill value is not zero, a norm without an affine
# shift): for ops whose answer depends on attributes or params rather than on the op kind alone.
ZeroRule = Callable[["NodeBase", "Graph"], bool]


class _Unaudited:
    """The default of `OpDef.zero_preserving`: nobody decided, so the op counts as not zero-preserving
    (falsy, and `preserves_zero` answers False). A test lists every op still carrying it."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNAUDITED"


UNAUDITED: Any = _Unaudited()


@dataclass(frozen=True)
class OpDef:
    op: Op
    infer: InferFn
    couple: CoupleFn
    flops: FlopsFn
    kind: VertexKind
    resize: ResizeFn | None = None
    # f(0) == 0 elementwise with the node's params as they are (its bias, a norm's mean and shift, a
    # pad's fill value count): a bool for the op kind or a per-node rule. An op nobody audited is not.
    zero_preserving: bool | ZeroRule = UNAUDITED


OPDEFS: dict[Op, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    """Add an OpDef; registering one op twice is an import-time error, not a silent override."""
    if opdef.op in OPDEFS:
        raise RuntimeError(f"OpDef for '{opdef.op.value}' registered twice")
    OPDEFS[opdef.op] = opdef
    return opdef


def opdef(op: Op) -> OpDef:
    try:
        return OPDEFS[op]
    except KeyError:
        raise IRValidationError(f"no OpDef registered for op '{op.value}'") from None


def preserves_zero(node: NodeBase, graph: Graph) -> bool:
    """True when this node maps an all-zero input to an all-zero output (per element), its params
    left as they are."""
    rule = opdef(node.op).zero_preserving
    return bool(rule(node, graph) if callable(rule) else rule)


def zero_audited(op: Op) -> bool:
    """Whether the op's OpDef states `zero_preserving` rather than relying on the default."""
    return opdef(op).zero_preserving is not UNAUDITED


def has_param(role: str) -> Callable[[NodeBase, Graph], bool]:
    """A ZeroRule: zero-preserving exactly when the node has no `role` param (a bias, a shift)."""

    def rule(node: NodeBase, graph: Graph) -> bool:
        return role not in node.params

    rule.__name__ = f"without_{role}"
    return rule


# ---- zero tracking (NOTE: [Exactly zero where summed]) ----------------------------------------


def no_zeros(ctx: CoupleCtx, value: str) -> np.ndarray | None:
    """All channels of `value` marked not exactly zero (None when it carries no channels)."""
    labels = ctx.labels(value)
    return None if labels is None else np.zeros(len(labels), dtype=bool)


def zeroed_by(ctx: CoupleCtx, *roles: str) -> bool:
    """Whether zeroing the node's `out` slices of these roles (those it has) is possible: every one
    is trainable. The caller decides which roles make its output zero."""
    return all(ctx.zeroable(ctx.node.params[r]) for r in roles if r in ctx.node.params)


def require_zero(ctx: CoupleCtx, operands: list[tuple[np.ndarray | None, np.ndarray | None]], reason: str) -> None:
    """Channel j of these aligned operands is summed over by an op whose weights are not in the
    group: unless some operand's channel j is exactly zero once removed, pin channel j of all."""
    present = [(labels, zeros) for labels, zeros in operands if labels is not None]
    if not present:
        return
    size = len(present[0][0])
    safe = np.zeros(size, dtype=bool)
    for _, zeros in present:
        if zeros is not None:
            safe |= zeros
    if not safe.all():
        for labels, _ in present:
            ctx.pin(labels[~safe], reason)


def consume(ctx: CoupleCtx, role: str, axis: int, value: str) -> None:
    """Record the node's `role` param columns along `axis` as consuming the channels of `value`.
    A frozen weight cannot be zeroed, so there a removed channel must itself be exactly zero."""
    labels = ctx.labels(value)
    if labels is None:
        return
    ctx.param_slice(role, axis, labels, "in")
    param = ctx.node.params[role]
    if not ctx.zeroable(param):
        require_zero(ctx, [(labels, ctx.zeros(value))], f"channels summed by the frozen param '{param}'")


def carry_zeros(ctx: CoupleCtx, out: str, zeros: np.ndarray | None) -> None:
    """Set the output's flags to `zeros` when the node maps 0 to 0, else clear them."""
    if zeros is not None and preserves_zero(ctx.node, ctx.graph):
        ctx.set_zeros(out, zeros)
    else:
        ctx.set_zeros(out, no_zeros(ctx, out))


# ---- helpers shared by the family files ------------------------------------------------------


def numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def out_numel(node: NodeBase, graph: Graph, index: int = 0) -> int:
    return numel(graph.values[node.outputs[index]].shape)


def in_numel(node: NodeBase, graph: Graph, index: int = 0) -> int:
    return numel(graph.values[node.inputs[index]].shape)


def elementwise_flops(node: NodeBase, graph: Graph) -> int:
    return out_numel(node, graph)


def no_flops(node: NodeBase, graph: Graph) -> int:
    return 0


def passthrough(ctx: CoupleCtx) -> None:
    """Channel i of the (first) input is channel i of every output; it stays exactly zero when the
    node maps 0 to 0."""
    source = ctx.node.inputs[0] if ctx.node.inputs else None
    labels = None if source is None else ctx.labels(source)
    for out in ctx.node.outputs:
        ctx.set_labels(out, labels)
        carry_zeros(ctx, out, None if source is None else ctx.zeros(source))


def same_as_input(ctx: InferCtx) -> list[Value]:
    ctx.expect_inputs(1)
    src = ctx.inputs[0]
    return [Value(shape=src.shape, dtype=src.dtype, channel_axis=src.channel_axis)]


def axis_letter(param: Param, letter: str) -> int | None:
    """Index of the axis named `letter` in the param's axes string, or None."""
    if param.axes is None or letter not in param.axes:
        return None
    return param.axes.index(letter)


def channel_axis_for(rank: int, layout: str) -> int | None:
    """The channel axis a fresh value of `rank` has in a graph of the given layout."""
    if rank < 2:
        return None
    if rank == 2:
        return 1
    return 1 if layout == "channels_first" else rank - 1


def broadcast_shapes(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def factor_axes(in_shape: tuple[int, ...], in_axis: int, out_shape: tuple[int, ...]) -> list[int]:
    """The output axes a row-major reshape splits the channel axis into, outermost first.

    [B, T, 3E] -> [B, T, 3, H, Dh] splits E' = 3E into the factors (3, H, Dh) on axes 2, 3, 4. Empty when
    the channel axis is not split into whole output axes (kept, merged with others, or scattered).
    """
    before = math.prod(in_shape[:in_axis])
    through = before * in_shape[in_axis]
    size, start = 1, None
    for axis, dim in enumerate(out_shape):
        if size == before and start is None and dim != 1:
            start = axis
        size *= dim
        if start is not None and size == through:
            return [a for a in range(start, axis + 1) if out_shape[a] > 1]
        if size > through:
            break
    return []


def reshape_channel_map(
    in_shape: tuple[int, ...], in_axis: int, out_shape: tuple[int, ...], prefer: int | None = None
) -> tuple[int | None, np.ndarray | None]:
    """Where the channels of a value end up after a row-major reshape.

    Returns `(axis, ties)`: output axis `axis` carries channels, and output position j along it
    holds exactly the input channels `ties[j]` (a row of a 2-d array), which must go together.
    Two kinds of reading exist:
    - plain: one channel per position (`ties` has one column). A flatten of NCHW repeats each
      channel H*W times, so a channel may sit at several positions.
    - factor: the channel axis is split into several output axes (`factor_axes`) and `axis` is one
      of them; position j holds every channel whose digit on that axis is j. The outermost factor
      of [B, T, E] -> [B, T, H, Dh] gives attention heads (contiguous blocks); an inner factor of a
      packed projection [.., 3E] -> [.., 3, H, Dh] ties head h of q, k and v together.
    When the reshape scatters channels any other way there is no such axis: `(None, None)`.

    Shapes alone can be ambiguous: [1, 17, 8] -> [1, 17, 1, 8] is an unsqueeze (channels on axis 3)
    or the one head left of a head split (channels on axis 2). `prefer` is the axis the value
    already carries (a sub-network keeps its source graph's reading, and a frontend may choose an
    inner factor); it wins when it is a valid reading. Otherwise plain beats the outermost factor.
    """
    channels = in_shape[in_axis]
    shape = [1] * len(in_shape)
    shape[in_axis] = channels
    element_channel = np.broadcast_to(np.arange(channels).reshape(shape), in_shape).reshape(out_shape)

    def plain(axis: int) -> np.ndarray | None:
        rows = np.moveaxis(element_channel, axis, 0).reshape(out_shape[axis], -1)
        return rows[:, :1] if (rows == rows[:, :1]).all() else None

    factors = factor_axes(in_shape, in_axis, out_shape)

    def factor(axis: int) -> np.ndarray | None:
        if axis not in factors and not (out_shape[axis] == 1 and _within(axis, factors, out_shape)):
            return None
        span = [a for a in range(len(out_shape)) if a in factors or a == axis]
        digits = np.arange(channels).reshape([out_shape[a] for a in span])
        return np.moveaxis(digits, span.index(axis), 0).reshape(out_shape[axis], -1)

    if prefer is not None and prefer < len(out_shape):
        for reading in (plain, factor):
            ties = reading(prefer)
            if ties is not None:
                return prefer, ties
    candidates = [a for a in range(len(out_shape)) if plain(a) is not None]
    if channels == 1:
        candidates = [a for a in candidates if out_shape[a] > 1] or candidates
    candidates = [a for a in candidates if a > 0] or candidates
    if candidates:
        axis = max(candidates, key=lambda a: (out_shape[a], -a))
        return axis, plain(axis)
    if len(factors) > 1 and factors[0] > 0:
        return factors[0], factor(factors[0])
    return None, None


def _within(axis: int, factors: list[int], out_shape: tuple[int, ...]) -> bool:
    """A size-1 axis between or next to the factor axes (a head axis with one head left)."""
    return bool(factors) and factors[0] - 1 <= axis <= factors[-1] + 1
