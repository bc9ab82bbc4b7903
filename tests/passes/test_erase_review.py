"""Erase-mode removal structures from the outside review (issue 13, findings 5, 8 and 12).

A removal structure must be zero with only the params it owns zeroed (trainable, read by no other
node), and dropping it must change no shape; the sub-network must then equal the zeroed model.
"""

from __future__ import annotations

import pytest

import asgnas_ir as ai
from asgnas_ir.pass_manager import analysis
from asgnas_ir.passes.analysis.dependency_graph import DependencyGraph
from asgnas_ir.passes.analysis.segments import (
    build_segments,
    owned_params,
    removal_consumers_ok,
    segment_zero_invariant,
)
from tests.models import REPLICAS, example_inputs
from tests.models import erase_review as er

MODES = ("erase", "both")


def _graph(name: str) -> ai.Graph:
    return ai.compile(er.build(name), er.example_input())


def _operator_nodes(space: ai.SearchSpace) -> list[list[str]]:
    return [g.nodes for g in space.groups if g.kind == "operator"]


def _segment(graph: ai.Graph, first: str) -> list[str]:
    segments, segment_of = build_segments(graph)
    return segments.segments[segment_of[first]].nodes


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(er.BAD))
def test_branch_that_is_not_removable_is_not_offered(name: str, mode: str) -> None:
    """Each replica's one candidate branch is refused: no operator group at all."""
    space = ai.search_space(_graph(name), mode=mode)
    assert _operator_nodes(space) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(er.OK))
def test_near_misses_stay_removable(name: str, mode: str) -> None:
    prefix = er.OK[name][1]
    space = ai.search_space(_graph(name), mode=mode)
    assert any(n == prefix for nodes in _operator_nodes(space) for n in nodes)


# fraction 1.0 zeroes a largest valid selection, the place the wrong structures showed up
SELECTIONS = [(0.0, 0), (1.0, 0), (0.5, 0), (0.5, 1), (0.7, 2)]


@pytest.mark.parametrize(("fraction", "seed"), SELECTIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(er.BAD) + sorted(er.OK))
def test_check_passes(name: str, mode: str, fraction: float, seed: int) -> None:
    report = ai.check(er.build(name), er.example_input(), mode=mode, fraction=fraction, seed=seed)
    assert report.ok, report


@pytest.mark.parametrize("name", sorted(er.OK))
def test_near_misses_lose_their_branch_in_check(name: str) -> None:
    """Not vacuous: with every valid branch zeroed the sub-network is smaller and still exact."""
    report = ai.check(er.build(name), er.example_input(), mode="erase", fraction=1.0, seed=0)
    assert report.ok, report
    assert report.zeroed > 0 and report.params_sub < report.params_full


def test_frozen_params_are_not_owned_and_do_not_zero_a_branch() -> None:
    """Finding 5: a frozen conv is not silenced by zeroing (its bias stays); a frozen BN after a zeroed
    conv shifts it; a trainable BN after a frozen conv zeroes the branch by itself."""
    graph = _graph("frozen_conv_in_branch")
    nodes = _segment(graph, "c1")
    assert owned_params(graph, nodes) == {"c1.weight", "c1.bias"}
    assert not segment_zero_invariant(graph, nodes)

    graph = _graph("frozen_bn_in_branch")
    nodes = _segment(graph, "c1")
    assert owned_params(graph, nodes) == {"c1.weight", "c1.bias"}
    assert not segment_zero_invariant(graph, nodes)
    # the same chain with the BN's scale and shift counted as zeroed is zero-invariant
    assert segment_zero_invariant(graph, nodes, {"c1.weight", "c1.bias", "bn.weight", "bn.bias"})

    graph = _graph("frozen_conv_trainable_bn")
    nodes = _segment(graph, "c1")
    assert owned_params(graph, nodes) == {"bn.weight", "bn.bias"}
    assert segment_zero_invariant(graph, nodes)


def test_frozen_params_go_with_the_structure_as_statistics() -> None:
    """The frozen conv's params are removed with the branch but never zeroed (kind 'stat'), and the
    group counts only the params an optimizer zeroes."""
    graph = _graph("frozen_conv_trainable_bn")
    (group,) = ai.search_space(graph, mode="erase").groups
    kinds = {s.param: s.kind for s in group.slices}
    assert kinds == {
        "c1.weight": "stat", "c1.bias": "stat", "bn.running_mean": "stat", "bn.running_var": "stat",
        "bn.weight": "out", "bn.bias": "out",
    }
    assert group.params == 2 * er.C


def test_a_branch_without_affine_norm_params_is_never_zero() -> None:
    """A BN without scale and shift subtracts its running mean from the zeroed conv's output."""
    graph = _graph("bn_no_affine")
    assert not segment_zero_invariant(graph, _segment(graph, "c1"))


def test_shared_params_are_not_owned() -> None:
    """Finding 8: the shared conv of the trunk owns nothing in the branch, so it is no structure; a
    layer scale shared by two branches is left out of both groups, which c1 and c2 zero alone."""
    graph = _graph("shared_trunk_conv")
    assert owned_params(graph, _segment(graph, "shared_1")) == set()

    graph = _graph("shared_layer_scale")
    space = ai.search_space(graph, mode="erase")
    assert sorted(g.nodes[0] for g in space.groups) == ["c1", "c2"]
    assert all("g" not in {s.param for s in group.slices} for group in space.groups)
    first = next(g for g in space.groups if g.nodes[0] == "c1")
    sub = ai.subnet(graph, space, [first.id])
    assert "g" in sub.params and "c1.weight" not in sub.params


def test_weight_sharing_replica_has_no_removal_structure() -> None:
    """`shared(y) + shared(s)`: zeroing the shared conv would silence both operands, and the conv-bn
    block before one of them leaves the shared conv's bias when zeroed; neither branch is offered."""
    replica = REPLICAS["weight_sharing"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    assert _operator_nodes(ai.search_space(graph, mode="erase")) == []


@pytest.mark.parametrize("name", ["broadcast_add", "broadcast_add_swapped"])
def test_an_operand_whose_removal_changes_the_add_shape_is_refused(name: str) -> None:
    """Finding 12: without c1 the add would be gap(y) alone, 1x1 instead of 8x8."""
    graph = _graph(name)
    deps: DependencyGraph = analysis("dependency-graph", graph)
    segments, segment_of = build_segments(graph)
    assert not removal_consumers_ok(graph, deps, segments, segments.segments[segment_of["c1"]])


def test_a_broadcast_operand_onto_a_full_survivor_stays_removable() -> None:
    graph = _graph("broadcast_bias_branch")
    deps: DependencyGraph = analysis("dependency-graph", graph)
    segments, segment_of = build_segments(graph)
    assert removal_consumers_ok(graph, deps, segments, segments.segments[segment_of["c1"]])


def test_gpt_token_embedding_is_not_removable() -> None:
    """`wte(idx) + wpe(arange(T))`: without wte the sum loses its batch axis ([T, E], not [1, T, E]).
    The position embedding, whose removal leaves the full-size token embedding, stays."""
    replica = REPLICAS["gpt_block"]
    graph = ai.compile(replica.build(), example_inputs(replica))
    firsts = [nodes[0] for nodes in _operator_nodes(ai.search_space(graph, mode="erase"))]
    assert "wte" not in firsts and "wpe" in firsts


def test_removing_a_branch_beside_a_graph_input_keeps_the_input_as_output(tmp_path) -> None:  # noqa: ANN001
    """`(x + c1(x), head(x))` without c1: the first output is the graph input itself."""
    graph = _graph("input_survivor")
    space = ai.search_space(graph, mode="erase")
    (group,) = space.groups
    sub = ai.subnet(graph, space, [group.id])
    assert sub.outputs[0] == sub.inputs[0]
    report = ai.check(er.build("input_survivor"), er.example_input(), mode="erase", fraction=1.0, out_dir=tmp_path)
    assert report.ok, report
    assert report.zeroed == 1


@pytest.mark.parametrize("name", sorted(er.BAD) + sorted(er.OK))
def test_onnx_frontend_agrees(name: str) -> None:
    """Through the ONNX exporter (trainable flags from requires_grad, buffers frozen) the same branches
    are refused or kept, and the largest valid selection is exact."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = ai.compile(er.build(name), er.example_input(), frontend="onnx")
        report = ai.check(er.build(name), er.example_input(), mode="erase", fraction=1.0, frontend="onnx")
    expected = 0 if name in er.BAD else len(ai.search_space(_graph(name), mode="erase").groups)
    assert len(ai.search_space(graph, mode="erase").groups) == expected
    assert report.ok, report


def _keras_branch(kind: str):  # noqa: ANN202
    """`head(y + branch(y))` in Keras with the branch of finding 5 or 8 (or a plain removable one)."""
    keras = pytest.importorskip("keras")
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, er.C))
    shared = layers.Conv2D(er.C, 3, padding="same", name="shared")
    stem = layers.Conv2D(er.C, 3, padding="same", name="stem")(inp)
    y = layers.ReLU()(shared(stem) if kind == "shared" else stem)
    c1 = layers.Conv2D(er.C, 3, padding="same", name="c1")
    if kind == "bn_no_affine":
        branch = layers.BatchNormalization(center=False, scale=False, name="bn")(c1(y))
    elif kind == "frozen_conv":
        c2 = layers.Conv2D(er.C, 1, name="c2")
        c2.trainable = False
        branch = c2(c1(y))
    elif kind == "shared":
        branch = shared(y)
    else:
        branch = layers.BatchNormalization(name="bn")(c1(y))
    return keras.Model(inp, layers.Conv2D(2, 1, name="head")(layers.Add()([y, branch])))


@pytest.mark.parametrize(("kind", "offered"), [("bn_no_affine", 0), ("frozen_conv", 0), ("shared", 0), ("plain", 1)])
def test_keras_branches(kind: str, offered: int) -> None:
    """Keras `BatchNormalization(center=False, scale=False)`, a layer with `trainable = False` and a
    layer called twice follow the same rules as their PyTorch twins."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((1, 8, 8, er.C)).astype("float32")
    graph = ai.compile(_keras_branch(kind), x)
    assert len(ai.search_space(graph, mode="erase").groups) == offered
    for mode in MODES:
        report = ai.check(_keras_branch(kind), x, mode=mode, fraction=1.0, seed=0)
        assert report.ok, report
