"""Replicas from the outside review of prune mode (issue 13, findings 6, 7, 10 and frozen params).

Each is a tiny, seeded, eval-mode model where a removed channel used to reach a kept one other than
through a zeroed weight: a matmul of two activations summing over channels, a division or negative
power that is infinite at zero, a strided channel slice, a frozen layer in the middle of a net.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SEQ = ("1,8,16",)  # [batch, tokens, features]: a sequence input whose channels are the features
IMG = ("1,3,16,16",)


class LinearAttention(nn.Module):
    """Linear attention (Katharopoulos et al.): q·(kᵀv) with elu(.) + 1 feature maps, so a removed
    feature of q or k is 1, not 0, where the product sums over features."""

    def __init__(self, dim: int = 16, hidden: int = 12) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.o = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = F.elu(self.q(x)) + 1
        k = F.elu(self.k(x)) + 1
        return self.o(q @ (k.transpose(-2, -1) @ self.v(x)))


class SigmoidScores(nn.Module):
    """Scores sigmoid(q) @ sigmoid(k)ᵀ: a removed feature contributes 0.25 to every score."""

    def __init__(self, dim: int = 16, hidden: int = 12) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.o = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.q(x)) @ torch.sigmoid(self.k(x)).transpose(-2, -1)
        return self.o(scores @ self.v(x))


class PlainScores(nn.Module):
    """Single-head attention with q and k straight from projections: removed features are exactly 0
    on both sides of q·kᵀ, so the q/k features stay prunable."""

    def __init__(self, dim: int = 16, hidden: int = 12) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.o = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.softmax(self.q(x) @ self.k(x).transpose(-2, -1), dim=-1)
        return self.o(scores @ self.v(x))


class ShiftedKeys(nn.Module):
    """q from a projection, k = proj + 1: one zero side is enough, so q/k features stay prunable."""

    def __init__(self, dim: int = 16, hidden: int = 12) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.o = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.softmax(self.q(x) @ (self.k(x) + 1).transpose(-2, -1), dim=-1)
        return self.o(scores @ self.v(x))


class ChannelSum(nn.Module):
    """A sum over channels of relu(conv) (zero when removed) and of sigmoid(conv) (0.5 when removed)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.a(x))
        gate = torch.sigmoid(self.b(x)).sum(dim=1, keepdim=True)
        return self.head(a) * gate + a.sum(dim=1, keepdim=True)


class DivideByScale(nn.Module):
    """c1(x) / scale with a per-channel parameter: zeroing the divisor with its channel gives 0/0."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 8).reshape(8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.c1(x) / self.scale))


class NegativePower(nn.Module):
    """c1(x) ** -1: a removed channel of c1 is 0, and 0 ** -1 is infinite."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.c1(x).pow(-1))


class StridedChannelSlice(nn.Module):
    """Every other channel, an odd start with a step, and a step of three."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Conv2d(3, 6, 3, padding=1)  # prunable, so subnet resizes the slices' input too
        self.a = nn.Conv2d(6, 12, 3, padding=1)
        self.b, self.c, self.d = nn.Conv2d(6, 4, 1), nn.Conv2d(6, 4, 1), nn.Conv2d(3, 4, 1)
        self.e = nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(torch.relu(self.f(x))))
        z = torch.relu(self.e(x))
        return self.b(y[:, ::2]) + self.c(y[:, 1::2]) + self.d(y[:, 1:10:3]) + self.d(z[:, -7::3])


class FrozenMiddle(nn.Module):
    """A conv (with its BatchNorm) frozen in the middle of a trainable net: an optimizer cannot zero
    its filters or its input columns."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c3, self.b3 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)
        for module in (self.c2, self.b2):
            module.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(y)))
        y = torch.relu(self.b3(self.c3(y)))
        return self.head(y)


class FrozenConsumer(nn.Module):
    """Trainable producers feeding a frozen 1x1 conv: a relu(conv) channel is exactly zero there
    (prunable), a sigmoid(conv) channel is 0.5 (must stay)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(3, 6, 3, padding=1)
        self.frozen_a, self.frozen_b = nn.Conv2d(6, 4, 1), nn.Conv2d(6, 4, 1)
        self.frozen_a.requires_grad_(False)
        self.frozen_b.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen_a(torch.relu(self.a(x))) + self.frozen_b(torch.sigmoid(self.b(x)))


def _build(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def linear_attention() -> nn.Module:
    return _build(LinearAttention)


def sigmoid_scores() -> nn.Module:
    return _build(SigmoidScores)


def plain_scores() -> nn.Module:
    return _build(PlainScores)


def shifted_keys() -> nn.Module:
    return _build(ShiftedKeys)


def channel_sum() -> nn.Module:
    return _build(ChannelSum)


def divide_by_scale() -> nn.Module:
    return _build(DivideByScale)


def negative_power() -> nn.Module:
    return _build(NegativePower)


def strided_channel_slice() -> nn.Module:
    return _build(StridedChannelSlice)


def frozen_middle() -> nn.Module:
    return _build(FrozenMiddle)


def frozen_consumer() -> nn.Module:
    return _build(FrozenConsumer)
