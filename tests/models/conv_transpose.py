"""Encoder-decoder replica: strided convs down, ConvTranspose2d (plain and grouped) back up."""

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


class EncoderDecoder(nn.Module):
    """32 -> 16 -> 8 via stride-2 convs, 8 -> 16 (grouped ConvTranspose2d, groups=2) -> 32, 1x1 conv to K maps."""

    def __init__(self, out_channels: int = 4) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.enc1_bn = nn.BatchNorm2d(16)
        self.enc2 = nn.Conv2d(16, 16, 3, 2, 1, bias=False)
        self.enc2_bn = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        # kernel 3, stride 2, padding 1 needs output_padding=1 to exactly double H, W.
        self.dec1 = nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1, groups=2, bias=False)
        self.dec1_bn = nn.BatchNorm2d(8)
        self.dec2 = nn.ConvTranspose2d(8, 8, 3, 2, 1, output_padding=1, bias=False)
        self.dec2_bn = nn.BatchNorm2d(8)
        self.out = nn.Conv2d(8, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.enc1_bn(self.enc1(x)))
        x = self.relu(self.enc2_bn(self.enc2(x)))
        x = self.relu(self.dec1_bn(self.dec1(x)))
        x = self.relu(self.dec2_bn(self.dec2(x)))
        return self.out(x)


def conv_transpose() -> nn.Module:
    """Encoder-decoder producing a 1x4x32x32 map; includes a groups=2 ConvTranspose2d."""
    torch.manual_seed(0)
    return _finish(EncoderDecoder())
