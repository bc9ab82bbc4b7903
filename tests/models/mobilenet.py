"""MobileNet replicas: inverted residuals, depthwise convs, ReLU6 / Hardswish, squeeze-excitation."""

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


def _conv_bn_act(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU6
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.Hardswish) else act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """[1x1 expand] -> 3x3 depthwise (groups=channels) -> 1x1 linear project; add when stride 1 and cin == cout."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_act(cin, hidden, 1))
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """Stem, one non-expanding block, expanding blocks with and without residual, 1x1 head conv, linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_act(3, 16, 3, 2),
            InvertedResidual(16, 8, 1, 1),
            InvertedResidual(8, 12, 2, 4),
            InvertedResidual(12, 12, 1, 4),
            InvertedResidual(12, 16, 2, 4),
            InvertedResidual(16, 16, 1, 4),
            _conv_bn_act(16, 32, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class SqueezeExcite(nn.Module):
    """Adaptive avgpool -> 1x1 conv -> ReLU -> 1x1 conv -> Hardsigmoid, then ``scale * x``."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_act = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_act(self.fc2(self.relu(self.fc1(self.avgpool(x)))))
        return scale * x


class V3Block(nn.Module):
    """[1x1 expand] -> depthwise kxk -> [SE] -> 1x1 project, activation ReLU or Hardswish, optional residual."""

    def __init__(
        self, cin: int, k: int, hidden: int, cout: int, se: bool, act: type[nn.Module], stride: int
    ) -> None:
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_conv_bn_act(cin, hidden, 1, act=act))
        layers.append(_conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden, max(4, hidden // 4)))
        layers.append(_conv_bn_act(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res:
            out = out + x
        return out


class MobileNetV3(nn.Module):
    """Hardswish stem, SE/non-SE blocks, 1x1 head conv, Linear-Hardswish-Dropout-Linear classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_act(3, 8, 3, 2, act=nn.Hardswish),
            V3Block(8, 3, 8, 8, se=True, act=nn.ReLU, stride=1),
            V3Block(8, 3, 24, 12, se=False, act=nn.ReLU, stride=2),
            V3Block(12, 5, 32, 16, se=True, act=nn.Hardswish, stride=2),
            V3Block(16, 5, 48, 16, se=True, act=nn.Hardswish, stride=1),
            _conv_bn_act(16, 48, 1, act=nn.Hardswish),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(48, 32),
            nn.Hardswish(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2() -> nn.Module:
    """MobileNetV2: inverted residuals with ReLU6 and depthwise convs."""
    torch.manual_seed(0)
    return _finish(MobileNetV2())


def mobilenet_v3() -> nn.Module:
    """MobileNetV3: Hardswish, squeeze-excitation with Hardsigmoid gating, residuals."""
    torch.manual_seed(0)
    return _finish(MobileNetV3())
