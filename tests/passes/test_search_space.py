"""search-space in erase and both modes: removal structures, validity, hierarchy, sub-networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.backends.torch.binding import zero_slices_
from asgnas_ir.passes.analysis.dependency_graph import merge_slices
from asgnas_ir.testing import assert_outputs_match, emit_and_load
from tests.models import REPLICAS, example_inputs


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out))


class TwoBranches(nn.Module):
    """stem fans out into two removable conv-bn branches that are summed."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = conv_bn(8, 8)
        self.b = conv_bn(8, 8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        return self.head(self.a(s) + self.b(s))


class Nested(nn.Module):
    """A residual block inside another: removing the outer branch makes the inner one dead."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.inner = conv_bn(8, 8)
        self.outer_tail = conv_bn(8, 8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        t = self.conv1(s)
        u = t + self.inner(t)
        return self.head(s + self.outer_tail(u))


class Gated(nn.Module):
    """A branch ending in a sigmoid (not zero when zeroed) and an SE gate (a product): neither is removable."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.sig = nn.Sequential(nn.Conv2d(8, 8, 1), nn.Sigmoid())
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.Sigmoid())
        self.plain = conv_bn(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        return (s + self.sig(s) + self.plain(s)) * self.gate(s)


def space_of(model: nn.Module, mode: str = "erase") -> tuple[ai.Graph, ai.SearchSpace]:
    graph = ai.compile(model.eval(), torch.randn(1, 3, 8, 8))
    return graph, ai.search_space(graph, mode=mode)


def test_each_branch_into_an_add_is_one_operator_group() -> None:
    """Both summed conv-bn branches are removal structures holding all their params."""
    _, space = space_of(TwoBranches())
    assert [g.nodes for g in space.groups] == [["a_0", "a_1"], ["b_0", "b_1"]]
    group = space.groups[0]
    assert group.kind == "operator" and group.parent is None
    params = {s.param for s in group.slices}
    assert params == {"a.0.weight", "a.0.bias", "a.1.weight", "a.1.bias", "a.1.running_mean", "a.1.running_var"}
    assert group.params == 8 * 8 * 9 + 8 + 8 + 8 and group.flops > 0


def test_validity_keeps_a_path_from_input_to_output() -> None:
    """Removing one branch is valid; removing both would cut the head off the input."""
    _, space = space_of(TwoBranches())
    assert space.is_valid([0]) and space.is_valid([1])
    assert not space.is_valid([0, 1])
    assert "disconnect" in space.explain_invalid([0, 1])


def test_subnet_refuses_an_invalid_selection() -> None:
    """ai.subnet names the reason when a selection would disconnect the network."""
    graph, space = space_of(TwoBranches())
    with pytest.raises(ai.AsgnasError, match="disconnect"):
        ai.subnet(graph, space, [0, 1])


def test_nested_structure_has_the_outer_one_as_parent() -> None:
    """The inner residual branch's only way to the output runs through the outer tail: that is its parent."""
    _, space = space_of(Nested())
    by_nodes = {tuple(g.nodes): g for g in space.groups}
    inner = by_nodes[("inner_0", "inner_1")]
    outer = by_nodes[("outer_tail_0", "outer_tail_1")]
    assert inner.parent == outer.id and outer.parent is None
    assert space.is_valid([outer.id]) and space.is_valid([inner.id, outer.id])


def test_removing_the_outer_structure_drops_the_dead_inner_branch(tmp_path) -> None:
    """The sub-network without the outer tail has no conv1/inner nodes left (dead code) and matches numerically."""
    model = Nested().eval()
    x = torch.randn(2, 3, 8, 8)
    graph, space = space_of(model)
    outer = next(g for g in space.groups if g.nodes[0] == "outer_tail_0")
    zero_slices_(model, graph, outer.slices)
    graph = ai.compile(model, x)
    sub = ai.subnet(graph, ai.search_space(graph, mode="erase"), [outer.id])
    assert {n.id for n in sub.nodes} == {"stem", "relu", "head"}
    assert not any(p.startswith(("conv1", "inner", "outer_tail")) for p in sub.params)
    with torch.no_grad():
        assert_outputs_match(emit_and_load(sub, tmp_path)(x), model(x))  # DESIGN rule: an atol of 1e-6 is a guess


def test_non_zero_invariant_and_gating_branches_are_not_removable() -> None:
    """A branch ending in sigmoid and an SE gate feeding a product are never offered."""
    _, space = space_of(Gated())
    assert [g.nodes for g in space.groups] == [["plain_0", "plain_1"]]


def test_both_mode_nests_channel_groups_in_operator_groups() -> None:
    """In both mode channel groups come first (prune ids) and those inside a branch name it as parent."""
    replica = REPLICAS["resnet_basic"]  # a basic block's hidden channels live inside its residual branch
    graph = ai.compile(replica.build(), example_inputs(replica))
    both, prune = ai.search_space(graph, mode="both"), ai.search_space(graph, mode="prune")
    channel = [g for g in both.groups if g.kind == "channel"]
    operators = [g for g in both.groups if g.kind == "operator"]
    assert [g.id for g in channel] == [g.id for g in prune.groups]
    assert [g.id for g in operators] == list(range(len(channel), len(both.groups)))
    nested = [g for g in channel if g.parent is not None]
    assert nested and all(both.group(g.parent).kind == "operator" for g in nested)


@pytest.mark.parametrize("mode", ["erase", "both"])
@pytest.mark.parametrize("name", ["resnet_basic", "resnet_bottleneck", "densenet", "regnet", "mobilenet_v2", "convnext", "chunk_split"])
def test_check_passes_in_erase_and_both_modes(name: str, mode: str) -> None:
    """Random valid operator (and channel) selections give sub-networks equal to the zeroed super-network."""
    replica = REPLICAS[name]
    report = ai.check(replica.build(), example_inputs(replica), mode=mode, fraction=0.5, seed=0)
    assert report.ok, report
    assert report.zeroed > 0 and report.params_sub < report.params_full


def test_concat_branch_removal_slices_the_consumer() -> None:
    """Removing a DenseNet layer drops its channels from the concat and from every consumer downstream."""
    replica = REPLICAS["densenet"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    space = ai.search_space(graph, mode="erase")
    group = space.groups[0]
    sub = ai.subnet(graph, space, [group.id])
    assert not set(group.nodes) & {n.id for n in sub.nodes}
    consumer_columns = merge_slices(s for s in group.slices if s.kind == "in")
    assert consumer_columns, "the group must carry the downstream input columns it frees"
    for (param, axis), indices in consumer_columns.items():
        if param in sub.params:
            assert sub.params[param].shape[axis] == graph.params[param].shape[axis] - len(set(indices))
