"""IR params ↔ the tensors of a live nn.Module, and the small torch helpers `check` needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from asgnas_ir.errors import AsgnasError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.weights import tensor_array
from asgnas_ir.passes.analysis.dependency_graph import Slice, merge_slices


def live_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `model` by its path (the IR's `Param.source`); a tied tensor
    answers to each of its paths."""
    tensors = dict(model.named_buffers(remove_duplicate=False))
    tensors.update(dict(model.named_parameters(remove_duplicate=False)))
    return tensors


@torch.no_grad()
def zero_slices_(model: torch.nn.Module, graph: Graph, slices: Iterable[Slice]) -> None:
    """Set the given slices to zero in the live model, in place (running statistics excepted)."""
    tensors = live_tensors(model)
    for (param, axis), indices in merge_slices(slices).items():
        source = graph.params[param].source
        tensor = tensors.get(source)
        if tensor is None:
            raise AsgnasError(f"param '{param}' (source '{source}') is not a parameter or buffer of {type(model).__name__}")
        tensor.index_fill_(axis, torch.as_tensor(indices, dtype=torch.long), 0)


@torch.no_grad()
def rerandomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every floating-point parameter and buffer random values, in place.

    Random-init models often produce degenerate outputs (zero-initialised heads, BN with unit
    statistics), which would make an equivalence check vacuous. Matrices get N(0, 1/fan_in) so
    activations stay O(1) through depth; scale-like vectors (norm weights, running variances)
    U(0.5, 1.5) so they stay positive; other vectors N(0, 0.1^2).
    """
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in sorted(live_tensors(model).items()):
        if not tensor.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        vector_like = sum(1 for d in tensor.shape if d > 1) <= 1
        if vector_like and (leaf in ("weight", "running_var", "gamma", "scale") or "scale" in leaf or leaf.endswith("var")):
            values = torch.rand(tensor.shape, generator=generator) + 0.5
        elif vector_like:
            values = torch.randn(tensor.shape, generator=generator) * 0.1
        else:
            fan_in = int(np.prod(tensor.shape[1:])) or 1
            values = torch.randn(tensor.shape, generator=generator) / fan_in**0.5
        tensor.copy_(values.to(tensor.dtype))


@torch.no_grad()
def run_model(model: Any, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """Outputs of `model(*inputs)` as numpy arrays (a tuple/list/dict of tensors is flattened)."""
    result = model(*inputs)
    flat: list[Any] = []

    def collect(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat.append(tensor_array(value))
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            for key in value:
                collect(value[key])

    collect(result)
    return flat
