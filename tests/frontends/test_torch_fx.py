"""torch.fx frontend: one row per converter family, each compiled, verified and checked end to end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import asgnas_ir as ai
from asgnas_ir.testing import assert_outputs_match, emit_and_load


class Fn(nn.Module):
    """Wraps a plain function so fx traces through it (functional ops, tensor methods, indexing)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class Sandwich(nn.Module):
    """stem -> body (the op under test) -> head: the op sits between two prunable layers."""

    def __init__(self, stem: nn.Module, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


IMG = (2, 3, 6, 6)
VEC = (2, 10)


def img(body: nn.Module, head_in: int = 8, head: nn.Module | None = None) -> nn.Module:
    """Conv2d(3, 8) stem, `body`, then a 1x1 Conv2d head reading `head_in` channels (or `head`)."""
    return Sandwich(nn.Conv2d(3, 8, 3, padding=1), body, head if head is not None else nn.Conv2d(head_in, 4, 1))


def vec(body: nn.Module, head_in: int = 8) -> nn.Module:
    """Linear(10, 8) stem, `body`, then a Linear head reading `head_in` features."""
    return Sandwich(nn.Linear(10, 8), body, nn.Linear(head_in, 4))


def fn(f: Callable[[torch.Tensor], torch.Tensor]) -> nn.Module:
    return Fn(f)


@dataclass(frozen=True)
class OpCase:
    """One converter case: a model factory, its input shape, and whether groups must exist."""

    name: str
    make_module: Callable[[], nn.Module]
    input_spec: tuple[int, ...] = IMG
    prunable: bool = True


class ChunkConvCat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 1)
        self.right = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Conv2d(10, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.relu(self.stem(x)).chunk(2, dim=1)
        return self.head(torch.cat([self.left(a), self.right(b)], dim=1))


class SplitSections(nn.Module):
    def __init__(self, method: bool) -> None:
        super().__init__()
        self.method = method
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.p = nn.Conv2d(2, 4, 1)
        self.q = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        a, b = y.split([2, 6], dim=1) if self.method else torch.split(y, [2, 6], dim=1)
        return self.p(a) + self.q(b)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return self.head(torch.relu(y + self.conv(y)))


class SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.reduce = nn.Conv2d(8, 2, 1)
        self.expand = nn.Conv2d(2, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(y.mean((2, 3), keepdim=True)))))
        return self.head(y * gate)


ACTIVATION_MODULES = [
    ("relu", nn.ReLU),
    ("relu6", nn.ReLU6),
    ("hardtanh", lambda: nn.Hardtanh(-0.5, 0.75)),
    ("leaky_relu", lambda: nn.LeakyReLU(0.2)),
    ("gelu_tanh", lambda: nn.GELU(approximate="tanh")),
    ("gelu", nn.GELU),
    ("silu", nn.SiLU),
    ("sigmoid", nn.Sigmoid),
    ("tanh", nn.Tanh),
    ("hardswish", nn.Hardswish),
    ("hardsigmoid", nn.Hardsigmoid),
    ("elu", lambda: nn.ELU(0.5)),
    ("softplus", lambda: nn.Softplus(beta=2.0, threshold=10.0)),
    ("mish", nn.Mish),
]

ACTIVATION_FUNCTIONS = [
    ("relu", F.relu),
    ("torch_relu", torch.relu),
    ("relu_method", lambda x: x.relu()),
    ("relu6", F.relu6),
    ("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.75)),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.2)),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    ("silu", F.silu),
    ("sigmoid", torch.sigmoid),
    ("sigmoid_method", lambda x: x.sigmoid()),
    ("tanh", torch.tanh),
    ("hardswish", F.hardswish),
    ("hardsigmoid", F.hardsigmoid),
    ("elu", lambda x: F.elu(x, 0.5)),
    ("mish", F.mish),
    ("softplus", lambda x: F.softplus(x, beta=2.0)),
    ("clamp", lambda x: torch.clamp(x, -0.3, 0.4)),
    ("pow_cube", lambda x: torch.pow(x, 3) * 0.1 + x),
    ("pow_square_operator", lambda x: x**2 + x),
]

CASES: list[OpCase] = [
    # ---- convolutions and linear layers
    OpCase("conv1d", lambda: Sandwich(nn.Conv1d(3, 8, 3), nn.Conv1d(8, 6, 3, stride=2, padding=1), nn.Conv1d(6, 4, 1)), (2, 3, 16)),
    OpCase("conv2d", lambda: img(nn.Conv2d(8, 6, 3, stride=2, padding=1, dilation=1), 6)),
    OpCase("conv2d_same", lambda: img(nn.Conv2d(8, 6, 4, padding="same", dilation=2), 6)),
    OpCase("conv2d_valid_no_bias", lambda: img(nn.Conv2d(8, 6, 3, padding="valid", bias=False), 6)),
    OpCase("conv2d_grouped", lambda: img(nn.Conv2d(8, 12, 3, padding=1, groups=4), 12)),
    OpCase("conv2d_depthwise", lambda: img(nn.Conv2d(8, 8, 3, padding=1, groups=8), 8)),
    OpCase("conv2d_reflect", lambda: img(nn.Conv2d(8, 6, 3, padding=1, padding_mode="reflect"), 6)),
    OpCase("conv3d", lambda: Sandwich(nn.Conv3d(3, 8, 3, padding=1), nn.Conv3d(8, 6, (1, 3, 3), stride=(1, 2, 2)), nn.Conv3d(6, 4, 1)), (1, 3, 3, 6, 6)),
    OpCase("conv_transpose2d", lambda: img(nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1), 6)),
    OpCase("conv_transpose2d_grouped", lambda: img(nn.ConvTranspose2d(8, 6, 2, stride=2, groups=2), 6)),
    OpCase("linear", lambda: vec(nn.Sequential(nn.ReLU(), nn.Linear(8, 6)), 6), VEC),
    OpCase("linear_no_bias", lambda: vec(nn.Linear(8, 6, bias=False), 6), VEC),
    # ---- normalisation
    OpCase("batch_norm1d_features", lambda: vec(nn.BatchNorm1d(8)), VEC),
    OpCase("batch_norm1d_sequence", lambda: Sandwich(nn.Conv1d(3, 8, 3), nn.BatchNorm1d(8), nn.Conv1d(8, 4, 1)), (2, 3, 12)),
    OpCase("batch_norm2d", lambda: img(nn.BatchNorm2d(8))),
    OpCase("instance_norm2d_affine", lambda: img(nn.InstanceNorm2d(8, affine=True))),
    OpCase("instance_norm2d_plain", lambda: img(nn.InstanceNorm2d(8))),
    OpCase("group_norm", lambda: img(nn.GroupNorm(4, 8))),
    OpCase("layer_norm_features", lambda: vec(nn.Sequential(nn.ReLU(), nn.Linear(8, 6), nn.LayerNorm(6)), 6), VEC),
    OpCase("layer_norm_functional", lambda: vec(nn.Sequential(nn.ReLU(), nn.Linear(8, 6), fn(lambda x: F.layer_norm(x, (6,)))), 6), VEC),
    # ---- activations, dropout, softmax
    *[OpCase(f"module_{name}", lambda make=make: img(make())) for name, make in ACTIVATION_MODULES],
    *[OpCase(f"functional_{name}", lambda f=f: img(fn(f))) for name, f in ACTIVATION_FUNCTIONS],
    OpCase("dropout_module", lambda: img(nn.Dropout(0.3))),
    OpCase("dropout_functional", lambda: img(fn(lambda x: F.dropout(x, 0.3, training=False)))),
    OpCase("softmax_spatial", lambda: img(nn.Softmax(dim=-1))),
    OpCase("softmax_channels_functional", lambda: img(fn(lambda x: F.softmax(x, dim=1))), prunable=False),
    OpCase("softmax_method", lambda: img(fn(lambda x: x.softmax(-1)))),
    # ---- pooling
    OpCase("max_pool2d_ceil", lambda: img(nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True))),
    OpCase("avg_pool2d", lambda: img(nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False))),
    OpCase("adaptive_avg_pool2d", lambda: img(nn.AdaptiveAvgPool2d((2, 1)))),
    OpCase("adaptive_max_pool2d", lambda: img(nn.AdaptiveMaxPool2d(1))),
    OpCase("max_pool2d_functional", lambda: img(fn(lambda x: F.max_pool2d(x, 2)))),
    OpCase("avg_pool2d_functional", lambda: img(fn(lambda x: F.avg_pool2d(x, 2, ceil_mode=True)))),
    OpCase("adaptive_avg_pool2d_functional", lambda: img(fn(lambda x: F.adaptive_avg_pool2d(x, 1)))),
    OpCase("max_pool1d", lambda: Sandwich(nn.Conv1d(3, 8, 3), nn.MaxPool1d(2), nn.Conv1d(8, 4, 1)), (2, 3, 12)),
    # ---- flatten, view/reshape, permute/transpose
    OpCase("flatten_module", lambda: img(nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), head=nn.Linear(8 * 9, 4))),
    OpCase("flatten_function", lambda: img(fn(lambda x: torch.flatten(x, 1)), head=nn.Linear(8 * 36, 4))),
    OpCase("flatten_method_spatial", lambda: img(fn(lambda x: x.flatten(2)), head=nn.Conv1d(8, 4, 1))),
    OpCase("view_size0", lambda: img(fn(lambda x: x.view(x.size(0), -1)), head=nn.Linear(8 * 36, 4))),
    OpCase("reshape_shape0", lambda: img(fn(lambda x: x.reshape(x.shape[0], 8, -1)), head=nn.Conv1d(8, 4, 1))),
    OpCase("torch_reshape", lambda: img(fn(lambda x: torch.reshape(x, (x.size(0), -1))), head=nn.Linear(8 * 36, 4))),
    OpCase("permute_linear_permute", lambda: img(fn(lambda x: x.permute(0, 2, 3, 1)), head=nn.Sequential(nn.Linear(8, 5), Fn(lambda y: y.permute(0, 3, 1, 2))))),
    OpCase("transpose_method", lambda: Sandwich(nn.Conv1d(3, 8, 3), Fn(lambda x: x.transpose(1, 2)), nn.Linear(8, 4)), (2, 3, 12)),
    OpCase("torch_transpose", lambda: Sandwich(nn.Conv1d(3, 8, 3), Fn(lambda x: torch.transpose(x, 2, 1)), nn.Linear(8, 4)), (2, 3, 12)),
    OpCase("torch_permute", lambda: img(fn(lambda x: torch.permute(x, (0, 1, 3, 2))))),
    # ---- cat, chunk, split, residual add, gating
    OpCase("chunk_method_cat", ChunkConvCat),
    OpCase("split_method_sections", lambda: SplitSections(True)),
    OpCase("torch_split_sections", lambda: SplitSections(False)),
    OpCase("torch_chunk_cat_spatial", lambda: img(fn(lambda x: torch.cat(torch.chunk(x, 2, dim=2)[::-1], dim=2)))),
    OpCase("residual_add", Residual),
    OpCase("squeeze_excite_mul", SqueezeExcite),
    # ---- indexing
    OpCase("getitem_channel_slice", lambda: img(fn(lambda x: x[:, 2:6]), 4)),
    OpCase("getitem_ellipsis_int", lambda: img(fn(lambda x: x[..., 0]), head=nn.Conv1d(8, 4, 1))),
    OpCase("getitem_spatial_slice", lambda: img(fn(lambda x: x[:, :, 1:5, ::2]))),
    OpCase("getitem_none", lambda: img(fn(lambda x: x[:, None].squeeze(1)))),
    # ---- reductions
    OpCase("mean_keepdim", lambda: img(fn(lambda x: x.mean((2, 3), keepdim=True)))),
    OpCase("mean_no_keepdim", lambda: img(fn(lambda x: torch.mean(x, dim=(2, 3))), head=nn.Linear(8, 4))),
    OpCase("sum_keepdim", lambda: img(fn(lambda x: x.sum(dim=-1, keepdim=True)))),
    OpCase("sum_last", lambda: img(fn(lambda x: torch.sum(x, -1)), head=nn.Conv1d(8, 4, 1))),
    # ---- padding
    OpCase("pad_constant", lambda: img(fn(lambda x: F.pad(x, (1, 2, 0, 1))))),
    OpCase("pad_value", lambda: img(fn(lambda x: F.pad(x, (1, 1, 1, 1), value=0.5)))),
    OpCase("pad_reflect", lambda: img(fn(lambda x: F.pad(x, (1, 1, 2, 0), mode="reflect")))),
    # ---- scalar arithmetic
    OpCase("mul_scalar", lambda: img(fn(lambda x: x * 2))),
    OpCase("rmul_scalar", lambda: img(fn(lambda x: 3 * x))),
    OpCase("rsub_scalar", lambda: img(fn(lambda x: 1 - x))),
    OpCase("div_scalar", lambda: img(fn(lambda x: x / 3))),
    OpCase("add_sub_scalar", lambda: img(fn(lambda x: (x + 1.5) - 0.25))),
    OpCase("neg", lambda: img(fn(lambda x: -x))),
    # ---- squeeze / unsqueeze
    OpCase("unsqueeze_squeeze", lambda: img(fn(lambda x: x.unsqueeze(2).squeeze(2)))),
    OpCase("torch_unsqueeze_conv3d", lambda: img(fn(lambda x: torch.unsqueeze(x, 2)), head=nn.Conv3d(8, 4, 1))),
    OpCase("gap_squeeze_linear", lambda: img(fn(lambda x: F.adaptive_avg_pool2d(x, 1).squeeze(-1).squeeze(-1)), head=nn.Linear(8, 4))),
    OpCase("torch_squeeze", lambda: img(fn(lambda x: torch.squeeze(x.mean(3, keepdim=True), 3)), head=nn.Conv1d(8, 4, 1))),
]


def test_case_names_are_unique():
    """Every OpCase has its own id, so a failing row is identifiable."""
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_op_case_compiles_verifies_and_checks(case: OpCase):
    """The model compiles, verifies, and its subnet (half the groups zeroed) matches the zeroed model."""
    torch.manual_seed(0)
    model = case.make_module().eval()
    inputs = (torch.randn(case.input_spec),)
    graph = ai.compile(model, inputs)
    ai.run_pass("verify", graph)
    with torch.no_grad():
        expected_shape = model(*inputs).shape
    assert graph.values[graph.outputs[0]].shape == tuple(expected_shape)
    report = ai.check(model, inputs, fraction=0.5)
    assert report.ok, report
    if case.prunable:
        assert report.groups > 0 and report.zeroed > 0
        assert report.params_sub < report.params_full
    else:
        assert report.groups == 0


def test_adaptive_pool_with_none_output_size_keeps_that_axis():
    """AdaptiveAvgPool2d((None, 2)) keeps the height and pools the width to 2, like torch."""
    model = img(nn.AdaptiveAvgPool2d((None, 2))).eval()
    x = torch.randn(IMG)
    graph = ai.compile(model, x)
    assert graph.values[graph.outputs[0]].shape == tuple(model(x).shape)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            return y
        return -y


def test_untraceable_model_is_a_frontend_error():
    """A forward with data-dependent control flow raises FrontendError naming the model and a remedy."""
    with pytest.raises(ai.FrontendError, match=r"torch.fx cannot trace DataDependent.*frontend='onnx'"):
        ai.compile(DataDependent().eval(), torch.randn(1, 3, 2, 2), frontend="fx")  # auto would export it


class WithOptionalArg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        if scale is not None:
            y = y * scale
        return self.head(y)


def test_forward_with_defaulted_extra_argument_compiles():
    """A forward(x, scale=None) model compiles from one example input, the extra argument at its default."""
    model = WithOptionalArg().eval()
    x = torch.randn(1, 3, 4, 4)
    graph = ai.compile(model, x)
    assert graph.inputs == ["x"]
    assert [n.op.value for n in graph.nodes] == ["conv", "relu", "conv"]
    report = ai.check(model, x, fraction=0.5)
    assert report.ok and report.zeroed > 0


class ThreeUnsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.head = nn.Conv2d(2, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.erf(self.stem(x))
        y = torch.logcumsumexp(y, dim=3)
        y = torch.erf(y)
        return self.head(self.shuffle(y))


def test_unsupported_ops_are_all_listed_in_one_error_with_locations():
    """Every unsupported function and module is listed once in one UnsupportedOpError, with where it occurs."""
    with pytest.raises(ai.UnsupportedOpError) as info:
        ai.compile(ThreeUnsupported().eval(), torch.randn(1, 3, 4, 4), frontend="fx")
    error = info.value
    ops = {item.op: item.locations for item in error.ops}
    assert set(ops) == {"torch.erf", "torch.logcumsumexp", "torch.nn.modules.pixelshuffle.PixelShuffle"}
    assert ops["torch.erf"] == ("fx node 'erf'", "fx node 'erf_1'")
    assert ops["torch.logcumsumexp"] == ("fx node 'logcumsumexp'",)
    assert ops["torch.nn.modules.pixelshuffle.PixelShuffle"] == ("'shuffle'",)
    message = str(error)
    assert "3 op kind(s)" in message
    assert "torch.erf (2x) at fx node 'erf', fx node 'erf_1'" in message
    assert "on_unsupported='opaque'" in message
    assert error.frontend == "torch.fx"


class OpaqueInTheMiddle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.head = nn.Conv2d(2, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mid(torch.relu(self.stem(x)))
        y = torch.logcumsumexp(torch.erf(y), dim=3)
        return self.head(self.shuffle(y))


def test_opaque_mode_keeps_unsupported_ops_and_pins_their_channels():
    """on_unsupported='opaque' lowers unknown ops to opaque nodes whose channels are pinned; others stay prunable."""
    graph = ai.compile(OpaqueInTheMiddle().eval(), torch.randn(1, 3, 4, 4), on_unsupported="opaque")
    opaque = [n for n in graph.nodes if n.op.value == "opaque"]
    assert sorted(n.attrs.target for n in opaque) == [
        "torch.erf", "torch.logcumsumexp", "torch.nn.modules.pixelshuffle.PixelShuffle",
    ]
    kinds = {n.attrs.target: n.attrs.kind for n in opaque}
    assert kinds["torch.erf"] == "function" and kinds["torch.nn.modules.pixelshuffle.PixelShuffle"] == "module"
    logcse = next(n for n in opaque if n.attrs.target == "torch.logcumsumexp")
    assert logcse.attrs.args == [{"$input": 0}] and logcse.attrs.kwargs == {"dim": 3}
    assert graph.values[next(n for n in opaque if n.attrs.kind == "module").outputs[0]].shape == (1, 2, 8, 8)

    deps = ai.run_pass("dependency-graph", graph)
    for node in opaque:
        for name in node.inputs + node.outputs:
            assert set(deps.value_groups.get(name, [-1])) == {-1}, name
    assert deps.value_groups["mid"] == [-1] * 8  # feeds an opaque op
    assert len(deps.groups) == 8  # the stem's channels, consumed by `mid`
    assert all({s.param for s in g.slices} == {"stem.weight", "stem.bias", "mid.weight"} for g in deps.groups)
    sub = ai.subnet(graph, ai.search_space(graph), [0, 5])
    assert sub.params["stem.weight"].shape[0] == 6
    ai.run_pass("verify", sub)


def test_opaque_function_nodes_generate_runnable_code(tmp_path):
    """Opaque torch functions are emitted as calls in generated code that reproduce the model's output."""

    model = Sandwich(nn.Conv2d(3, 8, 3, padding=1), Fn(lambda x: torch.logcumsumexp(torch.erf(x), dim=3)), nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(1, 3, 4, 4)
    graph = ai.compile(model, x, on_unsupported="opaque")
    with torch.no_grad():
        assert_outputs_match(emit_and_load(graph, tmp_path)(x), model(x))


def test_opaque_module_cannot_be_generated(tmp_path):
    """Codegen of an opaque module call raises CodegenError naming the node and the module."""
    graph = ai.compile(ThreeUnsupported().eval(), torch.randn(1, 3, 4, 4), on_unsupported="opaque")
    with pytest.raises(ai.CodegenError, match=r"'shuffle'.*PixelShuffle"):
        ai.codegen(graph, target="torch", out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "model.py").exists()


def test_forward_failing_on_the_input_shape_names_the_shapes():
    """A model that fails on the example input raises FrontendError naming the model, the input, the layer
    reading it and the expected vs given shape (checked before torch runs it)."""
    model = nn.Sequential(nn.Linear(10, 4), nn.ReLU())
    with pytest.raises(ai.FrontendError) as info:
        ai.compile(model, torch.randn(2, 7))
    message = str(info.value)
    assert "Sequential.forward" in message and "'0' (Linear)" in message
    assert "shaped [..., 10]" in message and "float32 [2, 7]" in message


def test_forward_failing_past_the_first_layer_names_the_shapes_without_fx_noise():
    """A failure deeper than the checked first layer still names the model and input shapes, and the fx
    interpreter's appended context (executing node, tlparse hint) is cut."""
    model = nn.Sequential(nn.Linear(10, 4), nn.Linear(5, 2))
    with pytest.raises(ai.FrontendError) as info:
        ai.compile(model, torch.randn(2, 10))
    message = str(info.value)
    assert "Sequential fails on example inputs of shape [[2, 10]]" in message and "RuntimeError" in message
    assert "While executing" not in message and "tlparse" not in message


def test_wrong_number_of_inputs_is_a_frontend_error():
    """Passing two example inputs to a one-input model raises FrontendError naming the inputs."""
    # frontend="auto" tries the export path too, which warns as torch.export refuses the extra input
    with (
        pytest.warns(UserWarning, match=r"dynamo=True\) failed for Sequential .*falling back"),
        pytest.raises(ai.FrontendError, match=r"takes 1 tensor input\(s\) \(input_1\) but 2"),
    ):
        ai.compile(nn.Sequential(nn.ReLU()), (torch.randn(1, 3), torch.randn(1, 3)))


@pytest.mark.parametrize("example", [None, (), []])
def test_compile_without_example_inputs_is_a_spec_error(example):
    """Compiling a torch model without example inputs raises SpecError asking for them."""
    with pytest.raises(ai.SpecError, match="needs example_inputs"):
        ai.compile(nn.Sequential(nn.Conv2d(3, 4, 1)), example)


def test_bad_compile_options_are_spec_errors():
    """Unknown frontend or on_unsupported values raise SpecError listing the valid choices."""
    model, x = nn.Sequential(nn.ReLU()), torch.randn(1, 3)
    with pytest.raises(ai.SpecError, match="frontend must be one of auto, fx"):
        ai.compile(model, x, frontend="tflite")
    with pytest.raises(ai.SpecError, match="on_unsupported must be 'error' or 'opaque'"):
        ai.compile(model, x, on_unsupported="skip")
    with pytest.raises(ai.SpecError, match="cannot tell which frontend"):
        ai.compile(object(), x)


def test_compile_keeps_the_models_training_mode_and_weights():
    """compile leaves a training-mode model in training mode and copies its weights into the graph."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    graph = ai.compile(model, torch.randn(1, 3, 2, 2))
    assert model.training
    assert graph.meta.framework == "torch" and graph.meta.frontend == "fx"
    torch.testing.assert_close(torch.from_numpy(graph.weights["0.weight"]), model[0].weight.detach())
    assert graph.params["1.running_mean"].trainable is False
    assert graph.params["0.weight"].axes == "OIHW"


def test_parallel_wrappers_compile_to_the_bare_modules_graph() -> None:
    """`ai.compile(DataParallel(net))` lowers the module inside (params named by its own paths, not `module.`)."""
    from tests.models import REPLICAS

    replica = REPLICAS["resnet_basic"]
    net = replica.build()
    x = torch.randn(1, 3, 32, 32)
    bare, wrapped = ai.compile(net, x), ai.compile(torch.nn.DataParallel(net), x)
    assert bare.text() == wrapped.text()
    assert [p.source for p in wrapped.params.values()] == [p.source for p in bare.params.values()]
    assert not any(p.source.startswith("module.") for p in wrapped.params.values())
