"""`check`'s re-randomization keeps a deep batch-norm network dependent on its input: after random
weights, every BN's running statistics are calibrated on the example inputs (torch and Keras alike),
so the zeroed reference's outputs still change with the inputs and check is not "degenerate"."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.backends.torch.binding import (
    CALIBRATION_BATCH,
    calibrate_batch_norms_,
    calibration_batch,
    recalibrate_batch_norms_,
    rerandomize_,
)

keras = pytest.importorskip("keras")

from asgnas_ir.backends.tensorflow.binding import calibration_batch as calibration_batch_keras  # noqa: E402
from asgnas_ir.backends.tensorflow.binding import live_variables, recalibrate_batch_norms, rerandomize  # noqa: E402

# ---- replicas ---------------------------------------------------------------------------------


class _SEBlock(nn.Module):
    """conv-BN-SiLU, depthwise conv-BN-SiLU, squeeze-excitation: an EfficientNet block, with the
    residual add of a repeated block when `skip` (a stage's first block has none)."""

    def __init__(self, c: int, skip: bool) -> None:
        super().__init__()
        self.skip = skip
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.act = nn.SiLU()
        self.squeeze = nn.Conv2d(c, 2, 1)
        self.excite = nn.Conv2d(2, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        y = self.act(self.bn2(self.dw(y)))
        gate = torch.sigmoid(self.excite(self.act(self.squeeze(y.mean((2, 3), keepdim=True)))))
        return y * gate + x if self.skip else y * gate


class DeepSENet(nn.Module):
    """12 SE blocks of width 8, every other one residual, and a BatchNorm1d on the [N, 8] pooled
    features before the head."""

    def __init__(self, blocks: int = 12, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.SiLU())
        self.blocks = nn.Sequential(*[_SEBlock(width, skip=i % 2 == 1) for i in range(blocks)])
        self.norm = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.stem(x)).mean((2, 3))))


def deep_se_net() -> DeepSENet:
    torch.manual_seed(0)
    return DeepSENet().eval()


def keras_deep_se_net(blocks: int = 6, width: int = 8) -> object:
    """The Keras counterpart (channels-last), with a Dropout that must stay off during calibration."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.Activation("swish")(keras.layers.BatchNormalization(name="stem_bn")(x))
    for i in range(blocks):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"b{i}_conv")(x)
        x = keras.layers.Activation("swish")(keras.layers.BatchNormalization(name=f"b{i}_bn")(x))
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"b{i}_dw")(x)
        x = keras.layers.Activation("swish")(keras.layers.BatchNormalization(name=f"b{i}_bn2")(x))
        s = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
        s = keras.layers.Conv2D(2, 1, activation="swish", name=f"b{i}_squeeze")(s)
        s = keras.layers.Conv2D(width, 1, activation="sigmoid", name=f"b{i}_excite")(s)
        x = keras.layers.Multiply()([x, s])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(5, name="head")(x)
    return keras.Model(inputs, outputs)


def _relative_variation(a: np.ndarray, b: np.ndarray) -> float:
    """How much the output changed between two inputs, relative to its magnitude."""
    return float(np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max()))


def _torch_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(1, 3, 16, 16, generator=generator), torch.randn(1, 3, 16, 16, generator=generator)


# ---- torch ---------------------------------------------------------------------------------------


def test_torch_random_statistics_alone_lose_the_input() -> None:
    """The replica reproduces the problem: with random BN statistics the output ignores the input."""
    x, other = _torch_inputs()
    live = deep_se_net()
    rerandomize_(live, 0)
    with torch.no_grad():
        # a few ten-thousandths of change for a wholly different input, against > 0.1 once calibrated
        assert _relative_variation(live(x).numpy(), live(other).numpy()) < 1e-3


def test_torch_calibrated_rerandomization_keeps_the_input() -> None:
    x, other = _torch_inputs()
    live = deep_se_net()
    rerandomize_(live, 0, (x,))
    with torch.no_grad():
        assert _relative_variation(live(x).numpy(), live(other).numpy()) > 0.1


def test_torch_calibration_stores_the_batch_moments_the_forward_pass_normalised_with() -> None:
    """Each BN gets the biased moments of its own input on the calibration batch (measured after the
    BNs before it were calibrated), so the eval-mode model computes on that batch what training mode
    computes, and nothing else of the model changes."""
    x, _ = _torch_inputs()
    live = deep_se_net()
    rerandomize_(live, 0)
    trained = copy.deepcopy(live).train()
    calibrate_batch_norms_(live, (x,), seed=3)
    batch = calibration_batch((x,), seed=3)
    assert batch is not None and batch[0].shape == (CALIBRATION_BATCH, 3, 16, 16) and torch.equal(batch[0][:1], x)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: seen.setdefault(name, args[0]))
             for name, m in live.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        out = live(*batch)
    for hook in hooks:
        hook.remove()
    for name, m in live.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            axes = [d for d in range(seen[name].dim()) if d != 1]
            torch.testing.assert_close(m.running_mean, seen[name].mean(axes), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(m.running_var, seen[name].var(axes, unbiased=False), rtol=1e-4, atol=1e-6)
            assert m.num_batches_tracked.item() == 0 and m.momentum == 0.1 and not m.training
    with torch.no_grad():
        torch.testing.assert_close(out, trained(*batch), rtol=1e-4, atol=1e-5)


class _OneSample(nn.Module):
    """Flattens its input into one row: a batch of more than one sample does not fit the BatchNorm1d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn2d = nn.BatchNorm2d(2)
        self.norm = nn.BatchNorm1d(2 * 4 * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.bn2d(self.conv(x)).reshape(1, -1))


def test_torch_calibration_falls_back_to_the_example_and_keeps_what_it_cannot_measure() -> None:
    """A model that refuses the calibration batch is calibrated on the example alone; its BatchNorm1d
    then sees one value per channel and keeps its random statistics (nothing to measure), and the
    failed batched pass leaves no statistics of its own behind."""
    model = _OneSample().eval()
    rerandomize_(model, 0)
    random_norm = (model.norm.running_mean.clone(), model.norm.running_var.clone())
    x = torch.randn(1, 3, 4, 4)
    calibrate_batch_norms_(model, (x,))
    assert torch.equal(model.norm.running_mean, random_norm[0]) and torch.equal(model.norm.running_var, random_norm[1])
    with torch.no_grad():
        h = model.conv(x)
    torch.testing.assert_close(model.bn2d.running_mean, h.mean((0, 2, 3)))
    torch.testing.assert_close(model.bn2d.running_var, h.var((0, 2, 3), unbiased=False))


def test_torch_calibration_batch_needs_a_shared_batch_axis() -> None:
    x = torch.randn(2, 3)
    assert calibration_batch((x, torch.randn(3, 3))) is None
    assert calibration_batch((x, 4)) is None
    batch = calibration_batch((x, torch.tensor([[1, 2]] * 2)), size=3)
    assert batch is not None and batch[0].shape == (6, 3) and torch.equal(batch[1], torch.tensor([[1, 2]] * 6))


def test_torch_calibration_keeps_the_random_variance_of_a_constant_channel() -> None:
    """A channel that is constant on the inputs has no spread: dividing by sqrt(0 + eps) would blow up
    any other input, so its variance stays random (its mean is still measured)."""
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3)).eval()
    rerandomize_(model, 0)
    with torch.no_grad():
        model[0].weight[1].zero_()
    before = model[1].running_var.clone()
    calibrate_batch_norms_(model, (torch.randn(2, 2, 4, 4),))
    assert model[1].running_var[1] == before[1]
    assert model[1].running_var[0] != before[0] and model[1].running_var[2] != before[2]
    torch.testing.assert_close(model[1].running_mean[1], model[0].bias[1])


def test_torch_recalibration_gives_the_zeroed_model_and_its_graph_the_same_statistics() -> None:
    """After zeroing, the BNs are calibrated on the zeroed network and the graph's statistics params
    follow, so the reference and the graph still describe one model."""
    x, _ = _torch_inputs()
    live = deep_se_net()
    rerandomize_(live, 0, (x,))
    graph = ai.compile(live, (x,))
    dict(graph.weights)  # check reads the graph's weights before it zeroes the model
    with torch.no_grad():
        live.blocks[0].conv.weight[:5] = 0
    before = live.blocks[3].bn.running_var.clone()
    assert recalibrate_batch_norms_(live, graph, (x,))
    assert not torch.equal(live.blocks[3].bn.running_var, before)
    tensors = dict(live.named_buffers())
    carried = [(name, p.source) for name, p in graph.params.items() if p.source.endswith(("running_mean", "running_var"))]
    assert len(carried) == 2 * sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in live.modules())
    for name, source in carried:
        np.testing.assert_array_equal(graph.weights[name], tensors[source].numpy())


def test_torch_recalibration_refuses_a_graph_that_does_not_carry_the_statistics() -> None:
    """A graph without params for the BN statistics (folded away) cannot follow a change of them: the
    model's statistics are put back and the call says so, rather than the two drifting apart."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    x = torch.randn(1, 3, 8, 8)
    graph = ai.compile(nn.Sequential(model[0]), (x,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not recalibrate_batch_norms_(model, graph, (x,))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_torch_check_of_a_deep_bn_network_is_not_degenerate(fraction: float) -> None:
    x, _ = _torch_inputs()
    report = ai.check(deep_se_net(), (x,), fraction=fraction)
    assert report.ok and not report.degenerate, report.reason
    assert report.zeroed > 0 or fraction == 0


def test_torch_check_leaves_the_users_model_bit_identical() -> None:
    x, _ = _torch_inputs()
    model = deep_se_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: (m.training, getattr(m, "momentum", None)) for name, m in model.named_modules()}
    ai.check(model, (x,), fraction=0.5)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]) for k in before)
    assert flags == {name: (m.training, getattr(m, "momentum", None)) for name, m in model.named_modules()}


# ---- Keras ---------------------------------------------------------------------------------------


def _keras_inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((1, 16, 16, 3)).astype("float32"), rng.standard_normal((1, 16, 16, 3)).astype("float32")


def _run(model: object, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x, training=False))  # type: ignore[operator]


def test_keras_random_statistics_alone_lose_the_input() -> None:
    x, other = _keras_inputs()
    model = keras_deep_se_net()
    rerandomize(model, 0)
    assert _relative_variation(_run(model, x), _run(model, other)) < 1e-4


def test_keras_calibrated_rerandomization_keeps_the_input() -> None:
    x, other = _keras_inputs()
    model = keras_deep_se_net()
    rerandomize(model, 0, [x])
    assert _relative_variation(_run(model, x), _run(model, other)) > 0.1
    bn = model.get_layer("b3_bn2")
    probe = keras.Model(model.input, bn.input)
    batch = calibration_batch_keras([x], seed=0)
    assert batch is not None and batch[0].shape == (8, 16, 16, 3) and np.array_equal(batch[0][:1], x)
    seen = np.asarray(probe(batch[0], training=False), np.float64)
    np.testing.assert_allclose(np.asarray(bn.moving_mean), seen.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), seen.var((0, 1, 2)), rtol=1e-4, atol=1e-6)


def test_keras_recalibration_gives_the_zeroed_model_and_its_graph_the_same_statistics() -> None:
    x, _ = _keras_inputs()
    model = keras_deep_se_net(blocks=2)
    rerandomize(model, 0, [x])
    graph = ai.compile(model, x)
    dict(graph.weights)
    kernel = model.get_layer("b0_conv").kernel
    kernel.assign(np.concatenate([np.zeros_like(kernel.numpy()[..., :5]), kernel.numpy()[..., 5:]], axis=-1))
    assert recalibrate_batch_norms(model, graph, [x])
    variables = live_variables(model)
    carried = [(name, p.source) for name, p in graph.params.items() if p.source.endswith(("moving_mean", "moving_variance"))]
    assert len(carried) == 2 * sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    for name, source in carried:
        np.testing.assert_array_equal(graph.weights[name], np.asarray(variables[source].numpy()))


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_keras_check_of_a_deep_bn_network_is_not_degenerate(fraction: float) -> None:
    x, _ = _keras_inputs()
    report = ai.check(keras_deep_se_net(), x, fraction=fraction)
    assert report.ok and not report.degenerate, report.reason
    assert report.zeroed > 0 or fraction == 0


def _settings(model: object) -> list[tuple]:
    return [(layer.name, layer.trainable, getattr(layer, "momentum", None), "call" in vars(layer), type(layer).call)
            for layer in model._flatten_layers(include_self=True)]  # type: ignore[attr-defined]


def test_keras_check_leaves_the_users_model_bit_identical() -> None:
    x, _ = _keras_inputs()
    model = keras_deep_se_net()
    before = [np.array(v.numpy(), copy=True) for v in model.variables]
    settings = _settings(model)
    out = _run(model, x)
    ai.check(model, x, fraction=0.5)
    after = [np.array(v.numpy(), copy=True) for v in model.variables]
    assert len(before) == len(after)
    assert all(b.dtype == a.dtype and b.tobytes() == a.tobytes() for b, a in zip(before, after, strict=True))
    assert _settings(model) == settings
    assert np.array_equal(_run(model, x), out)


def test_keras_calibration_on_inputs_the_model_refuses_changes_nothing() -> None:
    """Inputs of the wrong shape: the pass fails, no shadowed `call` is left behind and the statistics
    stay random (check's compile then names the bad input)."""
    model = keras_deep_se_net(blocks=1)
    settings = _settings(model)
    rerandomize(model, 0)
    random = [np.array(v.numpy(), copy=True) for v in model.variables]
    rerandomize(model, 0, [np.zeros((1, 16, 16, 5), "float32")])
    assert _settings(model) == settings
    assert all(np.array_equal(a, np.asarray(v.numpy())) for a, v in zip(random, model.variables, strict=True))


def test_torch_calibration_on_inputs_the_model_refuses_changes_nothing() -> None:
    model = deep_se_net()
    rerandomize_(model, 0)
    random = {k: v.clone() for k, v in model.state_dict().items()}
    rerandomize_(model, 0, (torch.randn(1, 5, 16, 16),))
    assert all(torch.equal(random[k], v) for k, v in model.state_dict().items())
