"""subnet: the sub-network left when the given groups are removed (functional transform).

Prune mode: every channel whose group is zeroed leaves every value it lives on and every param
slice recorded for it; ops whose attributes count channels (groups, split sizes, reshape targets)
are resized by their OpDef.

Erase and both modes: the nodes of each zeroed removal structure are deleted. An `add` that loses an
operand keeps the others, and a `concat` also loses that operand's channels, which are sliced out of
everything downstream by the channel groups they belong to. A joint left with one operand becomes
that operand, and nodes that then reach no output (dead branches) are dropped with their params.
The selection must be valid (`SearchSpace.is_valid`), otherwise the pass says why.

The new graph's types are re-inferred from the op rules and must equal the sliced types: a
disagreement is a bug, reported with the node, never written out.

Invariant: for weights in which the zeroed groups' slices are zero, the sub-network computes the
same outputs as the full network (up to float rounding from the shorter sums).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import numpy as np

from asgnas_ir.errors import AsgnasError, PassError
from asgnas_ir.ir.graph import Graph, Param, Value, contiguous
from asgnas_ir.ir.node import NodeBase, make_node
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs import ResizeCtx, opdef
from asgnas_ir.pass_manager import Pass, PassResult, analysis, register_pass
from asgnas_ir.passes.analysis.dependency_graph import DependencyGraph
from asgnas_ir.passes.analysis.search_space import SearchSpace
from asgnas_ir.passes.analysis.shape_inference import infer_values


def _check_ids(deps: DependencyGraph, zero: Iterable[int]) -> np.ndarray:
    ids = np.asarray(sorted(set(int(i) for i in zero)), dtype=np.int64)
    bad = [int(i) for i in ids if not 0 <= i < len(deps.groups)]
    if bad:
        raise AsgnasError(
            f"zero-group id(s) {bad} do not exist: the graph has {len(deps.groups)} channel groups "
            f"(ids 0..{len(deps.groups) - 1}); list them with `asgnas space IR.json`"
        )
    return ids


def build_subnet(graph: Graph, deps: DependencyGraph, zero: Iterable[int], erase: Collection[str] = ()) -> Graph:
    """The sub-network with channel groups `zero` sliced away and nodes `erase` deleted.

    An `add` or `concat` that loses an operand to erasure keeps the others (with one left it
    becomes that operand); nodes that then reach no output are dropped, and so are their params.
    """
    ids = _check_ids(deps, zero)
    erased = set(erase)
    erased_values = {o for n in graph.nodes if n.id in erased for o in n.outputs}
    value_keep = {name: ~np.isin(groups, ids) for name, groups in deps.value_groups.items()}
    values: dict[str, Value] = {}
    emptied: set[str] = set()  # an error only if the value survives dead-code elimination
    for name, value in graph.values.items():
        keep = value_keep.get(name)
        if name in erased_values:
            continue
        if keep is None or keep.all():
            values[name] = value
            continue
        if not keep.any():
            emptied.add(name)
            continue
        shape = list(value.shape)
        shape[value.channel_axis] = int(keep.sum())  # type: ignore[index]
        values[name] = value.with_shape(tuple(shape))

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
        if node.op is Op.CONSTANT and node.id not in erased and node.outputs[0] in values:
            # a per-channel param read as a value (layer scale) shrinks with its slices
            values[node.outputs[0]] = values[node.outputs[0]].with_shape(params[node.params["value"]].shape)

    nodes, rename, vanished = _rewire(graph, erased, erased_values, values)
    outputs = [rename.get(o, o) for o in graph.outputs]
    nodes, outputs = _keep_named_outputs(graph, nodes, outputs, values)
    lost = [o for o in outputs if o in vanished]
    if lost:
        node = graph.producer(lost[0])
        raise AsgnasError(f"removing these groups leaves node '{node.id}' (from '{node.source}') with no inputs")  # type: ignore[union-attr]
    nodes = _live_nodes(nodes, outputs)
    for name in (v for n in nodes for v in (*n.inputs, *n.outputs) if v in emptied):
        producer = graph.producer(name)
        where = f" (made by node '{producer.id}', from '{producer.source}')" if producer else ""
        raise AsgnasError(
            f"removing groups {ids.tolist()} would leave value '%{name}'{where} with no channels; "
            "keep at least one group of every layer"
        )
    resized = []
    for node in nodes:
        rule = opdef(node.op).resize
        if rule is None:
            resized.append(node)
            continue
        # The rule compares the node's own old inputs with what now feeds it: when a joint left with
        # one operand was replaced by it, the old input is the joint's value (with its keep mask), not
        # the operand's, or a group norm after a concat would keep its group count over fewer channels.
        old_names = graph.node(node.id).inputs
        if len(old_names) != len(node.inputs):  # a joint that lost operands: its rule reads the new ones
            old_names = node.inputs
        ctx = ResizeCtx(
            node=node,
            old_inputs=[graph.values[i] for i in old_names],
            new_input_shapes=[values[i].shape for i in node.inputs],
            old_outputs=[graph.values[o] for o in node.outputs],
            new_output_shapes=[values[o].shape for o in node.outputs],
            input_keep=[value_keep.get(i) for i in old_names],
        )
        resized.append(node.model_copy(update={"attrs": rule(ctx)}))

    used_values = set(graph.inputs) | {v for n in resized for v in (*n.inputs, *n.outputs)}
    used_params = {p for n in resized for p in n.params.values()}
    sub = Graph.model_construct(
        schema_version=graph.schema_version,
        name=graph.name,
        inputs=list(graph.inputs),
        outputs=outputs,
        values={k: v for k, v in values.items() if k in used_values},
        params={k: v for k, v in params.items() if k in used_params},
        nodes=resized,
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
    sub.set_weights({k: v for k, v in weights.items() if k in used_params})
    return sub


def _rewire(
    graph: Graph, erased: set[str], erased_values: set[str], values: dict[str, Value]
) -> tuple[list[NodeBase], dict[str, str], set[str]]:
    """Drop erased nodes; joints lose the erased operands and, left with one, become it.

    A joint that loses every operand vanishes, and so does everything fed only through it; the third
    result names the values that vanished. In a valid selection only dead nodes vanish (the segment
    graph's rule: whatever still reaches an output is reachable from an input), for example a
    joint whose branches and whose consumer chain were all removed; the caller checks the outputs.
    """
    rename: dict[str, str] = {}
    nodes: list[NodeBase] = []
    vanished: set[str] = set()
    for node in graph.nodes:
        if node.id in erased:
            continue
        inputs = [rename.get(i, i) for i in node.inputs]
        if any(i in vanished for i in inputs) and node.op not in (Op.ADD, Op.CONCAT):
            vanished.update(node.outputs)
            continue
        kept = [i for i in inputs if i not in erased_values and i not in vanished]
        if len(kept) != len(inputs):
            if node.op not in (Op.ADD, Op.CONCAT):
                raise PassError(
                    f"subnet: node '{node.id}' ({node.op.value}, from '{node.source}') reads an erased value but "
                    "is not an add or concat; the search space should not have offered that removal"
                )
            if not kept:
                vanished.update(node.outputs)
                continue
            if len(kept) == 1:
                rename[node.outputs[0]] = kept[0]
                values.pop(node.outputs[0], None)
                continue
        nodes.append(node.model_copy(update={"inputs": kept}) if kept != node.inputs else node)
    return nodes, rename, vanished


def _keep_named_outputs(
    graph: Graph, nodes: list[NodeBase], outputs: list[str], values: dict[str, Value]
) -> tuple[list[NodeBase], list[str]]:
    """A graph output that a joint left with one operand would hand over to that operand keeps its own
    value (through an identity) when the source model named it (a Keras dict key, an ONNX output name)
    or when two outputs would become one value: codegen reads outputs by those names, and a renamed
    output would come back under the operand's name, or in the wrong place of a dict."""
    taken: set[str] = set()
    final = []
    for old, new in zip(graph.outputs, outputs, strict=True):
        if new != old and (old in graph.meta.io_names or new in taken or new in graph.outputs):
            values[old] = values[new]
            producer = graph.producer(old)
            nodes = [*nodes, make_node(Op.IDENTITY, f"{old}_kept", [new], [old], source=producer.source if producer else "")]
            new = old
        taken.add(new)
        final.append(new)
    return nodes, final


def _live_nodes(nodes: list[NodeBase], outputs: list[str]) -> list[NodeBase]:
    """Nodes some graph output depends on (dead-code elimination, in one backward sweep)."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if any(o in needed for o in node.outputs):
            live.append(node)
            needed.update(node.inputs)
    return live[::-1]


@register_pass
class Subnet(Pass):
    name = "subnet"
    description = "Remove the zeroed groups: slice channels out of values and params, resize attributes."
    kind = "transform"
    requires = ("dependency-graph",)

    def run(self, graph: Graph, zero_groups: Iterable[int] = (), mode: str = "prune") -> PassResult:
        deps = analysis("dependency-graph", graph)
        ids = sorted({int(i) for i in zero_groups})
        if mode == "prune":
            sub = build_subnet(graph, deps, ids)
        else:
            space: SearchSpace = analysis("search-space", graph, mode=mode)
            for gid in ids:
                space.group(gid)
            if not space.is_valid(ids):
                raise AsgnasError(f"cannot remove groups {ids[:20]}: {space.explain_invalid(ids)}; choose a valid set")
            channel_ids = [gid for gid in ids if space.group(gid).kind == "channel"]
            erase: set[str] = set()
            for gid in space.operator_ids(ids):
                group = space.group(gid)
                erase.update(group.nodes)
                out = graph.node(group.nodes[-1]).outputs[0]
                if any(user.op is Op.CONCAT for user in graph.users(out)):
                    channel_ids.extend(deps.value_groups[out])
            sub = build_subnet(graph, deps, channel_ids, erase)
        return PassResult(graph=sub, modified=sub.model_dump() != graph.model_dump())
