"""The `verify` pass: malformed graphs are refused with a message that names the culprit node."""

from __future__ import annotations

import numpy as np
import pytest

import asgnas_ir as ai
from asgnas_ir.ir import Graph, Param, Value, make_node
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op

CONV = A.ConvAttrs(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))


def chain(**overrides: object) -> Graph:
    """x -> conv (features.0) -> relu (features.1); any Graph field can be replaced by keyword."""
    fields: dict[str, object] = {
        "name": "chain",
        "inputs": ["x"],
        "outputs": ["relu"],
        "values": {
            "x": Value(shape=(1, 3, 8, 8), channel_axis=1),
            "conv": Value(shape=(1, 4, 8, 8), channel_axis=1),
            "relu": Value(shape=(1, 4, 8, 8), channel_axis=1),
        },
        "params": {
            "conv.weight": Param(shape=(4, 3, 3, 3), source="features.0.weight", axes="OIHW"),
            "conv.bias": Param(shape=(4,), source="features.0.bias", axes="O"),
        },
        "nodes": [
            make_node(
                Op.CONV, "conv", ["x"], ["conv"], attrs=CONV,
                params={"weight": "conv.weight", "bias": "conv.bias"}, source="features.0",
            ),
            make_node(Op.RELU, "relu", ["conv"], ["relu"], source="features.1"),
        ],
    }
    fields.update(overrides)
    return Graph(**fields)  # type: ignore[arg-type]


def test_verify_passes_on_a_good_graph():
    """A well-formed graph verifies and the result counts its nodes, values and params."""
    result = ai.run_pass("verify", chain())
    assert (result.nodes, result.values, result.params) == (2, 3, 2)


def test_verify_passes_on_a_compiled_model():
    """A graph produced by ai.compile verifies (compile runs verify itself)."""
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    graph = ai.compile(model, torch.randn(1, 3, 6, 6))
    assert ai.run_pass("verify", graph).nodes == 2


def test_input_used_before_defined_names_the_node():
    """A node that reads a value defined only by a later node is refused, naming node, source and value."""
    graph = chain(
        nodes=[
            make_node(Op.RELU, "relu", ["conv"], ["relu"], source="features.1"),
            make_node(
                Op.CONV, "conv", ["x"], ["conv"], attrs=CONV,
                params={"weight": "conv.weight", "bias": "conv.bias"}, source="features.0",
            ),
        ]
    )
    with pytest.raises(ai.IRValidationError) as info:
        ai.run_pass("verify", graph)
    message = str(info.value)
    assert "node 'relu' (from 'features.1')" in message
    assert "'%conv' is used before it is defined" in message
    assert ">> %relu = relu(%conv)" in message  # the neighbourhood marks the culprit


def test_input_never_defined_names_the_node():
    """A node that reads a value nothing defines is refused, naming the node and the value."""
    graph = chain(nodes=[make_node(Op.RELU, "relu", ["ghost"], ["relu"], source="act")], values={
        "x": Value(shape=(1, 3, 8, 8), channel_axis=1),
        "relu": Value(shape=(1, 3, 8, 8), channel_axis=1),
    }, params={})
    with pytest.raises(ai.IRValidationError, match=r"node 'relu' \(from 'act'\): input '%ghost' is used before"):
        ai.run_pass("verify", graph)


def test_undeclared_param_names_the_node_and_param():
    """A node naming a param that the graph does not declare is refused, naming node, role and param."""
    graph = chain(params={"conv.weight": Param(shape=(4, 3, 3, 3), source="features.0.weight", axes="OIHW")})
    with pytest.raises(ai.IRValidationError) as info:
        ai.run_pass("verify", graph)
    message = str(info.value)
    assert "node 'conv' (from 'features.0')" in message
    assert "param 'bias' names '@conv.bias', which is not declared" in message


def test_duplicate_output_names_the_node():
    """Two nodes defining the same value are refused, naming the second node and the value."""
    graph = chain(
        outputs=["conv"],
        nodes=[
            make_node(
                Op.CONV, "conv", ["x"], ["conv"], attrs=CONV,
                params={"weight": "conv.weight", "bias": "conv.bias"}, source="features.0",
            ),
            make_node(Op.RELU, "relu", ["conv"], ["conv"], source="features.1"),
        ],
    )
    with pytest.raises(ai.IRValidationError) as info:
        ai.run_pass("verify", graph)
    message = str(info.value)
    assert "node 'relu' (from 'features.1')" in message
    assert "output '%conv' is defined twice" in message


def test_output_shadowing_a_graph_input_is_a_duplicate():
    """A node whose output reuses a graph input's name is refused as a duplicate definition."""
    graph = chain(
        values={"x": Value(shape=(1, 3, 8, 8), channel_axis=1)},
        params={},
        outputs=["x"],
        nodes=[make_node(Op.RELU, "relu", ["x"], ["x"], source="act")],
    )
    with pytest.raises(ai.IRValidationError, match=r"node 'relu'.*'%x' is defined twice"):
        ai.run_pass("verify", graph)


def test_undefined_graph_output_is_reported():
    """A graph output that no node defines is refused, naming the value."""
    with pytest.raises(ai.IRValidationError, match="graph output '%logits' is never defined"):
        ai.run_pass("verify", chain(outputs=["logits"]))


def test_all_structural_problems_are_reported_at_once():
    """Several structural problems come back in one error, each on its own line."""
    graph = chain(
        outputs=["nowhere"],
        params={"conv.weight": Param(shape=(4, 3, 3, 3), source="features.0.weight", axes="OIHW")},
    )
    with pytest.raises(ai.IRValidationError) as info:
        ai.run_pass("verify", graph)
    message = str(info.value)
    assert "(2 problem(s))" in message
    assert "'@conv.bias'" in message and "'%nowhere'" in message


def test_stored_shape_disagreeing_with_inferred_names_node_and_both_types():
    """A stored value type that differs from the op rule's is refused with both types in the message."""
    values = chain().values
    values["conv"] = Value(shape=(1, 4, 6, 6), channel_axis=1)
    values["relu"] = Value(shape=(1, 4, 6, 6), channel_axis=1)
    with pytest.raises(ai.IRValidationError) as info:
        ai.run_pass("verify", chain(values=values))
    message = str(info.value)
    assert info.value.node == "conv"
    assert "node 'conv' (from 'features.0')" in message
    assert "f32[1,4,6,6]c1" in message  # stored
    assert "f32[1,4,8,8]c1" in message  # inferred
    assert "2 mismatch(es)" in message  # relu inherits the wrong shape too


def test_stored_channel_axis_disagreeing_is_a_mismatch():
    """A stored channel axis that differs from the inferred one is a mismatch, showing both."""
    values = chain().values
    values["relu"] = Value(shape=(1, 4, 8, 8), channel_axis=None)
    with pytest.raises(ai.IRValidationError) as info:
        ai.run_pass("verify", chain(values=values))
    assert info.value.node == "relu"
    assert "f32[1,4,8,8] " in str(info.value) and "f32[1,4,8,8]c1" in str(info.value)


def test_op_rule_rejecting_inputs_names_the_node():
    """A conv whose weight does not fit its input is refused by verify, naming the node and the sizes."""
    graph = chain(params={
        "conv.weight": Param(shape=(4, 5, 3, 3), source="features.0.weight", axes="OIHW"),
        "conv.bias": Param(shape=(4,), source="features.0.bias", axes="O"),
    })
    with pytest.raises(ai.IRValidationError, match=r"node 'conv' \(from 'features.0'\): conv expects 5 input channels"):
        ai.run_pass("verify", graph)


def test_weights_of_the_wrong_shape_are_reported():
    """When weights are attached, an array whose shape differs from its param is refused, naming the param."""
    graph = chain()
    graph.set_weights({"conv.weight": np.zeros((4, 3, 3, 3), np.float32), "conv.bias": np.zeros(5, np.float32)})
    with pytest.raises(ai.IRValidationError, match=r"param '@conv.bias' declares shape \[4\] but its weights have \[5\]"):
        ai.run_pass("verify", graph)
