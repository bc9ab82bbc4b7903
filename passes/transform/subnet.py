"""subnet: the sub-network left when the given groups are removed (functional transform).

Prune mode: every channel whose group is zeroed leaves every value it lives on and every param
slice recorded for it; ops whose attributes count channels (groups, split sizes, reshape targets)
are resized by their OpDef. The new graph's types are re-inferred from the op rules and must equal
the sliced types: a disagreement is a bug, reported with the node, never written out.

Invariant: for weights in which the zeroed groups' slices are zero, the sub-network computes the
same outputs as the full network (up to float rounding from the shorter sums).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from asgnas_ir.passes.analysis.dependency_graph import DependencyGraph
from asgnas_ir.passes.analysis.shape_inference import infer_values

from asgnas_ir.errors import AsgnasError, PassError
from asgnas_ir.ir.graph import Graph, Param, Value, contiguous
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs import ResizeCtx, opdef
from asgnas_ir.pass_manager import Pass, PassResult, analysis, register_pass


def _check_ids(deps: DependencyGraph, zero: Iterable[int]) -> np.ndarray:
    ids = np.asarray(sorted(set(int(i) for i in zero)), dtype=np.int64)
    bad = [int(i) for i in ids if not 0 <= i < len(deps.groups)]
    if bad:
        raise AsgnasError(
            f"zero-group id(s) {bad} do not exist: the graph has {len(deps.groups)} channel groups "
            f"(ids 0..{len(deps.groups) - 1}); list them with `asgnas space IR.json`"
        )
    return ids


def build_subnet(graph: Graph, deps: DependencyGraph, zero: Iterable[int]) -> Graph:
    """The pruned graph with its weights sliced (see the module docstring)."""
    ids = _check_ids(deps, zero)
    value_keep = {name: ~np.isin(groups, ids) for name, groups in deps.value_groups.items()}
    values: dict[str, Value] = {}
    for name, value in graph.values.items():
        keep = value_keep.get(name)
        if keep is None or keep.all():
            values[name] = value
            continue
        if not keep.any():
            producer = graph.producer(name)
            where = f" (made by node '{producer.id}', from '{producer.source}')" if producer else ""
            raise AsgnasError(
                f"removing groups {ids.tolist()} would leave value '%{name}'{where} with no channels; "
                "keep at least one group of every layer"
            )
        shape = list(value.shape)
        shape[value.channel_axis] = int(keep.sum())  # type: ignore[index]
        values[name] = value.model_copy(update={"shape": tuple(shape)})

    params: dict[str, Param] = {}
    weights: dict[str, np.ndarray] = {}
    for name, param in graph.params.items():
        array = graph.weights.get(name)
        shape = list(param.shape)
        for axis, groups in deps.param_groups.get(name, {}).items():
            keep = ~np.isin(groups, ids)
            shape[axis] = int(keep.sum())
            if array is not None and not keep.all():
                array = np.compress(keep, array, axis=axis)
        params[name] = param.model_copy(update={"shape": tuple(shape)})
        if array is not None:
            weights[name] = contiguous(array)

    for node in graph.nodes:
        if node.op is Op.CONSTANT:  # a per-channel param read as a value (layer scale) shrinks with its slices
            values[node.outputs[0]] = values[node.outputs[0]].model_copy(update={"shape": params[node.params["value"]].shape})

    nodes = []
    for node in graph.nodes:
        rule = opdef(node.op).resize
        if rule is None:
            nodes.append(node)
            continue
        ctx = ResizeCtx(
            node=node,
            old_inputs=[graph.values[i] for i in node.inputs],
            new_input_shapes=[values[i].shape for i in node.inputs],
            old_outputs=[graph.values[o] for o in node.outputs],
            new_output_shapes=[values[o].shape for o in node.outputs],
            input_keep=[value_keep.get(i) for i in node.inputs],
        )
        nodes.append(node.model_copy(update={"attrs": rule(ctx)}))

    sub = Graph.model_construct(
        schema_version=graph.schema_version,
        name=graph.name,
        inputs=list(graph.inputs),
        outputs=list(graph.outputs),
        values=values,
        params=params,
        nodes=nodes,
        meta=graph.meta.model_copy(deep=True),
    )
    inferred = infer_values(sub)
    for node in sub.nodes:
        for name in node.outputs:
            if inferred[name].shape != values[name].shape:
                raise PassError(
                    f"subnet: node '{node.id}' ({node.op.value}, from '{node.source}') gives "
                    f"{inferred[name].text()} after slicing but its channels say {values[name].text()}; "
                    "this is a bug in the op's resize rule"
                )
    sub = Graph.model_validate(sub.model_dump())
    sub.set_weights(weights)
    return sub


@register_pass
class Subnet(Pass):
    name = "subnet"
    description = "Remove the zeroed groups: slice channels out of values and params, resize attributes."
    kind = "transform"
    requires = ("dependency-graph",)

    def run(self, graph: Graph, zero_groups: Iterable[int] = (), mode: str = "prune") -> PassResult:
        if mode != "prune":
            raise AsgnasError(f"subnet mode '{mode}' is not available in this version yet; use mode='prune'")
        deps = analysis("dependency-graph", graph)
        sub = build_subnet(graph, deps, zero_groups)
        return PassResult(graph=sub, modified=sub.model_dump() != graph.model_dump())
