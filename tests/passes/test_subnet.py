"""subnet: removing channel groups shrinks values, params and attributes, and keeps the outputs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.ir import Graph
from asgnas_ir.testing import load_generated
from tests.models import REPLICAS, example_inputs
from tests.passes.nets import ConvBnReluConv


def compiled(model: nn.Module, shape: tuple[int, ...] = (1, 3, 4, 4)) -> Graph:
    torch.manual_seed(0)
    return ai.compile(model.eval(), torch.randn(shape))


def groups_with(space, param: str, axis: int, index: int) -> int:
    """The id of the group holding `index` of `param` along `axis`."""
    for group in space.groups:
        for s in group.slices:
            if s.param == param and s.axis == axis and index in s.indices:
                return group.id
    raise AssertionError(f"no group holds {param}:{axis}[{index}]")


def import_generated(folder: Path):
    """The loaded model generated into `folder`."""
    return load_generated(folder)


def test_removing_groups_shrinks_values_and_params_and_slices_weights():
    """Removing 2 of 6 hidden channels shrinks the hidden values to 4 channels and slices each weight."""
    graph = compiled(ConvBnReluConv())
    space = ai.search_space(graph)
    removed = [1, 4]
    sub = ai.subnet(graph, space, removed)
    kept = [0, 2, 3, 5]
    for value in ("conv1", "bn", "relu"):
        assert sub.values[value].shape == (1, 4, 4, 4)
    assert sub.values["x"] == graph.values["x"]
    assert sub.values["conv2"] == graph.values["conv2"]
    assert sub.params["conv1.weight"].shape == (4, 3, 3, 3)
    assert sub.params["conv2.weight"].shape == (5, 4, 1, 1)
    assert sub.params["bn.running_var"].shape == (4,)
    assert sub.params["bn.num_batches_tracked"].shape == ()
    w = graph.weights
    np.testing.assert_array_equal(sub.weights["conv1.weight"], w["conv1.weight"][kept])
    np.testing.assert_array_equal(sub.weights["conv1.bias"], w["conv1.bias"][kept])
    for name in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        np.testing.assert_array_equal(sub.weights[name], w[name][kept])
    np.testing.assert_array_equal(sub.weights["conv2.weight"], w["conv2.weight"][:, kept])
    np.testing.assert_array_equal(sub.weights["conv2.bias"], w["conv2.bias"])
    assert ai.run_pass("verify", sub).nodes == len(graph.nodes)
    assert sub.param_count() == graph.param_count() - sum(space.group(i).params for i in removed)
    assert ai.cost(sub).flops < ai.cost(graph).flops


def test_subnet_leaves_the_input_graph_unchanged():
    """subnet is functional: the input graph's structure and weights are the same afterwards."""
    graph = compiled(ConvBnReluConv())
    before = graph.model_dump()
    weights = {k: v.copy() for k, v in graph.weights.items()}
    space = ai.search_space(graph)
    result = ai.run_pass("subnet", graph, zero_groups=[0, 2, 3])
    assert result.modified
    assert result.graph is not graph
    assert graph.model_dump() == before
    assert set(graph.weights) == set(weights)
    for name, array in weights.items():
        np.testing.assert_array_equal(graph.weights[name], array)
    assert ai.search_space(graph).groups == space.groups
    ai.run_pass("verify", graph)


def test_subnet_without_groups_is_structurally_equal():
    """Removing no group gives a graph equal to the input, with equal weights, and modified=False."""
    graph = compiled(ConvBnReluConv())
    result = ai.run_pass("subnet", graph, zero_groups=[])
    assert not result.modified
    assert result.graph.model_dump() == graph.model_dump()
    assert result.graph.fingerprint() == graph.fingerprint()
    for name, array in graph.weights.items():
        np.testing.assert_array_equal(result.graph.weights[name], array)
    sub = ai.subnet(graph, ai.search_space(graph), [])
    assert sub.model_dump() == graph.model_dump()


@pytest.mark.parametrize("bad", [6, 99, -1])
def test_zero_group_id_out_of_range_names_id_and_range(bad: int):
    """A group id outside the search space raises AsgnasError naming the id and the valid range."""
    graph = compiled(ConvBnReluConv())
    space = ai.search_space(graph)
    with pytest.raises(ai.AsgnasError, match=rf"group id {bad} does not exist.*ids 0\.\.5"):
        ai.subnet(graph, space, [0, bad])
    with pytest.raises(ai.AsgnasError, match=rf"\[{bad}\] do not exist.*ids 0\.\.5"):
        ai.run_pass("subnet", graph, zero_groups=[bad])


def test_removing_every_group_of_a_layer_names_the_value():
    """Removing all of a layer's channels raises AsgnasError naming the value left empty."""
    graph = compiled(ConvBnReluConv())
    space = ai.search_space(graph)
    with pytest.raises(ai.AsgnasError, match=r"value '%conv1' \(made by node 'conv1'.*no channels"):
        ai.subnet(graph, space, range(len(space.groups)))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.g = nn.Conv2d(8, 12, 3, padding=1, groups=4)
        self.n = nn.GroupNorm(4, 12)
        self.c = nn.Conv2d(12, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.n(self.g(torch.relu(self.a(x))))))


def test_grouped_conv_and_group_norm_attributes_are_resized():
    """Removing one conv group gives groups=3 on the grouped conv and num_groups=3 on the GroupNorm."""
    graph = compiled(Grouped())
    space = ai.search_space(graph)
    assert len(space.groups) == 4
    sub = ai.subnet(graph, space, [2])
    g = sub.node("g")
    assert g.attrs.groups == 3
    assert sub.node("n").attrs.num_groups == 3
    assert sub.params["g.weight"].shape == (9, 2, 3, 3)  # per-group input width unchanged
    assert sub.params["a.weight"].shape == (6, 3, 1, 1)
    assert sub.params["c.weight"].shape == (2, 9, 1, 1)
    np.testing.assert_array_equal(sub.weights["g.weight"], np.delete(graph.weights["g.weight"], [6, 7, 8], axis=0))
    ai.run_pass("verify", sub)


class SplitSlice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.p = nn.Conv2d(3, 2, 1)
        self.q = nn.Conv2d(5, 2, 1)
        self.mid = nn.Conv2d(3, 8, 1)
        self.tail = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.relu(self.stem(x)).split([3, 5], dim=1)
        y = self.p(a) + self.q(b)
        z = torch.relu(self.mid(x))[:, 2:6]
        return y + self.tail(z)


def test_split_sizes_and_slice_bounds_are_resized():
    """Removing channels before and inside a split/slice updates split sizes and slice start/stop."""
    graph = compiled(SplitSlice())
    space = ai.search_space(graph)
    split_node = next(n for n in graph.nodes if n.op.value == "split")
    slice_node = next(n for n in graph.nodes if n.op.value == "slice")
    assert split_node.attrs.sizes == (3, 5)
    assert (slice_node.attrs.start, slice_node.attrs.stop) == (2, 6)
    remove = [
        groups_with(space, "stem.weight", 0, 0),  # first split piece
        groups_with(space, "stem.weight", 0, 4),  # second split piece
        groups_with(space, "stem.weight", 0, 6),
        groups_with(space, "mid.weight", 0, 1),  # before the slice
        groups_with(space, "mid.weight", 0, 3),  # inside the slice
        groups_with(space, "mid.weight", 0, 7),  # after the slice
    ]
    sub = ai.subnet(graph, space, remove)
    assert sub.node(split_node.id).attrs.sizes == (2, 3)
    new_slice = sub.node(slice_node.id).attrs
    assert (new_slice.start, new_slice.stop, new_slice.step) == (1, 4, 1)
    assert sub.values[slice_node.outputs[0]].shape[1] == 3
    assert sub.params["tail.weight"].shape == (2, 3, 1, 1)
    ai.run_pass("verify", sub)


class FlattenView(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return self.fc(y.view(y.size(0), self.features))


@pytest.mark.parametrize(("features", "resized"), [(64, 48), (-1, -1)])
def test_reshape_target_and_linear_features_are_resized(features: int, resized: int):
    """Removing a channel before a view shrinks an explicit reshape target (keeps -1) and the Linear by H*W."""
    graph = compiled(FlattenView(features))
    space = ai.search_space(graph)
    sub = ai.subnet(graph, space, [1])
    reshape = next(n for n in sub.nodes if n.op.value == "reshape")
    assert reshape.attrs.shape == (1, resized)
    assert sub.values[reshape.outputs[0]].shape == (1, 48)
    assert sub.params["fc.weight"].shape == (5, 48)
    np.testing.assert_array_equal(
        sub.weights["fc.weight"], np.delete(graph.weights["fc.weight"], range(16, 32), axis=1)
    )
    ai.run_pass("verify", sub)


@pytest.mark.parametrize("name", ["chunk_split", "norms", "weight_sharing"])
def test_check_on_replicas_reports_equal_outputs(name: str, tmp_path: Path):
    """ai.check (zero half the groups, subnet, codegen, run) reports ok on replicas."""
    replica = REPLICAS[name]
    report = ai.check(replica.build(), example_inputs(replica), fraction=0.5, out_dir=tmp_path)
    assert report.ok, report
    assert report.zeroed > 0
    assert report.params_sub < report.params_full
    assert report.flops_sub < report.flops_full
    assert (tmp_path / "model.py").is_file()


def zeroed_copy(graph: Graph, space, ids: list[int]) -> Graph:
    """A copy of `graph` whose chosen groups' out and in slices are zero in the weights."""
    weights = {name: array.copy() for name, array in graph.weights.items()}
    for gid in ids:
        for s in space.group(gid).slices:
            if s.kind in ("out", "in"):
                index = [slice(None)] * weights[s.param].ndim
                index[s.axis] = s.indices
                weights[s.param][tuple(index)] = 0
    return graph.copy_with(weights=weights)


@pytest.mark.parametrize("name", ["chunk_split", "mobilenet_v2", "densenet"])
def test_subnet_matches_the_zeroed_full_network_through_codegen(name: str, tmp_path: Path):
    """Codegen of the zeroed full graph and of its subnet compute the same outputs within 1e-4 relative."""
    replica = REPLICAS[name]
    model = copy.deepcopy(replica.build())
    inputs = example_inputs(replica)
    graph = ai.compile(model, inputs)
    space = ai.search_space(graph)
    ids = ai.random_zero_groups(graph, space, 0.5, seed=3)
    assert ids
    full = zeroed_copy(graph, space, ids)
    sub = ai.subnet(full, space, ids)
    assert sub.param_count() < full.param_count()
    ai.codegen(full, target="torch", out_dir=tmp_path / "full")
    ai.codegen(sub, target="torch", out_dir=tmp_path / "sub")
    full_model, sub_model = import_generated(tmp_path / "full"), import_generated(tmp_path / "sub")
    assert sum(p.numel() for p in sub_model.parameters()) == sub.param_count()
    with torch.no_grad():
        expected = full_model(*inputs)
        actual = sub_model(*inputs)
        reference = model(*inputs)
    assert expected.shape == actual.shape == reference.shape
    scale = float(expected.abs().max())
    assert scale > 1e-3
    assert float((expected - actual).abs().max()) <= 1e-4 * scale
    # zeroing really changed something, so the comparison is not vacuous
    assert not torch.allclose(reference, expected)


class LayerScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, 8).reshape(8, 1, 1))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.stem(x)) * self.gamma)


def test_per_channel_constant_is_a_group_slice():
    """A per-channel parameter multiplied into prunable channels (layer scale) is sliced with them."""
    graph = compiled(LayerScale())
    space = ai.search_space(graph)
    assert len(space.groups) == 8
    for i, group in enumerate(space.groups):
        assert {(s.param, s.axis, tuple(s.indices)) for s in group.slices if s.param == "gamma"} == {("gamma", 0, (i,))}


def test_subnet_slices_a_per_channel_constant():
    """Removing channels scaled by a per-channel parameter shrinks that parameter and its constant value."""
    graph = compiled(LayerScale())
    sub = ai.subnet(graph, ai.search_space(graph), [0, 3])
    assert sub.params["gamma"].shape == (6, 1, 1)
    np.testing.assert_array_equal(sub.weights["gamma"], np.delete(graph.weights["gamma"], [0, 3], axis=0))
    ai.run_pass("verify", sub)


@pytest.mark.parametrize("name", ["resnet_bottleneck", "mobilenet_v3"])
def test_maximal_random_pruning_still_builds_and_matches(name: str):
    """Zeroing every group random_zero_groups allows (fraction 1.0) still gives a checked, verified subnet."""
    replica = REPLICAS[name]
    report = ai.check(replica.build(), example_inputs(replica), fraction=1.0, seed=1)
    # One channel is left per value, and ReLU/hardswish can leave it dead for every input: then every
    # output is a constant and check reports the selection as degenerate rather than ok. Either way the
    # sub-network must build and reproduce the zeroed model.
    assert report.ok or report.degenerate, report
    assert report.max_abs_diff <= report.tolerance and report.max_ref > 1e-3
    assert report.zeroed > report.groups // 2
    assert 0 < report.params_sub < report.params_full


def test_search_space_of_another_graph_is_refused():
    """ai.subnet refuses a search space computed for a different graph (its fingerprint differs)."""
    graph = compiled(ConvBnReluConv())
    other = compiled(Grouped())
    foreign = ai.search_space(other)
    assert foreign.graph_fingerprint != graph.fingerprint()
    with pytest.raises(ai.AsgnasError):
        ai.subnet(graph, foreign, [0])
