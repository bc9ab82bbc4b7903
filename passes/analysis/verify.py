"""verify: the graph is well formed.

Checks, in order: node ids and value names are unique; every input is a graph input or an output
of an earlier node; every graph output is defined; every param a node names is declared and, when
weights are loaded, has an array of the declared shape; stored value types equal what the op rules
infer. Structural problems are reported all at once, each with the node, its source and its
neighbourhood in the text form.
"""

from __future__ import annotations

from pydantic import BaseModel

from asgnas_ir.errors import IRValidationError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.text import neighbourhood
from asgnas_ir.ir.weights import WeightStore
from asgnas_ir.pass_manager import Pass, register_pass
from asgnas_ir.passes.analysis.shape_inference import ShapeInference


class VerifyResult(BaseModel):
    nodes: int
    values: int
    params: int


def _structural_problems(graph: Graph) -> list[tuple[str | None, str]]:
    problems: list[tuple[str | None, str]] = []
    defined = set()
    for name in graph.inputs:
        if name not in graph.values:
            problems.append((None, f"graph input '%{name}' has no entry in `values`"))
        defined.add(name)
    ids = set()
    for node in graph.nodes:
        where = f"node '{node.id}'" + (f" (from '{node.source}')" if node.source and node.source != node.id else "")
        if node.id in ids:
            problems.append((node.id, f"{where}: id is not unique"))
        ids.add(node.id)
        for name in node.inputs:
            if name not in defined:
                problems.append((node.id, f"{where}: input '%{name}' is used before it is defined"))
        for role, param in node.params.items():
            if param not in graph.params:
                problems.append((node.id, f"{where}: param '{role}' names '@{param}', which is not declared"))
        for name in node.outputs:
            if name in defined:
                problems.append((node.id, f"{where}: output '%{name}' is defined twice"))
            if name not in graph.values:
                problems.append((node.id, f"{where}: output '%{name}' has no entry in `values`"))
            defined.add(name)
    for name in graph.outputs:
        if name not in defined:
            problems.append((None, f"graph output '%{name}' is never defined"))
    weights = graph.weights
    if weights:
        for name, param in graph.params.items():
            if name not in weights:
                problems.append((None, f"param '@{name}' has no weights"))
                continue
            # an array not read yet keeps the shape its param was declared from; reading it here
            # would undo the deferral (NOTE: [Deferred weight snapshots])
            array = weights.loaded(name) if isinstance(weights, WeightStore) else weights[name]
            if array is not None and tuple(array.shape) != tuple(param.shape):
                problems.append((None, f"param '@{name}' declares shape {list(param.shape)} but its weights have {list(array.shape)}"))
    return problems


@register_pass
class Verify(Pass):
    name = "verify"
    description = "Check the graph is well formed: definitions before uses, declared params, shapes as the op rules infer."

    def run(self, graph: Graph) -> VerifyResult:
        problems = _structural_problems(graph)
        if problems:
            first_node = next((node for node, _ in problems if node is not None), None)
            text = "\n".join(f"  - {message}" for _, message in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            context = f"\nnear:\n{neighbourhood(graph, first_node)}" if first_node else ""
            raise IRValidationError(f"graph '{graph.name}' is malformed ({len(problems)} problem(s)):\n{text}{more}{context}")
        result = ShapeInference().run(graph)
        if result.mismatches:
            bad = result.mismatches[0]
            node = graph.node(bad.node)
            raise IRValidationError(
                f"value '%{bad.value}' is stored as {bad.stored.text()} but {node.op.value} gives "
                f"{bad.inferred.text()} ({len(result.mismatches)} mismatch(es) in all)\nnear:\n"
                f"{neighbourhood(graph, node.id)}",
                node=node.id,
                source=node.source,
            )
        return VerifyResult(nodes=len(graph.nodes), values=len(graph.values), params=len(graph.params))
