"""1-D conv replica: Conv1d/BatchNorm1d/MaxPool1d/AdaptiveAvgPool1d on an [N, C, L] input."""

from __future__ import annotations

import torch
from torch import nn


class Conv1dNet(nn.Module):
    """Two conv1d-bn-relu-maxpool stages, a third conv, adaptive avgpool, flatten, Linear."""

    def __init__(self, in_channels: int = 4, num_classes: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(in_channels, 8, 5, padding=2, bias=False),
            nn.BatchNorm1d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Conv1d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm1d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 16, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.fc(torch.flatten(x, 1))


def conv1d() -> nn.Module:
    """Small 1-D conv net on a 1x4x64 input."""
    torch.manual_seed(0)
    model = Conv1dNet()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()
