"""StackedUnets: the demo super-network of the OTOv3 paper, sized for 1x8x8 digit images.

Architecture
------------
``stem`` (conv3x3-bn-relu) feeds two small U-Nets in parallel; their outputs are summed, passed
through a ReLU, global-average pooled and classified by a linear ``head``::

    x -> stem -+-> unet1 --+
               |           (+) -> relu -> avgpool -> flatten -> head
               +-> unet2 --+

Each :class:`SmallUnet` works on three resolutions (8x8 -> 4x4 -> 2x2)::

    enc1 (8x8) ---------------------------------------(+)-> out (conv-bn)
      |                                                ^
    pool1 -> enc2 (4x4) ------------(+)-> dec2 -> up1 -+
                |                    ^
              pool2 -> bottleneck -> up2

The skip connections ADD the encoder feature to the upsampled decoder feature (no concat), and
upsampling uses ``nn.ConvTranspose2d(kernel_size=2, stride=2)``.

Removal structures (erasing mode)
---------------------------------
A removal structure is a chain of trainable operators whose output reaches only additive joints,
and each chain here ends with a BatchNorm (optionally followed by ReLU), so zeroing its parameters
makes its output exactly zero:

* ``unet{1,2}.bottleneck`` + ``unet{1,2}.up2``: the 2x2 branch, ends at the 4x4 ``enc2 + up2`` add;
  removing it leaves the encoder skip.
* ``unet{1,2}.dec2`` + ``unet{1,2}.up1``: the decoder branch that ends at the 8x8 ``enc1 + up1``
  add; removing it leaves the ``enc1`` skip (and makes ``enc2``, ``bottleneck`` and ``up2`` dead).
* ``unet{1,2}.out``: the last conv-bn of a U-Net, ending at the sum of the two U-Nets; removing it
  makes that whole U-Net (and everything in it) dead, while the other U-Net keeps a path alive.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 8, 8)


def conv_bn_relu(c_in: int, c_out: int, kernel_size: int = 3) -> nn.Sequential:
    """A same-padding conv, BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


def up_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """2x upsampling by a stride-2 transposed conv, BatchNorm and ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


class SmallUnet(nn.Module):
    """A two-level U-Net with additive skips: (N, channels, 8, 8) -> (N, channels, 8, 8).

    Args:
        channels: input and output channels (the stem width).
        base: channels of the first encoder level; the second level and the bottleneck use ``2 * base``.
    """

    def __init__(self, channels: int, base: int) -> None:
        super().__init__()
        self.enc1 = conv_bn_relu(channels, base)
        self.pool1 = nn.MaxPool2d(2)
        self.enc2 = conv_bn_relu(base, 2 * base)
        self.pool2 = nn.MaxPool2d(2)
        self.bottleneck = conv_bn_relu(2 * base, 2 * base)
        self.up2 = up_bn_relu(2 * base, 2 * base)
        self.dec2 = conv_bn_relu(2 * base, base)
        self.up1 = up_bn_relu(base, base)
        self.out = nn.Sequential(
            nn.Conv2d(base, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)  # 8x8
        e2 = self.enc2(self.pool1(e1))  # 4x4
        d2 = e2 + self.up2(self.bottleneck(self.pool2(e2)))  # 2x2 -> 4x4, additive skip
        d1 = e1 + self.up1(self.dec2(d2))  # 4x4 -> 8x8, additive skip
        return self.out(d1)


class StackedUnets(nn.Module):
    """Stem, two parallel U-Nets whose outputs are summed, global average pool and a linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, base: int = 16) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, width)
        self.unet1 = SmallUnet(width, base)
        self.unet2 = SmallUnet(width, base)
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.relu(self.unet1(x) + self.unet2(x))
        return self.head(torch.flatten(self.pool(x), 1))


def build(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A StackedUnets for (N, in_channels, 8, 8) inputs."""
    return StackedUnets(num_classes=num_classes, in_channels=in_channels)
