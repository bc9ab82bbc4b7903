"""Lower a torch.nn.Module into the IR through torch.fx.

Steps: trace with `torch.fx.symbolic_trace` (model in eval mode, so dropout-style Python branches
take their inference path), or, where Python code branches on sizes, again knowing the example's
shapes (`tracer.py`); run the traced module once on the example inputs, recording every fx node's
concrete result (shapes, and the Python ints that `x.size(0)` returns); scan the whole graph for ops
without a converter and raise one `UnsupportedOpError` listing them all (or keep them as opaque
nodes), input-independent calls excepted, which are folded into constants (`folding.py`); then
convert node by node, checking each lowered shape against torch's.
"""

from __future__ import annotations

import inspect
import operator
import weakref
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.fx

from asgnas_ir.errors import ExampleInputError, FrontendError, UnsupportedOp, UnsupportedOpError
from asgnas_ir.frontends._layout import choose_sequence_layout, read_packed_splits_on_features
from asgnas_ir.frontends.torch_fx import composite, indexing, recurrent, spatial, swin, transformer  # noqa: F401  (register their converters)
from asgnas_ir.frontends.torch_fx.builder import Builder, SubmoduleIndex, TensorMeta
from asgnas_ir.frontends.torch_fx.folding import Folder
from asgnas_ir.frontends.torch_fx.functions import FUNCTIONS, function_key
from asgnas_ir.frontends.torch_fx.inputs import check_example_inputs
from asgnas_ir.frontends.torch_fx.methods import METHODS
from asgnas_ir.frontends.torch_fx.modules import MODULES
from asgnas_ir.frontends.torch_fx.tracer import ShapeTracer, WritingTracer
from asgnas_ir.frontends.torch_fx.writes import WriteLog, bump, may_write, rebind_after_write
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Graph, GraphMeta
from asgnas_ir.ir.ops import Op


class _Recorder(torch.fx.Interpreter):
    """Runs the traced module and keeps each node's result: tensor meta, or the Python value."""

    def __init__(self, root: torch.nn.Module, graph: torch.fx.Graph, *, track_storage: bool = True) -> None:
        super().__init__(root, graph=graph)
        self.observed: dict[torch.fx.Node, Any] = {}
        self.writes = WriteLog(tracked=track_storage)  # NOTE: [In-place writes as rebinding]

    def run_node(self, n: torch.fx.Node) -> Any:
        versions = self.writes.before(self.env, n)
        result = super().run_node(n)
        self.writes.after(self.env, n, versions, result)
        self.observed[n] = _summarise(result)
        return result

    def run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().run(*args, **kwargs)
        finally:
            self.writes.release()

    # NOTE: [Meta shortcuts] On meta tensors torch computes the result of many ops through its
    # Python reference implementations (~0.4 ms for a relu, ~3 ms for a batch norm), which made
    # the shape run of a deep narrow network slower than running it for real. The ops below keep
    # their input's shape and dtype, so on meta inputs the result is made directly.
    # The layers whose shape rule is plain arithmetic (conv, linear, layer norm, adaptive average
    # pool, broadcasting add/mul) get their result shape from that rule too: a meta conv costs
    # ~0.5 ms and a meta layer norm ~2 ms through those references. Anything the rule does not
    # cover exactly (a mismatched channel count, an unbatched input, keyword arguments) runs
    # torch's own meta function, so its error message stays torch's. A module with forward hooks
    # is always called: a hook may change the output or must see the call.
    # A shortcut must keep torch's aliasing, which the in-place rebinding reads: Identity and eval
    # dropout return their input itself, and an in-place op returns its input, marked written.
    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        if _is_meta(args):
            module = self.submodules.get(target) or self.fetch_attr(target)
            if _has_forward_hooks(module):
                return super().call_module(target, args, kwargs)
            if isinstance(module, _RETURNS_INPUT_MODULES) and not kwargs and len(args) == 1:
                return args[0]
            if isinstance(module, _SHAPE_KEEPING_MODULES):
                return bump(args[0]) if getattr(module, "inplace", False) else _meta_like(args[0])
            shape = None if kwargs or len(args) != 1 else _module_output_shape(module, args[0])
            if shape is not None:
                return args[0].new_empty(shape)
        return super().call_module(target, args, kwargs)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target in _CATS:
            shape = _cat_meta_shape(args, kwargs)
            if shape is not None:
                return args[0][0].new_empty(shape)
        if _is_meta(args):
            if target in _SHAPE_KEEPING_FUNCTIONS and not kwargs and len(args) == 1:
                return _meta_like(args[0])
            if target in _SAME_SHAPE_BINARY and not kwargs:
                in_place = target in _IN_PLACE_BINARY
                shape = _broadcast_meta_shape(args, in_place=in_place)
                if shape is not None:
                    return bump(args[0]) if in_place else args[0].new_empty(shape)
            if target is torch.nn.functional.layer_norm and _plain_layer_norm(args, kwargs):
                return _meta_like(args[0])
        return super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        if _is_meta(args) and target in _SHAPE_KEEPING_METHODS and not kwargs and len(args) == 1:
            return bump(args[0]) if target.endswith("_") else _meta_like(args[0])
        return super().call_method(target, args, kwargs)


_SHAPE_KEEPING_MODULES = (
    torch.nn.modules.batchnorm._BatchNorm, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.GELU, torch.nn.SiLU,
    torch.nn.Sigmoid, torch.nn.Hardswish, torch.nn.Hardsigmoid, torch.nn.Tanh,
)
_RETURNS_INPUT_MODULES = (torch.nn.Identity, torch.nn.Dropout)  # the model runs in eval mode here
_SHAPE_KEEPING_FUNCTIONS = {
    torch.relu, torch.nn.functional.relu, torch.sigmoid, torch.tanh, torch.nn.functional.gelu,
    torch.nn.functional.silu, torch.nn.functional.hardswish, torch.nn.functional.hardsigmoid,
}
_SHAPE_KEEPING_METHODS = {"relu", "relu_", "sigmoid", "tanh"}
_SAME_SHAPE_BINARY = {operator.add, operator.iadd, operator.mul, operator.imul, torch.add, torch.mul}
_IN_PLACE_BINARY = {operator.iadd, operator.imul}
_CATS = {torch.cat, torch.concat, torch.concatenate}
_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_ADAPTIVE_AVG_POOLS = {torch.nn.AdaptiveAvgPool1d: 1, torch.nn.AdaptiveAvgPool2d: 2, torch.nn.AdaptiveAvgPool3d: 3}


def _has_forward_hooks(module: torch.nn.Module) -> bool:
    from torch.nn.modules import module as nn_module

    return bool(
        module._forward_hooks or module._forward_pre_hooks
        or nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks
    )


def _meta_like(x: torch.Tensor) -> torch.Tensor:
    """A meta tensor of x's shape and dtype. Not `torch.empty_like`: on a meta input that derives
    the strides through Python references (~170 µs a call against ~6 µs), and no converter reads
    strides."""
    return x.new_empty(x.shape)


def _is_meta(args: Any) -> bool:
    return bool(args) and isinstance(args[0], torch.Tensor) and args[0].is_meta


def _broadcast_meta_shape(args: Any, in_place: bool) -> tuple[int, ...] | None:
    """The result shape of two meta tensors of one dtype (no promotion), or None when they do not
    broadcast (or an in-place op would have to grow its left operand)."""
    if len(args) != 2 or not isinstance(args[1], torch.Tensor) or not args[1].is_meta or args[0].dtype != args[1].dtype:
        return None
    a, b = args[0].shape, args[1].shape
    if a == b:
        return tuple(a)
    try:
        shape = tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        return None
    return None if in_place and shape != tuple(a) else shape


def _cat_meta_shape(args: Any, kwargs: dict[str, Any]) -> tuple[int, ...] | None:
    """The result shape of `torch.cat` on meta tensors of one dtype and rank that agree off `dim`."""
    if not args or len(args) > 2 or not set(kwargs) <= {"dim"}:
        return None
    tensors, dim = args[0], args[1] if len(args) == 2 else kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int):
        return None
    first = tensors[0]
    if not all(isinstance(t, torch.Tensor) and t.is_meta and t.dtype == first.dtype and t.dim() == first.dim() for t in tensors):
        return None
    rank = first.dim()
    if not -rank <= dim < rank:
        return None
    dim %= rank
    if any(t.shape[:dim] != first.shape[:dim] or t.shape[dim + 1 :] != first.shape[dim + 1 :] for t in tensors):
        return None
    return (*first.shape[:dim], sum(t.shape[dim] for t in tensors), *first.shape[dim + 1 :])


def _normalizes_trailing(x: torch.Tensor, normalized_shape: Any) -> bool:
    trailing = tuple(normalized_shape) if isinstance(normalized_shape, (list, tuple, torch.Size)) else (normalized_shape,)
    return 0 < len(trailing) <= x.dim() and tuple(x.shape[x.dim() - len(trailing) :]) == trailing


def _plain_layer_norm(args: Any, kwargs: dict[str, Any]) -> bool:
    """`F.layer_norm(x, normalized_shape, weight, bias, eps)` over x's trailing axes, affine of x's dtype."""
    if len(args) < 2 or len(args) > 5 or not set(kwargs) <= {"weight", "bias", "eps"}:
        return False
    named = dict(zip(("weight", "bias"), args[2:4], strict=False)) | kwargs
    affine = [named.get("weight"), named.get("bias")]
    if any(t is not None and (not isinstance(t, torch.Tensor) or t.dtype != args[0].dtype) for t in affine):
        return False
    return _normalizes_trailing(args[0], args[1])


def _module_output_shape(module: torch.nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
    """The output shape of `module(x)` for the exact layer types whose rule is arithmetic on
    shapes, when `x` is a case the rule covers; None sends the call to torch's meta function."""
    kind = type(module)  # exact types: a subclass may override forward
    if kind in _CONVS:
        return _conv_output_shape(module, x)  # type: ignore[arg-type]
    if kind is torch.nn.Linear:
        fits = x.dim() >= 1 and x.shape[-1] == module.in_features and module.weight.dtype == x.dtype
        return (*x.shape[:-1], module.out_features) if fits else None
    if kind is torch.nn.LayerNorm:
        affine_ok = module.weight is None or module.weight.dtype == x.dtype
        return tuple(x.shape) if affine_ok and _normalizes_trailing(x, module.normalized_shape) else None
    if kind in _ADAPTIVE_AVG_POOLS:
        n = _ADAPTIVE_AVG_POOLS[kind]
        size = module.output_size
        sizes = (size,) * n if not isinstance(size, (list, tuple)) else tuple(size)
        if x.dim() not in (n + 1, n + 2) or len(sizes) != n or min(x.shape) <= 0:
            return None
        spatial = x.shape[x.dim() - n :]
        return (*x.shape[: x.dim() - n], *(s if s is not None else d for s, d in zip(sizes, spatial, strict=True)))
    return None


def _conv_output_shape(conv: torch.nn.Conv2d, x: torch.Tensor) -> tuple[int, ...] | None:
    n = len(conv.kernel_size)
    if x.dim() != n + 2 or x.shape[1] != conv.in_channels or conv.weight.dtype != x.dtype:
        return None
    if conv.padding == "same":
        spatial = tuple(x.shape[2:])
    else:
        padding = (0,) * n if conv.padding == "valid" else conv.padding
        spatial = tuple(
            (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
            for size, pad, dilation, kernel, stride in zip(
                x.shape[2:], padding, conv.dilation, conv.kernel_size, conv.stride, strict=True
            )
        )
    return (x.shape[0], conv.out_channels, *spatial) if min(spatial) > 0 else None


class _RunRecorder(torch.nn.Module):
    """Lets `functional_call` swap the traced module's tensors while the recorder runs it."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.gm = recorder.module
        self.recorder = recorder

    def forward(self, *args: Any) -> Any:
        return self.recorder.run(*args)


def _observe_on_meta(root: torch.nn.Module, graph: torch.fx.Graph, run_args: list[Any]) -> _Recorder | None:
    """Each node's shape and dtype from a run on the meta device, or None when that run fails.

    NOTE: [Shapes without arithmetic] The converters read only shapes, dtypes and Python ints from
    the run, never tensor values, so a run on meta tensors (shape functions, no kernels) records the
    same facts as a real one at a fraction of the cost: ~15 ms instead of ~50 ms for resnet18 and
    11 ms instead of ~350 ms for vgg16_bn at 224x224. The model's own tensors are swapped for meta
    ones through `functional_call` and restored afterwards. Meta tensors cost no memory, so every
    result is kept alive until the run ends and storage identities stay unique. A forward that needs real data (an
    `.item()`, a tensor made on the CPU inside forward, a tensor-valued attribute) fails on meta
    and is simply run again for real, which stays the reference behaviour.
    """
    from torch.func import functional_call

    recorder = _Recorder(root, graph)
    state = {f"gm.{name}": torch.empty_like(t, device="meta") for name, t in root.named_parameters(remove_duplicate=False)}
    state.update({f"gm.{name}": torch.empty_like(t, device="meta") for name, t in root.named_buffers(remove_duplicate=False)})
    args = tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in run_args)
    try:
        with torch.no_grad():
            functional_call(_RunRecorder(recorder), state, args, tie_weights=True)
    except Exception:  # noqa: BLE001  (any failure means: run it for real)
        return None
    return recorder


def _first_part(exc: BaseException) -> str:
    """The exception's own message without the fx interpreter's appended context (the executing
    node, "Original traceback", a tlparse hint), which repeats what our message already says."""
    return str(exc).split("\n\nWhile executing", 1)[0].strip()


def _summarise(result: Any) -> Any:
    if isinstance(result, torch.Tensor):
        return TensorMeta(result)
    if isinstance(result, (list, tuple)):
        return type(result)(_summarise(r) for r in result)
    if isinstance(result, torch.Size):
        return tuple(result)
    return result


def _converter(gm: SubmoduleIndex, node: torch.fx.Node) -> Any:
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        for cls in type(module).__mro__:
            found = MODULES.get(cls)
            if found is not None:
                return found
        return None
    if node.op == "call_function":
        return FUNCTIONS.get(function_key(node.target))
    if node.op == "call_method":
        return METHODS.get(node.target)
    return True  # placeholder, get_attr and output are handled by the driver


def _op_name(gm: SubmoduleIndex, node: torch.fx.Node) -> str:
    if node.op == "call_module":
        cls = type(gm.get_submodule(str(node.target)))
        return f"{cls.__module__}.{cls.__qualname__}"
    if node.op == "call_function":
        return function_key(node.target)
    return f"Tensor.{node.target}"


def _location(node: torch.fx.Node) -> str:
    return f"'{node.target}'" if node.op == "call_module" else f"fx node '{node.name}'"


def _trace(
    model: torch.nn.Module, n_inputs: int, example_inputs: tuple[Any, ...] = ()
) -> tuple[torch.fx.Graph, dict[str, Any]]:
    """Trace `model`; forward arguments past the example inputs are fixed to their defaults.

    When plain tracing fails and example inputs are given, the model is traced again knowing their
    shapes (NOTE: [Specialising on the example's shapes] in `tracer.py`); such a graph is recorded
    in `_SPECIALISED` with the shapes it holds for.

    The graph's targets are paths in `model` itself, which serves as the root for running and
    converting it: wrapping it in a GraphModule (what `symbolic_trace` adds) would generate and
    compile Python source nobody reads, a third of the tracing time.
    """
    concrete: dict[str, Any] = {}
    try:
        signature = inspect.signature(model.forward)
        extra = [p for p in list(signature.parameters.values())[n_inputs:] if p.default is not inspect.Parameter.empty]
        concrete = {p.name: p.default for p in extra}
    except (TypeError, ValueError):
        pass
    try:
        return WritingTracer().trace(model, concrete_args=concrete or None), concrete
    except Exception as exc:  # noqa: BLE001  (fx raises many types; all mean "not traceable")
        plain = f"{type(exc).__name__}: {exc}"
    shaped = ""
    if example_inputs:
        try:
            graph = ShapeTracer(example_inputs, concrete).trace(model, concrete_args=concrete or None)
            _SPECIALISED[graph] = _shapes(example_inputs)
            return graph, concrete
        except Exception as exc:  # noqa: BLE001
            again = f"{type(exc).__name__}: {exc}"
            if again != plain:
                shaped = f"; traced again with the example's shapes known: {again}"
    raise FrontendError(
        f"torch.fx cannot trace {type(model).__name__}: {plain}{shaped}. Models whose Python control flow reads "
        "tensor values need frontend='onnx' (or 'auto'), or wrap the untraceable part in a leaf module."
    ) from None


# Graphs traced knowing the example's shapes, with those shapes: they hold for those inputs only.
_SPECIALISED: weakref.WeakKeyDictionary[torch.fx.Graph, tuple] = weakref.WeakKeyDictionary()


def _shapes(example_inputs: tuple[Any, ...]) -> tuple:
    return tuple((tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else repr(t) for t in example_inputs)


# Traces kept for the lowerings of one `ai.compile`: the symbolic-dims pass lowers the model again at
# other input sizes (frontends/_symbolic.py), and fx's trace does not depend on them, except a trace
# that had to know the example's shapes, which is kept per shapes.
_TRACES: ContextVar[dict[tuple, tuple[torch.fx.Graph, dict[str, Any]]] | None] = ContextVar("fx_traces", default=None)


@contextmanager
def reuse_traces() -> Iterator[None]:
    """Within this block, lowering the same module again reuses its fx trace."""
    token = _TRACES.set({})
    try:
        yield
    finally:
        _TRACES.reset(token)


def _cached_trace(model: torch.nn.Module, example_inputs: tuple[Any, ...]) -> tuple[torch.fx.Graph, dict[str, Any]]:
    cache = _TRACES.get()
    if cache is None:
        return _trace(model, len(example_inputs), example_inputs)
    key: tuple = (id(model), len(example_inputs))
    hit = cache.get(key)
    if hit is not None and hit[0] not in _SPECIALISED:
        return hit
    shaped_key = (*key, _shapes(example_inputs))
    if shaped_key in cache:
        return cache[shaped_key]
    result = _trace(model, len(example_inputs), example_inputs)
    cache[shaped_key if result[0] in _SPECIALISED else key] = result
    return result


def lower_torch_fx(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], on_unsupported: str = "error") -> Graph:
    """Lower `model` (called on `example_inputs`) into an IR Graph with its weights.

    The model is traced in eval mode; every submodule's `training` flag is put back exactly as it
    was (a frozen BatchNorm in a training model, a dropout left in train mode in an eval model),
    also when lowering fails.
    """
    flags = training_flags(model)
    try:
        if any(training for _, training in flags):
            model.eval()
        graph, concrete = _cached_trace(model, example_inputs)
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        # fx keeps a placeholder for every specialised argument, carrying the default as its arg.
        specialised = {n: (n.args[0] if n.args else None) for n in placeholders[len(example_inputs) :] if concrete}
        tensor_args = [n for n in placeholders if n not in specialised]
        if len(tensor_args) != len(example_inputs):
            raise FrontendError(
                f"{type(model).__name__}.forward takes {len(tensor_args)} tensor input(s) "
                f"({', '.join(n.name for n in tensor_args)}) but {len(example_inputs)} example input(s) were given"
            )
        check_example_inputs(model, model, tensor_args, example_inputs)
        fixed = iter(example_inputs)
        run_args = [specialised[n] if n in specialised else next(fixed) for n in placeholders]
        recorder = _observe_on_meta(model, graph, run_args)
        if recorder is None:
            # real activations cost memory: keep them alive only where a write may need their identity
            index = SubmoduleIndex(model)
            track = may_write(model, graph, lambda node: _converter(index, node) is not None)
            recorder = _Recorder(model, graph, track_storage=track)
            try:
                with torch.no_grad():
                    recorder.run(*run_args)
            except Exception as exc:  # noqa: BLE001
                shapes = [list(t.shape) for t in example_inputs]
                raise ExampleInputError(
                    f"{type(model).__name__} fails on example inputs of shape {shapes}: {type(exc).__name__}: "
                    f"{_first_part(exc)}. "
                    "Check the input shapes and dtypes (CLI: --input 1,3,224,224 or int64[1,16])."
                ) from None
        device = next((t.device for t in example_inputs if isinstance(t, torch.Tensor)), torch.device("cpu"))
        return _convert(model, graph, recorder.observed, recorder.writes, on_unsupported, specialised, device)
    finally:
        restore_training_flags(flags)


def training_flags(model: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    """Each submodule with its `training` flag, to put back after a lowering that needs eval mode."""
    return [(m, m.training) for m in model.modules()]


def restore_training_flags(flags: list[tuple[torch.nn.Module, bool]]) -> None:
    for module, training in flags:
        if module.training is not training:
            module.training = training  # the flag only; `train()` would recurse into children


def _convert(
    model: torch.nn.Module, fx_graph: torch.fx.Graph, observed: dict, writes: WriteLog, on_unsupported: str,
    specialised: dict, device: torch.device,
) -> Graph:
    gm = SubmoduleIndex(model)  # the traced graph's targets are paths in the model itself
    folder = Folder(gm, fx_graph, observed, lambda n: _converter(gm, n) is not None, specialised, device)
    missing: dict[str, list[str]] = defaultdict(list)
    for node in fx_graph.nodes:
        if _converter(gm, node) is None and node not in folder.foldable:
            missing[_op_name(gm, node)].append(_location(node))
    if missing and on_unsupported != "opaque":
        raise UnsupportedOpError("torch.fx", [UnsupportedOp(op, tuple(locs)) for op, locs in missing.items()])

    b = Builder(gm, observed)
    order = {node: i for i, node in enumerate(fx_graph.nodes)}
    inputs: list[str] = []
    outputs: list[str] = []
    output_kind = "single"
    scopes: dict[str, str] = {}
    modules: dict[str, str] = {}
    for node in fx_graph.nodes:
        b.current = node
        first_new = len(b.nodes)
        if node in specialised:
            b.env[node] = specialised[node]
        elif node.op == "placeholder":
            meta = observed.get(node)
            if not isinstance(meta, TensorMeta):
                raise FrontendError(f"forward argument '{node.name}' must be a tensor")
            b.values[node.name] = meta.to_value()
            b.env[node] = node.name
            inputs.append(node.name)
        elif node.op == "get_attr":
            b.env[node] = _lower_get_attr(b, gm, node)
        elif node.op == "output":
            result = b.arg(node.args[0])
            flat = list(result) if isinstance(result, (list, tuple)) else [result]
            if isinstance(result, (list, tuple)):
                output_kind = "tuple"
            for item in flat:
                if not b.is_tensor(item):
                    raise FrontendError(f"{type(model).__name__} returns a {type(item).__name__}; only tensors can be outputs")
            outputs = list(flat)
        else:
            converter = _converter(gm, node)
            if node in folder.foldable:
                b.env[node] = _convert_or_fold(b, node, converter, folder)
            elif converter is None:
                b.env[node] = _lower_opaque(b, gm, node)
            else:
                b.env[node] = converter(b, node)
                b.check_shape(node, b.env[node])
            rebind_after_write(b, node, writes, order, b.where(), _op_name(gm, node))
        _record_scope(node, b.nodes[first_new:], scopes, modules)
    _drop_dead_constants(b, outputs)
    choose_sequence_layout(b.values, b.params, b.nodes, inputs)
    read_packed_splits_on_features(b.values, b.params, b.nodes, inputs)
    graph = Graph(
        name=type(model).__name__,
        inputs=inputs,
        outputs=outputs,
        values={k: v for k, v in b.values.items()},
        params=b.params,
        nodes=b.nodes,
        meta=GraphMeta(
            framework="torch",
            frontend="fx",
            model_name=type(model).__name__,
            layout="channels_first",
            versions={"torch": torch.__version__},
            output_kind=output_kind,
            scopes=scopes,
            modules=modules,
            computed=sorted({p.source for p in b.params.values()} - set(model.state_dict())),
        ),
    )
    graph.set_weights(b.weights)
    return graph


def _record_scope(node: torch.fx.Node, made: list, scopes: dict[str, str], modules: dict[str, str]) -> None:
    """The module whose forward made `node` (fx's `nn_module_stack`: outermost first, a module call
    ends with the module itself) becomes the scope of every IR node it lowered to."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    for path, module_type in stack:
        modules[path] = getattr(module_type, "__name__", str(module_type))
    scope = stack[-1][0].partition("@")[0] if stack else ""
    scopes.update((ir_node.id, scope) for ir_node in made)




def _convert_or_fold(b: Builder, node: torch.fx.Node, converter: Any, folder: Folder) -> Any:
    """An input-independent node: lowered by its converter where it has one that takes it (an
    `expand` of a fixed table stays an expand, which follows the batch in generated code), else
    evaluated and kept as a constant (NOTE in `folding.py`). A converter that refuses leaves nothing
    behind."""
    # a call on Python values alone (torch.zeros(b, h, w, device=x.device)) is evaluated where the
    # model's tensors live, not on the meta device of the shape run
    reads_tensors = any(b.is_tensor(v) for v in _flat(b.args(node)))
    if converter is not None and reads_tensors:
        mark = (len(b.nodes), set(b.values), set(b.params))
        try:
            result = converter(b, node)
            b.check_shape(node, result)
            return result
        except FrontendError:
            del b.nodes[mark[0] :]
            for name in set(b.values) - mark[1]:
                del b.values[name]
            for name in set(b.params) - mark[2]:
                del b.params[name]
                b.weights.pop(name, None)
    result = folder.fold(b, node)
    b.check_shape(node, result)
    return result


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flat(item)]
    return [value]


def _lower_get_attr(b: Builder, gm: SubmoduleIndex, node: torch.fx.Node) -> Any:
    target = str(node.target)
    owner_path, _, attr = target.rpartition(".")
    owner = gm.get_submodule(owner_path)  # "" is the model itself
    tensor = getattr(owner, attr)
    if not isinstance(tensor, torch.Tensor):
        return tensor
    trainable = isinstance(tensor, torch.nn.Parameter) and tensor.requires_grad
    param = b.add_param(target, tensor, None, trainable=trainable)
    return b.emit(Op.CONSTANT, [], params={"value": param})


def _lower_opaque(b: Builder, gm: SubmoduleIndex, node: torch.fx.Node) -> Any:
    tensors: list[str] = []

    def template(value: Any) -> Any:
        if isinstance(value, str) and b.is_tensor(value):
            tensors.append(value)
            return {"$input": len(tensors) - 1}
        if isinstance(value, (list, tuple)):
            return [template(v) for v in value]
        if isinstance(value, (int, float, bool, str)) or value is None:
            return value
        return repr(value)

    args, kwargs = b.args(node)
    arg_template = [template(a) for a in args]
    kwarg_template = {k: template(v) for k, v in kwargs.items()}
    kind = {"call_function": "function", "call_method": "method", "call_module": "module"}[node.op]
    attrs = A.OpaqueAttrs(target=_op_name(gm, node), kind=kind, args=arg_template, kwargs=kwarg_template)
    return b.emit_opaque(tensors, attrs, b.observed_value(node))


def _drop_dead_constants(b: Builder, outputs: list[str]) -> None:
    """Constants whose param a converter folded into a weighted op are left unused, and so are the
    values folding computed on the way to another (a folded constant broadcast over the batch is a
    constant and an expand of it); drop them."""
    constant = {n.outputs[0] for n in b.nodes if n.op == Op.CONSTANT}
    constant |= {n.outputs[0] for n in b.nodes if n.op == Op.EXPAND and n.inputs[0] in constant}
    kept = list(b.nodes)
    while True:
        used = set(outputs)
        for node in kept:
            used.update(node.inputs)
        alive = [n for n in kept if n.outputs[0] not in constant or n.outputs[0] in used]
        if len(alive) == len(kept):
            break
        kept = alive
    dropped = {n.outputs[0] for n in b.nodes} - {o for n in kept for o in n.outputs}
    b.nodes[:] = kept
    for name in dropped:
        b.values.pop(name, None)
    params_used = {p for n in kept for p in n.params.values()}
    for name in list(b.params):
        if name not in params_used:
            del b.params[name]
            b.weights.pop(name, None)
