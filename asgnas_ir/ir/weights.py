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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import numpy as np

Reader = Callable[[], np.ndarray]


def tensor_array(tensor: Any) -> np.ndarray:
    """A numpy copy of a torch tensor; bfloat16 widened to float32 (NOTE: [bfloat16 weights])."""
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        tensor = tensor.float()
    return tensor.numpy().copy()


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
