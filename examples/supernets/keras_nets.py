"""Keras 3 Functional versions of the bundled super-networks (NHWC inputs).

Each builder mirrors the PyTorch module of the same name in this package (see its docstring for the
architecture and the list of removal structures) and keeps its topology, so erasing mode finds the
same removal structures: ``KERAS_SUPERNETS`` maps the names of ``SUPERNETS`` to builders
``(num_classes, in_channels, image_size) -> keras.Model`` and :func:`build_keras` picks one.

Differences from the torch versions that do not change the topology: inputs are ``(N, H, W, C)``;
convolutions use Keras' ``'same'`` padding (a stride-2 conv pads its odd pixel at the end, as TF
does); BatchNormalization uses torch's epsilon (1e-5) and momentum (0.9 = torch's 0.1); the global
mean over H and W is ``GlobalAveragePooling2D``. Layer names follow the torch module paths with
``_`` for ``.`` (``stages_0_1_conv3x3_bn``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers as L

KerasBuilder = Callable[..., keras.Model]


def _conv(x: Any, filters: int, kernel: int, name: str, *, stride: int = 1, groups: int = 1, dilation: int = 1, padding: str = "same") -> Any:
    return L.Conv2D(
        filters, kernel, strides=stride, padding=padding, groups=groups, dilation_rate=dilation, use_bias=False, name=name
    )(x)


def _bn(x: Any, name: str) -> Any:
    return L.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name)(x)


def _relu(x: Any, name: str) -> Any:
    return L.ReLU(name=name)(x)


def _conv_bn(x: Any, filters: int, kernel: int, name: str, **conv: Any) -> Any:
    return _bn(_conv(x, filters, kernel, f"{name}_conv", **conv), f"{name}_bn")


# ----- stacked_unets ---------------------------------------------------------------------------------


def _conv_bn_relu(x: Any, filters: int, name: str, kernel: int = 3) -> Any:
    return _relu(_conv_bn(x, filters, kernel, name), f"{name}_relu")


def _up_bn_relu(x: Any, filters: int, name: str) -> Any:
    x = L.Conv2DTranspose(filters, 2, strides=2, use_bias=False, name=f"{name}_conv")(x)
    return _relu(_bn(x, f"{name}_bn"), f"{name}_relu")


def _small_unet(x: Any, channels: int, base: int, name: str) -> Any:
    e1 = _conv_bn_relu(x, base, f"{name}_enc1")
    e2 = _conv_bn_relu(L.MaxPooling2D(2, name=f"{name}_pool1")(e1), 2 * base, f"{name}_enc2")
    b = _conv_bn_relu(L.MaxPooling2D(2, name=f"{name}_pool2")(e2), 2 * base, f"{name}_bottleneck")
    d2 = L.Add(name=f"{name}_add2")([e2, _up_bn_relu(b, 2 * base, f"{name}_up2")])
    d1 = L.Add(name=f"{name}_add1")([e1, _up_bn_relu(_conv_bn_relu(d2, base, f"{name}_dec2"), base, f"{name}_up1")])
    return _conv_bn(d1, channels, 3, f"{name}_out")


def stacked_unets(num_classes: int = 10, in_channels: int = 1, image_size: int = 8, width: int = 16, base: int = 16) -> keras.Model:
    """StackedUnets (``stacked_unets.py``): 6 removal structures; ``image_size`` divisible by 4."""
    inputs = keras.Input((image_size, image_size, in_channels), name="x")
    x = _conv_bn_relu(inputs, width, "stem")
    x = _relu(L.Add(name="unets_add")([_small_unet(x, width, base, "unet1"), _small_unet(x, width, base, "unet2")]), "relu")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(num_classes, name="head")(x), name="stacked_unets")


# ----- super_resnet ----------------------------------------------------------------------------------


def _super_block(x: Any, channels: int, name: str) -> Any:
    dw = _relu(_conv_bn(x, channels, 3, f"{name}_dwsep_dw", groups=channels), f"{name}_dwsep_relu")
    candidates = [
        _conv_bn(x, channels, 3, f"{name}_conv3x3"),
        _conv_bn(x, channels, 5, f"{name}_conv5x5"),
        _conv_bn(x, channels, 1, f"{name}_conv1x1"),
        _conv_bn(dw, channels, 1, f"{name}_dwsep_pw"),
    ]
    return _relu(L.Add(name=f"{name}_add")([x, *candidates]), f"{name}_relu")


def super_resnet(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 8,
    widths: tuple[int, ...] = (12, 20, 28),
    depths: tuple[int, ...] = (2, 2, 2),
) -> keras.Model:
    """SuperResNet (``super_resnet.py``): 4 candidates per super block, 24 removal structures."""
    inputs = keras.Input((image_size, image_size, in_channels), name="x")
    x = _relu(_conv_bn(inputs, widths[0], 3, "stem"), "stem_relu")
    for s, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        if s:
            x = _relu(_conv_bn(x, width, 3, f"downs_{s - 1}", stride=2), f"downs_{s - 1}_relu")
        for b in range(depth):
            x = _super_block(x, width, f"stages_{s}_{b}")
    x = L.GlobalAveragePooling2D(name="mean")(x)
    return keras.Model(inputs, L.Dense(num_classes, name="head")(x), name="super_resnet")


# ----- darts_cell ------------------------------------------------------------------------------------


def _relu_conv_bn(x: Any, filters: int, name: str, reduce: bool) -> Any:
    kernel = 2 if reduce else 1
    return _conv_bn(_relu(x, f"{name}_relu"), filters, kernel, name, stride=kernel, padding="valid")


def _sep_conv(x: Any, channels: int, name: str, dilation: int = 1, group_width: int = 1) -> Any:
    x = _relu(x, f"{name}_relu")
    x = _conv(x, channels, 3, f"{name}_dw", groups=channels // group_width, dilation=dilation)
    return _conv_bn(x, channels, 1, f"{name}_pw")


CANDIDATES = ("sep_conv3x3", "dil_conv3x3", "conv1x1")


def _skip_connect(x: Any, name: str) -> Any:
    """The gateable skip-connect: a per-channel scale (depthwise 1x1, no bias) set to 1, as torch's ``skip_connect``."""
    return L.DepthwiseConv2D(1, use_bias=False, depthwise_initializer="ones", name=name)(x)


def _edge_terms(x: Any, channels: int, name: str, group_width: int, prunable_skip: bool, candidates: tuple[str, ...]) -> list[Any]:
    """One edge's candidate outputs, the skip-connect first (``x`` itself unless it is prunable)."""
    builders = {
        "sep_conv3x3": lambda: _sep_conv(x, channels, f"{name}_sep_conv3x3", group_width=group_width),
        "dil_conv3x3": lambda: _sep_conv(x, channels, f"{name}_dil_conv3x3", dilation=2, group_width=group_width),
        "conv1x1": lambda: _conv_bn(x, channels, 1, f"{name}_conv1x1"),
    }
    skip = _skip_connect(x, f"{name}_skip") if prunable_skip else x
    return [skip, *(builders[op]() for op in CANDIDATES if op in candidates)]


def _cell(
    s0: Any, s1: Any, channels: int, reduction: bool, reduction_prev: bool, nodes: int, group_width: int, name: str,
    prunable_skip: bool, candidates: tuple[str, ...],
) -> Any:
    states = [
        _relu_conv_bn(s0, channels, f"{name}_preprocess0", reduction or reduction_prev),
        _relu_conv_bn(s1, channels, f"{name}_preprocess1", reduction),
    ]
    edge = 0
    for i in range(nodes):
        terms = []
        for state in states:
            edge_terms = _edge_terms(state, channels, f"{name}_edges_{edge}", group_width, prunable_skip, candidates)
            # prunable skip: one flat sum of every candidate of every incoming edge, as the torch cell
            terms += edge_terms if prunable_skip else [L.Add(name=f"{name}_edges_{edge}_add")(edge_terms)]
            edge += 1
        states.append(L.Add(name=f"{name}_node{i}")(terms))
    return L.Concatenate(name=f"{name}_concat")(states[2:])


def darts_cell(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 8,
    channels: int = 16,
    stem_stride: int = 2,
    reductions: tuple[bool, ...] = (False, True, False),
    nodes: int = 3,
    group_width: int = 1,
    prunable_skip: bool = False,
    candidates: tuple[str, ...] = CANDIDATES,
) -> keras.Model:
    """DartsNet (``darts_cell.py``): 3 parametric candidates on 9 edges of 3 cells, 81 removal structures;
    ``prunable_skip`` and ``candidates`` as in the torch ``DartsNet``."""
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown or not candidates:
        raise ValueError(f"candidates must be a non-empty subset of {CANDIDATES}, got {candidates}")
    inputs = keras.Input((image_size, image_size, in_channels), name="x")
    s0 = s1 = _conv_bn(inputs, 2 * channels, 3, "stem", stride=stem_stride)
    reduction_prev = False
    for k, reduction in enumerate(reductions):
        s0, s1 = s1, _cell(s0, s1, channels, reduction, reduction_prev, nodes, group_width, f"cells_{k}", prunable_skip, candidates)
        reduction_prev = reduction
    x = L.GlobalAveragePooling2D(name="mean")(s1)
    return keras.Model(inputs, L.Dense(num_classes, name="head")(x), name="darts_cell")


def darts_cell_gold(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> keras.Model:
    """GOLD-NAS' operator set (a prunable skip-connect and ``sep_conv3x3`` on every edge), as torch's
    ``darts_cell.build_gold``. SPEC ``asgnas_ir.examples.supernets.keras_nets:darts_cell_gold``."""
    return darts_cell(num_classes, in_channels, image_size, prunable_skip=True, candidates=("sep_conv3x3",))


def darts_cell_prunable_skip(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> keras.Model:
    """:func:`darts_cell` with prunable skip-connects, as torch's ``darts_cell.build_prunable_skip``.
    SPEC ``asgnas_ir.examples.supernets.keras_nets:darts_cell_prunable_skip``."""
    return darts_cell(num_classes, in_channels, image_size, prunable_skip=True)


# ----- regnet_super ----------------------------------------------------------------------------------


def _bottleneck(x: Any, c_in: int, c_out: int, stride: int, name: str, group_width: int = 8) -> Any:
    h = _relu(_conv_bn(x, c_out, 1, f"{name}_branch_0"), f"{name}_branch_relu0")
    h = _relu(_conv_bn(h, c_out, 3, f"{name}_branch_1", stride=stride, groups=c_out // group_width), f"{name}_branch_relu1")
    h = _conv_bn(h, c_out, 1, f"{name}_branch_2")
    shortcut = x
    if stride != 1 or c_in != c_out:
        shortcut = _conv_bn(x, c_out, 1, f"{name}_shortcut", stride=stride)
    return _relu(L.Add(name=f"{name}_add")([shortcut, h]), f"{name}_relu")


def regnet_super(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 8,
    stem_width: int = 16,
    widths: tuple[int, ...] = (24, 48, 64),
    depths: tuple[int, ...] = (2, 3, 3),
    strides: tuple[int, ...] = (1, 2, 2),
) -> keras.Model:
    """RegNetSuper (``regnet_super.py``): residual bottleneck stages, 11 removal structures."""
    inputs = keras.Input((image_size, image_size, in_channels), name="x")
    x = _relu(_conv_bn(inputs, stem_width, 3, "stem"), "stem_relu")
    c_in = stem_width
    for s, (width, depth, stride) in enumerate(zip(widths, depths, strides, strict=True)):
        for b in range(depth):
            x = _bottleneck(x, c_in if b == 0 else width, width, stride if b == 0 else 1, f"stages_{s}_{b}")
        c_in = width
    x = L.GlobalAveragePooling2D(name="mean")(x)
    return keras.Model(inputs, L.Dense(num_classes, name="head")(x), name="regnet_super")


KERAS_SUPERNETS: dict[str, KerasBuilder] = {
    "stacked_unets": stacked_unets,
    "super_resnet": super_resnet,
    "darts_cell": darts_cell,
    "regnet_super": regnet_super,
}


def build_keras(name: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> keras.Model:
    """The Keras super-network `name` (a key of ``KERAS_SUPERNETS``) for (N, image_size, image_size, in_channels) inputs."""
    if name not in KERAS_SUPERNETS:
        raise KeyError(f"unknown Keras super-network '{name}'; choose one of {', '.join(KERAS_SUPERNETS)}")
    return KERAS_SUPERNETS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)


__all__ = [
    "KERAS_SUPERNETS", "build_keras", "darts_cell", "darts_cell_gold", "darts_cell_prunable_skip", "regnet_super",
    "stacked_unets", "super_resnet",
]
