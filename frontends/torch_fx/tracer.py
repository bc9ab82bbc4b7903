"""The fx tracers of the torch.fx frontend.

`WritingTracer` is `torch.fx.Tracer` recording in-place writes as the calls they are. When it fails
on Python control flow that reads sizes, `ShapeTracer` traces again knowing the example's shapes.

NOTE: [Specialising on the example's shapes] torch.fx traces with proxies that know nothing of the
tensors they stand for, so code that branches on a size cannot be traced: `if H % window: pad`,
`if N != self.rel_indices.shape[1]: rebuild`, `if x.shape[-2] < self.kernel: ...`, timm's position
table resampling. `ShapeTracer` gives every proxy the meta tensor of the shape and dtype the example
gives it, computed op by op while the graph is built: `.shape`, `.size()`, `.dim()`, `.ndim`,
`.numel()`, `len()`, `.dtype` and `.device` (the example's, never the meta device) then answer with
numbers and the branches run as they do for the example. Sizes become constants of the traced graph. The IR records the example's sizes anyway (a
reshape's target, a slice's bounds), and the dims that follow the batch are found by lowering again
at another batch size, which traces again (`trace_key`), so nothing is lost. What must never be baked
in is the data: a meta tensor holds no values, so `bool()` of a comparison of tensors, `.item()` and
`.tolist()` still fail, and a model that branches on its data still fails with fx's own message.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx


class WritingTracer(torch.fx.Tracer):
    """`torch.fx.Tracer` with a short way for the argument types it lowers most.

    For a Proxy, a plain container or a Python scalar the Tracer's own checks (parameter, buffer,
    module, named tuple, constant tensor) never apply, but recent torch runs a registry lookup per
    argument and per base class among them (a third of tracing regnet_y_400mf); the base
    `TracerBase.create_arg` gives the same result directly. Containers still recurse through here.
    """

    def create_arg(self, a: Any) -> Any:
        if type(a) in _PLAIN_ARG_TYPES:
            return torch.fx.proxy.TracerBase.create_arg(self, a)
        return super().create_arg(a)

    def proxy(self, node: torch.fx.Node) -> torch.fx.Proxy:
        return WritingProxy(node, self)


class WritingProxy(torch.fx.Proxy):
    """A Proxy that records augmented assignment and item assignment as the in-place calls they are.

    fx's own Proxy has no `__iadd__`, so Python runs `y += t` as `y = y + t`: the graph then
    says "a new tensor" where torch changes `y` (and every other name for it) in place, and
    `y[:, :2] = 0` fails to trace. Recorded as `operator.iadd` / `operator.setitem`, the shape run
    executes the real in-place op and the rebinding (NOTE: [In-place writes as rebinding]) or a
    clear refusal follows.
    """


def _in_place(op: Any) -> Any:
    def method(self: torch.fx.Proxy, other: Any) -> torch.fx.Proxy:
        return self.tracer.create_proxy("call_function", op, (self, other), {})

    return method


for _name in ("iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "imatmul", "iand", "ior", "ixor"):
    setattr(WritingProxy, f"__{_name}__", _in_place(getattr(operator, _name)))


def _setitem(self: torch.fx.Proxy, index: Any, value: Any) -> None:
    self.tracer.create_proxy("call_function", operator.setitem, (self, index, value), {})


WritingProxy.__setitem__ = _setitem  # type: ignore[method-assign]


_PLAIN_ARG_TYPES = {torch.fx.Proxy, WritingProxy, tuple, list, dict, int, float, bool, str, type(None)}


_MISSING = object()


class ShapeProxy(WritingProxy):
    """A proxy that knows the meta tensor (or Python value) its node computes for the example."""

    meta: Any = _MISSING  # a class default: reading an unset attribute must not make an fx Attribute

    def _known(self) -> bool:
        return isinstance(self.meta, torch.Tensor)

    @property
    def shape(self) -> Any:
        return self.meta.shape if self._known() else torch.fx.proxy.Attribute(self, "shape")

    @property
    def ndim(self) -> Any:
        return self.meta.ndim if self._known() else torch.fx.proxy.Attribute(self, "ndim")

    @property
    def dtype(self) -> Any:
        return self.meta.dtype if self._known() else torch.fx.proxy.Attribute(self, "dtype")

    @property
    def device(self) -> Any:
        """The example's device, not the meta one (`if x.device.type != "meta"` must take the real branch)."""
        return self.tracer.device if self._known() else torch.fx.proxy.Attribute(self, "device")  # type: ignore[attr-defined]

    def size(self, dim: int | None = None) -> Any:
        if self._known():
            return self.meta.size() if dim is None else self.meta.size(dim)
        return self.tracer.create_proxy("call_method", "size", (self,) if dim is None else (self, dim), {})

    def dim(self) -> Any:
        return self.meta.dim() if self._known() else self.tracer.create_proxy("call_method", "dim", (self,), {})

    def numel(self) -> Any:
        return self.meta.numel() if self._known() else self.tracer.create_proxy("call_method", "numel", (self,), {})

    def __len__(self) -> int:
        if self._known() or isinstance(self.meta, (tuple, list)):
            return len(self.meta)
        return super().__len__()


_PLAIN_ARG_TYPES.add(ShapeProxy)


def _unpatched() -> contextlib.AbstractContextManager:
    revert = getattr(torch.fx._symbolic_trace, "_maybe_revert_all_patches", None)
    return revert() if revert is not None else contextlib.nullcontext()


class _Unknown(Exception):
    """An argument whose meta value is not known: the node's shape stays unknown."""


class ShapeTracer(WritingTracer):
    """Builds the fx graph while computing each node on meta tensors of the example's shapes
    (NOTE: [Specialising on the example's shapes])."""

    def __init__(self, example_inputs: tuple[Any, ...], concrete: dict[str, Any]) -> None:
        super().__init__()
        self._inputs: Iterator[Any] = iter(example_inputs)
        self._concrete = concrete
        self._metas: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id of a real tensor -> (it, its meta twin)
        self._states: dict[str, dict[str, torch.Tensor]] = {}  # module path -> its tensors on meta
        self.device = next((t.device for t in example_inputs if isinstance(t, torch.Tensor)), torch.device("cpu"))

    def proxy(self, node: torch.fx.Node) -> torch.fx.Proxy:
        return ShapeProxy(node, self)

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **named: Any) -> torch.fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **named)
        if isinstance(proxy, ShapeProxy):
            proxy.meta = self._compute(kind, target, args, kwargs)
        return proxy

    def _compute(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        if kind == "placeholder":
            name = str(target)
            if name in self._concrete:
                return self._concrete[name]
            value = next(self._inputs, _MISSING)
            return _MISSING if value is _MISSING else self._to_meta(value)
        try:
            meta_args, meta_kwargs = self._to_meta(args), self._to_meta(kwargs)
            # fx patches nn.Module.__call__ while tracing: a module run here must not be traced again
            with torch.no_grad(), _unpatched():
                if kind == "call_function":
                    return target(*meta_args, **meta_kwargs)
                if kind == "call_method":
                    return getattr(meta_args[0], target)(*meta_args[1:], **meta_kwargs)
                if kind == "call_module":
                    from torch.func import functional_call

                    module = self.root.get_submodule(target)
                    return functional_call(module, self._state(target, module), meta_args, meta_kwargs)
                if kind == "get_attr":
                    owner, _, attr = str(target).rpartition(".")
                    return self._to_meta(getattr(self.root.get_submodule(owner), attr))
        except Exception:  # noqa: BLE001  (an unknown argument, or an op without a meta kernel: shape unknown)
            return _MISSING
        return _MISSING

    def _state(self, path: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        if path not in self._states:
            tensors = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
            self._states[path] = {name: self._to_meta(t) for name, t in tensors}
        return self._states[path]

    def _to_meta(self, value: Any) -> Any:
        if isinstance(value, ShapeProxy):
            if value.meta is _MISSING:
                raise _Unknown
            return value.meta
        if isinstance(value, torch.fx.Proxy):  # an fx Attribute (`.device`) or another kind: unknown here
            raise _Unknown
        if isinstance(value, torch.Tensor):
            if value.is_meta:
                return value
            if id(value) not in self._metas:  # the real tensor is kept, so its id is not reused
                self._metas[id(value)] = (value, torch.empty_like(value, device="meta"))
            return self._metas[id(value)][1]
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*(self._to_meta(v) for v in value))
        if isinstance(value, (list, tuple)):
            return type(value)(self._to_meta(v) for v in value)
        if isinstance(value, dict):
            return {k: self._to_meta(v) for k, v in value.items()}
        if isinstance(value, slice):
            return slice(self._to_meta(value.start), self._to_meta(value.stop), self._to_meta(value.step))
        if isinstance(value, torch.device):  # the example's device, baked into the graph: meta here
            return torch.device("meta")
        return value
