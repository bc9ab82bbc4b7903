"""Incremental greedy selection (`SearchSpace.greedy_valid`, `passes/analysis/validity.py`) accepts
exactly the groups, in exactly the order, that calling `is_valid(accepted + [g])` per candidate
does: on every replica, in all three modes, with rejections by each rule (covers, segment graph,
erased concat operands)."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

import asgnas_ir as ai
from asgnas_ir.backends.reference import select_redundant
from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.passes.analysis.search_space import SearchSpace
from asgnas_ir.passes.analysis.validity import GreedyValidity
from tests.models import REPLICAS, example_inputs

MODES = ("prune", "erase", "both")


@functools.cache
def _graph(name: str) -> ai.Graph:
    replica = REPLICAS[name]
    return ai.compile(replica.build(), example_inputs(replica))


@functools.cache
def _space(name: str, mode: str) -> SearchSpace:
    return ai.search_space(_graph(name), mode=mode)


def _one_by_one(space: SearchSpace, order: list[int], k: int | None = None, removed: tuple[int, ...] = ()) -> list[int]:
    """The loop the incremental checker replaces: a full `is_valid` per candidate."""
    accepted: list[int] = []
    for gid in order:
        if k is not None and len(accepted) >= k:
            break
        if space.is_valid([*removed, *accepted, gid]):
            accepted.append(gid)
    return accepted


def _orders(space: SearchSpace, seeds: int) -> list[list[int]]:
    """Random orders, and the same with operator groups first and last (so the segment and concat
    rules judge both an operator group after channel groups and channel groups after it)."""
    rng = np.random.default_rng(0)
    orders = []
    for _ in range(seeds):
        order = rng.permutation(len(space.groups)).tolist()
        operators = [g for g in order if space.group(g).kind == "operator"]
        channels = [g for g in order if space.group(g).kind != "operator"]
        orders += [order, operators + channels, channels + operators]
    return orders


def _rule(space: SearchSpace, ids: list[int]) -> str:
    why = space.explain_invalid(ids)
    return "segment" if "disconnect" in why else "concat" if "concat operands" in why else "cover"


@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_greedy_valid_matches_one_check_per_candidate(name: str) -> None:
    for mode in MODES:
        space = _space(name, mode)
        n = len(space.groups)
        for order in _orders(space, seeds=3):
            for k in (n, n // 2, 1):
                assert space.greedy_valid(order, k) == _one_by_one(space, order, k), (mode, k, order)


def test_every_rule_rejects_some_candidate_and_the_fast_walk_agrees() -> None:
    """Over the replicas with residual, dead and chunk/concat structure, candidates are turned down by
    each of the three rules, and the incremental walk turns down the same ones."""
    rejected: dict[str, int] = {"cover": 0, "segment": 0, "concat": 0}
    for name in ("chunk_concat", "chunk_split", "dead_joint", "densenet", "resnet_basic"):
        for mode in ("erase", "both"):
            space = _space(name, mode)
            for order in _orders(space, seeds=4):
                accepted = _one_by_one(space, order)
                assert space.greedy_valid(order) == accepted
                kept: list[int] = []
                for gid in order:
                    if accepted[len(kept):len(kept) + 1] == [gid]:
                        kept.append(gid)
                    else:
                        rejected[_rule(space, [*kept, gid])] += 1
    assert all(rejected.values()), rejected


def test_erased_concat_operand_is_refused_in_either_order() -> None:
    """chunk_concat, both mode: the conv on the second chunk piece takes channel groups shared with
    the first piece. After the first piece's other groups, the conv is refused (an operator candidate
    broken by the concat rule); after the conv, the first piece's last group is (a channel one)."""
    space = _space("chunk_concat", "both")
    (second,) = [g.id for g in space.groups if g.nodes == ["second"]]
    chunk_first = ai.run_pass("dependency-graph", _graph("chunk_concat")).value_groups["chunk_0"]
    rest = sorted(set(chunk_first) - set(space.concat_channels[second]))
    assert space.greedy_valid([*rest, second]) == rest == _one_by_one(space, [*rest, second])
    fast = space.greedy_valid([second, *rest])
    assert fast == _one_by_one(space, [second, *rest])
    assert fast[0] == second and len(fast) == len(rest)  # exactly one of `rest` is turned down
    assert _rule(space, [second, *rest]) == "concat"


def test_segment_rule_is_not_monotone_and_the_walk_follows_it() -> None:
    """dead_joint, erase mode: removing both operands of the outer add is invalid, whichever comes
    second; a start set is checked as a whole (a subset of a valid set may be invalid)."""
    space = _space("dead_joint", "erase")
    pair = [g.id for g in space.groups if g.nodes[-1] in {"after_add", "skip_add"}]
    assert len(pair) == 2 and not space.is_valid(pair)
    assert space.greedy_valid(pair) == [pair[0]]
    assert space.greedy_valid(pair[::-1]) == [pair[1]]
    rng = np.random.default_rng(5)
    for mode in ("erase", "both"):
        space = _space("dead_joint", mode)
        for _ in range(10):
            start = _one_by_one(space, rng.permutation(len(space.groups)).tolist(), 3)
            rest = [int(g) for g in rng.permutation(len(space.groups)) if g not in start]
            assert space.greedy_valid(rest, removed=start) == _one_by_one(space, rest, removed=tuple(start))


def test_start_set_duplicates_k_and_unknown_ids() -> None:
    space = _space("dead_joint", "erase")
    pair = [g.id for g in space.groups if g.nodes[-1] in {"after_add", "skip_add"}]
    with pytest.raises(ai.AsgnasError, match="not a valid selection: it would disconnect the network"):
        space.greedy_valid([0], removed=pair)
    with pytest.raises(ai.AsgnasError, match="does not exist"):
        space.greedy_valid([0, len(space.groups)])
    with pytest.raises(ai.AsgnasError, match="does not exist"):
        space.greedy_valid([], removed=[-1])
    order = [0, 1, 0, 2]  # a repeated id leaves the set as it was, so the per-candidate loop takes it again
    assert space.greedy_valid(order) == _one_by_one(space, order)
    assert space.greedy_valid(order, 0) == []
    checker = GreedyValidity(space)
    checker.add(pair[0])
    assert not checker.can_add(pair[1])
    with pytest.raises(ai.AsgnasError, match="cannot be removed together"):
        checker.add(pair[1])


@pytest.mark.parametrize("mode", MODES)
def test_select_redundant_takes_a_space_its_is_valid_or_any_callable(mode: str) -> None:
    space = _space("chunk_split", mode)
    scores = np.random.default_rng(3).random(len(space.groups))
    scores[:2] = scores[2]  # ties: lower id first in every form
    k = len(space.groups) - 1
    plain = select_redundant(scores, k, lambda ids: space.is_valid(ids))
    assert select_redundant(scores, k, space) == plain
    assert select_redundant(scores, k, space.is_valid) == plain


@pytest.mark.parametrize("mode", ["erase", "both"])
def test_random_selection_and_architecture_repair_are_unchanged(mode: str) -> None:
    """`random_zero_groups` (non-prune modes) and `ArchitectureSpace.repair` now walk incrementally;
    they pick what the per-candidate loops picked."""
    for name in ("dead_joint", "resnet_bottleneck", "chunk_concat"):
        graph, space = _graph(name), _space(name, mode)
        for seed in range(4):
            order = np.random.default_rng(seed).permutation(len(space.groups)).tolist()
            target = max(1, round(0.6 * len(space.groups)))
            assert ai.random_zero_groups(graph, space, 0.6, seed) == sorted(_one_by_one(space, order, target))
        arch = ArchitectureSpace(graph, space)
        rng = np.random.default_rng(1)
        for _ in range(20):
            keep = rng.random(arch.size) < 0.3
            priority = rng.random(arch.size)
            assert arch.repair(keep, priority).tolist() == _repair_one_by_one(arch, keep, priority).tolist()


def _repair_one_by_one(arch: ArchitectureSpace, keep: np.ndarray, priority: np.ndarray) -> np.ndarray:
    keep = keep.copy()
    if not arch.is_valid(keep):
        removed = np.flatnonzero(~keep)
        removed = removed[np.argsort(-priority[removed], kind="stable")]
        restored: list[int] = []
        for i in removed:
            keep[i] = True
            restored.append(int(i))
            if arch.is_valid(keep):
                break
        for i in reversed(restored[:-1]):
            keep[i] = False
            if not arch.is_valid(keep):
                keep[i] = True
    return arch.canonical(keep)


@pytest.mark.slow
def test_vit_b_16_prune_selects_half_its_groups_quickly() -> None:
    """37,008 prune-mode groups: one `is_valid` per candidate took over a minute; the incremental walk
    takes hundredths of a second (the bound here is loose on purpose)."""
    torchvision = pytest.importorskip("torchvision")
    import torch

    model = torchvision.models.vit_b_16(weights=None).eval()
    space = ai.search_space(ai.compile(model, torch.randn(1, 3, 224, 224)), mode="prune")
    assert len(space.groups) > 30_000
    scores = np.random.default_rng(0).random(len(space.groups))
    k = len(space.groups) // 2
    start = time.perf_counter()
    accepted = select_redundant(scores, k, space)
    assert time.perf_counter() - start < 2.0
    assert len(accepted) == k and len(set(accepted)) == k and space.is_valid(accepted)
    order = np.argsort(-scores, kind="stable").tolist()
    assert accepted[:300] == _one_by_one(space, order, 300)  # the per-candidate loop on a prefix
    # at k = all, the last group of each of the 24 covers is refused, as `is_valid` would refuse it
    everything = space.greedy_valid(order)
    assert len(everything) == len(space.groups) - len(space.value_covers) and space.is_valid(everything)
