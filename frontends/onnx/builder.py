"""The state an ONNX converter writes into while lowering one ONNX graph.

Every ONNX value is either a *tensor* (an IR value computed at run time) or a *constant* (a numpy
array known at lowering: an initializer, a `Constant` node, or anything folded from constants and
static shapes). Constants remember where they came from (`Const.origin`), so a converter that
needs a weight (`Conv`'s `W`, a `MatMul` operand that is a transposed torch `Linear` weight, a
`Mul` by a layer scale) turns it back into an IR param bound to the original initializer, and
through it to the torch parameter path.

Every node a converter emits is checked on the spot: its IR shape rule must give the shape ONNX
shape inference computed for that ONNX output, so a converter that misreads an op fails at
lowering, naming the ONNX node.

NOTE: [Folded weights are frozen] A constant the driver folded from initializers (NF-ResNet's
weight standardisation `batch_norm(conv.weight) * gain`, `alpha * 1` from `addcmul`) is no tensor
of the source model: `check` cannot zero it in the live model, training cannot move it, and
`Param.source` names nothing there. It becomes a frozen param (`trainable=False`), so the search
space slices it with its channels but never zeroes it. Two folds keep their binding instead: an
exact identity (`x * 1`, `x + 0`, ...) keeps its operand's origin, and a Concat that read a
weight keeps its pieces (`Const.pieces`), lowered as a run-time concat of the bound weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from asgnas_ir.errors import FrontendError
from asgnas_ir.frontends._builder import GraphBuilder
from asgnas_ir.ir.attrs import Attrs
from asgnas_ir.ir.graph import Param, Value
from asgnas_ir.ir.node import make_node
from asgnas_ir.ir.ops import Op

ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool",
}


def spatial_letters(rank: int) -> str:
    return "DHW"[3 - rank :] if rank <= 3 else "".join(f"S{i}" for i in range(rank))


FUSED = object()
"""What a pattern converter returns for its first node once it bound the pattern's last output itself."""


@dataclass(frozen=True)
class Origin:
    """Where a constant's data comes from: initializer `name`, either with the same elements in the
    same order (`perm` None: a reshape, cast to the same dtype, identity) or as a 2-d transpose."""

    name: str
    perm: tuple[int, ...] | None = None


@dataclass
class Const:
    """A value known at lowering time.

    `pieces` is set on a folded Concat that read a weight: the constants it joined along `axis`.
    Such a constant has no single initializer behind it, but used as a tensor it is lowered as the
    concatenation of its pieces, each bound to its own initializer (BEiT's qkv bias
    `cat(q_bias, k_bias, v_bias)`), so the weights stay the model's own and keep their channels.
    """

    array: np.ndarray
    origin: Origin | None = None
    pieces: tuple[Const, ...] | None = None
    axis: int = 0


@dataclass(frozen=True)
class OnnxTensorType:
    """Shape and dtype ONNX shape inference gives one value (None where it gives none)."""

    shape: tuple[int, ...] | None
    dtype: str | None


class Builder(GraphBuilder):
    """Accumulates IR nodes, values and params for one ONNX graph."""

    def __init__(
        self,
        initializers: dict[str, np.ndarray],
        types: dict[str, OnnxTensorType],
        source_names: dict[str, str],
        opset: int,
        consumers: dict[str, list[onnx.NodeProto]],
        trainable: dict[str, bool] | None = None,
    ) -> None:
        super().__init__()
        self.initializers = initializers
        self.types = types
        self.source_names = source_names  # initializer name -> source path (torch parameter path)
        self.trainable = trainable or {}
        self.opset = opset
        self.consumers = consumers
        self.producers: dict[str, onnx.NodeProto] = {}  # ONNX value name -> the node that computes it
        self.env: dict[str, Any] = {}  # ONNX value name -> IR value name | Const | list of IR value names
        self.fused: set[int] = set()  # ids of ONNX nodes a converter already lowered as part of a pattern
        # outputs of the Expand nodes to the inputs' batch or sequence length (NOTE: [Input-sized expands])
        self.input_sized: set[str] = set()
        # ONNX value -> the axes that follow the inputs' sizes, as the exporter declared them (NOTE: [Sized constants])
        self.sized: dict[str, frozenset[int]] = {}
        self.current: onnx.NodeProto | None = None

    # ---- reading the ONNX node -----------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.current.name if self.current is not None else ""

    def fail(self, message: str) -> FrontendError:
        node = self.current
        where = f"ONNX node '{node.name}' ({node.op_type})" if node is not None else "ONNX graph"
        return FrontendError(f"{where}: {message}")

    def attr(self, node: onnx.NodeProto, name: str, default: Any = None) -> Any:
        for a in node.attribute:
            if a.name == name:
                value = onnx.helper.get_attribute_value(a)
                if isinstance(value, bytes):
                    return value.decode()
                if isinstance(value, onnx.TensorProto):
                    return onnx.numpy_helper.to_array(value)
                if isinstance(value, list):
                    return [v.decode() if isinstance(v, bytes) else v for v in value]
                return value
        return default

    def has_input(self, node: onnx.NodeProto, index: int) -> bool:
        return len(node.input) > index and node.input[index] != ""

    def get(self, name: str) -> Any:
        if name not in self.env:
            raise self.fail(f"input '{name}' is not defined before use")
        return self.env[name]

    def const(self, node: onnx.NodeProto, index: int) -> Const | None:
        """The constant behind input `index` (None when absent or computed at run time)."""
        if not self.has_input(node, index):
            return None
        value = self.get(node.input[index])
        return value if isinstance(value, Const) else None

    def const_array(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        found = self.const(node, index)
        if found is None:
            raise self.fail(f"{what} (input {index}) must be a constant; computed {what}s are not supported")
        return found.array

    def ints(self, node: onnx.NodeProto, index: int, attr: str, since: int) -> list[int] | None:
        """An int list that moved from attribute `attr` to input `index` at opset `since`."""
        if self.opset >= since:
            found = self.const(node, index)
            if found is None:
                if self.has_input(node, index):
                    raise self.fail(f"'{attr}' (input {index}) must be a constant")
                return None
            return [int(v) for v in np.asarray(found.array).reshape(-1)]
        value = self.attr(node, attr)
        return None if value is None else [int(v) for v in value]

    def tensor(self, node: onnx.NodeProto, index: int = 0) -> str:
        """The IR value of input `index`; a constant becomes a CONSTANT node."""
        value = self.get(node.input[index])
        if isinstance(value, Const):
            return self.constant_node(value, node.input[index])
        if not isinstance(value, str):
            raise self.fail(f"input {index} is a sequence, not a tensor")
        return value

    def is_tensor(self, node: onnx.NodeProto, index: int) -> bool:
        return self.has_input(node, index) and isinstance(self.env.get(node.input[index]), str)

    def value(self, name: str) -> Value:
        return self.values[name]

    def rank(self, name: str) -> int:
        return len(self.values[name].shape)

    def out_shape(self, node: onnx.NodeProto, index: int = 0) -> tuple[int, ...]:
        found = self.types.get(node.output[index])
        if found is None or found.shape is None:
            raise self.fail(f"ONNX shape inference gives no static shape for output '{node.output[index]}'")
        return found.shape

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    # ---- params ------------------------------------------------------------------------------
    def param(self, const: Const, axes: str | None, fallback: str, *, trainable: bool | None = None) -> str:
        """An IR param for a constant operand (its array must already be in the param's layout).

        A constant from an initializer is declared under the initializer's source path (the torch
        parameter path when the model was exported from torch) with the initializer's own array,
        so the param binds to the live tensor; any other constant is named after `fallback` and is
        frozen unless `trainable` says otherwise: it was computed from the model's tensors (a weight
        standardised in the forward, an exporter's fold), so no tensor of the model holds it and
        nothing can zero or train it in the model (see NOTE: [Folded weights are frozen]).
        """
        origin = const.origin
        if origin is not None:
            source = self.source_names.get(origin.name, origin.name)
            array = self.initializers[origin.name]
        else:
            source, array = fallback, const.array
        if source in self.params:
            # an embedding table's letters yield to a layer that reads the same weight (tied lm_head)
            if axes is not None and self.params[source].axes in (None, "VO"):
                self.params[source] = self.params[source].model_copy(update={"axes": axes})
            return source
        array = np.array(array, order="C", copy=True)  # one private, contiguous copy per param
        dtype = str(array.dtype)
        if trainable is None:
            trainable = self.trainable.get(source, dtype.startswith("float")) if origin is not None else False
        self.params[source] = Param(shape=tuple(array.shape), dtype=dtype, source=source, axes=axes, trainable=trainable)
        self.weights[source] = array
        return source

    def constant_node(self, const: Const, fallback: str, axes: str | None = None) -> str:
        """A CONSTANT node for a constant used as a tensor (reshaped when the param's shape differs);
        a folded concatenation of weights is concatenated again, from one CONSTANT per piece. A
        constant that follows the inputs' sizes (ONNX value `fallback` is in `sized`) is built so
        that generated code can rebuild it at other sizes (NOTE: [Sized constants])."""
        if fallback in self.sized and const.origin is None and const.pieces is None:
            from asgnas_ir.frontends.onnx.sized import materialize

            built = materialize(self, const, fallback, self.sized[fallback], lambda c, n: self._constant_node(c, n, axes))
            if built is not None:
                return built
        return self._constant_node(const, fallback, axes)

    def _constant_node(self, const: Const, fallback: str, axes: str | None = None) -> str:
        if const.pieces is not None:
            from asgnas_ir.ir import attrs as A

            parts = [self.constant_node(piece, f"{fallback}_{i}") for i, piece in enumerate(const.pieces)]
            return self.emit(Op.CONCAT, parts, A.AxisAttrs(axis=const.axis), name=fallback, check=False)
        name = self.param(const, axes, fallback, trainable=None if const.origin is not None else False)
        out = self.emit(Op.CONSTANT, [], params={"value": name}, name=f"{fallback}_const", check=False)
        shape = tuple(const.array.shape)
        if const.origin is not None and const.origin.perm is not None:
            from asgnas_ir.ir import attrs as A

            out = self.emit(Op.PERMUTE, [out], A.PermuteAttrs(perm=const.origin.perm), check=False)
        if self.values[out].shape != shape:
            from asgnas_ir.ir import attrs as A

            out = self.emit(Op.RESHAPE, [out], A.ReshapeAttrs(shape=shape), check=False)
        return out

    def weight_param(self, const: Const, axes: str, transposed_axes: str, fallback: str) -> tuple[str, str]:
        """A weight whose converter wants it in layout `axes`; an initializer seen through a
        transpose keeps its own layout and is described by `transposed_axes` instead."""
        if const.origin is not None and const.origin.perm is not None:
            return self.param(const, transposed_axes, fallback), transposed_axes
        return self.param(const, axes, fallback), axes

    # ---- emitting ----------------------------------------------------------------------------
    def emit(
        self,
        op: Op,
        inputs: list[str],
        attrs: Attrs | None = None,
        params: dict[str, str] | None = None,
        *,
        outputs: int = 1,
        name: str | None = None,
        check: bool = True,
    ) -> Any:
        """Append a node and type its outputs with the op's shape rule.

        Returns the output value name (or the list of names when `outputs > 1`).
        """
        base = name or (self.current.output[0] if self.current is not None and self.current.output else op.value)
        return self._append(op, base, inputs, attrs, params, outputs, self.source)

    def emit_opaque(self, node: onnx.NodeProto, inputs: list[str], attrs: Attrs) -> list[str]:
        """An op the IR does not know: outputs typed from ONNX shape inference."""
        out_names = []
        for out in node.output:
            found = self.types.get(out)
            if found is None or found.shape is None or found.dtype is None:
                raise self.fail(f"an opaque op needs static output types, ONNX infers none for '{out}'")
            name = self._fresh_id(out)
            rank = len(found.shape)
            floating = found.dtype.startswith(("float", "bfloat"))
            self.values[name] = Value(shape=found.shape, dtype=found.dtype, channel_axis=1 if rank >= 2 and floating else None)
            out_names.append(name)
        self.nodes.append(make_node(Op.OPAQUE, out_names[0], inputs, out_names, attrs=attrs, source=self.source))
        return out_names

    def check_shape(self, onnx_name: str, result: Any) -> None:
        """The lowered value's shape must equal what ONNX shape inference computed."""
        if not isinstance(result, str):
            return
        seen = self.types.get(onnx_name)
        value = self.values.get(result)
        if seen is None or seen.shape is None or value is None:
            return
        if value.shape != seen.shape:
            raise self.fail(
                f"output '{onnx_name}' lowered to shape {list(value.shape)} but ONNX infers {list(seen.shape)}; "
                "the converter misreads this op's attributes"
            )
