"""Golden files: the generated source is part of the contract (readable, deterministic)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import asgnas_ir as ai
from asgnas_ir.passes.codegen.torch_codegen import generate_torch
from tests.models import REPLICAS, example_inputs

GOLDEN = Path(__file__).parent / "golden"
CASES = ["resnet_basic", "densenet", "convnext", "vit_encoder"]


def _pruned_source(name: str) -> str:
    replica = REPLICAS[name]
    graph = ai.compile(replica.build(), example_inputs(replica))
    space = ai.search_space(graph)
    sub = ai.subnet(graph, space, ai.random_zero_groups(graph, space, 0.5, seed=0))
    return generate_torch(sub).files["model.py"]


@pytest.mark.parametrize("name", CASES)
def test_generated_torch_source_matches_golden(name: str, update_golden: bool) -> None:
    """The pruned model's model.py is byte-for-byte the reviewed golden file (refresh: --update-golden)."""
    text = _pruned_source(name)
    path = GOLDEN / f"{name}.torch.py"
    if update_golden or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"generated code for {name} changed; review and rerun with --update-golden"


def test_generation_is_deterministic() -> None:
    """Compiling and generating twice gives identical source."""
    assert _pruned_source("mobilenet_v3") == _pruned_source("mobilenet_v3")


@pytest.mark.parametrize("name", CASES)
def test_golden_files_pass_ruff(name: str) -> None:
    """Generated code is lint-clean under ruff's pyflakes, pycodestyle and isort rules."""
    path = GOLDEN / f"{name}.torch.py"
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E,F,W,I", "--line-length", "120", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
