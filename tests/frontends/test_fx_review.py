"""Issue 13, fx frontend: in-place writes lowered as rebinding (or refused), arguments honoured or
refused, training flags left as they were, unbatched linear inputs refused.

The ONNX path (torch.onnx functionalises in-place ops) is the reference the fx path must agree with.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import asgnas_ir as ai
from asgnas_ir.errors import FrontendError
from asgnas_ir.ir.ops import Op
from tests.models import fx_review as R

REBINDING = sorted(R.REBINDING)


def _inputs(name: str) -> torch.Tensor:
    shape = R.REBINDING[name][1]
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


def _assert_ok(report: ai.CheckReport) -> None:
    assert report.ok, f"max |diff| {report.max_abs_diff} > tolerance {report.tolerance}"


# ---- finding 1: in-place ops ---------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.5])
@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("name", REBINDING)
def test_in_place_writes_are_rebound_through_fx(name: str, mode: str, fraction: float) -> None:
    model = R.REBINDING[name][0]()
    _assert_ok(ai.check(model, _inputs(name), mode=mode, fraction=fraction, frontend="fx"))


@pytest.mark.parametrize("fraction", [0.0, 0.5])
@pytest.mark.parametrize("name", REBINDING)
def test_onnx_reference_agrees_on_the_same_replicas(name: str, fraction: float) -> None:
    model = R.REBINDING[name][0]()
    _assert_ok(ai.check(model, _inputs(name), mode="prune", fraction=fraction, frontend="onnx"))


def test_fx_and_onnx_find_the_same_groups_on_in_place_models() -> None:
    for name in ("inplace_residual", "augmented_assign", "inplace_relu_reused"):
        model = R.REBINDING[name][0]()
        x = _inputs(name)
        fx_groups = len(ai.search_space(ai.compile(model, x, frontend="fx")).groups)
        onnx_groups = len(ai.search_space(ai.compile(model, x, frontend="onnx")).groups)
        assert fx_groups == onnx_groups, name


def test_later_readers_see_the_written_value() -> None:
    graph = ai.compile(R.inplace_residual(), _inputs("inplace_residual"), frontend="fx")
    [add] = [n for n in graph.nodes if n.op == Op.ADD]
    [out] = graph.outputs
    [final] = [n for n in graph.nodes if out in n.outputs]
    assert final.op == Op.RELU and final.inputs == [add.outputs[0]]


def test_rebinding_also_holds_when_the_shape_run_is_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """The meta shortcuts and a real run must record the same writes and aliases."""
    from asgnas_ir.frontends.torch_fx import driver

    monkeypatch.setattr(driver, "_observe_on_meta", lambda *args: None)
    for name in REBINDING:
        _assert_ok(ai.check(R.REBINDING[name][0](), _inputs(name), mode="prune", fraction=0.0, frontend="fx"))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (R.InplaceSliceWrite, ["fx node 'mul_'", "Tensor.mul_", "fx node 'c1'", "out of place"]),
        (R.InplaceViewWrite, ["fx node 'add_'", "Tensor.add_", "fx node 'c1'", "out of place"]),
        (R.InputMutation, ["fx node 'mul_'", "forward input 'x'", "out of place"]),
    ],
)
def test_untrackable_writes_are_refused_with_op_and_place(model: type[nn.Module], expected: list[str]) -> None:
    with pytest.raises(FrontendError) as info:
        ai.compile(model().eval(), torch.randn(1, 3, 8, 8), frontend="fx")
    for text in expected:
        assert text in str(info.value)


def test_refusal_names_the_module_the_write_is_in() -> None:
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = R.InplaceSliceWrite()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x)

    with pytest.raises(FrontendError, match="in module 'block'"):
        ai.compile(Outer().eval(), torch.randn(1, 3, 8, 8), frontend="fx")


def test_a_write_to_a_view_whose_base_is_not_read_again_is_exact() -> None:
    class TailWrite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.c1(x)
            head = y[:, :4]
            head.mul_(2.0)
            return self.c2(head)

    _assert_ok(ai.check(TailWrite().eval(), torch.randn(1, 3, 8, 8), fraction=0.0, frontend="fx"))


def test_inplace_relu_modules_keep_resnet_style_models_exact() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.c1, self.bn, self.c2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x
            out = self.relu(self.bn(self.c1(x)))
            out = self.c2(out)
            out += identity
            return self.relu(out)

    for fraction in (0.0, 0.5):
        _assert_ok(ai.check(Block().eval(), torch.randn(1, 4, 8, 8), fraction=fraction, frontend="fx"))


# ---- finding 4 and the argument audit -----------------------------------------------------------


def test_floor_division_is_refused_not_lowered_as_true_division() -> None:
    with pytest.raises(FrontendError, match=r"fx node 'div'.*torch.div\(rounding_mode='floor'\)"):
        ai.compile(R.floor_divide(), torch.randn(1, 3, 8, 8), frontend="fx")


@pytest.mark.parametrize("fraction", [0.0, 0.5])
@pytest.mark.parametrize("mode", ["prune", "erase"])
def test_avg_pool_divisor_override_is_honoured(mode: str, fraction: float) -> None:
    _assert_ok(ai.check(R.avg_pool_divisor(), torch.randn(1, 3, 8, 8), mode=mode, fraction=fraction, frontend="fx"))


def test_avg_pool_module_divisor_override_is_honoured() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(2, divisor_override=3), nn.Conv2d(4, 2, 1)).eval()
    _assert_ok(ai.check(model, torch.randn(1, 3, 8, 8), fraction=0.0, frontend="fx"))


class _Call(nn.Module):
    """conv -> `fn` -> conv, for checking how one call's arguments are lowered."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.fn(self.c1(x)))


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda y: torch.add(y, y, alpha=2.0), r"torch.add\(alpha=2.0\)"),
        (lambda y: torch.sub(y, 1.0, alpha=3), r"torch.sub\(alpha=3\)"),
        (lambda y: F.dropout(y, 0.5), "training=True drops"),
        (lambda y: torch.softmax(y, 1, dtype=torch.float64).float(), "dtype=torch.float64"),
        (lambda y: y.sum(1, keepdim=True, dtype=torch.float64).float().expand_as(y), "dtype=torch.float64"),
        (lambda y: torch.mul(y, 2.0, out=None) + torch.mean(y, (2, 3), True, dtype=torch.float64).float(), "dtype="),
        (lambda y: F.avg_pool2d(y, 3, 2, 1, True, False, 1), "divisor_override"),
        (lambda y: torch.clamp(y, min=y.mean()), "tensor min"),
    ],
)
def test_arguments_the_converter_cannot_honour_are_refused(fn, expected: str) -> None:  # noqa: ANN001
    with pytest.raises(FrontendError, match=expected):
        ai.compile(_Call(fn).eval(), torch.randn(1, 3, 8, 8), frontend="fx")


@pytest.mark.parametrize(
    "fn",
    [
        lambda y: F.gelu(y, approximate="tanh"),
        lambda y: F.leaky_relu(y, 0.3, True),
        lambda y: F.hardtanh(y, -0.5, 0.25),
        lambda y: torch.add(y, y, alpha=1),
        lambda y: F.dropout(y, 0.3, False),
        lambda y: y.softmax(1, dtype=torch.float32),
        lambda y: F.elu(y, 0.5),
    ],
)
def test_honoured_arguments_are_lowered_exactly(fn) -> None:  # noqa: ANN001
    for fraction in (0.0, 0.5):
        _assert_ok(ai.check(_Call(fn).eval(), torch.randn(1, 3, 8, 8), fraction=fraction, frontend="fx"))


def test_scaled_dot_product_attention_with_dropout_is_refused() -> None:
    class Attend(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, q, q, dropout_p=0.1)

    with pytest.raises(FrontendError, match=r"dropout_p=0.1"):
        ai.compile(Attend().eval(), torch.randn(1, 2, 4, 8), frontend="fx")


# ---- finding 9: training flags ------------------------------------------------------------------


def _flags(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


@pytest.mark.parametrize("frontend", ["fx", "onnx"])
def test_compile_leaves_every_training_flag_as_it_was(frontend: str) -> None:
    model = R.FrozenNormDropout()
    model.train()
    model.bn.eval()
    before = _flags(model)
    ai.compile(model, torch.randn(2, 3, 8, 8), frontend=frontend)
    assert _flags(model) == before

    model.eval()
    model.drop.train()
    before = _flags(model)
    ai.compile(model, torch.randn(2, 3, 8, 8), frontend=frontend)
    assert _flags(model) == before


def test_training_flags_are_restored_when_compile_fails() -> None:
    class Failing(R.FrozenNormDropout):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.div(super().forward(x), 3, rounding_mode="floor")

    model = Failing()
    model.train()
    model.bn.eval()
    before = _flags(model)
    with pytest.raises(FrontendError):
        ai.compile(model, torch.randn(2, 3, 8, 8), frontend="fx")
    assert _flags(model) == before


# ---- finding 12: unbatched linear input ---------------------------------------------------------


def test_unbatched_linear_input_is_refused_at_compile_time() -> None:
    with pytest.raises(FrontendError, match=r"forward input 'x' of shape \[8\].*batch dimension"):
        ai.compile(R.UnbatchedLinear().eval(), torch.randn(8), frontend="fx")


def test_the_same_model_with_a_batch_axis_checks() -> None:
    for fraction in (0.0, 0.5):
        _assert_ok(ai.check(R.UnbatchedLinear().eval(), torch.randn(1, 8), fraction=fraction, frontend="fx"))



@pytest.mark.parametrize(
    ("model", "shape", "expected"),
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)), (3, 8, 8), r"Conv2d '0' reads the forward input"),
        (nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU()), (3, 8), r"Conv1d '0' reads the forward input"),
        (nn.Sequential(nn.Flatten(0), nn.Linear(6, 2)), (2, 3), r"nn.Linear '1' reads the value"),
    ],
)
def test_other_unbatched_layer_inputs_are_refused_naming_the_layer(model: nn.Module, shape: tuple, expected: str) -> None:
    with pytest.raises(FrontendError, match=expected + r".*batch dimension"):
        ai.compile(model.eval(), torch.randn(shape), frontend="fx")


def test_an_opaque_in_place_op_is_rebound_too() -> None:
    """Writes are found from version counters, not from a list of names: an op the frontend keeps
    opaque (`abs_`) still rebinds the tensor it writes."""

    class Opaque(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            y.abs_()
            return self.b(y)

    graph = ai.compile(Opaque().eval(), torch.randn(1, 3, 8, 8), frontend="fx", on_unsupported="opaque")
    [opaque] = [n for n in graph.nodes if n.op == Op.OPAQUE]
    [last] = [n for n in graph.nodes if n.source == "b"]
    assert last.inputs == opaque.outputs
