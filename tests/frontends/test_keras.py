"""Keras 3 frontend: per-layer lowering checked against Keras' own output shapes, channel groups on
small channels-last models, unsupported-layer reporting, the `.keras` file path through the CLI,
and (slow) keras.applications models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.errors import FrontendError, UnsupportedOpError  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402

RNG = np.random.default_rng(0)


def arr(*shape: int, dtype: str = "float32") -> np.ndarray:
    if dtype.startswith("int"):
        return RNG.integers(0, 10, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def functional(layer_fn, shape, batch: int = 2, dtype: str = "float32"):  # noqa: ANN001, ANN201
    inp = keras.Input(shape, dtype=dtype)
    out = layer_fn(inp)
    return keras.Model(inp, out), arr(batch, *shape, dtype=dtype)


def lowered_shapes(model, x) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:  # noqa: ANN001
    graph = ai.compile(model, x)
    assert graph.meta.framework == "keras" and graph.meta.layout == "channels_last"
    outs = model(x, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [graph.values[o].shape for o in graph.outputs], [tuple(np.asarray(o).shape) for o in outs]


LAYER_CASES = {
    "conv2d_same_stride": (lambda x: L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x), (9, 9, 3)),
    "conv2d_even_kernel_same": (lambda x: L.Conv2D(4, 4, strides=2, padding="same")(x), (8, 8, 3)),
    "conv2d_dilated_grouped": (lambda x: L.Conv2D(8, 3, dilation_rate=2, groups=2, padding="same")(x), (10, 10, 4)),
    "conv1d_causal": (lambda x: L.Conv1D(5, 3, padding="causal")(x), (12, 4)),
    "depthwise": (lambda x: L.DepthwiseConv2D(3, strides=2, padding="same")(x), (9, 9, 4)),
    "separable": (lambda x: L.SeparableConv2D(7, 3, padding="same", activation="swish")(x), (8, 8, 4)),
    "conv_transpose_same": (lambda x: L.Conv2DTranspose(5, 3, strides=2, padding="same")(x), (5, 5, 4)),
    "conv_transpose_valid": (lambda x: L.Conv2DTranspose(5, 2, strides=3)(x), (5, 5, 4)),
    "dense_gelu": (lambda x: L.Dense(6, activation="gelu")(x), (5, 4)),
    "batch_norm": (lambda x: L.BatchNormalization()(x), (4, 4, 3)),
    "layer_norm": (lambda x: L.LayerNormalization()(x), (5, 8)),
    "group_norm": (lambda x: L.GroupNormalization(groups=2)(x), (4, 4, 6)),
    "activations": (lambda x: L.ELU()(L.LeakyReLU(0.1)(L.ReLU(max_value=6.0)(L.Activation("hard_silu")(x)))), (4, 4, 3)),
    "softmax": (lambda x: L.Softmax()(x), (3, 7)),
    "merges": (lambda x: L.Average()([L.Subtract()([x, x]), L.Multiply()([x, x]), L.Add()([x, x])]), (4, 4, 3)),
    "concatenate": (lambda x: L.Concatenate()([x, L.Conv2D(2, 1)(x)]), (4, 4, 3)),
    "pools_same": (lambda x: L.AveragePooling2D(3, strides=2, padding="same")(L.MaxPooling2D(3, strides=2, padding="same")(x)), (10, 10, 3)),
    "pools_valid_1d": (lambda x: L.MaxPooling1D(2)(L.AveragePooling1D(3, strides=1)(x)), (10, 3)),
    "global_pools": (lambda x: L.Concatenate()([L.GlobalAveragePooling2D()(x), L.Flatten()(L.GlobalMaxPooling2D(keepdims=True)(x))]), (5, 5, 3)),
    "flatten_reshape_permute": (lambda x: L.Permute((2, 1))(L.Reshape((-1, 6))(L.Flatten()(x))), (4, 4, 3)),
    "zero_padding": (lambda x: L.ZeroPadding2D(((1, 0), (2, 1)))(x), (4, 4, 3)),
    "dropouts": (lambda x: L.SpatialDropout2D(0.2)(L.Dropout(0.3)(x)), (4, 4, 3)),
    "rescaling_normalization": (lambda x: L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0])(L.Rescaling(1 / 255, offset=-1)(x)), (4, 4, 3)),
    "identity": (lambda x: L.Identity()(x), (4, 3)),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_lowering_matches_keras_shapes(case: str) -> None:
    fn, shape = LAYER_CASES[case]
    model, x = functional(fn, shape)
    ours, theirs = lowered_shapes(model, x)
    assert ours == theirs


def test_embedding_and_sequential() -> None:
    # named: Keras numbers unnamed layers per session, so another test's Embedding would shift the name
    model = keras.Sequential([keras.Input((6,), dtype="int32"), L.Embedding(20, 8, name="embedding"), L.Dense(4)])
    ours, theirs = lowered_shapes(model, arr(2, 6, dtype="int32"))
    assert ours == theirs
    graph = ai.compile(model, arr(2, 6, dtype="int32"))
    assert next(p for name, p in graph.params.items() if name.endswith("embedding/embeddings")).axes == "VO"


def test_sequential_without_input_is_built_from_the_example() -> None:
    model = keras.Sequential([L.Dense(16, activation="relu"), L.Dropout(0.1), L.Dense(3)])
    graph = ai.compile(model, arr(1, 8))
    assert [n.op for n in graph.nodes] == [Op.LINEAR, Op.RELU, Op.DROPOUT, Op.LINEAR]
    space = ai.search_space(graph)
    assert len(space.groups) == 16
    kernel = next(p for p in graph.params.values() if p.source.endswith("kernel") and p.shape == (8, 16))
    assert kernel.axes == "IO" and kernel.trainable


def test_same_padding_is_explicit_with_the_extra_pad_at_the_end() -> None:
    model, x = functional(lambda x: L.Conv2D(4, 3, strides=2, padding="same")(x), (8, 8, 3))
    conv = next(n for n in ai.compile(model, x).nodes if n.op is Op.CONV)
    assert conv.attrs.padding == ((0, 1), (0, 1)) and conv.attrs.channels_last


def _conv_bn_relu_conv():  # noqa: ANN202
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(4, 3, name="conv2")(x)
    return keras.Model(inp, x)


def test_conv_bn_relu_conv_groups_are_the_hidden_channels() -> None:
    graph = ai.compile(_conv_bn_relu_conv(), arr(1, 8, 8, 3))
    assert graph.params["conv1/kernel"].axes == "HWIO"
    assert graph.params["bn1/moving_mean"].trainable is False
    space = ai.search_space(graph)
    assert len(space.groups) == 8
    params = {s.param for s in space.groups[0].slices}
    assert params == {"conv1/kernel", "conv1/bias", "bn1/gamma", "bn1/beta", "bn1/moving_mean", "bn1/moving_variance", "conv2/kernel"}
    conv2 = next(s for s in space.groups[0].slices if s.param == "conv2/kernel")
    assert conv2.axis == 2  # HWIO: the input axis


def test_residual_add_ties_both_branches() -> None:
    inp = keras.Input((8, 8, 3))
    stem = L.Conv2D(6, 1, name="stem")(inp)
    branch = L.Conv2D(6, 3, padding="same", name="branch")(L.Conv2D(5, 1, name="mid")(stem))
    out = L.Conv2D(2, 1, name="head")(L.Add()([stem, branch]))
    space = ai.search_space(ai.compile(keras.Model(inp, out), arr(1, 8, 8, 3)))
    assert len(space.groups) == 5 + 6
    tied = [g for g in space.groups if any(s.param == "stem/kernel" for s in g.slices)]
    assert len(tied) == 6 and all(any(s.param == "branch/kernel" for s in g.slices) for g in tied)


def test_depthwise_and_separable_channels_are_groups() -> None:
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 1, name="expand")(inp)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.SeparableConv2D(5, 3, padding="same", name="sep")(x)
    graph = ai.compile(keras.Model(inp, L.Conv2D(2, 1, name="head")(x)), arr(1, 8, 8, 3))
    assert graph.params["dw/kernel"].axes == "HWOI"
    conv_dw = next(n for n in graph.nodes if n.source == "dw")
    assert conv_dw.attrs.groups == 6
    space = ai.search_space(graph)
    assert len(space.groups) == 6 + 5  # expand/dw/sep-depthwise channels, sep pointwise outputs


def test_multi_head_attention_heads_are_groups() -> None:
    inp = keras.Input((6, 16))
    y = L.MultiHeadAttention(4, 8, name="mha")(inp, inp)
    graph = ai.compile(keras.Model(inp, L.Add()([inp, y])), arr(1, 6, 16))
    assert Op.ATTENTION in {n.op for n in graph.nodes}
    assert graph.params["mha/query/kernel"].shape == (16, 32)
    space = ai.search_space(graph)
    assert len(space.groups) == 4
    assert {s.param for s in space.groups[0].slices} == {
        f"mha/{role}/{kind}" for role in ("query", "key", "value") for kind in ("kernel", "bias")
    } | {"mha/attention_output/kernel"}


def test_unsupported_layers_are_listed_together() -> None:
    inp = keras.Input((8, 8, 3))
    x = L.UpSampling2D()(inp)
    x = L.Conv2D(4, 1)(x)
    x = L.UpSampling2D(name="up2")(x)
    x = L.UnitNormalization(name="unit")(x)
    model = keras.Model(inp, x)
    with pytest.raises(UnsupportedOpError) as info:
        ai.compile(model, arr(1, 8, 8, 3))
    text = str(info.value)
    assert "UpSampling2D" in text and "'up2'" in text and "UnitNormalization" in text and "'unit'" in text
    graph = ai.compile(model, arr(1, 8, 8, 3), on_unsupported="opaque")
    assert sum(n.op is Op.OPAQUE for n in graph.nodes) == 3


def test_lambda_and_subclassed_models_are_refused_clearly() -> None:
    model, x = functional(lambda x: L.Lambda(lambda t: t * 2, name="double")(x), (4,))
    with pytest.raises(FrontendError, match="Lambda"):
        ai.compile(model, x)

    class Sub(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = L.Dense(3)

        def call(self, x):  # noqa: ANN001, ANN201
            return self.dense(x)

    sub = Sub()
    sub(arr(1, 4))
    with pytest.raises(FrontendError, match="Functional"):
        ai.compile(sub, arr(1, 4))


def test_import_asgnas_ir_does_not_import_keras() -> None:
    code = "import sys, asgnas_ir; print('keras' in sys.modules or 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_check_keras_model_prune() -> None:
    report = ai.check(_conv_bn_relu_conv(), arr(2, 8, 8, 3))
    assert report.ok, report
    assert report.frontend == "keras" and report.target == "keras"


def test_dot_keras_file_through_the_cli(tmp_path, capsys) -> None:  # noqa: ANN001
    """`asgnas compile model.keras -o out.json` and `asgnas check model.keras --json` (in-process: a
    subprocess would spend seconds importing TensorFlow)."""
    from asgnas_ir.cli import main

    path = tmp_path / "model.keras"
    _conv_bn_relu_conv().save(path)
    out = tmp_path / "out.json"
    assert main(["compile", str(path), "-o", str(out)]) == 0
    graph = ai.load(out)
    assert graph.meta.frontend == "keras" and len(ai.search_space(graph).groups) == 8
    capsys.readouterr()
    assert main(["check", str(path), "--input", "1,8,8,3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]


APPS = [("ResNet50", 64), ("MobileNetV2", 64), ("DenseNet121", 64), ("EfficientNetB0", 64), ("ConvNeXtTiny", 64)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), APPS)
def test_keras_applications_compile_and_check(name: str, size: int) -> None:
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    x = arr(1, size, size, 3)
    graph = ai.compile(model, x)
    ours = graph.values[graph.outputs[0]].shape
    assert ours == (1, *model.outputs[0].shape[1:])
    assert ai.search_space(graph).groups
    report = ai.check(model, x)
    assert report.ok, report
