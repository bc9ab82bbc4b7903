"""EfficientNet replica: MBConv with SiLU, SE (SiLU + Sigmoid), depthwise convs, functional sigmoid."""

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


class SqueezeExcitation(nn.Module):
    """avgpool -> 1x1 conv -> SiLU -> 1x1 conv -> Sigmoid, then ``x * scale``."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.SiLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))
        return x * scale


class MBConv(nn.Module):
    """[1x1 expand-bn-SiLU] -> depthwise kxk-bn-SiLU -> SE -> 1x1 project-bn, residual when shapes match."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.SiLU(inplace=True),
            SqueezeExcitation(hidden, max(1, cin // 4)),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res:
            out = out + x
        return out


class EfficientNet(nn.Module):
    """Stem, MBConv stages (expand 1 and 4), head 1x1 conv with functional x * torch.sigmoid(x), Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU(inplace=True)
        )
        self.blocks = nn.Sequential(
            MBConv(16, 8, 3, 1, 1),
            MBConv(8, 12, 3, 2, 4),
            MBConv(12, 12, 3, 1, 4),
            MBConv(12, 16, 5, 2, 4),
            MBConv(16, 16, 5, 1, 4),
        )
        self.head_conv = nn.Conv2d(16, 32, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(32)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = self.head_bn(self.head_conv(x))
        x = x * torch.sigmoid(x)  # functional swish
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def efficientnet() -> nn.Module:
    """Small EfficientNet: MBConv + SE with SiLU/Sigmoid gating."""
    torch.manual_seed(0)
    return _finish(EfficientNet())
