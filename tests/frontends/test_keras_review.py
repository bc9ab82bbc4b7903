"""Issue 14 (Keras review): unique variable keys, overridden computing methods, masks, frozen layers,
MultiHeadAttention slices in the variable's own shape, LoRA and SpatialDropout. Replicas in
`tests/models/keras_review.py`."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.tensorflow import H2SPG, live_variables, zero_slices  # noqa: E402
from asgnas_ir.errors import AsgnasError, FrontendError, UnsupportedOpError  # noqa: E402
from asgnas_ir.frontends.keras.variables import variable_table  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402
from asgnas_ir.passes.analysis.dependency_graph import Slice  # noqa: E402
from tests.models import keras_review as R  # noqa: E402

FRACTIONS = (0.0, 0.5)


def _ok(model, x, **kwargs) -> None:  # noqa: ANN001
    for fraction in FRACTIONS:
        report = ai.check(model, x, fraction=fraction, **kwargs)
        assert report.ok, (fraction, report)


def _bound_sources(model, space) -> tuple[set[str], list]:  # noqa: ANN001
    """The distinct sources the space's non-stat slices name, and the variables H2SPG binds for them."""
    sources = {space.param_sources[s.param] for g in space.groups for s in g.slices if s.kind != "stat"}
    return sources, H2SPG(model, space)._binding.variables


# ---- 1. variables that share a Keras path ---------------------------------------------------------------


def test_nested_models_with_one_layer_name_keep_their_own_weights() -> None:
    model, x = R.clashing_nested()
    assert [v.path for v in model.variables].count("proj/kernel") == 2  # the clash the keys must resolve
    graph = ai.compile(model, x)
    assert {"block_a/proj/kernel", "block_b/proj/kernel", "block_a/proj/bias", "block_b/proj/bias"} <= set(graph.params)
    live = live_variables(model)
    for key in ("block_a/proj/kernel", "block_b/proj/kernel"):
        np.testing.assert_array_equal(graph.weights[key], live[key].numpy())
    _ok(model, x)
    _ok(model, x, target="torch")


def test_cloned_and_saved_nested_sequentials_bind_every_variable(tmp_path) -> None:  # noqa: ANN001
    original, x = R.nested_sequentials()
    model, _ = R.cloned_sequentials()
    assert len({v.path for v in model.variables}) < len(model.variables)
    keys = [e.key for e in variable_table(model)]
    assert keys == [e.key for e in variable_table(original)] and len(set(keys)) == len(keys) == 8
    graph = ai.compile(model, x)
    assert len(graph.params) == 8
    space = ai.search_space(graph, mode="prune")
    sources, bound = _bound_sources(model, space)
    assert len({id(v) for v in bound}) == len(bound) == len(sources) == 6  # d1 kernel/bias + d2 kernel, twice
    _ok(model, x)

    path = tmp_path / "nested.keras"
    original.save(path)
    loaded = ai.compile(str(path), x)
    assert sorted(loaded.params) == sorted(graph.params)
    _ok(str(path), x)


def test_h2spg_trains_a_model_whose_variables_share_paths() -> None:
    """fit + finalize on the cloned model: gradients are matched to the bound variables by identity, so
    the chosen groups end exactly zero in their own variables and the others do not."""
    model, x = R.cloned_sequentials()
    space = ai.search_space(ai.compile(model, x), mode="prune")
    opt = H2SPG(model, space, lr=0.05, epsilon=0.5, target_group_sparsity=0.5, warmup_steps=2, shrink_period=2)
    model.compile(optimizer=opt, loss="mse")
    xs = np.random.default_rng(1).standard_normal((64, 4)).astype("float32")
    model.fit(xs, xs[:, :3], batch_size=8, epochs=1, shuffle=False, verbose=0)
    chosen = opt.finalize()
    assert chosen and chosen == sorted(opt.redundant_groups)
    live = live_variables(model)
    for gid, group in enumerate(space.groups):
        rows = [s for s in group.slices if s.kind == "out" and s.param.endswith("kernel")]
        values = [np.take(live[space.param_sources[s.param]].numpy(), s.indices, axis=s.axis) for s in rows]
        assert all(not v.any() for v in values) == (gid in chosen), gid


def test_update_weights_through_unique_keys() -> None:
    """zero_slices on one of two same-path kernels zeroes that one only."""
    model, x = R.clashing_nested()
    graph = ai.compile(model, x)
    zero_slices(model, graph, [Slice("block_b/proj/kernel", 1, [0, 1], "out")])
    live = live_variables(model)
    assert not live["block_b/proj/kernel"].numpy()[:, :2].any()
    assert live["block_a/proj/kernel"].numpy()[:, :2].any()


# ---- 2. subclasses that change what the base computes ------------------------------------------------------


def test_conv_subclass_overriding_convolution_op_is_refused_by_name() -> None:
    model, x = R.ws_conv()
    with pytest.raises(UnsupportedOpError, match=r"WSConv2D .*Conv2D\.convolution_op.*'ws'|'ws'.*convolution_op"):
        ai.compile(model, x)
    graph = ai.compile(model, x, on_unsupported="opaque")
    assert [n.source for n in graph.nodes if n.op is Op.OPAQUE] == ["ws"]


def test_subclass_that_only_configures_is_still_converted() -> None:
    class Tagged(keras.layers.Dense):
        def __init__(self, units: int, tag: str = "", **kwargs) -> None:  # noqa: ANN003
            super().__init__(units, **kwargs)
            self.tag = tag

        def get_config(self) -> dict:
            return {**super().get_config(), "tag": self.tag}

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(Tagged(5, tag="t", activation="relu", name="tagged")(inputs)))
    graph = ai.compile(model, np.ones((1, 4), "float32"))
    assert not [n for n in graph.nodes if n.op is Op.OPAQUE]


# ---- 3. masks -----------------------------------------------------------------------------------------------


def test_implicit_mask_into_attention_is_refused_naming_both_layers() -> None:
    model, x = R.masked_attention()
    with pytest.raises(FrontendError, match=r"(?s)mask.*'mha' \(MultiHeadAttention\).*'emb' \(Embedding mask_zero=True\)"):
        ai.compile(model, x)


def test_masked_pooling_says_masks_are_the_problem() -> None:
    model, x = R.masked_pooling()
    with pytest.raises(FrontendError, match=r"(?s)Keras masks.*'gap'.*'emb'") as info:
        ai.compile(model, x)
    assert "NotEqual" not in str(info.value)


def test_mask_that_nobody_consumes_is_harmless() -> None:
    inputs = keras.Input((6,), dtype="int32")
    e = keras.layers.Embedding(10, 8, mask_zero=True, name="tokens")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(e))
    _ok(model, R._tokens())


# ---- 4. frozen layers ------------------------------------------------------------------------------------------


def test_frozen_batch_norm_params_are_not_trainable() -> None:
    model, x = R.frozen_bn_residual()
    graph = ai.compile(model, x)
    assert not graph.params["bn/gamma"].trainable and not graph.params["bn/beta"].trainable
    assert graph.params["branch_conv/kernel"].trainable


def test_frozen_batch_norm_branch_is_not_offered_for_erasure() -> None:
    """Zeroing branch_conv leaves bn's output beta - gamma·mean/std ≠ 0, and Keras does not train gamma/beta:
    the branch cannot be removed by zeroing what the optimizer may zero."""
    model, x = R.frozen_bn_residual()
    graph = ai.compile(model, x)
    space = ai.search_space(graph, mode="erase")
    bn_node = next(n.id for n in graph.nodes if n.source == "bn")
    assert not [g.id for g in space.groups if bn_node in g.nodes]
    for fraction in FRACTIONS:
        report = ai.check(model, x, mode="erase", fraction=fraction)
        assert report.ok, (fraction, report)


def test_freezing_a_nested_model_freezes_its_params() -> None:
    model, x = R.clashing_nested()
    model.get_layer("block_a").trainable = False
    graph = ai.compile(model, x)
    assert not graph.params["block_a/proj/kernel"].trainable and graph.params["block_b/proj/kernel"].trainable


# ---- 5. MultiHeadAttention: slices in the variable's own shape ------------------------------------------------


def test_attention_head_slices_map_into_the_variable_shape() -> None:
    model, x = R.attention()
    graph = ai.compile(model, x)
    assert graph.params["mha/query/kernel"].shape == (8, 12)
    zero_slices(model, graph, [Slice("mha/query/kernel", 1, list(range(4)), "out"), Slice("mha/attention_output/kernel", 0, list(range(4)), "in")])
    live = live_variables(model)
    query, output = live["mha/query/kernel"].numpy(), live["mha/attention_output/kernel"].numpy()
    assert query.shape == (8, 3, 4) and not query[:, 0].any() and query[:, 1].all() and query[:, 2].all()
    assert output.shape == (3, 4, 8) and not output[0].any() and output[1].all()


def test_attention_binds_in_h2spg_and_checks() -> None:
    model, x = R.attention()
    space = ai.search_space(ai.compile(model, x), mode="prune")
    sources, bound = _bound_sources(model, space)
    assert len(bound) == len(sources)
    _ok(model, x)


# ---- 11. LoRA ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [R.lora_dense, R.lora_conv])
def test_lora_layers_compile_to_the_merged_kernel_and_check(build) -> None:  # noqa: ANN001
    model, x = build()
    graph = ai.compile(model, x)
    layer = next(layer for layer in model.layers if getattr(layer, "lora_enabled", False))
    key = f"{layer.name}/kernel"
    np.testing.assert_allclose(graph.weights[key], keras.ops.convert_to_numpy(layer.kernel), rtol=0, atol=0)
    assert graph.params[key].trainable  # the adapters train even though the base kernel is frozen
    _ok(model, x)
    _ok(model, x, target="torch")


def test_lora_zeroing_is_exact_and_h2spg_refuses_clearly() -> None:
    model, x = R.lora_dense()
    graph = ai.compile(model, x)
    zero_slices(model, graph, [Slice("d1/kernel", 1, [0, 2], "out"), Slice("d2/kernel", 0, [0, 2], "in")])
    d1, d2 = model.get_layer("d1"), model.get_layer("d2")
    assert not keras.ops.convert_to_numpy(d1.kernel)[:, [0, 2]].any()
    assert not keras.ops.convert_to_numpy(d2.kernel)[[0, 2]].any()
    space = ai.search_space(graph, mode="prune")
    with pytest.raises(AsgnasError, match=r"LoRA-merged kernel of layer 'd1'"):
        H2SPG(model, space)


# ---- 12. SpatialDropout --------------------------------------------------------------------------------------------


def test_spatial_dropout_checks_on_both_targets() -> None:
    model, x = R.spatial_dropout()
    _ok(model, x)
    _ok(model, x, target="torch")


def test_dropout_noise_shape_is_honoured_or_refused() -> None:
    inputs = keras.Input((6, 6, 4))
    channelwise = keras.Model(inputs, keras.layers.Dropout(0.5, noise_shape=(None, 1, 1, 4), name="channels")(inputs))
    graph = ai.compile(channelwise, np.ones((1, 6, 6, 4), "float32"))
    assert [n.attrs.channelwise for n in graph.nodes if n.op is Op.DROPOUT] == [True]
    rows = keras.Model(inputs, keras.layers.Dropout(0.5, noise_shape=(None, 6, 1, 1), name="rows")(inputs))
    with pytest.raises(FrontendError, match=r"'rows'.*noise_shape"):
        ai.compile(rows, np.ones((1, 6, 6, 4), "float32"))


@pytest.mark.parametrize("target", ["keras", "torch"])
def test_generated_spatial_dropout_drops_whole_channels_when_training(target: str, tmp_path) -> None:  # noqa: ANN001
    from asgnas_ir.testing import load_generated, load_generated_keras

    model, x = R.spatial_dropout_on_input()
    graph = ai.compile(model, x)
    ai.codegen(graph, target=target, out_dir=tmp_path)
    xs = np.concatenate([x] * 8)  # 8 samples x 4 channels of draws
    if target == "keras":
        reference = np.asarray(load_generated_keras(tmp_path)(xs, training=False))
        dropped = np.asarray(load_generated_keras(tmp_path)(xs, training=True))
    else:
        import torch

        generated = load_generated(tmp_path)
        with torch.no_grad():
            reference = generated(torch.from_numpy(xs)).numpy()
            dropped = generated.train()(torch.from_numpy(xs)).numpy()
    kept = np.abs(dropped) > 0
    per_channel = kept.reshape(8, 36, 4)
    # one draw per (sample, channel): each spatial map is kept whole or dropped whole
    assert (per_channel.all(axis=1) | ~per_channel.any(axis=1)).all()
    assert per_channel.any() and not per_channel.all()
    np.testing.assert_allclose(dropped[kept], 2.0 * reference[kept], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", ["keras", "torch"])
def test_drop_connect_noise_shape_drops_whole_samples_when_training(target: str, tmp_path) -> None:  # noqa: ANN001
    """EfficientNet's `Dropout(rate, noise_shape=(None, 1, 1, 1))` is one draw per sample (drop-connect)."""
    from asgnas_ir.testing import load_generated, load_generated_keras

    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, keras.layers.Dropout(0.5, noise_shape=(None, 1, 1, 1), name="drop_connect")(inputs))
    x = np.random.default_rng(0).uniform(1.0, 2.0, (1, 6, 6, 4)).astype("float32")  # no zeros of its own
    graph = ai.compile(model, x)
    assert [n.attrs.samplewise for n in graph.nodes if n.op is Op.DROPOUT] == [True]
    ai.codegen(graph, target=target, out_dir=tmp_path)
    xs = np.concatenate([x] * 16)
    if target == "keras":
        dropped = np.asarray(load_generated_keras(tmp_path)(xs, training=True))
    else:
        import torch

        with torch.no_grad():
            dropped = load_generated(tmp_path).train()(torch.from_numpy(xs)).numpy()
    kept = (np.abs(dropped) > 0).reshape(16, -1)
    assert (kept.all(axis=1) | ~kept.any(axis=1)).all()  # each sample kept whole or dropped whole
    assert kept.any() and not kept.all()


@pytest.mark.parametrize("name", ["relu", "relu6", "sigmoid", "tanh", "silu", "swish", "gelu", "elu", "softplus",
                                  "mish", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu", "exponential"])
def test_builtin_activations_by_name_and_by_function_lower(name: str) -> None:
    for activation in (name, keras.activations.get(name)):
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(3, activation=activation, name="d")(inputs))
        ai.compile(model, np.ones((1, 4), "float32"))


def test_user_function_named_like_a_builtin_activation_is_refused_by_name() -> None:
    def gelu(x):  # noqa: ANN001, ANN202  (the tanh approximation under the exact gelu's name)
        return keras.activations.gelu(x, approximate=True)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation=gelu, name="d")(inputs))
    with pytest.raises(FrontendError, match=r"'d'.*user's own function"):
        ai.compile(model, np.ones((1, 4), "float32"))
