"""torch.fx converters for the functions and tensor methods timm models call between their layers.

Each small module uses one of them between prunable layers and must pass `ai.check` (prune, and
erase where the module has a removable branch); each argument a converter does not honour is
refused with a message naming it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import asgnas_ir as ai
from asgnas_ir.errors import FrontendError
from asgnas_ir.ir.ops import Op


class FunctionalBatchNorm(nn.Module):
    """timm's BatchNormAct2d: an nn.BatchNorm2d whose forward calls F.batch_norm on its own params."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = F.batch_norm(x, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias, False, 0.1, self.bn.eps)
        return self.head(F.relu(x))


class FunctionalNorms(nn.Module):
    """F.group_norm and F.instance_norm on a module's own params."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = F.group_norm(x, 4, self.gn.weight, self.gn.bias, 1e-5)
        x = F.instance_norm(x, weight=self.inorm.weight, bias=self.inorm.bias)
        return self.head(x)


class Attention(nn.Module):
    """timm's Attention: one qkv projection, `q, k, v = qkv.unbind(0)`, heads merged back."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        x = self.proj(x.transpose(1, 2).reshape(b, n, c))
        return self.head(x.mean(1))


class Stack(nn.Module):
    """torch.stack of two branches, then a reduction over the new axis."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = torch.stack([self.a(x), self.b(x)], dim=1)
        return self.head(both.sum(dim=1))


class Roll(nn.Module):
    """Swin's cyclic shift, `torch.roll` over the two spatial axes of NHWC, and back."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).permute(0, 2, 3, 1)
        x = torch.roll(x, shifts=(-2, -1), dims=(1, 2))
        x = x.roll(1, 2)
        return self.head(x.permute(0, 3, 1, 2))


class Repeat(nn.Module):
    """Tensor.repeat along a spatial axis and a new leading axis folded back; torch.tile."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = x.repeat(1, 1, 2, 1)
        x = torch.tile(x, (1, 2))
        return self.head(x)


class Interpolate(nn.Module):
    """F.interpolate by scale factor and by size, and nn.Upsample, around a conv."""

    def __init__(self, mode: str, align_corners: bool | None = None) -> None:
        super().__init__()
        self.mode, self.align_corners = mode, align_corners
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = F.interpolate(x, scale_factor=1.5, mode=self.mode, align_corners=self.align_corners)
        x = F.interpolate(x, size=(5, 7), mode=self.mode, align_corners=self.align_corners)
        return self.head(self.up(x))


class FeaturePyramid(nn.Module):
    """A coarse branch upsampled and added to a fine one (the FPN pattern): erase mode can drop it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fine = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        coarse = F.interpolate(self.down(x), size=x.shape[-2:], mode="nearest")
        return self.head(self.fine(x) + coarse)


class Area(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.interpolate(self.conv(x), size=(3, 3), mode="area"))


class Norms(nn.Module):
    """Tensor.norm, torch.linalg.vector_norm and F.normalize (cosine attention, l2-normalised heads)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(10, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        scale = x.norm(dim=-1, keepdim=True) + torch.linalg.vector_norm(x, dim=1, keepdim=True)
        return self.head(F.normalize(x, dim=-1) * scale)


class Periodic(nn.Module):
    """sin/cos and cumsum, as in a rotary or Fourier position feature."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = x.cumsum(2)
        return self.head(torch.cat([torch.sin(y), x.cos()], dim=1))


class AddCMul(nn.Module):
    """timm's Affine / LayerScale written as addcmul, and reshape_as / view_as."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.alpha = nn.Parameter(torch.rand(1, 8, 1, 1))
        self.beta = nn.Parameter(torch.rand(1, 8, 1, 1))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = torch.addcmul(self.beta, self.alpha, x, value=0.5)
        flat = y.flatten(2)
        return self.head(flat.reshape_as(y) + flat.view_as(x))


class WeightOnlyGroupNorm(nn.Module):
    """timm's GroupNorm1 without a bias (PoolFormerV2): F.group_norm with a weight only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.weight = nn.Parameter(torch.rand(8) + 0.5)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.group_norm(self.conv(x), 1, self.weight, None, 1e-5))


class RelativeBias(nn.Module):
    """Relative position biases read by an index buffer: Swin's `table[index.view(-1)]` (rows of a
    2-d table) and LeViT's `biases[:, idx]` (columns)."""

    def __init__(self, heads: int = 2, tokens: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(8, 24)
        self.proj = nn.Linear(8, 4)
        self.table = nn.Parameter(torch.randn(7, heads))
        self.biases = nn.Parameter(torch.randn(heads, 5))
        rows = torch.arange(tokens)
        self.register_buffer("index", (rows[:, None] - rows[None, :]) + tokens - 1)
        self.register_buffer("idxs", (rows[:, None] + rows[None, :]) % 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.table[self.index.view(-1)].view(n, n, -1).permute(2, 0, 1) + self.biases[:, self.idxs]
        attn = (q @ k.transpose(-2, -1) + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class RelativeBiasAttention(RelativeBias):
    """The same biases as the attention mask of F.scaled_dot_product_attention (timm's fused attention):
    a pruned head takes its column of the bias table with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.table[self.index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias + self.biases[:, self.idxs])
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Reductions(nn.Module):
    """Tensor.amax over tokens (Hiera's unit pooling), F.rms_norm, repeat_interleave."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.scale = nn.Parameter(torch.rand(8) + 0.5)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # [B, 4, 8]
        x = x.view(x.shape[0], 2, 2, 8).amax(dim=1)
        x = F.rms_norm(x, (8,), self.scale, 1e-6)
        return self.head(x.repeat_interleave(2, dim=1))


class Windows(nn.Module):
    """Tensor.unfold over rows and columns (HaloNet's blocks), folded back with a reshape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).unfold(2, 2, 2).unfold(3, 2, 2)  # [B, 8, 3, 3, 2, 2]
        return self.head(x.permute(0, 2, 3, 1, 4, 5).flatten(3))


class Im2Col(nn.Module):
    """nn.Unfold with padding and stride (TNT's pixel embedding), F.unfold, and a channel subset by list."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.unfold = nn.Unfold(kernel_size=3, padding=1, stride=2)
        self.head = nn.Linear(8 * 9 + 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        patches = self.unfold(x)  # [B, 72, 9]
        blocks = F.unfold(x[:, [0, 1, 2, 6]], kernel_size=2, stride=2)  # [B, 16, 9]
        return self.head(torch.cat([patches, blocks], dim=1).transpose(1, 2)).mean(1)


class UnitMax(nn.Module):
    """Hiera's mask-unit pooling: amax over one axis of a rank-6 view, keeping the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # [B, 16, 8]
        x = x.view(x.shape[0], 2, 2, 2, 2, 8).amax(dim=3).amax(dim=(1, 2), keepdim=True)
        return self.head(x.flatten(1, 3))


class Pads(nn.Module):
    """Padding layers (NASNet's ZeroPad2d, a reflection pad) and rsqrt of a per-sample scale."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.zero = nn.ZeroPad2d((1, 0, 1, 0))
        self.reflect = nn.ReflectionPad2d(1)
        self.head = nn.Conv2d(8, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reflect(self.zero(self.conv(x)))
        scale = torch.rsqrt(x.pow(2).mean(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return self.head(x * scale)


class Einsum(nn.Module):
    """MViTv2 / SAM's decomposed relative position term, `einsum("byhwc,hkc->byhwk")`, and a
    one-operand einsum (a permute with a sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.rel = nn.Parameter(torch.randn(6, 5, 8))
        self.head = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.stem(x).permute(0, 2, 3, 1).unsqueeze(1)  # b y h w c
        attn = torch.einsum("byhwc,hkc->byhwk", q, self.rel)
        return self.head(torch.einsum("byhwk->bwk", attn))


class PrefixTokens(nn.Module):
    """timm's rotary attention with no prefix tokens: `cat([x[:, :npt], f(x[:, npt:])])` with npt = 0,
    and tensors made from another one's shape or dtype (`new_zeros`, `zeros_like`, `.to(param)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.table = nn.Parameter(torch.randn(8))
        self.head = nn.Linear(8, 4)
        self.npt = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([x[:, : self.npt], torch.tanh(x[:, self.npt :])], dim=1)
        grid = torch.arange(x.shape[1], device=x.device)[None, :, None].to(self.table) / 3
        zeros = x.new_zeros(x.shape[1], 1) + torch.zeros_like(x)
        return self.head(x + grid.cos() + zeros)


class BoxWrites(nn.Module):
    """`x[box] = value` (MViTv2 adds its relative position terms to the attention this way): a full
    overwrite, a partial box of slices and an int, and a scalar fill."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.side = nn.Conv2d(3, 3, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y[:, :, 0:, 0:] = y * 2
        y[:, 2:5, 1:, 2] = self.side(x)[:, :, 1:, 0]
        y[..., :1] = 0.5
        return self.head(y)


class Cropping(nn.Module):
    """NASNet's shift by a ZeroPad2d with a negative side, F.pad cropping, and a clamp whose bounds are
    one-element buffers (Gemma's clipped layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.shift = nn.ZeroPad2d((-1, 1, -1, 1))
        self.register_buffer("low", torch.tensor(-0.5))
        self.register_buffer("high", torch.tensor(float("inf")))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.shift(self.conv(x)), (0, -1, 1, -2))
        return self.head(x.clamp(min=self.low, max=self.high))


class MultiQuery(nn.Module):
    """Multi-query attention (MobileNetV5): one key/value head broadcast over the query heads."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.kv = nn.Linear(8, 8)
        self.proj = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q(x).view(b, n, 2, 4).transpose(1, 2)
        k, v = self.kv(x).view(b, n, 1, 8).transpose(1, 2).split(4, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, 8)
        return self.head(x + self.proj(y))


class FoldBack(nn.Module):
    """VOLO's outlook attention: overlapping windows out (nn.Unfold, stride 2) and summed back in place
    (F.fold), then the values of a max over tokens (`x.max(1)[0]`, `.values`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.unfold = nn.Unfold(kernel_size=3, padding=1, stride=2)
        self.fold = nn.Fold(output_size=(6, 6), kernel_size=3, padding=1, stride=2)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        windows = self.unfold(x) * 0.5
        y = F.fold(windows, output_size=(6, 6), kernel_size=3, padding=1, stride=2) + self.fold(windows)
        tokens = y.flatten(2).transpose(1, 2)  # [B, 36, 8]
        return self.head(tokens.max(1)[0] + tokens.max(dim=1).values + tokens.max())


class Recurrent(nn.Module):
    """Sequencer's bidirectional LSTM over rows (batch first), and a two-layer sequence-first LSTM whose
    final hidden state is read."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.rows = nn.LSTM(8, 5, batch_first=True, bidirectional=True)
        self.deep = nn.LSTM(10, 4, num_layers=2)
        self.head = nn.Linear(10 + 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rows(self.stem(x))  # [B, T, 10]
        z, (h, _) = self.deep(y.transpose(0, 1))  # [T, B, 4], h [2, B, 4]
        return self.head(torch.cat([y[:, -1], z[-1] + h[-1]], dim=-1))


class SizeBranches(nn.Module):
    """Python code that branches on sizes (timm's window padding, VGG's pre-logits check, ConViT's
    cached position indices): fx cannot trace it; traced again knowing the example's shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)
        self.window = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        b, c, h, w = x.shape
        if h % self.window:
            x = F.pad(x, (0, (-w) % self.window, 0, (-h) % self.window))
        if x.shape[-1] >= self.window and len(x) == b:
            x = x.reshape(b, c, x.size(2) // 2, 2, x.size(3) // 2, 2).mean(dim=(3, 5))
        return self.head(x)


class DataBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if y.sum() > 0 else -y


class ComputedBias(nn.Module):
    """BEiT: F.linear with a bias concatenated in forward from parameters and a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24, bias=False)
        self.q_bias = nn.Parameter(torch.randn(8))
        self.v_bias = nn.Parameter(torch.randn(8))
        self.register_buffer("k_bias", torch.zeros(8), persistent=False)
        self.head = nn.Linear(24, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        return self.head(F.linear(x, weight=self.qkv.weight, bias=bias))


class FourierPositions(nn.Module):
    """An encoding built in forward from sizes alone (EdgeNeXt / XCiT): boolean masks, integer casts and
    sin/cos of a cumulative sum, folded into a constant; then a conv and a repeat over the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.proj = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        b, _, h, w = x.shape
        inside = ~torch.zeros(1, h, w, device=x.device).bool()
        rows = inside.cumsum(1, dtype=torch.float32)
        freq = torch.arange(4, device=x.device).to(torch.float32)
        angles = rows[..., None] / (freq + 1)
        pos = torch.cat([angles.sin(), angles.cos()], dim=-1).permute(0, 3, 1, 2)
        return self.head(x + self.proj(pos).repeat(b, 1, 1, 1))


def _ok(model: nn.Module, x: torch.Tensor, mode: str = "prune") -> None:
    report = ai.check(model, x, mode=mode)
    assert report.ok, report.reason


IMG = torch.randn(2, 3, 6, 6)


@pytest.mark.parametrize(
    ("model", "x"),
    [
        (FunctionalBatchNorm(), IMG),
        (FunctionalNorms(), IMG),
        (Attention(), torch.randn(2, 5, 16)),
        (Stack(), IMG),
        (Roll(), IMG),
        (Repeat(), IMG),
        (Interpolate("nearest"), IMG),
        (Interpolate("bilinear"), IMG),
        (Interpolate("bilinear", align_corners=True), IMG),
        (Interpolate("bicubic"), IMG),
        (Area(), IMG),
        (Norms(), torch.randn(2, 10)),
        (Periodic(), IMG),
        (AddCMul(), IMG),
        (WeightOnlyGroupNorm(), IMG),
        (RelativeBias(), torch.randn(2, 4, 8)),
        (RelativeBiasAttention(), torch.randn(2, 4, 8)),
        (Reductions(), torch.randn(2, 4, 6)),
        (Windows(), IMG),
        (Im2Col(), IMG),
        (FoldBack(), IMG),
        (Recurrent(), torch.randn(2, 5, 6)),
        (SizeBranches(), IMG),
        (UnitMax(), torch.randn(2, 16, 6)),
        (Pads(), IMG),
        (Einsum(), IMG),
        (PrefixTokens(), torch.randn(2, 5, 6)),
        (BoxWrites(), IMG),
        (Cropping(), IMG),
        (MultiQuery(), torch.randn(2, 5, 8)),
        (ComputedBias(), torch.randn(2, 3, 8)),
        (FourierPositions(), IMG),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
def test_check_prune(model: nn.Module, x: torch.Tensor) -> None:
    _ok(model, x)


@pytest.mark.parametrize("model", [FunctionalBatchNorm(), Stack(), FeaturePyramid()], ids=lambda m: type(m).__name__)
def test_check_erase(model: nn.Module) -> None:
    _ok(model, IMG, mode="erase")


def test_functional_batch_norm_is_the_batch_norm_op_on_the_module_params() -> None:
    graph = ai.compile(FunctionalBatchNorm(), IMG)
    [bn] = [n for n in graph.nodes if n.op is Op.BATCH_NORM]
    assert bn.params == {"weight": "bn.weight", "bias": "bn.bias", "running_mean": "bn.running_mean", "running_var": "bn.running_var"}
    assert not any(n.op is Op.CONSTANT for n in graph.nodes)


def test_unbind_is_a_split_and_reshapes() -> None:
    graph = ai.compile(Attention(), torch.randn(2, 5, 16))
    ops = {n.op for n in graph.nodes}
    assert Op.SPLIT in ops and Op.OPAQUE not in ops


def test_setitem_of_a_slice_box_is_supported() -> None:
    """The fx review replica that used to be refused: `y[:, :2] = 0` between two convs."""
    from tests.models import fx_review

    _ok(fx_review.SetItemWrite().eval(), torch.randn(1, 3, 8, 8))


def test_relative_bias_rows_are_an_embedding_columns_a_selection() -> None:
    graph = ai.compile(RelativeBias(), torch.randn(2, 4, 8))
    [lookup] = [n for n in graph.nodes if n.op is Op.EMBEDDING]
    assert lookup.params == {"weight": "table"}
    assert sum(n.op is Op.MATMUL for n in graph.nodes) == 3  # q @ k, attn @ v, and the one-hot selection


def test_input_independent_calls_without_a_lowering_are_folded() -> None:
    """`~mask`, the casting cumsum and `.to(float32)` have no IR form: their values become constants;
    the ops after them that the IR has (sin, cos, the repeat over the batch) stay ops."""
    graph = ai.compile(FourierPositions(), IMG)
    folded = {n.params["value"] for n in graph.nodes if n.op is Op.CONSTANT}
    assert folded == {"cumsum", "to"}
    assert {Op.SIN, Op.COS, Op.EXPAND} <= {n.op for n in graph.nodes}


def test_branching_on_data_is_still_refused() -> None:
    """Tracing with the shapes known never bakes in a branch on values: fx's error, naming the model."""
    with pytest.raises(FrontendError, match=r"torch.fx cannot trace DataBranch: TraceError.*frontend='onnx'"):
        ai.compile(DataBranch(), IMG, frontend="fx")


def test_lstm_hidden_units_are_channel_groups() -> None:
    """Unit j of the LSTM: rows j of its four gates in both weights, column j of the recurrent weight."""
    graph = ai.compile(Recurrent(), torch.randn(2, 5, 6))
    space = ai.search_space(graph, mode="prune")
    found = False
    for group in space.groups:
        rows = sorted(i for s in group.slices if s.param == "rows.weight_ih_l0" and s.axis == 0 for i in s.indices)
        cols = sorted(i for s in group.slices if s.param == "rows.weight_hh_l0" and s.axis == 1 for i in s.indices)
        if rows:
            assert len(cols) == 1 and rows == [cols[0] + 5 * k for k in range(4)]
            found = True
    assert found


def test_upsample_keeps_scale_factor() -> None:
    graph = ai.compile(Interpolate("nearest"), IMG)
    scales = [n.attrs.scale for n in graph.nodes if n.op is Op.RESIZE]
    assert scales == [(1.5, 1.5), None, (2.0, 2.0)]


OTHER_TARGETS = [(FeaturePyramid(), IMG), (Interpolate("bilinear"), IMG), (Periodic(), IMG), (UnitMax(), torch.randn(2, 16, 6))]


@pytest.mark.parametrize(("model", "x"), OTHER_TARGETS, ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_new_ops_on_onnx(model: nn.Module, x: torch.Tensor) -> None:
    """The onnx emitters of resize (torch's nearest and bilinear rules), sin, cos, cumsum and max."""
    pytest.importorskip("onnxruntime")
    report = ai.check(model, x, target="onnx")
    assert report.ok, report.reason


@pytest.mark.slow
@pytest.mark.parametrize(("model", "x"), OTHER_TARGETS, ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_new_ops_on_keras(model: nn.Module, x: torch.Tensor) -> None:
    """The keras emitters of the same ops (a whole-factor nearest upsampling, bilinear resize)."""
    pytest.importorskip("keras")
    report = ai.check(model, x, target="keras")
    assert report.ok, report.reason


# ---- refused arguments -------------------------------------------------------------------------


class Call(nn.Module):
    """A conv stem, then `fn(x, module)` with arguments a converter does not honour."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.conv(x), self.bn)


def _batch_stats(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, True)


def _strided_write(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    x[:, ::2] = 0.0
    return x


def _standardised_weight(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """NF-Net's ScaledStdConv2d: the weight normalised in forward by a batch norm in training mode."""
    weight = F.batch_norm(bn.weight.reshape(1, 2, 4), None, None, training=True, momentum=0.0, eps=1e-6)
    return x * weight.reshape(1, 8, 1, 1)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_batch_stats, "batch_norm with training=True"),
        (lambda x, bn: torch.roll(x, 1), "roll without dims"),
        (lambda x, bn: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True), "antialias=True"),
        (lambda x, bn: F.interpolate(x, scale_factor=2, mode="nearest-exact"), "mode='nearest-exact'"),
        (lambda x, bn: x.norm(p=1, dim=1), "p=1"),
        (lambda x, bn: torch.linalg.vector_norm(x, ord=float("inf"), dim=1), "ord=inf"),
        (lambda x, bn: F.normalize(x, p=1.0), "p=1.0"),
        (lambda x, bn: torch.cumsum(x, 1, dtype=torch.float64), "dtype=torch.float64"),
        (lambda x, bn: torch.einsum("b...->b", x), "no ellipsis"),
        (lambda x, bn: x.repeat_interleave(torch.tensor([1, 2] * 4), dim=1), "tensor of counts"),
        (_strided_write, "slices of step 1"),
        (lambda x, bn: x.max(dim=1)[1].float(), "indices"),
        (lambda x, bn: torch.max(x, x * 2), "elementwise maximum"),
        (_standardised_weight, "weight standardisation"),
    ],
    ids=["bn-training", "roll-no-dims", "antialias", "nearest-exact", "norm-p1", "norm-inf", "normalize-p1",
         "cumsum-dtype", "einsum-ellipsis", "repeat-counts", "strided-write", "max-indices", "max-of-two", "weight-std"],
)
def test_refused_arguments(fn, message: str) -> None:  # noqa: ANN001
    with pytest.raises(FrontendError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        ai.compile(Call(fn), IMG, frontend="fx")
