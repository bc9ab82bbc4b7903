"""One name and one IR view per variable of a live Keras model, shared by the frontend and the TF binding.

Keras does not keep `variable.path` unique: two nested models that each hold a `Dense(name="proj")`,
or nested Sequentials after `keras.models.clone_model` or a `.keras` save/load, give several
variables the same path. The key used here is the chain of layer names from the model down to the
layer that owns the variable, then the variable's name (`block_a/proj/kernel`). Layer names are
unique inside each model and survive cloning and saving, so the key does too; a variable reached
twice (a layer shared by two nested models) keeps the first key, and any remaining clash gets a
`#n` suffix in the model's own variable order.

The IR view is the shape the frontend stores the weight in. It is the variable's shape except for
EinsumDense kernels/biases (MultiHeadAttention's projections), which are read as 2-D `(in, out)`
matrices / 1-D vectors. Views are row-major reshapes, so the flat entries of a param and of its
variable coincide: index a slice in the view, never in the variable's shape.

A LoRA-enabled Dense/Conv layer's `kernel` is `_kernel + (lora_alpha / lora_rank) · A @ B`. The IR
holds that effective kernel under the base kernel's key; `Entry.lora` names A, B and the scale so
the binding can zero or assign the effective kernel exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lora:
    """The adapters of a LoRA-enabled layer: effective kernel = base + scale · (a @ b)."""

    layer: str
    a: Any
    b: Any
    scale: float


@dataclass(frozen=True)
class Entry:
    key: str
    variable: Any
    view: tuple[int, ...]  # the shape the IR stores the weight in
    lora: Lora | None = None
    # what Keras trains: the variable's flag and every enclosing layer's (`layer.trainable = False`
    # freezes a layer without touching its variables' own flags)
    trainable: bool = True


def _einsum_view(layer: Any, variable: Any) -> tuple[int, ...] | None:
    """EinsumDense kernel (in axes then out axes) as (prod in, prod out); its bias flattened."""
    equation = str(getattr(layer, "equation", ""))
    try:
        operands, _ = equation.split("->")
        source, kernel_axes = operands.split(",")
    except ValueError:
        return None
    shape = tuple(int(d) for d in variable.shape)
    if variable is getattr(layer, "bias", None):
        return (math.prod(shape),)
    if variable is not getattr(layer, "_kernel", None) or len(kernel_axes) != len(shape):
        return None
    inside = [a in source for a in kernel_axes]
    split = inside.index(False) if False in inside else len(inside)
    if any(inside[split:]):  # contracted axes after output axes: no row-major 2-D reading
        return None
    return (math.prod(shape[:split]), math.prod(shape[split:]))


def _view(layer: Any, variable: Any) -> tuple[int, ...]:
    from keras.layers import EinsumDense

    if isinstance(layer, EinsumDense):
        view = _einsum_view(layer, variable)
        if view is not None:
            return view
    return tuple(int(d) for d in variable.shape)


def _lora(layer: Any, variable: Any, key: str) -> Lora | None:
    if not getattr(layer, "lora_enabled", False) or variable is not getattr(layer, "_kernel", None):
        return None
    rank = int(layer.lora_rank)
    alpha = float(getattr(layer, "lora_alpha", rank) or rank)
    return Lora(layer=key.rsplit("/", 1)[0], a=layer.lora_kernel_a, b=layer.lora_kernel_b, scale=alpha / rank)


def _direct_variables(layer: Any) -> list[Any]:
    return [*getattr(layer, "_trainable_variables", ()), *getattr(layer, "_non_trainable_variables", ())]


def _sublayers(layer: Any) -> list[Any]:
    flatten = getattr(layer, "_flatten_layers", None)
    return list(flatten(include_self=False, recursive=False)) if flatten is not None else []


def variable_table(model: Any) -> list[Entry]:
    """Every variable of `model` once, with its unique key and IR view (model variable order)."""
    found: dict[int, Entry] = {}

    def walk(layer: Any, prefix: str, frozen: bool) -> None:
        frozen = frozen or not bool(getattr(layer, "trainable", True))
        for variable in _direct_variables(layer):
            if id(variable) not in found:
                key = f"{prefix}{variable.name}"
                found[id(variable)] = Entry(
                    key, variable, _view(layer, variable), _lora(layer, variable, key),
                    trainable=bool(variable.trainable) and not frozen,
                )
        for sub in _sublayers(layer):
            walk(sub, f"{prefix}{sub.name}/", frozen)

    top_frozen = not bool(getattr(model, "trainable", True))
    for layer in _sublayers(model):
        walk(layer, f"{layer.name}/", top_frozen)
    for variable in _direct_variables(model):  # a model's own weights (rare) sit at the top
        if id(variable) not in found:
            found[id(variable)] = Entry(str(variable.name), variable, tuple(int(d) for d in variable.shape),
                                        trainable=bool(variable.trainable) and not top_frozen)
    entries: list[Entry] = []
    taken: set[str] = set()
    seen: set[int] = set()
    for variable in model.variables:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        entry = found.get(id(variable)) or Entry(
            str(variable.path), variable, tuple(int(d) for d in variable.shape), trainable=bool(variable.trainable)
        )
        key, n = entry.key, 1
        while key in taken:  # two variables of one layer with one name, or an untracked owner
            key, n = f"{entry.key}#{n}", n + 1
        taken.add(key)
        entries.append(dataclasses.replace(entry, key=key) if key != entry.key else entry)
    return entries


def keys_by_id(model: Any) -> dict[int, Entry]:
    """`variable_table` indexed by `id(variable)` (what a converter holding a variable looks up)."""
    return {id(e.variable): e for e in variable_table(model)}
