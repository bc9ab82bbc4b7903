"""`asgnas viz IR.json -o FILE.svg|.html|.dot [--mode M]`: files written, exit codes 0 and 2."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.examples.supernets import SUPERNETS

ROOT = Path(__file__).resolve().parents[2]


def asgnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asgnas_ir.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def ir_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = SUPERNETS["stacked_unets"](num_classes=10, in_channels=1).eval()
    path = tmp_path_factory.mktemp("viz") / "unets.json"
    ai.compile(net, torch.randn(1, 1, 8, 8)).save(path)
    path.with_suffix(".safetensors").unlink()  # the picture needs the structure only
    return path


def test_viz_writes_an_svg(ir_file: Path, tmp_path: Path) -> None:
    svg = tmp_path / "out" / "graph.svg"
    result = asgnas("viz", str(ir_file), "-o", str(svg))
    assert result.returncode == 0, result.stderr
    assert "mode both" in result.stdout and "6 removal structures" in result.stdout
    root = ET.parse(svg).getroot()
    assert len([el for el in root.iter() if "data-node" in el.attrib]) == 56


@pytest.mark.slow
def test_viz_writes_html_and_dot_in_the_mode_asked(ir_file: Path, tmp_path: Path) -> None:
    page = tmp_path / "graph.html"
    assert asgnas("viz", str(ir_file), "-o", str(page), "--mode", "prune").returncode == 0
    assert "<svg" in page.read_text() and 'data-mode="prune"' in page.read_text()
    dot = tmp_path / "graph.dot"
    result = asgnas("viz", str(ir_file), "-o", str(dot), "--mode", "erase")
    assert result.returncode == 0 and "mode erase" in result.stdout
    assert dot.read_text().startswith("digraph")
    assert asgnas("viz", str(ir_file), "-o", str(dot), "--mode", "channels").returncode == 2  # argparse choices


@pytest.mark.parametrize(
    ("output", "ir", "needle"),
    [
        ("graph.png", None, "'.png' is not one of .svg"),
        ("graph.svg", "missing.json", "does not exist"),
    ],
)
def test_viz_bad_suffix_or_missing_ir_exits_2(ir_file: Path, tmp_path: Path, output: str, ir: str | None, needle: str) -> None:
    result = asgnas("viz", str(tmp_path / ir) if ir else str(ir_file), "-o", str(tmp_path / output))
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / output).exists()
