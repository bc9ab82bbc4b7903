"""Replicas for `check`'s comparison (issue 13): outputs of very different sizes, and a trunk whose
zeroing leaves every output constant."""

from __future__ import annotations

import torch
from torch import nn


class TwoScales(nn.Module):
    """Two outputs three orders of magnitude apart: a detection-style head next to a small auxiliary one.

    One rule over all outputs (tolerance from the largest |ref|) would let the small output be wrong by
    up to 10% of its own size."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.big = nn.Linear(8, 4)
        self.small = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.stem(x)).mean((2, 3))
        return self.big(h) * 1000.0, self.small(h)


class TwoBranches(nn.Module):
    """stem, then two removable branches summed, then a head: erase mode offers each branch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        return self.head((self.a(s) + self.b(s)).mean((2, 3)))


def two_scales() -> nn.Module:
    torch.manual_seed(0)
    return TwoScales().eval()


def two_branches() -> nn.Module:
    torch.manual_seed(0)
    return TwoBranches().eval()
