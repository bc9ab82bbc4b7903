"""search-space: the groups a searcher may zero.

- `prune`: the channel groups of the dependency graph (ids 0..n-1).
- `erase`: operator groups, one per removal structure of the segment graph (ids 0..k-1). A group's
  slices are the params its segment owns (whole tensors, kind `out`: trainable and read by no
  other node), its frozen params, statistics and divisors (kind `stat`: removed with it, never
  zeroed) and, where the segment feeds a channel concat, the channel-group slices of those channels
  downstream (the next norm's scale and shift, the next conv's input columns), so zeroing the group
  leaves every output unchanged. A param the segment shares with other nodes is not in its slices.
- `both`: channel groups first (0..n-1, as in prune mode), then operator groups (n..n+k-1). A
  channel group whose slices all lie inside one removal structure has that operator group as
  `parent`.

Operator groups form a hierarchy: `parent` is the nearest removal structure through which every
path from this one to the outputs passes (a post-dominator in the segment graph), so removing the
parent makes the child dead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Literal

import networkx as nx
from pydantic import BaseModel, Field, PrivateAttr

from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.opdefs import opdef
from asgnas_ir.pass_manager import Pass, analysis, register_pass
from asgnas_ir.passes.analysis.alignment import (
    Family,
    align_selection,
    check_align,
    describe_misaligned,
    families,
    misaligned,
)
from asgnas_ir.passes.analysis.dependency_graph import ChannelGroup, DependencyGraph, Slice
from asgnas_ir.passes.analysis.segments import (
    SegmentGraph,
    build_segments,
    owned_params,
    param_readers,
    removal_consumers_ok,
    segment_params,
    segment_zero_invariant,
)
from asgnas_ir.passes.analysis.validity import GreedyValidity

Mode = Literal["prune", "erase", "both"]
MODES = ("prune", "erase", "both")


class SearchSpace(BaseModel):
    """Removable groups of one graph. Group ids index `groups`."""

    mode: Mode
    groups: list[ChannelGroup]
    graph_fingerprint: str = ""
    param_sources: dict[str, str] = Field(default_factory=dict, description="IR param name → source-framework path")
    segment_graph: SegmentGraph | None = None
    group_segments: dict[int, int] = Field(default_factory=dict, description="operator group id → segment id")
    value_covers: list[list[int]] = Field(
        default_factory=list, description="for each value whose channels all lie in groups: those group ids"
    )
    concat_channels: dict[int, list[int]] = Field(
        default_factory=dict,
        description="operator group id → the dependency-graph channel groups its removal slices out of a concat",
    )
    segment_covers: list[tuple[int, list[int]]] = Field(
        default_factory=list,
        description="(producing segment, channel groups) of each value holding a channel in `concat_channels`",
    )

    _families: list[Family] | None = PrivateAttr(default=None)

    def families(self) -> list[Family]:
        """Channel groups that narrow the same tensor axes together (`alignment`), computed once."""
        if self._families is None:
            self._families = families(self.groups, self.param_sources)
        return self._families

    def aligned(self, zero_ids: Iterable[int], align: int, redundancy: Iterable[float] | None = None) -> list[int]:
        """`zero_ids` moved to the nearest selection whose every layer keeps a multiple of `align`
        channels or its full width, still valid. `redundancy` (one score per group, higher = more
        removable) decides which groups move; without it, the later-listed chosen groups go back first
        and the lower ids are added first."""
        ids = list(zero_ids)
        if check_align(align) == 1:
            return ids
        if redundancy is None:
            rank = {g: i for i, g in enumerate(ids)}
            scores = [float(len(ids) - rank[g]) if g in rank else -float(g) / max(1, len(self.groups)) for g in range(len(self.groups))]
        else:
            scores = list(redundancy)
        return align_selection(self.families(), ids, align, scores, self.is_valid)

    def check_aligned(self, zero_ids: Iterable[int], align: int) -> None:
        """Raise a SpecError naming each layer the selection leaves at a width that is neither a
        multiple of `align` nor the full width."""
        if check_align(align) == 1:
            return
        found = misaligned(self.families(), zero_ids, align)
        if found:
            raise SpecError(
                f"the selection is not aligned to {align}: {describe_misaligned(found, align)}. Align it with "
                f"space.aligned(zero_groups, {align}) or choose it with align={align} (random_zero_groups, H2SPG, HESSO)"
            )

    def group(self, group_id: int) -> ChannelGroup:
        if not 0 <= group_id < len(self.groups):
            raise AsgnasError(
                f"group id {group_id} does not exist: this {self.mode}-mode search space has "
                f"{len(self.groups)} groups (ids 0..{len(self.groups) - 1})"
            )
        return self.groups[group_id]

    def operator_ids(self, ids: Iterable[int]) -> list[int]:
        return [i for i in ids if self.group(i).kind == "operator"]

    def is_valid(self, zero_ids: Iterable[int]) -> bool:
        """Removing these groups leaves a working network (see `segments` for the erase rule)."""
        ids = set(zero_ids)
        for gid in ids:
            self.group(gid)
        removed_segments = {self.group_segments[i] for i in ids if i in self.group_segments}
        if removed_segments and self.segment_graph is not None and not self.segment_graph.is_valid(removed_segments):
            return False
        if any(cover and ids.issuperset(cover) for cover in self.value_covers):
            return False
        return self._emptied_by_concats(ids, removed_segments) is None

    def greedy_valid(self, order: Iterable[int], k: int | None = None, removed: Iterable[int] = ()) -> list[int]:
        """The greedy valid selection along `order`: each group is accepted when `is_valid(removed +
        accepted + [g])` holds, skipped (not retried) otherwise, until `k` are accepted (no limit when
        None). Returns the accepted ids in acceptance order, `removed` (a valid set) not included.

        Same result as calling `is_valid` per candidate, from an incremental state (`validity`):
        O(covers of g) per channel group, one reachability pass per operator group.
        """
        return GreedyValidity(self, removed).select(order, k)

    def _emptied_by_concats(self, ids: set[int], removed_segments: set[int]) -> list[int] | None:
        """The channel groups of a surviving value that the selection empties once the channels its
        erased concat operands take with them are counted (None when every such value keeps one).

        Each such operator group alone leaves every value a channel (`removal_consumers_ok`), but two
        of them, or one with chosen channel groups, can together empty a value they share groups with
        (a chunk piece concatenated back beside the erased branch, for example)."""
        channels = {c for i in ids for c in self.concat_channels.get(i, ())}
        if not channels:
            return None
        if self.mode == "both":  # channel group ids are the dependency graph's ids
            channels |= {i for i in ids if self.group(i).kind == "channel"}
        gone = set(removed_segments)
        if self.segment_graph is not None:
            gone |= self.segment_graph.dead_after(removed_segments)
        for segment, cover in self.segment_covers:
            if segment not in gone and channels.issuperset(cover):
                return cover
        return None

    def explain_invalid(self, zero_ids: Iterable[int]) -> str:
        ids = set(zero_ids)
        removed_segments = {self.group_segments[i] for i in ids if i in self.group_segments}
        if removed_segments and self.segment_graph is not None and not self.segment_graph.is_valid(removed_segments):
            culprits = self._smallest_cut(ids)
            shown = "; ".join(f"group {gid}: {', '.join(self.group(gid).nodes[:3])}" for gid in culprits[:6])
            return (
                f"it would disconnect the network: groups {culprits} ({shown}) together lie on every path from the "
                "input to an output (or to a branch that reaches one); keep at least one of them"
            )
        for cover in self.value_covers:
            if cover and ids.issuperset(cover):
                return f"it removes every channel of a layer (groups {sorted(cover)[:8]})"
        emptied = self._emptied_by_concats(ids, removed_segments)
        if emptied is not None:
            return (
                f"it removes every channel of a layer: the concat operands it erases take channel groups "
                f"{sorted(emptied)[:8]} with them"
            )
        return ""

    def _smallest_cut(self, ids: set[int]) -> list[int]:
        """A subset of the operator groups `ids` that alone disconnects the network, with no member
        that could be kept (one greedy sweep: drop each group whose removal is not needed)."""
        assert self.segment_graph is not None
        kept = sorted(i for i in ids if i in self.group_segments)
        for gid in list(kept):
            rest = [i for i in kept if i != gid]
            if rest and not self.segment_graph.is_valid({self.group_segments[i] for i in rest}):
                kept = rest
        return kept


def _value_covers(deps: DependencyGraph, offset: int = 0) -> list[list[int]]:
    # most values repeat their producer's group list (a conv's output through its norm and
    # activation), so equal lists are merged before any per-value set or sort
    lists = {tuple(groups) for groups in deps.value_groups.values() if groups and min(groups) >= 0}
    covers = sorted({tuple(sorted(set(groups))) for groups in lists})
    return [[g + offset for g in c] for c in covers] if offset else [list(c) for c in covers]


def _operator_groups(graph: Graph, deps: DependencyGraph, offset: int) -> tuple[list[ChannelGroup], SegmentGraph, dict[int, int]]:
    segments, _ = build_segments(graph)
    readers = param_readers(graph)
    candidates = []
    for seg in segments.segments:
        if seg.is_joint:
            continue
        owned = owned_params(graph, seg.nodes, readers)
        if not owned:  # nothing an optimizer could zero without touching the rest of the network
            continue
        if not removal_consumers_ok(graph, deps, segments, seg):
            continue
        if not segment_zero_invariant(graph, seg.nodes, owned):
            continue
        inside = set(seg.nodes)
        # a param read outside the segment stays in the network: it is neither zeroed nor removed
        removed = [p for p in segment_params(graph, seg.nodes) if readers[p] <= inside]
        candidates.append((seg, removed, owned))

    by_id = {g.id: g for g in deps.groups}
    groups: list[ChannelGroup] = []
    group_segments: dict[int, int] = {}
    for seg, params, owned in candidates:
        gid = offset + len(groups)
        # frozen params, running statistics and divisors go away with the segment but are never zeroed
        slices = [
            Slice(p, 0, list(range(graph.params[p].shape[0])), "out" if p in owned else "stat")
            for p in params
            if graph.params[p].shape
        ]
        covered = set(params)
        out = graph.node(seg.nodes[-1]).outputs[0]
        for channel_group in sorted(set(deps.value_groups.get(out, [])) if any(u.op.value == "concat" for u in graph.users(out)) else []):
            for s in by_id[channel_group].slices:
                if s.param not in covered:
                    slices.append(s)
        seg_flops = sum(opdef(graph.node(n).op).flops(graph.node(n), graph) for n in seg.nodes)
        seg_params = sum(graph.params[p].numel for p in owned)
        groups.append(
            ChannelGroup(id=gid, kind="operator", slices=slices, nodes=list(seg.nodes), flops=seg_flops, params=seg_params, channels=0)
        )
        group_segments[gid] = seg.id
    _set_operator_parents(segments, groups, group_segments)
    return groups, segments, group_segments


def _concat_channels(
    graph: Graph, deps: DependencyGraph, space_groups: list[ChannelGroup], group_segments: dict[int, int]
) -> tuple[dict[int, list[int]], list[tuple[int, list[int]]]]:
    """For each operator group feeding a channel concat, the channel groups `subnet` slices away with
    it; and (producing segment, channel groups) of every value that holds one of those channels."""
    concat: dict[int, list[int]] = {}
    for gid in group_segments:
        out = graph.node(space_groups[gid].nodes[-1]).outputs[0]
        if any(u.op.value == "concat" for u in graph.users(out)):
            concat[gid] = sorted(set(deps.value_groups.get(out, [])))
    taken = {c for cs in concat.values() for c in cs}
    if not taken:
        return concat, []
    _, segment_of = build_segments(graph)
    covers: set[tuple[int, tuple[int, ...]]] = set()
    for name, groups in deps.value_groups.items():
        producer = graph.producer(name)
        if groups and min(groups) >= 0 and taken & set(groups):
            covers.add((segment_of.get(producer.id, -1) if producer else -1, tuple(sorted(set(groups)))))
    return concat, [(segment, list(cover)) for segment, cover in sorted(covers)]


def _set_operator_parents(segments: SegmentGraph, groups: list[ChannelGroup], group_segments: dict[int, int]) -> None:
    """parent = nearest removal structure that post-dominates the group's segment."""
    g = nx.DiGraph()
    g.add_nodes_from(s.id for s in segments.segments)
    g.add_edges_from((t, s.id) for s in segments.segments for t in s.successors)  # reversed edges
    sink = -1
    g.add_edges_from((sink, s.id) for s in segments.segments if s.writes_output)
    dominators = nx.immediate_dominators(g, sink)
    group_of_segment = {seg: gid for gid, seg in group_segments.items()}
    for group in groups:
        node = group_segments[group.id]
        while node in dominators and dominators[node] != node:
            node = dominators[node]
            if node in group_of_segment:
                group.parent = group_of_segment[node]
                break


def _nest_channel_groups(graph: Graph, channel_groups: list[ChannelGroup], operators: list[ChannelGroup]) -> list[ChannelGroup]:
    """Channel groups whose 'out' slices all sit in one removal structure get it as parent."""
    readers = param_readers(graph)
    owner: dict[str, int] = {}
    for op_group in operators:
        inside = set(op_group.nodes)
        for node_id in op_group.nodes:
            for p in graph.node(node_id).params.values():
                if readers[p] <= inside:  # a shared param outlives the structure
                    owner[p] = op_group.id
    nested = []
    for group in channel_groups:
        owners = {owner.get(s.param) for s in group.slices if s.kind == "out"}
        parent = owners.pop() if len(owners) == 1 else None
        nested.append(dataclasses.replace(group, parent=parent) if parent is not None else group)
    return nested


def build_search_space(graph: Graph, mode: Mode) -> SearchSpace:
    deps: DependencyGraph = analysis("dependency-graph", graph)
    sources = {name: p.source for name, p in graph.params.items()}
    if mode == "prune":
        return SearchSpace(
            mode=mode, groups=deps.groups, graph_fingerprint=graph.fingerprint(), param_sources=sources,
            value_covers=_value_covers(deps),
        )
    offset = len(deps.groups) if mode == "both" else 0
    operators, segments, group_segments = _operator_groups(graph, deps, offset)
    groups = (_nest_channel_groups(graph, deps.groups, operators) + operators) if mode == "both" else operators
    concat_channels, segment_covers = _concat_channels(graph, deps, groups, group_segments)
    return SearchSpace(
        mode=mode,
        groups=groups,
        graph_fingerprint=graph.fingerprint(),
        param_sources=sources,
        segment_graph=segments,
        group_segments=group_segments,
        value_covers=_value_covers(deps) if mode == "both" else [],
        concat_channels=concat_channels,
        segment_covers=segment_covers,
    )


@register_pass
class SearchSpacePass(Pass):
    name = "search-space"
    description = "Removable groups: channel groups (prune), operator removal structures (erase), or both."
    requires = ("dependency-graph",)

    def run(self, graph: Graph, mode: Mode = "prune") -> SearchSpace:
        if mode not in MODES:
            raise AsgnasError(f"search-space mode must be one of {', '.join(MODES)}, not '{mode}'")
        return build_search_space(graph, mode)
