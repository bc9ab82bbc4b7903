"""Normalisation replica: InstanceNorm2d (affine and not) and GroupNorm between convs."""

from __future__ import annotations

import torch
from torch import nn


class NormNet(nn.Module):
    """conv -> InstanceNorm(affine) -> relu -> conv -> InstanceNorm(no affine) -> relu
    -> conv -> GroupNorm(4 groups, 16 ch) -> relu -> avgpool -> Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.in_affine = nn.InstanceNorm2d(8, affine=True)
        self.conv2 = nn.Conv2d(8, 16, 3, 2, 1)
        self.in_plain = nn.InstanceNorm2d(16, affine=False)
        self.conv3 = nn.Conv2d(16, 16, 3, 2, 1)
        self.gn = nn.GroupNorm(num_groups=4, num_channels=16)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.in_affine(self.conv1(x)))
        x = self.relu(self.in_plain(self.conv2(x)))
        x = self.relu(self.gn(self.conv3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def norms() -> nn.Module:
    """Net mixing InstanceNorm2d (affine / non-affine) and GroupNorm."""
    torch.manual_seed(0)
    model = NormNet()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for m in (model.in_affine, model.gn):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()
