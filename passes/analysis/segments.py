"""Segments and removal structures: the erasing-mode search space (ASGNAS Alg. 2).

A *segment* is a maximal chain of nodes in which every node after the first has one data input
(constants do not count: a layer scale is part of its op) coming from the node before it, and every
node but the last has one consumer. A segment ends at a node with several consumers (included,
as its last node) and before a *joint*, a node with several data inputs; a joint is a segment of
its own. The segments and the data edges between them form the *segment graph*.

A segment is a *removal structure* when
- it holds trainable params,
- every consumer of its output is an additive joint: an `add` of two tensors, or a `concat` along
  the channel axis whose channels from this segment belong to removable channel groups, and
- zeroing its params makes its output exactly zero: after the last op that zeroed params silence
  (a stem, an affine norm, a multiply by a param), every op is zero-preserving.

Validity of a set of removed segments (stricter than the paper's "an input→output path exists"):
every graph output stays reachable from the inputs, and every surviving segment that still reaches
an output is reachable from an input. The second clause keeps the sub-network exact: a segment cut
off from every input would feed constants (biases) into the outputs, which removing it would drop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import networkx as nx
from pydantic import BaseModel, Field

from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import STEM_OPS, Op
from asgnas_ir.opdefs import opdef, preserves_zero
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

    def _graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(s.id for s in self.segments)
        g.add_edges_from((s.id, t) for s in self.segments for t in s.successors)
        return g

    def surviving(self, removed: Iterable[int]) -> tuple[set[int], set[int]]:
        """(reachable from an input, reaching an output) once `removed` segments are gone."""
        removed = set(removed)
        g = self._graph()
        g.remove_nodes_from(removed)
        sources = [s.id for s in self.segments if s.reads_input and s.id not in removed]
        sinks = [s.id for s in self.segments if s.writes_output and s.id not in removed]
        forward: set[int] = set(sources)
        for s in sources:
            forward |= nx.descendants(g, s)
        backward: set[int] = set(sinks)
        for s in sinks:
            backward |= nx.ancestors(g, s)
        return forward, backward

    def is_valid(self, removed: Iterable[int]) -> bool:
        removed = set(removed)
        forward, backward = self.surviving(removed)
        outputs = {s.id for s in self.segments if s.writes_output}
        if outputs & removed or not outputs <= forward:
            return False
        return backward <= forward

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


def _zeroes_output(graph: Graph, node: NodeBase) -> bool:
    """True when zeroing this node's params makes its output exactly zero, whatever its input."""
    if node.op in STEM_OPS:
        return True
    if node.op in _ZEROING_NORMS:
        return "weight" in node.params and "bias" in node.params
    if node.op is Op.MUL:
        return any(
            graph.producer(name) is not None and graph.producer(name).op is Op.CONSTANT  # type: ignore[union-attr]
            for name in node.inputs
        )
    return False


def segment_zero_invariant(graph: Graph, nodes: list[str]) -> bool:
    """Zeroing every param of the chain `nodes` makes its output exactly zero."""
    zeroed = False
    for node_id in nodes:
        node = graph.node(node_id)
        if _zeroes_output(graph, node):
            zeroed = True
        elif not preserves_zero(node, graph) or (node.op in (Op.ADD, Op.SUB) and _adds_nonzero(graph, node)):
            zeroed = False
    return zeroed


def _adds_nonzero(graph: Graph, node: NodeBase) -> bool:
    scalar = getattr(node.attrs, "scalar", None)
    return scalar not in (None, 0.0)


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
            if consumer.inputs[0] == consumer.inputs[1]:
                return False
            continue
        if consumer.op is Op.CONCAT and consumer.attrs.axis == graph.values[out].channel_axis:  # type: ignore[attr-defined]
            groups = deps.value_groups.get(out)
            if groups is None or min(groups) < 0 or _empties_a_value(graph, deps, seg, set(groups)):
                return False
            continue
        return False
    return True


def _empties_a_value(graph: Graph, deps: DependencyGraph, seg: Segment, removed_groups: set[int]) -> bool:
    """Would slicing these channels out leave some value outside the segment without channels?
    (A concat piece that is later split off whole, for example.)"""
    inside = {o for node_id in seg.nodes for o in graph.node(node_id).outputs}
    for name, groups in deps.value_groups.items():
        if name not in inside and groups and removed_groups.issuperset(groups):
            return True
    return False
