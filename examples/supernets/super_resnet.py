"""SuperResNet: a residual network whose blocks sum several candidate operators.

Architecture
------------
``stem`` (conv3x3-bn-relu) followed by three stages (widths 12, 20, 28; two blocks each) at 8x8,
4x4 and 2x2. Each stage holds
:class:`SuperBlock` s, and stages are joined by a stride-2 conv-bn-relu ``down`` layer (part of
the backbone, never removable). The head is a global mean over H and W and a Linear layer.

A :class:`SuperBlock` keeps the identity path and adds every candidate operator to it::

    y = relu(x + conv3x3_bn(x) + conv5x5_bn(x) + conv1x1_bn(x) + dwsep(x))

with the candidates

* ``conv3x3``: Conv2d 3x3 (padding 1) + BatchNorm,
* ``conv5x5``: Conv2d 5x5 (padding 2) + BatchNorm,
* ``conv1x1``: Conv2d 1x1 + BatchNorm,
* ``dwsep``: depthwise Conv2d 3x3 + BatchNorm + ReLU + pointwise Conv2d 1x1 + BatchNorm.

Removal structures (erasing mode)
---------------------------------
Every candidate of every super block, ``stages.<s>.<b>.candidates.<name>`` for ``name`` in
``conv3x3``, ``conv5x5``, ``conv1x1`` and ``dwsep``, feeds only the block's additive joint and
ends with a BatchNorm, so it can be erased; the identity path keeps the block alive even when
all four candidates are removed (the block then reduces to ``relu(x)``).
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 8, 8)


def conv_bn(c_in: int, c_out: int, kernel_size: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """A same-padding conv followed by BatchNorm, as a list of layers."""
    return [
        nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]


class SuperBlock(nn.Module):
    """``relu(x + sum of candidates(x))`` with channel-preserving candidates (see module docstring)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.candidates = nn.ModuleDict(
            {
                "conv3x3": nn.Sequential(*conv_bn(channels, channels, 3)),
                "conv5x5": nn.Sequential(*conv_bn(channels, channels, 5)),
                "conv1x1": nn.Sequential(*conv_bn(channels, channels, 1)),
                "dwsep": nn.Sequential(
                    *conv_bn(channels, channels, 3, groups=channels),
                    nn.ReLU(inplace=False),
                    *conv_bn(channels, channels, 1),
                ),
            }
        )
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for candidate in self.candidates.values():
            out = out + candidate(x)
        return self.relu(out)


class SuperResNet(nn.Module):
    """Stem, three stages of super blocks with strided downsampling between them, mean + Linear head.

    Args:
        widths: channels of the three stages.
        depths: number of super blocks per stage.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        widths: tuple[int, ...] = (12, 20, 28),
        depths: tuple[int, ...] = (2, 2, 2),
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(in_channels, widths[0], 3), nn.ReLU(inplace=False))
        self.stages = nn.ModuleList(
            nn.Sequential(*(SuperBlock(w) for _ in range(d))) for w, d in zip(widths, depths, strict=True)
        )
        self.downs = nn.ModuleList(
            nn.Sequential(*conv_bn(c_in, c_out, 3, stride=2), nn.ReLU(inplace=False))
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages[0](self.stem(x))
        for down, stage in zip(self.downs, self.stages[1:], strict=True):
            x = stage(down(x))
        return self.head(x.mean((2, 3)))


def build(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A SuperResNet for (N, in_channels, 8, 8) inputs."""
    return SuperResNet(num_classes=num_classes, in_channels=in_channels)
