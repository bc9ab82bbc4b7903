"""keras.applications coverage: the layers its families need beyond the core set (Cropping*D,
ZeroPadding*D, InceptionResNetV2's CustomScaleLayer) on small hand-built models, each held to the
DESIGN tolerance by `ai.check`, and (slow) `ai.check` on a few whole keras.applications models at
their smallest inputs."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.errors import FrontendError  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402


def arr(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _conv(rank: int, filters: int, kernel: int, **kw):  # noqa: ANN003, ANN202
    return {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D}[rank](filters, kernel, **kw)


_PAD = {1: L.ZeroPadding1D, 2: L.ZeroPadding2D, 3: L.ZeroPadding3D}
_CROP = {1: L.Cropping1D, 2: L.Cropping2D, 3: L.Cropping3D}
# Pad and crop by the same total on each axis but split differently, a shift as in NASNet's reduction
# cells (pad (0, 1), crop (1, 0)), so the body still adds to the shortcut; then a trim that shrinks,
# leaving one 3D axis alone. Uneven amounts make a swapped axis or end change values or shapes.
_PADS = {1: (1, 2), 2: ((1, 2), (0, 1)), 3: ((1, 0), (0, 2), (2, 1))}
_CROPS = {1: (2, 1), 2: ((2, 1), (1, 0)), 3: ((0, 1), (2, 0), (1, 2))}
_TRIMS = {1: (1, 0), 2: ((0, 1), (1, 2)), 3: ((1, 0), (0, 0), (0, 1))}
_SIDE = {1: 12, 2: 9, 3: 6}


def _pairs(amount: tuple) -> list[tuple[int, int]]:
    return [amount] if isinstance(amount[0], int) else list(amount)


def _pad_crop_model(rank: int) -> keras.Model:
    """conv → ZeroPadding → conv → Cropping, added to the conv's output → Cropping → conv → head: the
    channels pass through the pad and the crops, and the add ties the two convs' channels."""
    inp = keras.Input((_SIDE[rank],) * rank + (3,))
    x = _conv(rank, 8, 3, padding="same", activation="relu", name="stem")(inp)
    y = _PAD[rank](_PADS[rank], name="pad")(x)
    y = _conv(rank, 8, 3, padding="same", activation="relu", name="body")(y)
    y = _CROP[rank](_CROPS[rank], name="crop")(y)
    y = L.Add(name="add")([y, x])
    y = _CROP[rank](_TRIMS[rank], name="trim")(y)
    y = _conv(rank, 6, 1, activation="relu", name="mix")(y)
    y = {1: L.GlobalAveragePooling1D, 2: L.GlobalAveragePooling2D, 3: L.GlobalAveragePooling3D}[rank]()(y)
    return keras.Model(inp, L.Dense(4, name="head")(y))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_zero_padding_and_cropping_lower_to_pad_and_slice(rank: int) -> None:
    model = _pad_crop_model(rank)
    x = arr(2, *model.inputs[0].shape[1:])
    graph = ai.compile(model, x)
    assert [n.op for n in graph.nodes if n.source == "pad"] == [Op.PAD]
    # one slice per cropped axis, on that axis, with Keras' (before, after) read as start and stop
    for layer, amount in (("crop", _CROPS[rank]), ("trim", _TRIMS[rank])):
        slices = [n for n in graph.nodes if n.source == layer]
        assert all(n.op is Op.SLICE for n in slices)
        wanted = [(1 + i, a) for i, (a, b) in enumerate(_pairs(amount)) if a or b]
        assert [(n.attrs.axis, n.attrs.start) for n in slices] == wanted
    out = graph.values[graph.outputs[0]].shape
    assert out == tuple(np.asarray(model(x, training=False)).shape)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("mode", ["prune", "erase"])
def test_zero_padding_and_cropping_pass_check(rank: int, mode: str) -> None:
    model = _pad_crop_model(rank)
    report = ai.check(model, arr(2, *model.inputs[0].shape[1:]), mode=mode)
    assert report.ok, report.reason
    assert report.zeroed > 0


def test_cropping_generates_working_torch_code() -> None:
    """The crop is an ordinary slice on a spatial axis, so codegen-torch writes it from the same IR
    (codegen-onnx takes channels-first graphs only in this version)."""
    model = _pad_crop_model(2)
    report = ai.check(model, arr(2, *model.inputs[0].shape[1:]), target="torch")
    assert report.ok, report.reason


def test_integer_amounts_mean_the_same_on_every_axis() -> None:
    inp = keras.Input((7, 7, 3))
    x = L.Conv2D(4, 1, name="conv")(inp)
    x = L.ZeroPadding2D(2, name="pad")(x)
    x = L.Cropping2D(1, name="crop")(x)
    x = L.Cropping2D(((0, 0), (0, 0)), name="nothing")(x)  # crops nothing: no slice at all
    model = keras.Model(inp, L.Conv2D(3, 1, name="out")(x))
    graph = ai.compile(model, arr(1, 7, 7, 3))
    pad = next(n for n in graph.nodes if n.source == "pad")
    assert pad.attrs.pads == ((0, 0), (2, 2), (2, 2), (0, 0))
    crops = [n for n in graph.nodes if n.source == "crop"]
    assert [(n.attrs.axis, n.attrs.start, n.attrs.stop) for n in crops] == [(1, 1, 10), (2, 1, 10)]
    assert not [n for n in graph.nodes if n.source == "nothing" and n.op is Op.SLICE]
    assert ai.check(model, arr(1, 7, 7, 3)).ok


def test_channels_first_cropping_is_refused_naming_the_layer() -> None:
    inp = keras.Input((3, 6, 6))
    model = keras.Model(inp, L.Cropping2D(1, data_format="channels_first", name="cf_crop")(inp))
    with pytest.raises(FrontendError, match=r"'cf_crop' \(Cropping2D\).*channels_first"):
        ai.compile(model, arr(1, 3, 6, 6))


def _scale_block_model(scale: float) -> keras.Model:
    """InceptionResNetV2's block shape: x + scale * conv(branches(x)), then an activation."""
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    a = L.Conv2D(4, 1, activation="relu", name="branch_a")(x)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="branch_b")(x)
    up = L.Conv2D(8, 1, name="up")(L.Concatenate(name="mixed")([a, b]))
    x = L.Activation("relu")(CustomScaleLayer(scale, name="scaled")([x, up]))
    return keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x)))


def test_custom_scale_layer_is_a_scaled_residual_add() -> None:
    model = _scale_block_model(0.17)
    graph = ai.compile(model, arr(1, 6, 6, 3))
    scaled = [n for n in graph.nodes if n.source == "scaled"]
    assert [n.op for n in scaled] == [Op.MUL, Op.ADD]
    assert scaled[0].attrs.scalar == pytest.approx(0.17)
    # the residual add ties the stem's channels to the up-projection's: one group spans both
    space = ai.search_space(graph)
    assert any({"stem/kernel", "up/kernel"} <= {s.param for s in g.slices} for g in space.groups)


@pytest.mark.parametrize("mode", ["prune", "erase"])
def test_custom_scale_layer_passes_check(mode: str) -> None:
    report = ai.check(_scale_block_model(0.1), arr(2, 6, 6, 3), mode=mode)
    assert report.ok, report.reason


# The smallest input each family accepts with weights=None (keras' own minimum, from its
# input-shape validation); NASNetMobile is the one whose reduction cells pad-then-crop.
APPS = [
    ("NASNetMobile", 32, "prune"),
    ("NASNetMobile", 32, "erase"),
    ("InceptionResNetV2", 75, "prune"),
    ("MobileNetV3Small", 32, "prune"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "side", "mode"), APPS)
def test_keras_applications_pass_check(name: str, side: int, mode: str) -> None:
    model = getattr(keras.applications, name)(weights=None, input_shape=(side, side, 3), classes=10)
    report = ai.check(model, arr(1, side, side, 3), mode=mode)
    assert report.ok, report.reason
    assert report.zeroed > 0 and report.params_sub < report.params_full
