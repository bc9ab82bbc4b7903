"""Resolving the CLI's model SPECs and input SHAPEs.

SPEC: `package.module:attr` or `path/file.py:attr` naming a model object, a model class or a
callable returning a model (called with `--kwargs`); or a path to a `.onnx` / `.keras` file.
SHAPE: `1,3,32,32` (float32) or `dtype[1,16]`, e.g. `int64[1,16]`. Integer inputs are drawn from
[0, 2), floats from a standard normal, both from a generator seeded with `--seed`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

from asgnas_ir.errors import SpecError

_SHAPE = re.compile(r"^\s*(?:(?P<dtype>[a-z0-9]+)\[(?P<inner>[0-9,\s]*)\]|(?P<plain>[0-9,\s]+))\s*$")
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`"1,3,32,32"` → ("float32", (1, 3, 32, 32)); `"int64[1,16]"` → ("int64", (1, 16))."""
    match = _SHAPE.match(text)
    if match is None:
        raise SpecError(f"input SHAPE '{text}' is not of the form 1,3,32,32 or int64[1,16]")
    dtype = match.group("dtype") or "float32"
    if dtype not in DTYPES:
        raise SpecError(f"input SHAPE '{text}': dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    body = match.group("inner") if match.group("dtype") else match.group("plain")
    dims = tuple(int(d) for d in body.replace(" ", "").split(",") if d)
    if not dims or any(d <= 0 for d in dims):
        raise SpecError(f"input SHAPE '{text}' needs positive dimensions")
    return dtype, dims


def parse_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--kwargs is not valid JSON ({exc.msg} at column {exc.colno}): {text}") from None
    if not isinstance(value, dict):
        raise SpecError(f"--kwargs must be a JSON object like '{{\"num_classes\": 10}}', got {text}")
    return value


def import_file(path: Path, prefix: str = "asgnas_file") -> Any:
    """Import a Python file by path as a fresh module (SPEC files, generated model.py files).

    Raises:
        SpecError: the file is missing, or running it raised (the message names the file).
    """
    if not path.is_file():
        raise SpecError(f"file '{path}' does not exist")
    name = f"{prefix}_{re.sub(r'[^0-9a-zA-Z_]', '_', str(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"file '{path}' cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes defined in it (dataclasses, fx tracing) look their module up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001  (any import-time failure is the file's own)
        sys.modules.pop(name, None)
        raise SpecError(f"importing '{path}' failed: {type(exc).__name__}: {exc}") from None
    return module


def _import_target(module_part: str) -> Any:
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        if not Path(module_part).is_file():
            raise SpecError(f"SPEC file '{module_part}' does not exist")
        return import_file(Path(module_part), "asgnas_spec")
    try:
        return importlib.import_module(module_part)
    except ImportError as exc:
        raise SpecError(
            f"SPEC module '{module_part}' does not import ({exc}); is the package installed in this environment?"
        ) from None
    except Exception as exc:  # noqa: BLE001  (a syntax error or a raise at import time is the module's own)
        raise SpecError(f"SPEC module '{module_part}' does not import: {type(exc).__name__}: {exc}") from None


def resolve_attribute(spec: str) -> Any:
    """The object `package.module:attr` or `path/file.py:attr` names (`attr` may be dotted), not called."""
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr:
        raise SpecError(f"SPEC '{spec}' must be package.module:attr or path/file.py:attr")
    target: Any = _import_target(module_part)
    for part in attr.split("."):
        if not hasattr(target, part):
            raise SpecError(f"SPEC '{spec}': '{module_part}' has no attribute '{attr}'")
        target = getattr(target, part)
    return target


def load_model(spec: str, kwargs: dict[str, Any] | None = None) -> Any:
    """The model a SPEC names (see the module docstring)."""
    kwargs = kwargs or {}
    if spec.endswith((".onnx", ".keras")) and ":" not in spec:
        if not Path(spec).is_file():
            raise SpecError(f"model file '{spec}' does not exist")
        return spec
    if ":" not in spec:
        raise SpecError(f"SPEC '{spec}' must be package.module:attr, path/file.py:attr, or a .onnx/.keras file")
    attr = spec.rpartition(":")[2]
    target = resolve_attribute(spec)
    if callable(target) and not _is_model_instance(target):
        try:
            return target(**kwargs)
        except Exception as exc:  # noqa: BLE001  (whatever the user's builder raises, name the SPEC)
            raise SpecError(f"SPEC '{spec}': calling {attr}(**{kwargs}) failed: {type(exc).__name__}: {exc}") from None
    if kwargs:
        raise SpecError(f"SPEC '{spec}' names a model object, so --kwargs cannot be applied")
    return target


def _is_model_instance(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        return True
    return type(obj).__module__.startswith(("keras", "tensorflow"))


def make_torch_inputs(shapes: list[str], seed: int = 0) -> tuple[Any, ...]:
    """Example tensors for SHAPE strings (see the module docstring)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for text in shapes:
        dtype_name, dims = parse_shape(text)
        dtype = getattr(torch, dtype_name)
        if dtype.is_floating_point:
            tensors.append(torch.randn(dims, generator=generator).to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, dims, generator=generator).bool())
        else:
            tensors.append(torch.randint(0, 2, dims, generator=generator, dtype=dtype))
    return tuple(tensors)


def make_numpy_inputs(shapes: list[str], seed: int = 0) -> tuple[Any, ...]:
    """Example numpy arrays for SHAPE strings (ONNX models; same rule, numpy's seeded generator)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = []
    for text in shapes:
        dtype_name, dims = parse_shape(text)
        if dtype_name.startswith(("float", "bfloat")):
            arrays.append(rng.standard_normal(dims).astype("float32" if dtype_name == "bfloat16" else dtype_name))
        else:
            arrays.append(rng.integers(0, 2, dims).astype(dtype_name))
    return tuple(arrays)
