"""The framework-free search core: architectures, their keys and costs, the evaluation log and pool."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.backends.search import (
    ArchitectureSpace,
    Evaluation,
    EvaluationLog,
    EvaluationPool,
    pareto_front,
)
from asgnas_ir.errors import AsgnasError
from asgnas_ir.examples.supernets import SUPERNETS


@pytest.fixture(scope="module")
def unets() -> ArchitectureSpace:
    torch.manual_seed(0)
    graph = ai.compile(SUPERNETS["stacked_unets"](num_classes=10, in_channels=1).eval(), torch.randn(1, 1, 8, 8))
    return ArchitectureSpace(graph, ai.search_space(graph, mode="erase"))


def test_canonical_form_removes_what_a_removal_makes_dead(unets: ArchitectureSpace) -> None:
    by_id = {g.id: g for g in unets.space.groups}
    child = next(g for g in by_id.values() if g.parent is not None)
    keep = unets.from_zero_groups([child.parent])
    assert keep[unets.group_ids.index(child.id)]  # kept on paper ...
    canonical = unets.canonical(keep)
    assert not canonical[unets.group_ids.index(child.id)]  # ... but dead once its parent is gone
    assert unets.key(keep) == unets.key(canonical)
    assert unets.cost(keep) == unets.cost(canonical)


def test_random_architectures_are_valid_canonical_and_cheaper(unets: ArchitectureSpace) -> None:
    rng = np.random.default_rng(0)
    full = unets.full_cost()
    assert full.flops == ai.cost(unets.graph).flops
    seen = set()
    for _ in range(20):
        keep = unets.random(rng)
        assert unets.is_valid(keep)
        assert np.array_equal(keep, unets.canonical(keep))
        cost = unets.cost(keep)
        assert cost.flops <= full.flops and (cost.flops < full.flops) == (not keep.all())
        seen.add(unets.key(keep))
    assert len(seen) > 3


def test_repair_restores_the_most_wanted_groups_only(unets: ArchitectureSpace) -> None:
    nothing = np.zeros(unets.size, dtype=bool)
    assert not unets.is_valid(nothing)
    for seed in range(5):
        priority = np.random.default_rng(seed).random(unets.size)
        repaired = unets.repair(nothing, priority)
        assert unets.is_valid(repaired)
        # Minimal: dropping any kept group again breaks the network (or it was dead anyway).
        for i in np.flatnonzero(repaired):
            trial = repaired.copy()
            trial[i] = False
            assert not unets.is_valid(trial)


def test_zero_group_ids_round_trip_and_bad_ids_are_named(unets: ArchitectureSpace) -> None:
    keep = unets.random(np.random.default_rng(3))
    assert np.array_equal(unets.from_zero_groups(unets.zero_groups(keep)), keep)
    with pytest.raises(AsgnasError, match="group id 999 does not exist"):
        unets.from_zero_groups([999])
    with pytest.raises(AsgnasError, match="keep-vector of 6 operator groups"):
        unets.zero_groups([True, False])


def test_a_prune_mode_space_is_refused_with_the_remedy() -> None:
    graph = ai.compile(SUPERNETS["super_resnet"](num_classes=10, in_channels=1).eval(), torch.randn(1, 1, 8, 8))
    with pytest.raises(AsgnasError, match="mode='erase'"):
        ArchitectureSpace(graph, ai.search_space(graph, mode="prune"))


def test_pareto_front_keeps_the_non_dominated_cheapest_first() -> None:
    points = [(5, 90.0), (3, 80.0), (4, 95.0), (3, 85.0), (6, 95.0), (1, 10.0)]
    front = pareto_front(points, cost=lambda p: p[0], score=lambda p: p[1])
    assert front == [(1, 10.0), (3, 85.0), (4, 95.0)]


def _record(zero: list[int], key: str = "") -> Evaluation:
    return Evaluation(key=key or ",".join(map(str, zero)), zero_groups=zero, val_accuracy=float(len(zero)),
                      test_accuracy=float(sum(zero)), flops=100 - len(zero), params=10)


class CountingEvaluator:
    """Picklable: module-level, so the process pool's spawned workers can import it."""

    def __call__(self, zero: list[int]) -> Evaluation:
        return _record(zero, key="not-the-searchers-key")


def test_log_survives_a_torn_last_line_and_rejects_foreign_files(tmp_path) -> None:
    log = EvaluationLog(tmp_path / "evaluations.jsonl")
    log.append(_record([1, 2]))
    log.append(_record([3]))
    with log.path.open("a") as f:
        f.write(json.dumps(_record([4]).model_dump())[:20])  # killed mid-write
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert sorted(log.load()) == ["1,2", "3"]
    log.path.write_text("not json\n" + _record([5]).model_dump_json() + "\n")
    with pytest.raises(AsgnasError, match="line 1, is not an evaluation record"):
        log.load()


def test_pool_answers_known_architectures_from_the_log(tmp_path) -> None:
    log = EvaluationLog(tmp_path / "evaluations.jsonl")
    batch = [("a", [1]), ("b", [1, 2]), ("a", [1])]
    with EvaluationPool(CountingEvaluator(), log=log) as pool:
        first = pool.evaluate(batch)
    assert [r.key for r in first] == ["a", "b", "a"] and first[0] is first[2]
    assert len(log.path.read_text().splitlines()) == 2  # a repeat within one batch runs once
    with EvaluationPool(CountingEvaluator(), log=log) as pool:
        again = pool.evaluate([("b", [1, 2]), ("c", [3])])
    assert pool.reused == 1 and again[0] == first[1]
    assert len(log.path.read_text().splitlines()) == 3


@pytest.mark.slow
def test_process_pool_gives_the_inline_results_in_order(tmp_path) -> None:
    batch = [(str(i), [i, i + 1]) for i in range(6)]
    with EvaluationPool(CountingEvaluator(), workers=2, backend="process") as pool:
        parallel = pool.evaluate(batch)
    with EvaluationPool(CountingEvaluator(), backend="inline") as pool:
        serial = pool.evaluate(batch)
    assert parallel == serial and [r.key for r in parallel] == [k for k, _ in batch]
