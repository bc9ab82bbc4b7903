"""codegen-onnx: each emitter on a tiny model, every replica end to end, the checker, names, the CLI.

Equivalence uses the DESIGN §4 rule: max |reference| > 1e-3 and max |diff| <= 1e-4 * max |reference|.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import asgnas_ir as ai
from asgnas_ir.backends.torch.binding import rerandomize_, run_model
from asgnas_ir.ir import Graph, Param, Value, make_node
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op
from asgnas_ir.passes.codegen.onnx_codegen import ONNX_EMITTERS, OPSET, adaptive_window
from asgnas_ir.testing import load_generated, run_onnx
from tests.models import REPLICAS, check_seed, example_inputs

ROOT = Path(__file__).resolve().parents[2]


def assert_close(expected: list[np.ndarray], actual: list[np.ndarray]) -> None:
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        assert e.shape == a.shape, (e.shape, a.shape)
        max_ref = float(np.abs(e).max())
        diff = float(np.abs(e.astype(np.float64) - a).max())
        assert max_ref > 1e-3, "degenerate reference output"
        assert diff <= 1e-4 * max_ref, f"max |diff| {diff:.3g} > 1e-4 * {max_ref:.3g}"


def emit(graph: Graph, folder: Path) -> Path:
    """codegen-onnx into `folder`; the file passes the full ONNX checker."""
    [path] = ai.codegen(graph, target="onnx", out_dir=folder)
    assert path == folder / "model.onnx"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def check_module(model: nn.Module, *inputs: torch.Tensor, folder: Path) -> onnx.ModelProto:
    """compile → codegen-onnx → onnxruntime equals the torch model; returns the ONNX model."""
    if not list(model.children()):  # fx traces submodules as leaves, not a bare layer
        model = nn.Sequential(model)
    model = model.eval()
    rerandomize_(model, 0)
    graph = ai.compile(model, inputs)
    path = emit(graph, folder)
    with torch.no_grad():
        expected = run_model(model, inputs)
    assert_close(expected, run_onnx(path, [x.numpy() for x in inputs]))
    return onnx.load(str(path))


class Lambda(nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def img(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- table and per-op emitters ----------------------------------------------------------------


def test_every_op_has_an_onnx_emitter() -> None:
    """codegen-onnx covers every op kind the IR has (opaque included: it raises a clear error)."""
    assert set(ONNX_EMITTERS) == set(Op)
    assert OPSET >= 18


def test_codegen_onnx_is_a_registered_pass() -> None:
    assert "codegen-onnx" in ai.list_passes()


CONVS = {
    "conv1d": (nn.Conv1d(4, 6, 3, stride=2, padding=1), (1, 4, 17)),
    "conv2d_groups_dilation": (nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2, bias=False), (1, 4, 9, 9)),
    "conv2d_same_even": (nn.Conv2d(3, 5, 4, padding="same"), (1, 3, 8, 8)),
    "conv2d_depthwise": (nn.Conv2d(6, 6, 3, padding=(1, 0), groups=6), (1, 6, 7, 7)),
    "conv3d": (nn.Conv3d(2, 4, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), (1, 2, 3, 8, 8)),
    "conv_reflect": (nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), (1, 3, 6, 6)),
    "conv_replicate": (nn.Conv2d(3, 4, 3, padding=2, padding_mode="replicate"), (1, 3, 6, 6)),
    "conv_circular": (nn.Conv1d(3, 4, 3, padding=1, padding_mode="circular"), (1, 3, 10)),
    "conv_transpose2d": (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), (1, 4, 5, 5)),
    "conv_transpose_groups": (nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, dilation=2, bias=False), (1, 4, 5, 5)),
    "conv_transpose1d": (nn.ConvTranspose1d(3, 2, 4, stride=3, padding=1, output_padding=2), (1, 3, 7)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv_emitters(name: str, tmp_path: Path) -> None:
    layer, shape = CONVS[name]
    check_module(layer, img(*shape), folder=tmp_path)


def test_linear_is_gemm_for_matrices_and_matmul_add_for_sequences(tmp_path: Path) -> None:
    proto = check_module(nn.Linear(5, 3), img(2, 5), folder=tmp_path / "a")
    assert [n.op_type for n in proto.graph.node] == ["Gemm"]
    proto = check_module(nn.Linear(5, 3), img(2, 4, 5), folder=tmp_path / "b")
    assert [n.op_type for n in proto.graph.node] == ["Transpose", "MatMul", "Add"]
    check_module(nn.Linear(5, 3, bias=False), img(2, 4, 5), folder=tmp_path / "c")


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
    "sqrt": lambda x: torch.sqrt(x * x + 1.0),
    "dropout": lambda x: F.dropout(x, 0.5, False) * 2.0,
    "scalar_ops": lambda x: (1.0 - x) / 2.0 + 3.0 * x - 0.5,
    "reverse_div": lambda x: 2.0 / (x * x + 1.0),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_elementwise_emitters(name: str, tmp_path: Path) -> None:
    check_module(Lambda(UNARY[name]), 3 * img(2, 3, 4, 5), folder=tmp_path)


def test_data_movement_emitters(tmp_path: Path) -> None:
    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a, b = torch.chunk(x, 2, dim=1)
            c = torch.cat([b, a, a * b], dim=1)
            d = c[:, 1:5:2] - c[:, :2]
            e = d.reshape(d.shape[0], 2, -1).permute(0, 2, 1)
            f = torch.flatten(e, 1)
            g = torch.flatten(c, 2)
            h, _ = torch.split(g, [3, 3], dim=1)
            return f, h + x.mean(dim=(1, 2, 3), keepdim=True).flatten(2)

    check_module(Net(), img(2, 4, 3, 3), folder=tmp_path)


PADS = {
    "constant": lambda x: F.pad(x, (1, 2, 0, 1), value=0.5),
    "reflect": lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"),
    "replicate": lambda x: F.pad(x, (2, 1, 1, 0), mode="replicate"),
    "circular": lambda x: F.pad(x, (1, 2, 2, 1), mode="circular"),
}


@pytest.mark.parametrize("mode", sorted(PADS))
def test_pad_emitter(mode: str, tmp_path: Path) -> None:
    check_module(Lambda(PADS[mode]), img(1, 3, 5, 6), folder=tmp_path)


POOLS = {
    "max": lambda x: F.max_pool2d(x, 3, 2, 1),
    "max_ceil": lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True),
    "max_ceil_window_in_padding": lambda x: F.max_pool2d(x, 3, 5, 1, ceil_mode=True),  # torch drops that window
    "avg_ceil_window_in_padding": lambda x: F.avg_pool2d(x, 3, 5, 1, ceil_mode=True),
    "avg_ceil_pad_include": lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
    "avg_ceil_overhang": lambda x: F.avg_pool2d(x, 2, 2, ceil_mode=True),
    "max_dilation": lambda x: F.max_pool2d(x, 2, 1, dilation=2),
    "max1d": lambda x: F.max_pool1d(x.flatten(2), 4, 3),
    "avg": lambda x: F.avg_pool2d(x, 2),
    "avg_pad": lambda x: F.avg_pool2d(x, 3, 2, 1),
    "avg_pad_exclude": lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    "avg_ceil": lambda x: F.avg_pool2d(x, 2, 2, ceil_mode=True),
    "avg_ceil_pad": lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    "avg3d": lambda x: F.avg_pool3d(x.unsqueeze(2), (1, 2, 2)),
    "adaptive_avg_global": lambda x: F.adaptive_avg_pool2d(x, 1),
    "adaptive_max_global": nn.AdaptiveMaxPool2d((1, 1)),
    "adaptive_avg_divisible": lambda x: F.adaptive_avg_pool2d(x, (3, 1)),
    "adaptive_max_divisible": nn.Sequential(nn.Flatten(2), nn.AdaptiveMaxPool1d(9)),
    "adaptive_avg_identity": lambda x: F.adaptive_avg_pool2d(x, (9, 9)),
    "mean_sum_softmax": lambda x: torch.softmax(x.mean(dim=(2, 3)), dim=1) + x.sum(dim=3).sum(dim=2, keepdim=True)[..., 0],
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pool_and_reduce_emitters(name: str, tmp_path: Path) -> None:
    pool = POOLS[name]
    check_module(pool if isinstance(pool, nn.Module) else Lambda(pool), img(1, 3, 9, 9), folder=tmp_path)


def test_adaptive_pool_with_irregular_windows_is_refused_naming_the_node(tmp_path: Path) -> None:
    graph = ai.compile(Lambda(lambda x: F.adaptive_avg_pool2d(x, (3, 3))).eval(), (img(1, 2, 5, 5),))
    with pytest.raises(ai.CodegenError, match=r"node 'adaptive_avg_pool2d'.*\(5, 5\) to \(3, 3\)"):
        ai.codegen(graph, target="onnx", out_dir=tmp_path)


@pytest.mark.parametrize(
    ("n_in", "n_out", "window"), [(8, 1, (8, 1)), (8, 4, (2, 2)), (9, 3, (3, 3)), (5, 5, (1, 1)), (5, 3, None), (2, 4, None)]
)
def test_adaptive_window_matches_torch_definition(n_in: int, n_out: int, window: tuple[int, int] | None) -> None:
    assert adaptive_window(n_in, n_out) == window


def test_constant_params_are_initializers(tmp_path: Path) -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.rand(4, 1, 1) + 0.5)
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * self.gamma + x

    proto = check_module(Scale(), img(1, 4, 3, 3), folder=tmp_path)
    assert {i.name for i in proto.graph.initializer} == {"gamma", "conv.weight", "conv.bias"}


def test_opaque_node_is_refused_naming_the_node(tmp_path: Path) -> None:
    graph = ai.compile(Lambda(lambda x: torch.logcumsumexp(x, dim=1)).eval(), (img(1, 4),), on_unsupported="opaque")
    with pytest.raises(ai.CodegenError, match=r"node 'logcumsumexp'.*opaque"):
        ai.codegen(graph, target="onnx", out_dir=tmp_path)


def test_channels_last_convolution_is_refused(tmp_path: Path) -> None:
    graph = hand_graph(
        {"x": Value(shape=(1, 5, 5, 2), channel_axis=3), "y": Value(shape=(1, 5, 5, 3), channel_axis=3)},
        {"w": Param(shape=(1, 1, 2, 3), source="conv/kernel", axes="HWIO")},
        [make_node(Op.CONV, "conv", ["x"], ["y"], params={"weight": "w"}, source="conv",
                   attrs=A.ConvAttrs(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), channels_last=True))],
        inputs=["x"], outputs=["y"],
    )
    with pytest.raises(ai.CodegenError, match="node 'conv'.*channels-last"):
        ai.codegen(graph, target="onnx", out_dir=tmp_path)


# ---- the transformer ops on hand-built graphs ---------------------------------------------------


def hand_graph(values: dict, params: dict, nodes: list, *, inputs: list[str], outputs: list[str], seed: int = 0) -> Graph:
    graph = Graph(name="hand", inputs=inputs, outputs=outputs, values=values, params=params, nodes=nodes)
    rng = np.random.default_rng(seed)
    graph.set_weights({name: rng.standard_normal(p.shape).astype(np.float32) for name, p in params.items()})
    return graph


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", [None, "float", "bool"])
def test_attention_is_decomposed_and_matches_numpy(causal: bool, mask: str | None, tmp_path: Path) -> None:
    B, H, Tq, Tk, D, Dv = 2, 3, 5, 5 if causal else 7, 4, 6  # noqa: N806
    values = {
        "q": Value(shape=(B, H, Tq, D)), "k": Value(shape=(B, H, Tk, D)), "v": Value(shape=(B, H, Tk, Dv)),
        "out": Value(shape=(B, H, Tq, Dv)),
    }
    inputs = ["q", "k", "v"]
    if mask is not None:
        values["mask"] = Value(shape=(1, 1, Tq, Tk), dtype="float32" if mask == "float" else "bool")
        inputs.append("mask")
    node = make_node(Op.ATTENTION, "attn", inputs, ["out"], attrs=A.AttentionAttrs(scale=0.3, causal=causal), source="blocks.0.attn")
    graph = hand_graph(values, {}, [node], inputs=inputs, outputs=["out"])
    path = emit(graph, tmp_path)
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal(values[n].shape).astype(np.float32) for n in "qkv")
    scores = q @ np.swapaxes(k, -1, -2) * 0.3
    feeds = [q, k, v]
    if mask == "float":
        m = rng.standard_normal((1, 1, Tq, Tk)).astype(np.float32)
        scores, feeds = scores + m, [*feeds, m]
    elif mask == "bool":
        m = rng.random((1, 1, Tq, Tk)) > 0.3
        m[..., 0] = True
        scores, feeds = np.where(m, scores, -np.inf), [*feeds, m]
    if causal:
        scores = scores + np.triu(np.full((Tq, Tk), -np.inf), k=1)
    assert_close([softmax(scores) @ v], run_onnx(path, feeds))
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    assert {"MatMul", "Transpose", "Mul", "Softmax"} <= set(ops)
    assert ("attn/causal_mask" in {i.name for i in proto.graph.initializer}) is causal


def test_attention_causal_matches_torch_sdpa(tmp_path: Path) -> None:
    values = {n: Value(shape=(1, 2, 6, 4)) for n in ("q", "k", "v", "out")}
    node = make_node(Op.ATTENTION, "attn", ["q", "k", "v"], ["out"], attrs=A.AttentionAttrs(scale=0.5, causal=True))
    path = emit(hand_graph(values, {}, [node], inputs=["q", "k", "v"], outputs=["out"]), tmp_path)
    q, k, v = (img(1, 2, 6, 4, seed=s) for s in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5).numpy()
    assert_close([expected], run_onnx(path, [q.numpy(), k.numpy(), v.numpy()]))


def test_embedding_matmul_expand_on_a_hand_built_graph(tmp_path: Path) -> None:
    """ids -> embedding -> matmul with its own transpose -> + expanded bias row; checked with numpy."""
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
    path = emit(graph, tmp_path)
    ids = np.random.default_rng(2).integers(0, 11, size=(2, 5)).astype(np.int64)
    table, row = graph.weights["tok.weight"], graph.weights["row"]
    emb = table[ids]
    assert_close([emb @ np.swapaxes(emb, 1, 2) + row], run_onnx(path, [ids]))
    proto = onnx.load(str(path))
    assert [n.op_type for n in proto.graph.node] == ["Gather", "Transpose", "MatMul", "Expand", "Add"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_constant_output_and_repeated_output_get_identity_nodes(tmp_path: Path) -> None:
    values = {"x": Value(shape=(2, 3)), "c": Value(shape=(2, 3)), "y": Value(shape=(2, 3))}
    params = {"c": Param(shape=(2, 3), source="c")}
    nodes = [
        make_node(Op.CONSTANT, "c", [], ["c"], params={"value": "c"}),
        make_node(Op.ADD, "y", ["x", "c"], ["y"]),
    ]
    graph = hand_graph(values, params, nodes, inputs=["x"], outputs=["y", "c", "y"])
    path = emit(graph, tmp_path)
    x = np.ones((2, 3), np.float32)
    c = graph.weights["c"]
    assert_close([x + c, c, x + c], run_onnx(path, [x]))


# ---- names, shapes, file -------------------------------------------------------------------------


def test_initializer_names_are_the_ir_param_names_and_nodes_the_ir_ids(tmp_path: Path) -> None:
    """Weights are findable by their source names; every node and helper is named after an IR node."""
    replica = REPLICAS["resnet_basic"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    path = emit(graph, tmp_path)
    proto = onnx.load(str(path))
    initializers = {i.name for i in proto.graph.initializer}
    used = {name for node in graph.nodes for role, name in node.params.items() if role != "num_batches_tracked"}
    assert used == initializers  # resnet needs no helper constants
    assert "layer1.0.conv1.weight" in initializers and "fc.weight" in initializers
    ids = {node.id for node in graph.nodes}
    assert {n.name for n in proto.graph.node} == ids
    by_name = {n.name: n for n in proto.graph.node}
    assert by_name["layer1_0_conv1"].op_type == "Conv" and "layer1.0.conv1" in by_name["layer1_0_conv1"].doc_string
    for init in proto.graph.initializer:  # the IR's layout, bit for bit
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), graph.weights[init.name])


def test_values_carry_the_ir_shapes_and_dtypes(tmp_path: Path) -> None:
    replica = REPLICAS["convnext"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    proto = onnx.load(str(emit(graph, tmp_path)))
    assert proto.opset_import[0].version == OPSET
    assert [i.name for i in proto.graph.input] == graph.inputs
    assert [o.name for o in proto.graph.output] == graph.outputs
    dims = {
        v.name: tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
        for v in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]
    }
    for name, value in graph.values.items():
        if name in dims:
            assert dims[name] == value.symbolic  # the batch as the dim_param N, other sizes as numbers
    assert dims[graph.outputs[0]] == ("N", 10)
    helpers = {i.name for i in proto.graph.initializer} - set(graph.params)
    assert all(name.split("/")[0] in {n.id for n in graph.nodes} for name in helpers)


def test_generation_is_deterministic(tmp_path: Path) -> None:
    replica = REPLICAS["mobilenet_v3"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    a = emit(graph, tmp_path / "a").read_bytes()
    b = emit(graph, tmp_path / "b").read_bytes()
    assert a == b


# ---- every replica, both modes ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_check_onnx_target_on_every_replica(name: str, mode: str, tmp_path: Path) -> None:
    """Random zero groups → subnet → model.onnx in onnxruntime equals the zeroed torch model."""
    replica = REPLICAS[name]
    seed = check_seed(name, mode)
    report = ai.check(replica.build(), example_inputs(replica), mode=mode, target="onnx", fraction=0.5, seed=seed, out_dir=tmp_path)
    assert report.ok, report
    assert report.target == "onnx" and report.max_ref > 1e-3
    assert report.max_abs_diff <= 1e-4 * report.max_ref
    onnx.checker.check_model(onnx.load(str(tmp_path / "model.onnx")), full_check=True)


@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_onnx_equals_the_generated_torch_code(name: str, tmp_path: Path) -> None:
    """The two backends agree on the same pruned sub-network."""
    replica = REPLICAS[name]
    model = replica.build().eval()
    rerandomize_(model, 1)
    inputs = example_inputs(replica, seed=1)
    graph = ai.compile(model, inputs)
    space = ai.search_space(graph)
    sub = ai.subnet(graph, space, ai.random_zero_groups(graph, space, 0.4, seed=1))
    ai.codegen(sub, target="torch", out_dir=tmp_path / "torch")
    path = emit(sub, tmp_path / "onnx")
    with torch.no_grad():
        expected = run_model(load_generated(tmp_path / "torch"), inputs)
    assert_close(expected, run_onnx(path, [x.numpy() for x in inputs]))


# ---- CLI ---------------------------------------------------------------------------------------


def asgnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asgnas_ir.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_cli_codegen_and_check_with_onnx_target(tmp_path: Path) -> None:
    """`asgnas codegen IR.json --target onnx -o DIR` writes model.onnx; `asgnas check --target onnx` passes."""
    ir = tmp_path / "m.json"
    assert asgnas("compile", "tests/models/mlp.py:mlp", "--input", "1,20", "-o", str(ir)).returncode == 0
    result = asgnas("codegen", str(ir), "--target", "onnx", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "out" / "model.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "out" / "model.onnx")), full_check=True)
    result = asgnas("check", "tests/models/resnet.py:resnet_basic", "--input", "1,3,32,32", "--target", "onnx", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["target"] == "onnx"


def test_run_onnx_takes_numpy_and_returns_a_list(tmp_path: Path) -> None:
    graph = ai.compile(Lambda(lambda x: x * 2.0).eval(), (img(2, 3),))
    path = emit(graph, tmp_path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    [y] = run_onnx(path, x)
    np.testing.assert_allclose(y, x * 2.0)
    assert math.isclose(float(run_onnx(path, [x])[0].sum()), 30.0)


def test_check_refuses_a_target_it_cannot_run() -> None:
    replica = REPLICAS["mlp"]
    with pytest.raises(ai.AsgnasError, match="check target 'tflite'"):
        ai.check(replica.build(), example_inputs(replica), target="tflite")
