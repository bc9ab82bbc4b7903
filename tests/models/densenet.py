"""DenseNet replica: channel concatenation (torch.cat) growing the feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class DenseLayer(nn.Module):
    """bn-relu-conv1x1-bn-relu-conv3x3 producing ``growth`` channels, concatenated onto the input."""

    def __init__(self, cin: int, growth: int, bn_size: int = 2) -> None:
        super().__init__()
        mid = growth * bn_size
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv1(self.relu1(self.norm1(x)))
        new = self.conv2(self.relu2(self.norm2(new)))
        return torch.cat([x, new], 1)


class Transition(nn.Module):
    """bn-relu-conv1x1-avgpool halving spatial size and compressing channels."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(self.relu(self.norm(x))))


class DenseNet(nn.Module):
    """Stem conv, dense block (3 layers), transition, dense block (2 layers), bn-relu-pool-linear."""

    def __init__(self, growth: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        c = 8
        self.conv0 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        block1: list[nn.Module] = []
        for _ in range(3):
            block1.append(DenseLayer(c, growth))
            c += growth
        self.block1 = nn.Sequential(*block1)
        self.trans1 = Transition(c, c // 2)
        c //= 2
        block2: list[nn.Module] = []
        for _ in range(2):
            block2.append(DenseLayer(c, growth))
            c += growth
        self.block2 = nn.Sequential(*block2)
        self.norm_final = nn.BatchNorm2d(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(self.conv0(x))
        x = self.block2(self.trans1(x))
        x = F.relu(self.norm_final(x))
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)


def densenet() -> nn.Module:
    """Small DenseNet: concat-based feature reuse through dense blocks and a transition."""
    torch.manual_seed(0)
    return _finish(DenseNet())
