"""Weights that are read from the source model when first asked for.

NOTE: [Deferred weight snapshots] `ai.compile` used to copy every tensor of the model into numpy
at once: ~100 MB for resnet50, about half of its compile time, spent even when only the search
space is wanted (no analysis pass reads a weight). A frontend can instead register a reader per
param; `WeightStore` calls it the first time that array is asked for and keeps the copy. The
reader must give exactly the compile-time values or fail: the torch frontend's reader compares
the tensor's version counter (bumped by every in-place change torch makes) with the one seen at
compile time and raises when they differ, telling the user to call `graph.update_weights(model)`
or compile again. So a graph never mixes compile-time and later values silently.

NOTE: [bfloat16 weights] numpy has no bfloat16, so a bfloat16 param's array is float32 holding the
same values (every bfloat16 is a float32: the upper half of its bits). The param keeps
`dtype="bfloat16"`; the sidecar check allows the widening and codegen narrows back exactly
(a torch layer built with `dtype=torch.bfloat16` rounds nothing when it loads them).

NOTE: [Weight readers] `Graph.update_weights(model)` reads a live model's current values, yet the IR
imports no frontend and no backend (the layers point one way, issue 19). So the IR keeps a
registry of readers (a predicate on the model and a function giving `{Param.source: array-like}`)
and the backends register theirs (`asgnas_ir.backends.weight_readers`, imported by `asgnas_ir.api`
and so by `import asgnas_ir`). Registering imports no framework: a predicate looks only at a
framework already in `sys.modules`, and a reader imports its binding on the first model of its
kind. A plain mapping of source → array-like (a torch `state_dict()`, numpy arrays) needs no reader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from asgnas_ir.errors import IRValidationError

Reader = Callable[[], np.ndarray]
# (model) -> whether a weight reader reads it; (model) -> {Param.source: array-like}
WeightPredicate = Callable[[Any], bool]
WeightReader = Callable[[Any], Mapping[str, Any]]

_WEIGHT_READERS: dict[str, tuple[WeightPredicate, WeightReader]] = {}


def tensor_array(tensor: Any) -> np.ndarray:
    """A numpy copy of a torch tensor; bfloat16 widened to float32 (NOTE: [bfloat16 weights])."""
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        tensor = tensor.float()
    return tensor.numpy().copy()


def as_array(value: Any) -> np.ndarray:
    """A numpy copy of an array-like: a torch tensor (on any device; see `tensor_array`), a TF tensor
    or Keras variable, a numpy array, a number or nested lists."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        return tensor_array(value)
    if not isinstance(value, np.ndarray) and callable(getattr(value, "numpy", None)):
        value = value.numpy()
    return np.array(value, copy=True)


def shape_of(value: Any) -> tuple[int, ...]:
    """The shape of an array-like without copying it off its device (`as_array` for what has none)."""
    shape = getattr(value, "shape", None)
    return tuple(int(d) for d in (shape if shape is not None else np.shape(value)))


# ---- live weights (NOTE: [Weight readers]) ---------------------------------------------------


def register_weight_reader(name: str, accepts: WeightPredicate, read: WeightReader) -> None:
    """Let `Graph.update_weights(model)` read any model for which `accepts(model)` is true, through
    `read(model)`: a mapping of each param's source (`Param.source`) to its current array-like value.
    `accepts` must not import a framework (test `sys.modules`). Registering `name` again replaces it."""
    _WEIGHT_READERS[name] = (accepts, read)


def weight_readers() -> tuple[str, ...]:
    """The names of the registered weight readers, in the order they are tried."""
    return tuple(_WEIGHT_READERS)


def read_live_weights(model: Any) -> Mapping[str, Any]:
    """`model`'s current values by param source: `model` itself when it is a mapping, else what the
    first registered reader that accepts it reads.

    Raises:
        IRValidationError: no registered reader accepts `model`.
    """
    if isinstance(model, Mapping):
        return model
    for accepts, read in _WEIGHT_READERS.values():
        if accepts(model):
            return read(model)
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    readers = ", ".join(_WEIGHT_READERS) or "none"
    raise IRValidationError(
        f"update_weights cannot read the weights of a {kind}: no weight reader accepts it (registered: "
        f"{readers}). Pass the model this graph was compiled from (a torch.nn.Module or keras.Model), or a "
        "mapping of each param's source to its array ({param.source: array}, e.g. model.state_dict())"
    )


class WeightStore(MutableMapping[str, np.ndarray]):
    """Param name → numpy array; an entry registered with `defer` is read on first access."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._readers: dict[str, Reader] = {}
        self._order: dict[str, None] = {}

    def defer(self, name: str, reader: Reader) -> None:
        self._arrays.pop(name, None)
        self._readers[name] = reader
        self._order[name] = None

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None:
            reader = self._readers.pop(name)  # KeyError for an unknown name, as a dict would
            array = self._arrays[name] = reader()
        return array

    def __setitem__(self, name: str, array: np.ndarray) -> None:
        self._readers.pop(name, None)
        self._arrays[name] = array
        self._order[name] = None

    def __delitem__(self, name: str) -> None:
        if name not in self._order:
            raise KeyError(name)
        self._arrays.pop(name, None)
        self._readers.pop(name, None)
        del self._order[name]

    def __contains__(self, name: object) -> bool:
        return name in self._order

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def loaded(self, name: str) -> np.ndarray | None:
        """The array if it has been read (or set), else None; never reads."""
        return self._arrays.get(name)

    @property
    def pending(self) -> int:
        """How many arrays have not been read yet."""
        return len(self._readers)
