"""dependency-graph: the channel groups of a graph (what prune mode may remove).

Algorithm (see NOTE: [Coupling by labels] in `asgnas_ir.opdefs._opdef`):
1. Give every channel of every graph input a fresh, pinned label (the input shape is fixed).
2. Walk the nodes in order; each op's coupling rule labels its outputs, ties labels, pins labels
   and records which param indices belong to which label.
3. A param used by several nodes (weight sharing) ties the labels recorded at the same index.
4. Pin the labels of the graph outputs (their shape is fixed too).
5. Connected components of the tie graph are the candidate groups; a component with a pinned
   label, or without any param slice to zero, is not removable.

Invariant: every group is zero-invariant. With all its slices zeroed, removing its channels
from every value and param leaves every graph output unchanged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from asgnas_ir._gc import gc_paused
from asgnas_ir.errors import IRValidationError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.opdefs import opdef
from asgnas_ir.opdefs._opdef import SliceKind
from asgnas_ir.pass_manager import Pass, analysis, register_pass


@dataclass(slots=True)
class Slice:
    """Indices `indices` along `axis` of `param`. `kind` says why: `out` makes the channel (a
    conv's filters, a norm's scale), `in` consumes it (a conv's input columns), `stat` is a running
    statistic that is sliced but never needs to be zero.

    NOTE: a plain slotted dataclass, not a pydantic model: a large network has 10^5 slices and
    building them must stay cheap. pydantic still validates and serialises it inside the models.
    """

    param: str
    axis: int
    indices: list[int]
    kind: SliceKind


def merge_slices(slices: Iterable[Slice], *, include_stats: bool = False) -> dict[tuple[str, int], list[int]]:
    """All indices to zero per (param, axis), so callers touch each tensor once."""
    merged: dict[tuple[str, int], list[int]] = defaultdict(list)
    for s in slices:
        if include_stats or s.kind != "stat":
            merged[(s.param, s.axis)].extend(s.indices)
    return dict(merged)


@dataclass(slots=True)
class ChannelGroup:
    """One removable group: the slices to zero together, the nodes they belong to, and what they cost.

    `channels` is how many channels of the widest value the group holds. A slotted dataclass like
    `Slice`, for the same reason: one is built per channel of a large network (26,496 for convnext_tiny).
    """

    id: int
    kind: Literal["channel", "operator"] = "channel"
    slices: list[Slice] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    parent: int | None = None
    flops: int = 0
    params: int = 0
    channels: int = 0


class DependencyGraph(BaseModel):
    """Channel groups plus, for the subnet pass, which group every channel belongs to (-1: pinned)."""

    groups: list[ChannelGroup]
    value_groups: dict[str, list[int]]
    param_groups: dict[str, dict[int, list[int]]]
    pinned_reasons: dict[str, int]


class _Labeller:
    """The CoupleCtx the op rules write into."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.node: NodeBase = None  # type: ignore[assignment]
        self.count = 0
        self.edges: list[tuple[np.ndarray, np.ndarray]] = []
        self.pinned: list[np.ndarray] = []
        self.pin_reasons: list[str] = []
        self.value_labels: dict[str, np.ndarray | None] = {}
        self.records: dict[tuple[str, int], list[tuple[np.ndarray, SliceKind, str]]] = defaultdict(list)

    def labels(self, value: str) -> np.ndarray | None:
        return self.value_labels.get(value)

    def set_labels(self, value: str, labels: np.ndarray | None) -> None:
        meta = self.graph.values[value]
        if labels is not None:
            expected = None if meta.channel_axis is None else meta.shape[meta.channel_axis]
            if expected != len(labels):
                raise IRValidationError(
                    f"coupling rule of {self.node.op.value} gave {len(labels)} channel labels to "
                    f"'%{value}' whose channel axis holds {expected}",
                    node=self.node.id, source=self.node.source,
                )
        self.value_labels[value] = labels

    def fresh(self, count: int) -> np.ndarray:
        labels = np.arange(self.count, self.count + count, dtype=np.int64)
        self.count += count
        return labels

    def tie(self, a: np.ndarray, b: np.ndarray) -> None:
        if len(a) != len(b):
            raise IRValidationError(f"cannot tie {len(a)} channels to {len(b)}", node=self.node.id, source=self.node.source)
        self.edges.append((a, b))

    def tie_all(self, labels: np.ndarray) -> None:
        if len(labels) > 1:
            self.edges.append((np.full(len(labels) - 1, labels[0]), labels[1:]))

    def pin(self, labels: np.ndarray | None, reason: str) -> None:
        if labels is not None and len(labels):
            self.pinned.append(labels)
            self.pin_reasons.append(reason)

    def param_slice(self, role: str, axis: int, labels: np.ndarray, kind: SliceKind) -> None:
        self.param_slice_named(self.node.params[role], axis, labels, kind)

    def param_slice_named(self, param: str, axis: int, labels: np.ndarray, kind: SliceKind) -> None:
        size = self.graph.params[param].shape[axis]
        if size != len(labels):
            raise IRValidationError(
                f"param '@{param}' axis {axis} has {size} entries but {len(labels)} channels reach it",
                node=self.node.id, source=self.node.source,
            )
        self.records[(param, axis)].append((labels, kind, self.node.id))

    def constant_param(self, value: str) -> str | None:
        producer = self.graph.producer(value)
        if producer is not None and producer.op.value == "constant":
            return producer.params["value"]
        return None


def _label_graph(graph: Graph) -> _Labeller:
    ctx = _Labeller(graph)
    for name in graph.inputs:
        meta = graph.values[name]
        if meta.channel_axis is not None:
            labels = ctx.fresh(meta.shape[meta.channel_axis])
            ctx.pin(labels, "graph input")
            ctx.value_labels[name] = labels
        else:
            ctx.value_labels[name] = None
    for node in graph.nodes:
        ctx.node = node
        opdef(node.op).couple(ctx)
    for (_, _), records in ctx.records.items():
        first = records[0][0]
        for labels, _, _ in records[1:]:
            ctx.edges.append((first, labels))  # weight sharing: the same index is the same channel
    for name in graph.outputs:
        ctx.pin(ctx.value_labels.get(name), "graph output")
    return ctx


def _components(ctx: _Labeller) -> np.ndarray:
    if not ctx.edges:
        return np.arange(ctx.count)
    rows = np.concatenate([a for a, _ in ctx.edges])
    cols = np.concatenate([b for _, b in ctx.edges])
    matrix = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(ctx.count, ctx.count))
    _, component = connected_components(matrix, directed=False)
    return component


def _group_indices(comps: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """The distinct components in `comps`, how often each occurs, and the indices holding each
    (one sort, no quadratic scan)."""
    order = np.argsort(comps, kind="stable")
    sorted_comps = comps[order]
    starts = np.flatnonzero(np.r_[True, sorted_comps[1:] != sorted_comps[:-1]])
    ends = np.r_[starts[1:], len(comps)]
    order_list = order.tolist()
    indices = [order_list[b:e] for b, e in zip(starts.tolist(), ends.tolist(), strict=True)]
    return sorted_comps[starts], ends - starts, indices


def build_dependency_graph(graph: Graph) -> DependencyGraph:
    with gc_paused():  # also when a pass calls it directly (NOTE: [Why the GC is paused])
        return _build_dependency_graph(graph)


def _build_dependency_graph(graph: Graph) -> DependencyGraph:
    ctx = _label_graph(graph)
    component = _components(ctx)
    n_components = int(component.max(initial=-1)) + 1
    pinned = np.zeros(n_components, dtype=bool)
    if ctx.pinned:
        pinned[component[np.concatenate(ctx.pinned)]] = True

    weight_flops: dict[str, int] = defaultdict(int)
    for node in graph.nodes:
        if "weight" in node.params:
            weight_flops[node.params["weight"]] += opdef(node.op).flops(node, graph)

    # NOTE: [Per-channel work stays in numpy] Each (param, axis) record splits into one slice per
    # component it touches. The slices themselves are Python objects, but a group's params, FLOPs,
    # width and node list are summed per record over all its components at once (a slice's share
    # of a param is its index count over the axis length), so no per-slice arithmetic runs in Python.
    slices: dict[int, list[Slice]] = defaultdict(list)
    params = np.zeros(n_components, dtype=np.int64)
    flops = np.zeros(n_components, dtype=np.int64)
    channels = np.zeros(n_components, dtype=np.int64)
    makes_channels = np.zeros(n_components, dtype=bool)
    touched_by: list[np.ndarray] = []
    record_nodes: list[list[str]] = []
    axis_components: dict[tuple[str, int], np.ndarray] = {}
    for (param_name, axis), records in ctx.records.items():
        labels, kind, _ = records[0]
        comps = component[labels]
        axis_components[(param_name, axis)] = comps
        unique, counts, index_lists = _group_indices(comps)
        for comp, indices in zip(unique.tolist(), index_lists, strict=True):
            slices[comp].append(Slice(param_name, axis, indices, kind))
        param = graph.params[param_name]
        share = counts / param.shape[axis]
        if kind != "stat":
            params[unique] += np.rint(param.numel * share).astype(np.int64)
        flops[unique] += np.rint(weight_flops.get(param_name, 0) * share).astype(np.int64)
        np.maximum.at(channels, unique, counts)
        if any(k == "out" for _, k, _ in records):
            makes_channels[unique] = True
        touched_by.append(unique)
        record_nodes.append(list(dict.fromkeys(node_id for _, _, node_id in records)))

    _, first_atom = np.unique(component, return_index=True)
    removable = sorted(
        (comp for comp in slices if makes_channels[comp] and not pinned[comp]), key=lambda comp: int(first_atom[comp])
    )
    lookup = np.full(n_components, -1, dtype=np.int64)
    lookup[np.asarray(removable, dtype=np.int64)] = np.arange(len(removable))

    # A group's nodes: those of every record touching it, in record order. Components touched by
    # the same records (a layer's channels all are) share one ordered list: a signature id per
    # component is refined record by record, so equal ids mean equal record sequences.
    signature = np.zeros(n_components, dtype=np.int64)
    signature_records: list[tuple[int, ...]] = [()]
    for record, unique in enumerate(touched_by):
        old_ids, inverse = np.unique(signature[unique], return_inverse=True)
        first_new = len(signature_records)
        signature_records.extend(signature_records[old] + (record,) for old in old_ids.tolist())
        signature[unique] = first_new + inverse
    signature_nodes: dict[int, list[str]] = {}
    signature_list, params_list, flops_list, channels_list = signature.tolist(), params.tolist(), flops.tolist(), channels.tolist()
    groups = []
    for gid, comp in enumerate(removable):
        sig = signature_list[comp]
        nodes = signature_nodes.get(sig)
        if nodes is None:
            nodes = signature_nodes[sig] = list(dict.fromkeys(n for r in signature_records[sig] for n in record_nodes[r]))
        groups.append(ChannelGroup(gid, "channel", slices[comp], list(nodes), None, flops_list[comp], params_list[comp], channels_list[comp]))

    value_groups = {
        name: lookup[component[labels]].tolist() for name, labels in ctx.value_labels.items() if labels is not None
    }
    param_groups: dict[str, dict[int, list[int]]] = defaultdict(dict)
    for (param_name, axis), comps in axis_components.items():
        param_groups[param_name][axis] = lookup[comps].tolist()
    return DependencyGraph.model_construct(
        groups=groups,
        value_groups=value_groups,
        param_groups=dict(param_groups),
        pinned_reasons=dict(Counter(ctx.pin_reasons)),
    )


@register_pass
class DependencyGraphPass(Pass):
    name = "dependency-graph"
    description = "Channel groups: which channels of which params must be removed together (zero-invariant groups)."
    requires = ("verify",)

    def run(self, graph: Graph) -> DependencyGraph:
        return build_dependency_graph(graph)


def dependency_graph(graph: Graph) -> DependencyGraph:
    return analysis("dependency-graph", graph)
