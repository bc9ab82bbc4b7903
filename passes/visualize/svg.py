"""A Scene as one standalone SVG document, built as escaped text (no graphviz, no fonts fetched).

Drawing order, bottom to top: removal-structure bands (a tinted halo round each node of an operator
group plus a thick stroke along the edges inside it), edges, node boxes, then the side panel with
the legend, the removal-structure hierarchy and the largest channel groups.

Every element a reader or a script may look for carries a data attribute: `data-node` on each IR
node's `<g>`, `data-io` on graph inputs/outputs, `data-group`/`data-parent` on each operator
group's band and on its hierarchy entry. The hierarchy entries nest as the groups do: a child's
`<g class="tree-item">` is an XML child of its parent's.

Text is monospace, so widths are estimated from character counts; long labels are cut with an
ellipsis (source paths at the front, where the common prefix is) and kept whole in the box's
`<title>` tooltip.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

from asgnas_ir.passes.visualize.layout import Box, Layout, layered_layout
from asgnas_ir.passes.visualize.scene import OperatorGroupView, Scene, SceneNode

FONT_SIZE = 11
CHAR_W = 6.6  # monospace advance at FONT_SIZE
LINE_H = 13
_MAX_CHARS = 32
_HALO = 6
_PANEL_GAP = 28
_PANEL_ROWS_CHANNEL = 12
_HEAT_HI = (0x6B, 0xAE, 0xD6)
_SVG_NS = "http://www.w3.org/2000/svg"


def attr(value: object) -> str:
    """`value` escaped for use inside a double-quoted XML attribute."""
    return escape(str(value), {'"': "&quot;", "\n": "&#10;"})


def compact(number: int) -> str:
    """12345 → '12.3k': short figures for labels; exact ones go in tooltips."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.1f}{suffix}"
    return str(number)


def clip(text: str, limit: int = _MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_path(text: str, limit: int = _MAX_CHARS) -> str:
    """Cut a source path at the front: `…denselayer1.conv1` says more than `features.denseblock1…`."""
    return text if len(text) <= limit else "…" + text[len(text) - limit + 1 :]


def node_lines(node: SceneNode) -> list[str]:
    if node.kind == "op":
        return [node.op, clip_path(node.source), clip(node.shape)]
    return [f"{node.kind} {clip(node.source, _MAX_CHARS - 7)}", clip(node.shape)]


def node_size(node: SceneNode) -> tuple[float, float]:
    lines = node_lines(node)
    width = max(len(line) for line in lines) * CHAR_W + 16
    return round(max(width, 84.0), 1), float(len(lines) * LINE_H + 8)


def heat(count: int, most: int) -> str:
    """White for no channel groups, deepening blue towards the busiest node (square-root scale)."""
    t = math.sqrt(count / most) * 0.85 if most else 0.0
    r, g, b = (round(255 + (c - 255) * t) for c in _HEAT_HI)
    return f"#{r:02x}{g:02x}{b:02x}"


def tooltip(node: SceneNode, scene: Scene) -> str:
    if node.kind != "op":
        return f"graph {node.kind} {node.info['value']}: {node.info['type']}"
    info = node.info
    lines = [f"{info['id']} = {info['op']}  ({info['source']})"]
    lines += [f"in  {name}: {t}" for name, t in info["inputs"]]
    lines += [f"out {name}: {t}" for name, t in info["outputs"]]
    lines += [f"param {role} {name} [{shape}] ← {src}" for role, name, shape, src in info["params"]]
    if node.op_group is not None:
        lines.append(f"removal structure #{node.op_group}")
    if node.channel_count:
        shown = ", ".join(map(str, node.channel_ids[:12])) + (" …" if node.channel_count > 12 else "")
        lines.append(f"{node.channel_count} channel groups: {shown}")
    return "\n".join(lines)


def scene_layout(scene: Scene) -> Layout:
    sizes = {n.id: node_size(n) for n in scene.nodes}
    return layered_layout(sizes, scene.edges, pinned_top=[n.id for n in scene.nodes if n.kind == "input"])


def _route_path(points: list[tuple[float, float]]) -> str:
    """A smooth path through the route's points with vertical tangents at each one."""
    (x0, y0), rest = points[0], points[1:]
    parts = [f"M{x0:.1f},{y0:.1f}"]
    px, py = x0, y0
    for x, y in rest:
        mid = (py + y) / 2
        parts.append(f"C{px:.1f},{mid:.1f} {x:.1f},{mid:.1f} {x:.1f},{y:.1f}")
        px, py = x, y
    return " ".join(parts)


def _band(group: OperatorGroupView, layout: Layout) -> list[str]:
    members = [n for n in group.nodes if n in layout.boxes]
    label = f"#{group.id}" + (f" ⊂ #{group.parent}" if group.parent is not None else "")
    out = [
        f'<g class="opgroup" data-group="{group.id}" data-parent="{"" if group.parent is None else group.parent}" '
        f'data-color="{group.colour}">',
        f"<title>{attr(f'removal structure {label}: {len(group.nodes)} nodes, {group.params:,} params, {group.flops:,} FLOPs')}</title>",
    ]
    inside = set(members)
    for (u, v), points in layout.routes.items():
        if u in inside and v in inside:
            out.append(
                f'<path d="{_route_path(points)}" fill="none" stroke="{group.colour}" stroke-opacity="0.35" '
                'stroke-width="14" stroke-linecap="round"/>'
            )
    for node_id in members:
        b = layout.boxes[node_id]
        out.append(
            f'<rect x="{b.left - _HALO:.1f}" y="{b.y - _HALO:.1f}" width="{b.w + 2 * _HALO:.1f}" height="{b.h + 2 * _HALO:.1f}" '
            f'rx="9" fill="{group.colour}" fill-opacity="0.30" stroke="{group.colour}" stroke-width="2"/>'
        )
    if members:
        first = layout.boxes[members[0]]
        out.append(
            f'<text x="{first.left - _HALO:.1f}" y="{first.y - _HALO - 3:.1f}" font-size="10" font-weight="bold" '
            f'fill="{group.colour}">{attr(label)}</text>'
        )
    out.append("</g>")
    return out


def _node(node: SceneNode, box: Box, scene: Scene, most: int) -> list[str]:
    if node.kind == "op":
        head = (
            f'<g class="node" data-node="{attr(node.id)}" data-op="{attr(node.op)}" '
            f'data-opgroup="{"" if node.op_group is None else node.op_group}" data-channel-groups="{node.channel_count}" '
        )
        fill, stroke, radius = heat(node.channel_count, most), "#3a3a3a", 4
    else:
        head = f'<g class="io" data-io="{node.kind}" data-value="{attr(node.source)}" '
        fill, stroke, radius = "#eeeeee", "#777777", 12
    out = [
        head + f'transform="translate({box.left:.1f},{box.y:.1f})">',
        f"<title>{attr(tooltip(node, scene))}</title>",
        f'<rect width="{box.w:.1f}" height="{box.h:.1f}" rx="{radius}" fill="{fill}" stroke="{stroke}" stroke-width="1.2"/>',
    ]
    for i, line in enumerate(node_lines(node)):
        style = ' font-weight="bold"' if i == 0 else (' fill="#555555"' if i == 1 else ' fill="#1f4e79"')
        out.append(f'<text x="8" y="{14 + i * LINE_H}"{style}>{attr(line)}</text>')
    if node.channel_count:
        text = compact(node.channel_count)
        bw = len(text) * 6 + 8
        out.append(
            f'<g class="badge"><rect x="{box.w - bw / 2:.1f}" y="-7" width="{bw}" height="14" rx="7" fill="#08519c"/>'
            f'<text x="{box.w:.1f}" y="3.5" font-size="10" fill="#ffffff" text-anchor="middle">{text}</text></g>'
        )
    out.append("</g>")
    return out


class _Panel:
    """The side panel, laid out as rows of text from the top."""

    def __init__(self, x: float) -> None:
        self.x, self.y = x, 24.0
        self.parts: list[str] = []
        self.widest = 0.0

    def text(self, content: str, *, indent: float = 0, bold: bool = False, colour: str = "#222222", size: int = FONT_SIZE) -> None:
        weight = ' font-weight="bold"' if bold else ""
        self.parts.append(
            f'<text x="{self.x + indent:.1f}" y="{self.y:.1f}" font-size="{size}" fill="{colour}"{weight}>{attr(content)}</text>'
        )
        self.widest = max(self.widest, indent + len(content) * CHAR_W * size / FONT_SIZE)
        self.y += LINE_H + 3

    def swatch_row(self, colour: str, content: str, indent: float) -> None:
        self.parts.append(
            f'<rect x="{self.x + indent:.1f}" y="{self.y - 9:.1f}" width="10" height="10" rx="2" fill="{colour}" stroke="#333333" stroke-width="0.6"/>'
        )
        self.text(content, indent=indent + 15)

    def gap(self, size: float = 8) -> None:
        self.y += size


def _hierarchy(panel: _Panel, scene: Scene) -> None:
    views = {g.id: g for g in scene.operator_groups}

    def emit(group: OperatorGroupView, depth: int) -> None:
        first = group.nodes[0] if group.nodes else "?"
        extra = f", +{group.channel_children} ch" if group.channel_children else ""
        row = f"#{group.id} {clip(first, 26)} ({len(group.nodes)} nodes, {compact(group.params)} params{extra})"
        panel.parts.append(f'<g class="tree-item" data-group="{group.id}" data-parent="{"" if group.parent is None else group.parent}">')
        panel.swatch_row(group.colour, row, indent=14 * depth)
        for child in sorted(group.children):
            emit(views[child], depth + 1)
        panel.parts.append("</g>")

    for root in scene.roots():
        emit(root, 0)


def _panel(scene: Scene, x: float) -> _Panel:
    panel = _Panel(x)
    panel.text(f"{scene.name}: mode {scene.mode}", bold=True, size=13)
    ops = sum(1 for n in scene.nodes if n.kind == "op")
    panel.text(f"{ops} nodes · {len(scene.operator_groups)} removal structures · {scene.channel_group_count:,} channel groups")
    if scene.note:
        words, line = scene.note.split(), ""
        for word in words:
            if len(line) + len(word) > 60:
                panel.text(line, colour="#a03000")
                line = ""
            line = f"{line} {word}".strip()
        panel.text(line, colour="#a03000")
    panel.gap()
    panel.text("legend", bold=True)
    most = scene.max_channel_count
    if scene.channel_group_count:
        steps = [0, max(1, most // 8), max(1, most // 2), most]
        panel.text("fill and badge: how many channel groups hold a slice of the node's params")
        for count in steps:
            panel.swatch_row(heat(count, most), f"{count:,} channel groups touch the node", indent=0)
    if scene.operator_groups:
        panel.swatch_row(scene.operator_groups[0].colour, "tinted band: one removal structure (operator group)", indent=0)
        panel.text("#child ⊂ #parent: removing the parent makes the child dead", indent=15)
    panel.gap()
    if scene.operator_groups:
        panel.text("removal structures (children indented under parents)", bold=True)
        panel.parts.append('<g class="hierarchy">')
        _hierarchy(panel, scene)
        panel.parts.append("</g>")
        panel.gap()
    if scene.top_channel_groups:
        shown = scene.top_channel_groups[:_PANEL_ROWS_CHANNEL]
        panel.text(f"largest channel groups (top {len(shown)} of {scene.channel_group_count:,} by params)", bold=True)
        for group in shown:
            nodes = ", ".join(group.nodes[:2]) + (f" +{len(group.nodes) - 2}" if len(group.nodes) > 2 else "")
            parent = f" ⊂ #{group.parent}" if group.parent is not None else ""
            panel.parts.append(f'<g class="channel-item" data-group="{group.id}">')
            panel.text(f"#{group.id}{parent} {compact(group.params)} params: {clip(nodes, 36)}")
            panel.parts.append("</g>")
    return panel


def render_svg(scene: Scene, layout: Layout | None = None, *, standalone: bool = True, panel: bool = True) -> str:
    """The whole picture as SVG text.

    `standalone=False` drops the XML prolog and namespace for inlining in HTML; `panel=False` drops
    the side panel (the HTML page has an interactive one instead).
    """
    layout = layout or scene_layout(scene)
    most = scene.max_channel_count
    side = _panel(scene, layout.width + _PANEL_GAP) if panel else None
    width = math.ceil(layout.width + (_PANEL_GAP + side.widest + 24 if side else 0))
    height = math.ceil(max(layout.height, side.y + 16 if side else 0))
    namespace = f' xmlns="{_SVG_NS}"' if standalone else ""
    out = ['<?xml version="1.0" encoding="UTF-8"?>'] if standalone else []
    out.append(
        f'<svg{namespace} class="asgnas-viz" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT_SIZE}" '
        f'data-graph="{attr(scene.name)}" data-mode="{scene.mode}">'
    )
    out.append(f"<title>{attr(f'{scene.name} ({scene.mode} mode), drawn by asgnas viz')}</title>")
    out.append(
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#666666"/></marker></defs>'
    )
    out.append(f'<rect width="{width}" height="{height}" fill="#ffffff"/>')
    out.append('<g id="opgroups">')
    for group in scene.operator_groups:
        out.extend(_band(group, layout))
    out.append("</g>")
    out.append('<g id="edges" fill="none" stroke="#666666" stroke-width="1.1">')
    for (u, v), points in layout.routes.items():
        out.append(f'<path class="edge" data-from="{attr(u)}" data-to="{attr(v)}" d="{_route_path(points)}" marker-end="url(#arrow)"/>')
    out.append("</g>")
    out.append('<g id="nodes">')
    for node in scene.nodes:
        out.extend(_node(node, layout.boxes[node.id], scene, most))
    out.append("</g>")
    if side is not None:
        x = layout.width + _PANEL_GAP / 2
        out.append(f'<line x1="{x:.1f}" y1="8" x2="{x:.1f}" y2="{height - 8}" stroke="#cccccc"/>')
        out.append('<g id="panel">')
        out.extend(side.parts)
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
