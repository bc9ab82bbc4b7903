"""shape-inference: output shapes and channel axes from the op rules, checked against torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import asgnas_ir as ai
from asgnas_ir.ir import Graph, Param, Value, make_node
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op
from asgnas_ir.opdefs._opdef import factor_axes, reshape_channel_map


def infer(
    op: Op,
    inputs: list[Value],
    attrs: A.Attrs | None = None,
    params: dict[str, Param] | None = None,
    outputs: int = 1,
) -> list[Value]:
    """Run shape-inference on a one-node graph and return the inferred output types."""
    names = [f"in{i}" for i in range(len(inputs))]
    outs = ["y"] if outputs == 1 else [f"y{i}" for i in range(outputs)]
    params = params or {}
    graph = Graph(
        name="one",
        inputs=names,
        outputs=outs,
        values=dict(zip(names, inputs, strict=True)),
        params={f"p.{role}": p for role, p in params.items()},
        nodes=[make_node(op, "node", names, outs, attrs=attrs, params={role: f"p.{role}" for role in params})],
    )
    result = ai.run_pass("shape-inference", graph)
    return [result.values[o] for o in outs]


def nchw(*shape: int, channel_axis: int | None = 1) -> Value:
    return Value(shape=shape, channel_axis=channel_axis)


def zeros(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.zeros(shape)


# ---- convolution -------------------------------------------------------------------------------

CONV_CASES = [
    # (input shape, out channels, kernel, stride, padding, dilation, groups)
    ((1, 3, 9, 9), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((2, 4, 11, 7), 6, (3, 2), (2, 1), (0, 1), (1, 1), 2),
    ((1, 8, 16, 16), 8, (3, 3), (2, 2), (2, 2), (2, 2), 8),
    ((1, 6, 10, 13), 9, (5, 3), (3, 2), (2, 0), (1, 3), 3),
    ((1, 3, 7, 7), 4, (7, 7), (1, 1), (0, 0), (1, 1), 1),
    ((1, 4, 20), 8, (5,), (2,), (1,), (2,), 4),
    ((1, 2, 6, 7, 8), 4, (3, 3, 3), (1, 2, 2), (1, 1, 0), (1, 1, 2), 2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"in{list(c[0])}-k{list(c[2])}-s{list(c[3])}-g{c[6]}")
def test_conv_shape_matches_torch(case):
    """conv output shape (stride, symmetric padding, dilation, groups; 1/2/3-d) equals torch's, channel axis 1."""
    in_shape, cout, kernel, stride, padding, dilation, groups = case
    n = len(kernel)
    weight_shape = (cout, in_shape[1] // groups, *kernel)
    weight = Param(shape=weight_shape, source="w", axes="OI" + "DHW"[3 - n :])
    attrs = A.ConvAttrs(stride=stride, padding=tuple((p, p) for p in padding), dilation=dilation, groups=groups)
    [out] = infer(Op.CONV, [nchw(*in_shape)], attrs, {"weight": weight})
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    expected = conv(zeros(in_shape), zeros(weight_shape), None, stride, padding, dilation, groups).shape
    assert out.shape == tuple(expected)
    assert out.channel_axis == 1 and out.dtype == "float32"


def test_conv_asymmetric_padding_matches_torch_pad_then_conv():
    """(before, after) padding pairs give the shape of F.pad followed by an unpadded conv."""
    weight = Param(shape=(4, 3, 3, 3), source="w", axes="OIHW")
    attrs = A.ConvAttrs(stride=(2, 2), padding=((0, 1), (2, 1)), dilation=(1, 1))
    [out] = infer(Op.CONV, [nchw(1, 3, 10, 9)], attrs, {"weight": weight})
    padded = F.pad(zeros((1, 3, 10, 9)), (2, 1, 0, 1))
    assert out.shape == tuple(F.conv2d(padded, zeros((4, 3, 3, 3)), stride=2).shape)


def test_channels_last_conv_keeps_channels_on_the_last_axis():
    """A channels_last conv reads NHWC, writes NHWC, and marks the last axis as the channel axis."""
    weight = Param(shape=(5, 3, 3, 3), source="w", axes="OIHW")
    attrs = A.ConvAttrs(stride=(2, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), channels_last=True)
    [out] = infer(Op.CONV, [nchw(1, 9, 8, 3, channel_axis=3)], attrs, {"weight": weight})
    expected = F.conv2d(zeros((1, 3, 9, 8)), zeros((5, 3, 3, 3)), stride=(2, 1), padding=1).permute(0, 2, 3, 1)
    assert out.shape == tuple(expected.shape)
    assert out.channel_axis == 3


def test_conv_with_wrong_input_channels_names_the_node():
    """A conv whose weight does not match its input's channels is rejected, naming the node."""
    weight = Param(shape=(4, 2, 3, 3), source="w", axes="OIHW")
    attrs = A.ConvAttrs(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1))
    with pytest.raises(ai.IRValidationError, match=r"node 'node'.*expects 2 input channels.*has 3"):
        infer(Op.CONV, [nchw(1, 3, 8, 8)], attrs, {"weight": weight})


def test_conv_with_empty_output_is_rejected():
    """A kernel larger than the padded input is rejected instead of giving a non-positive size."""
    weight = Param(shape=(4, 3, 5, 5), source="w", axes="OIHW")
    attrs = A.ConvAttrs(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1))
    with pytest.raises(ai.IRValidationError, match="conv output size"):
        infer(Op.CONV, [nchw(1, 3, 4, 4)], attrs, {"weight": weight})


CONV_T_CASES = [
    # (input shape, out channels, kernel, stride, padding, output_padding, dilation, groups)
    ((1, 4, 5, 5), 6, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1),
    ((1, 4, 4, 6), 8, (4, 3), (2, 3), (1, 0), (0, 2), (1, 1), 2),
    ((2, 6, 3, 3), 3, (3, 3), (1, 1), (0, 0), (0, 0), (2, 2), 3),
    ((1, 2, 7), 4, (5,), (3,), (2,), (1,), (1,), 1),
]


@pytest.mark.parametrize("case", CONV_T_CASES, ids=lambda c: f"in{list(c[0])}-s{list(c[3])}-g{c[7]}")
def test_conv_transpose_shape_matches_torch(case):
    """conv_transpose output shape (stride, padding, output_padding, dilation, groups) equals torch's."""
    in_shape, cout, kernel, stride, padding, output_padding, dilation, groups = case
    n = len(kernel)
    weight_shape = (in_shape[1], cout // groups, *kernel)
    weight = Param(shape=weight_shape, source="w", axes="IO" + "DHW"[3 - n :])
    attrs = A.ConvTransposeAttrs(
        stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups
    )
    [out] = infer(Op.CONV_TRANSPOSE, [nchw(*in_shape)], attrs, {"weight": weight})
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d}[n]
    expected = fn(zeros(in_shape), zeros(weight_shape), None, stride, padding, output_padding, groups, dilation)
    assert out.shape == tuple(expected.shape)
    assert out.channel_axis == 1


# ---- pooling -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 13),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 4),
    pad_frac=st.integers(0, 2),
    dilation=st.integers(1, 2),
    ceil_mode=st.booleans(),
)
def test_max_pool_shape_matches_torch(size, kernel, stride, pad_frac, dilation, ceil_mode):
    """max_pool output size, including ceil_mode dropping windows that start in the padding, equals torch's."""
    padding = min(pad_frac, kernel // 2)
    assume(size + 2 * padding >= dilation * (kernel - 1) + 1)  # torch rejects smaller inputs too
    attrs = A.PoolAttrs(
        kernel_size=(kernel, 1), stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1), ceil_mode=ceil_mode
    )
    [out] = infer(Op.MAX_POOL, [nchw(1, 2, size, 3)], attrs)
    expected = F.max_pool2d(zeros((1, 2, size, 3)), (kernel, 1), (stride, 1), (padding, 0), (dilation, 1), ceil_mode)
    assert out.shape == tuple(expected.shape)
    assert out.channel_axis == 1


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "ceil_mode"),
    [(7, 2, 2, 0, True), (7, 2, 2, 0, False), (8, 3, 2, 1, True), (5, 3, 3, 1, True), (6, 3, 2, 1, True), (4, 2, 3, 1, True)],
)
def test_avg_pool_shape_matches_torch(size, kernel, stride, padding, ceil_mode):
    """avg_pool output size, including ceil_mode, equals torch's."""
    attrs = A.PoolAttrs(kernel_size=(kernel, kernel), stride=(stride, stride), padding=(padding, padding), ceil_mode=ceil_mode)
    [out] = infer(Op.AVG_POOL, [nchw(1, 4, size, size + 1)], attrs)
    expected = F.avg_pool2d(zeros((1, 4, size, size + 1)), kernel, stride, padding, ceil_mode)
    assert out.shape == tuple(expected.shape)
    assert out.channel_axis == 1


def test_adaptive_pools_take_their_output_size():
    """Adaptive pools set the spatial axes to output_size and keep the channels."""
    for op in (Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL):
        [out] = infer(op, [nchw(2, 5, 9, 7)], A.AdaptivePoolAttrs(output_size=(3, 1)))
        assert out.shape == tuple(F.adaptive_avg_pool2d(zeros((2, 5, 9, 7)), (3, 1)).shape)
        assert out.channel_axis == 1


# ---- data movement -----------------------------------------------------------------------------


def test_flatten_after_channels_keeps_channel_axis_1():
    """flatten(x, 1) of NCHW gives [N, C*H*W] with the channel axis still 1 (features follow channels)."""
    [out] = infer(Op.FLATTEN, [nchw(2, 4, 3, 5)], A.FlattenAttrs(start_axis=1, end_axis=3))
    assert out.shape == tuple(torch.flatten(zeros((2, 4, 3, 5)), 1).shape) == (2, 60)
    assert out.channel_axis == 1


def test_flatten_of_spatial_axes_keeps_channels_in_place():
    """flatten(x, 2) of NCHW gives [N, C, H*W] with the channel axis unchanged."""
    [out] = infer(Op.FLATTEN, [nchw(1, 4, 3, 5)], A.FlattenAttrs(start_axis=2, end_axis=3))
    assert out.shape == (1, 4, 15)
    assert out.channel_axis == 1


@pytest.mark.parametrize(
    ("shape", "channel_axis", "perm", "expected_axis"),
    [
        ((1, 4, 6, 8), 1, (0, 2, 3, 1), 3),
        ((1, 6, 8, 4), 3, (0, 3, 1, 2), 1),
        ((2, 5, 7), 1, (0, 2, 1), 2),
        ((2, 5, 7), 1, (1, 0, 2), 0),
    ],
)
def test_permute_moves_the_channel_axis(shape, channel_axis, perm, expected_axis):
    """permute reorders the shape like torch and the channel axis goes where its dimension went."""
    [out] = infer(Op.PERMUTE, [nchw(*shape, channel_axis=channel_axis)], A.PermuteAttrs(perm=perm))
    assert out.shape == tuple(zeros(shape).permute(*perm).shape)
    assert out.channel_axis == expected_axis


def test_permute_with_a_bad_order_is_rejected():
    """A permutation that is not one of the input's axes is rejected, naming the node."""
    with pytest.raises(ai.IRValidationError, match="not a permutation"):
        infer(Op.PERMUTE, [nchw(1, 4, 6)], A.PermuteAttrs(perm=(0, 1, 1)))


@pytest.mark.parametrize(
    ("axes", "keepdim", "expected_axis"),
    [
        ((2, 3), False, 1),
        ((2, 3), True, 1),
        ((3,), False, 1),
        ((1,), False, None),
        ((1,), True, None),
        ((1, 2, 3), False, None),
        ((0,), False, 0),
    ],
)
def test_mean_and_sum_keep_channels_only_when_not_reduced(axes, keepdim, expected_axis):
    """A reduction over spatial axes keeps the channel axis (re-indexed); over the channel axis it has none."""
    for op, fn in ((Op.MEAN, torch.mean), (Op.SUM, torch.sum)):
        [out] = infer(op, [nchw(2, 4, 5, 6)], A.ReduceAttrs(axes=axes, keepdim=keepdim))
        assert out.shape == tuple(fn(zeros((2, 4, 5, 6)), dim=axes, keepdim=keepdim).shape)
        assert out.channel_axis == expected_axis


@pytest.mark.parametrize(
    ("target", "expected_shape", "expected_axis"),
    [
        ((1, 8, 16), (1, 8, 16), 1),
        ((1, -1), (1, 128), 1),
        # splitting the channel axis into (blocks, block): the blocks axis carries the channels
        ((1, 2, 4, 16), (1, 2, 4, 16), 1),
        ((1, 2, 4, 4, 4), (1, 2, 4, 4, 4), 1),
        ((1, 4, 2, 16), (1, 4, 2, 16), 1),
    ],
)
def test_reshape_channel_axis_follows_or_is_lost(target, expected_shape, expected_axis):
    """A reshape keeping whole channels (or contiguous blocks of them) on one axis keeps a channel axis."""
    [out] = infer(Op.RESHAPE, [nchw(1, 8, 4, 4)], A.ReshapeAttrs(shape=target))
    assert out.shape == expected_shape == tuple(zeros((1, 8, 4, 4)).reshape(target).shape)
    assert out.channel_axis == expected_axis


def test_reshape_scattering_channels_loses_the_channel_axis():
    """Channels-last [1, 4, 4, 8] read as [1, 4, 8, 4] interleaves channels on two axes: no channel axis."""
    x = Value(shape=(1, 4, 4, 8), dtype="float32", channel_axis=3)
    [out] = infer(Op.RESHAPE, [x], A.ReshapeAttrs(shape=(1, 4, 8, 4)))
    assert out.channel_axis is None


def test_head_split_ties_each_head_and_survives_pruning_to_one_head():
    """[B, T, E] -> [B, T, H, Dh]: H carries the channels in blocks of Dh; with one head left the
    ambiguous [B, T, 1, Dh] keeps the reading its source graph had (axis 2, not the Dh axis)."""
    axis, ties = reshape_channel_map((1, 5, 32), 2, (1, 5, 4, 8))
    assert axis == 2 and ties.tolist() == [list(range(h * 8, h * 8 + 8)) for h in range(4)]
    assert reshape_channel_map((1, 5, 8), 2, (1, 5, 1, 8))[0] == 3
    axis, ties = reshape_channel_map((1, 5, 8), 2, (1, 5, 1, 8), prefer=2)
    assert axis == 2 and ties.tolist() == [list(range(8))]


def test_packed_projection_split_can_be_read_on_an_inner_factor():
    """[.., 3E] -> [.., 3, E]: by default the 3 blocks carry the channels; the inner factor's reading
    (chosen when q, k and v are picked apart afterwards) puts them on E and ties channel e of q, k and v.
    [.., 3E] -> [.., 3, H, Dh] read on H ties head h of q, k and v."""
    assert reshape_channel_map((17, 1, 12), 2, (17, 1, 3, 4))[0] == 2
    assert factor_axes((17, 1, 12), 2, (17, 1, 3, 4)) == [2, 3]
    _, ties = reshape_channel_map((17, 1, 12), 2, (17, 1, 3, 4), prefer=3)
    assert ties.tolist() == [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]
    assert factor_axes((8, 5, 24), 2, (8, 5, 3, 2, 4)) == [2, 3, 4]
    _, ties = reshape_channel_map((8, 5, 24), 2, (8, 5, 3, 2, 4), prefer=3)
    assert ties.tolist() == [[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19], [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]]


def test_reshape_with_wrong_element_count_is_rejected():
    """A reshape target with a different number of elements is rejected with both shapes in the message."""
    with pytest.raises(ai.IRValidationError, match=r"cannot reshape \[1, 8, 4, 4\]"):
        infer(Op.RESHAPE, [nchw(1, 8, 4, 4)], A.ReshapeAttrs(shape=(1, 100)))


def test_concat_split_slice_and_pad_shapes():
    """concat adds sizes, split and slice cut them, pad grows every axis, all like torch."""
    [cat] = infer(Op.CONCAT, [nchw(1, 3, 4, 4), nchw(1, 5, 4, 4)], A.AxisAttrs(axis=1))
    assert cat.shape == (1, 8, 4, 4) and cat.channel_axis == 1
    parts = infer(Op.SPLIT, [nchw(1, 8, 4, 4)], A.SplitAttrs(axis=1, sizes=(3, 5)), outputs=2)
    assert [p.shape for p in parts] == [tuple(t.shape) for t in torch.split(zeros((1, 8, 4, 4)), [3, 5], 1)]
    [sliced] = infer(Op.SLICE, [nchw(1, 8, 4, 4)], A.SliceAttrs(axis=1, start=1, stop=7, step=2))
    assert sliced.shape == tuple(zeros((1, 8, 4, 4))[:, 1:7:2].shape)
    [padded] = infer(Op.PAD, [nchw(1, 3, 4, 4)], A.PadAttrs(pads=((0, 0), (0, 0), (1, 2), (3, 0))))
    assert padded.shape == tuple(F.pad(zeros((1, 3, 4, 4)), (3, 0, 1, 2)).shape)
    with pytest.raises(ai.IRValidationError, match="do not add up"):
        infer(Op.SPLIT, [nchw(1, 8, 4, 4)], A.SplitAttrs(axis=1, sizes=(3, 4)), outputs=2)


def test_binary_broadcast_keeps_the_full_channel_operand_axis():
    """A binary op broadcasting a per-channel or a single-channel operand keeps the channel axis."""
    [gate] = infer(Op.MUL, [nchw(1, 4, 6, 6), nchw(1, 4, 1, 1)], A.BinaryAttrs())
    assert gate.shape == (1, 4, 6, 6) and gate.channel_axis == 1
    [spatial] = infer(Op.MUL, [nchw(1, 1, 6, 6), nchw(1, 4, 6, 6)], A.BinaryAttrs())
    assert spatial.shape == (1, 4, 6, 6) and spatial.channel_axis == 1
    [scaled] = infer(Op.ADD, [nchw(1, 4, 6, 6)], A.BinaryAttrs(scalar=1.0, reverse=True))
    assert scaled.shape == (1, 4, 6, 6) and scaled.channel_axis == 1
    with pytest.raises(ai.IRValidationError, match="do not broadcast"):
        infer(Op.ADD, [nchw(1, 4, 6, 6), nchw(1, 3, 6, 6)], A.BinaryAttrs())


def test_linear_sets_features_as_channels_or_passes_them_through():
    """Linear on [N, F] makes its output features the channel axis; on [N, C, L] it keeps axis 1."""
    weight = Param(shape=(7, 5), source="w", axes="OI")
    [flat] = infer(Op.LINEAR, [nchw(2, 5)], None, {"weight": weight})
    assert flat.shape == (2, 7) and flat.channel_axis == 1
    [seq] = infer(Op.LINEAR, [nchw(2, 3, 5)], None, {"weight": weight})
    assert seq.shape == (2, 3, 7) and seq.channel_axis == 1
    [tokens] = infer(Op.LINEAR, [nchw(2, 3, 5, channel_axis=2)], None, {"weight": weight})
    assert tokens.shape == (2, 3, 7) and tokens.channel_axis == 2


def test_group_norm_requires_divisible_channels():
    """group_norm with a channel count not divisible by num_groups is rejected."""
    [ok] = infer(Op.GROUP_NORM, [nchw(1, 8, 3, 3)], A.GroupNormAttrs(num_groups=4))
    assert ok.shape == (1, 8, 3, 3) and ok.channel_axis == 1
    with pytest.raises(ai.IRValidationError, match="do not split into 3 groups"):
        infer(Op.GROUP_NORM, [nchw(1, 8, 3, 3)], A.GroupNormAttrs(num_groups=3))


def test_shape_inference_reports_mismatches_without_touching_the_graph():
    """The pass lists stored types that differ from inferred ones and leaves the graph unchanged."""
    graph = Graph(
        name="g",
        inputs=["x"],
        outputs=["y"],
        values={"x": nchw(1, 4, 8, 8), "y": nchw(1, 4, 8, 8)},
        nodes=[make_node(Op.MAX_POOL, "y", ["x"], ["y"], attrs=A.PoolAttrs(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)))],
    )
    before = graph.model_dump()
    result = ai.run_pass("shape-inference", graph)
    assert [m.value for m in result.mismatches] == ["y"]
    assert result.mismatches[0].stored.shape == (1, 4, 8, 8)
    assert result.mismatches[0].inferred.shape == (1, 4, 4, 4)
    assert graph.model_dump() == before
