"""Hypothesis strategies for random valid PyTorch architectures.

An architecture is drawn as a small, printable description (frozen dataclasses below) and built into
an `nn.Module` by `build`. The description is the reproduction recipe: its `repr` is a Python
expression over the names of this module, so a failing example can be pasted back and rebuilt with
`build(eval(text))`.

Invariants the strategy keeps, so every drawn model runs on `Arch.input_shape`:
- channel counts are tracked while drawing: grouped convs divide both channel counts by their groups,
  GroupNorm divides the channels by its groups, a depthwise conv keeps its channel count;
- spatial size is tracked too; strides and pools are only drawn while the map is at least 2x2, and the
  bodies of residuals and branches keep the spatial size (stride 1, 'same' padding) so their outputs meet;
- a residual body, a chunk body and every branch of an additive join end in a conv to the channel count
  they must meet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

ACTIVATIONS = ("relu", "gelu", "silu", "hardswish", "sigmoid", "tanh", "relu6", "leaky_relu", "elu", "mish")
NORMS = ("batch", "group", "instance", "instance_affine", "layer")


@dataclass(frozen=True)
class Conv:
    """Conv2d with 'same' padding; `groups` 1 (dense), `0` (depthwise: groups = in = out) or g > 1."""

    out: int
    kernel: int = 3
    stride: int = 1
    groups: int = 1
    bias: bool = True


@dataclass(frozen=True)
class Norm:
    """`kind` in NORMS; `groups` only for GroupNorm; 'layer' normalises over channels (channels-last)."""

    kind: str
    groups: int = 1


@dataclass(frozen=True)
class Act:
    kind: str


@dataclass(frozen=True)
class SE:
    """Squeeze-excitation gate x * gate(fc2(relu(fc1(pool(x))))); `fc` is 'conv' (1x1) or 'linear'."""

    squeeze: int
    fc: str = "conv"
    gate: str = "sigmoid"


@dataclass(frozen=True)
class Pool:
    """`kind` max/avg with (kernel, stride, padding), or adaptive_max/adaptive_avg to `kernel` x `kernel`."""

    kind: str
    kernel: int = 2
    stride: int = 2
    padding: int = 0


@dataclass(frozen=True)
class Residual:
    """x + body(x); the body keeps channels and spatial size."""

    body: tuple


@dataclass(frozen=True)
class Branches:
    """Parallel bodies on the same input, joined by 'add' (same channels) or 'concat' (channel axis)."""

    branches: tuple
    join: str = "add"


@dataclass(frozen=True)
class Shuffle:
    """ShuffleNet channel shuffle: reshape to (groups, c / groups), swap those axes, flatten back."""

    groups: int


@dataclass(frozen=True)
class Chunk:
    """ShuffleNet v2 split: x.chunk(2) along channels, `body` on the second piece, concat both."""

    body: tuple


@dataclass(frozen=True)
class Head:
    """'pool': adaptive avg pool to 1x1 then flatten; 'flatten': flatten the whole map.
    Then an optional hidden Linear + activation, then Linear to `classes`."""

    kind: str
    hidden: int | None
    act: str
    classes: int


@dataclass(frozen=True)
class Arch:
    in_channels: int
    size: int
    layers: tuple
    head: Head | None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (2, self.in_channels, self.size, self.size)


# ---------------------------------------------------------------------------------------------- build


class _LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW map (ConvNeXt style: to channels-last and back)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, spec: SE) -> None:
        super().__init__()
        self.linear = spec.fc == "linear"
        self.pool = nn.AdaptiveAvgPool2d(1)
        if self.linear:
            self.fc1, self.fc2 = nn.Linear(channels, spec.squeeze), nn.Linear(spec.squeeze, channels)
        else:
            self.fc1, self.fc2 = nn.Conv2d(channels, spec.squeeze, 1), nn.Conv2d(spec.squeeze, channels, 1)
        self.relu = nn.ReLU()
        self.gate = nn.Sigmoid() if spec.gate == "sigmoid" else nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x)
        if self.linear:
            s = torch.flatten(s, 1)
        s = self.gate(self.fc2(self.relu(self.fc1(s))))
        if self.linear:
            s = s.reshape(s.shape[0], s.shape[1], 1, 1)
        return x * s


class _Shuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class _Chunk(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, 1)
        return torch.cat([a, self.body(b)], 1)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Branches(nn.Module):
    def __init__(self, branches: list[nn.Module], join: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.join = join

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        if self.join == "concat":
            return torch.cat(outs, 1)
        total = outs[0]
        for out in outs[1:]:
            total = total + out
        return total


class _Head(nn.Module):
    def __init__(self, features: int, spec: Head) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1) if spec.kind == "pool" else nn.Identity()
        layers: list[nn.Module] = []
        if spec.hidden is not None:
            layers += [nn.Linear(features, spec.hidden), _activation(spec.act)]
            features = spec.hidden
        layers.append(nn.Linear(features, spec.classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.flatten(self.pool(x), 1))


def _activation(kind: str) -> nn.Module:
    table = {
        "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish, "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "mish": nn.Mish,
    }
    return table[kind]()


def _build_layers(layers: tuple, channels: int, size: int) -> tuple[nn.Sequential, int, int]:
    """The modules of `layers` applied to a (channels, size, size) map, and the map they produce."""
    modules: list[nn.Module] = []
    for layer in layers:
        module, channels, size = _build_layer(layer, channels, size)
        modules.append(module)
    return nn.Sequential(*modules), channels, size


def _build_layer(layer: object, c: int, size: int) -> tuple[nn.Module, int, int]:
    if isinstance(layer, Conv):
        groups = c if layer.groups == 0 else layer.groups
        module = nn.Conv2d(c, layer.out, layer.kernel, layer.stride, layer.kernel // 2, groups=groups, bias=layer.bias)
        return module, layer.out, (size + 2 * (layer.kernel // 2) - layer.kernel) // layer.stride + 1
    if isinstance(layer, Norm):
        norms = {
            "batch": lambda: nn.BatchNorm2d(c),
            "group": lambda: nn.GroupNorm(layer.groups, c),
            "instance": lambda: nn.InstanceNorm2d(c),
            "instance_affine": lambda: nn.InstanceNorm2d(c, affine=True),
            "layer": lambda: _LayerNorm2d(c),
        }
        return norms[layer.kind](), c, size
    if isinstance(layer, Act):
        return _activation(layer.kind), c, size
    if isinstance(layer, SE):
        return _SqueezeExcite(c, layer), c, size
    if isinstance(layer, Pool):
        if layer.kind.startswith("adaptive"):
            cls = nn.AdaptiveMaxPool2d if layer.kind == "adaptive_max" else nn.AdaptiveAvgPool2d
            return cls(layer.kernel), c, layer.kernel
        cls = nn.MaxPool2d if layer.kind == "max" else nn.AvgPool2d
        out = (size + 2 * layer.padding - layer.kernel) // layer.stride + 1
        return cls(layer.kernel, layer.stride, layer.padding), c, out
    if isinstance(layer, Shuffle):
        return _Shuffle(layer.groups), c, size
    if isinstance(layer, Chunk):
        body, _, _ = _build_layers(layer.body, c - (c + 1) // 2, size)
        return _Chunk(body), c, size
    if isinstance(layer, Residual):
        body, _, _ = _build_layers(layer.body, c, size)
        return _Residual(body), c, size
    if isinstance(layer, Branches):
        bodies = [_build_layers(branch, c, size) for branch in layer.branches]
        out = sum(b[1] for b in bodies) if layer.join == "concat" else bodies[0][1]
        return _Branches([b[0] for b in bodies], layer.join), out, size
    raise TypeError(f"unknown layer description {layer!r}")


class FuzzNet(nn.Module):
    """The network an `Arch` describes."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.features, channels, size = _build_layers(arch.layers, arch.in_channels, arch.size)
        features = channels if arch.head is None or arch.head.kind == "pool" else channels * size * size
        self.head = _Head(features, arch.head) if arch.head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build(arch: Arch, seed: int = 0) -> nn.Module:
    """The eval-mode model for `arch`, initialised from `seed`."""
    torch.manual_seed(seed)
    return FuzzNet(arch).eval()


def example_input(arch: Arch, seed: int = 0) -> torch.Tensor:
    return torch.randn(arch.input_shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ strategies

_WIDTHS = st.sampled_from([2, 3, 4, 6, 8])


def _divisors(n: int) -> list[int]:
    return [g for g in range(2, n + 1) if n % g == 0]


@st.composite
def _conv(draw: st.DrawFn, c: int, size: int, *, out: int | None = None, spatial: bool = True) -> tuple[Conv, int, int]:
    """A conv from `c` channels (to `out` if given); strides only when `spatial` allows and the map is >= 2."""
    kind = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped"]))
    if kind == "depthwise" and out in (None, c):
        cout, groups = c, 0
    else:
        cout = out if out is not None else draw(_WIDTHS)
        shared = sorted(set(_divisors(c)) & set(_divisors(cout)))
        groups = draw(st.sampled_from(shared)) if kind == "grouped" and shared else 1
    kernel = draw(st.sampled_from([1, 3]))
    stride = draw(st.sampled_from([1, 1, 2])) if spatial and size >= 2 else 1
    conv = Conv(out=cout, kernel=kernel, stride=stride, groups=groups, bias=draw(st.booleans()))
    return conv, cout, (size + 2 * (kernel // 2) - kernel) // stride + 1


@st.composite
def _norm(draw: st.DrawFn, c: int, size: int) -> Norm:
    # torch refuses instance statistics over a single spatial element
    kind = draw(st.sampled_from([k for k in NORMS if size > 1 or not k.startswith("instance")]))
    if kind == "group":
        return Norm("group", draw(st.sampled_from([1, *_divisors(c)])))
    return Norm(kind)


@st.composite
def _pool(draw: st.DrawFn, size: int) -> tuple[Pool, int]:
    kind = draw(st.sampled_from(["max", "avg", "adaptive_max", "adaptive_avg"]))
    if kind.startswith("adaptive"):
        out = draw(st.integers(1, size))
        return Pool(kind, kernel=out), out
    kernel, stride, padding = draw(st.sampled_from([(2, 2, 0), (3, 1, 1), (3, 2, 1)]))
    return Pool(kind, kernel, stride, padding), (size + 2 * padding - kernel) // stride + 1


@st.composite
def _body(
    draw: st.DrawFn, c: int, size: int, out: int | None, depth: int, max_len: int = 3, norm: bool = True
) -> tuple[tuple, int]:
    """A same-size chain from `c` channels; when `out` is given it ends in a conv to `out` channels,
    followed by a norm sometimes (never when `norm` is false)."""
    layers, c, _ = draw(_chain(c, size, depth, spatial=False, max_len=max_len))
    if out is not None:
        conv, c, _ = draw(_conv(c, size, out=out, spatial=False))
        layers = (*layers, conv)
        if norm and draw(st.booleans()):
            layers = (*layers, draw(_norm(c, size)))
    return layers, c


@st.composite
def _layer(draw: st.DrawFn, c: int, size: int, depth: int, spatial: bool) -> tuple[object, int, int]:
    """One layer on a (c, size, size) map and the map it produces."""
    kinds = ["conv", "conv", "norm", "act", "act", "se"]
    if spatial and size >= 2:
        kinds.append("pool")
    if _divisors(c):
        kinds.append("shuffle")
    if depth > 0:
        kinds += ["residual", "branches", "branches"]
        if c >= 2:
            kinds.append("chunk")
    kind = draw(st.sampled_from(kinds))
    if kind == "conv":
        return draw(_conv(c, size, spatial=spatial))
    if kind == "norm":
        return draw(_norm(c, size)), c, size
    if kind == "act":
        return Act(draw(st.sampled_from(ACTIVATIONS))), c, size
    if kind == "se":
        spec = SE(draw(st.integers(1, max(1, c))), draw(st.sampled_from(["conv", "linear"])),
                  draw(st.sampled_from(["sigmoid", "hardsigmoid"])))
        return spec, c, size
    if kind == "pool":
        pool, size = draw(_pool(size))
        return pool, c, size
    if kind == "shuffle":
        return Shuffle(draw(st.sampled_from(_divisors(c)))), c, size
    if kind == "chunk":
        half = c - (c + 1) // 2  # torch.chunk gives the first piece ceil(c / 2) channels
        body, _ = draw(_body(half, size, half, depth - 1))
        return Chunk(body), c, size
    if kind == "residual":
        body, _ = draw(_body(c, size, c, depth - 1))
        return Residual(body), c, size
    join = draw(st.sampled_from(["add", "concat"]))
    out = draw(_WIDTHS) if join == "add" else None
    count = draw(st.integers(2, 3))
    # an empty concat branch passes the input through (DenseNet's cat([x, f(x)]), or even cat([x, x]))
    bodies = [draw(_body(c, size, out, depth - 1)) for _ in range(count)]
    channels = out if join == "add" else sum(cout for _, cout in bodies)
    return Branches(tuple(body for body, _ in bodies), join), channels, size


@st.composite
def _chain(draw: st.DrawFn, c: int, size: int, depth: int, spatial: bool, max_len: int) -> tuple[tuple, int, int]:
    layers = []
    for _ in range(draw(st.integers(0, max_len))):
        layer, c, size = draw(_layer(c, size, depth, spatial))
        layers.append(layer)
    return tuple(layers), c, size


@st.composite
def _trunk(draw: st.DrawFn, max_layers: int, max_depth: int) -> tuple[int, int, tuple, int, int]:
    """(in_channels, size, layers, channels out, size out): a stem conv and up to `max_layers` layers."""
    in_channels = draw(st.integers(1, 4))
    size = draw(st.sampled_from([4, 6, 8]))
    stem, c, s = draw(_conv(in_channels, size))
    rest, c, s = draw(_chain(c, s, max_depth, spatial=True, max_len=max_layers))
    return in_channels, size, (stem, *rest), c, s


@st.composite
def _head(draw: st.DrawFn) -> Head | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    return Head(
        kind=draw(st.sampled_from(["pool", "flatten"])),
        hidden=draw(st.one_of(st.none(), _WIDTHS)),
        act=draw(st.sampled_from(ACTIVATIONS)),
        classes=draw(st.integers(1, 5)),
    )


@st.composite
def architectures(draw: st.DrawFn, max_layers: int = 5, max_depth: int = 2) -> Arch:
    """A random valid architecture: a stem conv, up to `max_layers` layers (nesting residuals and
    branches `max_depth` deep), and an optional classifier head."""
    in_channels, size, layers, _, _ = draw(_trunk(max_layers, max_depth))
    return Arch(in_channels, size, layers, draw(_head()))


@st.composite
def erasable_architectures(draw: st.DrawFn, max_layers: int = 3) -> Arch:
    """An architecture with at least one removable structure: a join summing 2-3 parallel branches
    after a random trunk. The first branch ends in a bare conv (a plain norm such as InstanceNorm
    without affine params is not zero-invariant), so erase mode always has something to remove."""
    in_channels, size, layers, c, s = draw(_trunk(max_layers, 1))
    out = draw(_WIDTHS)
    count = draw(st.integers(2, 3))
    bodies = [draw(_body(c, s, out, 1, norm=i > 0)) for i in range(count)]
    joint = Branches(tuple(body for body, _ in bodies), "add")
    return Arch(in_channels, size, (*layers, joint), draw(_head()))
