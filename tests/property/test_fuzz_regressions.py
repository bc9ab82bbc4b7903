"""Failures the property fuzzer found, replayed on their named replicas (tests/models) with the exact
group selection that broke, so they stay fixed even if the random selection of `check` changes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.backends.torch.binding import rerandomize_, zero_slices_
from asgnas_ir.testing import run_torch
from tests.models import REPLICAS, example_inputs


def assert_selection_matches(name: str, mode: str, nodes: set[str], tmp_path: Path) -> ai.Graph:
    """Remove the operator groups made of exactly `nodes` and compare the generated sub-network with the
    replica whose groups were zeroed in place (DESIGN tolerance). Returns the sub-network."""
    replica = REPLICAS[name]
    inputs = example_inputs(replica)
    live = copy.deepcopy(replica.build())
    rerandomize_(live, 0)
    graph = ai.compile(live, inputs)
    space = ai.search_space(graph, mode=mode)
    ids = [g.id for g in space.groups if g.kind == "operator" and set(g.nodes) <= nodes]
    assert {n for i in ids for n in space.group(i).nodes} == nodes
    assert space.is_valid(ids)
    zero_slices_(live, graph, [s for i in ids for s in space.group(i).slices])
    sub = ai.subnet(ai.compile(live, inputs), space, ids)
    ai.codegen(sub, target="torch", out_dir=tmp_path)
    with torch.no_grad():
        expected = live(*inputs).numpy()
    (actual,) = run_torch(tmp_path, inputs)
    max_ref = float(np.abs(expected).max())
    assert max_ref > 1e-3
    assert float(np.abs(expected - actual).max()) <= 1e-4 * max_ref
    return sub


@pytest.mark.parametrize("mode", ["erase", "both"])
@pytest.mark.parametrize(
    "nodes",
    [
        pytest.param({"a1", "a2", "relu_1", "after_add"}, id="inner-add"),
        pytest.param({"c1", "c2", "after_cat"}, id="inner-concat"),
    ],
)
def test_removing_a_joint_with_all_its_branches_and_its_consumer(mode: str, nodes: set[str], tmp_path: Path) -> None:
    """A joint whose every operand and whose consumer chain are removed is dead code: the sub-network
    drops it (and its params) instead of refusing the valid selection."""
    sub = assert_selection_matches("dead_joint", mode, nodes, tmp_path)
    assert not {n.id for n in sub.nodes} & nodes
    assert not {p.split(".")[0] for p in sub.params} & nodes  # their params went with them


def test_a_selection_that_kills_every_path_to_the_output_is_still_refused() -> None:
    """Dropping dead joints does not hide invalid selections: removing both operands of an outer add is refused."""
    replica = REPLICAS["dead_joint"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    space = ai.search_space(graph, mode="erase")
    ids = [g.id for g in space.groups if g.nodes[-1] in {"after_add", "skip_add"}]
    assert len(ids) == 2 and not space.is_valid(ids)
    with pytest.raises(ai.AsgnasError, match="disconnect"):
        ai.subnet(graph, space, ids)


def test_erased_concat_operand_and_channel_groups_may_not_empty_a_chunk_piece() -> None:
    """Both mode: erasing the conv on the second chunk piece takes channel groups shared with the first
    piece; adding the first piece's last group would empty it, so the selection is invalid and refused
    with a clear error, while each part alone stays valid."""
    replica = REPLICAS["chunk_concat"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    space = ai.search_space(graph, mode="both")
    (second,) = [g.id for g in space.groups if g.nodes == ["second"]]
    chunk_first = next(groups for name, groups in _value_groups(graph).items() if name == "chunk_0")
    rest = sorted(set(chunk_first) - set(space.concat_channels[second]))
    assert rest and space.is_valid([second]) and space.is_valid(rest)
    assert not space.is_valid([*rest, second])
    with pytest.raises(ai.AsgnasError, match="concat operands it erases"):
        ai.subnet(graph, space, [*rest, second])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_chunk_concat_checks_in_both_mode_at_full_fraction(seed: int) -> None:
    """Random valid selections of every group that can go (fraction 1.0) give an exact sub-network."""
    replica = REPLICAS["chunk_concat"]
    report = ai.check(replica.build(), example_inputs(replica), mode="both", fraction=1.0, seed=seed)
    assert report.ok, report
    assert report.zeroed > 0


def _value_groups(graph: ai.Graph) -> dict[str, list[int]]:
    return ai.run_pass("dependency-graph", graph).value_groups


@pytest.mark.parametrize("mode", ["erase", "both"])
def test_group_norm_after_a_concat_left_with_one_operand(mode: str, tmp_path: Path) -> None:
    """Erasing one concat operand halves the GroupNorm after it: one group left over the remaining
    channels, so they are still normalised together as in the full network."""
    sub = assert_selection_matches("concat_norm", mode, {"second"}, tmp_path)
    norm = sub.node("norm")
    assert norm.attrs.num_groups == 1 and sub.values[norm.inputs[0]].shape[1] == 4
