"""A DARTS-style cell super-network (Liu et al., "DARTS: Differentiable Architecture Search").

Architecture
------------
``stem`` (conv3x3-bn) produces the first two cell inputs. Three cells follow::

    stem (8x8) -> cell0: normal (8x8) -> cell1: reduction (8x8 -> 4x4) -> cell2: normal (4x4)
    -> global mean over H, W -> Linear

Each :class:`Cell` has two input nodes, the outputs of the previous two cells ``s0`` and ``s1``,
each preprocessed by ReLU-conv1x1-BN to ``C`` channels (``preprocess0``/``preprocess1``), and three
intermediate nodes. Node ``i`` is the SUM of one :class:`MixedEdge` from every earlier node of the
cell (the two inputs and nodes ``0..i-1``), so the cell has 2 + 3 + 4 = 9 edges. The cell output
is ``torch.cat`` of the three intermediate nodes along channels (``3 * C`` channels), nothing else.

A :class:`MixedEdge` is the sum of the DARTS candidate operators (no architecture weights: the
search decides which operators to erase)::

    edge(x) = x + sep_conv3x3(x) + dil_conv3x3(x) + conv1x1(x)

* ``sep_conv3x3``: ReLU, depthwise conv 3x3, pointwise conv 1x1, BatchNorm;
* ``dil_conv3x3``: ReLU, depthwise conv 3x3 (dilation 2, padding 2), pointwise conv 1x1, BatchNorm;
* ``conv1x1``: conv 1x1, BatchNorm;
* skip-connect: the identity, always kept.

Reductions are done outside the edges, so every skip-connect stays an identity: the reduction
cell's two preprocessing convs use a stride-2 kernel-2 conv, and so does ``preprocess0`` of the
cell after it (whose ``s0`` is still at the previous resolution, as with DARTS' FactorizedReduce).

Removal structures (erasing mode)
---------------------------------
Every parametric candidate of every edge, ``cells.<k>.edges.<e>.ops.<name>`` for ``name`` in
``sep_conv3x3``, ``dil_conv3x3`` and ``conv1x1`` (27 per cell, 81 in all), ends with a BatchNorm
and feeds only the additive joint of its node; the skip-connect keeps every node alive. Edges
are numbered node by node: node 0 has edges 0-1 (from s0, s1), node 1 edges 2-4 (s0, s1, node 0),
node 2 edges 5-8 (s0, s1, node 0, node 1).
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 8, 8)

NODES = 3


class ReLUConvBN(nn.Module):
    """ReLU, conv (1x1, or 2x2 with stride 2 when ``reduce``) and BatchNorm: the input preprocessing."""

    def __init__(self, c_in: int, c_out: int, reduce: bool = False) -> None:
        super().__init__()
        kernel = 2 if reduce else 1
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=kernel, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def sep_conv(channels: int, dilation: int = 1) -> nn.Sequential:
    """ReLU, depthwise 3x3 conv (optionally dilated), pointwise 1x1 conv and BatchNorm."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
    )


class MixedEdge(nn.Module):
    """``x + sep_conv3x3(x) + dil_conv3x3(x) + conv1x1(x)``: one DARTS edge with all candidates summed."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ops = nn.ModuleDict(
            {
                "sep_conv3x3": sep_conv(channels),
                "dil_conv3x3": sep_conv(channels, dilation=2),
                "conv1x1": nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x  # skip-connect
        for op in self.ops.values():
            out = out + op(x)
        return out


class Cell(nn.Module):
    """Two preprocessed inputs, three summed intermediate nodes, channel concat of the nodes.

    Args:
        c_prev_prev: channels of ``s0``; c_prev: channels of ``s1``; channels: ``C`` per node.
        reduction: halve H and W in both preprocessing convs.
        reduction_prev: ``s0`` has twice the resolution of ``s1`` (the previous cell reduced).
    """

    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.preprocess0 = ReLUConvBN(c_prev_prev, channels, reduce=reduction or reduction_prev)
        self.preprocess1 = ReLUConvBN(c_prev, channels, reduce=reduction)
        self.edges = nn.ModuleList(MixedEdge(channels) for i in range(NODES) for _ in range(2 + i))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(NODES):
            node = self.edges[offset](states[0])
            for j in range(1, len(states)):
                node = node + self.edges[offset + j](states[j])
            offset += len(states)
            states.append(node)
        return torch.cat(states[2:], dim=1)


class DartsNet(nn.Module):
    """Stem, normal cell, reduction cell, normal cell, global mean and a Linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, channels: int = 16) -> None:
        super().__init__()
        c_stem = 2 * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        cells, c_pp, c_p, reduction_prev = [], c_stem, c_stem, False
        for reduction in (False, True, False):
            cells.append(Cell(c_pp, c_p, channels, reduction, reduction_prev))
            c_pp, c_p, reduction_prev = c_p, NODES * channels, reduction
        self.cells = nn.ModuleList(cells)
        self.head = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1.mean((2, 3)))


def build(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A three-cell DARTS super-network for (N, in_channels, 8, 8) inputs."""
    return DartsNet(num_classes=num_classes, in_channels=in_channels)
