"""The bundled super-networks: their erase-mode search spaces (golden) and exact sub-networks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.examples.supernets import SUPERNETS

GOLDEN = Path(__file__).parent / "golden"
# The structure counts follow from each network's design (see its module docstring).
EXPECTED_COUNTS = {"stacked_unets": 6, "super_resnet": 24, "darts_cell": 81, "regnet_super": 11}


def _space(name: str) -> ai.SearchSpace:
    torch.manual_seed(0)
    graph = ai.compile(SUPERNETS[name]().eval(), torch.randn(1, 1, 8, 8))
    return ai.search_space(graph, mode="erase")


@pytest.mark.parametrize("name", sorted(SUPERNETS))
def test_search_space_matches_golden(name: str, update_golden: bool) -> None:
    """Which removal structures are found, their nodes and their hierarchy are the reviewed ones."""
    space = _space(name)
    summary = [{"id": g.id, "parent": g.parent, "nodes": g.nodes} for g in space.groups]
    assert len(summary) == EXPECTED_COUNTS[name]
    path = GOLDEN / f"{name}.erase.json"
    if update_golden or not path.exists():
        path.write_text(json.dumps(summary, indent=1) + "\n")
    assert summary == json.loads(path.read_text())


def test_stacked_unets_hierarchy_follows_the_paper() -> None:
    """Each U-Net's bottleneck sits in its decoder stage, which sits in its output branch; removing an output
    branch is valid and leaves the other U-Net (OTOv3's StackedUnets example)."""
    space = _space("stacked_unets")
    roots = [g for g in space.groups if g.parent is None]
    assert [g.nodes[0] for g in roots] == ["unet1_out_0", "unet2_out_0"]
    for root in roots:
        chain = [g for g in space.groups if g.parent == root.id]
        assert len(chain) == 1 and [g for g in space.groups if g.parent == chain[0].id]
    assert space.is_valid([roots[0].id]) and not space.is_valid([r.id for r in roots])


@pytest.mark.parametrize("name", sorted(SUPERNETS))
def test_erase_check_passes(name: str) -> None:
    """A random valid half of the removal structures gives a sub-network equal to the zeroed super-network."""
    torch.manual_seed(0)
    report = ai.check(SUPERNETS[name](), torch.randn(2, 1, 8, 8), mode="erase", fraction=0.5, seed=0)
    assert report.ok, report
    assert report.flops_sub < report.flops_full
