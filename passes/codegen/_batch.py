"""Which values' leading axis is the batch, so that codegen writes it symbolically (DESIGN §2).

The IR stores concrete shapes (the example's sizes); DESIGN §2 wants the batch dim of every graph
input symbolic and generated code that runs at any batch size. Until the IR carries symbolic dims
(the issue "Real models at any batch size" generalises this), codegen works the batch out here: axis
0 of every graph input is the batch, and an op's output keeps it at axis 0 when the op does not move
or mix it (a reshape or flatten whose leading size is its input's batch size, a permute that leaves
axis 0 in place, a concat/split/slice/reduction along another axis, any other op whose output has
the batch size of an input that carries it). Printers ask `batch_kept(graph, node)` before writing a
reshape target, and write the batch as `-1` / `x.shape[0]` instead of the example's number.

Left to symbolic shapes: a batch moved off axis 0 (a permute putting it elsewhere), merged into
another axis (`reshape(N*C, ...)`), or created by broadcasting (`expand` of a class token to the
batch) is still written with the example's size.
"""

from __future__ import annotations

from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op

_ALONG_AXIS = {Op.CONCAT, Op.SPLIT, Op.SLICE}


def batch_values(graph: Graph) -> frozenset[str]:
    """The values whose axis 0 is the batch of the graph's inputs (cached per graph version)."""
    key = ("codegen-batch-values",)
    cache = graph._cache
    if key in cache:
        return cache[key]
    found: set[str] = {name for name in graph.inputs if graph.values[name].shape}
    for node in graph.nodes:
        if _keeps_batch(graph, node, found):
            found.update(out for out in node.outputs if graph.values[out].shape)
    result = frozenset(found)
    cache[key] = result
    return result


def batch_kept(graph: Graph, node: NodeBase) -> bool:
    """Whether `node`'s first output has, at axis 0, the batch its first input has at axis 0."""
    return node.outputs[0] in batch_values(graph) and bool(node.inputs) and node.inputs[0] in batch_values(graph)


def _keeps_batch(graph: Graph, node: NodeBase, batched: set[str]) -> bool:
    inputs = [v for v in node.inputs if v in batched]
    out_shape = graph.values[node.outputs[0]].shape
    if not inputs or not out_shape:
        return False
    attrs = node.attrs
    if node.op in (Op.RESHAPE, Op.FLATTEN, Op.EXPAND):
        first = node.inputs[0]
        return first in batched and graph.values[first].shape[0] == out_shape[0] and (node.op is not Op.FLATTEN or attrs.start_axis >= 1)  # type: ignore[attr-defined]
    if node.op is Op.PERMUTE:
        return node.inputs[0] in batched and attrs.perm[0] == 0  # type: ignore[attr-defined]
    if node.op in _ALONG_AXIS:
        return attrs.axis != 0  # type: ignore[attr-defined]
    if node.op in (Op.MEAN, Op.SUM):
        return node.inputs[0] in batched and 0 not in attrs.axes  # type: ignore[attr-defined]
    return any(graph.values[v].shape[0] == out_shape[0] for v in inputs)
