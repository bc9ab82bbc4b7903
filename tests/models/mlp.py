"""MLP replica: Linear chain on [N, F] input with ReLU/GELU, tanh and scalar arithmetic."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Linear-ReLU-Linear-GELU-Linear, with ``torch.tanh``, ``* 2.0`` and ``- 1.0`` in between."""

    def __init__(self, in_features: int = 20, hidden: int = 32, num_classes: int = 5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.gelu = nn.GELU()
        self.fc3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc1(x))
        x = self.fc2(x)
        x = torch.tanh(x) * 2.0
        x = self.gelu(x - 1.0)
        return self.fc3(x)


def mlp() -> nn.Module:
    """Plain MLP on a 1x20 input."""
    torch.manual_seed(0)
    return MLP().eval()
