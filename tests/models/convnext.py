"""ConvNeXt replica: LayerNorm over channels via NHWC permutes, pointwise Linears, layer scale."""

from __future__ import annotations

import torch
from torch import nn


class ChannelsLayerNorm(nn.Module):
    """LayerNorm over the channel dim of an NCHW map: permute to NHWC, nn.LayerNorm, permute back."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv -> NHWC LayerNorm -> Linear(4x) -> GELU -> Linear -> gamma scale -> NCHW + residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.pwconv2(self.act(self.pwconv1(x)))
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return shortcut + x


class ConvNeXt(nn.Module):
    """Patchify stem (4x4 stride 4 + channel LayerNorm), two blocks, global mean, LayerNorm, Linear."""

    def __init__(self, dim: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 4, stride=4), ChannelsLayerNorm(dim))
        self.stages = nn.Sequential(ConvNeXtBlock(dim), ConvNeXtBlock(dim))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = x.mean([-2, -1])
        return self.head(self.norm(x))


def _finish(model: nn.Module) -> nn.Module:
    """Give LayerNorm affine params non-trivial values and switch to eval mode."""
    g = torch.Generator().manual_seed(1234)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def convnext() -> nn.Module:
    """Tiny ConvNeXt exercising permute/LayerNorm/Linear on NHWC and a layer-scale parameter."""
    torch.manual_seed(0)
    return _finish(ConvNeXt())
