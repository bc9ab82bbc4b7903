"""ONNX frontend: per-op converters on hand-built graphs, unsupported-op reporting, and the fx/onnx
equivalence of the search spaces found for every model replica."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.errors import UnsupportedOpError  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402

RNG = np.random.default_rng(0)
IMG = [1, 4, 6, 6]


def init(name: str, *shape: int, dtype=np.float32) -> onnx.TensorProto:  # noqa: ANN001
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(dtype), name)


def const(name: str, value) -> onnx.TensorProto:  # noqa: ANN001
    return numpy_helper.from_array(np.asarray(value), name)


def model(nodes: list, inits: list, in_shape=IMG, out: str = "y", opset: int = 18, in_type=TensorProto.FLOAT, extra_inputs=()):  # noqa: ANN001, ANN201
    """A graph reading `x` through a 1x1 conv stem ("h", 4 channels) into `nodes`, output `out`."""
    inputs = [helper.make_tensor_value_info("x", in_type, in_shape), *extra_inputs]
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def stem(nodes: list, inits: list, **kw) -> onnx.ModelProto:  # noqa: ANN003
    """conv stem (4 -> 4 channels, 1x1) then `nodes` reading "h"."""
    return model([helper.make_node("Conv", ["x", "stem.w", "stem.b"], ["h"], name="stem"), *nodes],
                 [init("stem.w", 4, 4, 1, 1), init("stem.b", 4), *inits], **kw)


N = helper.make_node
CASES: dict[str, onnx.ModelProto] = {
    "conv_grouped_pads": stem([N("Conv", ["h", "w"], ["y"], group=2, pads=[1, 0, 2, 1], strides=[2, 1])], [init("w", 6, 2, 3, 3)]),
    "conv_depthwise_same": stem([N("Conv", ["h", "w", "b"], ["y"], group=4, auto_pad="SAME_UPPER", strides=[2, 2])],
                                [init("w", 4, 1, 3, 3), init("b", 4)]),
    "conv1d": model([N("Conv", ["x", "w"], ["y"], pads=[1, 1])], [init("w", 5, 3, 3)], in_shape=[1, 3, 8]),
    "conv3d": model([N("Conv", ["x", "w"], ["y"], strides=[1, 2, 2])], [init("w", 5, 2, 1, 3, 3)], in_shape=[1, 2, 3, 6, 6]),
    "conv_transpose": stem([N("ConvTranspose", ["h", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])],
                           [init("w", 4, 3, 3, 3), init("b", 3)]),
    "gemm": model([N("Gemm", ["x", "w", "b"], ["y"], transB=1)], [init("w", 5, 10), init("b", 5)], in_shape=[2, 10]),
    "gemm_no_trans": model([N("Gemm", ["x", "w", "b"], ["y"])], [init("w", 10, 5), init("b", 1, 5)], in_shape=[2, 10]),
    "matmul_add": model([N("MatMul", ["x", "w"], ["m"]), N("Add", ["m", "b"], ["y"])], [init("w", 10, 5), init("b", 5)], in_shape=[2, 3, 10]),
    "matmul_act": model([N("Transpose", ["x"], ["t"], perm=[0, 2, 1]), N("MatMul", ["x", "t"], ["y"])], [], in_shape=[2, 3, 4]),
    "bn_relu": stem([N("BatchNormalization", ["h", "s", "bb", "m", "v"], ["n"]), N("Relu", ["n"], ["y"])],
                    [init("s", 4), init("bb", 4), init("m", 4), numpy_helper.from_array(np.ones(4, np.float32), "v")]),
    "layer_norm": model([N("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)], [init("s", 10), init("b", 10)], in_shape=[2, 3, 10]),
    "instance_norm": stem([N("InstanceNormalization", ["h", "s", "b"], ["y"])], [init("s", 4), init("b", 4)]),
    "group_norm": stem([N("GroupNormalization", ["h", "s", "b"], ["y"], num_groups=2)], [init("s", 4), init("b", 4)], opset=21),
    "activations": stem([
        N("LeakyRelu", ["h"], ["a"], alpha=0.2), N("Clip", ["a", "lo", "hi"], ["c"]), N("Elu", ["c"], ["e"]),
        N("HardSwish", ["e"], ["f"]), N("HardSigmoid", ["f"], ["g"], alpha=1 / 6), N("Softplus", ["g"], ["i"]),
        N("Mish", ["i"], ["j"]), N("Tanh", ["j"], ["k"]), N("Gelu", ["k"], ["l"], approximate="tanh"), N("Sigmoid", ["l"], ["m"]),
        N("Neg", ["m"], ["n"]), N("Exp", ["n"], ["o"]), N("Sqrt", ["o"], ["p"]), N("Identity", ["p"], ["q"]),
        N("Dropout", ["q"], ["y"]),
    ], [const("lo", np.float32(-1.0)), const("hi", np.float32(2.0))], opset=20),
    "erf_gelu": stem([
        N("Div", ["h", "sqrt2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["e", "one"], ["a"]),
        N("Mul", ["h", "a"], ["m"]), N("Mul", ["m", "half"], ["y"]),
    ], [const("sqrt2", np.float32(np.sqrt(2))), const("one", np.float32(1)), const("half", np.float32(0.5))]),
    "silu": stem([N("Sigmoid", ["h"], ["s"]), N("Mul", ["h", "s"], ["y"])], []),
    "pow": stem([N("Pow", ["h", "three"], ["y"])], [const("three", np.float32(3.0))]),
    "softmax_nan_guard": model([
        N("Softmax", ["x"], ["s"], axis=-1), N("IsNaN", ["s"], ["nan"]), N("Where", ["nan", "zero", "s"], ["y"]),
    ], [const("zero", np.float32(0.0))], in_shape=[2, 3, 10]),
    "binary_consts": stem([
        N("Mul", ["h", "scale"], ["a"]), N("Sub", ["two", "a"], ["b"]), N("Div", ["b", "three"], ["c"]), N("Add", ["c", "c"], ["y"]),
    ], [init("scale", 4, 1, 1), const("two", np.float32(2)), const("three", np.float32(3))]),
    "concat_split_slice": stem([
        N("Concat", ["h", "h"], ["c"], axis=1), N("Split", ["c", "sizes"], ["s0", "s1"], axis=1),
        N("Slice", ["s1", "st", "en", "ax"], ["sl"]), N("Add", ["s0", "s0"], ["a"]), N("Concat", ["a", "sl"], ["y"], axis=1),
    ], [const("sizes", np.array([3, 5])), const("st", np.array([1])), const("en", np.array([4])), const("ax", np.array([1]))]),
    "split_attr_opset11": stem([N("Split", ["h"], ["a", "b"], axis=1, split=[1, 3]), N("Concat", ["b", "a"], ["y"], axis=1)], [], opset=11),
    "reshape_transpose_flatten": stem([
        N("Transpose", ["h"], ["t"], perm=[0, 2, 3, 1]), N("Reshape", ["t", "shp"], ["r"]), N("Flatten", ["r"], ["y"], axis=1),
    ], [const("shp", np.array([0, -1, 4]))]),
    "squeeze_unsqueeze_13": stem([
        N("ReduceMean", ["h"], ["m"], axes=[2, 3], keepdims=1), N("Squeeze", ["m", "ax"], ["s"]), N("Unsqueeze", ["s", "ax0"], ["y"]),
    ], [const("ax", np.array([2, 3])), const("ax0", np.array([0]))], opset=13),
    "squeeze_unsqueeze_11": stem([
        N("ReduceSum", ["h"], ["m"], axes=[2, 3], keepdims=1), N("Squeeze", ["m"], ["s"], axes=[2, 3]), N("Unsqueeze", ["s"], ["y"], axes=[0]),
    ], [], opset=11),
    "reduce_mean_18": stem([N("ReduceMean", ["h", "ax"], ["y"], keepdims=0)], [const("ax", np.array([-1, -2]))], opset=18),
    "pad_pool": stem([
        N("Pad", ["h", "pads"], ["p"], mode="reflect"), N("MaxPool", ["p"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        N("AveragePool", ["m"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
    ], [const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1]))]),
    "global_pools_softmax": stem([
        N("GlobalAveragePool", ["h"], ["a"]), N("GlobalMaxPool", ["h"], ["b"]), N("Add", ["a", "b"], ["c"]),
        N("Flatten", ["c"], ["f"]), N("Softmax", ["f"], ["y"], axis=-1),
    ], []),
    "shape_folding": stem([
        N("Shape", ["h"], ["s"]), N("Gather", ["s", "zero"], ["n"], axis=0), N("Unsqueeze", ["n", "zero1"], ["n1"]),
        N("Concat", ["n1", "minus1"], ["shp"], axis=0), N("Cast", ["shp"], ["shp2"], to=TensorProto.INT64),
        N("Reshape", ["h", "shp2"], ["y"]),
    ], [const("zero", np.array(0)), const("zero1", np.array([0])), const("minus1", np.array([-1]))]),
    "constant_of_shape_expand": stem([
        N("ConstantOfShape", ["shp"], ["ones"], value=numpy_helper.from_array(np.ones(1, np.float32))),
        N("Mul", ["h", "ones"], ["y"]),
    ], [const("shp", np.array([1, 4, 6, 6]))]),
    "gather_index": stem([N("Gather", ["h", "i"], ["g"], axis=2), N("Relu", ["g"], ["y"])], [const("i", np.array(1))]),
    "expand": model([N("Expand", ["x", "shp"], ["y"])], [const("shp", np.array([2, 3, 4]))], in_shape=[1, 3, 1]),
}


def _ort_shapes(m: onnx.ModelProto, inputs: list[np.ndarray]) -> list[tuple[int, ...]]:
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return [tuple(o.shape) for o in session.run(None, dict(zip(names, inputs, strict=True)))]


@pytest.mark.parametrize("name", sorted(CASES))
def test_converter_shapes_match_onnxruntime(name: str) -> None:
    m = CASES[name]
    graph = ai.compile(m)
    assert graph.meta.frontend == "onnx" and graph.meta.framework == "onnx"
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    expected = _ort_shapes(m, [np.random.default_rng(1).standard_normal(shape).astype(np.float32)])
    assert [graph.values[o].shape for o in graph.outputs] == expected
    for name_, param in graph.params.items():
        assert param.source, name_
        assert graph.weights[name_].shape == param.shape


def test_patterns_lower_to_one_op() -> None:
    ops = [n.op for n in ai.compile(CASES["erf_gelu"]).nodes]
    assert ops == [Op.CONV, Op.GELU]
    assert [n.op for n in ai.compile(CASES["silu"]).nodes] == [Op.CONV, Op.SILU]
    linear = ai.compile(CASES["matmul_add"])
    assert [n.op for n in linear.nodes] == [Op.LINEAR]
    assert linear.params["w"].axes == "IO" and linear.params["b"].source == "b"
    assert [n.op for n in ai.compile(CASES["matmul_act"]).nodes] == [Op.PERMUTE, Op.MATMUL]
    assert [n.op for n in ai.compile(CASES["softmax_nan_guard"]).nodes] == [Op.SOFTMAX]
    assert [n.op for n in ai.compile(CASES["pow"]).nodes] == [Op.CONV, Op.POW]
    norm = ai.compile(CASES["instance_norm"])
    assert norm.nodes[1].params == {"weight": "s", "bias": "b"}


def test_embedding_lookup() -> None:
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])
    graph = helper.make_graph(
        [N("Gather", ["table", "ids"], ["e"]), N("Gather", ["table", "pos"], ["p"]), N("Add", ["e", "p"], ["y"])], "g", [ids],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[init("table", 7, 3), const("pos", np.arange(5))],
    )
    ir = ai.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert [n.op for n in ir.nodes].count(Op.EMBEDDING) == 2  # the position lookup is not folded away
    assert ir.params["table"].axes == "VO"
    assert ir.values[ir.outputs[0]].shape == (2, 5, 3)


@pytest.mark.parametrize("name", ["conv_grouped_pads", "bn_relu", "erf_gelu", "concat_split_slice", "matmul_add", "global_pools_softmax"])
def test_check_raw_onnx(name: str, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "m.onnx"
    onnx.save(CASES[name], str(path))
    for mode in ("prune", "erase"):
        report = ai.check(str(path), None, mode=mode)
        assert report.ok, report
        assert report.frontend == "onnx" and report.target == "onnx"


def test_unsupported_ops_are_all_listed() -> None:
    m = stem([N("Tan", ["h"], ["a"], name="tan_1"), N("Atan", ["a"], ["b"], name="atan_1"), N("Tan", ["b"], ["y"], name="tan_2")], [])
    with pytest.raises(UnsupportedOpError) as info:
        ai.compile(m)
    text = str(info.value)
    assert "Tan (2x)" in text and "'tan_1'" in text and "'tan_2'" in text and "Atan (1x)" in text and "'atan_1'" in text
    graph = ai.compile(m, on_unsupported="opaque")
    assert [n.op for n in graph.nodes].count(Op.OPAQUE) == 3
    assert graph.values[graph.outputs[0]].shape == tuple(IMG)


def test_detect_and_input_override(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "m.onnx"
    onnx.save(CASES["bn_relu"], str(path))
    from asgnas_ir.frontends import detect

    assert detect(str(path)) == "onnx" and detect(path) == "onnx" and detect(CASES["bn_relu"]) == "onnx"
    graph = ai.compile(path, [np.zeros((3, 4, 5, 5), np.float32)])
    assert graph.values[graph.outputs[0]].shape == (3, 4, 5, 5)


# ---- through torch: the fx-independent path ---------------------------------------------------

torch = pytest.importorskip("torch")
from tests.models import REPLICAS, check_seed, example_inputs  # noqa: E402


@functools.cache
def _graphs(name: str) -> tuple[ai.Graph, ai.Graph]:
    replica = REPLICAS[name]
    model, inputs = replica.build(), example_inputs(replica)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ai.compile(model, inputs, frontend="fx"), ai.compile(model, inputs, frontend="onnx")


def canonical(graph: ai.Graph, mode: str) -> set[frozenset]:
    """Each group as the set of (param source, axis, indices) it zeroes: comparable across frontends."""
    space = ai.search_space(graph, mode=mode)
    return {
        frozenset((graph.params[s.param].source, s.axis, tuple(int(i) for i in s.indices)) for s in group.slices)
        for group in space.groups
    }


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_fx_and_onnx_find_the_same_groups(name: str, mode: str) -> None:
    fx_graph, onnx_graph = _graphs(name)
    assert onnx_graph.meta.framework == "torch" and onnx_graph.meta.frontend == "onnx"
    model = REPLICAS[name].build()
    # every path that reaches a tensor: a tied LM head's weight is found under `lm_head.weight` too
    torch_paths = set(dict(model.named_parameters(remove_duplicate=False))) | set(dict(model.named_buffers(remove_duplicate=False)))
    assert {p.source for p in onnx_graph.params.values() if p.trainable} <= torch_paths
    assert canonical(fx_graph, mode) == canonical(onnx_graph, mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_check_through_onnx_export(name: str, mode: str) -> None:
    replica = REPLICAS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ai.check(replica.build(), example_inputs(replica), mode=mode, frontend="onnx", seed=check_seed(name, mode))
    assert report.ok, report


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_onnx_file_exported_from_every_replica_passes_check(name: str, tmp_path) -> None:  # noqa: ANN001
    """The acceptance case: a plain .onnx file (no torch model behind it) goes through check with
    onnxruntime on both sides, and finds as many groups as fx does on the torch model."""
    replica = REPLICAS[name]
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(replica.build(), example_inputs(replica), str(path), dynamo=True, optimize=False)
    report = ai.check(str(path), None)
    assert report.ok, report
    assert report.frontend == report.target == "onnx"
    fx_graph = ai.compile(replica.build(), example_inputs(replica))
    assert report.groups == len(ai.search_space(fx_graph).groups)


@pytest.mark.slow
def test_cli_check_onnx_file(tmp_path) -> None:  # noqa: ANN001
    replica = REPLICAS["resnet_basic"]
    path = tmp_path / "resnet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(replica.build(), example_inputs(replica), str(path), dynamo=True, optimize=False)
    result = subprocess.run([sys.executable, "-m", "asgnas_ir.cli", "check", str(path), "--json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["frontend"] == "onnx" and report["target"] == "onnx"
    out = tmp_path / "ir.json"
    result = subprocess.run([sys.executable, "-m", "asgnas_ir.cli", "compile", str(path), "-o", str(out)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert ai.load(out).meta.frontend == "onnx"


def test_exporter_fallback_warns(monkeypatch) -> None:  # noqa: ANN001
    from asgnas_ir.frontends.onnx import export

    real = torch.onnx.export

    def fake(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if kwargs.get("dynamo"):
            raise RuntimeError("dynamo says no")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", fake)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).eval()
    with pytest.warns(UserWarning, match="falling back to the TorchScript exporter"):
        proto = export.export_torch(net, (torch.randn(1, 3, 8, 8),))
    graph = ai.compile(net, torch.randn(1, 3, 8, 8), frontend="fx")
    assert {n.op_type for n in proto.graph.node} >= {"Conv"}
    assert graph.meta.frontend == "fx"
