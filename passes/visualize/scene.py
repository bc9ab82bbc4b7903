"""What a picture of a graph shows, independent of how it is drawn (SVG, HTML or DOT).

A `Scene` holds one box per IR node plus one per graph input and output, the data edges between
them, the operator groups (removal structures) with a colour each and their parent links, and the
channel groups aggregated per node. Channel groups are never drawn one by one: a torchvision
ResNet-50 has about 11k of them, so each node carries only how many groups touch it (and the first
few ids), and the scene keeps the `TOP_CHANNEL_GROUPS` largest groups by params for a list.

Invariants: `nodes` follows the graph's node order with inputs first and outputs last, so every
writer that walks it is deterministic; every operator group's `parent` is either None or the id of
another operator group in `operator_groups`; colours are distinct hex strings.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Any, Literal

from asgnas_ir.errors import AsgnasError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.pass_manager import analysis
from asgnas_ir.passes.analysis.search_space import MODES, SearchSpace

NodeKind = Literal["op", "input", "output"]
TOP_CHANNEL_GROUPS = 50
CHANNEL_IDS_PER_NODE = 50
_GOLDEN_ANGLE = 137.50776405


@dataclass
class SceneNode:
    """One box: an IR node (`kind="op"`) or a graph input/output value."""

    id: str
    kind: NodeKind
    op: str
    source: str
    shape: str
    info: dict[str, Any]
    op_group: int | None = None
    channel_count: int = 0
    channel_ids: list[int] = field(default_factory=list)


@dataclass
class OperatorGroupView:
    """A removal structure as drawn: its nodes in graph order, its colour and its nesting."""

    id: int
    parent: int | None
    nodes: list[str]
    colour: str
    params: int
    flops: int
    children: list[int] = field(default_factory=list)
    channel_children: int = 0


@dataclass
class ChannelGroupView:
    id: int
    parent: int | None
    nodes: list[str]
    channels: int
    params: int
    flops: int


@dataclass
class Scene:
    name: str
    mode: str
    note: str
    nodes: list[SceneNode]
    edges: list[tuple[str, str]]
    operator_groups: list[OperatorGroupView]
    channel_group_count: int
    top_channel_groups: list[ChannelGroupView]

    @property
    def max_channel_count(self) -> int:
        return max((n.channel_count for n in self.nodes), default=0)

    def roots(self) -> list[OperatorGroupView]:
        """Operator groups without a parent, the tops of the hierarchy."""
        return [g for g in self.operator_groups if g.parent is None]


def input_box_id(value: str) -> str:
    return f"input:{value}"


def output_box_id(value: str) -> str:
    return f"output:{value}"


def group_colours(count: int) -> list[str]:
    """`count` distinct colours, spread round the hue circle by the golden angle.

    Neighbouring ids get far-apart hues; the lightness cycles through three steps so that groups
    whose hues come close again (after ~20 ids) still differ, and a rare 8-bit collision is nudged.
    """
    colours: list[str] = []
    seen: set[str] = set()
    for i in range(count):
        hue = (i * _GOLDEN_ANGLE) % 360.0
        lightness = (0.50, 0.40, 0.60)[(i // 7) % 3]
        while True:
            r, g, b = colorsys.hls_to_rgb(hue / 360.0, lightness, 0.70)
            colour = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
            if colour not in seen:
                break
            hue = (hue + 0.7) % 360.0
        seen.add(colour)
        colours.append(colour)
    return colours


def resolve_space(graph: Graph, mode: str | None) -> tuple[SearchSpace, str]:
    """The search space to draw and a note for the reader.

    `mode=None` means "both" when the graph's erase analysis works, else "prune", and the note says
    which was used and why. An explicit mode that fails raises, since the user asked for it.
    """
    if mode is not None and mode not in MODES:
        raise AsgnasError(f"visualize: mode must be one of {', '.join(MODES)}, not '{mode}'")
    if mode is not None:
        return analysis("search-space", graph, mode=mode), ""
    try:
        return analysis("search-space", graph, mode="both"), ""
    except AsgnasError as exc:
        note = f"mode 'both' does not work for this graph ({exc}); showing 'prune' (channel groups only)"
        return analysis("search-space", graph, mode="prune"), note


def _node_info(graph: Graph, node: Any) -> dict[str, Any]:
    def value_row(name: str) -> list[str]:
        value = graph.values.get(name)
        return [name, value.text() if value is not None else "?"]

    return {
        "id": node.id,
        "op": node.op.value,
        "source": node.source,
        "attrs": {k: repr(v) for k, v in sorted(node.attrs.model_dump(exclude_defaults=True).items())},
        "inputs": [value_row(v) for v in node.inputs],
        "outputs": [value_row(v) for v in node.outputs],
        "params": [
            [role, name, "x".join(map(str, graph.params[name].shape)), graph.params[name].source]
            for role, name in node.params.items()
            if name in graph.params
        ],
    }


def _shape_text(graph: Graph, value: str) -> str:
    v = graph.values.get(value)
    return "×".join(str(d) for d in v.shape) if v is not None else "?"


def build_scene(graph: Graph, space: SearchSpace, note: str = "") -> Scene:
    """Collect what to draw from `graph` and its search space `space` (any mode)."""
    nodes: list[SceneNode] = []
    by_id: dict[str, SceneNode] = {}
    for name in graph.inputs:
        box = SceneNode(input_box_id(name), "input", "input", name, _shape_text(graph, name), {"value": name, "type": graph.values[name].text()})
        nodes.append(box)
    for node in graph.nodes:
        shape = ", ".join(_shape_text(graph, o) for o in node.outputs)
        box = SceneNode(node.id, "op", node.op.value, node.source or node.id, shape, _node_info(graph, node))
        nodes.append(box)
        by_id[node.id] = box
    for name in graph.outputs:
        nodes.append(SceneNode(output_box_id(name), "output", "output", name, _shape_text(graph, name), {"value": name, "type": graph.values[name].text()}))

    edges: list[tuple[str, str]] = []
    seen_edges: set[tuple[str, str]] = set()
    producer = {name: input_box_id(name) for name in graph.inputs}
    for node in graph.nodes:
        for value in node.inputs:
            if value in producer and (producer[value], node.id) not in seen_edges:
                seen_edges.add((producer[value], node.id))
                edges.append((producer[value], node.id))
        for value in node.outputs:
            producer[value] = node.id
    for name in graph.outputs:
        if name in producer:
            edges.append((producer[name], output_box_id(name)))

    operators = [g for g in space.groups if g.kind == "operator"]
    colours = group_colours(len(operators))
    views = {
        g.id: OperatorGroupView(g.id, g.parent, list(g.nodes), colour, g.params, g.flops)
        for g, colour in zip(operators, colours, strict=True)
    }
    for view in views.values():
        if view.parent is not None and view.parent not in views:
            view.parent = None  # a parent outside this picture cannot be drawn as one
        for node_id in view.nodes:
            if node_id in by_id:
                by_id[node_id].op_group = view.id
    for view in views.values():
        if view.parent is not None:
            views[view.parent].children.append(view.id)

    channel = [g for g in space.groups if g.kind == "channel"]
    for group in channel:
        for node_id in group.nodes:
            box = by_id.get(node_id)
            if box is None:
                continue
            box.channel_count += 1
            if len(box.channel_ids) < CHANNEL_IDS_PER_NODE:
                box.channel_ids.append(group.id)
        if group.parent is not None and group.parent in views:
            views[group.parent].channel_children += 1
    largest = sorted(channel, key=lambda g: (-g.params, g.id))[:TOP_CHANNEL_GROUPS]
    top = [ChannelGroupView(g.id, g.parent, list(g.nodes), g.channels, g.params, g.flops) for g in largest]
    return Scene(
        name=graph.name, mode=space.mode, note=note, nodes=nodes, edges=edges,
        operator_groups=list(views.values()), channel_group_count=len(channel), top_channel_groups=top,
    )
