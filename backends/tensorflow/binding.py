"""IR params ↔ the variables of a live Keras 3 model (TensorFlow backend).

A Keras frontend records each IR param's `Param.source` as the Keras variable path
(`variable.path`, e.g. `sequential/dense/kernel`). Keras variables have the same shape as the
weights the frontend stored (kernels HWIO / (in, out)), so the IR axes of a slice index the
variable directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from asgnas_ir.errors import AsgnasError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.passes.analysis.dependency_graph import Slice, merge_slices

# Leaf names of vectors that act as a scale (kept positive by `rerandomize`).
_SCALE_LEAVES = ("gamma", "scale", "moving_variance", "variance", "weight")


def live_variables(model: Any) -> dict[str, Any]:
    """Every variable of `model` (trainable and not, e.g. BN moving statistics) by its `path`.

    A variable shared by several layers appears once (Keras tracks it once, under its one path).
    """
    variables: dict[str, Any] = {}
    for variable in model.variables:
        variables.setdefault(variable.path, variable)
    return variables


def resolve(live: dict[str, Any], param: str, source: str, model: Any) -> Any:
    """The variable at `source`, or an error naming the param, its source and the model."""
    variable = live.get(source)
    if variable is None:
        raise AsgnasError(
            f"search-space param '{param}' (source '{source}') is not a variable of {type(model).__name__} "
            f"'{getattr(model, 'name', '?')}'; build the search space from this model (ai.compile(model))"
        )
    return variable


def zero_slices(model: Any, graph: Graph, slices: Iterable[Slice]) -> None:
    """Set the given slices (IR axes of each stored param) to zero in the live model (statistics excepted)."""
    live = live_variables(model)
    for (param, axis), indices in merge_slices(slices).items():
        variable = resolve(live, param, graph.params[param].source, model)
        value = np.array(variable.numpy())
        index = [slice(None)] * value.ndim
        index[axis] = np.asarray(sorted(set(indices)), np.int64)
        value[tuple(index)] = 0
        variable.assign(value)


def rerandomize(model: Any, seed: int = 0) -> None:
    """Give every floating-point variable of `model` random values, in place.

    The rule of `backends.torch.binding.rerandomize_` in Keras layouts: matrices get N(0, 1/fan_in)
    with fan_in = the product of all axes but the last (Dense (in, out), conv HWIO); scale-like
    vectors (gamma, moving_variance) U(0.5, 1.5); other vectors N(0, 0.1²).
    """
    rng = np.random.default_rng(seed)
    for path, variable in sorted(live_variables(model).items()):
        dtype = keras.backend.standardize_dtype(variable.dtype)
        if "float" not in dtype:
            continue
        shape = tuple(int(d) for d in variable.shape)
        leaf = path.rsplit("/", 1)[-1]
        vector_like = sum(1 for d in shape if d > 1) <= 1
        if vector_like and (leaf in _SCALE_LEAVES or "scale" in leaf or leaf.endswith("var") or leaf.endswith("variance")):
            values = rng.uniform(0.5, 1.5, shape)
        elif vector_like:
            values = rng.standard_normal(shape) * 0.1
        else:
            fan_in = int(np.prod(shape[:-1])) or 1
            values = rng.standard_normal(shape) / fan_in**0.5
        variable.assign(values.astype(dtype))


def assign_weights(model: Any, graph: Graph, params: Iterable[str] | None = None) -> None:
    """Write the IR weights of `params` (default: all) into the variables they came from.

    A param stored in another shape than its variable (a MultiHeadAttention kernel (E, H, Dh) kept
    as (E, H*Dh)) is reshaped back, row-major; params that are not variables (constants the
    frontend derived, such as a Normalization layer's std) are skipped.
    """
    live = live_variables(model)
    weights = graph.weights
    for name in graph.params if params is None else params:
        variable = live.get(graph.params[name].source)
        if variable is None or name not in weights:
            continue
        shape = tuple(int(d) for d in variable.shape)
        variable.assign(np.asarray(weights[name]).reshape(shape).astype(keras.backend.standardize_dtype(variable.dtype)))


def clone(model: Any) -> Any:
    """A copy of a Functional/Sequential `model` with its own variables (same layer names and
    variable paths, same values), so that `check` never touches the caller's model."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def run_model(model: Any, inputs: Any) -> list[np.ndarray]:
    """Outputs of a Keras model (inference mode) as a list of numpy arrays."""
    arrays = [np.asarray(x) for x in inputs]
    outputs = model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outputs]
