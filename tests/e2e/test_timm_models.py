"""`check` through the fx frontend on small timm models of different families (timm is in the test extra).

Random init, 64x64 inputs. Together they exercise what timm adds to plain torch layers: functional
batch norm (BatchNormAct2d), `qkv.unbind(0)` attention, size-dependent Python branches (traced again
with the example's shapes known), layer scale, squeeze-excitation, and upsampling between branches.
"""

from __future__ import annotations

import pytest

import asgnas_ir as ai

timm = pytest.importorskip("timm")

# name -> create_model kwargs; each the smallest of its family (timm's test_* models where they exist)
MODELS = {
    "test_resnet": {},  # resnet: plain conv/bn/relu residual stages
    "test_efficientnet": {},  # efficientnet: BatchNormAct2d (F.batch_norm), depthwise convs, squeeze-excitation
    "test_vit": {"img_size": 64},  # vision_transformer: unbind attention, resampled position table (shape tracing)
    "test_convnext": {},  # convnext: channels-last layer norm, layer scale
    "mobilenetv3_small_050": {},  # mobilenetv3: hard-swish, squeeze-excitation, functional batch norm
    "hrnet_w18_small": {},  # hrnet: nn.Upsample between resolution branches, functional batch norm
}


def _model_and_input(name: str):  # noqa: ANN202
    import torch

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **MODELS[name]).eval()
    return model, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_timm_model_passes_check_through_fx(name: str) -> None:
    """A pruned timm model's generated code matches the zeroed original within the DESIGN tolerance."""
    model, x = _model_and_input(name)
    report = ai.check(model, x, mode="prune", frontend="fx")
    assert report.ok, report.reason
    assert report.frontend == "fx"
    assert report.params_sub < report.params_full


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_efficientnet", "test_vit"])
def test_timm_model_passes_erase_check_through_fx(name: str) -> None:
    """Erase mode removes whole blocks of the same models (residual branches, attention blocks)."""
    model, x = _model_and_input(name)
    report = ai.check(model, x, mode="erase", frontend="fx")
    assert report.ok, report.reason
