"""dependency-graph: which channels of which params must be removed together, on tiny torch models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.ir import Graph
from tests.models import REPLICAS, example_inputs
from tests.passes.nets import ConvBnReluConv

IMG = (1, 3, 3, 3)


def deps_of(model: nn.Module, shape: tuple[int, ...] = IMG) -> tuple[Graph, object]:
    """Compile `model` on a random input of `shape` and return (graph, dependency graph)."""
    torch.manual_seed(0)
    graph = ai.compile(model.eval(), torch.randn(shape))
    return graph, ai.run_pass("dependency-graph", graph)


def slice_map(group) -> dict[tuple[str, int], tuple[str, list[int]]]:
    """(param, axis) -> (kind, indices) of a group; asserts each (param, axis) appears once."""
    keys = [(s.param, s.axis) for s in group.slices]
    assert len(keys) == len(set(keys)), f"group {group.id} repeats a (param, axis): {keys}"
    return {(s.param, s.axis): (s.kind, list(s.indices)) for s in group.slices}


def assert_costs_consistent(graph: Graph, deps) -> None:
    """Every group has positive flops/params and params equals the sum of its non-stat slice sizes."""
    for group in deps.groups:
        assert group.flops > 0, group.id
        assert group.params > 0, group.id
        expected = 0
        for s in group.slices:
            if s.kind == "stat":
                continue
            param = graph.params[s.param]
            expected += param.numel // param.shape[s.axis] * len(s.indices)
        assert group.params == expected, group.id


def test_conv_bn_relu_conv_has_one_group_per_hidden_channel():
    """conv->bn->relu->conv gives one group per hidden channel with out, stat and in slices."""
    graph, deps = deps_of(ConvBnReluConv())
    assert len(deps.groups) == 6
    for i, group in enumerate(deps.groups):
        assert group.id == i
        assert slice_map(group) == {
            ("conv1.weight", 0): ("out", [i]),
            ("conv1.bias", 0): ("out", [i]),
            ("bn.weight", 0): ("out", [i]),
            ("bn.bias", 0): ("out", [i]),
            ("bn.running_mean", 0): ("stat", [i]),
            ("bn.running_var", 0): ("stat", [i]),
            ("conv2.weight", 1): ("in", [i]),
        }
        assert set(group.nodes) == {"conv1", "bn", "conv2"}
        assert group.channels == 1
    # conv1: 27 + 1, bn: 1 + 1, conv2 input column: 5
    assert all(g.params == 35 for g in deps.groups)
    assert_costs_consistent(graph, deps)
    assert deps.value_groups["conv1"] == list(range(6))
    assert deps.value_groups["x"] == [-1, -1, -1]
    assert deps.value_groups["conv2"] == [-1] * 5


def test_group_flops_are_the_weight_share_of_the_convs():
    """A group's flops are its share of every op whose weight it slices (conv1 out, bn, conv2 in)."""
    graph, deps = deps_of(ConvBnReluConv())
    per_node = ai.cost(graph).per_node
    shares = [round(per_node[node].flops / 6) for node in ("conv1", "bn", "conv2")]
    assert all(g.flops == sum(shares) for g in deps.groups)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.c = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.a(x) + self.b(x)))


def test_residual_add_ties_both_branches_channel_by_channel():
    """Two convs feeding an add give one group per channel holding both convs' out slices."""
    graph, deps = deps_of(Residual())
    assert len(deps.groups) == 4
    for i, group in enumerate(deps.groups):
        assert slice_map(group) == {
            ("a.weight", 0): ("out", [i]),
            ("a.bias", 0): ("out", [i]),
            ("b.weight", 0): ("out", [i]),
            ("b.bias", 0): ("out", [i]),
            ("c.weight", 1): ("in", [i]),
        }
    assert_costs_consistent(graph, deps)


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 2, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 1)
        self.c = nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.cat([self.a(x), self.b(x)], dim=1))


def test_concat_gives_groups_per_side_with_offset_consumer_slices():
    """Concatenated convs each keep their own groups; the consumer's in-slices are offset by position."""
    graph, deps = deps_of(Concat())
    assert len(deps.groups) == 5
    maps = [slice_map(g) for g in deps.groups]
    left = [m for m in maps if ("a.weight", 0) in m]
    right = [m for m in maps if ("b.weight", 0) in m]
    assert len(left) == 2 and len(right) == 3
    for m in left:
        [i] = m[("a.weight", 0)][1]
        assert m[("c.weight", 1)] == ("in", [i])
        assert ("b.weight", 0) not in m
    for m in right:
        [j] = m[("b.weight", 0)][1]
        assert m[("c.weight", 1)] == ("in", [2 + j])
    assert_costs_consistent(graph, deps)


class Grouped(nn.Module):
    def __init__(self, cout: int = 12, groups: int = 4) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.g = nn.Conv2d(8, cout, 3, padding=1, groups=groups)
        self.c = nn.Conv2d(cout, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.g(torch.relu(self.a(x)))))


def test_grouped_conv_ties_whole_groups():
    """A groups=4 conv (8 -> 12) gives 4 groups of cin/4 = 2 in-channels and cout/4 = 3 out-channels."""
    graph, deps = deps_of(Grouped())
    assert len(deps.groups) == 4
    for j, group in enumerate(deps.groups):
        m = slice_map(group)
        assert m[("a.weight", 0)] == ("out", [2 * j, 2 * j + 1])
        assert m[("g.weight", 0)] == ("out", [3 * j, 3 * j + 1, 3 * j + 2])
        assert m[("g.bias", 0)] == ("out", [3 * j, 3 * j + 1, 3 * j + 2])
        assert m[("c.weight", 1)] == ("in", [3 * j, 3 * j + 1, 3 * j + 2])
        assert ("g.weight", 1) not in m  # a grouped conv's weight keeps its per-group input width
        assert group.channels == 3
    assert_costs_consistent(graph, deps)


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_conv_ties_each_channel(multiplier: int):
    """A depthwise conv (groups = channels, optional multiplier) gives one group per input channel."""
    graph, deps = deps_of(Grouped(cout=8 * multiplier, groups=8))
    assert len(deps.groups) == 8
    for i, group in enumerate(deps.groups):
        m = slice_map(group)
        outs = list(range(multiplier * i, multiplier * (i + 1)))
        assert m[("a.weight", 0)] == ("out", [i])
        assert m[("g.weight", 0)] == ("out", outs)
        assert m[("c.weight", 1)] == ("in", outs)
    assert_costs_consistent(graph, deps)


class GroupNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.n = nn.GroupNorm(4, 8)
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.n(self.a(x)))


def test_group_norm_ties_blocks_of_c_over_g_channels():
    """GroupNorm(4, 8) ties its channels in blocks of 2: four groups, each a whole block."""
    graph, deps = deps_of(GroupNormNet())
    assert len(deps.groups) == 4
    for j, group in enumerate(deps.groups):
        block = [2 * j, 2 * j + 1]
        assert slice_map(group) == {
            ("a.weight", 0): ("out", block),
            ("a.bias", 0): ("out", block),
            ("n.weight", 0): ("out", block),
            ("n.bias", 0): ("out", block),
            ("c.weight", 1): ("in", block),
        }
    assert_costs_consistent(graph, deps)


class MlpLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f1 = nn.Linear(4, 6)
        self.f2 = nn.Linear(6, 5)
        self.ln = nn.LayerNorm(5)
        self.f3 = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f3(self.ln(self.f2(torch.relu(self.f1(x)))))


class ConvLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.ln = nn.LayerNorm(4)
        self.c = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln(self.a(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.c(y)


def test_layer_norm_over_channels_pins_them():
    """LayerNorm over the feature axis pins those channels; channels before it stay prunable."""
    graph, deps = deps_of(MlpLayerNorm(), (1, 4))
    assert len(deps.groups) == 6  # only f1's hidden features
    for group in deps.groups:
        params = {s.param for s in group.slices}
        assert params == {"f1.weight", "f1.bias", "f2.weight"}
    assert deps.value_groups["f2"] == [-1] * 5
    assert deps.pinned_reasons.get("layer norm over the channel axis mixes all channels") == 1
    assert_costs_consistent(graph, deps)


def test_layer_norm_over_permuted_conv_channels_pins_them():
    """conv -> permute -> LayerNorm(C) -> permute -> conv leaves no removable group."""
    _, deps = deps_of(ConvLayerNorm(), (1, 3, 4, 4))
    assert deps.groups == []
    assert deps.value_groups["a"] == [-1] * 4


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.c = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.relu(self.a(x))
        return y, self.c(y)


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(4, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_graph_output_channels_are_pinned():
    """The output conv's channels never form a group; a value that is also an output pins its producer."""
    _, deps = deps_of(Chain())
    assert len(deps.groups) == 4
    assert not any(s.param.startswith("b.") and s.kind == "out" for g in deps.groups for s in g.slices)
    assert deps.value_groups["b"] == [-1] * 5

    _, deps = deps_of(TwoOutputs())
    assert deps.groups == []  # a's channels are an output of their own


class FlattenLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.a(x)), 1))


def test_flatten_maps_channel_to_its_block_of_linear_features():
    """After flatten, channel c owns features [c*H*W, (c+1)*H*W) of the next Linear's input axis."""
    graph, deps = deps_of(FlattenLinear())
    assert len(deps.groups) == 4
    hw = 9
    for c, group in enumerate(deps.groups):
        m = slice_map(group)
        assert m[("a.weight", 0)] == ("out", [c])
        assert m[("fc.weight", 1)] == ("in", list(range(c * hw, (c + 1) * hw)))
    assert deps.value_groups["flatten"] == [c for c in range(4) for _ in range(hw)]
    assert_costs_consistent(graph, deps)


class SharedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.shared(x))
        x = torch.relu(self.shared(x))
        return self.head(x)


def test_weight_sharing_lists_each_param_axis_once_and_consistently():
    """A conv called twice ties its in- and out-channels; each (param, axis) appears once per group."""
    graph, deps = deps_of(SharedConv())
    assert len(deps.groups) == 4
    for i, group in enumerate(deps.groups):
        assert slice_map(group) == {
            ("stem.weight", 0): ("out", [i]),
            ("stem.bias", 0): ("out", [i]),
            ("shared.weight", 0): ("out", [i]),
            ("shared.bias", 0): ("out", [i]),
            ("shared.weight", 1): ("in", [i]),
            ("head.weight", 1): ("in", [i]),
        }
    # both calls of the shared conv carry the same group labels
    assert deps.value_groups["shared"] == deps.value_groups["shared_1"] == deps.value_groups["stem"]
    assert_costs_consistent(graph, deps)


def test_weight_sharing_replica_groups_are_consistent():
    """In the weight-sharing replica every group names each (param, axis) once and slices stay in range."""
    replica = REPLICAS["weight_sharing"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    deps = ai.run_pass("dependency-graph", graph)
    assert deps.groups
    seen: dict[tuple[str, int], set[int]] = {}
    for group in deps.groups:
        for (param, axis), (_, indices) in slice_map(group).items():
            assert all(0 <= i < graph.params[param].shape[axis] for i in indices)
            taken = seen.setdefault((param, axis), set())
            assert taken.isdisjoint(indices), f"index of {param}:{axis} in two groups"
            taken.update(indices)
    # the param_groups table agrees with the slices
    for group in deps.groups:
        for s in group.slices:
            table = deps.param_groups[s.param][s.axis]
            assert all(table[i] == group.id for i in s.indices)
    assert_costs_consistent(graph, deps)


@pytest.mark.parametrize("name", ["resnet_basic", "densenet", "mobilenet_v2", "chunk_split", "norms"])
def test_replica_groups_have_positive_costs_and_disjoint_slices(name: str):
    """On replicas every group has positive costs, params matching its slices, and no index in two groups."""
    replica = REPLICAS[name]
    graph = ai.compile(replica.build(), example_inputs(replica))
    deps = ai.run_pass("dependency-graph", graph)
    assert deps.groups
    assert_costs_consistent(graph, deps)
    owner: dict[tuple[str, int, int], int] = {}
    for group in deps.groups:
        for s in group.slices:
            for i in s.indices:
                assert owner.setdefault((s.param, s.axis, i), group.id) == group.id


class Divide(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.c = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.a(x) / self.b(x))


def test_division_pins_divisor_channels_so_groups_stay_zero_invariant():
    """Divisor channels are pinned (a zeroed divisor would give 0/0 = NaN), so checking the model stays finite."""
    graph, deps = deps_of(Divide(), (1, 3, 4, 4))
    assert deps.value_groups["b"] == [-1] * 4
    assert deps.value_groups["a"] == [-1] * 4  # tied channel for channel to the divisor
    assert deps.pinned_reasons.get("divisor channels") == 1
    torch.manual_seed(0)
    report = ai.check(Divide(), torch.randn(1, 3, 4, 4), fraction=0.5)
    assert report.ok, report
