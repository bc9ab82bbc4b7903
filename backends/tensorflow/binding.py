"""IR params ↔ the variables of a live Keras 3 model (TensorFlow backend).

A Keras frontend records each IR param's `Param.source` as the variable's unique key
(`asgnas_ir.frontends.keras.variables`: the layer nesting plus the variable's name, e.g.
`block_a/proj/kernel`), not `variable.path`, which Keras lets several variables share. A param is
stored in its variable's IR view, a row-major reshape of the variable (MultiHeadAttention kernels
(E, H, Dh) are (E, H*Dh) in the IR): every slice is indexed in that view, here and in the
optimizer's binding (`entry_of` + `Entry.view`), so flat entries are the same in both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from asgnas_ir.errors import AsgnasError
from asgnas_ir.frontends.keras.variables import Entry, variable_table
from asgnas_ir.ir.graph import Graph
from asgnas_ir.passes.analysis.dependency_graph import Slice, merge_slices

# Leaf names of vectors that act as a scale (kept positive by `rerandomize`).
_SCALE_LEAVES = ("gamma", "scale", "moving_variance", "variance", "weight")


def live_entries(model: Any) -> dict[str, Entry]:
    """Every variable of `model` (trainable and not, e.g. BN moving statistics) by its unique key."""
    return {entry.key: entry for entry in variable_table(model)}


def live_variables(model: Any) -> dict[str, Any]:
    """Every variable of `model` by its unique key (a variable shared by several layers appears once)."""
    return {key: entry.variable for key, entry in live_entries(model).items()}


def entry_of(live: dict[str, Entry], param: str, source: str, model: Any) -> Entry:
    """The variable entry at `source`, or an error naming the param, its source and the model."""
    entry = live.get(source)
    if entry is None:
        raise AsgnasError(
            f"search-space param '{param}' (source '{source}') is not a variable of {type(model).__name__} "
            f"'{getattr(model, 'name', '?')}'; build the search space from this model (ai.compile(model))"
        )
    return entry


def resolve(live: dict[str, Any], param: str, source: str, model: Any) -> Any:
    """The variable at `source` in a `live_variables` map, or an error naming the param and its source."""
    if source not in live:
        entry_of({}, param, source, model)
    return live[source]


def _zero_lines(value: np.ndarray, view: tuple[int, ...], axis: int, indices: list[int]) -> np.ndarray:
    """`value` with the given lines of its IR view set to zero (in the variable's own shape)."""
    if int(np.prod(view)) != value.size:
        raise AsgnasError(f"a variable of shape {value.shape} cannot be read as the IR shape {view}")
    viewed = value.reshape(view).copy()
    index: list[Any] = [slice(None)] * viewed.ndim
    index[axis] = np.asarray(sorted(set(indices)), np.int64)
    viewed[tuple(index)] = 0
    return viewed.reshape(value.shape)


def zero_slices(model: Any, graph: Graph, slices: Iterable[Slice]) -> None:
    """Set the given slices (IR axes of each stored param) to zero in the live model (statistics excepted).

    A slice indexes the param's IR view, not the variable's shape. A LoRA-merged kernel is zeroed
    exactly by zeroing the same lines of the base kernel and of the adapter that carries that axis
    (B for the output axis, A for every other one).
    """
    live = live_entries(model)
    for (param, axis), indices in merge_slices(slices).items():
        entry = entry_of(live, param, graph.params[param].source, model)
        variable = entry.variable
        variable.assign(_zero_lines(np.array(variable.numpy()), entry.view, axis, indices))
        if entry.lora is not None:
            last = len(entry.view) - 1
            factor = entry.lora.b if axis == last else entry.lora.a
            shape = tuple(int(d) for d in factor.shape)
            factor_axis = len(shape) - 1 if axis == last else axis
            factor.assign(_zero_lines(np.array(factor.numpy()), shape, factor_axis, indices))


def rerandomize(model: Any, seed: int = 0) -> None:
    """Give every floating-point variable of `model` random values, in place.

    The rule of `backends.torch.binding.rerandomize_` in Keras layouts: matrices get N(0, 1/fan_in)
    with fan_in = the product of all axes but the last (Dense (in, out), conv HWIO); scale-like
    vectors (gamma, moving_variance) U(0.5, 1.5); other vectors N(0, 0.1²).
    """
    rng = np.random.default_rng(seed)
    depthwise = _depthwise_kernels(model)
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
            # a depthwise kernel (kh, kw, C, multiplier) reads one channel: its fan-in is the window alone
            # (counting C too shrinks every depthwise output by sqrt(C) until the net ignores its input)
            reads = shape[:-2] if id(variable) in depthwise else shape[:-1]
            fan_in = int(np.prod(reads)) or 1
            values = rng.standard_normal(shape) / fan_in**0.5
        variable.assign(values.astype(dtype))


def _depthwise_kernels(model: Any) -> set[int]:
    """ids of the depthwise kernels (DepthwiseConv, the depthwise half of SeparableConv) in `model`."""
    kinds = tuple(k for k in (getattr(keras.layers, n, None) for n in (
        "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")) if k is not None)
    found: set[int] = set()
    for layer in model._flatten_layers(include_self=True):
        if isinstance(layer, kinds):
            kernel = getattr(layer, "depthwise_kernel", None)
            kernel = getattr(layer, "kernel", None) if kernel is None else kernel
            if kernel is not None:
                found.add(id(kernel))
    return found


def assign_weights(model: Any, graph: Graph, params: Iterable[str] | None = None) -> None:
    """Write the IR weights of `params` (default: all) into the variables they came from.

    A param stored in its variable's IR view (a MultiHeadAttention kernel (E, H, Dh) kept as
    (E, H*Dh)) is reshaped back, row-major; params that are not variables (constants the frontend
    derived, such as a Normalization layer's std) are skipped. A LoRA-merged kernel goes into the
    base kernel with the adapter B zeroed, so the layer's effective kernel is exactly the IR weight.
    """
    live = live_entries(model)
    weights = graph.weights
    for name in graph.params if params is None else params:
        entry = live.get(graph.params[name].source)
        if entry is None or name not in weights:
            continue
        variable = entry.variable
        shape = tuple(int(d) for d in variable.shape)
        variable.assign(np.asarray(weights[name]).reshape(shape).astype(keras.backend.standardize_dtype(variable.dtype)))
        if entry.lora is not None:
            b = entry.lora.b
            b.assign(np.zeros(tuple(int(d) for d in b.shape), keras.backend.standardize_dtype(b.dtype)))


def clone(model: Any) -> Any:
    """A copy of a Functional/Sequential `model` with its own variables (same layer names, hence the
    same variable keys, and the same values; Keras may give it other `variable.path`s), so that
    `check` never touches the caller's model."""
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
