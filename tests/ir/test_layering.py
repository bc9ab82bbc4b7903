"""The layers point one way (issue 19, item 4): the IR imports no frontend and no backend, the passes
no backend; `Graph.update_weights` reads a live model through the weight readers the backends register
(NOTE: [Weight readers] in `asgnas_ir.ir.weights`), or a plain mapping of param source to array."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import asgnas_ir as ai
from asgnas_ir.ir.weights import weight_readers
from tests.ir.test_graph import tiny_graph

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module a file imports, at any depth (lazy imports included); a
    `from a import b` counts as importing `a.b` too, since `b` may be a module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (banned by the ruff config)"
            base = node.module or ""
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """`file:line imports name` for each import under `folder` of a forbidden package (by its import
    name `asgnas_ir.<pkg>` or its folder name, which the installed package never answers to)."""
    prefixes = tuple(p for pkg in forbidden for p in (f"asgnas_ir.{pkg}", pkg))
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no python files under {folder}"
    return [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imported_modules(path)
        if any(name == p or name.startswith(p + ".") for p in prefixes)
    ]


def test_the_ir_imports_no_frontend_backend_or_pass() -> None:
    assert violations("asgnas_ir/ir", ("frontends", "backends", "passes")) == []


def test_the_passes_import_no_backend() -> None:
    assert violations("passes", ("backends",)) == []


def test_the_tensorflow_backend_imports_no_torch() -> None:
    """A Keras user needs no torch: what the two backends share lives in `backends/search` (issue 20)."""
    assert violations("backends/tensorflow", ("backends.torch",)) == []
    torch_imports = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / "backends/tensorflow").rglob("*.py"))
        for line, name in imported_modules(path)
        if name == "torch" or name.startswith("torch.")
    ]
    assert torch_imports == []


def test_the_scan_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    """The scan itself: an import inside a function and `from asgnas_ir import backends` both count."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from asgnas_ir import backends\n    import asgnas_ir.frontends.keras\n")
    names = [name for _, name in imported_modules(module)]
    assert {"asgnas_ir.backends", "asgnas_ir.frontends.keras"} <= set(names)


def test_import_registers_the_readers_without_importing_a_framework() -> None:
    code = (
        "import sys, asgnas_ir\n"
        "from asgnas_ir.ir.weights import weight_readers\n"
        "print(','.join(weight_readers()))\n"
        "print(','.join(m for m in ('torch', 'tensorflow', 'keras', 'onnx') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    readers, frameworks = out.splitlines()
    assert readers.split(",") == ["torch", "keras"]
    assert frameworks == ""


# ---- update_weights ------------------------------------------------------------------------------


def test_update_weights_reads_a_plain_mapping_of_arrays() -> None:
    """A dict keyed by param source (numpy arrays, nested lists) replaces the weights, copied."""
    graph = tiny_graph()
    new = {p.source: np.full(p.shape, 0.5, np.float32) for p in graph.params.values()}
    new["features.1.num_batches_tracked"] = np.array(3, np.int64)
    new["features.0.bias"] = [1.0, 2.0, 3.0, 4.0]
    graph.update_weights(new)
    assert (graph.weights["conv.weight"] == 0.5).all()
    assert graph.weights["conv.bias"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert graph.weights["bn.num_batches_tracked"] == 3
    new["head.fc.weight"][0, 0] = 9.0  # the graph holds a copy
    assert graph.weights["fc.weight"][0, 0] == 0.5


def test_update_weights_keeps_its_errors_for_missing_and_mismatched_params() -> None:
    graph = tiny_graph()
    full = {p.source: np.zeros(p.shape, np.float32) for p in graph.params.values()}
    missing = {k: v for k, v in full.items() if k != "features.0.bias"}
    with pytest.raises(
        ai.IRValidationError,
        match=r"param '@conv\.bias': the model has no parameter or buffer 'features\.0\.bias'",
    ):
        graph.update_weights(missing)
    wrong = {**full, "head.fc.weight": np.zeros((3, 4), np.float32)}
    with pytest.raises(
        ai.IRValidationError,
        match=r"'head\.fc\.weight' has shape \[3, 4\], the graph declares \[2, 4\]; recompile",
    ):
        graph.update_weights(wrong)
    assert graph.weights["conv.bias"].any()  # a failed update changes nothing


def test_update_weights_names_a_model_it_cannot_read() -> None:
    class Opaque:
        pass

    with pytest.raises(
        ai.IRValidationError, match=r"cannot read the weights of a .*Opaque.*mapping of each param's source"
    ):
        tiny_graph().update_weights(Opaque())


def test_update_weights_reads_a_torch_model_its_state_dict_and_a_wrapped_one() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 2)
    ).eval()
    graph = ai.compile(model, torch.randn(3, 4))
    assert "torch" in weight_readers()
    with torch.no_grad():
        model[0].weight.fill_(0.25)
        model[1].running_mean.fill_(-1.0)
    graph.update_weights(model)
    assert (graph.weights["0.weight"] == 0.25).all() and (graph.weights["1.running_mean"] == -1.0).all()
    with torch.no_grad():
        model[3].weight.fill_(2.0)
    graph.update_weights(model.state_dict())
    assert (graph.weights["3.weight"] == 2.0).all()
    with torch.no_grad():
        model[3].weight.fill_(3.0)
    graph.update_weights(torch.nn.DataParallel(model))  # read through the wrapper, as ai.compile does
    assert (graph.weights["3.weight"] == 3.0).all()
    with pytest.raises(ai.IRValidationError, match="has no parameter"):
        graph.update_weights(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["attention", "lora_dense", "lora_conv"])
def test_update_weights_reads_a_keras_model_in_the_ir_view(name: str) -> None:
    """The Keras reader gives what the frontend stored (MultiHeadAttention kernels reshaped, LoRA
    kernels merged), then the trained values."""
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    from tests.models import keras_review as R

    model, x = getattr(R, name)()
    graph = ai.compile(model, x)
    compiled = {k: np.array(v) for k, v in graph.weights.items()}
    graph.update_weights(model)
    assert compiled.keys() == graph.weights.keys()
    for key, value in compiled.items():
        np.testing.assert_allclose(graph.weights[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
    head = next(v for v in model.trainable_variables if v.path.startswith("head") or "d2" in v.path)
    head.assign(np.full(tuple(head.shape), 0.75, "float32"))
    graph.update_weights(model)
    changed = [k for k, v in graph.weights.items() if not np.array_equal(v, compiled[k])]
    assert changed and all(k.startswith(("head/", "d2/")) for k in changed)
