"""Erase-mode follow-ups (issue 13): a divisor goes with its structure but is never zeroed, a learned
offset the structure owns is zeroed with it, and GOLD gates the last layer a structure owns.

Replicas: tests/models/erase_followups.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.backends.search import ArchitectureSpace
from asgnas_ir.passes.analysis.segments import build_segments, owned_params, segment_zero_invariant
from asgnas_ir.tolerance import outputs_match
from tests.models import erase_followups as em

MODES = ("erase", "both")
FRONTENDS = ("fx", "onnx")


def _compile(name: str, frontend: str = "fx") -> ai.Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ONNX exporter's own warnings
        return ai.compile(em.build(name), em.example_input(), frontend=frontend)


def _check(name: str, mode: str, fraction: float, frontend: str, seed: int = 0) -> ai.CheckReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ai.check(em.build(name), em.example_input(), mode=mode, fraction=fraction, seed=seed, frontend=frontend)


def _segment(graph: ai.Graph, first: str) -> list[str]:
    segments, segment_of = build_segments(graph)
    return segments.segments[segment_of[first]].nodes


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("name", sorted(em.OK))
def test_branches_that_zero_exactly_are_offered(name: str, frontend: str) -> None:
    graph = _compile(name, frontend)
    groups = ai.search_space(graph, mode="erase").groups
    assert len(groups) == len(em.OK[name][1])
    if frontend == "fx":  # ONNX names its nodes after the exporter's ops
        assert sorted(g.nodes[0] for g in groups) == sorted(em.OK[name][1])


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("name", sorted(em.BAD))
def test_branches_that_are_not_zero_when_zeroed_are_refused(name: str, frontend: str) -> None:
    assert ai.search_space(_compile(name, frontend), mode="erase").groups == []


@pytest.mark.parametrize("name", ["div_scale", "bn_div_scale"])
def test_a_divisor_is_removed_with_its_structure_but_never_zeroed(name: str) -> None:
    """Zeroing `scale` too would give 0 / 0 = NaN; left as it is, 0 / scale = 0."""
    graph = _compile(name)
    nodes = _segment(graph, "c1")
    owned = owned_params(graph, nodes)
    assert "scale" not in owned and "c1.weight" in owned
    assert segment_zero_invariant(graph, nodes, owned)
    assert not segment_zero_invariant(graph, nodes, owned | {"scale"})
    (group,) = ai.search_space(graph, mode="erase").groups
    assert {s.param: s.kind for s in group.slices}["scale"] == "stat"
    sub = ai.subnet(graph, ai.search_space(graph, mode="erase"), [group.id])
    assert "scale" not in sub.params and "c1.weight" not in sub.params


def test_a_learned_offset_the_branch_owns_is_zeroed_with_it() -> None:
    """`c1(y) + off`: 0 + 0 = 0 once `off` is zeroed too. Shared between two branches, `off` is owned
    by neither and both branches are refused (0 + off is not zero)."""
    graph = _compile("learned_offset")
    (group,) = ai.search_space(graph, mode="erase").groups
    assert {s.param: s.kind for s in group.slices}["scale"] == "out"
    graph = _compile("shared_offset")
    nodes = _segment(graph, "c1")
    assert "scale" not in owned_params(graph, nodes)
    assert not segment_zero_invariant(graph, nodes)


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(em.OK) + sorted(em.BAD))
def test_check_passes(name: str, mode: str, fraction: float, frontend: str) -> None:
    report = _check(name, mode, fraction, frontend)
    assert report.ok, report


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("name", sorted(em.OK))
def test_check_removes_the_branches(name: str, frontend: str) -> None:
    """Not vacuous: with every valid branch zeroed the sub-network is smaller and still exact."""
    report = _check(name, "erase", 1.0, frontend)
    assert report.ok, report
    assert report.zeroed == len(em.OK[name][1]) and report.params_sub < report.params_full


# ---- GOLD -------------------------------------------------------------------------------------


def _gold_space(name: str) -> tuple[torch.nn.Module, ArchitectureSpace]:
    model = em.build(name)
    graph = _compile(name)
    return model, ArchitectureSpace(graph, ai.search_space(graph, mode="erase"))


@pytest.mark.parametrize("name", ["shared_projection", "tied_projection"])
def test_gold_gates_the_last_layer_the_structure_owns(name: str) -> None:
    """The projection after each BN is shared (one module called twice, or two modules tied to one
    weight): the gate goes on the BN, the last layer whose weights only its branch reads."""
    from asgnas_ir.backends.torch.gates import gate_module_paths

    model, space = _gold_space(name)
    assert gate_module_paths(model, space) == ["bn1", "bn2"]


@pytest.mark.parametrize("name", ["shared_projection", "tied_projection"])
def test_gold_export_equals_the_gated_super_network_around_a_shared_projection(name: str, tmp_path: Path) -> None:
    """Folding the open gate into its BN and dropping the pruned branch gives code that computes what
    the gated model computes, and the shared projection keeps its weight."""
    from asgnas_ir.backends.torch.binding import rerandomize_
    from asgnas_ir.backends.torch.gates import GoldGates
    from asgnas_ir.testing import load_generated

    x = torch.randn(8, em.C, 8, 8, generator=torch.Generator().manual_seed(2))
    for pruned in (0, 1, None):
        model, space = _gold_space(name)
        rerandomize_(model, seed=1)  # non-trivial BN statistics and weights
        gates = GoldGates(model, space)
        with torch.no_grad():
            gates.alpha.copy_(torch.tensor([-1.0, 0.5]))  # σ = 0.27 and 0.62: folding matters
        keep = space.canonical(space.from_zero_groups([] if pruned is None else [space.group_ids[pruned]]))
        gates.set_active(keep)
        with torch.no_grad():
            gated = model(x).numpy()
            gates.remove_hooks()
            ungated = model(x).numpy()
        folded = em.build(name)
        folded.load_state_dict(model.state_dict())
        gates.fold_into_(folded)
        space.graph.update_weights(folded.eval())
        out = tmp_path / f"pruned_{pruned}"
        ai.codegen(ai.subnet(space.graph, space.space, space.zero_groups(keep)), target="torch", out_dir=out)
        with torch.no_grad():
            generated = load_generated(out)(x).numpy()
        max_ref = float(np.abs(gated).max())
        assert np.isfinite(gated).all() and max_ref > 1e-3
        assert outputs_match(float(np.abs(generated - gated).max()), max_ref), pruned
        assert not outputs_match(float(np.abs(ungated - gated).max()), max_ref)  # the gates do change it
