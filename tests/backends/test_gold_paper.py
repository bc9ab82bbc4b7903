"""GOLD as GOLD-NAS' code does it: gates normalised per node before the thresholds, prunable
skip-connects on the DARTS super-network, and λ's rule counting only the gates the rule pruned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.backends.search import ArchitectureSpace
from asgnas_ir.backends.search.gold import GoldSchedule, GoldSettings, gate_nodes
from asgnas_ir.examples.supernets import SUPERNETS, darts_cell
from asgnas_ir.examples.supernets.super_resnet import SuperResNet

ROOT = Path(__file__).resolve().parents[2]


def _space(model: torch.nn.Module) -> ArchitectureSpace:
    graph = ai.compile(model.eval(), torch.randn(1, 1, 8, 8))
    return ArchitectureSpace(graph, ai.search_space(graph, mode="erase"))


@pytest.fixture(scope="module")
def gold_darts() -> tuple[torch.nn.Module, ArchitectureSpace]:
    """GOLD-NAS' operator set on DartsNet: a gated skip-connect and sep_conv3x3 on every edge."""
    torch.manual_seed(0)
    model = darts_cell.build_gold()
    return model, _space(model)


@pytest.fixture(scope="module")
def tiny_resnet() -> ArchitectureSpace:
    """Two SuperResNet blocks: each node is x + 4 gated candidates (the identity has no gate)."""
    torch.manual_seed(0)
    return _space(SuperResNet(widths=(4, 6), depths=(1, 1)))


def _position(space: ArchitectureSpace, first_node: str) -> int:
    return next(i for i, gid in enumerate(space.group_ids) if space.space.group(gid).nodes[0] == first_node)


def _op(space: ArchitectureSpace, cell: int, edge: int, name: str) -> int:
    return _position(space, f"cells_{cell}_edges_{edge}_ops_{name}" + ("" if name == "skip" else "_0"))


def _schedule(space: ArchitectureSpace, **settings: object) -> GoldSchedule:
    defaults = {"lambda0": 0.1, "c0": 2.0, "n0": 1, "flops_floor": 0.0, "stable_rounds": 1}
    return GoldSchedule(space, GoldSettings(**{**defaults, **settings}))  # type: ignore[arg-type]


# (a) normalisation ------------------------------------------------------------------------------------
def test_nodes_are_the_add_trees_gold_normalises_over(gold_darts: tuple, tiny_resnet: ArchitectureSpace) -> None:
    _, space = gold_darts
    nodes = gate_nodes(space)
    # 3 cells x 3 nodes; node i of a cell sums both candidates of its 2 + i edges, nothing ungated.
    assert np.bincount(nodes.node_of).tolist() == [4, 6, 8] * 3
    assert nodes.fixed.tolist() == [0.0] * 9
    assert len({nodes.node_of[_op(space, 0, e, op)] for e in (2, 3, 4) for op in ("skip", "sep_conv3x3")}) == 1
    # SuperResNet: a block's 4 candidates share a node with the identity, which counts 1.
    resnet = gate_nodes(tiny_resnet)
    assert np.bincount(resnet.node_of).tolist() == [4, 4] and resnet.fixed.tolist() == [1.0, 1.0]
    # The default DartsNet keeps an ungated identity on each edge: one per edge into the node.
    torch.manual_seed(0)
    assert gate_nodes(_space(SUPERNETS["darts_cell"]())).fixed.tolist() == [2.0, 3.0, 4.0] * 3


def test_scores_are_sigma_over_the_open_gates_of_the_node_plus_one_per_ungated_operand(tiny_resnet: ArchitectureSpace) -> None:
    schedule = _schedule(tiny_resnet)
    gates = np.array([0.5, 0.2, 0.1, 0.05, 0.9, 0.9, 0.3, 0.02])
    expected = np.concatenate([gates[:4] / (1 + gates[:4].sum()), gates[4:] / (1 + gates[4:].sum())])
    assert schedule.scores(gates) == pytest.approx(expected, rel=1e-12)
    # A pruned gate leaves its node's sum.
    schedule.keep[0] = False
    assert schedule.scores(gates)[1] == pytest.approx(0.2 / (1 + 0.2 + 0.1 + 0.05), rel=1e-12)
    assert _schedule(tiny_resnet, normalize=False).scores(gates) == pytest.approx(gates)


def test_normalisation_changes_which_gates_fall_exactly_as_the_formula_says(gold_darts: tuple) -> None:
    _, space = gold_darts
    gates = np.full(space.size, 0.9)
    # Cell 0, node 2 (edges 5-8, 8 gates): one gate at 0.3 among 0.9s scores 0.3 / (7·0.9 + 0.3) ≈ 0.045.
    weak_in_big_node = _op(space, 0, 7, "sep_conv3x3")
    gates[weak_in_big_node] = 0.3
    # Cell 1, node 0 (edges 0-1): all four gates at 0.02 score 0.25 each.
    small_node = [_op(space, 1, e, op) for e in (0, 1) for op in ("skip", "sep_conv3x3")]
    gates[small_node] = 0.02
    normalised = _schedule(space, n0=1, xi_min=0.01, xi_max=0.05)
    assert normalised.scores(gates)[weak_in_big_node] == pytest.approx(0.3 / (7 * 0.9 + 0.3))
    assert normalised.scores(gates)[small_node] == pytest.approx([0.25] * 4)
    assert normalised.end_round(gates).rule_pruned == [weak_in_big_node]
    # Thresholds on σ(α) alone judge the other way round: every 0.02 falls (≤ xi_min) except the one
    # the validity rule keeps (the first add of a node needs one of its two operands, skip(s0) and
    # sep_conv3x3(s0): the first of them falls, the second may not), and 0.3 stays.
    raw = _schedule(space, n0=1, xi_min=0.05, xi_max=0.2, normalize=False)
    outcome = raw.end_round(gates)
    assert outcome.rule_pruned == [small_node[0], small_node[2], small_node[3]]
    assert raw.keep[small_node[1]] and raw.keep[weak_in_big_node]


def test_a_node_sum_shrinks_as_its_gates_fall_within_the_round(gold_darts: tuple) -> None:
    """GOLD-NAS subtracts each pruned gate from its node's sum before judging the next one."""
    _, space = gold_darts
    gates = np.full(space.size, 0.9)
    a, b, x = _op(space, 0, 1, "skip"), _op(space, 0, 1, "sep_conv3x3"), _op(space, 0, 0, "sep_conv3x3")
    gates[[a, b, x]] = [0.005, 0.00998, 0.08502]  # node 0 sums to 1.0 with skip(s0) = 0.9
    schedule = _schedule(space, n0=1, xi_min=0.01, xi_max=0.01)
    assert schedule.scores(gates)[[a, b]] == pytest.approx([0.005, 0.00998])  # both ≤ ξ_min at first
    outcome = schedule.end_round(gates)
    # a falls first; b then scores 0.00998 / 0.995 ≈ 0.01003 > ξ_min and stays.
    assert outcome.rule_pruned == [a] and schedule.keep[b]
    assert schedule.scores(gates)[b] == pytest.approx(0.00998 / 0.995)


def test_the_gold_penalty_is_log1p_of_the_normalised_gates_and_stays_finite_when_they_underflow(
    tiny_resnet: ArchitectureSpace,
) -> None:
    from asgnas_ir.backends.torch.gates import GoldGates

    torch.manual_seed(0)
    model = SuperResNet(widths=(4, 6), depths=(1, 1)).eval()
    gates = GoldGates(model, tiny_resnet)
    nodes = gate_nodes(tiny_resnet)
    with torch.no_grad():
        gates.alpha.copy_(torch.linspace(-2.0, 2.0, tiny_resnet.size))
    keep = np.ones(tiny_resnet.size, dtype=bool)
    keep[2] = False
    gates.set_active(keep)
    coefficients = np.linspace(0.1, 0.8, tiny_resnet.size)
    sigma = torch.sigmoid(gates.alpha.detach()).double().numpy()
    expected = 0.0
    for i in np.flatnonzero(keep):
        members = (nodes.node_of == nodes.node_of[i]) & keep
        total, count = sigma[members].sum() + nodes.fixed[nodes.node_of[i]], members.sum() + nodes.fixed[nodes.node_of[i]]
        expected += coefficients[i] * np.log1p(count * sigma[i] / total)
    assert gates.penalty(coefficients, nodes).item() == pytest.approx(expected, rel=1e-5)
    assert gates.penalty(coefficients).item() == pytest.approx(float((coefficients * keep * sigma).sum()), rel=1e-5)
    with torch.no_grad():
        gates.alpha.fill_(-1e6)  # σ = 0 in float32: σ / Σσ would be 0 / 0
    penalty = gates.penalty(coefficients, nodes)
    penalty.backward()
    assert torch.isfinite(penalty) and bool(torch.isfinite(gates.alpha.grad).all())


# (b) prunable skip-connects -----------------------------------------------------------------------------
def test_skip_connects_are_removal_structures_and_every_node_keeps_an_operator(gold_darts: tuple) -> None:
    _, space = gold_darts
    skips = [i for i, gid in enumerate(space.group_ids) if space.space.group(gid).nodes[0].endswith("_ops_skip")]
    assert space.size == 54 and len(skips) == 27
    assert space.is_valid(~np.isin(np.arange(space.size), skips))  # all skips gone at once is a network
    nodes = gate_nodes(space)
    for node in range(len(nodes.roots)):
        members = np.flatnonzero(nodes.node_of == node)
        keep = space.full()
        keep[members] = False
        assert not space.is_valid(keep), f"node {nodes.roots[node]} could lose every operator"
        keep[members[0]] = True  # the node's first operator alone keeps it (and the network) alive
        assert space.is_valid(keep)
    # The default DartsNet still keeps its skip-connects (no such group); the prunable twin has 108.
    torch.manual_seed(0)
    default = ai.search_space(ai.compile(SUPERNETS["darts_cell"]().eval(), torch.randn(1, 1, 8, 8)), mode="erase")
    assert len(default.groups) == 81 and not any("skip" in g.nodes[0] for g in default.groups)
    torch.manual_seed(0)
    assert _space(darts_cell.build_prunable_skip()).size == 108


def test_a_pruned_skip_gives_a_sub_network_whose_code_equals_the_gated_super_network(gold_darts: tuple, tmp_path: Path) -> None:
    from asgnas_ir.backends.torch.binding import rerandomize_
    from asgnas_ir.backends.torch.gates import GoldGates
    from asgnas_ir.testing import load_generated

    _, space = gold_darts
    torch.manual_seed(0)
    model = darts_cell.build_gold()
    rerandomize_(model, seed=3)
    gates = GoldGates(model, space)
    with torch.no_grad():
        gates.alpha.copy_(torch.linspace(-1.5, 2.5, space.size))
    # The schedule prunes a skip-connect whose normalised gate is weakest.
    values = np.full(space.size, 0.9)
    skip = _op(space, 0, 3, "skip")
    values[skip] = 0.01
    schedule = _schedule(space)
    assert schedule.end_round(values).rule_pruned == [skip]
    # Take a whole edge too (both candidates of cell 1, edge 4) and another skip (cell 2, edge 0).
    keep = schedule.keep.copy()
    keep[[_op(space, 1, 4, "skip"), _op(space, 1, 4, "sep_conv3x3"), _op(space, 2, 0, "skip")]] = False
    assert space.is_valid(keep)
    keep = space.canonical(keep)
    gates.set_active(keep)
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        gated = model.eval()(x).numpy()
    folded = darts_cell.build_gold()
    folded.load_state_dict(model.state_dict())
    gates.fold_into_(folded)
    space.graph.update_weights(folded.eval())
    sub = ai.subnet(space.graph, space.space, space.zero_groups(keep))
    assert not any("skip" in n.id and "cells_0_edges_3" in n.id for n in sub.nodes)
    ai.codegen(sub, target="torch", out_dir=tmp_path)
    with torch.no_grad():
        generated = load_generated(tmp_path)(x).numpy()
    max_ref = float(np.abs(gated).max())
    assert max_ref > 1e-3 and float(np.abs(gated - generated).max()) <= 1e-4 * max_ref
    assert ai.cost(sub).flops < space.full_cost().flops


# (c) λ's rule counts what the rule pruned ------------------------------------------------------------
def test_lambda_relaxes_only_on_gates_the_rule_pruned_not_on_dead_children() -> None:
    torch.manual_seed(0)
    unets = _space(SUPERNETS["stacked_unets"](num_classes=10, in_channels=1))
    out1 = _position(unets, "unet1_out_0")
    schedule = _schedule(unets, n0=2, lambda0=0.1, c0=2.0)
    strong = np.full(unets.size, 0.9)
    schedule.end_round(strong)  # nothing falls: λ = 0.2
    assert schedule.lmbda == pytest.approx(0.2)
    gates = strong.copy()
    gates[out1] = 0.001  # U-Net 1's output: shares its node with U-Net 2's (score 0.001 / 0.901)
    outcome = schedule.end_round(gates)
    # It falls by the rule and takes its decoder and bottleneck (dead children) with it: 3 groups
    # left the network, but only 1 < n0 was pruned, so λ grows (0.2 + 0.4) rather than halving.
    assert len(outcome.pruned) == 3 and outcome.rule_pruned == [out1]
    assert schedule.lmbda == pytest.approx(0.6)
    assert schedule.history[-1]["rule_pruned"] == [out1] and len(schedule.history[-1]["pruned"]) == 3


# (d) GOLD-NAS' protocol: re-train from scratch -----------------------------------------------------
def test_scratch_retraining_trains_fresh_weights_with_unit_gates_and_exports_them(tmp_path: Path) -> None:
    from asgnas_ir.backends.torch.gold import GoldConfig, GoldSearch

    torch.set_num_threads(1)
    config = GoldConfig(
        supernet=f"{ROOT / 'tests' / 'backends' / 'test_gold.py'}:tiny_supernet", rounds=10, steps_per_round=6,
        warmup_rounds=1, lambda0=0.3, gate_lr=1.0, n0=2, stable_rounds=1, xi_max=0.3, flops_floor=0.1,
        finetune_epochs=1, retrain="scratch", out=str(tmp_path),
    )
    search = GoldSearch(config)
    while not search.snapshots or all(search.schedule.candidates[-1].keep):
        search.train_round(search.schedule.rounds, train_gates=not search.schedule.warming_up)
        search.end_round()
    index = len(search.snapshots) - 1
    keep = np.array(search.schedule.candidates[index].keep)
    recorded = {k: v.clone() for k, v in search.snapshots[index]["model"].items()}
    live_alpha = search.gates.alpha.detach().clone()
    search.finetuned = index
    scores = search.finetune_next()
    snapshot = search.snapshots[index]
    assert "recorded_val_accuracy" in scores
    assert torch.equal(snapshot["gates"]["active"], torch.as_tensor(keep))
    assert bool((torch.sigmoid(snapshot["gates"]["alpha"]) == 1.0).all())  # operators summed unscaled
    # Fresh weights, not the recorded ones trained on: a recorded conv weight is far from its retrained self.
    conv = next(k for k in recorded if k.endswith("conv3x3.0.weight") and recorded[k].abs().sum() > 0)
    assert not torch.allclose(recorded[conv], snapshot["model"][conv], atol=0.05)
    assert torch.equal(search.gates.alpha.detach(), live_alpha)  # the search's own gates are back
    report = search.export(index, tmp_path / "front")
    assert report["equivalent"], report
