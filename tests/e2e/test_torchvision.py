"""`check` on torchvision's own models (torchvision is an optional extra; absent → these skip)."""

from __future__ import annotations

import pytest

import asgnas_ir as ai

torchvision = pytest.importorskip("torchvision")

MODELS = [
    "resnet18", "resnet50", "densenet121", "vgg16_bn", "mobilenet_v3_large", "convnext_tiny", "efficientnet_b0",
    "regnet_y_400mf", "vit_b_16", "swin_t",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_torchvision_model_passes_check(name: str) -> None:
    """A pruned torchvision model's generated code matches the zeroed original within tolerance."""
    import torch

    model = getattr(torchvision.models, name)(weights=None)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    report = ai.check(model, (x,), fraction=0.5, seed=0)
    assert report.ok, report
    assert report.params_sub < report.params_full


@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["fx", "onnx"])
def test_vit_b_16_passes_check_through_both_torch_frontends(frontend: str) -> None:
    """The acceptance case of the transformer work: the same model, either torch path, ok."""
    import torch

    model = torchvision.models.vit_b_16(weights=None)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    report = ai.check(model, (x,), frontend=frontend)
    assert report.ok, report
    assert report.frontend == frontend
