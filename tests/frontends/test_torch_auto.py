"""frontend="auto" for torch (fx, then the export path) and the ONNX-path fixes real timm models need.

`lower_torch_auto` is called directly: it is what `lower()` runs for a torch module with
frontend="auto". The ONNX-path cases reproduce, in a few lines each, the patterns that stopped timm
models there: BEiT/EVA's qkv bias concatenated from params and a zero buffer, ResMLP's `addcmul`,
NF-ResNet's weight standardisation, LeViT's transposed bias table lookup and uneven `split`,
`nn.Upsample` / `F.interpolate` (Resize) and `F.normalize` / `Tensor.norm` (ReduceL2).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch.nn.functional as F  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.errors import FrontendError, SpecError, UnsupportedOp, UnsupportedOpError  # noqa: E402
from asgnas_ir.frontends import torch_auto  # noqa: E402
from asgnas_ir.frontends.torch_auto import lower_torch_auto  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402


def _ok(report: ai.CheckReport) -> None:
    assert report.ok, report.reason
    assert report.max_abs_diff <= report.tolerance


# ---- models ----------------------------------------------------------------------------------------
class SignBranch(torch.nn.Module):
    """Data-dependent control flow: fx cannot trace `if x.sum() > 0`; the export takes the branch
    the example input takes."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        if h.sum() > 0:
            h = h * 2.0
        return self.b(h)


class SignBranchTopK(SignBranch):
    """Untraceable by fx, and its export holds TopK, which the ONNX frontend has no converter for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = super().forward(x).flatten(1)
        return torch.topk(h, 3, dim=1).values


class Plain(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(5, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.a(x))


class ConcatBias(torch.nn.Module):
    """BEiT / EVA attention's qkv: the bias is `cat(q_bias, k_bias, v_bias)` of two params around a
    zero buffer (BEiT) or `zeros_like(v_bias)` (EVA); the export folds the concatenation."""

    def __init__(self, dim: int = 8, buffer: bool = True) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = torch.nn.Parameter(torch.randn(dim) * 0.1)
        self.v_bias = torch.nn.Parameter(torch.randn(dim) * 0.1)
        self.buffer = buffer
        if buffer:
            self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.out = torch.nn.Linear(3 * dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_bias = self.k_bias if self.buffer else torch.zeros_like(self.v_bias)
        bias = torch.cat((self.q_bias, k_bias, self.v_bias))
        return self.out(torch.relu(F.linear(x, self.qkv.weight, bias)))


class Addcmul(torch.nn.Module):
    """ResMLP's Affine: `addcmul(beta, alpha, x)` exports `alpha * 1`, which the driver folds."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 8)
        self.alpha = torch.nn.Parameter(torch.rand(1, 1, 8) + 0.5)
        self.beta = torch.nn.Parameter(torch.randn(1, 1, 8) * 0.1)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.addcmul(self.beta, self.alpha, torch.relu(self.fc(x))))


class StandardizedConv(torch.nn.Module):
    """NF-ResNet's ScaledStdConv2d: the conv weight is computed from `weight` and `gain` in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(8, 3, 3, 3))
        self.gain = torch.nn.Parameter(torch.rand(8, 1, 1, 1) + 0.5)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(self.weight.reshape(1, 8, -1), None, None, training=True, momentum=0.0, eps=1e-5)
        w = w.reshape_as(self.weight) * self.gain
        return self.head(torch.relu(F.conv2d(x, w, padding=1)))


class TransposedTable(torch.nn.Module):
    """LeViT / TinyViT attention bias: `attention_biases[:, idxs]`, exported as GatherND on the
    table's transpose, and q/k/v taken by an uneven `split` (SplitToSequence in the export)."""

    def __init__(self, heads: int = 2, tokens: int = 4, key: int = 4, value: int = 8) -> None:
        super().__init__()
        self.heads, self.sizes = heads, (key, key, value)
        self.qkv = torch.nn.Linear(6, heads * (2 * key + value))
        self.attention_biases = torch.nn.Parameter(torch.randn(heads, tokens) * 0.1)
        idxs = torch.arange(tokens).view(-1, 1).sub(torch.arange(tokens).view(1, -1)).abs()
        self.register_buffer("idxs", idxs, persistent=False)
        self.proj = torch.nn.Linear(heads * value, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, self.heads, -1).split(list(self.sizes), dim=3)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        attn = (q @ k.transpose(-2, -1)) * 0.5 + self.attention_biases[:, self.idxs]
        y = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(y)


class ClassToken(torch.nn.Module):
    """ViT's class token, broadcast to the batch read off the input: `cls.expand(x.shape[0], -1, -1)`."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.pos = torch.nn.Parameter(torch.randn(1, 5, 8) * 0.1)
        self.mix = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        tokens = tokens + torch.relu(self.mix(tokens)).mean(dim=1, keepdim=True)
        return self.head(tokens[:, 0])


class Upsample(torch.nn.Module):
    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.interpolate(torch.relu(self.a(x)), **self.kwargs))


class Normalize(torch.nn.Module):
    """F.normalize and Tensor.norm both export ReduceL2."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(6, 8)
        self.b = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(F.normalize(h, dim=-1)) + h.norm(dim=-1, keepdim=True)


# ---- auto: which path serves -----------------------------------------------------------------------
@pytest.mark.slow
def test_auto_falls_back_to_the_export_path_when_fx_cannot_trace() -> None:
    torch.manual_seed(0)
    model, x = SignBranch(), torch.randn(1, 3, 6, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = lower_torch_auto(model, (x,), "error")
    # torch.export refuses control flow on the input's values; the TorchScript exporter takes the
    # example's branch (or loop count), and the user is told the graph holds only that one
    fixed = [w for w in caught if "fixes what they were for the example inputs" in str(w.message)]
    assert len(fixed) == 1
    assert graph.meta.frontend == "onnx"
    assert graph.meta.framework == "torch"
    assert graph.meta.fallback_reason is not None and graph.meta.fallback_reason.startswith("torch.fx: ")
    assert "cannot trace" in graph.meta.fallback_reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ok(ai.check(model, x, frontend="onnx"))  # exports again: the same two warnings
    assert any("fixes what they were for the example inputs" in str(w.message) for w in caught)


def test_auto_keeps_fx_when_fx_lowers_the_model() -> None:
    graph = lower_torch_auto(Plain(), (torch.randn(2, 5),), "error")
    assert graph.meta.frontend == "fx"
    assert graph.meta.fallback_reason is None
    assert any(node.op is Op.LINEAR for node in graph.nodes)


# SignBranchTopK branches on a tensor's value: torch.export refuses it and the TorchScript exporter
# records the branch taken, each of which the export path warns about before the ONNX frontend refuses TopK
FALLS_BACK = r"torch\.onnx\.export\(dynamo=True\) failed for SignBranchTopK .*falling back to the TorchScript exporter"
SPECIALISED = r"the TorchScript exporter saw SignBranchTopK read 1 tensor value"


def test_auto_names_both_causes_when_both_paths_refuse() -> None:
    with (
        pytest.warns(UserWarning, match=FALLS_BACK),
        pytest.warns(UserWarning, match=SPECIALISED),
        pytest.raises(UnsupportedOpError) as caught,
    ):
        lower_torch_auto(SignBranchTopK(), (torch.randn(1, 3, 6, 6),), "error")
    message = str(caught.value)
    fx_at, export_at = message.find("torch.fx: "), message.find("then the export path")
    assert 0 <= fx_at < export_at, message
    assert "cannot trace" in message[fx_at:export_at]
    assert "TopK" in message[export_at:]
    assert "on_unsupported='opaque'" in message and "report" in message
    assert [op.op for op in caught.value.ops] == ["TopK"]


def test_auto_opaque_keeps_what_neither_path_lowers() -> None:
    with pytest.warns(UserWarning, match=FALLS_BACK), pytest.warns(UserWarning, match=SPECIALISED):
        graph = lower_torch_auto(SignBranchTopK(), (torch.randn(1, 3, 6, 6),), "opaque")
    assert graph.meta.frontend == "onnx"
    assert "cannot trace" in (graph.meta.fallback_reason or "")
    assert [node.attrs.target for node in graph.nodes if node.op is Op.OPAQUE] == ["onnx::TopK"]


def test_auto_falls_back_when_fx_lacks_a_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    served = []

    def fx_without_linear(model, inputs, on_unsupported):  # noqa: ANN001, ANN202
        raise UnsupportedOpError("torch.fx", [UnsupportedOp("nn.Linear", ("'a'",))])

    def export(model, inputs, on_unsupported):  # noqa: ANN001, ANN202
        served.append(on_unsupported)
        return ai.compile(model, inputs, frontend="fx")  # stands in for the export path's graph

    monkeypatch.setattr(torch_auto, "_lower_fx", fx_without_linear)
    monkeypatch.setattr(torch_auto, "_lower_export", export)
    graph = lower_torch_auto(Plain(), (torch.randn(2, 5),), "error")
    assert served == ["error"]
    assert graph.meta.fallback_reason is not None and "nn.Linear" in graph.meta.fallback_reason


def test_auto_does_not_hide_a_bad_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    def fx_refuses(model, inputs, on_unsupported):  # noqa: ANN001, ANN202
        raise SpecError("example inputs must be tensors")

    def export(model, inputs, on_unsupported):  # noqa: ANN001, ANN202
        raise AssertionError("a SpecError must not send auto down the export path")

    monkeypatch.setattr(torch_auto, "_lower_fx", fx_refuses)
    monkeypatch.setattr(torch_auto, "_lower_export", export)
    with pytest.raises(SpecError, match="example inputs must be tensors"):
        lower_torch_auto(Plain(), (torch.randn(2, 5),), "error")


def test_auto_raises_a_frontend_error_when_neither_path_lacks_only_converters(monkeypatch: pytest.MonkeyPatch) -> None:
    def fx_fails(model, inputs, on_unsupported):  # noqa: ANN001, ANN202
        raise FrontendError("torch.fx cannot trace Plain: TraceError: boom")

    def export_fails(model, inputs, on_unsupported):  # noqa: ANN001, ANN202
        raise FrontendError("torch.onnx.export cannot export Plain: dynamo: bang")

    monkeypatch.setattr(torch_auto, "_lower_fx", fx_fails)
    monkeypatch.setattr(torch_auto, "_lower_export", export_fails)
    with pytest.raises(FrontendError) as caught:
        lower_torch_auto(Plain(), (torch.randn(2, 5),), "opaque")
    assert not isinstance(caught.value, UnsupportedOpError)
    message = str(caught.value)
    assert message.index("boom") < message.index("bang")


# ---- the ONNX path on timm's patterns --------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("buffer", [True, False], ids=["zero-buffer", "zeros_like"])
def test_concatenated_bias_stays_bound_to_its_params(buffer: bool) -> None:
    torch.manual_seed(0)
    model, x = ConcatBias(buffer=buffer), torch.randn(2, 5, 8)
    graph = ai.compile(model, x, frontend="onnx")
    sources = {p.source: p.trainable for p in graph.params.values()}
    assert sources.get("q_bias") is True and sources.get("v_bias") is True
    _ok(ai.check(model, x, frontend="onnx"))


@pytest.mark.slow
def test_addcmul_scale_stays_bound_to_its_param() -> None:
    torch.manual_seed(0)
    model, x = Addcmul(), torch.randn(2, 4, 6)
    graph = ai.compile(model, x, frontend="onnx")
    sources = {p.source: p.trainable for p in graph.params.values()}
    assert sources.get("alpha") is True and sources.get("beta") is True
    _ok(ai.check(model, x, frontend="onnx"))


@pytest.mark.slow
def test_weight_computed_in_forward_is_a_frozen_param() -> None:
    torch.manual_seed(0)
    model, x = StandardizedConv(), torch.randn(1, 3, 6, 6)
    graph = ai.compile(model, x, frontend="onnx")
    conv = next(node for node in graph.nodes if node.op is Op.CONV and graph.params[node.params["weight"]].shape == (8, 3, 3, 3))
    weight = graph.params[conv.params["weight"]]
    assert not weight.trainable  # no tensor of the model holds it: nothing may zero or train it
    assert weight.source not in dict(model.named_parameters())
    _ok(ai.check(model, x, frontend="onnx"))


@pytest.mark.slow
def test_transposed_table_lookup_and_uneven_split() -> None:
    torch.manual_seed(0)
    model, x = TransposedTable(), torch.randn(2, 4, 6)
    graph = ai.compile(model, x, frontend="onnx")
    assert any(node.op is Op.EMBEDDING for node in graph.nodes)
    _ok(ai.check(model, x, frontend="onnx"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "size"),
    [
        ({"scale_factor": 2, "mode": "nearest"}, 5),
        ({"scale_factor": 1.5, "mode": "nearest"}, 6),
        ({"scale_factor": 2, "mode": "bilinear"}, 5),
        ({"size": (9, 7), "mode": "bilinear", "align_corners": True}, 5),
        ({"scale_factor": 2, "mode": "bicubic"}, 4),
        ({"scale_factor": 0.5, "mode": "bilinear"}, 8),
    ],
    ids=["nearest-2", "nearest-1.5", "bilinear", "bilinear-corners-size", "bicubic", "bilinear-down"],
)
def test_interpolate_exports_lower_to_resize(kwargs: dict, size: int) -> None:
    torch.manual_seed(0)
    model, x = Upsample(**kwargs), torch.randn(1, 3, size, size + 1)
    graph = ai.compile(model, x, frontend="onnx")
    assert [node.op for node in graph.nodes].count(Op.RESIZE) == 1
    _ok(ai.check(model, x, frontend="onnx"))


@pytest.mark.slow
def test_norms_lower_through_reduce_l2() -> None:
    torch.manual_seed(0)
    model, x = Normalize(), torch.randn(2, 5, 6)
    graph = ai.compile(model, x, frontend="onnx")
    assert Op.SQRT in {node.op for node in graph.nodes}
    _ok(ai.check(model, x, frontend="onnx"))


@pytest.mark.slow
def test_class_token_export_runs_at_any_batch() -> None:
    """A batch of 1 exported statically would fold the class token's expand into a constant of batch
    1; the export keeps the batch dynamic and the expand stays one, so the generated code runs at
    the example's batch and another."""
    torch.manual_seed(0)
    model, x = ClassToken(), torch.randn(1, 3, 8, 8)
    graph = ai.compile(model, x, frontend="onnx")
    assert Op.EXPAND in {node.op for node in graph.nodes}
    report = ai.check(model, x, frontend="onnx")
    _ok(report)
    assert [shapes[0][0] for shapes in report.shapes_checked] == [1, 2]


@pytest.mark.slow
def test_onnx_file_with_a_dynamic_batch_keeps_its_class_token_expand() -> None:
    """The TorchScript exporter with a dynamic batch writes the expand through Shape, Gather, Concat,
    Equal and Where; the expand it feeds is kept, not folded at the example's batch."""
    import io

    torch.manual_seed(0)
    model, x = ClassToken().eval(), torch.randn(1, 3, 8, 8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, do_constant_folding=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    report = ai.check(proto, x.numpy())
    _ok(report)
    assert [shapes[0][0] for shapes in report.shapes_checked] == [1, 2]


class Recurrent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(6, 8)
        self.rnn = torch.nn.LSTM(8, 8, batch_first=True)
        self.b = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.rnn(self.a(x))[0])


@pytest.mark.slow
def test_lstm_is_refused_by_name_and_kept_opaque_on_request() -> None:
    model, x = Recurrent(), torch.randn(2, 5, 6)
    with pytest.raises(UnsupportedOpError, match=r"LSTM: recurrent layers, which the IR has no op for"):
        ai.compile(model, x, frontend="onnx")
    graph = ai.compile(model, x, frontend="onnx", on_unsupported="opaque")
    assert [node.attrs.target for node in graph.nodes if node.op is Op.OPAQUE] == ["onnx::LSTM"]


# ---- Resize in ONNX's own terms: what F.interpolate does not compute is lowered by matrices --------
def _resize_model(opset: int, **attrs: object) -> onnx.ModelProto:
    """Conv -> Resize (x2 on H and W, or to `sizes`) -> Conv, with the given Resize attributes."""
    rng = np.random.default_rng(0)
    sizes = attrs.pop("sizes", None)
    scales = attrs.pop("scales", [1, 1, 2, 2])
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) / 5, "w1"),
        numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32) / 2, "w2"),
    ]
    # scales and sizes as Constant nodes, as exporters write them (check re-randomizes float initializers)
    if sizes is not None:
        amount = helper.make_node("Constant", [], ["sizes"], value=numpy_helper.from_array(np.asarray(sizes, dtype=np.int64)))
        resize_inputs = ["h", "", "", "sizes"]
    else:
        amount = helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(np.asarray(scales, dtype=np.float32)))
        resize_inputs = ["h", "scales"] if opset < 11 else ["h", "", "scales"]
    nodes = [
        amount,
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["h"]),
        helper.make_node("Resize", resize_inputs, ["r"], **attrs),
        helper.make_node("Conv", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(
    ("opset", "attrs", "ops"),
    [
        # ONNX's defaults (half_pixel, round_prefer_floor) pick other pixels than torch's nearest
        # at a scale of 1.5; at 2 they too repeat each pixel twice
        (20, {"mode": "nearest", "scales": [1, 1, 1.5, 1.5]}, {Op.MATMUL}),
        (20, {"mode": "nearest"}, {Op.EXPAND}),
        (20, {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, {Op.MATMUL}),
        (20, {"mode": "cubic", "exclude_outside": 1, "sizes": [1, 4, 7, 9]}, {Op.MATMUL}),
        (20, {"mode": "linear", "antialias": 1, "sizes": [1, 4, 3, 4]}, {Op.MATMUL}),
        # Resize-10 maps asymmetrically and nearest takes the floor, as torch's nearest does
        (10, {"mode": "nearest", "scales": [1, 1, 1.5, 1.5]}, {Op.RESIZE}),
    ],
    ids=["nearest-half-pixel", "nearest-repeat", "linear-asymmetric", "cubic-exclude-outside", "linear-antialias-down", "opset10-nearest"],
)
def test_resize_lowers_exactly_by_onnx_semantics(opset: int, attrs: dict, ops: set) -> None:
    model = _resize_model(opset, **attrs)
    graph = ai.compile(model, frontend="onnx")
    kinds = {node.op for node in graph.nodes}
    assert ops <= kinds and (Op.RESIZE in ops or Op.RESIZE not in kinds)
    _ok(ai.check(model, np.random.default_rng(1).standard_normal((1, 3, 5, 6)).astype(np.float32)))


def test_resize_refuses_crop_and_resize() -> None:
    model = _resize_model(20, mode="linear", coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(FrontendError, match="tf_crop_and_resize"):
        ai.compile(model, frontend="onnx")
