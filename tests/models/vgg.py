"""VGG replica: plain conv-bn-relu stages and a Flatten of a CxHxW map (H, W > 1)."""

from __future__ import annotations

import torch
from torch import nn


def _finish(model: nn.Module) -> nn.Module:
    """Give norm layers non-trivial statistics and switch to eval mode."""
    g = torch.Generator().manual_seed(1234)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _stage(cin: int, cout: int, convs: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(2, 2))
    return layers


class VGGBN(nn.Module):
    """Four conv-bn-relu/maxpool stages (32 -> 2 spatial), Flatten of 16x2x2, MLP head with Dropout."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_stage(3, 8, 1), *_stage(8, 16, 2), *_stage(16, 16, 1), *_stage(16, 16, 1)
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(16 * 2 * 2, 32),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def vgg_bn() -> nn.Module:
    """VGG with batch norm; flatten maps each channel to a 2x2 block of features."""
    torch.manual_seed(0)
    return _finish(VGGBN())
