"""The IR graph built by hand: JSON + safetensors persistence, load-time validation, text form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import asgnas_ir as ai
from asgnas_ir.ir import Graph, Param, Value, make_node
from asgnas_ir.ir import attrs as A
from asgnas_ir.ir.ops import Op


def tiny_graph(with_weights: bool = True) -> Graph:
    """conv -> batch_norm (with a 0-d int64 counter) -> relu -> gap -> flatten -> linear."""
    graph = Graph(
        name="tiny",
        inputs=["x"],
        outputs=["fc"],
        values={
            "x": Value(shape=(1, 3, 8, 8), channel_axis=1),
            "conv": Value(shape=(1, 4, 8, 8), channel_axis=1),
            "bn": Value(shape=(1, 4, 8, 8), channel_axis=1),
            "relu": Value(shape=(1, 4, 8, 8), channel_axis=1),
            "gap": Value(shape=(1, 4, 1, 1), channel_axis=1),
            "flat": Value(shape=(1, 4), channel_axis=1),
            "fc": Value(shape=(1, 2), channel_axis=1),
        },
        params={
            "conv.weight": Param(shape=(4, 3, 3, 3), source="features.0.weight", axes="OIHW"),
            "conv.bias": Param(shape=(4,), source="features.0.bias", axes="O"),
            "bn.weight": Param(shape=(4,), source="features.1.weight", axes="C"),
            "bn.bias": Param(shape=(4,), source="features.1.bias", axes="C"),
            "bn.running_mean": Param(shape=(4,), source="features.1.running_mean", axes="C", trainable=False),
            "bn.running_var": Param(shape=(4,), source="features.1.running_var", axes="C", trainable=False),
            "bn.num_batches_tracked": Param(
                shape=(), dtype="int64", source="features.1.num_batches_tracked", trainable=False
            ),
            "fc.weight": Param(shape=(2, 4), source="head.fc.weight", axes="OI"),
        },
        nodes=[
            make_node(
                Op.CONV,
                "conv",
                ["x"],
                ["conv"],
                attrs=A.ConvAttrs(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1)),
                params={"weight": "conv.weight", "bias": "conv.bias"},
                source="features.0",
            ),
            make_node(
                Op.BATCH_NORM,
                "bn",
                ["conv"],
                ["bn"],
                attrs=A.BatchNormAttrs(eps=1e-3),
                params={
                    "weight": "bn.weight",
                    "bias": "bn.bias",
                    "running_mean": "bn.running_mean",
                    "running_var": "bn.running_var",
                    "num_batches_tracked": "bn.num_batches_tracked",
                },
                source="features.1",
            ),
            make_node(Op.RELU, "relu", ["bn"], ["relu"], source="features.2"),
            make_node(Op.ADAPTIVE_AVG_POOL, "gap", ["relu"], ["gap"], attrs=A.AdaptivePoolAttrs(output_size=(1, 1))),
            make_node(Op.FLATTEN, "flat", ["gap"], ["flat"], attrs=A.FlattenAttrs(start_axis=1, end_axis=3)),
            make_node(Op.LINEAR, "fc", ["flat"], ["fc"], params={"weight": "fc.weight"}, source="head.fc"),
        ],
    )
    if with_weights:
        rng = np.random.default_rng(0)
        weights = {}
        for name, param in graph.params.items():
            if param.dtype == "int64":
                weights[name] = np.array(17, dtype=np.int64)
            else:
                weights[name] = rng.standard_normal(param.shape).astype(np.float32)
        graph.set_weights(weights)
    return graph


def test_hand_built_graph_verifies_and_indexes_producers_and_users():
    """A graph built from make_node/Value/Param passes verify and answers producer/user queries."""
    graph = tiny_graph()
    result = ai.run_pass("verify", graph)
    assert (result.nodes, result.values, result.params) == (6, 7, 8)
    assert graph.producer("x") is None
    assert graph.producer("bn").id == "bn"
    assert [n.id for n in graph.users("conv")] == ["bn"]
    assert graph.node("fc").op is Op.LINEAR
    assert graph.has_weights


def test_make_node_picks_the_node_class_for_the_op_and_validates_attrs():
    """make_node returns the op's node class, and attrs of the wrong model are rejected."""
    node = make_node(Op.RELU, "r", ["x"], ["r"])
    assert node.op is Op.RELU and isinstance(node.attrs, A.NoAttrs)
    with pytest.raises(ValueError):
        make_node(Op.SLICE, "s", ["x"], ["s"], attrs=A.ConvAttrs(stride=(1,), padding=((0, 0),), dilation=(1,)))
    with pytest.raises(ValueError):
        A.ConvAttrs(stride=(1,), padding=((0, 0),), dilation=(1,), groups=0)


def test_save_load_round_trip_preserves_structure_and_arrays(tmp_path: Path):
    """Saving writes JSON + a safetensors sidecar; loading gives back the same structure and arrays."""
    graph = tiny_graph()
    path = graph.save(tmp_path / "sub" / "tiny.json")
    assert path == tmp_path / "sub" / "tiny.json"
    assert (tmp_path / "sub" / "tiny.safetensors").is_file()
    json.loads(path.read_text())  # plain JSON

    loaded = ai.load(path)
    assert loaded.model_dump() == graph.model_dump()
    assert loaded.fingerprint() == graph.fingerprint()
    assert str(loaded) == str(graph)
    assert set(loaded.weights) == set(graph.params)
    for name, array in graph.weights.items():
        got = loaded.weights[name]
        assert got.shape == array.shape, name
        assert got.dtype == array.dtype, name
        np.testing.assert_array_equal(got, array)
    counter = loaded.weights["bn.num_batches_tracked"]
    assert counter.shape == () and counter.dtype == np.int64 and int(counter) == 17
    ai.run_pass("verify", loaded)


def test_save_without_weights_writes_no_sidecar_and_loads_structure_only(tmp_path: Path):
    """A graph without weights saves as JSON alone and loads back with no weights."""
    graph = tiny_graph(with_weights=False)
    path = graph.save(tmp_path / "bare.json")
    assert not (tmp_path / "bare.safetensors").exists()
    loaded = ai.load(path)
    assert loaded.model_dump() == graph.model_dump()
    assert loaded.weights == {}
    assert not loaded.has_weights


def test_load_missing_file_names_it(tmp_path: Path):
    """Loading a path that does not exist raises IRValidationError naming the path."""
    missing = tmp_path / "nope.json"
    with pytest.raises(ai.IRValidationError, match="nope.json"):
        ai.load(missing)


def test_load_truncated_json_names_the_file(tmp_path: Path):
    """A truncated JSON file raises IRValidationError naming the file, not a raw JSONDecodeError."""
    path = tiny_graph().save(tmp_path / "tiny.json")
    path.write_text(path.read_text()[:150])
    with pytest.raises(ai.IRValidationError) as info:
        ai.load(path)
    assert str(path) in str(info.value)
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize(
    "document",
    [
        {"foo": 1},
        [1, 2, 3],
        {"inputs": "x", "outputs": [], "values": {}, "nodes": []},
    ],
    ids=["unknown-keys", "not-an-object", "wrong-types"],
)
def test_load_wrong_schema_names_the_file(tmp_path: Path, document: object):
    """JSON that is not an asgnas-ir graph raises IRValidationError naming the file."""
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ai.IRValidationError) as info:
        ai.load(path)
    assert str(path) in str(info.value)


def test_load_newer_schema_version_asks_for_an_upgrade(tmp_path: Path):
    """A file from a newer IR schema is refused with a message naming the file and the version."""
    path = tiny_graph().save(tmp_path / "tiny.json")
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ai.IRValidationError, match=r"schema 99.*upgrade") as info:
        ai.load(path)
    assert str(path) in str(info.value)


def test_load_non_integer_schema_version_is_a_validation_error(tmp_path: Path):
    """A schema_version of the wrong type is reported as IRValidationError naming the file."""
    path = tiny_graph().save(tmp_path / "tiny.json")
    data = json.loads(path.read_text())
    data["schema_version"] = "1"
    path.write_text(json.dumps(data))
    with pytest.raises(ai.IRValidationError, match="tiny.json"):
        ai.load(path)


def test_load_unknown_attrs_key_names_the_node_path(tmp_path: Path):
    """An unknown attrs key is rejected on load, the message giving the JSON path of the node."""
    path = tiny_graph().save(tmp_path / "tiny.json")
    data = json.loads(path.read_text())
    data["nodes"][0]["attrs"]["kernel_shape"] = [3, 3]
    path.write_text(json.dumps(data))
    with pytest.raises(ai.IRValidationError) as info:
        ai.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "nodes.0.conv.attrs.kernel_shape" in message
    assert "Extra inputs are not permitted" in message


def test_load_unknown_op_is_rejected(tmp_path: Path):
    """A node whose op is not in the closed op set is rejected on load, naming the node path."""
    path = tiny_graph().save(tmp_path / "tiny.json")
    data = json.loads(path.read_text())
    data["nodes"][2]["op"] = "swish_v9"
    path.write_text(json.dumps(data))
    with pytest.raises(ai.IRValidationError, match=r"nodes\.2"):
        ai.load(path)


def test_load_sidecar_with_wrong_shape_names_the_param(tmp_path: Path):
    """A sidecar array whose shape differs from the declared param raises naming file and param."""
    from safetensors.numpy import save_file

    graph = tiny_graph()
    path = graph.save(tmp_path / "tiny.json")
    arrays = {name: np.array(a) for name, a in graph.weights.items()}
    arrays["fc.weight"] = np.zeros((3, 4), dtype=np.float32)
    save_file(arrays, str(tmp_path / "tiny.safetensors"))
    with pytest.raises(ai.IRValidationError) as info:
        ai.load(path)
    message = str(info.value)
    assert "tiny.safetensors" in message
    assert "'fc.weight'" in message
    assert "[3, 4]" in message and "[2, 4]" in message


def test_load_sidecar_missing_a_param_names_it(tmp_path: Path):
    """A sidecar lacking one declared param raises IRValidationError naming the file and the param."""
    from safetensors.numpy import save_file

    graph = tiny_graph()
    path = graph.save(tmp_path / "tiny.json")
    arrays = {name: np.array(a) for name, a in graph.weights.items() if name != "bn.running_var"}
    save_file(arrays, str(tmp_path / "tiny.safetensors"))
    with pytest.raises(ai.IRValidationError) as info:
        ai.load(path)
    assert "tiny.safetensors" in str(info.value)
    assert "bn.running_var" in str(info.value)


def test_load_truncated_sidecar_names_the_file(tmp_path: Path):
    """A truncated safetensors sidecar raises IRValidationError naming the weights file."""
    path = tiny_graph().save(tmp_path / "tiny.json")
    side = tmp_path / "tiny.safetensors"
    side.write_bytes(side.read_bytes()[:40])
    with pytest.raises(ai.IRValidationError, match="tiny.safetensors"):
        ai.load(path)


def test_text_form_has_one_line_per_node_with_values_params_op_and_source():
    """str(graph) shows a header, one line per node (%values, @params, op, # source) and a return line."""
    graph = tiny_graph()
    lines = str(graph).splitlines()
    assert lines[0] == "graph tiny(%x: f32[1,3,8,8]c1) {"
    assert lines[-2] == "  return %fc"
    assert lines[-1] == "}"
    body = lines[1:-2]
    assert len(body) == len(graph.nodes)
    for line, node in zip(body, graph.nodes, strict=True):
        assert line.startswith(f"  %{node.outputs[0]} = {node.op.value}")
        for name in node.inputs:
            assert f"%{name}" in line
        for param in node.params.values():
            assert f"@{param}" in line
        if node.source:
            assert line.endswith(f"# {node.source}")
        else:
            assert "#" not in line
    conv_line = body[0]
    assert "(%x, @conv.weight, @conv.bias)" in conv_line
    assert ": f32[1,4,8,8]c1" in conv_line
    assert "stride=(1, 1)" in conv_line and "groups" not in conv_line  # only non-default attrs
    assert "eps=0.001" in body[1]
    assert body[5] == "  %fc = linear(%flat, @fc.weight) : f32[1,2]c1  # head.fc"


def test_text_form_shows_node_id_when_it_differs_from_its_output():
    """A node whose id is not its output's name shows the id in brackets; multi-output nodes list all outputs."""
    graph = Graph(
        name="split",
        inputs=["x"],
        outputs=["a", "b"],
        values={
            "x": Value(shape=(1, 6), channel_axis=1),
            "a": Value(shape=(1, 2), channel_axis=1),
            "b": Value(shape=(1, 4), channel_axis=1),
        },
        nodes=[make_node(Op.SPLIT, "sp", ["x"], ["a", "b"], attrs=A.SplitAttrs(axis=1, sizes=(2, 4)))],
    )
    ai.run_pass("verify", graph)
    line = str(graph).splitlines()[1]
    assert line == "  %a, %b = split[sp]{axis=1, sizes=(2, 4)}(%x) : f32[1,2]c1, f32[1,4]c1"


def test_resaving_without_weights_does_not_resurrect_old_weights(tmp_path: Path):
    """Saving a weightless graph over a file saved with weights loads back without the old weights."""
    path = tmp_path / "tiny.json"
    tiny_graph(with_weights=True).save(path)
    tiny_graph(with_weights=False).save(path)
    assert ai.load(path).weights == {}
