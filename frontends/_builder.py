"""What every frontend's Builder shares: the graph being built, fresh node ids, and appending a node
typed by its op's shape rule. Each frontend adds how it reads its own source nodes and names errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from asgnas_ir.errors import FrontendError, IRValidationError
from asgnas_ir.ir.attrs import Attrs
from asgnas_ir.ir.graph import Graph, Param, Value
from asgnas_ir.ir.node import NodeBase, make_node
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs import InferCtx, opdef


class GraphBuilder:
    """Accumulates IR nodes, values, params and weights. Subclasses provide `source` (the source
    node's path, for error messages and codegen names) and `fail` (an error naming that node)."""

    def __init__(self) -> None:
        self.nodes: list[NodeBase] = []
        self.values: dict[str, Value] = {}
        self.params: dict[str, Param] = {}
        self.weights: dict[str, np.ndarray] = {}
        self._ids: set[str] = set()
        # a view of the graph so far, for shape rules that look at params or stored values
        self._graph = Graph.model_construct(inputs=[], outputs=[], values=self.values, params=self.params, nodes=self.nodes)

    @property
    def source(self) -> str:
        raise NotImplementedError

    def fail(self, message: str) -> FrontendError:
        raise NotImplementedError

    def _fresh_id(self, base: str) -> str:
        base = base.replace("/", "_").replace(":", "_").replace(".", "_") or "v"
        candidate, n = base, 1
        while candidate in self._ids or candidate in self.values:
            candidate = f"{base}_{n}"
            n += 1
        self._ids.add(candidate)
        return candidate

    def _append(
        self, op: Op, base: str, inputs: list[str], attrs: Attrs | None, params: dict[str, str] | None, outputs: int, source: str
    ) -> Any:
        """Append a node and type its outputs with the op's shape rule; the output name (or names)."""
        node_id = self._fresh_id(base)
        out_names = [node_id] if outputs == 1 else [self._fresh_id(f"{node_id}_{i}") for i in range(outputs)]
        node = make_node(op, node_id, inputs, out_names, attrs=attrs, params=params, source=source)
        try:
            types = opdef(op).infer(InferCtx(self._graph, node, [self.values[i] for i in inputs]))
        except IRValidationError as exc:
            raise self.fail(f"lowering to {op.value} failed: {exc}") from None
        for out, value in zip(out_names, types, strict=True):
            self.values[out] = value
        self.nodes.append(node)
        return out_names[0] if outputs == 1 else out_names
