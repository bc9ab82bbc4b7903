"""The state a Keras converter writes into while lowering one functional graph.

Every node a converter emits is typed by its op's shape rule, and the value a layer call lowers
to is compared with the shape Keras inferred for that call's output (the batch axis, and any axis
Keras left as None, taken from the example inputs), so a misread layer fails at lowering and
names the layer.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from asgnas_ir.errors import FrontendError
from asgnas_ir.frontends._builder import GraphBuilder
from asgnas_ir.frontends.keras.variables import Entry
from asgnas_ir.ir.attrs import Attrs
from asgnas_ir.ir.graph import Param, Value
from asgnas_ir.ir.node import make_node
from asgnas_ir.ir.ops import Op

_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")


def dtype_name(dtype: Any) -> str:
    name = keras.backend.standardize_dtype(dtype)
    if name not in _DTYPES:
        raise FrontendError(f"tensor dtype {name} is not supported by the IR")
    return name


def keras_value(shape: tuple[int, ...], dtype: str) -> Value:
    """A value in the channels-last layout: rank >= 2 floats carry their channels on the last axis."""
    floating = dtype.startswith(("float", "bfloat"))
    return Value(shape=shape, dtype=dtype, channel_axis=len(shape) - 1 if len(shape) >= 2 and floating else None)


class Builder(GraphBuilder):
    """Accumulates IR nodes, values and params for one Keras functional graph."""

    def __init__(self, batch: int, variables: dict[int, Entry] | None = None) -> None:
        super().__init__()
        self.batch = batch
        self.variables: dict[int, Entry] = variables or {}  # id(variable) -> its key and IR view
        self.layer: Any = None  # the layer being lowered
        self.call_args: tuple = ()
        self.call_kwargs: dict[str, Any] = {}
        self.trainable: dict[str, bool] = {}

    # ---- reading the layer -----------------------------------------------------------------
    @property
    def source(self) -> str:
        return "" if self.layer is None else str(self.layer.name)

    def fail(self, message: str) -> FrontendError:
        if self.layer is None:
            return FrontendError(f"keras model: {message}")
        return FrontendError(f"keras layer '{self.layer.name}' ({type(self.layer).__name__}): {message}")

    def value(self, name: str) -> Value:
        return self.values[name]

    def rank(self, name: str) -> int:
        return len(self.values[name].shape)

    def config(self, key: str, default: Any = None) -> Any:
        return getattr(self.layer, key, default)

    # ---- params ----------------------------------------------------------------------------
    def add_param(self, variable: Any, axes: str | None) -> str:
        """Declare a param for a Keras variable, named and sourced by its unique key
        (`frontends.keras.variables`: layer nesting + variable name, never the ambiguous `path`).

        The weight is stored in the variable's IR view (a MultiHeadAttention kernel (E, H, Dh) read as
        (E, H*Dh)); the Keras variable keeps its own shape.
        """
        entry = self.variables.get(id(variable))
        if entry is None:
            what = type(variable).__name__
            raise self.fail(f"reads a weight that is not a variable of the model ({what}); the converter cannot bind it")
        key = entry.key
        if key in self.params:
            return key
        data = np.asarray(keras.ops.convert_to_numpy(variable.value)).copy().reshape(entry.view)
        self._declare(key, data, dtype_name(variable.dtype), axes, entry.trainable)
        return key

    def add_kernel(self, layer: Any, axes: str) -> str:
        """A layer's effective `kernel`: the variable itself, or with LoRA enabled the merged
        `_kernel + (lora_alpha / lora_rank) · A @ B` (what Keras' own `kernel` property computes),
        stored under the base kernel's key. Keras trains the adapters, so it is trainable when they are."""
        if not getattr(layer, "lora_enabled", False):
            return self.add_param(layer.kernel, axes)
        base = layer._kernel
        entry = self.variables.get(id(base))
        if entry is None or entry.lora is None:
            raise self.fail("has LoRA enabled but its base kernel is not a tracked variable")
        if entry.key in self.params:
            return entry.key
        data = np.asarray(keras.ops.convert_to_numpy(layer.kernel)).copy()
        trainable = entry.trainable or any(self.variables[id(v)].trainable for v in (entry.lora.a, entry.lora.b) if id(v) in self.variables)
        self._declare(entry.key, data, dtype_name(base.dtype), axes, trainable)
        return entry.key

    def _declare(self, key: str, data: np.ndarray, dtype: str, axes: str | None, trainable: bool) -> None:
        self.params[key] = Param(shape=tuple(int(d) for d in data.shape), dtype=dtype, source=key, axes=axes, trainable=trainable)
        self.weights[key] = data

    def constant(self, array: np.ndarray | None, name: str, *, variable: Any = None, axes: str | None = None) -> str:
        """A constant node holding `array`, or the Keras `variable` (a trainable param, e.g. a layer scale)."""
        key = self.add_param(variable, axes) if variable is not None else f"{self.source}/{name}"
        if key not in self.params:
            array = np.asarray(array)
            self.params[key] = Param(shape=tuple(array.shape), dtype=dtype_name(array.dtype), source=key, axes=None, trainable=False)
            self.weights[key] = array.copy()
        return self.emit(Op.CONSTANT, [], params={"value": key}, name=f"{self.source}_{name}")

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
        source: str | None = None,
    ) -> Any:
        base = name or self.source or op.value
        return self._append(op, base, inputs, attrs, params, outputs, source or self.source)

    def emit_opaque(self, inputs: list[str], attrs: Attrs, shapes: list[tuple[tuple[int, ...], str]]) -> list[str]:
        node_id = self._fresh_id(self.source or "opaque")
        outs = [node_id] if len(shapes) == 1 else [self._fresh_id(f"{node_id}_{i}") for i in range(len(shapes))]
        for out, (shape, dtype) in zip(outs, shapes, strict=True):
            self.values[out] = keras_value(shape, dtype)
        self.nodes.append(make_node(Op.OPAQUE, node_id, inputs, outs, attrs=attrs, source=self.source))
        return outs

    def check_shape(self, name: str, expected: tuple[int | None, ...]) -> None:
        """The lowered value's shape must agree with Keras' (None matches anything)."""
        got = self.values[name].shape
        if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got, strict=False)):
            raise self.fail(
                f"lowered to shape {list(got)} but Keras computes {list(expected)}; the converter misreads this layer"
            )
