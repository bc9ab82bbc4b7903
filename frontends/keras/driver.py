"""Lower a Keras 3 model (Sequential, Functional, or a `.keras` file) into the IR.

Steps: find the functional graph (a Sequential's own functional model, built from the example
inputs when needed; a subclassed model has none and is refused); scan every layer call, nested
functional models included, for classes without a converter and raise one `UnsupportedOpError`
listing them all (or keep them as opaque nodes); then walk the layer calls in depth order, each
converter reading the layer's configuration and variables and emitting IR nodes, checking each
output's shape against the one Keras inferred.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path, PurePath
from typing import Any

import keras
import numpy as np

from asgnas_ir.errors import FrontendError, SpecError, UnsupportedOp, UnsupportedOpError
from asgnas_ir.frontends.keras.builder import Builder, dtype_name, keras_value
from asgnas_ir.frontends.keras.layers import lookup, overridden_methods
from asgnas_ir.frontends.keras.policies import cast_inputs, cast_outputs
from asgnas_ir.frontends.keras.variables import keys_by_id
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Graph, GraphMeta

_WRAP = (
    "wrap it as a Functional model: inputs = keras.Input(shape); outputs = layers...(inputs); "
    "keras.Model(inputs, outputs), or give the subclass a functional `build` that calls only Keras layers"
)


def load_keras(model: Any) -> Any:
    """A keras.Model from a model or a `.keras` path."""
    if isinstance(model, (str, PurePath)):
        path = Path(model)
        if not path.is_file():
            raise SpecError(f"Keras file '{path}' does not exist")
        try:
            return keras.saving.load_model(str(path), compile=False)
        except Exception as exc:  # noqa: BLE001  (loading raises many types)
            raise FrontendError(f"'{path}' is not a loadable Keras model: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, keras.Model):
        raise SpecError(f"the keras frontend needs a keras.Model or a .keras path, got {type(model).__name__}")
    return model


def _is_functional(model: Any) -> bool:
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def functional_of(model: Any, shapes: list[tuple[int, ...]] | None) -> Any:
    """The functional graph that runs `model`: the model itself, a Sequential's inner one, or an error."""
    if isinstance(model, keras.Sequential):
        if getattr(model, "_functional", None) is None and shapes:
            model.build((None, *shapes[0][1:]))
        inner = getattr(model, "_functional", None)
        if inner is None:
            raise FrontendError(
                f"Sequential model '{model.name}' has no input shape; start it with keras.Input(shape) or pass example inputs"
            )
        return inner
    if _is_functional(model):
        return model
    raise FrontendError(
        f"'{model.name}' is a subclassed keras.Model ({type(model).__name__}) whose call() cannot be traced into a "
        f"functional graph; {_WRAP}"
    )


def _nodes(func: Any) -> list[Any]:
    """The layer calls of a functional graph in dependency order (inputs first)."""
    order = []
    for depth in sorted(func._nodes_by_depth, reverse=True):
        order.extend(func._nodes_by_depth[depth])
    return order


def _is_model(op: Any) -> bool:
    return isinstance(op, keras.Sequential) or _is_functional(op)


def _collect_unsupported(func: Any, missing: dict[str, list[str]]) -> None:
    for node in _nodes(func):
        op = node.operation
        if node.is_input:
            continue
        if _is_model(op):
            _collect_unsupported(functional_of(op, None), missing)
        elif isinstance(op, keras.Model):
            missing[f"{type(op).__name__} (subclassed model)"].append(f"'{op.name}'")
        elif lookup(op) is None:
            overrides = overridden_methods(op)
            label = type(op).__name__ + (f" (a subclass that overrides {', '.join(overrides)})" if overrides else "")
            missing[label].append(f"'{op.name}'")


# Call arguments through which a Keras layer receives a mask (Keras fills `mask` from the inputs'
# implicit masks when the layer's call takes one).
_MASK_ARGS = ("mask", "query_mask", "value_mask", "key_mask")
# Layers that read their inputs' implicit masks themselves (not through a `mask` argument).
_READS_INPUT_MASKS = ("MultiHeadAttention",)


def _mask_origin(tensor: Any) -> str:
    """The layer that created the implicit mask `tensor` carries (walking back through pass-through layers)."""
    history = getattr(tensor, "_keras_history", None)
    while history is not None:
        op = history.operation
        node = op._inbound_nodes[history.node_index]
        upstream = [t for t in node.input_tensors if getattr(t, "_keras_mask", None) is not None]
        if not upstream:
            extra = " mask_zero=True" if getattr(op, "mask_zero", False) else ""
            return f"'{op.name}' ({type(op).__name__}{extra})"
        history = getattr(upstream[0], "_keras_history", None)
    return "an input"


def _mask_uses(func: Any, found: list[str]) -> None:
    """Every layer call that would apply a Keras mask, as 'consumer <- origin' lines."""
    for node in _nodes(func):
        op = node.operation
        if node.is_input:
            continue
        if _is_model(op):
            _mask_uses(functional_of(op, None), found)
            continue
        masked = [t for t in node.input_tensors if getattr(t, "_keras_mask", None) is not None]
        explicit = [k for k in _MASK_ARGS if isinstance(node.arguments.kwargs.get(k), keras.KerasTensor)]
        if explicit or (masked and type(op).__name__ in _READS_INPUT_MASKS):
            origins = sorted({_mask_origin(t) for t in masked}) or ["a mask tensor"]
            found.append(f"'{op.name}' ({type(op).__name__}) applies the mask of {', '.join(origins)}")


def _refuse_masks(func: Any) -> None:
    found: list[str] = []
    _mask_uses(func, found)
    if found:
        raise FrontendError(
            "Keras masks are not supported: the IR has no masked form of these layers, so lowering them "
            "would drop the mask and compute other values:\n  - " + "\n  - ".join(found) + "\n"
            "Remove the implicit mask (e.g. Embedding(mask_zero=False)) and pass any masking explicitly, "
            "or use a model without masks."
        )


def _flat(structure: Any) -> list[Any]:
    return list(keras.tree.flatten(structure))


def _keras_shape(b: Builder, tensor: Any) -> tuple[int | None, ...]:
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    return (b.batch, *shape[1:]) if shape and shape[0] is None else shape


class _Walker:
    def __init__(self, b: Builder, on_unsupported: str) -> None:
        self.b = b
        self.on_unsupported = on_unsupported

    def run(self, func: Any, inputs: list[str]) -> list[str]:
        """Lower the layer calls of `func` with its inputs bound to IR values; its outputs' values."""
        b = self.b
        env: dict[int, str] = {}
        for tensor, name in zip(_flat(func.inputs), inputs, strict=True):
            env[id(tensor)] = name
        for node in _nodes(func):
            if node.is_input:
                continue
            op = node.operation
            args = keras.tree.map_structure(lambda t: env.get(id(t), t) if isinstance(t, keras.KerasTensor) else t, node.arguments.args)
            kwargs = keras.tree.map_structure(lambda t: env.get(id(t), t) if isinstance(t, keras.KerasTensor) else t, node.arguments.kwargs)
            tensors = [env[id(t)] for t in node.input_tensors]
            if _is_model(op):
                results = self.run(functional_of(op, None), tensors)
            else:
                b.layer, b.call_args, b.call_kwargs = op, tuple(args), dict(kwargs)
                tensors = self._policy_inputs(op, tensors)
                converter = lookup(op)
                result = self._opaque(node, tensors) if converter is None else converter(b, op, tensors)
                results = result if isinstance(result, (list, tuple)) else [result]
                if len(results) == len(node.output_tensors):
                    results = cast_outputs(b, list(results), node.output_tensors)
            outs = node.output_tensors
            if len(results) != len(outs):
                raise b.fail(f"lowered to {len(results)} outputs but the layer returns {len(outs)}")
            for tensor, name in zip(outs, results, strict=True):
                b.check_shape(name, _keras_shape(b, tensor))
                env[id(tensor)] = name
            b.layer = None
        return [env[id(t)] for t in _flat(func.outputs)]

    def _policy_inputs(self, op: Any, tensors: list[str]) -> list[str]:
        """The layer's inputs after its dtype policy's casts (`policies`), also in its call arguments."""
        b = self.b
        renamed = cast_inputs(b, op, tensors)
        if not renamed:
            return tensors
        swap = lambda v: renamed.get(v, v) if isinstance(v, str) else v  # noqa: E731
        b.call_args = tuple(keras.tree.map_structure(swap, b.call_args))
        b.call_kwargs = dict(keras.tree.map_structure(swap, b.call_kwargs))
        return [renamed.get(t, t) for t in tensors]

    def _opaque(self, node: Any, tensors: list[str]) -> list[str]:
        b = self.b
        shapes = [(tuple(int(d) for d in _keras_shape(b, t)), dtype_name(t.dtype)) for t in node.output_tensors]
        attrs = A.OpaqueAttrs(target=f"keras.layers.{type(node.operation).__name__}", kind="module", args=[{"$input": i} for i in range(len(tensors))])
        return b.emit_opaque(tensors, attrs, shapes)


def _example_shapes(example_inputs: Any) -> list[tuple[tuple[int, ...], str | None]]:
    found = []
    for x in example_inputs or ():
        shape = tuple(int(d) for d in getattr(x, "shape", np.shape(x)))
        dtype = getattr(x, "dtype", None)
        found.append((shape, dtype_name(dtype) if dtype is not None else None))
    return found


def lower_keras(model: Any, example_inputs: Any = None, on_unsupported: str = "error") -> Graph:
    """Lower a Keras 3 model into an IR Graph with its weights.

    Args:
        model: a `keras.Model` (Sequential or Functional) or a path to a `.keras` file.
        example_inputs: arrays or tensors fixing the input shapes (batch size 1 and the declared
            shapes by default; an axis Keras leaves as None needs an example input).
        on_unsupported: `error` or `opaque`.
    """
    model = load_keras(model)
    example_inputs = ordered_inputs(model, example_inputs)
    examples = _example_shapes(example_inputs)
    func = functional_of(model, [s for s, _ in examples] or None)
    _refuse_masks(func)  # before the op scan: a mask's own ops (NotEqual) are not the reason
    missing: dict[str, list[str]] = defaultdict(list)
    _collect_unsupported(func, missing)
    if missing and on_unsupported != "opaque":
        raise UnsupportedOpError("keras", [UnsupportedOp(op, tuple(locs)) for op, locs in missing.items()])
    graph_inputs = _flat(func.inputs)
    if examples and len(examples) != len(graph_inputs):
        raise FrontendError(f"the Keras model has {len(graph_inputs)} input(s) but {len(examples)} example input(s) were given")
    batch = examples[0][0][0] if examples and examples[0][0] else 1
    b = Builder(batch, keys_by_id(model))
    keys = sorted(func._inputs_struct) if isinstance(func._inputs_struct, dict) else None
    inputs = []
    for i, tensor in enumerate(graph_inputs):
        declared = tuple(None if d is None else int(d) for d in tensor.shape)
        if examples:
            shape, dtype = examples[i]
            if len(shape) != len(declared) or any(d is not None and d != s for d, s in zip(declared[1:], shape[1:], strict=False)):
                raise FrontendError(f"Keras input '{tensor.name}' has shape {list(declared)} but the example input has {list(shape)}")
            dtype = dtype_name(tensor.dtype)
        else:
            if any(d is None for d in declared[1:]):
                raise FrontendError(f"Keras input '{tensor.name}' has shape {list(declared)}; pass example inputs to fix its sizes")
            shape, dtype = (batch, *declared[1:]), dtype_name(tensor.dtype)
        # a dict input is named by its key, so the generated model's arguments/Inputs carry the key
        name = b._fresh_id(str(keys[i]) if keys else str(tensor.name) or f"input_{i}")
        b.values[name] = keras_value(tuple(shape), dtype)
        inputs.append(name)
    outputs = _Walker(b, on_unsupported).run(func, inputs)
    # a graph output that is a graph input, or listed twice, stays a distinct value name
    model_name = str(model.name)
    io_names = _dict_keys(func._inputs_struct, inputs) | _dict_keys(func._outputs_struct, outputs)
    output_kind = "dict" if isinstance(func._outputs_struct, dict) else "tuple" if len(outputs) > 1 else "single"
    graph = Graph(
        name=model_name,
        inputs=inputs,
        outputs=outputs,
        values=dict(b.values),
        params=b.params,
        nodes=b.nodes,
        meta=GraphMeta(
            framework="keras",
            frontend="keras",
            model_name=model_name,
            layout="channels_last",
            versions={"keras": keras.__version__, "backend": keras.backend.backend()},
            output_kind=output_kind,
            io_names=io_names,
        ),
    )
    graph.set_weights(b.weights)
    return graph


def _dict_keys(structure: Any, values: list[str]) -> dict[str, str]:
    """IR value -> its key, for a model whose inputs or outputs are a dict (else nothing). The IR keeps
    them in `keras.tree.flatten` order (sorted keys); the keys let codegen give the generated model the
    same dict interface (Keras: named Inputs and a dict of outputs), so no caller depends on the order."""
    if not isinstance(structure, dict):
        return {}
    keys = sorted(structure)
    if len(keys) != len(values) or not all(isinstance(structure[k], keras.KerasTensor) for k in keys):
        raise FrontendError(
            f"the Keras model's dict of inputs/outputs ({', '.join(map(str, keys))}) is nested; use a flat dict of tensors"
        )
    if len(set(values)) != len(values):
        return {}  # one value under two keys: the keys cannot name the values, the order still holds
    return dict(zip(values, map(str, keys), strict=True))


def input_keys(model: Any) -> list[str]:
    """The key of each IR input, in the IR's order: the dict key of a model built on a dict of inputs,
    else the Input's name (Keras also matches a dict to a list of Inputs by their names)."""
    func = functional_of(load_keras(model), None)
    structure = func._inputs_struct
    if isinstance(structure, dict):
        return [str(k) for k in sorted(structure)]
    return [str(t.name) for t in _flat(func.inputs)]


def ordered_inputs(model: Any, example_inputs: Any) -> tuple:
    """`example_inputs` as a tuple in the IR's input order. A dict (or a sequence holding only a dict)
    is matched to the model's inputs by key, as Keras does when the model is called with it, so the
    order the caller wrote the dict in never matters; a missing or unknown key is an error naming it."""
    given = example_inputs
    if isinstance(given, (list, tuple)) and len(given) == 1 and isinstance(given[0], dict):
        given = given[0]
    if not isinstance(given, dict):
        if given is None:
            return ()
        return tuple(given) if isinstance(given, (list, tuple)) else (given,)
    keys = input_keys(model)
    missing = [k for k in keys if k not in given]
    unknown = [str(k) for k in given if k not in keys]
    if missing or unknown:
        raise FrontendError(
            f"the example inputs are a dict with keys {sorted(map(str, given))}, but the Keras model's inputs are "
            f"{keys}" + (f"; missing: {missing}" if missing else "") + (f"; unknown: {unknown}" if unknown else "")
        )
    return tuple(given[k] for k in keys)


def pack_inputs(model: Any, arrays: list[Any]) -> Any:
    """`arrays` (in the IR's input order) in the structure `model` is called with: a dict by key for a
    model built on a dict of inputs, the lone array for one input, else the list."""
    func = functional_of(load_keras(model), None)
    if isinstance(func._inputs_struct, dict):
        return dict(zip(input_keys(model), arrays, strict=True))
    return arrays[0] if len(arrays) == 1 else list(arrays)


def example_arrays(model: Any, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random inputs for `model`'s declared input shapes (batch 1): floats N(0, 1), integers in [0, 2)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in _flat(functional_of(load_keras(model), None).inputs):
        shape = tuple(int(d) if d is not None else 1 for d in tensor.shape)
        shape = (1, *shape[1:])
        dtype = dtype_name(tensor.dtype)
        if dtype.startswith(("float", "bfloat")):
            arrays.append(rng.standard_normal(shape).astype("float32" if dtype == "bfloat16" else dtype))
        else:
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
    return tuple(arrays)
