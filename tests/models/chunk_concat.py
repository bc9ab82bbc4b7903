"""Chunk-concat replica: a chunk piece concatenated back beside a convolved piece, summed with a branch
whose grouped conv ties pairs of channels across the two pieces.

Found by the property fuzzer (tests/property): in both mode, erasing the conv on the second piece takes
its concat channels (and, through the ties, part of the first piece) with it; a selection adding the
first piece's remaining channel group emptied the chunk piece, which `is_valid` accepted and `subnet`
then refused ("would leave value '%chunk_0' with no channels").
"""

from __future__ import annotations

import torch
from torch import nn


class ChunkConcatNet(nn.Module):
    """stem -> [dense conv -> conv(groups=3)] + [chunk: cat(first, conv(second)) -> depthwise] -> pool -> fc."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, 2, 1)
        self.dense = nn.Conv2d(6, 6, 1)
        self.paired = nn.Conv2d(6, 6, 3, 1, 1, groups=3)
        self.second = nn.Conv2d(3, 3, 1)
        self.depthwise = nn.Conv2d(6, 6, 3, 1, 1, groups=6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        first, second = x.chunk(2, 1)
        y = self.paired(torch.relu(self.dense(x))) + self.depthwise(torch.cat([first, self.second(second)], 1))
        return self.fc(torch.flatten(self.pool(y), 1))


def chunk_concat() -> nn.Module:
    """A ShuffleNet-v2-like split and concat beside a grouped-conv branch."""
    torch.manual_seed(0)
    return ChunkConcatNet().eval()
