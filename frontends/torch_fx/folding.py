"""Constant folding: fx nodes whose value does not depend on the forward's inputs.

Position encodings, masks and coordinate grids are often built inside forward from sizes and
buffers (`torch.arange(H)`, `~torch.zeros(B, H, W).bool()`, `.cumsum(1)`, `.sin()`, a mesh grid),
with tensor ops the IR has no use for (integer casts, boolean logic, modular arithmetic) and that no
search would prune. Such a node is evaluated once while lowering and becomes a `constant` node
holding its value at the example's sizes.

A node is foldable when it calls a function or a tensor method, its result is a tensor (or a tuple
of tensors), it is not random, and everything it reads is one of
- a foldable node, or a buffer or plain tensor attribute of the model (never a trainable parameter:
  that stays a param which the optimizers train and the search prunes);
- a Python value that a converter produced (sizes read off a tensor, size arithmetic). A Python
  value no converter vouches for (a `.item()` of an activation) blocks folding, so a value taken
  from the data is never baked into the graph;
- any tensor the call reads for its shape, dtype or device only (`x.new_zeros(n)`, `t.to(other)`,
  `torch.zeros_like(x)`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from asgnas_ir.frontends.torch_fx.builder import Builder, SubmoduleIndex, TensorMeta
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

# calls whose result differs from call to call: never folded
_RANDOM = ("rand", "bernoulli", "multinomial", "normal", "uniform", "dropout", "poisson", "exponential", "cauchy", "geometric")


def _target_name(node: torch.fx.Node) -> str:
    return str(getattr(node.target, "__name__", node.target))


def _tensor_result(meta: Any) -> bool:
    if isinstance(meta, TensorMeta):
        return True
    return isinstance(meta, (list, tuple)) and bool(meta) and all(isinstance(m, TensorMeta) for m in meta)


def _has_tensor(meta: Any) -> bool:
    if isinstance(meta, TensorMeta):
        return True
    if isinstance(meta, (list, tuple)):
        return any(_has_tensor(m) for m in meta)
    if isinstance(meta, dict):
        return any(_has_tensor(m) for m in meta.values())
    return False


# Calls that read some tensor arguments for their shape, dtype or device alone: which ones
_BLIND_METHODS = {"to": "rest", "type_as": "rest", "new_zeros": "self", "new_ones": "self", "new_full": "self"}
_BLIND_FUNCTIONS = {"zeros_like", "ones_like", "full_like"}


def _value_blind(node: torch.fx.Node) -> set[torch.fx.Node]:
    """The input nodes whose values `node` does not read (`x.new_zeros(n)`, `t.to(other)`, `zeros_like(x)`):
    a folded result does not depend on them, whatever computed them."""
    if node.op == "call_method" and node.target in _BLIND_METHODS:
        if _BLIND_METHODS[str(node.target)] == "self":
            return {node.args[0]} if isinstance(node.args[0], torch.fx.Node) else set()
        rest = [*node.args[1:], *node.kwargs.values()]
        return {a for a in rest if isinstance(a, torch.fx.Node)}
    if node.op == "call_function" and _target_name(node) in _BLIND_FUNCTIONS and getattr(node.target, "__module__", "") in ("torch", None):
        first = node.args[0] if node.args else node.kwargs.get("input")
        return {first} if isinstance(first, torch.fx.Node) else set()
    return set()


class Folder:
    """Finds the foldable nodes of one traced graph and evaluates them on demand."""

    def __init__(
        self, gm: SubmoduleIndex, fx_graph: torch.fx.Graph, observed: dict[torch.fx.Node, Any], converts: Any,
        specialised: dict[torch.fx.Node, Any], device: torch.device,
    ) -> None:
        self.gm = gm
        self.device = device
        self.values: dict[torch.fx.Node, Any] = {}
        self.foldable: set[torch.fx.Node] = set()
        for node in fx_graph.nodes:
            if node.op not in ("call_function", "call_method") or not _tensor_result(observed.get(node)):
                continue
            if any(word in _target_name(node).lower() for word in _RANDOM):
                continue
            blind = _value_blind(node)
            inputs = [m for m in node.all_input_nodes if m not in blind]
            if all(self._constant_input(m, observed, converts, specialised) for m in inputs):
                self.foldable.add(node)
        self._observed = observed

    def _constant_input(self, node: torch.fx.Node, observed: dict, converts: Any, specialised: dict) -> bool:
        if node in self.foldable or node in specialised:
            return True
        if node.op == "get_attr":
            value = self._attr(node)
            return not (isinstance(value, torch.nn.Parameter) and value.requires_grad)
        if node.op in ("call_function", "call_method", "call_module"):
            # a Python value (a size) from a converter; a tensor from the data is not constant
            return not _has_tensor(observed.get(node)) and converts(node)
        return False

    def _attr(self, node: torch.fx.Node) -> Any:
        owner_path, _, attr = str(node.target).rpartition(".")
        return getattr(self.gm.get_submodule(owner_path), attr)

    def _real(self, b: Builder, value: Any) -> Any:
        """An argument as the real object: folded values (shared, so an in-place method updates them for
        later readers), copies of attributes, and Python values with the meta device of the shape run
        replaced by the model's device."""
        if isinstance(value, torch.fx.Node):
            if value in self.foldable:  # lowered by its converter, evaluated here when a folded node reads it
                if value not in self.values:
                    self.values[value] = self._evaluate(b, value)
                return self.values[value]
            if value.op == "get_attr":
                attr = self._attr(value)
                return attr.detach().clone() if isinstance(attr, torch.Tensor) else attr
            return self._real(b, b.env[value])
        if isinstance(value, torch.device) and value.type == "meta":
            return self.device
        if isinstance(value, (list, tuple)):
            return type(value)(self._real(b, v) for v in value)
        if isinstance(value, dict):
            return {k: self._real(b, v) for k, v in value.items()}
        if isinstance(value, slice):
            return slice(self._real(b, value.start), self._real(b, value.stop), self._real(b, value.step))
        return value

    def _evaluate(self, b: Builder, node: torch.fx.Node) -> Any:
        # an input read for its shape, dtype or device only: zeros of that kind stand in for it
        stand_ins = {
            m: torch.zeros(meta.shape, dtype=getattr(torch, meta.dtype), device=self.device)
            for m in _value_blind(node) if m not in self.foldable
            for meta in [self._observed.get(m)] if isinstance(meta, TensorMeta)
        }
        args = self._real(b, torch.fx.node.map_arg(tuple(node.args), lambda m: stand_ins.get(m, m)))
        kwargs = self._real(b, torch.fx.node.map_arg(dict(node.kwargs), lambda m: stand_ins.get(m, m)))
        try:
            with torch.no_grad():
                if node.op == "call_method":
                    return getattr(args[0], str(node.target))(*args[1:], **kwargs)
                return node.target(*args, **kwargs)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001  (torch raises many types)
            raise b.fail(f"evaluating this input-independent call to fold it into a constant failed: {type(exc).__name__}: {exc}") from None

    def fold(self, b: Builder, node: torch.fx.Node) -> Any:
        """Evaluate `node` and emit its value as constant node(s); returns the IR value name(s)."""
        if node not in self.values:
            self.values[node] = self._evaluate(b, node)
        result = self.values[node]
        if isinstance(result, torch.Tensor):
            return self._constant(b, node.name, result)
        return tuple(self._constant(b, f"{node.name}_{i}", t) for i, t in enumerate(result))

    @staticmethod
    def _constant(b: Builder, name: str, tensor: torch.Tensor) -> str:
        """The folded value as a constant node. One whose rows along axis 0 are all alike (a mask built
        as `torch.zeros(B, H, W)`) is kept as its first row broadcast by an expand: axis 0 is then free
        to follow the batch in generated code, where a constant's own shape is fixed. The expand is
        written whenever the rows agree, a single row included, so that lowering at another batch size
        gives the same graph (NOTE: [Specialising on the example's shapes] in `tracer.py`)."""
        value = tensor.detach()
        rows = value.dim() >= 2 and value.shape[0] >= 1 and bool((value == value[:1]).all())
        # a copy: an in-place method later in forward writes into the folded value itself, as torch would
        param = b.add_param(name, (value[:1] if rows else value).clone(), None, trainable=False)
        if not rows:
            return b.emit(Op.CONSTANT, [], params={"value": param}, name=name)
        row = b.emit(Op.CONSTANT, [], params={"value": param}, name=f"{name}_row")
        return b.emit(Op.EXPAND, [row], A.ExpandAttrs(shape=tuple(value.shape)), name=name)
