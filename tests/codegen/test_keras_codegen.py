"""codegen-keras: each emitter on a tiny torch model, every replica against the torch code, layouts, golden file, CLI.

Equivalence uses the DESIGN §4 rule: max |reference| > 1e-3 and max |diff| <= 1e-4 * max |reference|.
keras (and so tensorflow) is imported once, here, for the whole test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

keras = pytest.importorskip("keras")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch.binding import rerandomize_, run_model  # noqa: E402
from asgnas_ir.ir import Graph, Param, Value, make_node  # noqa: E402
from asgnas_ir.ir import attrs as A  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402
from asgnas_ir.passes.codegen.keras_codegen import KERAS_EMITTERS, generate_keras  # noqa: E402
from asgnas_ir.testing import load_generated, load_generated_keras, run_keras  # noqa: E402
from tests.models import REPLICAS, example_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def assert_close(expected: list[np.ndarray], actual: list[np.ndarray]) -> None:
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        assert e.shape == a.shape, (e.shape, a.shape)
        max_ref = float(np.abs(e).max())
        diff = float(np.abs(e.astype(np.float64) - a).max())
        assert max_ref > 1e-3, "degenerate reference output"
        assert diff <= 1e-4 * max_ref, f"max |diff| {diff:.3g} > 1e-4 * {max_ref:.3g}"


class Lambda(nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def img(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def check_module(model: nn.Module, *inputs: torch.Tensor, folder: Path) -> str:
    """compile → codegen-keras → load() equals the torch model on the same (NCHW) inputs; returns model.py."""
    if not list(model.children()):  # fx traces submodules as leaves, not a bare layer
        model = nn.Sequential(model)
    model = model.eval()
    rerandomize_(model, 0)
    graph = ai.compile(model, inputs)
    written = ai.codegen(graph, target="keras", out_dir=folder)
    assert written == [folder / "model.py", folder / "weights.safetensors"]
    with torch.no_grad():
        expected = run_model(model, inputs)
    assert_close(expected, run_keras(folder, list(inputs)))
    return (folder / "model.py").read_text()


# ---- table, pass, import cost ----------------------------------------------------------------------


def test_every_op_has_a_keras_emitter() -> None:
    assert set(KERAS_EMITTERS) == set(Op)


def test_codegen_keras_is_a_registered_pass_and_import_stays_light() -> None:
    assert "codegen-keras" in ai.list_passes()
    code = (
        "import sys, asgnas_ir as ai; from asgnas_ir.passes.codegen import keras_codegen; "
        "print('keras' in sys.modules or 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "False", result.stderr


# ---- per-op emitters against torch --------------------------------------------------------------

CONVS = {
    "conv1d": (nn.Conv1d(4, 6, 3, stride=2, padding=1), (1, 4, 17)),
    "conv2d_groups_dilation": (nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2, bias=False), (1, 4, 9, 9)),
    "conv2d_same_even": (nn.Conv2d(3, 5, 4, padding="same"), (1, 3, 8, 8)),  # asymmetric padding
    "conv2d_depthwise": (nn.Conv2d(6, 6, 3, padding=(1, 0), groups=6), (1, 6, 7, 7)),
    "conv2d_depthwise_multiplier": (nn.Conv2d(3, 6, 3, stride=2, groups=3), (1, 3, 9, 9)),
    "conv1d_depthwise": (nn.Conv1d(4, 4, 5, padding=2, groups=4), (1, 4, 12)),
    "conv3d": (nn.Conv3d(2, 4, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), (1, 2, 3, 8, 8)),
    "conv_reflect": (nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), (1, 3, 6, 6)),
    "conv_replicate": (nn.Conv2d(3, 4, 3, padding=1, padding_mode="replicate"), (1, 3, 6, 6)),
    "conv_transpose2d": (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), (1, 4, 5, 5)),
    "conv_transpose_groups": (nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, bias=False), (1, 4, 5, 5)),
    "conv_transpose1d": (nn.ConvTranspose1d(3, 2, 4, stride=3, padding=1, output_padding=2), (1, 3, 7)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv_emitters(name: str, tmp_path: Path) -> None:
    layer, shape = CONVS[name]
    check_module(layer, img(*shape), folder=tmp_path)


def test_depthwise_conv_is_a_depthwise_layer(tmp_path: Path) -> None:
    text = check_module(nn.Conv2d(6, 6, 3, padding=1, groups=6), img(1, 6, 7, 7), folder=tmp_path)
    assert "layers.DepthwiseConv2D(3" in text and "layers.ZeroPadding2D(padding=1" not in text


def test_linear_on_rank_2_and_3(tmp_path: Path) -> None:
    check_module(nn.Linear(5, 3), img(2, 5), folder=tmp_path / "a")
    text = check_module(nn.Linear(5, 3, bias=False), img(2, 4, 5), folder=tmp_path / "b")
    assert "layers.Dense(3, use_bias=False" in text


NORMS = {
    "batch_norm2d": (nn.BatchNorm2d(4), (2, 4, 5, 5)),
    "batch_norm1d_features": (nn.BatchNorm1d(6), (3, 6)),
    "batch_norm_no_affine": (nn.BatchNorm2d(4, affine=False), (2, 4, 5, 5)),
    "batch_norm_batch_stats": (nn.BatchNorm2d(4, track_running_stats=False), (2, 4, 5, 5)),
    "layer_norm": (nn.LayerNorm(6, eps=1e-6), (2, 3, 6)),
    "layer_norm_2d_shape": (nn.LayerNorm((5, 6)), (2, 3, 5, 6)),
    "layer_norm_no_affine": (nn.LayerNorm(6, elementwise_affine=False), (2, 3, 6)),
    "layer_norm_no_bias": (nn.LayerNorm(6, bias=False), (2, 3, 6)),
    "group_norm": (nn.GroupNorm(2, 6), (2, 6, 4, 4)),
    "group_norm_no_affine": (nn.GroupNorm(3, 6, affine=False), (2, 6, 4, 4)),
    "instance_norm": (nn.InstanceNorm2d(4), (2, 4, 5, 5)),
    "instance_norm_affine": (nn.InstanceNorm1d(4, affine=True), (2, 4, 9)),
    "instance_norm_running_stats": (nn.InstanceNorm2d(4, track_running_stats=True), (2, 4, 5, 5)),
}


@pytest.mark.parametrize("name", sorted(NORMS))
def test_norm_emitters(name: str, tmp_path: Path) -> None:
    layer, shape = NORMS[name]
    check_module(layer, img(*shape), folder=tmp_path)


UNARY = {
    "relu": torch.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
    "relu6": F.relu6,
    "hardtanh": lambda x: F.hardtanh(x, -0.5, 0.7),
    "clamp_min": lambda x: torch.clamp(x, min=-0.3),
    "clamp_max": lambda x: torch.clamp(x, max=0.3),
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "elu": lambda x: F.elu(x, 0.5),
    "softplus": F.softplus,
    "softplus_beta_threshold": lambda x: F.softplus(x, beta=2.0, threshold=1.0),
    "mish": F.mish,
    "neg": lambda x: -x,
    "exp": torch.exp,
    "pow": lambda x: torch.pow(x, 3.0),
    "sqrt": lambda x: torch.sqrt(x * x + 1.0),
    "dropout": lambda x: F.dropout(x, 0.5, False) * 2.0,
    "scalar_ops": lambda x: (1.0 - x) / 2.0 + 3.0 * x - 0.5,
    "reverse_div": lambda x: 2.0 / (x * x + 1.0),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_elementwise_emitters(name: str, tmp_path: Path) -> None:
    check_module(Lambda(UNARY[name]), 3 * img(2, 3, 4, 5), folder=tmp_path)


class ConvThen(nn.Module):
    """A conv first, so the value after it is held channels-last and `fn` sees remapped axes."""

    def __init__(self, fn, channels: int = 4) -> None:  # noqa: ANN001
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.conv(x))


def _data_movement(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.chunk(x, 2, dim=1)
    c = torch.cat([b, a, a * b], dim=1)
    d = c[:, 1:5:2] - c[:, :2]
    e = d.reshape(d.shape[0], 2, -1).permute(0, 2, 1)
    f = torch.flatten(e, 1)
    g = torch.flatten(c, 2)
    h, _ = torch.split(g, [3, 3], dim=1)
    return f, h + x.mean(dim=(1, 2, 3), keepdim=True).flatten(2)


LAYOUT_SENSITIVE = {
    "data_movement": _data_movement,
    "flatten_nchw_order": lambda x: torch.flatten(x, 1),
    "view_channels_spatial": lambda x: x.view(x.shape[0], 2, -1).softmax(dim=2),
    "softmax_channels": lambda x: torch.softmax(x, dim=1),
    "sum_spatial": lambda x: x.sum(dim=(2, 3)),
    "mean_h_keepdim": lambda x: x.mean(dim=2, keepdim=True) * x,
    "permute_nhwc": lambda x: x.permute(0, 2, 3, 1) * 2.0,
    "pad": lambda x: F.pad(x, (1, 2, 0, 1), value=0.5),
    "pad_reflect": lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"),
    "broadcast_row": lambda x: x + x.mean(dim=1),  # [N, H, W] broadcast against [N, C, H, W]
    "expand": lambda x: x[:, :1].expand(1, 4, 5, 5) + x,
}


@pytest.mark.parametrize("name", sorted(LAYOUT_SENSITIVE))
def test_axis_attributes_are_remapped_for_channels_last_values(name: str, tmp_path: Path) -> None:
    check_module(ConvThen(LAYOUT_SENSITIVE[name]), img(1, 3, 5, 5), folder=tmp_path)


POOLS = {
    "max": lambda x: F.max_pool2d(x, 3, 2, 1),
    "max_ceil": lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True),
    "max_ceil_window_in_padding": lambda x: F.max_pool2d(x, 3, 5, 1, ceil_mode=True),
    "avg_ceil_window_in_padding": lambda x: F.avg_pool2d(x, 3, 5, 1, ceil_mode=True),
    "avg_ceil_pad_include": lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
    "avg_ceil_overhang": lambda x: F.avg_pool2d(x, 2, 2, ceil_mode=True),
    "max1d": lambda x: F.max_pool1d(x.flatten(2), 4, 3),
    "avg": lambda x: F.avg_pool2d(x, 2),
    "avg_pad": lambda x: F.avg_pool2d(x, 3, 2, 1),
    "avg_pad_exclude": lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    "avg_ceil_pad": lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    "adaptive_avg_global": lambda x: F.adaptive_avg_pool2d(x, 1),
    "adaptive_max_global": nn.AdaptiveMaxPool2d((1, 1)),
    "adaptive_avg_divisible": lambda x: F.adaptive_avg_pool2d(x, (3, 1)),
    "adaptive_max_divisible": nn.Sequential(nn.Flatten(2), nn.AdaptiveMaxPool1d(9)),
    "mean_sum_softmax": lambda x: torch.softmax(x.mean(dim=(2, 3)), dim=1) + x.sum(dim=3).sum(dim=2, keepdim=True)[..., 0],
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pool_and_reduce_emitters(name: str, tmp_path: Path) -> None:
    pool = POOLS[name]
    check_module(pool if isinstance(pool, nn.Module) else Lambda(pool), img(1, 3, 9, 9), folder=tmp_path)


def test_adaptive_pool_with_irregular_windows_is_refused_naming_the_node(tmp_path: Path) -> None:
    graph = ai.compile(Lambda(lambda x: F.adaptive_avg_pool2d(x, (3, 3))).eval(), (img(1, 2, 5, 5),))
    with pytest.raises(ai.CodegenError, match=r"node 'adaptive_avg_pool2d'.*\(5, 5\) to \(3, 3\)"):
        ai.codegen(graph, target="keras", out_dir=tmp_path)


def test_opaque_node_is_refused_naming_the_node(tmp_path: Path) -> None:
    graph = ai.compile(Lambda(lambda x: torch.logcumsumexp(x, dim=1)).eval(), (img(1, 4),), on_unsupported="opaque")
    with pytest.raises(ai.CodegenError, match=r"node 'logcumsumexp'.*opaque"):
        ai.codegen(graph, target="keras", out_dir=tmp_path)


def test_constants_are_weights_and_broadcast_in_the_held_layout(tmp_path: Path) -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.rand(4, 1, 1) + 0.5)
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * self.gamma + x

    text = check_module(Scale(), img(1, 4, 3, 3), folder=tmp_path)
    assert "class Constant(layers.Layer)" in text


# ---- the transformer ops and a channels-last (Keras-layout) graph on hand-built graphs -----------


def hand_graph(values: dict, params: dict, nodes: list, *, inputs: list[str], outputs: list[str], seed: int = 0) -> Graph:
    graph = Graph(name="hand", inputs=inputs, outputs=outputs, values=values, params=params, nodes=nodes)
    rng = np.random.default_rng(seed)
    graph.set_weights({name: rng.standard_normal(p.shape).astype(np.float32) for name, p in params.items()})
    return graph


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", [None, "float", "bool"])
def test_attention_matches_torch_sdpa(causal: bool, mask: str | None, tmp_path: Path) -> None:
    values = {n: Value(shape=(1, 2, 6, 4)) for n in ("q", "k", "v", "out")}
    inputs = ["q", "k", "v"]
    if mask is not None:
        values["mask"] = Value(shape=(1, 1, 6, 6), dtype="bool" if mask == "bool" else "float32")
        inputs.append("mask")
    node = make_node(Op.ATTENTION, "attn", inputs, ["out"], attrs=A.AttentionAttrs(scale=0.5, causal=causal))
    ai.codegen(hand_graph(values, {}, [node], inputs=inputs, outputs=["out"]), target="keras", out_dir=tmp_path)
    q, k, v = (img(1, 2, 6, 4, seed=s) for s in range(3))
    args = [q, k, v]
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(3)) > 0.3
        attn_mask[..., 0] = True  # every row attends somewhere
    elif mask == "float":
        attn_mask = img(1, 1, 6, 6, seed=4)
    if attn_mask is not None:
        args.append(attn_mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=_with_causal(attn_mask, causal), is_causal=causal and attn_mask is None, scale=0.5).numpy()
    assert_close([expected], run_keras(tmp_path, [a.numpy() for a in args]))


def _with_causal(mask: torch.Tensor | None, causal: bool) -> torch.Tensor | None:
    """The mask torch's sdpa would apply for (mask, is_causal): torch >= 2.14 refuses both at once."""
    if mask is None or not causal:
        return mask
    allowed = torch.ones(mask.shape[-2:], dtype=torch.bool).tril()
    return mask & allowed if mask.dtype == torch.bool else mask.masked_fill(~allowed, float("-inf"))


def test_embedding_matmul_expand_on_a_hand_built_graph(tmp_path: Path) -> None:
    values = {
        "ids": Value(shape=(2, 5), dtype="int64"),
        "emb": Value(shape=(2, 5, 8), channel_axis=2),
        "emb_t": Value(shape=(2, 8, 5), channel_axis=1),
        "gram": Value(shape=(2, 5, 5)),
        "row": Value(shape=(1, 1, 5)),
        "row_x": Value(shape=(2, 5, 5)),
        "out": Value(shape=(2, 5, 5)),
    }
    params = {
        "tok.weight": Param(shape=(11, 8), source="tok.weight", axes="VO"),
        "row": Param(shape=(1, 1, 5), source="row"),
    }
    nodes = [
        make_node(Op.EMBEDDING, "tok", ["ids"], ["emb"], params={"weight": "tok.weight"},
                  attrs=A.EmbeddingAttrs(num_embeddings=11, dim=8), source="tok"),
        make_node(Op.PERMUTE, "emb_t", ["emb"], ["emb_t"], attrs=A.PermuteAttrs(perm=(0, 2, 1))),
        make_node(Op.MATMUL, "gram", ["emb", "emb_t"], ["gram"]),
        make_node(Op.CONSTANT, "row", [], ["row"], params={"value": "row"}, source="row"),
        make_node(Op.EXPAND, "row_x", ["row"], ["row_x"], attrs=A.ExpandAttrs(shape=(2, 5, 5))),
        make_node(Op.ADD, "out", ["gram", "row_x"], ["out"]),
    ]
    graph = hand_graph(values, params, nodes, inputs=["ids"], outputs=["out"])
    ai.codegen(graph, target="keras", out_dir=tmp_path)
    ids = np.random.default_rng(2).integers(0, 11, size=(2, 5)).astype(np.int64)
    emb = graph.weights["tok.weight"][ids]
    assert_close([emb @ np.swapaxes(emb, 1, 2) + graph.weights["row"]], run_keras(tmp_path, [ids]))


def test_channels_last_graph_maps_directly(tmp_path: Path) -> None:
    """A Keras-layout graph (NHWC values, HWIO kernel) needs no transposes; the kernel is used as stored."""
    graph = hand_graph(
        {"x": Value(shape=(1, 5, 5, 2), channel_axis=3), "y": Value(shape=(1, 5, 5, 3), channel_axis=3),
         "z": Value(shape=(1, 2, 2, 3), channel_axis=3)},
        {"w": Param(shape=(3, 3, 2, 3), source="conv/kernel", axes="HWIO")},
        [make_node(Op.CONV, "conv", ["x"], ["y"], params={"weight": "w"}, source="conv",
                   attrs=A.ConvAttrs(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), channels_last=True)),
         make_node(Op.MAX_POOL, "pool", ["y"], ["z"], source="pool",
                   attrs=A.PoolAttrs(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), channels_last=True))],
        inputs=["x"], outputs=["z"],
    )
    graph.meta = graph.meta.model_copy(update={"layout": "channels_last"})
    ai.codegen(graph, target="keras", out_dir=tmp_path)
    text = (tmp_path / "model.py").read_text()
    assert "keras.ops.transpose" not in text and "Layout: inputs and outputs are channels-last" in text
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 2)).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    w = torch.from_numpy(graph.weights["w"]).permute(3, 2, 0, 1)
    expected = F.max_pool2d(F.conv2d(xt, w, padding=1), 2).permute(0, 2, 3, 1).numpy()
    assert_close([expected], run_keras(tmp_path, [x]))


# ---- every replica, both modes, against the torch-generated sub-network --------------------------

FAST = {"resnet_basic", "mlp", "gpt_block"}


def _compare_with_torch_code(name: str, mode: str, tmp_path: Path) -> None:
    replica = REPLICAS[name]
    model = replica.build().eval()
    rerandomize_(model, 1)
    inputs = example_inputs(replica, seed=1)
    graph = ai.compile(model, inputs)
    space = ai.search_space(graph, mode=mode)
    sub = ai.subnet(graph, space, ai.random_zero_groups(graph, space, 0.5, seed=1))
    ai.codegen(sub, target="torch", out_dir=tmp_path / "torch")
    ai.codegen(sub, target="keras", out_dir=tmp_path / "keras")
    with torch.no_grad():
        expected = run_model(load_generated(tmp_path / "torch"), inputs)
    assert_close(expected, run_keras(tmp_path / "keras", [x.numpy() for x in inputs]))


@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("name", sorted(FAST))
def test_keras_equals_the_generated_torch_code(name: str, mode: str, tmp_path: Path) -> None:
    _compare_with_torch_code(name, mode, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("name", sorted(set(REPLICAS) - FAST))
def test_keras_equals_the_generated_torch_code_on_every_replica(name: str, mode: str, tmp_path: Path) -> None:
    _compare_with_torch_code(name, mode, tmp_path)


def test_check_with_keras_target(tmp_path: Path) -> None:
    replica = REPLICAS["resnet_basic"]
    report = ai.check(replica.build(), example_inputs(replica), target="keras", out_dir=tmp_path)
    assert report.ok and report.target == "keras", report
    model = load_generated_keras(tmp_path)
    assert isinstance(model, keras.Model)
    assert {layer.name for layer in model.layers} >= {"conv1", "layer1_0_conv1", "fc"}


# ---- golden file, determinism, CLI ---------------------------------------------------------------


def _pruned_source(name: str) -> str:
    replica = REPLICAS[name]
    graph = ai.compile(replica.build(), example_inputs(replica))
    space = ai.search_space(graph)
    sub = ai.subnet(graph, space, ai.random_zero_groups(graph, space, 0.5, seed=0))
    return generate_keras(sub).files["model.py"]


def test_generated_keras_source_matches_golden(update_golden: bool) -> None:
    text = _pruned_source("resnet_basic")
    path = GOLDEN / "resnet_basic.keras.py"
    if update_golden or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), "generated keras code for resnet_basic changed; review and rerun with --update-golden"


def test_generation_is_deterministic() -> None:
    assert _pruned_source("mobilenet_v3") == _pruned_source("mobilenet_v3")


def test_golden_file_passes_ruff() -> None:
    path = GOLDEN / "resnet_basic.keras.py"
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E,F,W,I", "--line-length", "120", str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["convnext", "gpt_block", "densenet"])
def test_generated_code_passes_ruff(name: str, tmp_path: Path) -> None:
    path = tmp_path / "model.py"
    path.write_text(_pruned_source(name))
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E,F,W,I", "--line-length", "120", str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def asgnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asgnas_ir.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_cli_codegen_and_check_with_keras_target(tmp_path: Path) -> None:
    ir = tmp_path / "m.json"
    assert asgnas("compile", "tests/models/mlp.py:mlp", "--input", "1,20", "-o", str(ir)).returncode == 0
    result = asgnas("codegen", str(ir), "--target", "keras", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "out" / "model.py"), str(tmp_path / "out" / "weights.safetensors")]
    result = asgnas("check", "tests/models/resnet.py:resnet_basic", "--input", "1,3,32,32", "--target", "keras", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["target"] == "keras"
