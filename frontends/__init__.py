"""Frontends: lower a framework model into the IR. Frameworks are imported only when used."""

from __future__ import annotations

import contextlib
import sys
from pathlib import PurePath
from typing import Any

from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.ir.graph import Graph

FRONTENDS = ("auto", "fx", "onnx", "keras")


def is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def unwrap_torch_parallel(model: Any) -> Any:
    """The user's module inside `DistributedDataParallel` / `DataParallel` wrappers, so param sources
    read `layer1.0.conv1.weight` (what every rank's bare module answers to), not `module.layer1...`."""
    torch = sys.modules.get("torch")
    if torch is None:
        return model
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


def is_onnx_model(model: Any) -> bool:
    """An onnx.ModelProto or a path to a .onnx file (checked without importing onnx)."""
    if isinstance(model, (str, PurePath)):
        return str(model).endswith(".onnx")
    return type(model).__module__.startswith("onnx") and type(model).__name__ == "ModelProto"


def is_keras_model(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def detect(model: Any) -> str:
    """The frontend `auto` picks for `model`."""
    if is_torch_module(model):
        return "fx"
    name = type(model).__module__
    if is_keras_model(model) or name.startswith("keras") or name.startswith("tensorflow"):
        return "keras"
    if is_onnx_model(model):
        return "onnx"
    if isinstance(model, (str, PurePath)) and str(model).endswith(".keras"):
        return "keras"
    raise SpecError(
        f"cannot tell which frontend lowers a {type(model).__name__} ({name}); pass a torch.nn.Module, "
        "a keras.Model, an onnx.ModelProto or a path to a .onnx/.keras file"
    )


def as_tuple(example_inputs: Any) -> tuple:
    if example_inputs is None:
        return ()
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs)
    return (example_inputs,)


def lower(model: Any, example_inputs: Any = None, *, frontend: str = "auto", on_unsupported: str = "error") -> Graph:
    """Lower `model` into an IR graph with its weights (the engine behind `ai.compile`), with the
    batch and sequence dims symbolic where the model is polymorphic in them (`_symbolic`)."""
    if frontend not in FRONTENDS:
        raise SpecError(f"frontend must be one of {', '.join(FRONTENDS)}, not '{frontend}'")
    if on_unsupported not in ("error", "opaque"):
        raise SpecError(f"on_unsupported must be 'error' or 'opaque', not '{on_unsupported}'")
    from asgnas_ir.frontends._symbolic import mark_symbolic_dims

    model = unwrap_torch_parallel(model)
    inputs = as_tuple(example_inputs)
    with _trace_reuse(model):
        graph = _lower_once(model, inputs, frontend, on_unsupported)
        # the variants go straight to the path that served, not through `auto`'s attempts again
        served = graph.meta.frontend if graph.meta.frontend in ("fx", "onnx", "keras") else frontend
        return mark_symbolic_dims(graph, inputs, lambda resized: _lower_once(model, resized, served, on_unsupported))


def _trace_reuse(model: Any) -> contextlib.AbstractContextManager:
    if not is_torch_module(model):
        return contextlib.nullcontext()
    from asgnas_ir.frontends.torch_fx.driver import reuse_traces

    return reuse_traces()


def _lower_once(model: Any, inputs: tuple, frontend: str, on_unsupported: str) -> Graph:
    if frontend == "auto" and is_torch_module(model):
        if not inputs:
            raise SpecError("compiling a PyTorch model needs example_inputs (a tensor or a tuple of tensors)")
        from asgnas_ir.frontends.torch_auto import lower_torch_auto

        return lower_torch_auto(model, inputs, on_unsupported)  # fx, else the torch.export/ONNX path
    chosen = detect(model) if frontend == "auto" else frontend
    if chosen == "fx":
        if not is_torch_module(model):
            raise SpecError(f"frontend 'fx' needs a torch.nn.Module, got {type(model).__name__}")
        if not inputs:
            raise SpecError("compiling a PyTorch model needs example_inputs (a tensor or a tuple of tensors)")
        from asgnas_ir.frontends.torch_fx import lower_torch_fx

        return lower_torch_fx(model, inputs, on_unsupported)
    if chosen == "onnx":
        if is_torch_module(model):
            if not inputs:
                raise SpecError("exporting a PyTorch model to ONNX needs example_inputs (a tensor or a tuple of tensors)")
            from asgnas_ir.frontends.onnx.export import lower_torch_onnx

            return lower_torch_onnx(model, inputs, on_unsupported)
        if not is_onnx_model(model):
            raise SpecError(f"frontend 'onnx' needs an onnx.ModelProto, a .onnx path or a torch.nn.Module, got {type(model).__name__}")
        from asgnas_ir.frontends.onnx import lower_onnx

        return lower_onnx(model, inputs or None, on_unsupported)
    if chosen == "keras":
        if not (is_keras_model(model) or (isinstance(model, (str, PurePath)) and str(model).endswith(".keras"))):
            raise SpecError(f"frontend 'keras' needs a keras.Model or a .keras path, got {type(model).__name__}")
        from asgnas_ir.frontends.keras import lower_keras

        return lower_keras(model, inputs or None, on_unsupported)
    raise AsgnasError(f"unknown frontend '{chosen}'")
