"""IR params ↔ the variables of a live Keras 3 model (TensorFlow backend).

A Keras frontend records each IR param's `Param.source` as the variable's unique key
(`asgnas_ir.frontends.keras.variables`: the layer nesting plus the variable's name, e.g.
`block_a/proj/kernel`), not `variable.path`, which Keras lets several variables share. A param is
stored in its variable's IR view, a row-major reshape of the variable (MultiHeadAttention kernels
(E, H, Dh) are (E, H*Dh) in the IR): every slice is indexed in that view, here and in the
optimizer's binding (`entry_of` + `Entry.view`), so flat entries are the same in both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def rerandomize(model: Any, seed: int = 0, example_inputs: Sequence[np.ndarray] | None = None) -> None:
    """Give every floating-point variable of `model` random values, in place; with `example_inputs`
    (arrays in the IR's input order), then calibrate every BatchNormalization's moving statistics on
    them (`calibrate_batch_norms`).

    The rule of `backends.torch.binding.rerandomize_` in Keras layouts: matrices get N(0, 2/fan_in)
    with fan_in = the product of all axes but the last (Dense (in, out), conv HWIO); scale-like
    vectors (gamma, moving_variance) U(0.5, 1.5); other vectors N(0, 0.1²). Random moving statistics
    do not match the activations they meet, so in a deep BN network (EfficientNet) no layer
    normalises and the signal fades block after block until the output ignores the input; the
    calibration makes each BN normalise again while the random gamma/beta keep channels distinct.
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
            values = rng.standard_normal(shape) * (2.0 / fan_in) ** 0.5
        variable.assign(values.astype(dtype))
    if example_inputs is not None:
        calibrate_batch_norms(model, example_inputs, seed)


# How many inputs a calibration pass normalises over (the torch binding's CALIBRATION_BATCH).
CALIBRATION_BATCH = 8


def calibration_batch(example_inputs: Sequence[np.ndarray], seed: int = 0, size: int = CALIBRATION_BATCH) -> list[np.ndarray] | None:
    """The example inputs followed, along axis 0, by `size - 1` redraws of each floating-point input
    with its own mean and spread (other inputs repeated), as the torch binding's `calibration_batch`;
    None when the inputs do not share a leading batch axis."""
    arrays = [np.asarray(x) for x in example_inputs]
    if size <= 1 or not arrays or any(x.ndim == 0 for x in arrays) or len({x.shape[0] for x in arrays}) != 1:
        return None
    rng = np.random.default_rng([seed, 0xCA1])
    batch = []
    for x in arrays:
        if np.issubdtype(x.dtype, np.floating) and x.size:
            spread, centre = float(x.std(dtype=np.float64)), float(x.mean(dtype=np.float64))
            draws = rng.standard_normal((size - 1, *x.shape))
            draws = centre + spread * draws if spread > 0 else draws
            redrawn = draws.reshape(-1, *x.shape[1:]).astype(x.dtype)
        else:
            redrawn = np.concatenate([x] * (size - 1))
        batch.append(np.concatenate([x, redrawn]))
    return batch


def calibrate_batch_norms(model: Any, example_inputs: Sequence[np.ndarray], seed: int = 0) -> bool:
    """Set each BatchNormalization's moving mean and variance to the moments of what reaches it when
    the model runs, in inference mode, on `calibration_batch(example_inputs, seed)` (the example, in
    the IR's input order, plus redraws like it), or on the example alone where that batch cannot be
    made or the model refuses it (a fixed batch size). The rule, and why a batch, is the torch
    binding's (`calibrate_batch_norms_`).

    Each BN layer's `call` is shadowed, for that pass only, by one that first writes the moments of
    its input (per channel on the layer's axes, biased variance, over every other axis) into the
    moving statistics and then runs the layer in inference mode: each BN thus normalises with the
    batch's own statistics, as in training, and every later BN is calibrated on the already
    normalised signal, while the rest of the model stays in inference mode (a model-wide
    `training=True` would also switch on dropout and noise layers). The shadowing is an instance
    attribute set and removed with `object.__setattr__`/`__delattr__`, bypassing Keras' attribute
    tracking, so every layer comes back exactly as it was; only the moving statistics change.

    Statistics the inputs cannot determine keep their random values: a BN that sees one value per
    channel has no spread to measure, and a channel constant on these inputs keeps its random
    variance, since a zero variance would amplify any other input by 1/sqrt(epsilon). A layer called
    more than once is calibrated on its first call. Returns whether the statistics were calibrated:
    a model that cannot run on the example keeps them as they were (False), for the frontend to
    report the bad input by name.
    """
    from asgnas_ir.frontends.keras.driver import pack_inputs

    norms = [layer for layer in model._flatten_layers(include_self=True)
             if isinstance(layer, keras.layers.BatchNormalization) and getattr(layer, "moving_mean", None) is not None]
    if not norms:
        return True
    for layer in norms:
        if "call" in vars(layer):
            raise AsgnasError(f"BatchNormalization layer '{layer.name}' has its own instance `call`; "
                              "check cannot calibrate its statistics (pass keep_weights=True to check the model as it is)")
    saved = [(v, np.array(v.numpy(), copy=True)) for layer in norms for v in (layer.moving_mean, layer.moving_variance)]
    try:
        batch = calibration_batch(example_inputs, seed)
        for arrays in ([batch] if batch is not None else []) + [[np.asarray(a) for a in example_inputs]]:
            try:
                _run_calibrating(model, norms, pack_inputs(model, arrays))
                return True
            except Exception:  # noqa: BLE001  (a refused batch: try the example; a refused example: see above)
                for variable, value in saved:
                    variable.assign(value)
        return False
    finally:
        for layer in norms:
            if "call" in vars(layer):
                object.__delattr__(layer, "call")


def recalibrate_batch_norms(model: Any, graph: Graph, example_inputs: Sequence[np.ndarray], seed: int = 0) -> bool:
    """Calibrate the BatchNormalization layers of `model` again (`calibrate_batch_norms`) and write the
    new moving statistics into the params of `graph` read from them (in each param's IR view); False,
    with every statistic put back, when a statistic that changed has no param in `graph` to carry it.
    Why `check` does this after zeroing: the torch binding's `recalibrate_batch_norms_`."""
    norms = [layer for layer in model._flatten_layers(include_self=True)
             if isinstance(layer, keras.layers.BatchNormalization) and getattr(layer, "moving_mean", None) is not None]
    stats = [v for layer in norms for v in (layer.moving_mean, layer.moving_variance)]
    if not stats:
        return True
    saved = [np.array(v.numpy(), copy=True) for v in stats]
    weights = dict(graph.weights)  # read before the statistics change (deferred weights refuse a changed model)
    calibrate_batch_norms(model, example_inputs, seed)
    ids = {id(v) for v in stats}
    live = live_entries(model)
    carried: dict[int, list[str]] = {}
    for name, param in graph.params.items():
        entry = live.get(param.source)
        if entry is not None and id(entry.variable) in ids:
            carried.setdefault(id(entry.variable), []).append(name)
    changed = [v for v, old in zip(stats, saved, strict=True) if not np.array_equal(np.asarray(v.numpy()), old)]
    if any(id(v) not in carried for v in changed):
        for variable, old in zip(stats, saved, strict=True):
            variable.assign(old)
        return False
    for variable in changed:
        for name in carried[id(variable)]:
            old = np.asarray(weights[name])
            weights[name] = np.asarray(variable.numpy()).reshape(old.shape).astype(old.dtype)
    graph.set_weights(weights)
    return True


def _run_calibrating(model: Any, norms: list[Any], inputs: Any) -> None:
    """One inference pass of `model` on `inputs` with every layer of `norms` calibrating on its first call."""
    for layer in norms:
        object.__setattr__(layer, "call", _calibrating_call(layer))
    model(inputs, training=False)


def _calibrating_call(layer: Any) -> Any:
    """`layer.call` (a BatchNormalization) preceded, on its first call, by writing the moments of its
    input into its moving statistics (see `calibrate_batch_norms`)."""
    original = type(layer).call.__get__(layer)
    state = {"done": False}

    def call(inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if not state["done"]:
            state["done"] = True
            x = np.asarray(keras.ops.convert_to_numpy(inputs), np.float64)
            axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
            kept = {a % x.ndim for a in axes}
            reduce = tuple(d for d in range(x.ndim) if d not in kept)
            shape = tuple(int(d) for d in layer.moving_mean.shape)
            if x.size // max(int(np.prod([x.shape[a] for a in sorted(kept)])), 1) > 1:
                mean = x.mean(axis=reduce).reshape(shape)
                var = x.var(axis=reduce).reshape(shape)
                random = np.asarray(layer.moving_variance.numpy(), np.float64)
                var = np.where(var > 0, var, random)
                layer.moving_mean.assign(mean.astype(keras.backend.standardize_dtype(layer.moving_mean.dtype)))
                layer.moving_variance.assign(var.astype(keras.backend.standardize_dtype(layer.moving_variance.dtype)))
        return original(inputs, training=False, mask=mask)

    return call


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
