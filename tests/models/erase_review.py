"""Erase-mode replicas from the outside review (issue 13, findings 5, 8 and 12).

Each model has a branch that looks like a removal structure (it ends in an add or a channel concat)
but is not one: zeroing its trainable params leaves it non-zero, its params are used outside it, or
dropping it changes the shape of the add it feeds. The `*_ok` models are the near misses that must
stay removable. All are tiny, seeded and in eval mode; inputs are 1x4x8x8 unless noted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

C = 4


def _eval(model: nn.Module) -> nn.Module:
    return model.eval()


class _Base(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(C, C, 3, padding=1)
        self.c1 = nn.Conv2d(C, C, 3, padding=1)
        self.head = nn.Conv2d(C, 2, 1)


class BnNoAffine(_Base):
    """`y + bn(c1(y))` with a BN without affine params: zeroing c1 leaves -mean/std in the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(C, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.bn(self.c1(y)))


class PadWithOnes(_Base):
    """`y + F.pad(c1(y), 1, value=1.0)`: the border of the zeroed branch is 1."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(C, C, 3)  # no padding: the pad restores the size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + F.pad(self.c1(y), (1, 1, 1, 1), value=1.0))


class FrozenConvInBranch(_Base):
    """`y + c2(c1(y))` with c2 frozen (weight and bias): zeroing c1 leaves c2's bias."""

    def __init__(self) -> None:
        super().__init__()
        self.c2 = nn.Conv2d(C, C, 1)
        self.c2.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.c2(self.c1(y)))


class FrozenConvAlone(_Base):
    """`y + c1(y)` with c1 frozen: no optimizer can zero it."""

    def __init__(self) -> None:
        super().__init__()
        self.c1.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.c1(y))


class FrozenBnInBranch(_Base):
    """`y + bn(c1(y))` with the BN's affine params frozen: its shift stays."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(C)
        self.bn.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.bn(self.c1(y)))


class FrozenBiasAdd(_Base):
    """`y + (c1(y) + b)` with `b` a buffer: the added constant is never zeroed."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("b", torch.randn(1, C, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + (self.c1(y) + self.b))


class FrozenConvTrainableBnOk(_Base):
    """`y + bn(c1(y))` with c1 frozen and the BN trainable: the BN's affine params zero the branch,
    so it stays a removal structure (the frozen conv is deleted with it)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1.requires_grad_(False)
        self.bn = nn.BatchNorm2d(C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.bn(self.c1(y)))


class SharedTrunkConv(nn.Module):
    """Trunk `y = relu(shared(stem(x)))`, branch `shared(y)`, output `head(y + shared(y))`: zeroing
    the branch's params kills the trunk too."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(C, C, 3, padding=1)
        self.shared = nn.Conv2d(C, C, 3, padding=1)
        self.head = nn.Conv2d(C, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.shared(self.stem(x)))
        return self.head(y + self.shared(y))


class SharedLayerScaleOk(_Base):
    """`y + g * c1(y)` and `z + g * c2(z)` with one layer-scale param `g`: `g` belongs to neither
    branch (zeroing it would silence both), but c1 and c2 zero their branches alone, so both stay
    removable with `g` left out of their groups."""

    def __init__(self) -> None:
        super().__init__()
        self.c2 = nn.Conv2d(C, C, 3, padding=1)
        self.g = nn.Parameter(torch.rand(1, C, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        z = torch.relu(y + self.g * self.c1(y))
        return self.head(z + self.g * self.c2(z))


class BroadcastAdd(_Base):
    """`head(gap(y) + c1(y))`: without c1 the add's output would be 1x1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(y, 1) + self.c1(y))


class BroadcastAddSwapped(_Base):
    """`head(c1(y) + gap(y))`: the same with the operands swapped."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(self.c1(y) + F.adaptive_avg_pool2d(y, 1))


class BroadcastBiasBranchOk(_Base):
    """`head(y + c1(gap(y)))`: the removed operand broadcasts onto a full-size survivor, so the
    branch stays removable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(y + self.c1(F.adaptive_avg_pool2d(y, 1)))


class InputSurvivorOk(nn.Module):
    """Outputs `(x + c1(x), head(x))`: removing c1 makes a graph input a graph output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(C, C, 3, padding=1)
        self.head = nn.Conv2d(C, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + self.c1(x), self.head(x)


class InputSurvivorTwoOutputsOk(nn.Module):
    """Outputs `(x + c1(x), relu(x + c2(x)))` and a head: removing both branches leaves an input as an
    output and as the operand of the relu."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(C, C, 3, padding=1)
        self.c2 = nn.Conv2d(C, C, 3, padding=1)
        self.head = nn.Conv2d(C, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return x + self.c1(x), torch.relu(x + self.c2(x)), self.head(x)


# name -> (factory, the node-id prefixes of branches erase mode must not offer)
BAD: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "bn_no_affine": (BnNoAffine, ("c1",)),
    "pad_with_ones": (PadWithOnes, ("c1",)),
    "frozen_conv_in_branch": (FrozenConvInBranch, ("c1",)),
    "frozen_conv_alone": (FrozenConvAlone, ("c1",)),
    "frozen_bn_in_branch": (FrozenBnInBranch, ("c1",)),
    "frozen_bias_add": (FrozenBiasAdd, ("c1",)),
    "shared_trunk_conv": (SharedTrunkConv, ("shared",)),
    "broadcast_add": (BroadcastAdd, ("c1",)),
    "broadcast_add_swapped": (BroadcastAddSwapped, ("c1",)),
}

# name -> (factory, the node-id prefix of the branch erase mode must keep offering)
OK: dict[str, tuple[type[nn.Module], str]] = {
    "frozen_conv_trainable_bn": (FrozenConvTrainableBnOk, "c1"),
    "broadcast_bias_branch": (BroadcastBiasBranchOk, "c1"),
    "shared_layer_scale": (SharedLayerScaleOk, "c1"),
    "input_survivor": (InputSurvivorOk, "c1"),
    "input_survivor_two_outputs": (InputSurvivorTwoOutputsOk, "c1"),
}


def build(name: str) -> nn.Module:
    """A fresh eval-mode instance of the named replica."""
    factory = BAD[name][0] if name in BAD else OK[name][0]
    return _eval(factory())


def example_input() -> torch.Tensor:
    return torch.randn(1, C, 8, 8, generator=torch.Generator().manual_seed(1))
