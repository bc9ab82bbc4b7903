"""The `log` op (issue 17, for T5's relative position buckets): the ONNX Log converter against
onnxruntime, torch.log / Tensor.log through fx against eager torch, the code each codegen target
writes, the channels it pins (log(0) is -inf), and the integer pieces around it in T5's bucket
computation (comparisons, Abs, Min, a float truncated to an integer, Where of integers), where
log(0) occurs in the branch the model discards."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.errors import FrontendError  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402
from asgnas_ir.testing import load_generated  # noqa: E402

N = helper.make_node
RNG = np.random.default_rng(0)


def _model(nodes: list, inputs: list, inits: list) -> onnx.ModelProto:
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _log_model() -> onnx.ModelProto:
    """y = Log(|x W1| + 0.5) W2: Abs keeps Log's argument positive."""
    inits = [
        numpy_helper.from_array(RNG.standard_normal((6, 5)).astype(np.float32), "w1"),
        numpy_helper.from_array(RNG.standard_normal((5, 3)).astype(np.float32), "w2"),
    ]
    nodes = [
        N("Constant", [], ["half"], value=numpy_helper.from_array(np.asarray(0.5, np.float32))),
        N("MatMul", ["x", "w1"], ["h"]), N("Abs", ["h"], ["a"]), N("Add", ["a", "half"], ["p"]),
        N("Log", ["p"], ["l"]), N("MatMul", ["l", "w2"], ["y"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])], inits)


@pytest.mark.parametrize("target", ["onnx", "torch"])
def test_onnx_log_matches_onnxruntime(target: str, tmp_path: Path) -> None:
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    report = ai.check(_log_model(), [x], target=target, out_dir=tmp_path)
    assert report.ok, report
    graph = ai.compile(_log_model(), [x])
    assert Op.LOG in {n.op for n in graph.nodes}
    if target == "torch":
        assert "torch.log(" in (tmp_path / "model.py").read_text()


def _buckets_model(table: np.ndarray) -> onnx.ModelProto:
    """T5's bidirectional relative position buckets as torch.onnx.export writes them (8 buckets,
    max distance 16), read from a run-time integer input `r` of relative positions, then looked up
    in a bias table. At r = 0 the Log is -inf and its cast to int64 is undefined: Where drops it."""
    scalars = {"zero": (0, np.int64), "four": (4, np.int64), "two": (2, np.int64), "two_f": (2.0, np.float32),
               "log_ratio": (math.log(16 / 2), np.float32), "three": (3, np.int64)}
    inits = [numpy_helper.from_array(np.asarray(v, t), k) for k, (v, t) in scalars.items()]
    inits.append(numpy_helper.from_array(table, "table"))
    nodes = [
        N("Greater", ["r", "zero"], ["gt"]), N("Cast", ["gt"], ["gt_i"], to=TensorProto.INT64),
        N("Mul", ["gt_i", "four"], ["side"]),
        N("Abs", ["r"], ["dist"]), N("Less", ["dist", "two"], ["small"]),
        N("Cast", ["dist"], ["dist_f"], to=TensorProto.FLOAT), N("Div", ["dist_f", "two_f"], ["ratio"]),
        N("Log", ["ratio"], ["log"]), N("Div", ["log", "log_ratio"], ["scaled"]), N("Mul", ["scaled", "two_f"], ["steps"]),
        N("Cast", ["steps"], ["steps_i"], to=TensorProto.INT64), N("Add", ["steps_i", "two"], ["large"]),
        N("Min", ["large", "three"], ["capped"]), N("Where", ["small", "dist", "capped"], ["within"]),
        N("Add", ["side", "within"], ["bucket"]), N("Gather", ["table", "bucket"], ["y"], axis=0),
    ]
    return _model(nodes, [helper.make_tensor_value_info("r", TensorProto.INT64, [5, 5])], inits)


def _t5_buckets(r: np.ndarray) -> np.ndarray:
    """The same buckets as transformers' T5Attention._relative_position_bucket computes them."""
    rel = torch.from_numpy(r)
    side = (rel > 0).to(torch.long) * 4
    dist = rel.abs()
    with np.errstate(divide="ignore"):
        large = 2 + (torch.log(dist.float() / 2) / math.log(16 / 2) * 2).to(torch.long)
    large = torch.min(large, torch.full_like(large, 3))
    return (side + torch.where(dist < 2, dist, large)).numpy()


def test_t5_bucket_pattern_with_log_of_zero_is_exact(tmp_path: Path) -> None:
    """Every bucket right (each table row is a distinct one-hot), with r = 0 on the diagonal."""
    r = (np.arange(5)[None, :] - np.arange(5)[:, None]) * 3  # relative positions -12 .. 12, zeros included
    table = np.eye(8, dtype=np.float32)
    graph = ai.compile(_buckets_model(table), [r])
    assert Op.LOG in {n.op for n in graph.nodes} and Op.OPAQUE not in {n.op for n in graph.nodes}
    ai.codegen(graph, target="torch", out_dir=tmp_path)
    with torch.no_grad():
        out = load_generated(tmp_path)(torch.from_numpy(r)).numpy()
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out.argmax(-1), _t5_buckets(r))
    report = ai.check(_buckets_model(table), [r], target="torch")
    assert report.ok, report


def test_comparison_of_floats_is_refused_by_name() -> None:
    nodes = [N("Greater", ["x", "zero"], ["gt"]), N("Cast", ["gt"], ["y"], to=TensorProto.FLOAT)]
    proto = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [numpy_helper.from_array(np.asarray(0.0, np.float32), "zero")])
    with pytest.raises(FrontendError, match=r"Greater.*integers and bools only"):
        ai.compile(proto, [RNG.standard_normal((2, 3)).astype(np.float32)])


class _LogNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 5), nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.log(torch.sigmoid(self.fc1(x)))  # log's input channels: pinned
        return self.fc3(torch.relu(self.fc2(h)).add(1.0).log())  # fc2's: pinned too (relu + 1 carries them)


def test_fx_log_matches_eager_and_pins_its_input_channels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _LogNet().eval()
    x = torch.randn(3, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = ai.compile(model, x, frontend="fx")
        report = ai.check(model, x, frontend="fx", fraction=0.0, out_dir=tmp_path)
    assert report.ok, report
    assert [n.op for n in graph.nodes].count(Op.LOG) == 2
    assert (tmp_path / "model.py").read_text().count("torch.log(") == 2
    # log(0) = -inf, and a zeroed consumer column times -inf is NaN, not zero: nothing is removable
    space = ai.search_space(graph, mode="prune")
    sliced = {graph.params[s.param].source for group in space.groups for s in group.slices}
    assert not {"fc1.weight", "fc2.weight"} & sliced


@pytest.mark.slow  # TensorFlow's import
def test_keras_codegen_writes_keras_log(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    report = ai.check(_log_model(), [x], target="keras", out_dir=tmp_path)
    assert report.ok, report
    assert "keras.ops.log(" in "".join(p.read_text() for p in tmp_path.glob("*.py"))
