"""The framework-neutral IR: ops, attributes, nodes, values, params and the graph."""

from asgnas_ir.ir.attrs import Attrs
from asgnas_ir.ir.graph import Graph, GraphMeta, Param, Value
from asgnas_ir.ir.node import NODE_CLASSES, NodeBase, make_node
from asgnas_ir.ir.ops import Op

__all__ = ["Attrs", "Graph", "GraphMeta", "NODE_CLASSES", "NodeBase", "Op", "Param", "Value", "make_node"]
