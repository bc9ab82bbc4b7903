"""A latency budget instead of a group share (issue 18, part 2): `LatencyTarget.select` and H2SPG/HESSO
with `latency_target=` choose groups by redundancy per ms saved until the table's estimate meets the
budget. Assertions read the table's own estimates (arithmetic), never a wall clock."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch import H2SPG, HESSO  # noqa: E402
from asgnas_ir.errors import AsgnasError  # noqa: E402
from asgnas_ir.passes.analysis.alignment import misaligned  # noqa: E402
from tests.models import REPLICAS, example_inputs  # noqa: E402

FAST = {"fractions": (0.5, 1.0), "warmup": 0, "repeats": 1, "cache": False}


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, ai.Graph, ai.SearchSpace, ai.LatencyTable]:
    replica = REPLICAS["resnet_bottleneck"]
    torch.manual_seed(0)
    model = replica.build().eval()
    graph = ai.compile(model, example_inputs(replica))
    space = ai.search_space(graph, "prune")
    return model, graph, space, ai.latency_table(graph, "cpu", align=1, **FAST)


def _between(table: ai.LatencyTable, graph: ai.Graph, space: ai.SearchSpace) -> tuple[float, float, float]:
    full = table.estimate(graph, space, [])
    floor = table.estimate(graph, space, space.greedy_valid(range(len(space.groups))))
    assert floor < full, "removing groups must be predicted to save time for this test to mean anything"
    return full, floor, (full + floor) / 2


def test_selection_meets_the_budget_with_the_shortest_prefix(setup) -> None:  # noqa: ANN001
    _, graph, space, table = setup
    _, _, target = _between(table, graph, space)
    redundancy = np.random.default_rng(0).random(len(space.groups))
    chosen = ai.LatencyTarget(table, graph, target).select(space, redundancy)
    assert space.is_valid(chosen)
    assert table.estimate(graph, space, chosen) <= target
    assert table.estimate(graph, space, chosen[:-1]) > target  # one group fewer misses it


def test_groups_that_save_more_per_unit_of_importance_go_first(setup) -> None:  # noqa: ANN001
    _, graph, space, table = setup
    _, _, target = _between(table, graph, space)
    saving = table.savings(graph, space)
    equal = np.zeros(len(space.groups))  # every group equally redundant: the saving alone decides
    chosen = ai.LatencyTarget(table, graph, target).select(space, equal)
    first = chosen[0]
    assert saving[first] >= np.percentile(saving, 90)


def test_aligned_budgeted_selection_is_aligned(setup) -> None:  # noqa: ANN001
    _, graph, space, table = setup
    full, floor, _ = _between(table, graph, space)
    target = full - (full - floor) * 0.3
    chosen = ai.LatencyTarget(table, graph, target).select(space, np.zeros(len(space.groups)), align=4)
    assert space.is_valid(chosen) and not misaligned(space.families(), chosen, 4)


@pytest.mark.parametrize("optimizer", [H2SPG, HESSO])
def test_optimizer_chooses_to_a_latency_budget(setup, optimizer: type) -> None:  # noqa: ANN001
    model, graph, space, table = setup
    _, _, target = _between(table, graph, space)
    copy = REPLICAS["resnet_bottleneck"].build()
    copy.load_state_dict(model.state_dict())
    opt = optimizer(copy, space, lr=0.01, warmup_steps=2, latency_target=ai.LatencyTarget(table, graph, target))
    x = example_inputs(REPLICAS["resnet_bottleneck"])[0].repeat(4, 1, 1, 1)
    for _ in range(3):
        opt.zero_grad()
        copy(x).square().mean().backward()
        opt.step()
    assert opt.selected and opt.redundant_groups
    assert table.estimate(graph, space, opt.redundant_groups) <= target


def test_an_unreachable_budget_takes_every_candidate_and_warns(setup) -> None:  # noqa: ANN001
    model, graph, space, table = setup
    _, floor, _ = _between(table, graph, space)
    copy = REPLICAS["resnet_bottleneck"].build()
    opt = H2SPG(copy, space, lr=0.01, warmup_steps=1, latency_target=ai.LatencyTarget(table, graph, floor * 0.5))
    x = example_inputs(REPLICAS["resnet_bottleneck"])[0]
    with pytest.warns(UserWarning, match="above the latency target"):
        for _ in range(2):
            opt.zero_grad()
            copy(x).square().mean().backward()
            opt.step()
    # every candidate taken: no further group can be removed on top of the choice
    assert space.is_valid(opt.redundant_groups)
    more = set(space.greedy_valid(range(len(space.groups)), removed=opt.redundant_groups))
    assert more <= set(opt.redundant_groups)


def test_bad_latency_targets_are_refused_by_name(setup) -> None:  # noqa: ANN001
    model, graph, space, table = setup
    with pytest.raises(AsgnasError, match="positive number of ms"):
        ai.LatencyTarget(table, graph, 0.0)
    with pytest.raises(AsgnasError, match="latency_target must be an asgnas_ir.LatencyTarget"):
        H2SPG(REPLICAS["resnet_bottleneck"].build(), space, latency_target=5.0)  # type: ignore[arg-type]
    other = REPLICAS["mobilenet_v2"]
    other_graph = ai.compile(other.build(), example_inputs(other))
    other_table = ai.latency_table(other_graph, "cpu", **FAST)
    with pytest.raises(AsgnasError, match="measured on another graph"):
        H2SPG(REPLICAS["resnet_bottleneck"].build(), space, latency_target=ai.LatencyTarget(other_table, other_graph, 1.0))
