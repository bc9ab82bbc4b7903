"""Tiny networks shared by the pass tests."""

from __future__ import annotations

import torch
from torch import nn


class ConvBnReluConv(nn.Module):
    """conv -> bn -> relu -> conv: six hidden channels, each its own group."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.bn(self.conv1(x))))
