"""Hugging Face transformers models on the export path: what `torch.onnx.export` is given instead.

A transformers model called as a user calls it (`model(input_ids)`) returns a `ModelOutput` that,
for a decoder, holds a `DynamicCache` (`use_cache` defaults to True), which neither exporter can
return. The export path therefore exports a thin adapter that calls the model with
`use_cache=False` and returns the tensors of its output, flattened in the order `run_model` (what
`check` compares against) flattens the model's own output: the cache is no tensor, so both see the
same list (logits; last_hidden_state and pooler_output). The example inputs stay positional, bound
as the model's `forward` binds them (input_ids, attention_mask, ...).

transformers is never imported here: a model is recognised by its shape (a `config` with
`to_dict`, a `forward` taking `use_cache` or `return_dict` or transformers' `**kwargs`), which also
serves subclasses and remote-code models. The adapter holds the model as its `model` attribute, so
its parameter paths gain a `model.` prefix that `strip_prefix` takes off again: `Param.source` is
the user's own `state_dict` key. The module paths the exporter records for each node (`GraphMeta.scopes`,
read by `driver._module_scope`) carry the same prefix and lose it the same way (`driver._module_path`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

PREFIX = "model."


def is_hf_model(model: Any) -> bool:
    """Whether `model` looks like a transformers `PreTrainedModel` (see the module docstring)."""
    config = getattr(model, "config", None)
    if not isinstance(model, torch.nn.Module) or config is None or not callable(getattr(config, "to_dict", None)):
        return False
    if any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__):
        return True
    parameters = _forward_parameters(model)
    return parameters is not None and bool({"use_cache", "return_dict"} & set(parameters))


def _forward_parameters(model: torch.nn.Module) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return None


def _takes_use_cache(model: torch.nn.Module) -> bool:
    parameters = _forward_parameters(model) or {}
    if "use_cache" in parameters:
        return True
    # transformers 5 routes some flags through `**kwargs`; a config that has the flag reads it
    variadic = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return variadic and hasattr(model.config, "use_cache")  # type: ignore[union-attr]


def flat_tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in `value` in `backends.torch.binding.run_model`'s order (a ModelOutput is a dict)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in value for t in flat_tensors(value[key])]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in flat_tensors(item)]
    return []


class HFExportAdapter(torch.nn.Module):
    """`model(*inputs, use_cache=False)` as a tuple of tensors; see the module docstring."""

    def __init__(self, model: torch.nn.Module, count: int) -> None:
        super().__init__()
        self.model = model
        self._kwargs = {"use_cache": False} if _takes_use_cache(model) else {}
        # torch.export binds `dynamic_shapes` (and names the ONNX inputs) by the forward's
        # signature: one named parameter per example input, named as the model names it
        names = [name for name, p in (_forward_parameters(model) or {}).items()
                 if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)][:count]
        names += [f"input_{i}" for i in range(len(names), count)]

        def forward(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(flat_tensors(self.model(*inputs, **self._kwargs)))

        forward.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
        )
        self.forward = forward  # type: ignore[method-assign]


def model_name(model: torch.nn.Module) -> str:
    """The class name messages give: the user's model's, not the adapter's."""
    inner = model.model if isinstance(model, HFExportAdapter) else model
    return type(inner).__name__


def export_view(model: torch.nn.Module, count: int) -> tuple[torch.nn.Module, str]:
    """The module to export for `model` called with `count` positional inputs, and the prefix its
    parameter paths carry there."""
    if is_hf_model(model):
        return HFExportAdapter(model, count), PREFIX
    return model, ""


def strip_prefix(names: dict[str, str], prefix: str) -> dict[str, str]:
    """Initializer name -> the user's parameter path: the adapter's `prefix` taken off."""
    if not prefix:
        return names
    return {key: path.removeprefix(prefix) for key, path in names.items()}
