"""The one-line-per-node text form used by `str(graph)`, error messages and `asgnas run --print`.

    graph resnet_basic(%x: f32[1,3,32,32]c1) {
      %conv1 = conv{stride=(1, 1), padding=((1, 1), (1, 1)), ...}(%x, @conv1.weight) : f32[1,16,32,32]c1  # conv1
      return %fc
    }

`%name` is a value, `@name` a param, `{...}` the attributes that differ from their defaults,
`: type` the output types (`c1` marks the channel axis), `# ...` the source path. A node whose id
differs from its single output's name shows it as `[id]` after the op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asgnas_ir.ir.graph import Graph
    from asgnas_ir.ir.node import NodeBase


def _attrs_text(node: NodeBase) -> str:
    changed = node.attrs.model_dump(exclude_defaults=True)
    if not changed:
        return ""
    return "{" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + "}"


def node_to_text(graph: Graph, node: NodeBase) -> str:
    """One node as one line (without indentation)."""
    outs = ", ".join(f"%{o}" for o in node.outputs)
    ident = "" if node.outputs == [node.id] else f"[{node.id}]"
    operands = [f"%{i}" for i in node.inputs] + [f"@{p}" for p in node.params.values()]
    types = ", ".join(graph.values[o].text() if o in graph.values else "?" for o in node.outputs)
    line = f"{outs} = {node.op.value}{ident}{_attrs_text(node)}({', '.join(operands)}) : {types}"
    if node.source and node.source != node.id:
        line += f"  # {node.source}"
    return line


def graph_to_text(graph: Graph) -> str:
    args = ", ".join(f"%{name}: {graph.values[name].text()}" for name in graph.inputs)
    lines = [f"graph {graph.name}({args}) {{"]
    lines += ["  " + node_to_text(graph, node) for node in graph.nodes]
    lines.append("  return " + ", ".join(f"%{o}" for o in graph.outputs))
    lines.append("}")
    return "\n".join(lines)


def neighbourhood(graph: Graph, node_id: str, radius: int = 5) -> str:
    """The text of `node_id` with `radius` nodes either side, the culprit marked with `>>`."""
    ids = [n.id for n in graph.nodes]
    if node_id not in ids:
        return graph_to_text(graph)
    at = ids.index(node_id)
    lo, hi = max(0, at - radius), min(len(ids), at + radius + 1)
    lines = []
    for i in range(lo, hi):
        mark = ">> " if i == at else "   "
        lines.append(mark + node_to_text(graph, graph.nodes[i]))
    return "\n".join(lines)
