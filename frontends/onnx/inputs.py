"""Checking example inputs against the inputs an ONNX model declares.

An ONNX model states each input's element type and (often static) shape. A wrong dtype is refused
up front, naming the input: onnxruntime would refuse it too, only later and without the name.
Sizes are different: giving other sizes than the declared static ones is a supported way to
re-shape a model (a fully convolutional net at another resolution), so they are not refused here;
`shape_overrides` lists them so that a lowering failure can say which given sizes caused it.
"""

from __future__ import annotations

from typing import Any

import onnx

from asgnas_ir.errors import FrontendError
from asgnas_ir.frontends.onnx.builder import ONNX_DTYPES


def _given_dtype(value: Any) -> str | None:
    dtype = getattr(value, "dtype", None)
    return None if dtype is None else str(dtype).removeprefix("torch.")


def check_example_dtypes(declared: list[onnx.ValueInfoProto], example_inputs: Any) -> None:
    """Raise FrontendError naming the first example input whose dtype is not the declared one."""
    for index, (item, value) in enumerate(zip(declared, example_inputs or (), strict=False)):
        wanted = ONNX_DTYPES.get(item.type.tensor_type.elem_type)
        given = _given_dtype(value)
        if wanted is not None and given is not None and given != wanted:
            raise FrontendError(
                f"example input {index + 1} ('{item.name}') is {given} but the ONNX model declares {wanted} "
                f"for it; pass {wanted} data (e.g. array.astype('{wanted}'))"
            )


def shape_overrides(declared: list[onnx.ValueInfoProto], shapes: list[tuple[int, ...]] | None) -> list[str]:
    """'input 'x': declared [1, 3, 32, 32], given [1, 5, 32, 32]' for each input whose given sizes
    differ from its static declared ones."""
    found = []
    for item, given in zip(declared, shapes or (), strict=False):
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in item.type.tensor_type.shape.dim]
        if len(dims) == len(given) and any(d is not None and d != g for d, g in zip(dims, given, strict=True)):
            shown = ", ".join("?" if d is None else str(d) for d in dims)
            found.append(f"input '{item.name}': declared [{shown}], given {list(given)}")
    return found
