"""Segments and removal structures: the erasing-mode search space (ASGNAS Alg. 2).

A *segment* is a maximal chain of nodes in which every node after the first has one data input
(constants do not count: a layer scale is part of its op) coming from the node before it, and every
node but the last has one consumer. A segment ends at a node with several consumers (included,
as its last node) and before a *joint*, a node with several data inputs; a joint is a segment of
its own. The segments and the data edges between them form the *segment graph*.

A segment is a *removal structure* when
- every consumer of its output is an additive joint: an `add` of two tensors whose other operand
  already has the add's full shape and dtype (so dropping this operand changes no shape), or a
  `concat` along the channel axis whose channels from this segment belong to removable channel
  groups, and
- zeroing the params it *owns* makes its output exactly zero, whatever its input. It owns a param
  when the param is trainable (an optimizer can move it to zero; running statistics and frozen
  weights cannot be) and no node outside the segment reads it (a shared conv or layer scale: zeroing
  it would change the rest of the network). Params it reads but does not own keep their values:
  after the last op that the owned params silence (a stem, an affine norm, a multiply by a param),
  every op must map zero to zero with those values (a frozen bias, a norm's running mean, a pad
  with ones, an added buffer all break it). A param the segment divides by is never owned: zeroing
  it would give 0 / 0 = NaN, while left as it is 0 / d = 0. It goes with the segment when the
  segment is removed (a `stat` slice, as prune mode slices a per-channel divisor).

Validity of a set of removed segments (stricter than the paper's "an input→output path exists"):
every graph output stays reachable from the inputs, and every surviving segment that still reaches
an output is reachable from an input. The second clause keeps the sub-network exact: a segment cut
off from every input would feed constants (biases) into the outputs, which removing it would drop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pydantic import BaseModel, Field, PrivateAttr

from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import STEM_OPS, Op
from asgnas_ir.opdefs import preserves_zero
from asgnas_ir.passes.analysis.dependency_graph import DependencyGraph

_ZEROING_NORMS = {Op.BATCH_NORM, Op.INSTANCE_NORM, Op.GROUP_NORM, Op.LAYER_NORM}


class Segment(BaseModel):
    id: int
    nodes: list[str]
    successors: list[int] = Field(default_factory=list)
    is_joint: bool = False
    reads_input: bool = False
    writes_output: bool = False


class SegmentGraph(BaseModel):
    """The segments of a graph and the edges between them, with the validity rule of the module doc."""

    segments: list[Segment]
    _constant_cache: set[int] | None = PrivateAttr(default=None)
    _adjacency: tuple[dict[int, list[int]], dict[int, list[int]]] | None = PrivateAttr(default=None)

    def _edges(self) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        """(successors, predecessors) by segment id. Every selector asks for reachability once per
        candidate, so the lists are built once rather than a graph object per question."""
        adjacency = getattr(self, "_adjacency", None)  # also missing on a graph unpickled from before the cache
        if adjacency is None:
            succ: dict[int, list[int]] = defaultdict(list)
            pred: dict[int, list[int]] = defaultdict(list)
            for s in self.segments:
                for t in dict.fromkeys(s.successors):
                    succ[s.id].append(t)
                    pred[t].append(s.id)
            adjacency = self._adjacency = (dict(succ), dict(pred))
        return adjacency

    @staticmethod
    def _reach(starts: list[int], edges: dict[int, list[int]], removed: set[int]) -> set[int]:
        seen = set(starts)
        stack = list(starts)
        while stack:
            for t in edges.get(stack.pop(), ()):
                if t not in seen and t not in removed:
                    seen.add(t)
                    stack.append(t)
        return seen

    def surviving(self, removed: Iterable[int]) -> tuple[set[int], set[int]]:
        """(reachable from an input, reaching an output) once `removed` segments are gone."""
        removed = set(removed)
        succ, pred = self._edges()
        sources = [s.id for s in self.segments if s.reads_input and s.id not in removed]
        sinks = [s.id for s in self.segments if s.writes_output and s.id not in removed]
        return self._reach(sources, succ, removed), self._reach(sinks, pred, removed)

    def is_valid(self, removed: Iterable[int]) -> bool:
        return self.removal_state(removed)[0]

    def removal_state(self, removed: Iterable[int]) -> tuple[bool, set[int]]:
        """(`is_valid(removed)`, the segments still reaching an output): one reachability pass for
        callers that need both (the concat rule counts the others as gone)."""
        removed = set(removed)
        forward, backward = self.surviving(removed)
        outputs = {s.id for s in self.segments if s.writes_output}
        if outputs & removed or not outputs <= forward:
            return False, backward
        # segments no input reaches even in the whole network compute from constants only (a class
        # token expanded to the batch, register tokens concatenated to it): they need no input to be
        # alive, so their lack of one is no broken path
        return backward <= forward | self._constant_only(), backward

    def _constant_only(self) -> set[int]:
        if self._constant_cache is None:
            reached, _ = self.surviving(())
            self._constant_cache = {s.id for s in self.segments} - reached
        return self._constant_cache

    def dead_after(self, removed: Iterable[int]) -> set[int]:
        """Segments that no longer reach an output once `removed` are gone (dead code)."""
        removed = set(removed)
        _, backward = self.surviving(removed)
        return {s.id for s in self.segments} - backward - removed


def _data_inputs(graph: Graph, node: NodeBase) -> list[str]:
    out = []
    for name in node.inputs:
        producer = graph.producer(name)
        if producer is None or producer.op is not Op.CONSTANT:
            out.append(name)
    return out


def build_segments(graph: Graph) -> tuple[SegmentGraph, dict[str, int]]:
    """The segment graph and the segment id of every (non-constant) node."""
    consumers: dict[str, list[NodeBase]] = defaultdict(list)
    for node in graph.nodes:
        if node.op is Op.CONSTANT:
            continue
        for name in _data_inputs(graph, node):
            consumers[name].append(node)
    outputs = set(graph.outputs)
    inputs = set(graph.inputs)
    segment_of: dict[str, int] = {}
    segments: list[Segment] = []
    for node in graph.nodes:
        if node.op is Op.CONSTANT:
            continue
        data = _data_inputs(graph, node)
        joint = len(data) > 1
        previous = graph.producer(data[0]) if len(data) == 1 else None
        extend = (
            not joint
            and previous is not None
            and previous.op is not Op.CONSTANT
            and not segments[segment_of[previous.id]].is_joint
            and segments[segment_of[previous.id]].nodes[-1] == previous.id
            and len(previous.outputs) == 1
            and len(consumers[previous.outputs[0]]) == 1
            and previous.outputs[0] not in outputs
        )
        if extend:
            seg = segments[segment_of[previous.id]]  # type: ignore[union-attr]
            seg.nodes.append(node.id)
        else:
            seg = Segment(id=len(segments), nodes=[node.id], is_joint=joint)
            segments.append(seg)
        segment_of[node.id] = seg.id
        if any(name in inputs for name in data):
            seg.reads_input = True
        if any(out in outputs for out in node.outputs):
            seg.writes_output = True
    for seg in segments:
        last = graph.node(seg.nodes[-1])
        successors: list[int] = []
        for out in last.outputs:
            for consumer in consumers[out]:
                target = segment_of[consumer.id]
                if target not in successors:
                    successors.append(target)
        seg.successors = successors
    return SegmentGraph(segments=segments), segment_of


_GRAPH_OUTPUT = "<graph output>"  # a reader no segment contains: a param the model returns as is


def param_readers(graph: Graph) -> dict[str, set[str]]:
    """The non-constant nodes that read each param, directly or through a constant node."""
    readers: dict[str, set[str]] = defaultdict(set)
    outputs = set(graph.outputs)
    for node in graph.nodes:
        if node.op is Op.CONSTANT:
            for user in graph.users(node.outputs[0]):
                readers[node.params["value"]].add(user.id)
            if node.outputs[0] in outputs:
                readers[node.params["value"]].add(_GRAPH_OUTPUT)
        else:
            for name in node.params.values():
                readers[name].add(node.id)
    return readers


def owned_params(graph: Graph, nodes: Iterable[str], readers: dict[str, set[str]] | None = None) -> set[str]:
    """The params of the chain `nodes` that zeroing it may set to zero: trainable ones that no node
    outside the chain reads and that no node of the chain divides by."""
    inside = set(nodes)
    readers = param_readers(graph) if readers is None else readers
    divisors = {p for node_id in inside for p in divisor_params(graph, graph.node(node_id))}
    return {
        p for p in segment_params(graph, inside)
        if graph.params[p].trainable and readers[p] <= inside and p not in divisors
    }


def divisor_params(graph: Graph, node: NodeBase) -> list[str]:
    """The params `node` divides by through constant inputs (`x / scale`, `1 / scale` reversed).
    They are never zeroed: x / 0 is infinite or NaN, not a removed value."""
    if node.op is not Op.DIV:
        return []
    reverse = bool(getattr(node.attrs, "reverse", False))
    out = []
    for position, name in enumerate(node.inputs):
        producer = graph.producer(name)
        if producer is not None and producer.op is Op.CONSTANT and (position == 1 or reverse):
            out.append(producer.params["value"])
    return out


def _constant_operands(graph: Graph, node: NodeBase) -> list[str]:
    """The params this node reads through constant inputs (a layer scale, an added bias)."""
    out = []
    for name in node.inputs:
        producer = graph.producer(name)
        if producer is not None and producer.op is Op.CONSTANT:
            out.append(producer.params["value"])
    return out


def _zeroes_output(graph: Graph, node: NodeBase, owned: set[str]) -> bool:
    """True when zeroing the `owned` params makes this node's output exactly zero, whatever its input."""
    if node.op in STEM_OPS:
        return "weight" in node.params and all(p in owned for p in node.params.values())
    if node.op in _ZEROING_NORMS:
        return "weight" in node.params and "bias" in node.params and {node.params["weight"], node.params["bias"]} <= owned
    if node.op is Op.MUL:
        return any(p in owned for p in _constant_operands(graph, node))
    return False


def _keeps_zero(graph: Graph, node: NodeBase, owned: set[str]) -> bool:
    """True when an all-zero input gives an all-zero output once the `owned` params are zeroed (the
    others keep whatever value they have)."""
    if node.op in (Op.ADD, Op.SUB) and len(_data_inputs(graph, node)) == 1:
        # x + c: zero only when c is zero, which holds for a zeroed param and a zero scalar alone
        scalar = getattr(node.attrs, "scalar", None)
        return scalar in (None, 0.0) and all(p in owned for p in _constant_operands(graph, node))
    if node.op is Op.DIV and node.attrs.scalar is None and not node.attrs.reverse:  # type: ignore[attr-defined]
        # 0 / d = 0 for a constant divisor left as it is; a zeroed one would give 0 / 0 = NaN
        numerator = graph.producer(node.inputs[0])
        divisors = divisor_params(graph, node)
        numerator_is_data = numerator is None or numerator.op is not Op.CONSTANT
        return numerator_is_data and len(divisors) == 1 and not set(divisors) & owned
    if node.op in (Op.CONV, Op.CONV_TRANSPOSE, Op.LINEAR) and set(node.params) <= {"weight", "bias"}:
        # W * 0 = 0 whatever W; the bias is zero only when it is zeroed
        return "bias" not in node.params or node.params["bias"] in owned
    if node.op in _ZEROING_NORMS:
        if "running_mean" in node.params:
            # (0 - running_mean) * scale is not zero and statistics are never zeroed: only a zeroed
            # scale and shift (`_zeroes_output`) silence it
            return False
        # normalized by its own statistics a zero input stays zero, leaving the shift
        return "bias" not in node.params or node.params["bias"] in owned
    return preserves_zero(node, graph)


def segment_zero_invariant(graph: Graph, nodes: list[str], owned: set[str] | None = None) -> bool:
    """Zeroing the `owned` params of the chain `nodes` (default: every param the chain owns, see
    `owned_params`) makes its output exactly zero, whatever its input."""
    owned = owned_params(graph, nodes) if owned is None else owned
    zeroed = False
    for node_id in nodes:
        node = graph.node(node_id)
        if _zeroes_output(graph, node, owned):
            zeroed = True
        elif zeroed and not _keeps_zero(graph, node, owned):
            zeroed = False
    return zeroed


def segment_params(graph: Graph, nodes: Iterable[str]) -> list[str]:
    names: list[str] = []
    for node_id in nodes:
        node = graph.node(node_id)
        candidates = list(node.params.values())
        for name in node.inputs:  # per-channel constants (layer scale) read by this node
            producer = graph.producer(name)
            if producer is not None and producer.op is Op.CONSTANT:
                candidates.append(producer.params["value"])
        names.extend(p for p in candidates if p not in names)
    return names


def removal_consumers_ok(graph: Graph, deps: DependencyGraph, segments: SegmentGraph, seg: Segment) -> bool:
    """Every consumer of the segment's output is an add of two tensors or a channel concat whose
    channels from this segment are removable channel groups."""
    if seg.writes_output or not seg.successors:
        return False
    last = graph.node(seg.nodes[-1])
    if len(last.outputs) != 1:
        return False
    out = last.outputs[0]
    for consumer in graph.users(out):
        if consumer.op is Op.ADD and len(_data_inputs(graph, consumer)) == 2 and consumer.attrs.scalar is None:  # type: ignore[attr-defined]
            if consumer.inputs[0] == consumer.inputs[1] or not _survivor_fills_add(graph, consumer, out):
                return False
            continue
        if consumer.op is Op.CONCAT and consumer.attrs.axis == graph.values[out].channel_axis:  # type: ignore[attr-defined]
            groups = deps.value_groups.get(out)
            if groups is None or min(groups) < 0 or _empties_a_value(graph, deps, seg, set(groups)):
                return False
            continue
        return False
    return True


def _survivor_fills_add(graph: Graph, add: NodeBase, removed: str) -> bool:
    """Does the add's other operand alone have the add's type (shape, dtype, channel axis)? Only then
    can the add become that operand when `removed` goes (`head(gap(y) + c1(y))` would turn 1x1
    without c1, and the sub-network's consumers would no longer fit)."""
    result = graph.values[add.outputs[0]]
    other = graph.values[next(name for name in add.inputs if name != removed)]
    return (other.shape, other.dtype, other.channel_axis) == (result.shape, result.dtype, result.channel_axis)


def _empties_a_value(graph: Graph, deps: DependencyGraph, seg: Segment, removed_groups: set[int]) -> bool:
    """Would slicing these channels out leave some value outside the segment without channels?
    (A concat piece that is later split off whole, for example.)"""
    inside = {o for node_id in seg.nodes for o in graph.node(node_id).outputs}
    for name, groups in deps.value_groups.items():
        if name not in inside and groups and removed_groups.issuperset(groups):
            return True
    return False
