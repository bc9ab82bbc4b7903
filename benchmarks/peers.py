"""The peer tools the benchmarks compare against: only-train-once (OTO) 3.0.1 and Torch-Pruning.

Both are optional: they live in the separate benchmark venv that `make bench` builds (`.venv-bench`),
never in the project's own environment. `available()` says which ones import here.

NOTE: [OTO 3.0.1 on current torch] OTO 3.0.1 reaches into two private torch.onnx names that moved
when torch 2.9 put the TorchScript exporter under `torch.onnx._internal.torchscript_exporter`:
the module `torch.onnx._globals` (it sets the export opset on it) and the function
`torch.onnx._optimize_graph` (its trace clean-up). `_alias_torch_onnx_privates()` points the old
names at the new home before OTO is imported; nothing else about OTO is changed.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

OTO_VERSION = "3.0.1"


def _alias_torch_onnx_privates() -> None:
    if "torch.onnx._globals" not in sys.modules:
        try:
            importlib.import_module("torch.onnx._globals")
        except ModuleNotFoundError:
            moved = importlib.import_module("torch.onnx._internal.torchscript_exporter._globals")
            sys.modules["torch.onnx._globals"] = moved
            torch.onnx._globals = moved  # type: ignore[attr-defined]
    if not hasattr(torch.onnx, "_optimize_graph"):
        utils = importlib.import_module("torch.onnx._internal.torchscript_exporter.utils")
        torch.onnx._optimize_graph = utils._optimize_graph  # type: ignore[attr-defined]


def oto_module() -> ModuleType | None:
    """`only_train_once`, imported with the torch.onnx aliases in place; None when it is not installed."""
    try:
        _alias_torch_onnx_privates()
        return importlib.import_module("only_train_once")
    except ImportError:
        return None


def tp_module() -> ModuleType | None:
    """`torch_pruning`, or None when it is not installed."""
    try:
        return importlib.import_module("torch_pruning")
    except ImportError:
        return None


def available() -> dict[str, str | None]:
    """Peer name → installed version (None when missing)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name, dist in (("OTO", "only-train-once"), ("Torch-Pruning", "torch-pruning")):
        try:
            found[name] = version(dist)
        except PackageNotFoundError:
            found[name] = None
    return found


@contextlib.contextmanager
def quiet() -> Any:
    """OTO prints a line per graph build; keep the benchmark tables readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def oto_build(model: torch.nn.Module, example: torch.Tensor) -> Any:
    """OTO's analysis: `OTO(model, dummy_input)` (trace, dependency graph, node groups; prune mode)."""
    oto = oto_module()
    if oto is None:
        raise RuntimeError("only-train-once is not installed; run `make bench` (it builds .venv-bench with the peers)")
    with quiet():
        return oto.OTO(model, example)


def tp_build(model: torch.nn.Module, example: torch.Tensor) -> Any:
    """Torch-Pruning's analysis: `DependencyGraph().build_dependency(model, example_inputs=...)`."""
    tp = tp_module()
    if tp is None:
        raise RuntimeError("torch-pruning is not installed; run `make bench` (it builds .venv-bench with the peers)")
    return tp.DependencyGraph().build_dependency(model, example_inputs=example)


def oto_random_subnet_diff(oto_instance: Any, example: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """OTO's own round trip on an `oto_build` result: zero random groups, build its compressed model,
    and compare it with the zeroed full model. Returns (max |full - compressed|, max |full|)."""
    torch.manual_seed(seed)
    with quiet(), tempfile.TemporaryDirectory() as out:
        oto_instance.random_set_zero_groups()
        oto_instance.construct_subnet(out_dir=out)
        full = torch.load(Path(oto_instance.full_group_sparse_model_path), weights_only=False).eval()
        compressed = torch.load(Path(oto_instance.compressed_model_path), weights_only=False).eval()
        with torch.no_grad():
            reference = full(example)
            return float((reference - compressed(example)).abs().max()), float(reference.abs().max())
