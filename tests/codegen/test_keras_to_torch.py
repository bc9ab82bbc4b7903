"""codegen-torch on graphs from the Keras frontend (channels-last): the generated PyTorch model takes
and returns NHWC tensors and matches the Keras model whose zeroed groups were set to zero.

Equivalence uses the DESIGN §4 rule through `ai.check(keras_model, x, target="torch")`: max |reference|
> 1e-3 and max |diff| <= 1e-4 * max |reference|.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.testing import emit_and_load, run_torch  # noqa: E402

L = keras.layers


def arr(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _conv_bn_relu_conv():  # noqa: ANN202
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    return keras.Model(inp, L.Conv2D(4, 3, name="c2")(x))


def _residual():  # noqa: ANN202
    inp = keras.Input((8, 8, 4))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="a")(inp)
    y = L.Conv2D(8, 3, padding="same", name="b")(x)
    y = L.BatchNormalization(name="bn")(y)
    return keras.Model(inp, L.Conv2D(3, 1, name="head")(L.ReLU()(L.Add()([x, y]))))


def _depthwise_separable():  # noqa: ANN202
    inp = keras.Input((9, 9, 3))
    x = L.Conv2D(6, 1, name="expand")(inp)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    x = L.SeparableConv2D(5, 3, padding="same", activation="relu6", name="sep")(x)
    return keras.Model(inp, L.Conv2D(2, 1, name="head")(x))


def _mlp():  # noqa: ANN202
    inp = keras.Input((12,))
    x = L.Dense(16, activation="relu", name="d1")(inp)
    x = L.Dense(8, activation="gelu", name="d2")(x)
    return keras.Model(inp, L.Dense(3, activation="softmax", name="out")(x))


def _concat():  # noqa: ANN202
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 1, name="a")(inp)
    b = L.Conv2D(6, 3, padding="same", name="b")(inp)
    x = L.Concatenate(axis=-1)([a, b])
    return keras.Model(inp, L.Conv2D(5, 1, name="fuse")(x))


def _gap_head():  # noqa: ANN202
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, activation="relu", name="c")(inp)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(4, name="fc")(x))


def _flatten_after_conv():  # noqa: ANN202
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, activation="relu", name="c")(inp)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(5, name="fc")(x))


def _pad_pool():  # noqa: ANN202
    inp = keras.Input((9, 9, 3))
    x = L.ZeroPadding2D(((1, 2), (0, 1)))(inp)
    x = L.Conv2D(6, 3, strides=2, name="c")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    x = L.Conv2D(4, 1, name="d")(x)
    return keras.Model(inp, L.GlobalMaxPooling2D()(x))


def _attention():  # noqa: ANN202
    inp = keras.Input((6, 16))
    x = L.Dense(16, name="proj")(inp)
    y = L.MultiHeadAttention(4, 8, name="mha")(x, x)
    y = L.LayerNormalization(name="ln")(L.Add()([x, y]))
    return keras.Model(inp, L.Dense(3, name="head")(y))


def _conv1d_gn():  # noqa: ANN202
    inp = keras.Input((10, 4))
    x = L.Conv1D(8, 3, padding="same", name="c")(inp)
    x = L.GroupNormalization(groups=4, name="gn")(x)
    x = L.Activation("swish")(x)
    x = L.Conv1DTranspose(4, 3, strides=2, padding="same", name="up")(x)
    return keras.Model(inp, L.Softmax(axis=1)(x))


MODELS = {
    "conv_bn_relu_conv": (_conv_bn_relu_conv, (2, 8, 8, 3)),
    "residual": (_residual, (2, 8, 8, 4)),
    "depthwise_separable": (_depthwise_separable, (2, 9, 9, 3)),
    "mlp": (_mlp, (3, 12)),
    "concat": (_concat, (2, 8, 8, 3)),
    "gap_head": (_gap_head, (2, 8, 8, 3)),
    "flatten_after_conv": (_flatten_after_conv, (2, 6, 6, 3)),
    "pad_pool": (_pad_pool, (2, 9, 9, 3)),
    "attention": (_attention, (2, 6, 16)),
    "conv1d_gn": (_conv1d_gn, (2, 10, 4)),
}


@pytest.mark.parametrize("name", MODELS)
def test_keras_model_to_torch_matches(name: str, tmp_path: Path) -> None:
    build, shape = MODELS[name]
    report = ai.check(build(), arr(*shape), target="torch", out_dir=tmp_path)
    assert report.ok, report
    assert report.frontend == "keras" and report.target == "torch"
    assert report.zeroed > 0
    text = (tmp_path / "model.py").read_text()
    assert "asgnas_ir" not in text.replace("asgnas-ir", "")


def test_weights_are_transposed_to_torch_layouts(tmp_path: Path) -> None:
    graph = ai.compile(_depthwise_separable(), arr(1, 9, 9, 3))
    model = emit_and_load(graph, tmp_path)
    state = model.state_dict()
    assert tuple(state["expand.weight"].shape) == (6, 3, 1, 1)  # HWIO -> OIHW
    assert tuple(state["dw.weight"].shape) == (6, 1, 3, 3)  # depthwise HWOI -> OIHW
    assert tuple(state["sep.weight"].shape) == (6, 1, 3, 3)  # the separable conv's depthwise half
    assert tuple(state["sep_1.weight"].shape) == (5, 6, 1, 1)


def test_inputs_and_outputs_stay_channels_last_and_permutes_are_shared(tmp_path: Path) -> None:
    """One permute of the input for two convs; Flatten reads NHWC order (permute back first)."""
    inp = keras.Input((6, 6, 3))
    a = L.Conv2D(4, 3, name="a")(inp)
    b = L.Conv2D(4, 3, name="b")(inp)
    model = keras.Model(inp, [L.Add()([a, b]), L.Flatten()(a)])
    x = arr(2, 6, 6, 3)
    graph = ai.compile(model, x)
    torch_model = emit_and_load(graph, tmp_path)
    text = (tmp_path / "model.py").read_text()
    assert text.count(".permute(0, 3, 1, 2)") == 1
    expected = [np.asarray(o) for o in model(x, training=False)]
    actual = run_torch(torch_model, [x])
    assert [e.shape for e in expected] == [a.shape for a in actual]
    for e, a in zip(expected, actual, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * float(np.abs(e).max()))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2", "ConvNeXtTiny"])
def test_keras_applications_to_torch(name: str) -> None:
    model = getattr(keras.applications, name)(weights=None, input_shape=(64, 64, 3), classes=10)
    report = ai.check(model, arr(1, 64, 64, 3), target="torch")
    assert report.ok, report
