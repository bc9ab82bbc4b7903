"""RegNet replica: grouped 3x3 convs (fixed group width), optional SE (Y variant), projection shortcuts."""

from __future__ import annotations

import torch
from torch import nn


def _finish(model: nn.Module) -> nn.Module:
    """Give norm layers non-trivial statistics and switch to eval mode."""
    g = torch.Generator().manual_seed(1234)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


class SE(nn.Module):
    """Squeeze-excitation: avgpool -> 1x1 conv -> ReLU -> 1x1 conv -> Sigmoid, multiply input."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * s


class RegBlock(nn.Module):
    """1x1 conv-bn-relu -> 3x3 grouped conv-bn-relu -> [SE] -> 1x1 conv-bn, + shortcut, relu.

    ``groups = width // group_width``; projection (1x1 conv+bn) shortcut when stride/width changes.
    """

    def __init__(self, cin: int, cout: int, stride: int, group_width: int, se: bool) -> None:
        super().__init__()
        groups = cout // group_width
        self.a = nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )
        self.b = nn.Sequential(
            nn.Conv2d(cout, cout, 3, stride, 1, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )
        self.se: nn.Module = SE(cout, max(1, cin // 4)) if se else nn.Identity()
        self.c = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.proj: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        out = self.c(self.se(self.b(self.a(x))))
        return self.relu(out + shortcut)


class RegNet(nn.Module):
    """Stem, an X stage (no SE, group width 4) and a Y stage (SE, group width 8), pool + Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True)
        )
        self.stage_x = nn.Sequential(
            RegBlock(8, 16, 2, group_width=4, se=False),
            RegBlock(16, 16, 1, group_width=4, se=False),
        )
        self.stage_y = nn.Sequential(
            RegBlock(16, 32, 2, group_width=8, se=True),
            RegBlock(32, 32, 1, group_width=8, se=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage_y(self.stage_x(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def regnet() -> nn.Module:
    """RegNet with X-style and Y-style (SE) stages of grouped bottleneck blocks."""
    torch.manual_seed(0)
    return _finish(RegNet())
