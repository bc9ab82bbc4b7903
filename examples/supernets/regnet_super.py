"""A RegNet-style super-network (Radosavovic et al., "Designing Network Design Spaces").

Architecture
------------
``stem`` (conv3x3-bn-relu, 16 channels) followed by three stages of residual bottleneck blocks
(widths 24, 48, 64; depths 2, 3, 3; strides 1, 2, 2: 8x8 -> 8x8 -> 4x4 -> 2x2) and a head of a
global mean over H, W and a Linear layer. Each :class:`Bottleneck` computes::

    y = relu(shortcut(x) + branch(x))
    branch = conv1x1-bn-relu -> conv3x3 grouped (group width 8, stride s)-bn-relu -> conv1x1-bn

with ``shortcut`` the identity, or a 1x1 conv-bn projection in the first block of a stage, where
the width or resolution changes (bottleneck ratio 1, as in RegNetX).

Removal structures (erasing mode)
---------------------------------
The residual ``branch`` of every non-first block of a stage, ``stages.<s>.<b>.branch`` with
``b >= 1`` (5 in all), ends with a BatchNorm and feeds only the residual add, whose identity input
survives its removal; erasing them chooses the depth of each stage. The first block's branch also
meets only the add, but its projection shortcut is a chain of its own; the intended search keeps
the first block of each stage.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 8, 8)

GROUP_WIDTH = 8


class Bottleneck(nn.Module):
    """RegNetX residual bottleneck block (see module docstring)."""

    def __init__(self, c_in: int, c_out: int, stride: int, group_width: int = GROUP_WIDTH) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_out, c_out, 3, stride, padding=1, groups=c_out // group_width, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_out, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.branch(x))


class RegNetSuper(nn.Module):
    """Stem, stages of bottleneck blocks, global mean and a Linear head.

    Args:
        widths, depths, strides: per-stage output channels (multiples of the group width), block
            counts and the stride of each stage's first block.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        stem_width: int = 16,
        widths: tuple[int, ...] = (24, 48, 64),
        depths: tuple[int, ...] = (2, 3, 3),
        strides: tuple[int, ...] = (1, 2, 2),
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=False),
        )
        stages, c_in = [], stem_width
        for width, depth, stride in zip(widths, depths, strides, strict=True):
            blocks = [
                Bottleneck(c_in if i == 0 else width, width, stride if i == 0 else 1) for i in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(x.mean((2, 3)))


def build(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A RegNet-style super-network for (N, in_channels, 8, 8) inputs."""
    return RegNetSuper(num_classes=num_classes, in_channels=in_channels)
