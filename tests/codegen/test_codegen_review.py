"""Issue 13, codegen findings: settings the torch and Keras printers must carry beyond op and params.

- One weight, two settings (TridentNet): a layer's identity is its op, params *and* settings; the
  second setting calls the functional form on the first layer's weights (F.conv2d in torch,
  keras.ops.conv in Keras), so the weights stay one set under one name.
- `padding="same"` with an even kernel and a non-zero `padding_mode`: the explicit pad uses the
  conv's mode (torch), and Keras expresses replicate/circular as concatenated edge rows.
- dtypes: generated code runs in the model's dtype (float64, float16, bfloat16), on torch and Keras
  targets, from torch and from ONNX; bfloat16 weights travel widened to float32 (numpy has none).
- Keras: a conv with stride and dilation both above 1 runs at stride 1 and keeps every stride-th
  output; transposed convs whose output padding Keras refuses get zero input rows and a crop; a
  transposed conv with stride and dilation both above 1 is refused naming the node.

Equivalence goes through `ai.check` (the DESIGN tolerance, per output dtype), at fraction 0 and 0.5.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
from safetensors.numpy import load_file  # noqa: E402
from torch import nn  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.errors import CodegenError  # noqa: E402
from asgnas_ir.ir.weights import tensor_array  # noqa: E402
from asgnas_ir.testing import load_generated, one_line  # noqa: E402
from asgnas_ir.tolerance import RTOL, loosest, rtol  # noqa: E402
from tests.models import codegen_review as R  # noqa: E402

FRACTIONS = (0.0, 0.5)


def image(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(7)).to(dtype)


def assert_check(model: nn.Module, x: torch.Tensor, target: str, mode: str = "prune") -> None:
    for fraction in FRACTIONS:
        report = ai.check(model, x, target=target, mode=mode, fraction=fraction)
        assert report.ok, (target, mode, fraction, report)


def needs_keras() -> None:
    pytest.importorskip("keras")


# ---- 2. one weight, two settings ---------------------------------------------------------------------


@pytest.mark.parametrize(("build", "target"), [
    (R.trident, "torch"), (R.trident, "keras"),
    (R.trident_module, "torch"), (R.trident_module, "keras"),
    (R.grouped_trident, "torch"),  # Keras refuses it: see the next test
], ids=["parameters-torch", "parameters-keras", "module-torch", "module-keras", "grouped-torch"])
def test_one_weight_with_two_paddings_and_dilations_matches(build, target: str) -> None:  # noqa: ANN001
    if target == "keras":
        needs_keras()
    assert_check(build(), image(1, 3, 12, 12), target)


def test_keras_refuses_shared_grouped_weights_with_other_settings(tmp_path: Path) -> None:
    needs_keras()
    graph = ai.compile(R.grouped_trident(), image(1, 3, 12, 12))
    with pytest.raises(CodegenError, match=r"from 'conv2d'.*weights of layer 'branch'.*groups=2"):
        ai.codegen(graph, target="keras", out_dir=tmp_path)


def test_torch_second_setting_is_a_functional_call_on_the_first_layer(tmp_path: Path) -> None:
    graph = ai.compile(R.trident_module(), image(1, 3, 12, 12))
    ai.codegen(graph, target="torch", out_dir=tmp_path)
    text = (tmp_path / "model.py").read_text()
    assert text.count("nn.Conv2d(8, 8, kernel_size=3, padding=1)") == 1
    assert "F.conv2d(relu, self.branch.weight, self.branch.bias, padding=2, dilation=2)" in one_line(text)
    assert sorted(load_file(str(tmp_path / "weights.safetensors"))) == sorted(
        f"{layer}.{role}" for layer in ("stem", "branch", "head") for role in ("weight", "bias")
    )


def test_keras_second_setting_applies_keras_ops_to_the_first_layers_variables(tmp_path: Path) -> None:
    graph = ai.compile(R.trident_module(), image(1, 3, 12, 12))
    ai.codegen(graph, target="keras", out_dir=tmp_path)
    text = (tmp_path / "model.py").read_text()
    assert "keras.ops.conv(conv2d_padded, branch.kernel, padding=\"valid\", dilation_rate=2) + branch.bias" in one_line(text)
    assert sorted(k for k in load_file(str(tmp_path / "weights.safetensors")) if k.startswith("branch")) == [
        "branch/bias", "branch/kernel",
    ]


class _SharedNormOtherEps(nn.Module):
    """A LayerNorm's params used again with another eps: no functional form is printed for it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return self.norm(y) + F.layer_norm(y, (6,), self.norm.weight, self.norm.bias, eps=1e-2)


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_shared_params_with_other_settings_and_no_functional_form_are_refused(target: str, tmp_path: Path) -> None:
    if target == "keras":
        needs_keras()
    graph = ai.compile(_SharedNormOtherEps().eval(), image(2, 6))
    with pytest.raises(CodegenError, match="uses the (params|weights) of layer 'norm' with other settings"):
        ai.codegen(graph, target=target, out_dir=tmp_path)


# ---- 3. padding modes with explicit (asymmetric) pads ------------------------------------------------


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("kernel", [4, (3, 2), 3], ids=["even", "mixed", "odd"])
@pytest.mark.parametrize("target", ["torch", "keras"])
def test_same_padding_in_the_convs_padding_mode_matches(target: str, kernel: object, mode: str) -> None:
    if target == "keras":
        needs_keras()
    assert_check(R.padded_conv(kernel, "same", mode), image(1, 3, 10, 10), target)


def test_torch_explicit_pad_uses_the_padding_mode(tmp_path: Path) -> None:
    graph = ai.compile(R.padded_conv(4, "same", "replicate"), image(1, 3, 10, 10))
    ai.codegen(graph, target="torch", out_dir=tmp_path)
    text = (tmp_path / "model.py").read_text()
    assert 'self.conv(F.pad(relu, (1, 2, 1, 2), mode="replicate"))' in text
    assert "self.conv = nn.Conv2d(6, 6, kernel_size=4)" in text


class _PadThenConv(nn.Module):
    def __init__(self, mode: str, pads: tuple[int, ...]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 2, 1)
        self.mode, self.pads = mode, pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.pad(torch.relu(self.conv(x)), self.pads, mode=self.mode))


@pytest.mark.parametrize(("mode", "pads"), [("replicate", (2, 1, 1, 3)), ("circular", (1, 2, 2, 1))])
def test_keras_pad_op_in_replicate_and_circular_modes_matches(mode: str, pads: tuple[int, ...]) -> None:
    needs_keras()
    torch.manual_seed(0)
    assert_check(_PadThenConv(mode, pads).eval(), image(1, 3, 9, 9), "keras")


# ---- 11. dtypes --------------------------------------------------------------------------------------

DTYPES = [torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["prune", "erase"])
@pytest.mark.parametrize("target", ["torch", "keras"])
def test_generated_code_runs_in_the_models_dtype(target: str, mode: str, dtype: torch.dtype) -> None:
    if target == "keras":
        needs_keras()
    assert_check(R.small_convnet(dtype), image(2, 3, 12, 12, dtype=dtype), target, mode)


def test_torch_layers_are_built_in_the_params_dtype(tmp_path: Path) -> None:
    graph = ai.compile(R.small_convnet(torch.bfloat16), image(1, 3, 12, 12, dtype=torch.bfloat16))
    ai.codegen(graph, target="torch", out_dir=tmp_path)
    text = (tmp_path / "model.py").read_text()
    assert "self.c1 = nn.Conv2d(3, 8, kernel_size=3, padding=1, dtype=torch.bfloat16)" in text
    assert "self.bn = nn.BatchNorm2d(8, dtype=torch.bfloat16)" in text
    # bfloat16 weights travel widened (numpy has no bfloat16); loading narrows them back exactly
    model = load_generated(tmp_path)
    assert model.c1.weight.dtype == torch.bfloat16
    assert torch.equal(model.c1.weight, R.small_convnet(torch.bfloat16).c1.weight)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_keras_layers_compute_in_the_models_dtype(dtype: torch.dtype, tmp_path: Path) -> None:
    """A float32 Keras layer casts its input to float32, which `check` alone may not notice (float64
    outputs computed in float32 still agree to 1e-4): the generated layers carry the model's dtype."""
    needs_keras()
    from asgnas_ir.testing import run_keras

    x = image(2, 3, 12, 12, dtype=dtype)
    graph = ai.compile(R.small_convnet(dtype), x)
    ai.codegen(graph, target="keras", out_dir=tmp_path)
    name = str(dtype).removeprefix("torch.")
    assert f'layers.Conv2D(8, 3, padding="valid", use_bias=True, dtype="{name}", name="c1")' in one_line((tmp_path / "model.py").read_text())
    (output,) = run_keras(tmp_path, [x])
    assert str(output.dtype) == name


@pytest.mark.parametrize(("build", "dtype", "shape"), [
    (R.small_convnet, torch.float16, (2, 3, 12, 12)),
    (R.small_mlp, torch.float64, (2, 12)),  # onnxruntime's CPU Conv has no float64 kernel
    (R.small_mlp, torch.float16, (2, 12)),
], ids=["conv-float16", "mlp-float64", "mlp-float16"])
def test_onnx_graph_in_another_dtype_generates_torch_in_that_dtype(build, dtype: torch.dtype, shape: tuple[int, ...]) -> None:  # noqa: ANN001
    onnx = pytest.importorskip("onnx")
    model, x = build(dtype), image(*shape, dtype=dtype)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter on purpose: torch says it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["x"])
    proto = onnx.load_from_string(buffer.getvalue())
    for fraction in FRACTIONS:
        report = ai.check(proto, x.numpy(), target="torch", fraction=fraction)
        assert report.ok, (fraction, report)


def test_bfloat16_tensor_arrays_are_exact_float32() -> None:
    tensor = torch.randn(5, 7).to(torch.bfloat16)
    array = tensor_array(tensor)
    assert array.dtype == np.float32
    assert torch.equal(torch.from_numpy(array).to(torch.bfloat16), tensor)


def test_tolerance_follows_the_outputs_precision() -> None:
    assert rtol("float32") == rtol("float64") == RTOL
    assert rtol("float16") == 8 * 2.0**-10
    assert rtol("bfloat16") == 8 * 2.0**-7
    assert loosest(["float32", "bfloat16", "float16", "int64"]) == "bfloat16"
    assert loosest(["int64"]) == "float32"


# ---- 12. Keras: strided dilated convs, transposed convs ----------------------------------------------


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_strided_dilated_conv_matches(target: str) -> None:
    if target == "keras":
        needs_keras()
    assert_check(R.strided_dilated(), image(1, 3, 13, 13), target)


@pytest.mark.parametrize("settings", [
    {"stride": 1, "dilation": 2, "output_padding": 1},  # output padding below the dilation only
    {"stride": 1, "dilation": 3, "output_padding": 2, "padding": 1},
    {"kernel_size": 2, "stride": 3},  # kernel shorter than the stride: Keras' own length is longer
    {"stride": 2, "output_padding": 1, "padding": 1},  # Keras' output_padding, as before
], ids=["op-below-dilation", "op-and-padding", "kernel-below-stride", "native-op"])
@pytest.mark.parametrize("target", ["torch", "keras"])
def test_transposed_conv_output_lengths_match(target: str, settings: dict[str, int]) -> None:
    if target == "keras":
        needs_keras()
    assert_check(R.conv_transpose(**settings), image(1, 3, 7, 7), target)


def test_keras_refuses_a_strided_dilated_transposed_conv_naming_it(tmp_path: Path) -> None:
    graph = ai.compile(R.conv_transpose(stride=2, dilation=2), image(1, 3, 7, 7))
    with pytest.raises(CodegenError, match=r"from 'up'.*stride \(2, 2\) and dilation \(2, 2\)"):
        ai.codegen(graph, target="keras", out_dir=tmp_path)
