"""Issue 14, findings 9 and 10.

9. Generated code runs at any batch size: the Keras target writes no `batch_size` in `keras.Input`
   and a reshape that keeps the batch writes it as -1; the torch target writes `x.shape[0]` only
   where the batch really goes (symbolic dims, `frontends/_symbolic.py`). `ai.check` passes, then the
   generated model at batch 1, 3 and 4 equals the source model at those batches.
10. Keras dtype policies (mixed_float16, mixed_bfloat16, per-layer float16/bfloat16) are carried
   into the IR (values in each layer's compute dtype, params in its variable dtype, explicit casts
   where Keras casts) and into the generated Keras, torch and ONNX code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.testing import assert_outputs_match, run_keras, run_torch  # noqa: E402
from tests.models import keras_policies_batch as M  # noqa: E402

keras = pytest.importorskip("keras")

BATCHES = (1, 3, 4)


def _run(target: str, folder: str, x: np.ndarray) -> list[np.ndarray]:
    return run_keras(folder, [x]) if target == "keras" else run_torch(folder, [x])


# ---- 9. batch-agnostic generated code ------------------------------------------------------------------


KERAS_BATCH = [(M.keras_flatten_dense, (8, 8, 3)), (M.keras_reshape, (10,))]


@pytest.mark.parametrize("target", ["keras", "torch"])
@pytest.mark.parametrize(("build", "shape"), KERAS_BATCH, ids=lambda v: getattr(v, "__name__", ""))
def test_keras_model_generated_code_runs_at_any_batch(build, shape, target: str) -> None:
    model = build()
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype("float32")
    for fraction in (0.0, 0.5):
        assert ai.check(model, x, target=target, fraction=fraction).ok, fraction
    with tempfile.TemporaryDirectory() as folder:
        report = ai.check(model, x, target=target, fraction=0.0, keep_weights=True, out_dir=folder)
        assert report.ok, report
        if target == "keras":
            text = Path(folder, "model.py").read_text()
            assert "batch_size" not in text
        for n in BATCHES:
            xb = np.random.default_rng(n).standard_normal((n, *shape)).astype("float32")
            assert_outputs_match(_run(target, folder, xb), [np.asarray(model(xb))])


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_torch_view_and_flatten_run_at_any_batch(target: str) -> None:
    model = M.torch_view()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for fraction in (0.0, 0.5):
        assert ai.check(model, x, target=target, fraction=fraction).ok, fraction
    with tempfile.TemporaryDirectory() as folder:
        assert ai.check(model, x, target=target, fraction=0.0, keep_weights=True, out_dir=folder).ok
        for n in BATCHES:
            xb = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(n))
            with torch.no_grad():
                expected = model(xb)
            assert_outputs_match(_run(target, folder, xb.numpy()), expected)


def test_symbolic_dims_follow_the_batch_where_it_goes() -> None:
    """Unit: the batch is symbolic wherever it ends up: kept at axis 0, folded into another axis (an
    expression in N), or moved by a permute; sizes that do not follow it stay numbers."""

    class Fold(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            kept = x.reshape(x.size(0), -1)
            folded = x.reshape(-1, 4)
            moved = x.permute(1, 0, 2)
            return kept.sum() + folded.sum() + moved.sum()

    graph = ai.compile(Fold(), torch.randn(2, 3, 4))
    assert graph.meta.symbols == {"N": 2}
    assert graph.values[graph.inputs[0]].dims == ("N", 3, 4)
    symbolic = {graph.values[n.outputs[0]].dims for n in graph.nodes if n.op.value in ("reshape", "flatten", "permute")}
    assert {("N", 12), ("3*N", 4), (3, "N", 4)} <= symbolic


# ---- 10. dtype policies --------------------------------------------------------------------------------

POLICY_MODELS = [
    (M.keras_mixed_layers, (8, 8, 3), "mixed_float16"),
    (M.keras_global_policy, (12,), "mixed_float16"),
    (lambda: M.keras_global_policy("mixed_bfloat16"), (12,), "mixed_bfloat16"),
    (M.keras_bfloat16_layer, (10,), '"bfloat16"'),
]


@pytest.mark.parametrize("target", ["keras", "torch"])
@pytest.mark.parametrize(("build", "shape", "policy"), POLICY_MODELS, ids=["layers", "global16", "globalbf16", "bf16layer"])
def test_dtype_policy_is_carried_into_ir_and_code(build, shape, policy: str, target: str) -> None:
    model = build()
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype("float32")
    graph = ai.compile(model, x)
    compute = "bfloat16" if "bfloat16" in policy else "float16"
    dtypes = {v.dtype for v in graph.values.values()}
    assert compute in dtypes, dtypes  # the IR computes where Keras computes
    assert any(n.op.value == "cast" for n in graph.nodes)
    assert graph.values[graph.outputs[0]].dtype == "float32"
    for mode in ("prune", "erase"):
        for fraction in (0.0, 0.5):
            report = ai.check(model, x, target=target, mode=mode, fraction=fraction)
            assert report.ok, (mode, fraction, report)
    with tempfile.TemporaryDirectory() as folder:
        ai.codegen(graph, target=target, out_dir=folder)
        text = Path(folder, "model.py").read_text()
        assert (policy if target == "keras" else f"torch.{compute}") in text


def test_mixed_float16_policy_to_onnx_casts_the_weights() -> None:
    """codegen-onnx: a float16 node with float32 weights reads a Cast of each initializer (ONNX
    refuses a Gemm mixing the two). Keras convs are channels-last (not in codegen-onnx yet) and
    onnxruntime has no bfloat16 Gemm on CPU, so the dense float16 model is the one checked here."""
    model = M.keras_global_policy()
    x = np.random.default_rng(0).standard_normal((2, 12)).astype("float32")
    for mode in ("prune", "erase"):
        for fraction in (0.0, 0.5):
            report = ai.check(model, x, target="onnx", mode=mode, fraction=fraction)
            assert report.ok, (mode, fraction, report)


def test_policy_cast_nodes_sit_where_keras_rounds() -> None:
    """Unit: a mixed_float16 Dense reads a float16 cast of its float32 input with float32 params and
    returns float16; the float32 head casts back up."""
    graph = ai.compile(M.keras_mixed_layers(), np.zeros((1, 8, 8, 3), "float32"))
    fc1 = next(n for n in graph.nodes if n.op.value == "linear" and n.source == "fc1")
    assert graph.values[fc1.inputs[0]].dtype == "float16" and graph.values[fc1.outputs[0]].dtype == "float16"
    assert {graph.params[p].dtype for p in fc1.params.values()} == {"float32"}
    head = next(n for n in graph.nodes if n.source == "head" and n.op.value == "linear")
    cast = graph.producer(head.inputs[0])
    assert cast is not None and cast.op.value == "cast" and cast.attrs.dtype == "float32"


def test_keras_policy_without_a_keras_equivalent_is_refused_by_name() -> None:
    """A node with float16 weights computing in float32 has no Keras policy: codegen names it."""
    from asgnas_ir.errors import CodegenError
    from asgnas_ir.passes.codegen.keras_codegen import generate_keras

    graph = ai.compile(M.keras_mixed_layers(), np.zeros((1, 8, 8, 3), "float32"))
    fc1 = next(n for n in graph.nodes if n.op.value == "linear" and n.source == "fc1")
    for name in fc1.params.values():
        graph.params[name].dtype = "float64"
    with pytest.raises(CodegenError, match="fc1"):
        generate_keras(graph)
