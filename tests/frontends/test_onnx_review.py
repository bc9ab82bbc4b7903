"""Issue 13's ONNX findings (12 in part, 13-16): hand-built ONNX graphs (and a few torch modules
through `frontend="onnx"`) that used to give wrong results, internal-sounding errors or a
renamed / downgraded generated model. Each goes through `ai.check` at fraction 0 and at a random
fraction where it has groups, plus a narrower assertion on the lowered graph or the written file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.errors import AsgnasError, FrontendError  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402
from asgnas_ir.testing import run_onnx  # noqa: E402

N = helper.make_node
F = TensorProto.FLOAT
FRACTIONS = (0.0, 0.4)


def _array(seed: int, *shape: int, dtype=np.float32) -> np.ndarray:  # noqa: ANN001
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes: list, inits: list, inputs: list, outputs: list, *, opset: int = 18, value_info=()) -> onnx.ModelProto:  # noqa: ANN001
    graph = helper.make_graph(nodes, "review", inputs, outputs, initializer=inits, value_info=list(value_info))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _io(name: str, shape, elem=F) -> onnx.ValueInfoProto:  # noqa: ANN001
    return helper.make_tensor_value_info(name, elem, shape)


def _check_ok(model, inputs=None, **kw) -> list:  # noqa: ANN001, ANN003
    reports = []
    for fraction in FRACTIONS:
        report = ai.check(model, inputs, fraction=fraction, seed=3, **kw)
        assert report.ok, (fraction, report)
        reports.append(report)
    return reports


# ---- 12: exporter constants of affine-free norms are not params ---------------------------------


class _AffineFreeNorm(torch.nn.Module):
    def __init__(self, norm: torch.nn.Module, sequence: bool = False) -> None:
        super().__init__()
        make = (lambda i, o: torch.nn.Linear(i, o)) if sequence else (lambda i, o: torch.nn.Conv2d(i, o, 3, padding=1))
        self.a, self.norm, self.b = make(3, 4), norm, make(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.b(torch.relu(y + self.norm(y)))


AFFINE_FREE = {
    "batch_norm": lambda: (_AffineFreeNorm(torch.nn.BatchNorm2d(4, affine=False)), torch.randn(2, 3, 6, 6)),
    "group_norm": lambda: (_AffineFreeNorm(torch.nn.GroupNorm(2, 4, affine=False)), torch.randn(2, 3, 6, 6)),
    "layer_norm": lambda: (_AffineFreeNorm(torch.nn.LayerNorm(4, elementwise_affine=False), sequence=True), torch.randn(2, 5, 3)),
}


@pytest.mark.parametrize("kind", sorted(AFFINE_FREE))
def test_affine_free_norm_through_onnx_binds_every_param_to_the_module(kind: str) -> None:
    torch.manual_seed(0)
    model, x = AFFINE_FREE[kind]()
    model.eval()
    graph = ai.compile(model, x, frontend="onnx")
    paths = dict(model.named_parameters()) | dict(model.named_buffers())
    assert {p.source for p in graph.params.values()} <= set(paths), sorted(p.source for p in graph.params.values())
    graph.update_weights(model)  # every param has a live tensor
    for mode in ("prune", "erase"):
        _check_ok(model, x, frontend="onnx", mode=mode)


# ---- 12: ConvTranspose with output_padding >= stride (allowed by torch, refused by onnxruntime) ---


class _Upsample(torch.nn.Module):
    def __init__(self, padding: int, bias: bool) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 6, 1)
        self.up = torch.nn.ConvTranspose2d(6, 5, 3, stride=1, dilation=2, output_padding=1, padding=padding, bias=bias)
        self.b = torch.nn.Conv2d(5, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.up(torch.relu(self.a(x)))))


@pytest.mark.parametrize(("padding", "bias"), [(0, True), (0, False), (2, True)])
@pytest.mark.parametrize("frontend", ["fx", "onnx"])
def test_conv_transpose_output_padding_not_below_stride_runs_in_onnxruntime(padding: int, bias: bool, frontend: str) -> None:
    torch.manual_seed(0)
    model, x = _Upsample(padding, bias).eval(), torch.randn(1, 3, 5, 6)
    reports = _check_ok(model, x, frontend=frontend, target="onnx")
    assert reports[0].groups > 0 and reports[1].zeroed > 0


# ---- 13: Gemm's C is a bias only when it holds one value per output column ----------------------

M = NF = 4  # M == N: a (M, 1) column has as many entries as a per-column bias


def _gemm_model(c_shape: tuple[int, ...] | None, alpha: float = 1.0, beta: float = 1.0) -> onnx.ModelProto:
    inits = [_init("w1", _array(1, NF, 6)), _init("w2", _array(2, 5, NF)), _init("b2", _array(3, 5))]
    inputs = [_io("x", [M, 6])]
    if c_shape is None:  # C computed at run time: a second graph input
        inputs.append(_io("c", [M, 1]))
    else:
        inits.append(_init("c", _array(4, *c_shape)))
    nodes = [N("Gemm", ["x", "w1", "c"], ["h"], name="gemm1", transB=1, alpha=alpha, beta=beta), N("Relu", ["h"], ["r"]),
             N("Gemm", ["r", "w2", "b2"], ["y"], name="gemm2", transB=1)]
    return _model(nodes, inits, inputs, [_io("y", [M, 5])])


@pytest.mark.parametrize("c_shape", [(), (1,), (NF,), (1, NF), (M, 1), (M, NF), None], ids=str)
def test_gemm_bias_of_every_broadcastable_shape(c_shape: tuple[int, ...] | None) -> None:
    model = _gemm_model(c_shape)
    reports = _check_ok(model)
    assert reports[0].groups > 0
    graph = ai.compile(model)
    linear = next(n for n in graph.nodes if n.op is Op.LINEAR and n.source == "gemm1")
    per_column = c_shape is not None and (c_shape in ((NF,), (1, NF)))
    assert ("bias" in linear.params) == per_column


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 1.0), (1.0, -2.0), (2.0, 0.0)])
@pytest.mark.parametrize("c_shape", [(NF,), (M, 1)], ids=str)
def test_gemm_alpha_and_beta_scale_the_product_and_c(c_shape: tuple[int, ...], alpha: float, beta: float) -> None:
    reports = _check_ok(_gemm_model(c_shape, alpha, beta))
    assert reports[0].groups > 0


def test_gemm_column_bias_is_not_read_as_a_row() -> None:
    model = _gemm_model((M, 1))
    x = _array(7, M, 6)
    ours = ai.compile(model, [x])
    out = run_onnx(_write_onnx(ours, "gemm"), [x])[0]
    np.testing.assert_allclose(out, run_onnx(_saved(model, "gemm_src"), [x])[0], rtol=1e-5, atol=1e-5)


_TMP: list[Path] = []


@pytest.fixture(autouse=True)
def _tmp(tmp_path: Path) -> None:
    _TMP[:] = [tmp_path]


def _saved(model: onnx.ModelProto, name: str) -> Path:
    path = _TMP[0] / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _write_onnx(graph, name: str) -> Path:  # noqa: ANN001
    return ai.codegen(graph, target="onnx", out_dir=_TMP[0] / name)[0]


# ---- 14: the file's value_info does not decide shapes the graph computes ------------------------


def _lying_reshape() -> onnx.ModelProto:
    nodes = [N("Reshape", ["x", "shape"], ["r"], name="flatten"), N("MatMul", ["r", "w"], ["y"], name="fc")]
    return _model(nodes, [_init("shape", np.array([2, 12], np.int64)), _init("w", _array(5, 12, 3))],
                  [_io("x", [2, 3, 4])], [_io("y", [4, 3])], value_info=[_io("r", [4, 6])])


def test_wrong_value_info_is_not_trusted_without_example_inputs() -> None:
    path = _saved(_lying_reshape(), "lying")
    with pytest.warns(UserWarning, match=r"'r' \(output of node 'flatten', Reshape\) is declared \[4, 6\] but computes to \[2, 12\]"):
        graph = ai.compile(path)
    assert graph.values["r"].shape == (2, 12)
    assert graph.values[graph.outputs[0]].shape == (2, 3)
    x = _array(6, 2, 3, 4)
    out = run_onnx(_write_onnx(graph, "lying"), [x])[0]
    np.testing.assert_allclose(out, x.reshape(2, 12) @ numpy_helper.to_array(_lying_reshape().graph.initializer[1]), rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_ok(str(path))


# ---- 15: raw errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["onnx", "torch"])
def test_parameter_free_model_compiles_checks_and_generates(target: str) -> None:
    model = _model([N("Relu", ["x"], ["r"]), N("Sigmoid", ["r"], ["y"])], [], [_io("x", [2, 3])], [_io("y", [2, 3])])
    path = _saved(model, "free")
    assert ai.compile(path).params == {}
    _check_ok(str(path), target=target)
    written = ai.codegen(ai.compile(path), target=target, out_dir=_TMP[0] / f"free_{target}")
    assert written


def test_model_proto_without_its_external_data_is_refused_clearly(tmp_path: Path) -> None:
    model = _model([N("MatMul", ["x", "w"], ["y"])], [_init("w", _array(8, 32, 32))], [_io("x", [2, 32])], [_io("y", [2, 32])])
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="big.data", size_threshold=0)
    proto = onnx.load(str(path), load_external_data=False)
    with pytest.raises(FrontendError, match=r"'w'.*external file \('big.data'\).*pass the \.onnx path"):
        ai.compile(proto)
    with pytest.raises(FrontendError, match="external file"):
        ai.check(proto, None, fraction=0.0)
    _check_ok(str(path))


def test_onnxruntime_failure_of_the_reference_names_the_model() -> None:
    # a valid model onnxruntime refuses to run (output_padding >= stride in ConvTranspose)
    nodes = [N("ConvTranspose", ["x", "w"], ["y"], name="up", dilations=[2, 2], output_padding=[1, 1])]
    path = _saved(_model(nodes, [_init("w", _array(9, 3, 4, 3, 3))], [_io("x", [1, 3, 5, 5])], [_io("y", None)]), "ort_refuses")
    with pytest.raises(AsgnasError, match=r"onnxruntime cannot run the ONNX model '.*ort_refuses\.onnx'.*float32\[1, 3, 5, 5\]"):
        ai.check(str(path), None, fraction=0.0)


def test_matmul_of_a_vector() -> None:
    nodes = [N("MatMul", ["x", "w1"], ["h"], name="mm1"), N("Add", ["h", "b1"], ["hb"]), N("Relu", ["hb"], ["r"]),
             N("MatMul", ["r", "w2"], ["y"], name="mm2")]
    inits = [_init("w1", _array(10, 4, 6)), _init("b1", _array(11, 6)), _init("w2", _array(12, 6, 5))]
    model = _model(nodes, inits, [_io("x", [4])], [_io("y", [5])])
    _check_ok(model)
    graph = ai.compile(model)
    assert [n.op for n in graph.nodes].count(Op.LINEAR) == 2
    assert graph.values[graph.outputs[0]].shape == (5,)


def test_bias_of_higher_rank_than_the_matmul_broadcasts_it_up() -> None:
    nodes = [N("MatMul", ["x", "w"], ["m"], name="mm"), N("Add", ["m", "b"], ["y"], name="bias")]
    model = _model(nodes, [_init("w", _array(13, 4, 5)), _init("b", _array(14, 1, 1, 5))], [_io("x", [2, 4])], [_io("y", [1, 2, 5])])
    _check_ok(model)
    assert ai.compile(model).values[ai.compile(model).outputs[0]].shape == (1, 2, 5)


@pytest.mark.parametrize(("axis", "scale", "bias"), [(-1, (1, 6), (6,)), (-2, (1, 6), (3, 6)), (-2, (3, 6), (1, 1, 6)), (-1, (1, 1, 6), (1, 6))],
                         ids=str)
def test_layer_norm_with_a_broadcast_scale(axis: int, scale: tuple[int, ...], bias: tuple[int, ...]) -> None:
    nodes = [N("MatMul", ["x", "w"], ["h"], name="fc"), N("LayerNormalization", ["h", "s", "b"], ["n"], name="ln", axis=axis),
             N("MatMul", ["n", "w2"], ["y"], name="out")]
    inits = [_init("w", _array(15, 5, 6)), _init("s", _array(16, *scale)), _init("b", _array(17, *bias)), _init("w2", _array(18, 6, 2))]
    model = _model(nodes, inits, [_io("x", [2, 3, 5])], [_io("y", [2, 3, 2])])
    _check_ok(model)


def test_layer_norm_scale_that_does_not_broadcast_is_refused_naming_the_node() -> None:
    nodes = [N("LayerNormalization", ["x", "s"], ["y"], name="ln", axis=-2)]
    model = _model(nodes, [_init("s", _array(19, 5))], [_io("x", [2, 3, 4])], [_io("y", [2, 3, 4])])
    # ONNX's own checker may accept it; the error must name the node and the shapes
    with pytest.raises(FrontendError, match=r"'ln'.*scale of shape \[5\] does not broadcast to the normalized shape \[3, 4\]"):
        ai.compile(model)


@pytest.mark.parametrize(("dtype", "elem"), [(np.float16, TensorProto.FLOAT16), (np.float64, TensorProto.DOUBLE)])
def test_onnx_target_keeps_the_source_dtype(dtype, elem) -> None:  # noqa: ANN001
    nodes = [N("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]), N("Relu", ["c"], ["r"]),
             N("Conv", ["r", "w2"], ["y"], name="conv2")]
    inits = [_init("w", _array(20, 6, 3, 3, 3, dtype=dtype)), _init("b", _array(21, 6, dtype=dtype)),
             _init("w2", _array(22, 4, 6, 1, 1, dtype=dtype))]
    model = _model(nodes, inits, [_io("x", [1, 3, 5, 5], elem)], [_io("y", None, elem)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxruntime has no float64 Conv: onnx.reference runs it
        reports = _check_ok(model)
    assert reports[1].zeroed > 0
    written = onnx.load(str(_write_onnx(ai.compile(model), "dtype")))
    assert written.graph.input[0].type.tensor_type.elem_type == elem
    assert {t.data_type for t in written.graph.initializer if t.name in ("w", "b", "w2")} == {elem}


# ---- 16: the generated model keeps the source's names and opset --------------------------------


def _named(opset: int, ir_version: int) -> onnx.ModelProto:
    nodes = [N("Conv", ["input.1", "w"], ["h"], name="conv"), N("Relu", ["h"], ["r"]), N("Conv", ["r", "w2"], ["output:0"], name="conv2")]
    model = _model(nodes, [_init("w", _array(23, 6, 3, 1, 1)), _init("w2", _array(24, 2, 6, 1, 1))],
                   [_io("input.1", [1, 3, 4, 4])], [_io("output:0", None)], opset=opset)
    model.ir_version = ir_version
    return model


@pytest.mark.parametrize(("opset", "ir_version", "expected"), [(21, 10, (21, 10)), (17, 8, (19, 9)), (22, 11, (22, 11))])
def test_generated_onnx_keeps_names_and_a_newer_opset(opset: int, ir_version: int, expected: tuple[int, int]) -> None:
    model = _named(opset, ir_version)
    path = _saved(model, "named")
    written_path = _write_onnx(ai.compile(path), "named")
    written = onnx.load(str(written_path))
    onnx.checker.check_model(written, full_check=True)
    assert [i.name for i in written.graph.input] == ["input.1"]
    assert [o.name for o in written.graph.output] == ["output:0"]
    assert ({o.version for o in written.opset_import if o.domain in ("", "ai.onnx")}, written.ir_version) == ({expected[0]}, expected[1])
    x = _array(25, 1, 3, 4, 4)
    np.testing.assert_allclose(run_onnx(written_path, [x])[0], run_onnx(path, [x])[0], rtol=1e-5, atol=1e-5)
    _check_ok(str(path))


def test_custom_op_output_shapes_still_come_from_the_file() -> None:
    # inference knows nothing about a custom-domain op: its declared value_info is all there is
    nodes = [N("Foo", ["x"], ["f"], name="foo", domain="my.ops"), N("Relu", ["f"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "custom", [_io("x", [1, 3, 4, 4])], [_io("y", None)], value_info=[_io("f", [1, 3, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("my.ops", 1)])
    lowered = ai.compile(model, on_unsupported="opaque")
    assert lowered.values[lowered.outputs[0]].shape == (1, 3, 4, 4)


@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("kind", sorted(AFFINE_FREE))
def test_affine_free_norm_groups_equal_through_fx_and_onnx(kind: str, mode: str) -> None:
    torch.manual_seed(0)
    model, x = AFFINE_FREE[kind]()
    model.eval()

    def canonical(graph) -> set:  # noqa: ANN001
        space = ai.search_space(graph, mode=mode)
        return {frozenset((graph.params[s.param].source, s.axis, tuple(int(i) for i in s.indices)) for s in g.slices) for g in space.groups}

    assert canonical(ai.compile(model, x, frontend="fx")) == canonical(ai.compile(model, x, frontend="onnx"))


def test_an_export_that_computes_something_else_is_refused_at_compile() -> None:
    """torch.onnx.export drops avg_pool2d's divisor_override (a plain AveragePool): the frontend runs the
    export once against the model and refuses it, instead of lowering a graph that is wrong at fraction 0."""
    import torch.nn.functional as F
    from torch import nn

    class OverriddenPool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(2, 3, 3, padding=1)
            self.o = nn.Conv2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.o(F.avg_pool2d(self.c(x), 3, 1, 1, divisor_override=4))

    torch.manual_seed(0)
    with pytest.raises(FrontendError, match=r"does not compute what the model computes.*frontend='fx'"):
        ai.compile(OverriddenPool().eval(), torch.randn(2, 2, 6, 6), frontend="onnx")
    assert ai.check(OverriddenPool(), torch.randn(2, 2, 6, 6), frontend="fx", fraction=0.0).ok
