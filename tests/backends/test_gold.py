"""GOLD: the framework-free schedule on synthetic gate sequences, the torch gates, and `asgnas search gold`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.backends.search import ArchitectureSpace
from asgnas_ir.backends.search.gold import GoldSchedule, GoldSettings
from asgnas_ir.errors import AsgnasError
from asgnas_ir.examples.supernets import SUPERNETS
from asgnas_ir.examples.supernets.super_resnet import SuperResNet
from asgnas_ir.passes.analysis.dependency_graph import merge_slices

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unets() -> ArchitectureSpace:
    """StackedUnets: 6 operator groups with a hierarchy (a U-Net's `out` is the parent of its
    decoder branch, which is the parent of its bottleneck) and one invalid pair (both `out`s)."""
    torch.manual_seed(0)
    graph = ai.compile(SUPERNETS["stacked_unets"](num_classes=10, in_channels=1).eval(), torch.randn(1, 1, 8, 8))
    return ArchitectureSpace(graph, ai.search_space(graph, mode="erase"))


def _schedule(space: ArchitectureSpace, **settings: float) -> GoldSchedule:
    # These tests feed each gate's score directly (normalize=False: thresholds on σ(α) itself); the
    # per-node normalisation of GOLD-NAS' code is tested in test_gold_paper.py.
    defaults = {
        "lambda0": 0.1, "c0": 2.0, "n0": 2, "xi_min": 0.05, "xi_max": 0.2, "flops_floor": 0.0, "stable_rounds": 2,
        "normalize": False,
    }
    return GoldSchedule(space, GoldSettings(**{**defaults, **settings}))


def test_lambda_grows_geometrically_while_too_few_fall_and_is_divided_after_a_full_round(unets: ArchitectureSpace) -> None:
    schedule = _schedule(unets, lambda0=0.1, c0=2.0, n0=2)
    strong = np.full(unets.size, 0.9)
    lambdas = []
    for _ in range(4):
        assert schedule.end_round(strong).pruned == []
        lambdas.append(schedule.lmbda)
    # Δλ doubles every slow round: λ = 0.2, 0.2+0.4, 0.6+0.8, 1.4+1.6.
    assert lambdas == pytest.approx([0.2, 0.6, 1.4, 3.0])
    gates = strong.copy()
    gates[[0, 3]] = 0.01  # two bottleneck branches (leaves of the hierarchy) fall: n0 reached
    outcome = schedule.end_round(gates)
    assert outcome.pruned == [0, 3]
    assert schedule.lmbda == pytest.approx(1.5)  # λ / c0
    schedule.end_round(strong)  # slow again: Δλ restarts from λ0 (·c0)
    assert schedule.lmbda == pytest.approx(1.5 + 0.2)


def test_weakest_gates_below_xi_max_fall_at_most_n0_per_round_and_all_below_xi_min(unets: ArchitectureSpace) -> None:
    schedule = _schedule(unets, n0=1, xi_min=0.05, xi_max=0.3)
    gates = np.array([0.25, 0.9, 0.9, 0.1, 0.9, 0.9])  # two under xi_max: only the weakest falls
    assert schedule.end_round(gates).pruned == [3]
    schedule = _schedule(unets, n0=1, xi_min=0.05, xi_max=0.3)
    gates = np.array([0.01, 0.9, 0.9, 0.02, 0.25, 0.9])  # both under xi_min fall, plus one weak one
    assert schedule.end_round(gates).pruned == [0, 3, 4]


def test_a_pruned_parent_takes_its_dead_children_and_invalid_removals_are_never_made(unets: ArchitectureSpace) -> None:
    schedule = _schedule(unets, n0=6)
    # Both U-Net outputs are weakest; removing both would disconnect the network.
    gates = np.array([0.9, 0.9, 0.01, 0.9, 0.9, 0.02])
    outcome = schedule.end_round(gates)
    # The first `out` (2) falls with its decoder (1) and bottleneck (0); the second must stay.
    assert outcome.pruned == [0, 1, 2]
    assert schedule.keep.tolist() == [False, False, False, True, True, True]
    assert unets.is_valid(schedule.keep)
    assert np.array_equal(schedule.keep, unets.canonical(schedule.keep))
    # Only the survivor's own `out` (5) is weak now: nothing can fall, so the search ends.
    outcome = schedule.end_round(np.array([0.9, 0.9, 0.01, 0.9, 0.9, 0.01]))
    assert outcome.pruned == [] and outcome.done is False
    # Once its children are gone, nothing is prunable left.
    outcome = schedule.end_round(np.array([0.9, 0.9, 0.9, 0.01, 0.01, 0.01]))
    assert outcome.pruned == [3, 4]
    assert outcome.done and "disconnecting" in outcome.reason


def test_a_random_gate_walk_keeps_flops_monotone_and_records_a_non_dominated_front(unets: ArchitectureSpace) -> None:
    from asgnas_ir.backends.search import pareto_front

    rng = np.random.default_rng(0)
    schedule = _schedule(unets, n0=1, stable_rounds=1, flops_floor=0.3)
    flops = [unets.full_cost().flops]
    while not schedule.done and schedule.rounds < 40:
        gates = np.where(rng.random(unets.size) < 0.25, rng.uniform(0.0, 0.3, unets.size), 0.9)
        outcome = schedule.end_round(gates)
        assert unets.is_valid(schedule.keep)
        flops.append(unets.cost(schedule.keep).flops)
        if outcome.candidate is not None:
            assert outcome.candidate.round == schedule.rounds
    schedule.finish()
    assert all(a >= b for a, b in zip(flops, flops[1:], strict=False))
    candidates = schedule.candidates
    assert len(candidates) >= 3
    assert all(a.flops >= b.flops for a, b in zip(candidates, candidates[1:], strict=False))
    assert candidates[-1].reason == "final"
    accuracy = {id(c): 90 - 10 * i + (3 if i == 1 else 0) for i, c in enumerate(candidates)}  # a made-up score
    front = pareto_front(candidates, cost=lambda c: c.flops, score=lambda c: accuracy[id(c)])
    for a in front:
        assert not any(
            b.flops <= a.flops and accuracy[id(b)] >= accuracy[id(a)] and (b.flops, accuracy[id(b)]) != (a.flops, accuracy[id(a)])
            for b in candidates
        )


def test_stable_architectures_are_recorded_before_their_pruning_and_the_floor_stops_the_search(unets: ArchitectureSpace) -> None:
    schedule = _schedule(unets, n0=1, stable_rounds=2, flops_floor=0.8, warmup_rounds=1)
    strong = np.full(unets.size, 0.9)
    assert schedule.end_round(np.zeros(unets.size)).pruned == []  # warm-up: nothing falls
    assert schedule.lmbda == 0.0
    gates = strong.copy()
    gates[0] = 0.01
    outcome = schedule.end_round(gates)  # the full network lasted 2 rounds: it is a candidate
    assert outcome.candidate is not None and all(outcome.candidate.keep) and outcome.candidate.flops == unets.full_cost().flops
    gates[3] = 0.01
    outcome = schedule.end_round(gates)  # that one lasted 1 round only: not a candidate
    assert outcome.pruned == [3] and outcome.candidate is None
    gates[1] = 0.01
    outcome = schedule.end_round(gates)
    assert outcome.done and "floor" in outcome.reason
    final = schedule.finish()
    assert final is not None and final.reason == "final" and final.flops < 0.8 * unets.full_cost().flops
    with pytest.raises(AsgnasError, match="already ended"):
        schedule.end_round(gates)


def test_schedule_state_round_trips_and_bad_settings_are_named(unets: ArchitectureSpace) -> None:
    schedule = _schedule(unets, n0=1, stable_rounds=1)
    schedule.end_round(np.array([0.01, 0.9, 0.9, 0.9, 0.9, 0.9]))
    copy = _schedule(unets, n0=1, stable_rounds=1)
    copy.load_state_dict(json.loads(json.dumps(schedule.state_dict())))
    gates = np.array([0.9, 0.9, 0.9, 0.01, 0.9, 0.9])
    assert copy.end_round(gates).pruned == schedule.end_round(gates).pruned
    assert copy.state_dict() == schedule.state_dict()
    with pytest.raises(AsgnasError, match="c0 must be > 1"):
        GoldSettings(c0=1.0)
    with pytest.raises(AsgnasError, match="xi_min ≤ xi_max"):
        GoldSettings(xi_min=0.5, xi_max=0.1)
    with pytest.raises(AsgnasError, match="6 finite numbers"):
        schedule.end_round(np.ones(3))


def tiny_supernet(num_classes: int = 10, in_channels: int = 1) -> SuperResNet:
    """A two-block SuperResNet (8 operator groups) that trains in a fraction of a second per round."""
    return SuperResNet(num_classes=num_classes, in_channels=in_channels, widths=(4, 6), depths=(1, 1))


TINY = f"{Path(__file__).resolve()}:tiny_supernet"


def _tiny_space(seed: int = 0) -> tuple[torch.nn.Module, ArchitectureSpace]:
    torch.manual_seed(seed)
    model = tiny_supernet().eval()
    graph = ai.compile(model, torch.randn(1, 1, 8, 8))
    return model, ArchitectureSpace(graph, ai.search_space(graph, mode="erase"))


def _within_design_tolerance(reference: np.ndarray, other: np.ndarray) -> bool:
    max_ref = float(np.abs(reference).max())
    return max_ref > 1e-3 and float(np.abs(reference - other).max()) <= 1e-4 * max_ref


def test_folded_gates_give_a_sub_network_whose_code_equals_the_gated_super_network(tmp_path: Path) -> None:
    from asgnas_ir.backends.torch.binding import rerandomize_
    from asgnas_ir.backends.torch.gates import GoldGates
    from asgnas_ir.testing import load_generated

    model, space = _tiny_space()
    rerandomize_(model, seed=1)  # non-trivial BN statistics and weights
    gates = GoldGates(model, space)
    with torch.no_grad():
        gates.alpha.copy_(torch.linspace(-2.0, 3.0, space.size))  # σ from 0.12 to 0.95: folding matters
    keep = space.canonical(space.from_zero_groups([space.group_ids[1], space.group_ids[6]]))
    gates.set_active(keep)
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        gated = model(x).numpy()
        gates.remove_hooks()
        ungated = model(x).numpy()
    folded = tiny_supernet()
    folded.load_state_dict(model.state_dict())
    gates.fold_into_(folded)
    space.graph.update_weights(folded.eval())
    ai.codegen(ai.subnet(space.graph, space.space, space.zero_groups(keep)), target="torch", out_dir=tmp_path)
    with torch.no_grad():
        generated = load_generated(tmp_path)(x).numpy()
    assert _within_design_tolerance(gated, generated)
    assert not _within_design_tolerance(gated, ungated)  # the gates do change the function


class _SharedNorm(torch.nn.Module):
    """A candidate branch that calls one BatchNorm module twice (a norm shared by two branches is no
    removal structure at all: zeroing it would silence both)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.a, self.b = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head((x + self.bn(self.bn(self.a(x))) + self.b(x)).mean((2, 3)))


class _FunctionalConv(torch.nn.Module):
    """A candidate branch that is a bare F.conv2d on a parameter (no module to hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.w = torch.nn.Parameter(torch.randn(4, 4, 3, 3))
        self.head = torch.nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head((x + torch.nn.functional.conv2d(x, self.w, padding=1)).mean((2, 3)))


@pytest.mark.parametrize(
    ("model", "message"),
    [(_SharedNorm, r"operator group 0 \(nodes a, bn, bn_1\): module 'bn' cannot carry its gate because it is called 2 times"),
     (_FunctionalConv, r"operator group 0 \(nodes conv2d\).*not a submodule of _FunctionalConv")],
)
def test_groups_without_a_gate_module_of_their_own_are_refused_by_name(model: type, message: str) -> None:
    from asgnas_ir.backends.torch.gates import GoldGates

    instance = model().eval()
    graph = ai.compile(instance, torch.randn(1, 1, 8, 8))
    with pytest.raises(AsgnasError, match=message):
        GoldGates(instance, ArchitectureSpace(graph, ai.search_space(graph, mode="erase")))


def test_a_bad_config_field_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from asgnas_ir.cli import main

    config = tmp_path / "gold.json"
    config.write_text(json.dumps({"supernet": "super_resnet", "n0": 0, "gate_speed": 1}))
    assert main(["search", "gold", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a valid GOLD search config" in err and "n0" in err and "gate_speed" in err
    assert not (tmp_path / "out").exists()


def test_finetuning_trains_the_candidates_sub_network_from_its_snapshot_and_export_equals_it(tmp_path: Path) -> None:
    from asgnas_ir.backends.torch.gold import GoldConfig, GoldSearch
    from asgnas_ir.testing import load_generated

    torch.set_num_threads(1)
    config = GoldConfig(**{**CLI_CONFIG, "steps_per_round": 6, "finetune_epochs": 2, "out": str(tmp_path)})
    search = GoldSearch(config)
    while not search.snapshots or all(search.schedule.candidates[-1].keep):
        search.train_round(search.schedule.rounds, train_gates=not search.schedule.warming_up)
        search.end_round()
    index = len(search.snapshots) - 1
    keep = np.array(search.schedule.candidates[index].keep)
    recorded = search.snapshots[index]["model"]
    recorded_alpha = search.snapshots[index]["gates"]["alpha"]
    live = {k: v.clone() for k, v in search.model.state_dict().items()}
    live_momentum = [s["momentum_buffer"].clone() for s in search.weights_opt.state.values()]
    search.finetuned = index  # the earlier candidates are not needed here

    scores = search.finetune_next()
    tuned = search.snapshots[index]["model"]
    assert search.finetuned == index + 1
    assert set(scores) == {"val_accuracy", "test_accuracy", "recorded_val_accuracy", "recorded_test_accuracy"}
    assert scores["recorded_val_accuracy"] == search.scores[index]["recorded_val_accuracy"]
    # The gates it was recorded with are kept: pruned stay pruned, open ones keep their σ(α).
    assert torch.equal(search.snapshots[index]["gates"]["active"], torch.as_tensor(keep))
    assert torch.equal(search.snapshots[index]["gates"]["alpha"], recorded_alpha)
    # Every pruned group's params are still exactly zero; the weights did train.
    checked = 0
    for position in np.flatnonzero(~keep):
        for (param, axis), indices in merge_slices(search.space.space.group(search.space.group_ids[position]).slices).items():
            source = search.graph.params[param].source
            assert torch.count_nonzero(tuned[source].index_select(axis, torch.as_tensor(indices))) == 0, source
            checked += 1
    assert checked > 0
    assert any(not torch.equal(recorded[k], tuned[k]) for k in recorded if k.endswith("weight"))
    # The search's own state is put back (a resumed search goes on from it).
    assert all(torch.equal(live[k], v) for k, v in search.model.state_dict().items())
    assert all(torch.equal(a, s["momentum_buffer"]) for a, s in zip(live_momentum, search.weights_opt.state.values(), strict=True))
    # The exported code computes what the fine-tuned gated network computes.
    report = search.export(index, tmp_path / "front")
    assert report["equivalent"], report
    x = torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    search.restore(search.snapshots[index])
    with torch.no_grad():
        assert _within_design_tolerance(search.model.eval()(x).numpy(), load_generated(tmp_path / "front")(x).numpy())


# End to end through the CLI ----------------------------------------------------------------------
# finetune_epochs makes the resume test cover a checkpoint written after fine-tuning that is then searched on.
CLI_CONFIG = {
    "supernet": TINY, "rounds": 10, "steps_per_round": 15, "warmup_rounds": 3, "lambda0": 0.3, "gate_lr": 1.0,
    "n0": 2, "stable_rounds": 1, "xi_max": 0.3, "flops_floor": 0.1, "seed": 0, "finetune_epochs": 3,
}


def _search(tmp_path: Path, out: str, *extra: str, **changes: object) -> subprocess.CompletedProcess:
    config = tmp_path / f"{out}.json"
    config.write_text(json.dumps({**CLI_CONFIG, **changes}))
    command = [sys.executable, "-m", "asgnas_ir.cli", "search", "gold", str(config), "--out", str(tmp_path / out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny convs: one thread is fastest, and the same for every run
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("gold")
    result = _search(tmp_path, "straight")
    assert result.returncode == 0, result.stderr
    return tmp_path


@pytest.mark.slow
def test_search_gold_writes_a_front_of_generated_sub_networks_equal_to_the_gated_super_network(searched: Path) -> None:
    from asgnas_ir.backends.torch.gates import GoldGates
    from asgnas_ir.testing import load_generated

    out = searched / "straight"
    result = json.loads((out / "front.json").read_text())
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    front, candidates = result["front"], result["candidates"]
    assert len(front) >= 2
    # FLOPs never rise along the search; the front is non-dominated (on the validation accuracy
    # that chose it) and ordered cheapest first.
    assert all(a["flops"] >= b["flops"] for a, b in zip(candidates, candidates[1:], strict=False))
    assert [p["flops"] for p in front] == sorted(p["flops"] for p in front)
    for p in front:
        assert not any(c["flops"] <= p["flops"] and c["val_accuracy"] > p["val_accuracy"] for c in candidates)
    # Each front point's code equals the gated super-network it came from (rebuilt here from the
    # checkpoint's snapshot, on inputs the search never saw).
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    for point in front:
        assert (out / "front" / str(point["index"]) / "model.py").is_file()
        model, space = _tiny_space()
        gates = GoldGates(model, space)
        snapshot = state["snapshots"][point["candidate"]]
        model.load_state_dict(snapshot["model"])
        gates.load_state_dict(snapshot["gates"])
        assert space.zero_groups(gates.active.numpy()) == sorted(point["zero_groups"])
        with torch.no_grad():
            assert _within_design_tolerance(model.eval()(x).numpy(), load_generated(out / "front" / str(point["index"]))(x).numpy())


@pytest.mark.slow
def test_an_interrupted_search_resumes_to_the_same_front(searched: Path) -> None:
    first = _search(searched, "resumed", rounds=5)
    assert first.returncode == 0, first.stderr
    again = _search(searched, "resumed", "--resume")  # the full round limit, continuing at round 4
    assert again.returncode == 0, again.stderr

    def comparable(path: Path) -> dict:
        result = json.loads(path.read_text())
        for key in ("search_seconds", "finetune_seconds", "config"):
            result.pop(key)
        for point in result["front"]:
            point.pop("files")
        return result

    assert comparable(searched / "resumed" / "front.json") == comparable(searched / "straight" / "front.json")
