"""A DARTS-style cell super-network (Liu et al., "DARTS: Differentiable Architecture Search").

Architecture
------------
``stem`` (conv3x3 stride 2, bn) produces the first two cell inputs. Three cells follow::

    stem (8x8 -> 4x4) -> cell0: normal (4x4) -> cell1: reduction (4x4 -> 2x2) -> cell2: normal (2x2)
    -> global mean over H, W -> Linear

(The stem's stride keeps the cells small: 27 edges of three candidates each are many small ops,
and the CPU cost of one epoch is dominated by their count, most of all by depthwise-conv backward
passes. ``DartsNet(stem_stride=1)`` runs the first cell at 8x8. At 2x2 the dilated conv only
sees its centre tap; it stays a valid, weaker candidate.)

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
``nodes`` (default 3) sets the intermediate nodes per cell and ``group_width`` (default 1, true
depthwise) the channels per group of the spatial convs in ``sep_conv3x3``/``dil_conv3x3``.

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


def sep_conv(channels: int, dilation: int = 1, group_width: int = 1) -> nn.Sequential:
    """ReLU, depthwise 3x3 conv (optionally dilated), pointwise 1x1 conv and BatchNorm.

    ``group_width`` > 1 makes the spatial conv grouped rather than depthwise (``group_width``
    channels per group).
    """
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(
            channels,
            channels,
            3,
            padding=dilation,
            dilation=dilation,
            groups=channels // group_width,
            bias=False,
        ),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
    )


class MixedEdge(nn.Module):
    """``x + sep_conv3x3(x) + dil_conv3x3(x) + conv1x1(x)``: one DARTS edge with all candidates summed."""

    def __init__(self, channels: int, group_width: int = 1) -> None:
        super().__init__()
        self.ops = nn.ModuleDict(
            {
                "sep_conv3x3": sep_conv(channels, group_width=group_width),
                "dil_conv3x3": sep_conv(channels, dilation=2, group_width=group_width),
                "conv1x1": nn.Sequential(
                    nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
                ),
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

    def __init__(
        self,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        nodes: int = 3,
        group_width: int = 1,
    ) -> None:
        super().__init__()
        self.nodes = nodes
        self.preprocess0 = ReLUConvBN(c_prev_prev, channels, reduce=reduction or reduction_prev)
        self.preprocess1 = ReLUConvBN(c_prev, channels, reduce=reduction)
        self.edges = nn.ModuleList(
            MixedEdge(channels, group_width) for i in range(nodes) for _ in range(2 + i)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            node = self.edges[offset](states[0])
            for j in range(1, len(states)):
                node = node + self.edges[offset + j](states[j])
            offset += len(states)
            states.append(node)
        return torch.cat(states[2:], dim=1)


class DartsNet(nn.Module):
    """Stem, normal cell, reduction cell, normal cell, global mean and a Linear head."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        channels: int = 16,
        stem_stride: int = 2,
        reductions: tuple[bool, ...] = (False, True, False),
        nodes: int = 3,
        group_width: int = 1,
    ) -> None:
        super().__init__()
        c_stem = 2 * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_stem, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(c_stem),
        )
        cells, c_pp, c_p, reduction_prev = [], c_stem, c_stem, False
        for reduction in reductions:
            cells.append(Cell(c_pp, c_p, channels, reduction, reduction_prev, nodes, group_width))
            c_pp, c_p, reduction_prev = c_p, nodes * channels, reduction
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
