"""Per-group math on torch tensors for the optimizers (the framework-free parts are in
`asgnas_ir.backends._groups`, the flat buffer and the group map in `_flat.py`)."""

from __future__ import annotations

import torch

from asgnas_ir.backends._groups import MAGNITUDE_EPS
from asgnas_ir.errors import AsgnasError


def _resolve(model: torch.nn.Module, live: dict[str, torch.Tensor], param: str, source: str) -> torch.Tensor:
    tensor = live.get(source)
    if tensor is None:  # a tied weight is listed once by named_parameters(); its other path still resolves
        for getter in (model.get_parameter, model.get_buffer):
            try:
                return getter(source)
            except (AttributeError, TypeError):
                pass
        raise AsgnasError(
            f"search-space param '{param}' (source '{source}') is not a parameter or buffer of "
            f"{type(model).__name__}; build the search space from this model (ai.compile(model, x))"
        )
    return tensor


def _reciprocal(v: torch.Tensor) -> torch.Tensor:
    """1/v, and 0 where v is 0."""
    return v.reciprocal().nan_to_num_(posinf=0.0)


def _scores(dot: torch.Tensor, xx: torch.Tensor, gg: torch.Tensor, l1: torch.Tensor, inverse_sizes: torch.Tensor) -> torch.Tensor:
    """Twice `reference.redundancy_scores` (c/‖c‖ + m/‖m‖; the caller halves it) from per-group ⟨x,g⟩, ‖x‖², ‖g‖²,
    ‖x‖₁ and 1/size (0 for an empty group): eleven ATen ops whatever the number of groups."""
    tiny = torch.finfo(dot.dtype).tiny
    cos = torch.mul(xx, gg).clamp_min_(tiny).rsqrt_().mul_(dot)  # a zero vector has ⟨x,g⟩ = 0: cosine 0
    inverse = torch.mul(l1, inverse_sizes).add_(MAGNITUDE_EPS).reciprocal_()
    norms = torch._foreach_norm([cos, inverse])
    torch._foreach_clamp_min_(norms, tiny)  # an all-zero proxy contributes 0
    torch._foreach_div_([cos, inverse], norms)
    return cos.add_(inverse)


def _lambda(dot: torch.Tensor, norm: torch.Tensor, gg: torch.Tensor, lmbda: float, amplify: float, hat: float) -> torch.Tensor:
    """`reference.select_lambda` (a growing group has ⟨x,g⟩ < 0, which implies ‖x‖ > 0)."""
    lo = -dot * _reciprocal(norm)
    hi = -gg * norm / dot
    chosen = (amplify * lo).clamp_(lmbda, lmbda * hat)
    chosen = torch.where(chosen >= hi, 0.5 * (lo + hi), chosen)
    return torch.where(dot < 0, chosen, lmbda)
