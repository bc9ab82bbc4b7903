"""Prune mode after the outside review (issue 13): zero-preserving flags audited for every op,
channels pinned wherever a removed one would not be exactly zero where it is summed (matmuls of two
activations, sums over channels, frozen layers) or would be infinite (division, negative powers),
strided channel slices, and frozen params never part of what a group zeroes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import asgnas_ir as ai
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.graph import Graph, Value
from asgnas_ir.ir.node import make_node
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs import OPDEFS, OpDef, ResizeCtx, opdef, preserves_zero
from asgnas_ir.opdefs._opdef import UNAUDITED, passthrough, same_as_input, zero_audited
from asgnas_ir.passes.analysis.dependency_graph import _label_graph
from tests.models import prune_review as pr

# ---- A: every op decides whether it maps 0 to 0 --------------------------------------------------


def _describe(rule: object) -> str:
    return getattr(rule, "__name__", None) or repr(rule)


def test_every_registered_op_states_its_zero_preserving_flag() -> None:
    """The table of every op and its flag (a bool or a per-node rule); none relies on the default."""
    table = {op.value: _describe(d.zero_preserving) for op, d in sorted(OPDEFS.items(), key=lambda kv: kv[0].value)}
    undecided = [op for op, flag in table.items() if flag == "UNAUDITED"]
    assert not undecided, f"ops without an explicit zero_preserving decision: {undecided}; all flags: {table}"
    assert set(table) == {op.value for op in Op}


def test_an_op_registered_without_a_decision_is_not_zero_preserving() -> None:
    """A new op that says nothing is read as not zero-preserving, and the audit sees it."""
    fresh = OpDef(Op.RELU, same_as_input, passthrough, lambda n, g: 0, "accessory")
    assert fresh.zero_preserving is UNAUDITED
    assert not fresh.zero_preserving
    assert all(zero_audited(op) for op in OPDEFS)


_UNARY = {
    Op.RELU: torch.relu, Op.LEAKY_RELU: F.leaky_relu, Op.GELU: F.gelu, Op.SILU: F.silu, Op.SIGMOID: torch.sigmoid,
    Op.TANH: torch.tanh, Op.HARDSWISH: F.hardswish, Op.HARDSIGMOID: F.hardsigmoid, Op.ELU: F.elu,
    Op.SOFTPLUS: F.softplus, Op.MISH: F.mish, Op.NEG: torch.neg, Op.EXP: torch.exp, Op.SQRT: torch.sqrt, Op.LOG: torch.log,
    Op.IDENTITY: lambda x: x, Op.DROPOUT: lambda x: F.dropout(x, 0.5, training=False),
}


@pytest.mark.parametrize("op", sorted(_UNARY, key=lambda o: o.value))
def test_unary_flag_is_what_the_function_does_at_zero(op: Op) -> None:
    flag = OPDEFS[op].zero_preserving
    assert isinstance(flag, bool)
    assert flag == bool((_UNARY[op](torch.zeros(5)) == 0).all())


class _One(nn.Module):
    def __init__(self, fn, *modules: nn.Module) -> None:  # noqa: ANN001
        super().__init__()
        self.layers = nn.ModuleList(modules)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)


_NODE_CASES = {
    "pad zero fill": (Op.PAD, lambda m, x: F.pad(x, (1, 1, 1, 1)), (), True),
    "pad fill 1": (Op.PAD, lambda m, x: F.pad(x, (1, 1, 1, 1), value=1.0), (), False),
    "pad reflect": (Op.PAD, lambda m, x: F.pad(x, (1, 1, 1, 1), mode="reflect"), (), True),
    "clamp min > 0": (Op.CLAMP, lambda m, x: x.clamp(min=0.1), (), False),
    "relu6": (Op.CLAMP, lambda m, x: F.relu6(x), (), True),
    "pow 2": (Op.POW, lambda m, x: x.pow(2), (), True),
    "pow -1": (Op.POW, lambda m, x: x.pow(-1), (), False),
    "add 1": (Op.ADD, lambda m, x: x + 1, (), False),
    "add of two tensors": (Op.ADD, lambda m, x: x + torch.relu(x), (), True),
    "mul 2": (Op.MUL, lambda m, x: x * 2, (), True),
    "div 2": (Op.DIV, lambda m, x: x / 2, (), True),
    "2 / x": (Op.DIV, lambda m, x: 2 / x, (), False),
    "conv with bias": (Op.CONV, lambda m, x: m.layers[0](x), (nn.Conv2d(3, 3, 1),), False),
    "conv without bias": (Op.CONV, lambda m, x: m.layers[0](x), (nn.Conv2d(3, 3, 1, bias=False),), True),
    "batch norm": (Op.BATCH_NORM, lambda m, x: m.layers[0](x), (nn.BatchNorm2d(3),), False),
    "batch norm, no affine": (Op.BATCH_NORM, lambda m, x: m.layers[0](x), (nn.BatchNorm2d(3, affine=False),), False),
    "group norm": (Op.GROUP_NORM, lambda m, x: m.layers[0](x), (nn.GroupNorm(1, 3),), False),
    "group norm, no affine": (Op.GROUP_NORM, lambda m, x: m.layers[0](x), (nn.GroupNorm(1, 3, affine=False),), True),
    "instance norm, no affine": (Op.INSTANCE_NORM, lambda m, x: m.layers[0](x), (nn.InstanceNorm2d(3),), True),
    "instance norm, affine": (Op.INSTANCE_NORM, lambda m, x: m.layers[0](x), (nn.InstanceNorm2d(3, affine=True),), False),
    "layer norm": (Op.LAYER_NORM, lambda m, x: m.layers[0](x), (nn.LayerNorm(4),), False),
    "layer norm, no bias": (Op.LAYER_NORM, lambda m, x: m.layers[0](x), (nn.LayerNorm(4, bias=False),), True),
    "max pool": (Op.MAX_POOL, lambda m, x: F.max_pool2d(x, 2), (), True),
    "avg pool": (Op.AVG_POOL, lambda m, x: F.avg_pool2d(x, 2), (), True),
    "softmax": (Op.SOFTMAX, lambda m, x: torch.softmax(x, dim=-1), (), False),
}


@pytest.mark.parametrize("case", sorted(_NODE_CASES))
def test_per_node_zero_preserving_rules(case: str) -> None:
    """The flag of one node agrees with what its torch layer does to an all-zero input."""
    op, fn, modules, expected = _NODE_CASES[case]
    model = _One(fn, *modules).eval()
    with torch.no_grad():
        for module in modules:  # a layer at its defaults is too kind: move its stats and shift off zero
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                if tensor.dtype.is_floating_point:
                    tensor.copy_(torch.rand_like(tensor) + 0.5 if "var" in name or "weight" in name else torch.rand_like(tensor) + 0.1)
        assert bool((model(torch.zeros(1, 3, 4, 4)) == 0).all()) is expected  # the reference: the layer itself
    graph = ai.compile(model, torch.randn(1, 3, 4, 4))
    nodes = [n for n in graph.nodes if n.op is op]
    assert len(nodes) == 1, [n.op.value for n in graph.nodes]
    assert preserves_zero(nodes[0], graph) is expected


# ---- B: a removed channel is exactly zero where two activations sum over it ----------------------


def _space(model: nn.Module, spec: str) -> tuple[Graph, ai.SearchSpace]:
    torch.manual_seed(0)
    shape = [int(d) for d in spec.split(",")]
    graph = ai.compile(model, torch.randn(*shape))
    return graph, ai.search_space(graph, mode="prune")


def _grouped_params(space: ai.SearchSpace, kinds: tuple[str, ...] = ("out", "in")) -> set[str]:
    return {s.param for g in space.groups for s in g.slices if s.kind in kinds}


_REVIEW = {
    "linear_attention": pr.SEQ, "sigmoid_scores": pr.SEQ, "plain_scores": pr.SEQ, "shifted_keys": pr.SEQ,
    "channel_sum": pr.IMG, "divide_by_scale": pr.IMG, "negative_power": pr.IMG,
    "strided_channel_slice": pr.IMG, "frozen_middle": pr.IMG, "frozen_consumer": pr.IMG,
}


@pytest.mark.parametrize("frontend", ["fx", "onnx"])
@pytest.mark.parametrize("name", sorted(_REVIEW))
@pytest.mark.parametrize(("fraction", "seed"), [(0.0, 0), (0.3, 1), (0.6, 2), (0.9, 3)])
def test_check_passes_on_the_review_replicas(name: str, frontend: str, fraction: float, seed: int) -> None:
    """Nothing zeroed, and random selections: the generated sub-network equals the zeroed model."""
    shape = [int(d) for d in _REVIEW[name][0].split(",")]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    report = ai.check(getattr(pr, name)(), x, mode="prune", fraction=fraction, seed=seed, frontend=frontend)
    assert report.ok, report
    assert report.max_ref > 1e-3


def test_linear_attention_pins_q_and_k_features() -> None:
    """elu(.) + 1 is 1 at a removed feature, and q·(kᵀv) sums over features: q and k stay whole."""
    graph, space = _space(pr.linear_attention(), pr.SEQ[0])
    assert not {"q.weight", "k.weight"} & _grouped_params(space)
    reasons = ai.run_pass("dependency-graph", graph).pinned_reasons
    assert any("matmul sums over channels" in r for r in reasons), reasons


def test_sigmoid_scores_pin_q_and_k_but_keep_v_prunable() -> None:
    _, space = _space(pr.sigmoid_scores(), pr.SEQ[0])
    grouped = _grouped_params(space)
    assert not {"q.weight", "k.weight"} & grouped
    assert "v.weight" in grouped


@pytest.mark.parametrize("name", ["plain_scores", "shifted_keys"])
def test_projected_q_and_k_features_stay_prunable_together(name: str) -> None:
    """Straight from a projection a removed feature is exactly 0 (on one side is enough): feature d
    of q and of k form one group."""
    _, space = _space(getattr(pr, name)(), pr.SEQ[0])
    together = [g for g in space.groups if {"q.weight", "k.weight"} <= {s.param for s in g.slices if s.kind == "out"}]
    assert len(together) == 12


def test_sum_over_channels_keeps_zero_channels_prunable_and_pins_the_rest() -> None:
    """relu(conv) channels are 0 once removed and drop out of a channel sum; sigmoid's are 0.5."""
    _, space = _space(pr.channel_sum(), pr.IMG[0])
    grouped = _grouped_params(space)
    assert "a.weight" in grouped and "b.weight" not in grouped
    assert len(space.groups) == 8


def test_zero_flags_follow_the_ops() -> None:
    """Exactly zero after conv, bn, relu, pooling and reshape; not after sigmoid or + 1."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y = F.max_pool2d(torch.relu(self.bn(self.c(x))), 2)
            return y.flatten(1), torch.sigmoid(y), y + 1, y * torch.sigmoid(y)

    graph = ai.compile(Net().eval(), torch.randn(1, 3, 8, 8))
    ctx = _label_graph(graph)
    flat, sig, shifted, gated = graph.outputs
    assert ctx.zeros(flat).all() and ctx.zeros(gated).all()
    assert not ctx.zeros(sig).any() and not ctx.zeros(shifted).any()


# ---- C: ops that are infinite at zero ---------------------------------------------------------------


def test_a_per_channel_divisor_is_sliced_but_never_zeroed() -> None:
    """Zeroing `scale` with its channel would divide by zero: it is a `stat` slice, the channel
    stays removable through c1's filters and c2's columns."""
    _, space = _space(pr.divide_by_scale(), pr.IMG[0])
    assert len(space.groups) == 8
    for group in space.groups:
        kinds = {s.param: s.kind for s in group.slices}
        assert kinds["scale"] == "stat" and kinds["c1.weight"] == "out" and kinds["c2.weight"] == "in"


def test_a_negative_power_pins_its_input_channels() -> None:
    graph, space = _space(pr.negative_power(), pr.IMG[0])
    assert "c1.weight" not in _grouped_params(space)
    assert "negative power (infinite at zero)" in ai.run_pass("dependency-graph", graph).pinned_reasons


# ---- D: strided channel slices -----------------------------------------------------------------------


@pytest.mark.parametrize("frontend", ["fx", "onnx"])
def test_strided_channel_slices_survive_subnet_with_nothing_removed(frontend: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    graph = ai.compile(pr.strided_channel_slice(), x, frontend=frontend)
    space = ai.search_space(graph, mode="prune")
    sub = ai.subnet(graph, space, [])
    steps = sorted((n.attrs.start, n.attrs.step) for n in sub.nodes if n.op is Op.SLICE)
    assert steps == [(0, 2), (1, 2), (1, 3), (1, 3)], steps
    assert len(space.groups) == 6  # f's channels; a's are pinned by the strided slices
    sub = ai.subnet(graph, space, [0, 2, 3])
    assert sorted(n.attrs.step for n in sub.nodes if n.op is Op.SLICE) == [2, 2, 3, 3]


def _resize_slice(start: int, stop: int, step: int, keep: list[bool]) -> A.SliceAttrs:
    keep_mask = np.array(keep)
    picked = np.arange(start, min(stop, len(keep)), step)
    node = make_node(Op.SLICE, "s", ["x"], ["y"], attrs=A.SliceAttrs(axis=1, start=start, stop=stop, step=step))
    ctx = ResizeCtx(
        node=node,
        old_inputs=[Value(shape=(1, len(keep)), dtype="float32", channel_axis=1)],
        new_input_shapes=[(1, int(keep_mask.sum()))],
        old_outputs=[Value(shape=(1, len(picked)), dtype="float32", channel_axis=1)],
        new_output_shapes=[(1, int(keep_mask[picked].sum()))],
        input_keep=[keep_mask],
    )
    return opdef(Op.SLICE).resize(ctx)  # type: ignore[misc]


def test_slice_resize_maps_start_stop_and_step_to_the_surviving_channels() -> None:
    every = [True] * 8
    assert _resize_slice(0, 8, 2, every).model_dump() == {"axis": 1, "start": 0, "stop": 7, "step": 2}
    assert _resize_slice(1, 8, 2, every).model_dump() == {"axis": 1, "start": 1, "stop": 8, "step": 2}
    # unpicked channels removed: of 1, 3, 5, 7 (new positions 0, 1, 2, 3) a plain slice remains
    odd_only = [i % 2 == 1 for i in range(8)]
    assert _resize_slice(1, 8, 2, odd_only).model_dump() == {"axis": 1, "start": 0, "stop": 4, "step": 1}
    # a contiguous slice keeps working as before
    assert _resize_slice(2, 6, 1, [True, False, True, False, True, True, True, True]).model_dump() == {
        "axis": 1, "start": 1, "stop": 4, "step": 1,
    }
    with pytest.raises(ai.IRValidationError, match="not evenly spaced"):
        _resize_slice(0, 8, 2, [True, True, False, True, True, True, True, True])


# ---- E: frozen params are never what a group zeroes -----------------------------------------------


@pytest.mark.parametrize("frontend", ["fx", "onnx"])
@pytest.mark.parametrize("name", ["frozen_middle", "frozen_consumer"])
def test_every_offered_group_is_zeroed_through_trainable_params_only(name: str, frontend: str) -> None:
    """What H2SPG can do: every `out`/`in` slice of every group is a trainable param, and every group
    makes its channels through one (frozen slices are `stat`: sliced, never zeroed)."""
    torch.manual_seed(0)
    graph = ai.compile(getattr(pr, name)(), torch.randn(1, 3, 16, 16), frontend=frontend)
    space = ai.search_space(graph, mode="prune")
    assert space.groups
    for group in space.groups:
        zeroed = [s for s in group.slices if s.kind != "stat"]
        assert all(graph.params[s.param].trainable for s in zeroed), group
        assert any(s.kind == "out" for s in zeroed), group


def test_a_frozen_layer_keeps_its_filters_and_its_producer_stays_prunable() -> None:
    """c2/b2 frozen: their channels are not offered; c1's are (relu(bn(c1)) is exactly zero where the
    frozen c2 sums over it); c3's are."""
    _, space = _space(pr.frozen_middle(), pr.IMG[0])
    out_params = _grouped_params(space, ("out",))
    assert {"c1.weight", "c3.weight"} <= out_params and not {"c2.weight", "b2.weight"} & out_params
    assert len(space.groups) == 16


def test_a_frozen_consumer_pins_channels_that_are_not_zero_there() -> None:
    _, space = _space(pr.frozen_consumer(), pr.IMG[0])
    out_params = _grouped_params(space, ("out",))
    assert "a.weight" in out_params and "b.weight" not in out_params
    assert len(space.groups) == 6
