"""Erase-mode follow-ups to the outside review (issue 13): divisors, learned offsets, and GOLD gates
on structures whose last weighted layer is shared.

Every model is `head(y + branch(y))` (or two such blocks) on a 1x4x8x8 input, seeded and in eval
mode. The `OK` branches must be offered as removal structures, the `BAD` ones refused.
"""

from __future__ import annotations

import torch
from torch import nn

from tests.models import erase_review

C = erase_review.C


class _Base(erase_review._Base):
    def __init__(self) -> None:
        super().__init__()
        # a per-channel parameter away from zero, used as a divisor or an offset
        self.scale = nn.Parameter(torch.rand(1, C, 1, 1) + 0.5)


class DivScale(_Base):
    """`y + c1(y) / scale`: zeroing c1 gives 0 / scale = 0, as long as `scale` is not zeroed too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.c1(y) / self.scale)


class BnDivScale(_Base):
    """`y + bn(c1(y)) / scale`: the BN's affine params silence the branch, the divisor stays."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.bn(self.c1(y)) / self.scale)


class LearnedOffset(_Base):
    """`y + (c1(y) + scale)` with `scale` a trainable offset read only here: zeroing it with c1 gives
    0 + 0 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + (self.c1(y) + self.scale))


class ReversedDivisor(_Base):
    """`y + scale / c1(y)`: with c1 zeroed the branch divides by zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.scale / self.c1(y))


class SharedOffset(_Base):
    """`z = relu(y + (c1(y) + off))`, `head(z + (c2(z) + off))`: `off` is read by both branches, so
    neither owns it and zeroing c1 or c2 leaves `off` in the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.c2 = nn.Conv2d(C, C, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        z = torch.relu(y + (self.c1(y) + self.scale))
        return self.head(z + (self.c2(z) + self.scale))


class SharedProjection(_Base):
    """Two blocks `y + proj(bn(c(y)))` sharing one bias-free 1x1 `proj` (a shared output projection):
    each branch owns its conv and BN, not `proj`, which zero maps to zero. GOLD must gate the BN."""

    def __init__(self) -> None:
        super().__init__()
        self.c2 = nn.Conv2d(C, C, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(C), nn.BatchNorm2d(C)
        self.proj = nn.Conv2d(C, C, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        z = torch.relu(y + self.proj(self.bn1(self.c1(y))))
        return self.head(z + self.proj(self.bn2(self.c2(z))))


class TiedProjection(_Base):
    """As `SharedProjection`, with two projection modules tied to one weight (each called once): a
    gate folded into `proj2` would also scale `proj1`."""

    def __init__(self) -> None:
        super().__init__()
        self.c2 = nn.Conv2d(C, C, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(C), nn.BatchNorm2d(C)
        self.proj1 = nn.Conv2d(C, C, 1, bias=False)
        self.proj2 = nn.Conv2d(C, C, 1, bias=False)
        self.proj2.weight = self.proj1.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        z = torch.relu(y + self.proj1(self.bn1(self.c1(y))))
        return self.head(z + self.proj2(self.bn2(self.c2(z))))


# name -> (factory, the first node of each branch erase mode must offer)
OK: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "div_scale": (DivScale, ("c1",)),
    "bn_div_scale": (BnDivScale, ("c1",)),
    "learned_offset": (LearnedOffset, ("c1",)),
    "shared_projection": (SharedProjection, ("c1", "c2")),
    "tied_projection": (TiedProjection, ("c1", "c2")),
}
# name -> factory whose branches erase mode must refuse
BAD: dict[str, type[nn.Module]] = {
    "reversed_divisor": ReversedDivisor,
    "shared_offset": SharedOffset,
}


def build(name: str) -> nn.Module:
    """A fresh eval-mode instance of the named replica."""
    factory = OK[name][0] if name in OK else BAD[name]
    return factory().eval()


def example_input() -> torch.Tensor:
    return torch.randn(1, C, 8, 8, generator=torch.Generator().manual_seed(1))
