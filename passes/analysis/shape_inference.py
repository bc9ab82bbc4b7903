"""shape-inference: every value's shape, dtype and channel axis from the op rules.

Walks the nodes in order, feeding each OpDef's `infer` with the inferred types of its inputs.
The result lists the inferred types and every place where they disagree with the stored ones;
the graph itself is not touched (`infer_values` gives transforms the same types to build with).
"""

from __future__ import annotations

from pydantic import BaseModel

from asgnas_ir.errors import IRValidationError
from asgnas_ir.ir.graph import Graph, Value
from asgnas_ir.opdefs import InferCtx, opdef
from asgnas_ir.pass_manager import Pass, register_pass


class ShapeMismatch(BaseModel):
    value: str
    node: str
    stored: Value
    inferred: Value


class ShapeInferenceResult(BaseModel):
    values: dict[str, Value]
    mismatches: list[ShapeMismatch]


def infer_values(graph: Graph) -> dict[str, Value]:
    """Inferred type of every value, in graph order.

    Raises:
        IRValidationError: a node reads a value no earlier node or graph input defines, or an op
            rule rejects its inputs (the message names the node and its source).
    """
    values: dict[str, Value] = {}
    for name in graph.inputs:
        if name not in graph.values:
            raise IRValidationError(f"graph input '{name}' has no entry in `values`")
        values[name] = graph.values[name]
    for node in graph.nodes:
        inputs = []
        for name in node.inputs:
            if name not in values:
                raise IRValidationError(
                    f"input '%{name}' is used before any node defines it", node=node.id, source=node.source
                )
            inputs.append(values[name])
        for role, param in node.params.items():
            if param not in graph.params:
                raise IRValidationError(f"param '{role}' refers to '@{param}', which the graph does not declare", node=node.id, source=node.source)
        outs = opdef(node.op).infer(InferCtx(graph, node, inputs))
        if len(outs) != len(node.outputs):
            raise IRValidationError(
                f"{node.op.value} produces {len(outs)} output(s) but the node lists {len(node.outputs)}",
                node=node.id, source=node.source,
            )
        for name, value in zip(node.outputs, outs, strict=True):
            values[name] = value
    return values


@register_pass
class ShapeInference(Pass):
    name = "shape-inference"
    description = "Infer every value's shape, dtype and channel axis from the op rules; report disagreements."

    def run(self, graph: Graph) -> ShapeInferenceResult:
        inferred = infer_values(graph)
        mismatches = []
        for node in graph.nodes:
            for name in node.outputs:
                stored = graph.values.get(name)
                if stored is None or stored.shape != inferred[name].shape or stored.dtype != inferred[name].dtype or stored.channel_axis != inferred[name].channel_axis:
                    mismatches.append(ShapeMismatch(value=name, node=node.id, stored=stored or inferred[name], inferred=inferred[name]))
        return ShapeInferenceResult(values=inferred, mismatches=mismatches)
