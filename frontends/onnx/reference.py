"""What `check` needs to use a raw ONNX model as its own reference: example inputs from the declared
input types, seeded re-randomization of the float initializers, and the model with the IR's
(zeroed) weights written back into its initializers.

Params lowered from an ONNX file keep the initializer's name as `source` and the initializer's
elements in the initializer's order (a bias read as `(1, O)` is stored as `(O,)`), so writing a
weight back is a reshape to the initializer's dims.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from asgnas_ir.errors import AsgnasError
from asgnas_ir.frontends.onnx.driver import input_specs
from asgnas_ir.ir.graph import Graph

# (op type, input index) of initializers that must stay positive: norm scales and variances
_SCALE_LIKE = {("BatchNormalization", 1), ("BatchNormalization", 4), ("LayerNormalization", 1),
               ("InstanceNormalization", 1), ("GroupNormalization", 1)}


def example_arrays(model: onnx.ModelProto, seed: int = 0) -> tuple[np.ndarray, ...]:
    """One array per graph input, declared shape (symbolic dims as 1): floats N(0, 1), ints in [0, 2)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for dtype, shape in input_specs(model):
        if dtype.startswith(("float", "bfloat")):
            arrays.append(rng.standard_normal(shape).astype(np.float32 if dtype == "bfloat16" else dtype))
        elif dtype == "bool":
            arrays.append(rng.integers(0, 2, shape).astype(bool))
        else:
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
    return tuple(arrays)


def rerandomize_initializers(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of `model` whose float initializers (size > 1) are random, by the rule of
    `backends.torch.binding.rerandomize_`: N(0, 1/fan_in) for matrices, U(0.5, 1.5) for norm scales
    and variances, N(0, 0.1^2) for other vectors. Scalars (GELU's sqrt 2, ...) are left alone."""
    copy = onnx.ModelProto.FromString(model.SerializeToString())
    scale_like = {n.input[i] for n in copy.graph.node for (op, i) in _SCALE_LIKE if n.op_type == op and len(n.input) > i}
    rng = np.random.default_rng(seed)
    for init in sorted(copy.graph.initializer, key=lambda t: t.name):
        array = numpy_helper.to_array(init)
        if array.dtype.kind != "f" or array.size <= 1:
            continue
        vector_like = sum(1 for d in array.shape if d > 1) <= 1
        if vector_like and init.name in scale_like:
            values = rng.random(array.shape) + 0.5
        elif vector_like:
            values = rng.standard_normal(array.shape) * 0.1
        else:
            fan_in = int(np.prod(array.shape[1:])) or 1
            values = rng.standard_normal(array.shape) / fan_in**0.5
        init.CopyFrom(numpy_helper.from_array(values.astype(array.dtype), init.name))
    return copy


def with_weights(model: onnx.ModelProto, graph: Graph) -> onnx.ModelProto:
    """A copy of `model` with each IR param's array written into the initializer it came from."""
    copy = onnx.ModelProto.FromString(model.SerializeToString())
    by_name = {init.name: init for init in copy.graph.initializer}
    for name, param in graph.params.items():
        init = by_name.get(param.source)
        if init is None:
            continue
        array = graph.weights[name]
        dims = tuple(init.dims)
        if array.size != int(np.prod(dims)):
            raise AsgnasError(f"param '{name}' has {array.size} elements but initializer '{init.name}' has shape {list(dims)}")
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array).reshape(dims), init.name))
    return copy


def as_arrays(inputs: Any) -> tuple[np.ndarray, ...]:
    """Example inputs (numpy arrays or torch tensors on any device) as numpy arrays."""

    def host(x: Any) -> np.ndarray:
        if hasattr(x, "detach"):  # a torch tensor: torch is loaded, so is the exporter's helper
            from asgnas_ir.frontends.onnx.export import host_array

            return host_array(x)
        return np.asarray(x)

    return tuple(host(x) for x in inputs)


def run_checked(path: Any, inputs: list[np.ndarray], what: str) -> list[np.ndarray]:
    """Outputs of the ONNX model at `path` on `inputs`, run in onnxruntime; `what` names the model in errors.

    onnxruntime has no kernel for some valid type and op pairs (a float64 `Conv`); such a model is
    run in `onnx.reference` instead, with a warning. Any other onnxruntime failure is raised as an
    AsgnasError naming the model, the inputs given and what to check, instead of onnxruntime's own
    exception type.
    """
    import warnings

    from asgnas_ir.testing import run_onnx

    try:
        return run_onnx(path, inputs)
    except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own exception types)
        kind = type(exc).__name__
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else kind
        if kind != "NotImplemented":
            shown = ", ".join(f"{a.dtype}{list(a.shape)}" for a in inputs)
            raise AsgnasError(
                f"onnxruntime cannot run {what} on the example inputs ({shown}): {kind}: {message}. "
                "Check that the inputs have the shapes and dtypes the model expects, and that the model runs in "
                "onnxruntime on its own (onnxruntime.InferenceSession(path).run(None, feeds))"
            ) from None
    warnings.warn(
        f"onnxruntime has no kernel for an op of {what} ({message}); running it with onnx.reference instead (slower)",
        stacklevel=2,
    )
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(path))
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    try:
        outputs = ReferenceEvaluator(model).run(None, dict(zip(names, inputs, strict=True)))
    except Exception as exc:  # noqa: BLE001  (the reference runtime raises many types)
        raise AsgnasError(f"neither onnxruntime nor onnx.reference can run {what}: {type(exc).__name__}: {exc}") from None
    return [np.asarray(o) for o in outputs]
