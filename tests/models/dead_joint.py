"""Dead-joint replica: a branch that holds its own joint (an add, or a concat) before a conv.

Found by the property fuzzer (tests/property): in erase mode, removing both inner branches and the
conv after their joint is valid (the outer add keeps its other operand), but `subnet` used to stop at
the inner joint ("leaves node 'add' with no inputs", or for the concat "value '%cat' with no
channels") instead of dropping it as dead code.
"""

from __future__ import annotations

import torch
from torch import nn


class DeadJointNet(nn.Module):
    """stem -> [add: (add(a1, a2) -> after_add) + skip_add] -> [add: (cat(c1, c2) -> after_cat) + skip_cat] -> head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.a1 = nn.Conv2d(8, 6, 3, 1, 1)
        self.a2 = nn.Conv2d(8, 6, 1)
        self.after_add = nn.Conv2d(6, 8, 1)
        self.skip_add = nn.Conv2d(8, 8, 1)
        self.c1 = nn.Conv2d(8, 4, 3, 1, 1)
        self.c2 = nn.Conv2d(8, 6, 1)
        self.after_cat = nn.Conv2d(10, 8, 1)
        self.skip_cat = nn.Conv2d(8, 8, 3, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.after_add(torch.relu(self.a1(x) + self.a2(x))) + self.skip_add(x)
        x = torch.relu(x)
        x = self.after_cat(torch.cat([self.c1(x), self.c2(x)], 1)) + self.skip_cat(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def dead_joint() -> nn.Module:
    """Branches that end in a joint followed by a conv, beside a plain skip branch."""
    torch.manual_seed(0)
    return DeadJointNet().eval()
