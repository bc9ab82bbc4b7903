"""dependency-graph: the channel groups of a graph (what prune mode may remove).

Algorithm (see NOTE: [Coupling by labels] in `asgnas_ir.opdefs._opdef`):
1. Give every channel of every graph input a fresh, pinned label (the input shape is fixed).
2. Walk the nodes in order; each op's coupling rule labels its outputs, ties labels, pins labels
   and records which param indices belong to which label.
3. A param used by several nodes (weight sharing) ties the labels recorded at the same index.
   Beside the labels, every channel of every value carries whether it is exactly zero once its
   group is zeroed; a sum over channels whose weights are not in the group (a matmul of two
   activations, a frozen layer) pins what is not (NOTE: [Exactly zero where summed]).
4. Pin the labels of the graph outputs (their shape is fixed too).
5. Connected components of the tie graph are the candidate groups; a component with a pinned
   label, or without any param slice to zero, is not removable.

Invariant: every group is zero-invariant. With all its slices zeroed, removing its channels
from every value and param leaves every graph output unchanged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
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


class _Deferred:
    """The one slot of `ChannelGroup` that is not a field: where its deferred fields come from."""

    __slots__ = ("_source",)


@dataclass(slots=True)
class ChannelGroup(_Deferred):
    """One removable group: the slices to zero together, the nodes they belong to, and what they cost.

    `channels` is how many channels of the widest value the group holds. A slotted dataclass like
    `Slice`, for the same reason: one is built per channel of a large network (26,496 for convnext_tiny).
    The dependency graph leaves `slices` and `nodes` unset until first read (NOTE: [Lazy slices]);
    a read always returns the same list, equal to what eager construction gave, and every dataclass,
    pydantic, copy and pickle path reads the fields through it.
    """

    id: int
    kind: Literal["channel", "operator"] = "channel"
    slices: list[Slice] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    parent: int | None = None
    flops: int = 0
    params: int = 0
    channels: int = 0


def _deferred_field(name: str) -> property:
    """A property over the slot `name` of ChannelGroup that, while the slot is unset, fills it from
    `self._source` (`(table, component)`, see `_SliceTable`). Construction sets every slot, so
    only `_SliceTable.group` makes a group whose deferred fields are unset."""
    slot = ChannelGroup.__dict__[name]
    build = getattr(_SliceTable, name)

    def get(self: ChannelGroup) -> list:
        try:
            return slot.__get__(self, ChannelGroup)
        except AttributeError:
            table, component = self._source
            value = build(table, component)
            slot.__set__(self, value)
            return value

    return property(get, slot.__set__, doc=slot.__doc__)


class _SliceTable:
    """The (param, axis) records of one dependency graph, split by component as flat numpy runs.

    A *run* is the indices of one record that belong to one component: runs are sorted by (record,
    component) and `order[run_edges[k]:run_edges[k + 1]]` are run k's positions in the concatenated
    records, ascending. Per-component totals are computed from the runs in numpy; `Slice` objects
    and node lists are built only when a group's field is read, one whole record's slices at a time
    (whoever reads one group of a layer usually reads its neighbours too).

    Invariant: `slices(c)` lists one slice per record touching component c, in record order, each
    with that record's param, axis, first kind and the indices of c ascending; `nodes(c)` is the
    node ids of those records in the same order, without repeats.
    """

    def __init__(self, ctx: _Labeller, component: np.ndarray, n_components: int) -> None:
        keys = list(ctx.records)
        entries = list(ctx.records.values())
        self.meta = [(param, axis, records[0][1]) for (param, axis), records in zip(keys, entries, strict=True)]
        self.record_nodes = [list(dict.fromkeys(node_id for _, _, node_id in records)) for records in entries]
        n_records = len(keys)
        labels = [records[0][0] for records in entries]
        lengths = np.fromiter(map(len, labels), dtype=np.int64, count=n_records)
        self.offsets = np.zeros(n_records + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.components = component[np.concatenate(labels)] if labels else np.zeros(0, dtype=np.int64)
        key = np.repeat(np.arange(n_records, dtype=np.int64), lengths) * max(n_components, 1) + self.components
        self.order = np.argsort(key, kind="stable")
        sorted_key = key[self.order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if len(key) else np.zeros(0, np.int64)
        self.run_edges = np.r_[starts, len(key)]
        self.run_record, self.run_component = np.divmod(sorted_key[starts], max(n_components, 1))
        self.run_count = np.diff(self.run_edges)
        self.record_runs = np.searchsorted(self.run_record, np.arange(n_records + 1)).tolist()
        by_component = np.argsort(self.run_component, kind="stable")  # stable: record order within a component
        self.component_records = self.run_record[by_component]
        self.component_edges = np.searchsorted(self.run_component[by_component], np.arange(n_components + 1)).tolist()
        self._built: list[dict[int, Slice] | None] = [None] * n_records

    def axis_components(self) -> dict[tuple[str, int], np.ndarray]:
        """The component of every index of every record (the subnet pass's channel map)."""
        return {
            (param, axis): self.components[self.offsets[r] : self.offsets[r + 1]]
            for r, (param, axis, _) in enumerate(self.meta)
        }

    def group(self, gid: int, component: int, flops: int, params: int, channels: int) -> ChannelGroup:
        group = ChannelGroup.__new__(ChannelGroup)
        group.id, group.kind, group.parent = gid, "channel", None
        group.flops, group.params, group.channels = flops, params, channels
        group._source = (self, component)
        return group

    def _records_of(self, component: int) -> list[int]:
        return self.component_records[self.component_edges[component] : self.component_edges[component + 1]].tolist()

    def slices(self, component: int) -> list[Slice]:
        return [self._record(r)[component] for r in self._records_of(component)]

    def nodes(self, component: int) -> list[str]:
        return list(dict.fromkeys(n for r in self._records_of(component) for n in self.record_nodes[r]))

    def _record(self, r: int) -> dict[int, Slice]:
        built = self._built[r]
        if built is None:
            param, axis, kind = self.meta[r]
            first, last = self.record_runs[r], self.record_runs[r + 1]
            offset = self.offsets[r]
            order = (self.order[offset : self.offsets[r + 1]] - offset).tolist()
            edges = (self.run_edges[first : last + 1] - offset).tolist()
            built = self._built[r] = {
                comp: Slice(param, axis, order[b:e], kind)
                for comp, b, e in zip(self.run_component[first:last].tolist(), edges[:-1], edges[1:], strict=True)
            }
        return built


# NOTE: [Lazy slices] A large network has 10^5 slices (221,299 for densenet121) and building them
# was most of the analysis time, while a search space is often only counted, costed, saved or
# sampled from, and a sub-network reads the slices of the groups it removes. So the dependency
# graph keeps each record's split in numpy and a group builds `slices` and `nodes` on first read.
ChannelGroup.slices = _deferred_field("slices")  # type: ignore[assignment,method-assign]
ChannelGroup.nodes = _deferred_field("nodes")  # type: ignore[assignment,method-assign]


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
        self.value_zeros: dict[str, np.ndarray | None] = {}
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

    def zeros(self, value: str) -> np.ndarray | None:
        labels = self.value_labels.get(value)
        if labels is None:
            return None
        zeros = self.value_zeros.get(value)
        return np.zeros(len(labels), dtype=bool) if zeros is None else zeros

    def set_zeros(self, value: str, zeros: np.ndarray | None) -> None:
        labels = self.value_labels.get(value)
        if zeros is not None and (labels is None or len(zeros) != len(labels)):
            raise IRValidationError(
                f"coupling rule of {self.node.op.value} gave {len(zeros)} zero flags to '%{value}' "
                f"which carries {0 if labels is None else len(labels)} channel labels",
                node=self.node.id, source=self.node.source,
            )
        self.value_zeros[value] = None if zeros is None else np.asarray(zeros, dtype=bool)

    def zeroable(self, param: str) -> bool:
        # A frozen param keeps its value through training: it is never part of what a group zeroes.
        return self.graph.params[param].trainable

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
        if kind != "stat" and not self.zeroable(param):
            # Sliced with its channels but never zeroed; the rules that sum through a frozen weight
            # require the channels there to be exactly zero (NOTE: [Exactly zero where summed]).
            kind = "stat"
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
        for out in node.outputs:
            if out not in ctx.value_zeros:  # a rule that says nothing about zeros: not known to be zero
                ctx.value_zeros[out] = None
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


def _mapped_lists(keys: list[str], arrays: list[np.ndarray], fn: Callable[[np.ndarray], np.ndarray]) -> dict[str, list[int]]:
    """`{key: fn(array).tolist()}` for parallel keys and arrays, with one `fn` call and one tolist."""
    if not arrays:
        return {}
    flat = fn(np.concatenate(arrays)).tolist()
    edges = np.cumsum([0, *map(len, arrays)]).tolist()
    return {key: flat[a:b] for key, a, b in zip(keys, edges[:-1], edges[1:], strict=True)}


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
    # component it touches (a run of `_SliceTable`). A group's params, FLOPs and width are summed
    # over all runs at once (a slice's share of a param is its index count over the axis length),
    # and its slices and nodes are built only when read (NOTE: [Lazy slices]), so no per-slice
    # work runs in Python here.
    table = _SliceTable(ctx, component, n_components)
    n_records = len(table.meta)
    numel = np.array([graph.params[param].numel for param, _, _ in table.meta], dtype=np.int64).reshape(n_records)
    axis_len = np.array([graph.params[p].shape[axis] for p, axis, _ in table.meta], dtype=np.int64).reshape(n_records)
    record_flops = np.array([weight_flops.get(p, 0) for p, _, _ in table.meta], dtype=np.int64).reshape(n_records)
    is_stat = np.array([kind == "stat" for _, _, kind in table.meta], dtype=bool).reshape(n_records)
    has_out = np.array([any(k == "out" for _, k, _ in rs) for rs in ctx.records.values()], dtype=bool).reshape(n_records)
    run_record, run_component, run_count = table.run_record, table.run_component, table.run_count
    share = run_count / axis_len[run_record]
    params = np.zeros(n_components, dtype=np.int64)
    counted = ~is_stat[run_record]
    np.add.at(params, run_component[counted], np.rint(numel[run_record] * share)[counted].astype(np.int64))
    flops = np.zeros(n_components, dtype=np.int64)
    np.add.at(flops, run_component, np.rint(record_flops[run_record] * share).astype(np.int64))
    channels = np.zeros(n_components, dtype=np.int64)
    np.maximum.at(channels, run_component, run_count)
    has_slices = np.zeros(n_components, dtype=bool)
    has_slices[run_component] = True
    makes_channels = np.zeros(n_components, dtype=bool)
    makes_channels[run_component[has_out[run_record]]] = True

    _, first_atom = np.unique(component, return_index=True)
    candidates = np.flatnonzero(has_slices & makes_channels & ~pinned)
    removable = candidates[np.argsort(first_atom[candidates], kind="stable")]
    lookup = np.full(n_components, -1, dtype=np.int64)
    lookup[removable] = np.arange(len(removable))
    groups = [
        table.group(gid, comp, f, p, c)
        for gid, (comp, f, p, c) in enumerate(
            zip(removable.tolist(), flops[removable].tolist(), params[removable].tolist(), channels[removable].tolist(), strict=True)
        )
    ]

    # one gather and one tolist for all values (and for all records), then cheap list slices
    named = [(name, labels) for name, labels in ctx.value_labels.items() if labels is not None]
    value_groups = _mapped_lists([name for name, _ in named], [labels for _, labels in named], lambda a: lookup[component[a]])
    group_of_index = lookup[table.components].tolist()
    offsets = table.offsets.tolist()
    param_groups: dict[str, dict[int, list[int]]] = defaultdict(dict)
    for r, (param_name, axis, _) in enumerate(table.meta):
        param_groups[param_name][axis] = group_of_index[offsets[r] : offsets[r + 1]]
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
