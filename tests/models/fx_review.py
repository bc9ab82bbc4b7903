"""Replicas for the fx-frontend findings of issue 13: in-place ops and their aliases, arguments a
converter must honour or refuse, and unbatched inputs.

Every factory returns a tiny, seeded model in eval mode. Each model computes a value that differs
from its out-of-place reading, so a frontend that drops the mutation is caught by `ai.check`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class _Seeded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)


# ---- in-place ops that rebind a tensor ---------------------------------------------------------


class InplaceResidual(_Seeded):
    """`out.add_(x)` whose result is not used: the later `relu(out)` must see the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _conv(4, 8), _conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.c2(F.relu(self.c1(x)))
        out.add_(x)
        return F.relu(out)


class InplaceUnusedMul(_Seeded):
    """`y.mul_(2.0)` as a statement."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _conv(3, 6), _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        y.mul_(2.0)
        return self.c2(y)


class InplaceReluReused(_Seeded):
    """`nn.ReLU(inplace=True)` on a tensor that another branch reads afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = _conv(3, 6), _conv(6, 4), _conv(6, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        z = self.act(y)
        return self.c2(z) + self.c3(y)


class FunctionalInplace(_Seeded):
    """`F.relu(y, inplace=True)` and `torch.relu_` as statements, then `y` is read."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = _conv(3, 6), _conv(6, 4), _conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        y = y - 0.5
        F.relu(y, inplace=True)
        z = self.c2(y) - 0.25
        torch.relu_(z)
        return self.c3(z)


class AugmentedAssign(_Seeded):
    """`y += t` mutates the tensor that `skip` also names."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = _conv(3, 6), _conv(3, 6), _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        skip = y
        y += self.c2(x)
        y *= 0.5
        return self.c3(skip) + self.c3(y)


class InplaceThroughAlias(_Seeded):
    """A write through `detach()`/`contiguous()` aliases reaches the original tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _conv(3, 6), _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        z = y.detach().contiguous()
        z.sub_(1.0)
        z.relu_()
        return self.c2(y)


class InplaceOnWholeView(_Seeded):
    """An in-place write to a view whose base is not read again: rebinding the view is exact."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = _conv(3, 4)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        flat = y.view(y.size(0), -1)
        flat.mul_(3.0)
        return self.fc(flat)


class InplaceSliceWrite(_Seeded):
    """Refused: a write to a channel slice changes only part of the base tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _conv(3, 6), _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        y[:, :4].mul_(2.0)
        return self.c2(y)


class InplaceViewWrite(_Seeded):
    """Refused: a write through a reshaped view while the base is read afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _conv(3, 6), _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        y.view(y.size(0), -1).add_(1.0)
        return self.c2(y)


class SetItemWrite(_Seeded):
    """`y[:, :2] = 0` is recorded as `operator.setitem`: lowered as y rebuilt around the written box."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _conv(3, 6), _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        y[:, :2] = 0.0
        return self.c2(y)


class InputMutation(_Seeded):
    """Refused: the forward writes into its own input, a side effect no generated code keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = _conv(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2.0)
        return self.c1(x)


# ---- arguments a converter must honour -----------------------------------------------------------


class FloorDivide(_Seeded):
    """`torch.div(..., rounding_mode="floor")` is not a true division."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _conv(3, 6), _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.div(self.c1(x) * 4.0, 3, rounding_mode="floor"))


class AvgPoolDivisor(_Seeded):
    """`F.avg_pool2d(..., divisor_override=1)` sums the window."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _conv(3, 6), _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(F.avg_pool2d(self.c1(x), 2, divisor_override=1))


class UnbatchedLinear(_Seeded):
    """A 1-D (unbatched) input read by `nn.Linear`."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class FrozenNormDropout(_Seeded):
    """Submodules whose `training` flags differ from the root's (a frozen BN, a live dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = _conv(3, 6)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.1)
        self.c2 = _conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.drop(torch.relu(self.bn(self.c1(x)))))


def _eval(model: nn.Module) -> nn.Module:
    return model.eval()


def inplace_residual() -> nn.Module:
    return _eval(InplaceResidual())


def inplace_unused_mul() -> nn.Module:
    return _eval(InplaceUnusedMul())


def inplace_relu_reused() -> nn.Module:
    return _eval(InplaceReluReused())


def functional_inplace() -> nn.Module:
    return _eval(FunctionalInplace())


def augmented_assign() -> nn.Module:
    return _eval(AugmentedAssign())


def inplace_through_alias() -> nn.Module:
    return _eval(InplaceThroughAlias())


def inplace_on_whole_view() -> nn.Module:
    return _eval(InplaceOnWholeView())


def floor_divide() -> nn.Module:
    return _eval(FloorDivide())


def avg_pool_divisor() -> nn.Module:
    return _eval(AvgPoolDivisor())


# (factory, input shape) for the models both frontends must lower exactly
REBINDING = {
    "inplace_residual": (inplace_residual, (1, 4, 8, 8)),
    "inplace_unused_mul": (inplace_unused_mul, (1, 3, 8, 8)),
    "inplace_relu_reused": (inplace_relu_reused, (1, 3, 8, 8)),
    "functional_inplace": (functional_inplace, (1, 3, 8, 8)),
    "augmented_assign": (augmented_assign, (1, 3, 8, 8)),
    "inplace_through_alias": (inplace_through_alias, (1, 3, 8, 8)),
    "inplace_on_whole_view": (inplace_on_whole_view, (1, 3, 8, 8)),
}
