"""The OnnxPrinter that codegen-onnx builds a model with, and the `ONNX_EMITTERS` table it dispatches on.

The printer owns the naming rules (IR value and param names kept, helper nodes and constants named
`<node id>/<what>`) and the onnx-ir tape; the table maps each IR op to the emitter that writes its
ONNX nodes. Both live here, apart from the emitters, so that the emitter family modules
(`onnx_emitters_*.py`) can register into the table without importing `onnx_codegen`, which imports
them: the import graph stays acyclic. onnx-ir is imported when a printer is created, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from asgnas_ir import __version__
from asgnas_ir.errors import CodegenError
from asgnas_ir.ir.graph import Graph, Param
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.ir.symbolic import parse
from asgnas_ir.passes.codegen._printer import registrar
from asgnas_ir.passes.codegen._symbols import SYMBOL_LOCALS, symbol_source

if TYPE_CHECKING:
    import onnx_ir as ir

OPSET = 19
IR_VERSION = 9
# The newest opset the emitters are written for: every op they use keeps its opset-19 meaning up to
# here (21 and 22 only add element types: int4, bfloat16). A source model at an opset in
# (OPSET, MAX_OPSET] is written back at its own opset rather than downgraded.
MAX_OPSET = 22
# the lowest IR version each opset needs (onnx.helper.VERSION_TABLE)
_IR_FOR_OPSET = {19: 9, 20: 9, 21: 10, 22: 10}


def target_versions(graph: Graph) -> tuple[int, int]:
    """(opset, IR version) to write `graph` with: ours, or a raw ONNX source's own when higher and
    within what the emitters are valid for."""
    versions = graph.meta.versions
    opset = OPSET
    ir_version = IR_VERSION
    if graph.meta.framework == "onnx":
        source = int(versions.get("opset", OPSET) or OPSET)
        opset = min(max(OPSET, source), MAX_OPSET)
        ir_version = max(_IR_FOR_OPSET[opset], int(versions.get("ir_version", 0) or 0))
    return opset, ir_version


Emitter = Callable[["OnnxPrinter", NodeBase], None]
ONNX_EMITTERS: dict[Op, Emitter] = {}


emits = registrar(ONNX_EMITTERS, "onnx")


def _onnx_ir() -> Any:
    try:
        import onnx_ir
    except ImportError:  # pragma: no cover - depends on the environment
        raise CodegenError("codegen-onnx needs onnx and onnx-ir: pip install 'asgnas-ir[onnx]'") from None
    return onnx_ir


class OnnxPrinter:
    """Builds the ONNX graph node by node; emitters call `op` for helper nodes and `out` last."""

    def __init__(self, graph: Graph) -> None:
        self.ir = _onnx_ir()
        self.graph = graph
        self.tape = self.ir.tape.Tape()
        self.values: dict[str, ir.Value] = {}  # IR value name -> ONNX value
        self._initializers: dict[tuple[str, ...], ir.Value] = {}
        # IR value names and param names are reserved up front; a constant's value is its initializer
        constants = {out for node in graph.nodes if node.op is Op.CONSTANT for out in node.outputs}
        self._value_names = set(graph.values) - constants
        self._taken: set[str] = self._value_names | set(graph.params)
        self._node_names: set[str] = set()
        # graph inputs and outputs keep the source model's names (`input.1`, `output:0`) when free
        self._io_names: dict[str, str] = {}
        for value, source in graph.meta.io_names.items():
            if value in graph.values and (source == value or source not in self._taken):
                self._io_names[value] = source
                self._taken.add(source)

    # ---- names ---------------------------------------------------------------------------------
    def _unique(self, base: str, taken: set[str]) -> str:
        name, n = base, 1
        while name in taken:
            name = f"{base}_{n}"
            n += 1
        taken.add(name)
        return name

    def _doc(self, node: NodeBase) -> str:
        return f"{node.op.value} from '{node.source}'" if node.source else node.op.value

    # ---- helpers the emitters use ----------------------------------------------------------------
    def x(self, node: NodeBase, index: int = 0) -> ir.Value:
        return self.values[node.inputs[index]]

    def shape(self, value: str) -> tuple[int, ...]:
        return self.graph.values[value].shape

    def dtype(self, value: str) -> str:
        return self.graph.values[value].dtype

    def has(self, node: NodeBase, role: str) -> bool:
        return role in node.params

    def param_info(self, node: NodeBase, role: str) -> Param:
        return self.graph.params[node.params[role]]

    def param(self, node: NodeBase, role: str) -> ir.Value:
        """The initializer of `node`'s param `role`, named by the IR param name, created once."""
        name = node.params[role]
        key = ("param", name)
        if key not in self._initializers:
            array = self.graph.weights.get(name)
            if array is None:
                raise CodegenError(
                    f"param '@{name}' has no weights; compile the model with weights or load the IR with its .safetensors"
                )
            tensor = self.ir.tensor(np.asarray(array, dtype=np.dtype(self.graph.params[name].dtype)))
            onnx_name = name if name not in self._value_names else self._unique(f"{name}_param", self._taken)
            self._initializers[key] = self.tape.initializer(tensor, name=onnx_name)
        stored = self.graph.params[name].dtype
        compute = next((self.dtype(v) for v in node.inputs if self.dtype(v).startswith(("float", "bfloat"))), stored)
        if stored != compute and stored.startswith(("float", "bfloat")):
            # a Keras mixed-precision layer (frontends/keras/policies.py): the weight rounded to the
            # dtype the node computes in, as Keras' autocast reads it; the initializer keeps its own
            return self.op(node, "Cast", [self._initializers[key]], hint=f"{role}_{compute}", to=_data_type(self.ir, compute))
        return self._initializers[key]

    def const(self, node: NodeBase, hint: str, array: Any, dtype: Any = None) -> ir.Value:
        """A helper initializer named `<node id>/<hint>` (shapes, axes, scalars, masks)."""
        array = np.asarray(array, dtype=dtype)
        tensor = self.ir.tensor(array)
        value = self.tape.initializer(tensor, name=self._unique(f"{node.id}/{hint}", self._taken))
        self._initializers[("const", value.name)] = value
        return value

    def ints(self, node: NodeBase, hint: str, values: Sequence[int]) -> ir.Value:
        return self.const(node, hint, list(values), np.int64)

    def sizes(self, node: NodeBase, hint: str, dims: Sequence[int | str]) -> ir.Value:
        """A 1-d int64 shape tensor: an initializer when every entry is a number, else the numbers
        concatenated with the symbolic entries computed from the graph inputs' shapes (`Shape`)."""
        if all(isinstance(d, int) for d in dims):
            return self.ints(node, hint, dims)  # type: ignore[arg-type]
        pieces = [self.ints(node, f"{hint}_{i}", [d]) if isinstance(d, int) else self._dim(node, d) for i, d in enumerate(dims)]
        return self.op(node, "Concat", pieces, hint, axis=0)

    def reshape_sizes(self, node: NodeBase) -> ir.Value:
        """The shape tensor of a Reshape to `node`'s first output: one symbolic size left to -1, one the
        input has on the same axis copied with 0, any other computed (`sizes`)."""
        target = list(self.graph.values[node.outputs[0]].symbolic)
        source = self.graph.values[node.inputs[0]].symbolic
        symbolic = [i for i, d in enumerate(target) if isinstance(d, str)]
        copied = [i for i in symbolic if i < len(source) and source[i] == target[i]]
        inferred = [i for i in symbolic if i not in copied]
        if inferred:
            target[max(inferred, key=lambda i: len(parse(target[i])))] = -1  # type: ignore[arg-type]
        elif copied:
            target[copied[-1]] = -1
        for i in copied:
            if target[i] != -1:
                target[i] = 0
        return self.sizes(node, "shape", target)

    def _dim(self, node: NodeBase, expr: str) -> ir.Value:
        """A 1-element int64 tensor holding the symbolic size `expr` (a polynomial in the symbols)."""
        total = None
        for monomial, coefficient in parse(expr).items():
            term = self.ints(node, "coefficient", [coefficient]) if not monomial or coefficient != 1 else None
            for symbol in monomial:
                size = self._symbol(symbol)
                term = size if term is None else self.op(node, "Mul", [term, size], "product")
            total = term if total is None else self.op(node, "Add", [total, term], "sum")
        return total  # type: ignore[return-value]

    def _symbol(self, symbol: str) -> ir.Value:
        key = ("symbol", symbol)
        if key not in self._initializers:
            value, axis = symbol_source(self.graph, symbol)
            size = self.tape.op("Shape", [self.values[value]], _attributes({"start": axis, "end": axis + 1}),
                                name=self._unique(f"{SYMBOL_LOCALS.get(symbol, symbol)}", self._node_names))
            size.name = self._unique(SYMBOL_LOCALS.get(symbol, symbol), self._taken)
            self._initializers[key] = size
        return self._initializers[key]

    def scalar(self, node: NodeBase, hint: str, value: float, like: str | None = None) -> ir.Value:
        """A 0-d constant with the dtype of IR value `like` (default: the node's first input)."""
        dtype = self.dtype(like if like is not None else node.inputs[0])
        return self.const(node, hint, value, np.dtype(dtype))

    def op(self, node: NodeBase, op_type: str, inputs: Sequence[ir.Value | None], hint: str | None = None, **attrs: Any) -> ir.Value:
        """A helper node of `node`'s decomposition; its output is named `<node id>/<hint>`."""
        base = f"{node.id}/{hint or op_type.lower()}"
        name = self._unique(base, self._node_names)
        value = self.tape.op(op_type, list(inputs), _attributes(attrs), name=name, doc_string=self._doc(node))
        value.name = self._unique(base, self._taken)
        return value

    def out(self, node: NodeBase, op_type: str, inputs: Sequence[ir.Value | None], **attrs: Any) -> None:
        """The node that produces `node`'s outputs: named by the node id, outputs by the IR values."""
        name = self._unique(node.id, self._node_names)
        outputs = self.tape.op_multi_out(
            op_type, list(inputs), _attributes(attrs), num_outputs=len(node.outputs), name=name, doc_string=self._doc(node)
        )
        for value, ir_name in zip(outputs, node.outputs, strict=True):
            value.name = ir_name
            self._describe(value, ir_name)
            self.values[ir_name] = value

    def alias(self, node: NodeBase, value: ir.Value) -> None:
        """`node`'s output is `value` itself (no node); a graph output gets an Identity later."""
        self.values[node.outputs[0]] = value

    def _describe(self, value: ir.Value, ir_name: str) -> None:
        info = self.graph.values[ir_name]
        value.type = self.ir.TensorType(_data_type(self.ir, info.dtype))
        # a symbolic size is a dim_param named by its expression (`N`, `64*N`), so the file states which
        # sizes follow the batch and runtimes bind inputs of any batch
        value.shape = self.ir.Shape(list(info.symbolic))

    # ---- building ------------------------------------------------------------------------------
    def build(self) -> ir.Model:
        ir_ = self.ir
        graph = self.graph
        opset, ir_version = target_versions(graph)
        inputs = []
        for name in graph.inputs:
            value = ir_.Value(name=self._io_names.get(name, name))
            self._describe(value, name)
            self.values[name] = value
            inputs.append(value)
        for node in graph.nodes:
            emitter = ONNX_EMITTERS.get(node.op)
            if emitter is None:
                raise CodegenError(f"node '{node.id}' (op {node.op.value}, from '{node.source}') has no onnx emitter")
            emitter(self, node)
        outputs: list[ir.Value] = []
        for name in graph.outputs:
            value = self.values[name]
            wanted = self._io_names.get(name, name)
            if value.name != name or value.const_value is not None or value in inputs or value in outputs:
                # an alias (constant, graph input) or an output listed twice: give it its own node
                used = {v.name for v in [*inputs, *outputs, *self.tape.initializers]}
                free = value.name != wanted and wanted not in used
                identity = self.tape.op("Identity", [value], name=self._unique(f"{name}/output", self._node_names))
                identity.name = wanted if free else self._unique(f"{name}_out", self._taken)
                self._describe(identity, name)
                value = identity
            else:
                value.name = wanted
            outputs.append(value)
        onnx_graph = ir_.Graph(
            inputs,
            outputs,
            nodes=self.tape.nodes,
            initializers=self.tape.initializers,
            opset_imports={"": opset},
            name=graph.name,
            doc_string=f"{graph.meta.framework or '?'} model {graph.meta.model_name or graph.name}, IR fingerprint {graph.fingerprint()}",
        )
        return ir_.Model(onnx_graph, ir_version=ir_version, producer_name="asgnas-ir", producer_version=__version__)


_DATA_TYPES = {
    "float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "bfloat16": "BFLOAT16", "int64": "INT64",
    "int32": "INT32", "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL",
}


def _data_type(ir_: Any, dtype: str) -> Any:
    if dtype not in _DATA_TYPES:
        raise CodegenError(f"dtype '{dtype}' has no ONNX equivalent in codegen-onnx")
    return getattr(ir_.DataType, _DATA_TYPES[dtype])


def _attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """Drop attributes left at None; tuples become lists of ints/floats."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
