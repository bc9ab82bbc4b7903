"""A Scene as plain Graphviz DOT text, for users who have graphviz and want its layout.

Removal structures become clusters, and a child's cluster sits inside its parent's, so the nesting
of the hierarchy is the nesting of the boxes Graphviz draws. Node fill is the same channel-group
heat as in the SVG. Nothing here runs graphviz.
"""

from __future__ import annotations

from asgnas_ir.passes.visualize.scene import OperatorGroupView, Scene
from asgnas_ir.passes.visualize.svg import clip, heat, node_lines


def quote(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as `\\n`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(scene: Scene) -> str:
    most = scene.max_channel_count
    views = {g.id: g for g in scene.operator_groups}
    lines = [
        f"digraph {quote(scene.name)} {{",
        "  rankdir=TB;",
        f"  label={quote(f'{scene.name}: mode {scene.mode}, {len(scene.operator_groups)} removal structures, {scene.channel_group_count} channel groups')};",
        '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10];',
        "  edge [color=\"#666666\"];",
    ]

    def cluster(group: OperatorGroupView, indent: str) -> None:
        lines.append(f"{indent}subgraph cluster_g{group.id} {{")
        parent = f" ⊂ #{group.parent}" if group.parent is not None else ""
        lines.append(f"{indent}  label={quote(f'#{group.id}{parent}')}; color={quote(group.colour)}; penwidth=2; style=rounded;")
        for node_id in group.nodes:
            lines.append(f"{indent}  {quote(node_id)};")
        for child in sorted(group.children):
            cluster(views[child], indent + "  ")
        lines.append(f"{indent}}}")

    for root in scene.roots():
        cluster(root, "  ")
    for node in scene.nodes:
        label = "\n".join(node_lines(node))
        if node.kind == "op":
            extra = f"\n{node.channel_count} channel groups" if node.channel_count else ""
            lines.append(f"  {quote(node.id)} [label={quote(label + extra)}, fillcolor={quote(heat(node.channel_count, most))}];")
        else:
            lines.append(f"  {quote(node.id)} [label={quote(clip(label, 60))}, shape=oval, fillcolor=\"#eeeeee\"];")
    for u, v in scene.edges:
        lines.append(f"  {quote(u)} -> {quote(v)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
