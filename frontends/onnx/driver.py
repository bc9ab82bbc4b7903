"""Lower an ONNX model (a ModelProto or a .onnx path) into the IR.

Steps: fix the graph inputs' shapes (from the example inputs, else symbolic dims become 1);
drop the shapes the file declares (`value_info`, outputs) except for custom-domain outputs, since a
wrong one would otherwise be believed; inline local functions; run ONNX shape inference with data
propagation (every value gets a static shape); mark the constant part of the graph (initializers, `Constant`, `Shape`/`Size` of values
with static shapes, and anything computed only from those); scan the rest for ops without a
converter and raise one `UnsupportedOpError` listing them all (or keep them as opaque nodes); then
walk the nodes in order, folding constants with numpy / `onnx.reference` and converting the others,
checking each lowered shape against ONNX's. Converters of patterns (MatMul + bias Add, exact GELU,
the GroupNorm decomposition) may lower later nodes too; the driver skips those, and drops what the
pattern left unused at the end.

A graph torch's dynamo exporter wrote says, on each node, which modules' forwards it ran in
(`_module_scope`): every IR node lowered from an ONNX node gets that node's innermost module as its
scope (`GraphMeta.scopes`, with `GraphMeta.modules`), as the fx frontend records them, so generated
torch code nests like the source. Other graphs leave both empty.
"""

from __future__ import annotations

import ast
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from asgnas_ir.errors import FrontendError, SpecError, UnsupportedOp, UnsupportedOpError
from asgnas_ir.frontends._layout import choose_sequence_layout, read_packed_splits_on_features
from asgnas_ir.frontends.onnx.builder import FUSED, ONNX_DTYPES, Builder, Const, OnnxTensorType, Origin
from asgnas_ir.frontends.onnx.inputs import check_example_dtypes, shape_overrides
from asgnas_ir.frontends.onnx.ops import lookup
from asgnas_ir.frontends.onnx.sized import symbolic_axes, unfold_sized
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Graph, GraphMeta, Value

# Ops whose result has the input's elements in the input's order: a constant seen through them
# still binds to its initializer.
_VIEW_OPS = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Cast", "CastLike", "Expand"}
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
_DOMAINS = ("", "ai.onnx")
_RECURRENT = {"LSTM", "GRU", "RNN"}


def load_onnx(model: Any) -> onnx.ModelProto:
    """A ModelProto from a ModelProto or a path (external data next to the file is loaded too)."""
    if isinstance(model, onnx.ModelProto):
        _require_external_data(model)
        return model
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise SpecError(f"ONNX file '{path}' does not exist")
        try:
            return onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001  (protobuf raises several types)
            raise FrontendError(f"'{path}' is not a readable ONNX model: {type(exc).__name__}: {exc}") from None
    raise SpecError(f"the onnx frontend needs an onnx.ModelProto or a .onnx path, got {type(model).__name__}")


def _require_external_data(model: onnx.ModelProto) -> None:
    """Refuse a ModelProto whose initializers still point at external files.

    `onnx.load(path, load_external_data=False)` leaves such tensors empty, and a ModelProto does
    not know the folder its files lie in, so nothing here can read them; every later step would
    fail on an empty tensor with a message about something else.
    """
    from onnx.external_data_helper import uses_external_data

    missing = [t for t in model.graph.initializer if uses_external_data(t)]
    if not missing:
        return
    where = {e.key: e.value for e in missing[0].external_data}
    names = ", ".join(f"'{t.name}'" for t in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    raise FrontendError(
        f"the ONNX model's initializers {names} keep their data in an external file ('{where.get('location', '?')}') "
        "that was not loaded; pass the .onnx path instead (its external data is read from beside it), or load "
        "the data first with onnx.load(path) or onnx.load_external_data_for_model(model, folder)"
    )


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real graph inputs (older exporters also list every initializer as an input)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_specs(model: onnx.ModelProto) -> list[tuple[str, tuple[int, ...]]]:
    """(dtype, shape) of each graph input; symbolic or unknown dims are taken as 1."""
    specs = []
    for item in graph_inputs(model):
        ttype = item.type.tensor_type
        dtype = ONNX_DTYPES.get(ttype.elem_type)
        if dtype is None:
            raise FrontendError(f"ONNX graph input '{item.name}' has an unsupported element type {ttype.elem_type}")
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in ttype.shape.dim)
        specs.append((dtype, dims))
    return specs


_DATA_KEPT = 4096  # initializers up to this many elements keep their data for shape inference


def _skeleton(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model without the data of its large initializers, and every initializer as an array.

    Shape inference serializes the model it is given; with the weights of a VGG that is half a
    gigabyte per call. Only small initializers (shapes, axes, scalars) matter to it, so the rest
    keep their name, type and dims and lose their data.
    """
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    graph = onnx.GraphProto(name=model.graph.name, doc_string=model.graph.doc_string)
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    for init in model.graph.initializer:
        if int(np.prod(init.dims, dtype=np.int64)) <= _DATA_KEPT:
            graph.initializer.append(init)
        else:
            graph.initializer.append(onnx.TensorProto(name=init.name, data_type=init.data_type, dims=init.dims))
    skeleton = onnx.ModelProto(ir_version=model.ir_version, producer_name=model.producer_name, producer_version=model.producer_version)
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    skeleton.graph.CopyFrom(graph)
    return skeleton, arrays


def _fix_inputs(model: onnx.ModelProto, shapes: list[tuple[int, ...]] | None) -> onnx.ModelProto:
    """Pin the input shapes (in place: `model` is the driver's own skeleton copy)."""
    inputs = graph_inputs(model)
    if shapes is not None and len(shapes) != len(inputs):
        raise FrontendError(
            f"the ONNX model has {len(inputs)} input(s) ({', '.join(i.name for i in inputs)}) "
            f"but {len(shapes)} example input(s) were given"
        )
    # Shapes recorded in the file are not trusted where inference computes them: for other input
    # shapes they contradict it, and a wrong `value_info` would otherwise flow into the lowered
    # graph and be the very thing each lowered shape is checked against. The outputs of
    # custom-domain nodes keep theirs (with the file's own input shapes), since inference knows
    # nothing else about them and needs them for what follows.
    custom = {out for node in model.graph.node if node.domain not in _DOMAINS for out in node.output} if shapes is None else set()
    kept = [info for info in model.graph.value_info if info.name in custom]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    for out in model.graph.output:
        if out.name not in custom:
            out.type.tensor_type.ClearField("shape")
    for i, item in enumerate(inputs):
        dims = item.type.tensor_type.shape.dim
        wanted = shapes[i] if shapes is not None else tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)
        if len(dims) and len(dims) != len(wanted):
            raise FrontendError(f"ONNX input '{item.name}' has rank {len(dims)} but the example input has shape {list(wanted)}")
        item.type.tensor_type.ClearField("shape")
        for d in wanted:
            item.type.tensor_type.shape.dim.add().dim_value = int(d)
    return model


def _types(model: onnx.ModelProto) -> dict[str, OnnxTensorType]:
    types: dict[str, OnnxTensorType] = {}
    g = model.graph
    for info in [*g.input, *g.value_info, *g.output]:
        if not info.type.HasField("tensor_type"):
            continue
        ttype = info.type.tensor_type
        shape = None
        if ttype.HasField("shape") and all(d.HasField("dim_value") for d in ttype.shape.dim):
            shape = tuple(int(d.dim_value) for d in ttype.shape.dim)
        types[info.name] = OnnxTensorType(shape=shape, dtype=ONNX_DTYPES.get(ttype.elem_type))
    return types


def _declared_fallback(declared: dict[str, OnnxTensorType], types: dict[str, OnnxTensorType], nodes: list[onnx.NodeProto]) -> None:
    """Complete `types` (from inference) with the shapes the file declares in `value_info` and its
    outputs where inference gives none (outputs of custom-domain ops). Where both exist and
    disagree, the file's metadata is wrong: the computed shape is kept, with a warning naming the
    value and the node that computes it. Only for the file's own input shapes (no example inputs)."""
    producer = {out: node for node in nodes for out in node.output}
    wrong = []
    for name, found in declared.items():
        computed = types.get(name)
        if computed is None or computed.shape is None:
            types[name] = OnnxTensorType(found.shape, (computed.dtype if computed is not None else None) or found.dtype)
        elif found.shape is not None and found.shape != computed.shape:
            node = producer.get(name)
            where = f" (output of node '{node.name or node.output[0]}', {node.op_type})" if node is not None else ""
            wrong.append(f"'{name}'{where} is declared {list(found.shape)} but computes to {list(computed.shape)}")
    if wrong:
        more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
        warnings.warn(
            "the ONNX file's value_info / output shapes disagree with the shapes its graph computes; "
            f"the computed shapes are used: {'; '.join(wrong[:5])}{more}",
            stacklevel=5,
        )


def _opset(model: onnx.ModelProto) -> int:
    for item in model.opset_import:
        if item.domain in _DOMAINS:
            return int(item.version)
    return 1


def _shape_flags(node: onnx.NodeProto, flags: dict[str, list[bool]], constants: dict[str, np.ndarray],
                 types: dict[str, OnnxTensorType], batched: dict[str, set[int]]) -> list[bool] | None:
    """Which entries of `node`'s (integer vector) output are read off a batch or sequence dim (the
    axes `batched` names per tensor), for the few ops shape arithmetic goes through; None for any
    other op or unknown operand."""
    op = node.op_type

    def entries(name: str) -> list[bool] | None:
        if name in flags:
            return flags[name]
        if name in constants:
            return [False] * int(np.asarray(constants[name]).size)
        return None

    if op == "Shape":
        found = types.get(node.input[0])
        if node.input[0] in flags:  # the length of a shape vector is a rank
            return [False]
        if found is None or found.shape is None:
            return None
        axes = batched.get(node.input[0], set())
        rank = len(found.shape)
        start = int(next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "start"), 0))
        stop = next((int(onnx.helper.get_attribute_value(a)) for a in node.attribute if a.name == "end"), rank)
        return [axis in axes for axis in range(rank)][slice(start, stop)]
    if op == "Where" and len(node.input) == 3:
        # TorchScript writes expand(-1 ...) as Where(Equal(shape, -1), ConstantOfShape(...), shape): the
        # filled branch holds no size, and its length is not known before folding
        branches = [found for found in (entries(node.input[1]), entries(node.input[2])) if found is not None]
        if len(branches) == 2 and len(branches[0]) == len(branches[1]):
            return [a or c for a, c in zip(branches[0], branches[1], strict=True)]
        return branches[0] if len(branches) == 1 else None
    first = entries(node.input[0]) if node.input else None
    if first is None:
        return None
    if op in ("Squeeze", "Unsqueeze", "Reshape", "Cast", "Identity", "Flatten"):
        return first
    if op == "Gather" and node.input[1] in constants:
        return [first[int(i)] for i in np.asarray(constants[node.input[1]]).reshape(-1)]
    if op == "Slice" and all(name in constants for name in node.input[1:3]):
        begin, stop = (int(np.asarray(constants[name]).reshape(-1)[0]) for name in node.input[1:3])
        step = int(np.asarray(constants[node.input[4]]).reshape(-1)[0]) if len(node.input) > 4 and node.input[4] in constants else 1
        return first[slice(begin, stop, step)]
    if op == "Concat":
        parts = [entries(name) for name in node.input]
        return None if any(part is None for part in parts) else [f for part in parts for f in part]  # type: ignore[union-attr]
    if op in ("Add", "Sub", "Mul", "Div", "Max", "Min") and len(node.input) == 2:
        second = entries(node.input[1])
        if second is None or (len(first) != len(second) and 1 not in (len(first), len(second))):
            return None
        size = max(len(first), len(second))
        return [(first[i] if len(first) > 1 else first[0]) or (second[i] if len(second) > 1 else second[0]) for i in range(size)]
    return None


def _batch_sized_expands(model: onnx.ModelProto, nodes: list[onnx.NodeProto], types: dict[str, OnnxTensorType]) -> set[str]:
    """Outputs of the Expand nodes whose target shape is read off a batch or sequence dim.

    NOTE: [Input-sized expands] An exporter that reads the batch off the input writes ViT's class
    token broadcast `cls_token.expand(x.shape[0], -1, -1)` as Expand(constant, Concat(Shape(x)[0],
    ...)). Folded, it would be a constant of the example's batch, which generated code cannot
    rebuild at another; at a batch of 1 it even vanishes (an expand to the same shape), so the graph
    would have other nodes at other batches and its dims could not be found symbolic
    (`frontends/_symbolic.py`). Such an Expand stays an expand node, whatever the example's sizes.
    Only these: an Expand to a shape read off other dims (an affine-free norm's ones, as many as the
    channels) is a constant like any other, and so is an Expand of what the model computed from
    sizes alone (position ids, a causal mask), which is rebuilt at the call's sizes instead (NOTE:
    [Sized constants]); an Expand of a weight or an activation stays. The entries a shape vector reads off a batch dim are
    followed through the ops shape arithmetic uses (`_shape_flags`); axis 0 of an activation counts
    as its batch, and axis 1 of an integer input as its sequence."""
    if not any(n.op_type == "Expand" for n in nodes):
        return set()
    # an activation's axis 0 is its batch; a value computed from weights alone (a Max over an index
    # buffer, LeViT) has none, whatever its first dim
    runtime = {i.name for i in graph_inputs(model)}
    for node in nodes:
        if any(name in runtime for name in node.input):
            runtime.update(node.output)
    batched: dict[str, set[int]] = {name: {0} for name in runtime}
    for item in graph_inputs(model):
        ttype = item.type.tensor_type
        token = len(ttype.shape.dim) >= 2 and ONNX_DTYPES.get(ttype.elem_type, "").startswith(("int", "uint"))
        batched[item.name] = {0, 1} if token else {0}
    constants = _small_constants(model.graph)
    # what reads a float initializer: a weight broadcast to the batch stays bound to the weight; an
    # expand of what the model computed from sizes alone (position ids, a causal mask) is folded and
    # rebuilt at the call's sizes instead (NOTE: [Sized constants])
    weighted = {i.name for i in model.graph.initializer if i.data_type in (1, 10, 11, 16)} | {i.name for i in graph_inputs(model)}
    flags: dict[str, list[bool]] = {}
    sized: set[str] = set()
    for node in nodes:
        if node.domain not in _DOMAINS or not node.output:
            continue
        if node.op_type not in ("Shape", "Size") and any(name in weighted for name in node.input):
            weighted.update(node.output)
        if node.op_type == "Expand":
            target = flags.get(node.input[1]) if len(node.input) > 1 else None
            if target is not None and any(target) and node.input[0] in weighted:
                sized.add(node.output[0])
            continue
        found = _shape_flags(node, flags, constants, types, batched)
        if found is not None:
            flags[node.output[0]] = found
    return sized


def _constant_nodes(
    model: onnx.ModelProto, nodes: list[onnx.NodeProto], types: dict[str, OnnxTensorType], sized: set[str] | frozenset[str] = frozenset(),
) -> set[int]:
    """Ids of the nodes the driver folds: their inputs are all known at lowering time, and they are
    no Expand to the inputs' batch (`sized`, NOTE: [Input-sized expands])."""
    known = {i.name for i in model.graph.initializer} | {""}
    # a lookup into a float weight table stays an embedding even with constant indices (positions)
    tables = {i.name for i in model.graph.initializer if len(i.dims) == 2 and i.data_type in (1, 10, 11, 16)}
    folded: set[int] = set()
    for node in nodes:
        if node.domain not in _DOMAINS or node.op_type in _NONDETERMINISTIC:
            continue
        if node.op_type == "Expand" and node.output[0] in sized:
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            continue
        static_shape = node.op_type in ("Shape", "Size") and types.get(node.input[0], OnnxTensorType(None, None)).shape is not None
        # CastLike reads only the dtype of its second input, which shape inference knows
        like = node.op_type == "CastLike" and node.input[0] in known and types.get(node.input[1], OnnxTensorType(None, None)).dtype
        if node.op_type in ("Transpose", "Identity") and node.input[0] in tables:
            tables.update(node.output)  # a view of a table is still a table (folded, origin kept)
        elif node.op_type in ("Gather", "GatherND") and node.input[0] in tables:
            continue
        if node.op_type == "Constant" or static_shape or like or all(i in known for i in node.input):
            folded.add(id(node))
            known.update(node.output)
    return folded


def _fold(b: Builder, node: onnx.NodeProto, opset: int) -> list[Const]:
    """Evaluate a node whose inputs are all constant; keep the initializer a view of one came from."""
    op = node.op_type
    if op == "Constant":
        for name in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            value = b.attr(node, name)
            if value is not None:
                dtype = np.float32 if "float" in name else (np.int64 if "int" in name else None)
                return [Const(np.asarray(value, dtype=dtype))]
        raise b.fail("Constant with a sparse or string value is not supported")
    if op in ("Shape", "Size"):
        source = b.env.get(node.input[0])
        shape = source.array.shape if isinstance(source, Const) else b.types[node.input[0]].shape
        if op == "Size":
            return [Const(np.asarray(int(np.prod(shape)), dtype=np.int64))]
        start, end = b.attr(node, "start", 0), b.attr(node, "end", None)
        return [Const(np.asarray(shape[start:end], dtype=np.int64))]
    if op == "CastLike":
        target = b.env.get(node.input[1])
        dtype = target.array.dtype if isinstance(target, Const) else np.dtype(b.types[node.input[1]].dtype)
        first = b.get(node.input[0])
        same = first.array.dtype == dtype
        return [Const(first.array.astype(dtype), first.origin if same else None)]
    feeds = {name: b.get(name).array for name in node.input if name}
    if op == "GatherElements":
        # onnx.reference's GatherElements fails whenever a leading axis has size 1 (onnx 1.23: BERT's
        # token_type_ids buffer [1, max_len] gathered at the positions); numpy's is the same op
        data, index = (np.asarray(feeds[name]) for name in node.input[:2])
        axis = int(b.attr(node, "axis", 0)) % max(data.ndim, 1)
        index = np.where(index < 0, index + data.shape[axis], index)
        return [Const(np.take_along_axis(data, index, axis=axis))]
    from onnx.reference import ReferenceEvaluator

    try:
        # the model's own arithmetic, which torch runs without a word: T5's log(0) = -inf in the
        # relative-position buckets it then discards, cast to an integer
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            results = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
    except Exception as exc:  # noqa: BLE001  (the reference runtime raises many types)
        raise b.fail(f"folding this constant computation failed: {type(exc).__name__}: {exc}") from None
    consts = [Const(np.asarray(r)) for r in results]
    if op == "Concat" and consts:
        pieces = tuple(b.get(name) for name in node.input if name)
        # a concatenation that read a weight stays one, of the bound weights (NOTE: [Folded weights are frozen])
        if len(pieces) > 1 and any(p.origin is not None or p.pieces is not None for p in pieces) and consts[0].array.dtype.kind == "f":
            consts[0].pieces = pieces
            consts[0].axis = int(b.attr(node, "axis")) % max(consts[0].array.ndim, 1)
        return consts
    kept = _identity_operand(b, node)
    if kept is not None and consts and consts[0].array.shape == kept.array.shape and consts[0].array.dtype == kept.array.dtype:
        consts[0].origin, consts[0].pieces, consts[0].axis = kept.origin, kept.pieces, kept.axis
        return consts
    first = b.get(node.input[0]) if node.input and node.input[0] else None
    if isinstance(first, Const) and first.origin is not None and consts:
        out = consts[0]
        if op in _VIEW_OPS and first.origin.perm is None and out.array.dtype == first.array.dtype and out.array.size == first.array.size:
            out.origin = first.origin
        elif op == "Transpose" and first.origin.perm is None and first.array.ndim == 2 and b.initializers[first.origin.name].ndim == 2:
            perm = tuple(b.attr(node, "perm", None) or (1, 0))
            out.origin = first.origin if perm == (0, 1) else Origin(first.origin.name, (1, 0))
    return consts


def _small_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The values of `Constant` nodes and of initializers that kept their data (see `_skeleton`)."""
    found: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        if int(np.prod(init.dims, dtype=np.int64)) <= _DATA_KEPT:
            found[init.name] = numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in _DOMAINS:
            for a in node.attribute:
                if a.name in ("value", "value_int", "value_ints"):
                    value = onnx.helper.get_attribute_value(a)
                    found[node.output[0]] = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)
    return found


def _split_sequences(model: onnx.ModelProto) -> None:
    """Rewrite, in place, `SplitToSequence(x, sizes)` read only by `SequenceAt` at constant positions
    into one `Split` whose outputs those reads become (as `Identity` nodes).

    torch's exporter writes `torch.split(x, [16, 16, 64])` so (LeViT, EfficientFormer-V2, TinyViT
    attention). ONNX shape inference gives a sequence's elements one shape for all, so pieces of
    different sizes lose their shapes there and so does everything computed from them; a `Split`
    keeps one shape per piece."""
    graph = model.graph
    constants = _small_constants(graph)
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    outputs = {o.name for o in graph.output}
    opset = _opset(model)
    for node in graph.node:
        if node.op_type != "SplitToSequence" or node.domain not in _DOMAINS or len(node.input) < 2 or node.input[1] not in constants:
            continue
        sizes = [int(v) for v in np.asarray(constants[node.input[1]]).reshape(-1)]
        sequence = node.output[0]
        reads = readers[sequence]
        if np.asarray(constants[node.input[1]]).ndim != 1 or sequence in outputs or not reads or any(
            r.op_type != "SequenceAt" or r.input[1] not in constants for r in reads
        ):
            continue
        pieces = [f"{sequence}__piece{i}" for i in range(len(sizes))]
        axis = next((a for a in node.attribute if a.name == "axis"), None)
        node.op_type = "Split"
        del node.output[:]
        node.output.extend(pieces)
        del node.attribute[:]
        if axis is not None:
            node.attribute.append(axis)
        if opset < 13:  # the sizes were an attribute before opset 13
            del node.input[1:]
            node.attribute.append(onnx.helper.make_attribute("split", sizes))
        for read in reads:
            position = int(np.asarray(constants[read.input[1]]).reshape(-1)[0]) % len(sizes)
            read.op_type = "Identity"
            del read.input[:]
            read.input.append(pieces[position])


_IDENTITY_OPERAND = {"Mul": (1.0, (0, 1)), "Div": (1.0, (0,)), "Add": (0.0, (0, 1)), "Sub": (0.0, (0,))}


def _identity_operand(b: Builder, node: onnx.NodeProto) -> Const | None:
    """The operand of `x * 1`, `1 * x`, `x / 1`, `x + 0`, `0 + x` or `x - 0` (the other a scalar
    constant), when it is a weight: the result is that weight, whatever values it takes later
    (`torch.addcmul(beta, alpha, x)` exports `alpha * 1`)."""
    rule = _IDENTITY_OPERAND.get(node.op_type)
    if rule is None or len(node.input) != 2:
        return None
    neutral, positions = rule
    for position in positions:
        kept, other = b.get(node.input[position]), b.get(node.input[1 - position])
        if (isinstance(kept, Const) and (kept.origin is not None or kept.pieces is not None) and isinstance(other, Const)
                and other.array.size == 1 and float(np.asarray(other.array).reshape(-1)[0]) == neutral):
            return kept
    return None


def _typed(array: np.ndarray, name: str) -> onnx.TensorProto:
    """An initializer for shape inference: the data when small, else only name, type and dims."""
    if array.size <= _DATA_KEPT:
        return numpy_helper.from_array(array, name)
    return onnx.TensorProto(name=name, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)


def _refine_types(proto: onnx.ModelProto, nodes: list[onnx.NodeProto], folded: set[int], env: dict[str, Any]) -> dict[str, OnnxTensorType]:
    """Shape inference again with every folded value as an initializer: data propagation misses
    shapes computed through some ops (a Reshape of a Constant inside a Concat), folding does not."""
    g = onnx.helper.make_graph(
        [n for n in nodes if id(n) not in folded],
        proto.graph.name,
        list(graph_inputs(proto)),
        list(proto.graph.output),
        initializer=list(proto.graph.initializer) + [
            _typed(np.asarray(env[out].array), out)
            for n in nodes if id(n) in folded for out in n.output if out and isinstance(env.get(out), Const)
        ],
    )
    refined = onnx.helper.make_model(g, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    refined = onnx.shape_inference.infer_shapes(refined, check_type=False, strict_mode=False, data_prop=True)
    return {k: v for k, v in _types(refined).items() if v.shape is not None}


def _collect_unsupported(nodes: list[onnx.NodeProto], folded: set[int], opset: int) -> dict[str, list[str]]:
    missing: dict[str, list[str]] = defaultdict(list)
    for node in nodes:
        if id(node) in folded:
            continue
        if node.domain not in _DOMAINS or lookup(node.op_type, opset) is None:
            key = node.op_type if node.domain in _DOMAINS else f"{node.domain}::{node.op_type}"
            missing[key].append(f"'{node.name or node.output[0]}'")
    return missing


def lower_onnx(
    model: Any,
    example_inputs: Any = None,
    on_unsupported: str = "error",
    *,
    source_names: dict[str, str] | None = None,
    trainable: dict[str, bool] | None = None,
    framework: str = "onnx",
    name: str | None = None,
    module_prefix: str = "",
) -> Graph:
    """Lower an ONNX model into an IR Graph with its weights.

    Args:
        model: an `onnx.ModelProto` or a path to a `.onnx` file.
        example_inputs: arrays or tensors (anything with `.shape`) fixing the input shapes; by
            default the declared shapes, with symbolic dims taken as 1.
        on_unsupported: `error` or `opaque`.
        source_names: initializer name -> `Param.source` (the torch path when exported from torch).
        trainable: `Param.source` -> whether it is trainable (torch parameters vs buffers).
        framework: `GraphMeta.framework` (`torch` when the model was exported from torch).
        module_prefix: what the module paths the exporter recorded carry before the source's own
            (the `model.` of `hf.py`'s adapter), taken off for `GraphMeta.scopes` / `modules`.
    """
    proto = load_onnx(model)
    shapes = None
    if example_inputs:
        shapes = [tuple(int(d) for d in getattr(x, "shape", ())) for x in example_inputs]
    check_example_dtypes(graph_inputs(proto), example_inputs)
    overrides = shape_overrides(graph_inputs(proto), shapes)
    try:
        return _lower_onnx(proto, shapes, on_unsupported, source_names, trainable, framework, name, module_prefix)
    except FrontendError as exc:
        if not overrides:
            raise
        raise FrontendError(
            f"{exc} (the example inputs change sizes the model declares: {'; '.join(overrides)}; "
            "check that these inputs are what the model expects)"
        ) from None


def _lower_onnx(
    proto: onnx.ModelProto, shapes: list[tuple[int, ...]] | None, on_unsupported: str,
    source_names: dict[str, str] | None, trainable: dict[str, bool] | None, framework: str, name: str | None,
    module_prefix: str = "",
) -> Graph:
    proto, initializers = _skeleton(proto)
    input_names = {i.name for i in graph_inputs(proto)}
    declared = {k: v for k, v in _types(proto).items() if k not in input_names}
    # read before the declared types are dropped: which values follow the inputs' sizes (NOTE: [Sized constants])
    sized_axes = symbolic_axes(proto) if shapes is not None else {}
    proto = _fix_inputs(proto, shapes)
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    _split_sequences(proto)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001  (inference errors come as several types)
        raise FrontendError(f"ONNX shape inference failed: {type(exc).__name__}: {exc}") from None
    opset = _opset(proto)
    types = _types(proto)
    if shapes is None:  # declared shapes were recorded for the declared input shapes only
        _declared_fallback(declared, types, list(proto.graph.node))
    # One list of node objects for the whole lowering: the driver and the converters identify
    # nodes by id(), and protobuf makes a fresh Python wrapper on every access to a repeated field.
    nodes = list(proto.graph.node)
    sized = _batch_sized_expands(proto, nodes, types)
    folded = _constant_nodes(proto, nodes, types, sized)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    b = Builder(initializers, types, source_names or {}, opset, consumers, trainable)
    b.input_sized = sized
    for node in nodes:
        for out in node.output:
            b.producers[out] = node
    for init_name, array in initializers.items():
        b.env[init_name] = Const(array, Origin(init_name))

    inputs: list[str] = []
    io_names: dict[str, str] = {}  # IR value -> the ONNX name, where sanitizing changed it
    for item in graph_inputs(proto):
        found = types[item.name]
        rank = len(found.shape or ())
        floating = (found.dtype or "").startswith(("float", "bfloat"))
        value_name = b._fresh_id(item.name)
        b.values[value_name] = Value(shape=found.shape, dtype=found.dtype, channel_axis=1 if rank >= 2 and floating else None)
        b.env[item.name] = value_name
        inputs.append(value_name)
        if value_name != item.name:
            io_names[value_name] = item.name

    # Fold every constant first: pattern converters look ahead at constants defined later. Shape
    # inference sees through some shape arithmetic only once the constants before it are folded
    # (exporters compute window paddings as Shape -> Mod -> Pad), so fold, refine, repeat.
    done: set[int] = set()
    while True:
        for node in nodes:
            if id(node) in folded and id(node) not in done:
                b.current = node
                for out, const in zip(node.output, _fold(b, node, opset), strict=False):
                    b.env[out] = const
                done.add(id(node))
        b.current = None
        if not any(types.get(out, OnnxTensorType(None, None)).shape is None for n in nodes if id(n) not in folded for out in n.output if out):
            break
        types.update(_refine_types(proto, nodes, folded, b.env))
        more = _constant_nodes(proto, nodes, types, sized)
        if more <= folded:
            break
        folded |= more
    b.sized = sized_axes
    if sized_axes:
        graph_outputs = [o.name for o in proto.graph.output]
        unfolded = unfold_sized(nodes, folded, b.env, sized_axes, graph_outputs,
                                lambda n: n.domain in _DOMAINS and lookup(n.op_type, opset) is not None)
        folded -= unfolded
        for node in nodes:  # their outputs' types are the folded arrays' (inference may have left them open)
            if id(node) in unfolded:
                for out in node.output:
                    if out and isinstance(b.env.get(out), Const):
                        array = np.asarray(b.env[out].array)
                        types[out] = OnnxTensorType(tuple(int(d) for d in array.shape), str(array.dtype))
    missing = _collect_unsupported(nodes, folded, opset)
    if missing and on_unsupported != "opaque":
        error = UnsupportedOpError("onnx", [UnsupportedOp(op, tuple(locs)) for op, locs in missing.items()])
        recurrent = [op for op in missing if op in _RECURRENT]
        if recurrent:
            error.args = (
                f"{error}\n{', '.join(recurrent)}: recurrent layers, which the IR has no op for (it holds feed-forward "
                "graphs); as opaque nodes they can be analysed (their channels pinned) but not written by codegen.",
            )
        raise error
    for node in nodes:
        if id(node) not in folded:  # Shape / CastLike read a tensor's type, not its data
            for i in node.input:
                consumers[i].append(node)
    for out in proto.graph.output:
        consumers[out.name].append(onnx.NodeProto())  # a graph output is a consumer too
    scopes: dict[str, str] = {}
    modules: dict[str, str] = {}
    for node in nodes:
        b.current = node
        if id(node) in b.fused or id(node) in folded:
            continue
        first_new = len(b.nodes)
        converter = lookup(node.op_type, opset) if node.domain in _DOMAINS else None
        if converter is None:
            result: Any = _opaque(b, node)
        else:
            result = converter(b, node)
        scope = _module_scope(node, module_prefix, modules)
        if scope is not None:
            scopes.update((made.id, scope) for made in b.nodes[first_new:])
        if result is FUSED:
            continue
        if len(node.output) > 1 and isinstance(result, list):
            for out, item in zip(node.output, result, strict=False):
                if out and item is not None:
                    b.env[out] = item
                    b.check_shape(out, item)
        else:
            b.env[node.output[0]] = result
            b.check_shape(node.output[0], result)
    b.current = None

    outputs = []
    for out in proto.graph.output:
        value = b.env.get(out.name)
        if isinstance(value, Const):
            value = b.constant_node(value, out.name)
        if not isinstance(value, str):
            raise FrontendError(f"ONNX graph output '{out.name}' is not a tensor")
        outputs.append(value)
        if value != out.name and value not in io_names:
            io_names[value] = out.name
    _drop_dead(b, outputs)
    choose_sequence_layout(b.values, b.params, b.nodes, inputs)
    read_packed_splits_on_features(b.values, b.params, b.nodes, inputs)
    kept = {node.id for node in b.nodes}
    scopes = {node_id: scope for node_id, scope in scopes.items() if node_id in kept}
    model_name = name or proto.graph.name or "model"
    versions = {"onnx": onnx.__version__, "opset": str(opset), "ir_version": str(proto.ir_version)}
    if proto.producer_name:
        versions["producer"] = f"{proto.producer_name} {proto.producer_version}".strip()
    graph = Graph(
        name=model_name,
        inputs=inputs,
        outputs=outputs,
        values=dict(b.values),
        params=b.params,
        nodes=b.nodes,
        meta=GraphMeta(
            framework=framework,
            frontend="onnx",
            model_name=model_name,
            layout="channels_first",
            versions=versions,
            output_kind="tuple" if len(outputs) > 1 else "single",
            io_names=io_names,
            scopes=scopes,
            modules=modules if scopes else {},
        ),
    )
    graph.set_weights(b.weights)
    return graph


_NAME_SCOPES = "pkg.torch.onnx.name_scopes"
_CLASSES = "pkg.torch.onnx.class_hierarchy"


def _module_scope(node: onnx.NodeProto, prefix: str, modules: dict[str, str]) -> str | None:
    """The path of the innermost source module whose forward made `node`, as torch's dynamo
    exporter records it, or None where it records none (another producer, a node its own passes
    inserted); the class of each module on the way goes into `modules` (module path -> class name).

    The exporter writes fx's module stack into the node's metadata: `name_scopes` lists the module
    paths from the root (`''`) inwards and ends with the fx node's own name, `class_hierarchy` the
    qualified class of each (and the fx node's target). Paths are the exported module's: `prefix` (an
    adapter's attribute, `hf.py`) is taken off, so they are the paths `Param.source` uses; a module
    called more than once is recorded as `path@1`, which is its path all the same."""
    props = {entry.key: entry.value for entry in node.metadata_props if entry.key in (_NAME_SCOPES, _CLASSES)}
    if _NAME_SCOPES not in props:
        return None
    try:
        names = ast.literal_eval(props[_NAME_SCOPES])
        classes = ast.literal_eval(props.get(_CLASSES, "[]"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(names, list) or len(names) < 2 or names[0] != "" or not all(isinstance(n, str) for n in names):
        return None  # no module stack: a node torch.export's own passes added (a size read for a runtime assert)
    paths = [_module_path(name.partition("@")[0], prefix) for name in names[:-1]]
    if isinstance(classes, list):
        for path, qualified in zip(paths, classes, strict=False):
            if path and isinstance(qualified, str):
                modules.setdefault(path, qualified.rpartition(".")[2])
    return paths[-1]


def _module_path(path: str, prefix: str) -> str:
    """An exported module path as a path in the source model: `prefix` taken off as `hf.strip_prefix`
    takes it off parameter paths (`model.model.layers.0` -> `model.layers.0`). The adapter itself and
    the model it holds (`model`) are both the root, `""`."""
    if not prefix:
        return path
    if path == prefix.removesuffix("."):
        return ""
    return path.removeprefix(prefix) if path.startswith(prefix) else ""


def _opaque(b: Builder, node: onnx.NodeProto) -> list[str] | str:
    tensors = [b.tensor(node, i) for i in range(len(node.input)) if b.has_input(node, i)]
    kwargs = {}
    for a in node.attribute:
        value = b.attr(node, a.name)
        kwargs[a.name] = value.tolist() if isinstance(value, np.ndarray) else value if isinstance(value, (int, float, str, list)) else repr(value)
    attrs = A.OpaqueAttrs(
        target=f"onnx::{node.op_type}" if node.domain in _DOMAINS else f"{node.domain}::{node.op_type}",
        kind="function",
        args=[{"$input": i} for i in range(len(tensors))],
        kwargs=kwargs,
    )
    outs = b.emit_opaque(node, tensors, attrs)
    return outs if len(outs) > 1 else outs[0]


def _drop_dead(b: Builder, outputs: list[str]) -> None:
    """Drop nodes nothing reads (values a pattern converter left behind, folded weights) and their params."""
    while True:
        used = set(outputs)
        for node in b.nodes:
            used.update(node.inputs)
        kept = [n for n in b.nodes if any(o in used for o in n.outputs)]
        if len(kept) == len(b.nodes):
            break
        dropped = {o for n in b.nodes for o in n.outputs} - {o for n in kept for o in n.outputs}
        b.nodes[:] = kept
        for name in dropped:
            b.values.pop(name, None)
    params_used = {p for n in b.nodes for p in n.params.values()}
    for name in list(b.params):
        if name not in params_used:
            del b.params[name]
            b.weights.pop(name, None)


