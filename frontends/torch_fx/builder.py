"""The state a torch.fx converter writes into while lowering one traced module.

Every node a converter emits is checked on the spot: its IR shape rule must give the shape torch
computed for that fx node with the example inputs. A converter that misreads an op therefore fails
at lowering, naming the fx node and module path, instead of producing a silently wrong graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.fx

from asgnas_ir.errors import FrontendError, IRValidationError
from asgnas_ir.frontends._builder import GraphBuilder
from asgnas_ir.ir.attrs import Attrs
from asgnas_ir.ir.graph import Param, Value
from asgnas_ir.ir.node import make_node
from asgnas_ir.ir.ops import Op
from asgnas_ir.ir.weights import WeightStore, tensor_array

_DTYPES = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.int64: "int64", torch.int32: "int32", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool",
}


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise FrontendError(f"tensor dtype {dtype} is not supported by the IR") from None


def spatial_letters(rank: int) -> str:
    return "DHW"[3 - rank :] if rank <= 3 else "".join(f"S{i}" for i in range(rank))


class SubmoduleIndex:
    """`get_submodule` through a dict built once. fx names each called module by the path
    `named_modules` gives it, while `nn.Module.get_submodule` walks and checks the path on every
    call (a third of converting densenet121); any other path still goes through it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._paths = dict(model.named_modules())

    def get_submodule(self, target: str) -> torch.nn.Module:
        found = self._paths.get(target)
        return found if found is not None else self.model.get_submodule(target)


class Builder(GraphBuilder):
    """Accumulates IR nodes, values and params for one fx graph."""

    def __init__(self, gm: SubmoduleIndex, observed: dict[torch.fx.Node, Any]) -> None:
        super().__init__()
        self.weights: WeightStore = WeightStore()  # type: ignore[assignment]
        self.gm = gm
        self.observed = observed  # fx node -> concrete result (tensors replaced by their meta)
        self.env: dict[torch.fx.Node, Any] = {}
        self._by_tensor: dict[int, tuple[str, torch.Tensor]] = {}  # id(tensor) -> (its param, the tensor)
        self.current: torch.fx.Node | None = None

    # ---- reading the fx node ---------------------------------------------------------------
    @property
    def source(self) -> str:
        node = self.current
        if node is None:
            return ""
        return str(node.target) if node.op == "call_module" else node.name

    def arg(self, value: Any) -> Any:
        """Replace fx nodes inside `value` by what they lowered to (IR value names or Python values)."""
        if isinstance(value, torch.fx.Node):
            return self.env[value]
        if isinstance(value, (list, tuple)):
            return type(value)(self.arg(v) for v in value)
        if isinstance(value, dict):
            return {k: self.arg(v) for k, v in value.items()}
        if isinstance(value, slice):
            return slice(self.arg(value.start), self.arg(value.stop), self.arg(value.step))
        return value

    def args(self, node: torch.fx.Node) -> tuple[list[Any], dict[str, Any]]:
        return list(self.arg(a) for a in node.args), {k: self.arg(v) for k, v in node.kwargs.items()}

    def module(self, node: torch.fx.Node) -> torch.nn.Module:
        return self.gm.get_submodule(str(node.target))

    def is_tensor(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def value(self, name: str) -> Value:
        return self.values[name]

    def where(self) -> str:
        """The current fx node and the module it belongs to, for messages."""
        node = self.current
        if node is None:
            return "fx graph"
        if node.op == "call_module":
            return f"fx node '{node.name}' (module '{node.target}')"
        # the Tracer records the stack of modules whose forward made the node
        stack = node.meta.get("nn_module_stack") or {}
        owner = next(reversed(stack.values()), None) if stack else None
        path = owner[0] if isinstance(owner, tuple) and owner else None
        return f"fx node '{node.name}'" + (f" (in module '{path}')" if path else " (in the model's forward)")

    def fail(self, message: str) -> FrontendError:
        return FrontendError(f"{self.where()}: {message}")

    def observed_value(self, node: torch.fx.Node) -> Any:
        return self.observed.get(node)

    # ---- params ----------------------------------------------------------------------------
    def add_param(self, source: str, tensor: torch.Tensor, axes: str | None, *, trainable: bool | None = None) -> str:
        """Declare a param by its path in the source model; a second use of the same path shares it."""
        # A tied weight is one param. The tensor is kept referenced so its id is never reused.
        source = self._by_tensor.setdefault(id(tensor), (source, tensor))[0]
        if source in self.params:
            # an embedding table's letters yield to a layer that reads the same weight (tied lm_head);
            # a tensor first read as a plain attribute (`conv.weight.device`) takes the layer's letters
            if axes is not None and self.params[source].axes in ("VO", None):
                self.params[source] = self.params[source].model_copy(update={"axes": axes})
            return source
        self.params[source] = Param(
            shape=tuple(tensor.shape),
            dtype=dtype_name(tensor.dtype),
            source=source,
            axes=axes,
            trainable=bool(tensor.requires_grad) if trainable is None else trainable,
        )
        self.weights.defer(source, _snapshot_reader(source, tensor))
        return source

    def module_params(self, prefix: str, module: torch.nn.Module, axes: dict[str, str | None]) -> dict[str, str]:
        """Params (and buffers) of `module` for the given roles, skipping those that are None."""
        roles: dict[str, str] = {}
        for role, role_axes in axes.items():
            tensor = getattr(module, role, None)
            if isinstance(tensor, torch.Tensor):
                trainable = isinstance(tensor, torch.nn.Parameter) and tensor.requires_grad
                roles[role] = self.add_param(f"{prefix}.{role}" if prefix else role, tensor, role_axes, trainable=trainable)
        return roles

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
        """Append a node and type its outputs with the op's shape rule.

        Returns the output value name (or the list of names when `outputs > 1`). `source` overrides
        the node's source path (a module lowered to several nodes names its sub-layers).
        """
        base = name or (self.current.name if self.current is not None else op.value)
        return self._append(op, base, inputs, attrs, params, outputs, source or self.source)

    def emit_opaque(self, inputs: list[str], attrs: Attrs, observed: Any) -> Any:
        """An op the IR does not know: outputs typed from what torch observed."""
        metas = list(observed) if isinstance(observed, (list, tuple)) else [observed]
        node_id = self._fresh_id(self.current.name if self.current is not None else "opaque")
        out_names = [node_id] if len(metas) == 1 else [self._fresh_id(f"{node_id}_{i}") for i in range(len(metas))]
        for out, meta in zip(out_names, metas, strict=True):
            if not isinstance(meta, TensorMeta):
                raise self.fail("an opaque op must return tensors")
            self.values[out] = meta.to_value()
        self.nodes.append(make_node(Op.OPAQUE, node_id, inputs, out_names, attrs=attrs, source=self.source))
        return out_names[0] if len(out_names) == 1 else out_names

    def check_shape(self, node: torch.fx.Node, result: Any) -> None:
        """The lowered value's shape must equal what torch computed for this fx node."""
        seen = self.observed.get(node)
        pairs = []
        if isinstance(seen, TensorMeta) and isinstance(result, str):
            pairs.append((result, seen))
        elif isinstance(seen, (list, tuple)) and isinstance(result, (list, tuple)):
            pairs.extend((r, s) for r, s in zip(result, seen, strict=False) if isinstance(s, TensorMeta) and isinstance(r, str))
        for name, meta in pairs:
            value = self.values.get(name)
            if value is not None and value.shape != meta.shape:
                raise self.fail(
                    f"lowered to shape {list(value.shape)} but torch computes {list(meta.shape)}; "
                    "the converter misreads this op's arguments"
                )


def _snapshot_reader(source: str, tensor: torch.Tensor) -> Callable[[], np.ndarray]:
    """Reads `tensor` as it is now, on first use (NOTE: [Deferred weight snapshots] in asgnas_ir.ir.weights)."""
    try:
        version = tensor._version
    except RuntimeError:  # an inference-mode tensor has no version counter: copy it now
        array = tensor_array(tensor)
        return lambda: array

    def read() -> np.ndarray:
        if tensor._version != version:
            raise IRValidationError(
                f"param '{source}' changed in the model after ai.compile and before the graph read it; call "
                "graph.update_weights(model) to take the model's current values, or compile the model again"
            )
        return tensor_array(tensor)

    return read


class TensorMeta:
    """Shape and dtype torch observed for one fx node (the tensor itself is not kept)."""

    __slots__ = ("dtype", "shape")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.shape = tuple(int(d) for d in tensor.shape)
        self.dtype = dtype_name(tensor.dtype)

    def to_value(self) -> Value:
        rank = len(self.shape)
        floating = self.dtype.startswith(("float", "bfloat"))
        channel_axis = 1 if rank >= 2 and floating else None
        return Value(shape=self.shape, dtype=self.dtype, channel_axis=channel_axis)
