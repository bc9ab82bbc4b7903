"""Replicas from the codegen review (issue 13): settings the printers must carry beyond op and params.

Each is tiny, seeded and in eval mode. `trident` calls one weight with two paddings/dilations; the
`padded_*` models combine `padding="same"` or explicit paddings with a non-zero `padding_mode`; the
`small_convnet` / `small_mlp` build a conv net / an MLP in a given floating dtype; the Keras-only
cases are a strided dilated conv and transposed convs Keras' layer cannot take as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class Trident(nn.Module):
    """TridentNet-style: one conv weight applied with padding/dilation 1 and 2, then summed."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.w = nn.Parameter(torch.randn(8, 8, 3, 3) * 0.2)
        self.b = nn.Parameter(torch.randn(8) * 0.1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        z = F.conv2d(y, self.w, self.b, padding=1, dilation=1) + F.conv2d(y, self.w, self.b, padding=2, dilation=2)
        return self.head(torch.relu(z))


class TridentModule(nn.Module):
    """The same sharing through a module: `branch` called as a module, and again functionally with
    its own weight at dilation 2."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        z = self.branch(y) + F.conv2d(y, self.branch.weight, self.branch.bias, padding=2, dilation=2)
        return self.head(torch.relu(z))


class GroupedTrident(nn.Module):
    """`branch` (groups=2) called as a module and again functionally at dilation 2."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        z = self.branch(y) + F.conv2d(y, self.branch.weight, self.branch.bias, padding=2, dilation=2, groups=2)
        return self.head(torch.relu(z))


class PaddedConvs(nn.Module):
    """stem, then a conv with `padding`/`padding_mode`/kernel as given, then a 1x1 head."""

    def __init__(self, kernel: int, padding: object, padding_mode: str) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.conv = nn.Conv2d(6, 6, kernel, padding=padding, padding_mode=padding_mode)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(torch.relu(self.stem(x)))))


class SmallConvNet(nn.Module):
    """conv-bn-relu, two residual convs (two erase structures), pooling and a linear head: the dtype replica."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.c1(x)))
        y = y + torch.relu(self.c2(y))
        y = y + torch.relu(self.c3(y))
        return self.fc(torch.flatten(self.pool(y), 1))


class StridedDilated(nn.Module):
    """A conv with stride 2 and dilation 2 (Keras' Conv2D refuses both > 1 at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.conv = nn.Conv2d(6, 6, 3, stride=2, dilation=2, padding=2)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(torch.relu(self.stem(x)))))


class Transposed(nn.Module):
    """stem, a ConvTranspose2d with the given settings, a 1x1 head."""

    def __init__(self, **settings: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.up = nn.ConvTranspose2d(6, 6, settings.pop("kernel_size", 3), **settings)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.up(torch.relu(self.stem(x)))))


def _eval(model: nn.Module) -> nn.Module:
    return model.eval()


def trident() -> nn.Module:
    torch.manual_seed(0)
    return _eval(Trident())


def trident_module() -> nn.Module:
    torch.manual_seed(0)
    return _eval(TridentModule())


def grouped_trident() -> nn.Module:
    torch.manual_seed(0)
    return _eval(GroupedTrident())


def padded_conv(kernel: int = 4, padding: object = "same", padding_mode: str = "reflect") -> nn.Module:
    torch.manual_seed(0)
    return _eval(PaddedConvs(kernel, padding, padding_mode))


def small_convnet(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return _eval(SmallConvNet()).to(dtype)


def strided_dilated() -> nn.Module:
    torch.manual_seed(0)
    return _eval(StridedDilated())


def dilated_transpose() -> nn.Module:
    """ConvTranspose2d(stride=1, dilation=2, output_padding=1): an output padding below the dilation
    but not below the stride, which torch allows and Keras' layer does not."""
    return conv_transpose(stride=1, dilation=2, output_padding=1)


def conv_transpose(**settings: int) -> nn.Module:
    torch.manual_seed(0)
    return _eval(Transposed(**settings))


class SmallMLP(nn.Module):
    """Linear-relu-Linear with a residual Linear and a layer norm: the dtype replica without convs
    (onnxruntime's CPU Conv has no float64 kernel, so the ONNX float64 reference needs this one)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.fc1(x))
        y = self.norm(y + torch.relu(self.fc2(y)))
        return self.out(y)


def small_mlp(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return _eval(SmallMLP()).to(dtype)
