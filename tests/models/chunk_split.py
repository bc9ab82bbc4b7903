"""Channel-splitting replica: torch.chunk, Tensor.split and channel slicing feeding separate convs."""

from __future__ import annotations

import torch
from torch import nn


class ChunkSplitNet(nn.Module):
    """stem(16) -> chunk into 2x8 -> two convs -> cat(16) -> split [4, 12] -> two convs -> add
    -> x[:, :8] slice -> conv -> pool -> Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1)
        self.left = nn.Conv2d(8, 8, 3, 1, 1)
        self.right = nn.Conv2d(8, 8, 1)
        self.small = nn.Conv2d(4, 16, 3, 2, 1)
        self.large = nn.Conv2d(12, 16, 1, 2)
        self.post = nn.Conv2d(8, 16, 3, 1, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        a, b = torch.chunk(x, 2, dim=1)
        x = torch.cat([self.relu(self.left(a)), self.relu(self.right(b))], 1)
        p, q = x.split([4, 12], 1)
        x = self.relu(self.small(p) + self.large(q))
        x = self.relu(self.post(x[:, :8]))
        return self.fc(torch.flatten(self.pool(x), 1))


def chunk_split() -> nn.Module:
    """Net using torch.chunk, Tensor.split with unequal sizes, torch.cat, add and a channel slice."""
    torch.manual_seed(0)
    return ChunkSplitNet().eval()
