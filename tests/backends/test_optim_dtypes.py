"""H2SPG / HESSO with half-precision parameters, under autocast, with a GradScaler, and on a model moved after the
optimizer was built (issue 16: device and dtype generic)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import asgnas_ir as ai
from asgnas_ir.backends.torch import GroupsNotZeroWarning
from asgnas_ir.backends.torch.optim import H2SPG, HESSO
from tests.models import REPLICAS

X_SHAPE = (4, 3, 32, 32)


def _model_and_space(mode: str = "prune") -> tuple[torch.nn.Module, ai.SearchSpace]:
    model = REPLICAS["resnet_basic"].build()
    space = ai.search_space(ai.compile(model.eval(), torch.randn(1, *X_SHAPE[1:])), mode=mode)
    return model.train(), space


def _batches(n: int, dtype: torch.dtype = torch.float32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(X_SHAPE, generator=g).to(dtype), torch.randint(0, 10, (X_SHAPE[0],), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cls", [H2SPG, HESSO])
def test_half_precision_parameters_train_and_zero_exactly(dtype: torch.dtype, cls: type) -> None:
    """A bf16 / fp16 model: the flat buffer keeps its dtype, the group sums run in float32, and the selected
    groups end exactly zero with nothing for finalize() to force."""
    model, space = _model_and_space()
    model = model.to(dtype)
    opt = cls(model, space, lr=0.05, warmup_steps=5, shrink_period=10)
    for x, y in _batches(20, dtype):
        opt.zero_grad()
        F.cross_entropy(model(x).float(), y).backward()
        opt.step()
    assert all(p.dtype == dtype for p in model.parameters())
    assert opt._flat.x.dtype == dtype and opt._red.r1.dtype == torch.float32
    assert opt.redundant_groups and opt._redundant_norms() == [0.0] * len(opt.redundant_groups)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupsNotZeroWarning)
        assert opt.finalize() == sorted(opt.redundant_groups)


def test_autocast_and_grad_scaler_drive_h2spg() -> None:
    """Mixed precision as torch documents it: forward under autocast, `scaler.scale(loss).backward()`,
    `scaler.step(opt)` (which unscales the flat buffer's gradient views in place) and `scaler.update()`;
    a step with an inf gradient is skipped, as with any optimizer."""
    model, space = _model_and_space()
    opt = H2SPG(model, space, lr=0.05, warmup_steps=4, shrink_period=8)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    for x, y in _batches(16):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert opt._steps == 16 and opt._redundant_norms() == [0.0] * len(opt.redundant_groups)
    before = {k: v.clone() for k, v in model.named_parameters()}
    opt.zero_grad()
    x, y = _batches(1)[0]
    (F.cross_entropy(model(x), y) * float("inf")).backward()
    scaler.step(opt)  # found inf: skipped
    assert opt._steps == 16
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters())


def test_model_moved_or_gradients_reset_by_the_user_keeps_training() -> None:
    """The parameters are views of the optimizer's flat buffer; `model.to(float64)` after construction, or
    `model.zero_grad()` (gradients set to None), are noticed at the next step and training goes on."""
    model, space = _model_and_space()
    opt = H2SPG(model, space, lr=0.05, warmup_steps=3, shrink_period=6)
    batches = _batches(12)
    for x, y in batches[:2]:
        model.zero_grad()  # not the optimizer's zero_grad: autograd makes fresh gradients outside the buffer
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert all(p.grad is v for p, v in zip(opt._flat.params, opt._flat.grad_views, strict=False))
    model.to(torch.float64)
    for x, y in batches[2:]:
        opt.zero_grad()
        F.cross_entropy(model(x.double()), y).backward()
        opt.step()
    assert opt._flat.x.dtype == torch.float64 and opt._flat.attached()
    assert opt.selected and opt._redundant_norms() == [0.0] * len(opt.redundant_groups)
