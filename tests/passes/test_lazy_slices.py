"""Channel groups build `slices` and `nodes` on first read (NOTE: [Lazy slices]): the values must not
depend on when, in which order, or through which path (copy, pickle, JSON, replace) they are read."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.passes.analysis.dependency_graph import ChannelGroup, Slice
from asgnas_ir.passes.analysis.search_space import SearchSpace
from tests.models import REPLICAS, example_inputs


def fresh_space(name: str) -> ai.SearchSpace:
    """A new graph (so no cached analysis) and its prune-mode space, no group read yet."""
    replica = REPLICAS[name]
    torch.manual_seed(0)
    return ai.search_space(ai.compile(replica.build(), example_inputs(replica)), mode="prune")


def as_values(group: ChannelGroup) -> tuple:
    return (group.id, group.kind, [(s.param, s.axis, list(s.indices), s.kind) for s in group.slices], list(group.nodes),
            group.parent, group.flops, group.params, group.channels)


@pytest.mark.parametrize("name", ["densenet", "mobilenet_v3", "weight_sharing"])
def test_values_do_not_depend_on_read_order(name: str):
    forward = [as_values(g) for g in fresh_space(name).groups]
    backward = [as_values(g) for g in reversed(fresh_space(name).groups)][::-1]
    assert forward == backward


def test_a_read_returns_the_same_list_of_the_same_slices():
    group = fresh_space("densenet").groups[5]
    first = group.slices
    assert group.slices is first and group.nodes is group.nodes
    assert all(isinstance(s, Slice) for s in first) and first


def test_slices_agree_with_the_param_channel_map():
    """Independent check: a group's slices are exactly the indices `param_groups` assigns to it."""
    replica = REPLICAS["resnet_bottleneck"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    deps = ai.run_pass("dependency-graph", graph)
    expected: dict[int, set[tuple[str, int, tuple[int, ...]]]] = {}
    for param, axes in deps.param_groups.items():
        for axis, owners in axes.items():
            for gid in set(owners) - {-1}:
                expected.setdefault(gid, set()).add((param, axis, tuple(i for i, o in enumerate(owners) if o == gid)))
    assert expected == {g.id: {(s.param, s.axis, tuple(s.indices)) for s in g.slices} for g in deps.groups}


@pytest.mark.parametrize(
    "roundtrip",
    [copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s)), lambda s: SearchSpace.model_validate_json(s.model_dump_json())],
    ids=["deepcopy", "pickle", "json"],
)
def test_unread_groups_survive_copies(roundtrip):
    space = fresh_space("efficientnet")
    copied = roundtrip(space)
    assert [as_values(g) for g in copied.groups] == [as_values(g) for g in fresh_space("efficientnet").groups]
    assert copied.groups == space.groups


def test_replace_and_equality_with_an_eagerly_built_group():
    group = fresh_space("resnet_basic").groups[3]
    eager = ChannelGroup(*as_values(group)[:2], [Slice(*v) for v in as_values(group)[2]], *as_values(group)[3:])
    assert eager == group
    moved = dataclasses.replace(group, parent=7)
    assert moved.parent == 7 and moved.slices == group.slices and moved.nodes == group.nodes
    group.slices = []
    assert group.slices == [] and group != eager
