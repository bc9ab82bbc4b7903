"""Weight-sharing replica: the same modules invoked more than once in a forward pass."""

from __future__ import annotations

import torch
from torch import nn


class SharedNet(nn.Module):
    """A conv-bn-relu block applied twice in sequence, a 1x1 conv applied to two branches
    (stem output and block output) then added, and a Linear applied twice in the head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1)
        self.block = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.pool = nn.MaxPool2d(2)
        self.shared = nn.Conv2d(16, 16, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(16, 16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        y = self.block(self.block(s))  # same block twice
        x = self.shared(y) + self.shared(s)  # shared conv on two branches, then added
        x = self.pool(x)
        x = torch.flatten(self.gap(x), 1)
        x = torch.relu(self.hidden(x))
        x = torch.relu(self.hidden(x))  # shared Linear twice
        return self.fc(x)


def weight_sharing() -> nn.Module:
    """Model whose conv-bn block, 1x1 conv and Linear are each called twice."""
    torch.manual_seed(0)
    model = SharedNet()
    g = torch.Generator().manual_seed(1234)
    bn = model.block[1]
    with torch.no_grad():
        bn.weight.copy_(torch.rand(16, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(16, generator=g) * 0.1)
        bn.running_mean.copy_(torch.randn(16, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(16, generator=g) + 0.5)
    return model.eval()
