"""cost: FLOPs (a multiply-add counts 2), trainable params and activation memory, per node and in all.

Per-op FLOPs rules live with the ops (`OpDef.flops`). A param shared by several nodes is counted
once. Activation memory is the bytes of every value the graph defines (an upper bound: no reuse).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from asgnas_ir.ir.graph import Graph
from asgnas_ir.opdefs import opdef
from asgnas_ir.pass_manager import Pass, analysis, register_pass

_DTYPE_BYTES = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1, "bool": 1}


class NodeCost(BaseModel):
    op: str
    flops: int
    params: int


class CostReport(BaseModel):
    flops: int
    params: int
    activation_bytes: int
    per_node: dict[str, NodeCost]


@register_pass
class Cost(Pass):
    name = "cost"
    description = "FLOPs (multiply-add = 2), trainable params and activation memory, per node and total."
    requires = ("verify",)

    def run(self, graph: Graph) -> CostReport:
        per_node: dict[str, NodeCost] = {}
        counted: set[str] = set()
        for node in graph.nodes:
            params = 0
            for name in node.params.values():
                param = graph.params[name]
                if param.trainable and name not in counted:
                    counted.add(name)
                    params += param.numel
            per_node[node.id] = NodeCost(op=node.op.value, flops=opdef(node.op).flops(node, graph), params=params)
        activation = sum(
            int(np.prod(v.shape, dtype=np.int64)) * _DTYPE_BYTES.get(v.dtype, 4) for v in graph.values.values()
        )
        return CostReport(
            flops=sum(c.flops for c in per_node.values()),
            params=graph.param_count(),
            activation_bytes=activation,
            per_node=per_node,
        )


def cost(graph: Graph) -> CostReport:
    return analysis("cost", graph)
