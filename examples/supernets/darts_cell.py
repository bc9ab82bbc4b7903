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

Prunable skip-connects (GOLD-NAS' space)
----------------------------------------
``DartsNet(prunable_skip=True)`` (or :func:`build_gold`) makes the skip-connect a candidate like the
others: ``skip`` is a per-channel scale (a depthwise 1x1 conv without bias, initialised to 1, so it
starts as the identity and trains like any weight), the smallest layer that a GOLD gate can sit on
and fold into, and that an optimizer can zero. Every node is then one flat sum of all the candidates
of all its incoming edges (no per-edge sum), ``skip`` first on each edge::

    node_i = skip(s0) + sep_conv3x3(s0) + ... + conv1x1(s0) + skip(s1) + ... + conv1x1(node_{i-1})

so a whole edge can be erased (GOLD-NAS lets a node keep any number of edges). The search space's
validity rule keeps at least one operator per node: an add none of whose operands survives would be
cut off from the input, so the first ``+`` of each node needs one of its two operands, which are the
first two candidates of the node's first edge (``skip(s0)`` and ``sep_conv3x3(s0)`` by default).
That is the one restriction GOLD-NAS does not have (it only needs some operator of the node to live,
which its per-node normalisation of the gates keeps in practice). ``candidates`` picks the
parametric operators (default all three; :func:`build_gold` uses GOLD-NAS' set, ``sep_conv3x3``
with the skip-connect). The Keras twin in ``keras_nets.py`` takes the same two arguments
(``keras_nets.darts_cell_gold`` and ``keras_nets.darts_cell_prunable_skip`` are the two builders).

Removal structures (erasing mode)
---------------------------------
Every parametric candidate of every edge, ``cells.<k>.edges.<e>.ops.<name>`` for ``name`` in
``sep_conv3x3``, ``dil_conv3x3`` and ``conv1x1`` (27 per cell, 81 in all), ends with a BatchNorm
and feeds only the additive joint of its node; the skip-connect keeps every node alive. Edges
are numbered node by node: node 0 has edges 0-1 (from s0, s1), node 1 edges 2-4 (s0, s1, node 0),
node 2 edges 5-8 (s0, s1, node 0, node 1). With ``prunable_skip=True`` every
``cells.<k>.edges.<e>.ops.skip`` is a removal structure too (36 per cell, 108 in all; :func:`build_gold`:
18 per cell, 54 in all).
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


CANDIDATES = ("sep_conv3x3", "dil_conv3x3", "conv1x1")


def skip_connect(channels: int) -> nn.Conv2d:
    """The gateable skip-connect: a per-channel scale (depthwise 1x1 conv, no bias) set to 1."""
    scale = nn.Conv2d(channels, channels, 1, groups=channels, bias=False)
    nn.init.ones_(scale.weight)
    return scale


class MixedEdge(nn.Module):
    """``x + sep_conv3x3(x) + dil_conv3x3(x) + conv1x1(x)``: one DARTS edge with all candidates summed.

    With ``prunable_skip`` the identity becomes the candidate ``skip`` (see the module docstring) and
    the cell sums the edge's :meth:`terms` into its node directly.
    """

    def __init__(
        self, channels: int, group_width: int = 1, prunable_skip: bool = False, candidates: tuple[str, ...] = CANDIDATES
    ) -> None:
        super().__init__()
        unknown = sorted(set(candidates) - set(CANDIDATES))
        if unknown or not candidates:
            raise ValueError(f"candidates must be a non-empty subset of {CANDIDATES}, got {candidates}")
        self.prunable_skip = prunable_skip
        builders = {
            "sep_conv3x3": lambda: sep_conv(channels, group_width=group_width),
            "dil_conv3x3": lambda: sep_conv(channels, dilation=2, group_width=group_width),
            "conv1x1": lambda: nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)),
        }
        ops: dict[str, nn.Module] = {"skip": skip_connect(channels)} if prunable_skip else {}
        ops.update({name: builders[name]() for name in CANDIDATES if name in candidates})
        self.ops = nn.ModuleDict(ops)

    def terms(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The candidates' outputs, the skip-connect first (``x`` itself unless it is prunable)."""
        outputs = [] if self.prunable_skip else [x]
        return outputs + [op(x) for op in self.ops.values()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = self.terms(x)
        out = terms[0]
        for term in terms[1:]:
            out = out + term
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
        prunable_skip: bool = False,
        candidates: tuple[str, ...] = CANDIDATES,
    ) -> None:
        super().__init__()
        self.nodes = nodes
        self.prunable_skip = prunable_skip
        self.preprocess0 = ReLUConvBN(c_prev_prev, channels, reduce=reduction or reduction_prev)
        self.preprocess1 = ReLUConvBN(c_prev, channels, reduce=reduction)
        self.edges = nn.ModuleList(
            MixedEdge(channels, group_width, prunable_skip, candidates) for i in range(nodes) for _ in range(2 + i)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            if self.prunable_skip:  # one flat sum of every candidate of every incoming edge
                terms = [t for j, state in enumerate(states) for t in self.edges[offset + j].terms(state)]
                node = terms[0]
                for term in terms[1:]:
                    node = node + term
                offset += len(states)
                states.append(node)
                continue
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
        prunable_skip: bool = False,
        candidates: tuple[str, ...] = CANDIDATES,
    ) -> None:
        super().__init__()
        c_stem = 2 * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_stem, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(c_stem),
        )
        cells, c_pp, c_p, reduction_prev = [], c_stem, c_stem, False
        for reduction in reductions:
            cells.append(Cell(c_pp, c_p, channels, reduction, reduction_prev, nodes, group_width, prunable_skip, candidates))
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


def build_gold(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """GOLD-NAS' operator set on this network: a prunable skip-connect and ``sep_conv3x3`` on every
    edge (54 removal structures). SPEC ``asgnas_ir.examples.supernets.darts_cell:build_gold``."""
    return DartsNet(num_classes=num_classes, in_channels=in_channels, prunable_skip=True, candidates=("sep_conv3x3",))


def build_prunable_skip(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """:func:`build` with prunable skip-connects (108 removal structures). SPEC
    ``asgnas_ir.examples.supernets.darts_cell:build_prunable_skip``."""
    return DartsNet(num_classes=num_classes, in_channels=in_channels, prunable_skip=True)
