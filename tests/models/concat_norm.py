"""Concat-norm replica: a GroupNorm right after a chunk/concat whose convolved piece can be erased.

Found by the property fuzzer (tests/property): erasing the conv on the second piece leaves the concat
with one operand, which `subnet` replaces by that operand; the GroupNorm's resize rule then compared the
operand's old shape with its new one (no change) instead of the concat's, and kept 2 groups over the
2 channels left, normalising each channel alone where the full network normalised them together.
"""

from __future__ import annotations

import torch
from torch import nn


class ConcatNormNet(nn.Module):
    """stem -> chunk -> cat(first, conv(second)) -> GroupNorm(2 groups) -> [conv + conv] -> pool -> fc."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.second = nn.Conv2d(4, 4, 1)
        self.norm = nn.GroupNorm(2, 8)
        self.left = nn.Conv2d(8, 8, 3, 1, 1)
        self.right = nn.Conv2d(8, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.relu(self.stem(x)).chunk(2, 1)
        x = self.norm(torch.cat([first, self.second(second)], 1))
        x = self.left(x) + self.right(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def concat_norm() -> nn.Module:
    """A GroupNorm whose groups line up with the two concat operands."""
    torch.manual_seed(0)
    return ConcatNormNet().eval()
