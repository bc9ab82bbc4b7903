"""Helpers for tests of asgnas-ir and of code built on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asgnas_ir.ir.graph import Graph
from asgnas_ir.spec import import_file


def load_generated(folder: str | Path) -> Any:
    """The model that `folder/model.py` (written by codegen-torch) builds, with its weights, in eval mode."""
    folder = Path(folder)
    return import_file(folder / "model.py", "asgnas_generated").load(folder / "weights.safetensors")


def emit_and_load(graph: Graph, folder: str | Path) -> Any:
    """Generate PyTorch code for `graph` into `folder` and return the loaded model."""
    from asgnas_ir.api import codegen

    codegen(graph, target="torch", out_dir=folder)
    return load_generated(folder)
