"""The source's module hierarchy through the ONNX frontend (issue 19): torch's dynamo exporter records
on each ONNX node the modules whose forwards made it (`pkg.torch.onnx.name_scopes`), which the driver
keeps as `GraphMeta.scopes` / `modules` under the paths `Param.source` uses, the `model.` of the
transformers adapter (`frontends/onnx/hf.py`) taken off. Generated torch code then nests like the
model and writes its repeated blocks as one class, as it does for the fx frontend."""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch.binding import zero_slices_  # noqa: E402
from asgnas_ir.frontends.onnx.driver import _module_scope  # noqa: E402
from asgnas_ir.frontends.onnx.export import lower_torch_onnx  # noqa: E402
from asgnas_ir.testing import assert_outputs_match, load_generated  # noqa: E402


def _node(name_scopes: str, classes: str) -> onnx.NodeProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    helper.set_metadata_props(node, {"pkg.torch.onnx.name_scopes": name_scopes, "pkg.torch.onnx.class_hierarchy": classes})
    return node


@pytest.mark.parametrize(
    ("scopes", "classes", "prefix", "scope", "modules"),
    [
        # through the transformers adapter: its `model.` comes off, the user's model is the root
        ("['', 'model', 'model.model', 'model.model.layers.0', 'model.model.layers.0.mlp', 'mul_3']",
         "['a.HFExportAdapter', 't.LlamaForCausalLM', 't.LlamaModel', 't.LlamaDecoderLayer', 't.LlamaMLP', 'aten.mul.Tensor']",
         "model.", "model.layers.0.mlp", {"model": "LlamaModel", "model.layers.0": "LlamaDecoderLayer", "model.layers.0.mlp": "LlamaMLP"}),
        ("['', 'model', 'getitem']", "['a.HFExportAdapter', 't.LlamaForCausalLM', 'getitem']", "model.", "", {}),
        # a model exported as itself; a module called twice is `path@1`
        ("['', 'blocks', 'blocks.1@1', 'relu_1']", "['m.Net', 'torch.nn.modules.container.Sequential', 'm.Block', 'aten.relu']",
         "", "blocks.1", {"blocks": "Sequential", "blocks.1": "Block"}),
        # a node torch.export's own passes added has no module stack: no scope
        ("['_empty_nn_module_stack_from_metadata_hook', 'sym_size_int_2']", "['_empty_nn_module_stack_from_metadata_hook', 'aten.sym_size.int']",
         "", None, {}),
        ("not a list [", "[]", "", None, {}),
    ],
)
def test_module_scope_of_an_exported_node(scopes: str, classes: str, prefix: str, scope: str | None, modules: dict) -> None:
    found: dict[str, str] = {}
    assert _module_scope(_node(scopes, classes), prefix, found) == scope
    assert found == modules


def test_onnx_without_module_metadata_has_no_scopes() -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    lowered = ai.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), [np.zeros((1, 3), np.float32)])
    assert lowered.meta.scopes == {} and lowered.meta.modules == {}


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Linear(4, 8)
        self.blocks = torch.nn.Sequential(_Block(), _Block())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


def test_exported_torch_model_scopes_are_its_module_paths() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = lower_torch_onnx(_Net().eval(), (torch.randn(2, 4),))
    by_op = {n.op.value: graph.meta.scopes.get(n.id) for n in graph.nodes if n.op.value in ("relu", "add")}
    assert by_op == {"relu": "blocks.1", "add": "blocks.1"}  # the last of each op: the second block's
    scopes = {graph.meta.scopes[n.id] for n in graph.nodes if n.params}
    assert scopes == {"stem", "blocks.0.fc", "blocks.1.fc"}
    assert {p.source for p in graph.params.values()} == set(_Net().state_dict())
    assert graph.meta.modules == {"stem": "Linear", "blocks": "Sequential", "blocks.0": "_Block", "blocks.0.fc": "Linear",
                                  "blocks.1": "_Block", "blocks.1.fc": "Linear"}


# ---- a transformers Llama through the adapter ------------------------------------------------------


@pytest.fixture(scope="module")
def llama() -> tuple[torch.nn.Module, ai.Graph]:
    """A tiny transformers Llama (2 layers, 4 query heads over 2 KV heads) and its graph."""
    t = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = t.LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=64, max_position_embeddings=64)
    model = t.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, ai.compile(model, ids)


@pytest.mark.slow
def test_llama_scopes_are_its_module_paths(llama: tuple[torch.nn.Module, ai.Graph]) -> None:
    _, graph = llama
    assert graph.meta.frontend == "onnx"
    scopes = graph.meta.scopes
    attention = [n for n in graph.nodes if n.op.value == "softmax"]
    assert [scopes.get(n.id) for n in attention] == ["model.layers.0.self_attn", "model.layers.1.self_attn"]
    down = next(n for n in graph.nodes if "model.layers.0.mlp.down_proj.weight" in n.params.values())
    assert scopes[down.id] == "model.layers.0.mlp.down_proj"
    assert graph.meta.modules["model.layers.0"] == "LlamaDecoderLayer"
    assert graph.meta.modules["model.layers.1.self_attn"] == "LlamaAttention"
    # the adapter is no module of the user's: neither it nor its `model.` prefix shows
    assert "" not in graph.meta.modules and not any(k.startswith("model.model") for k in graph.meta.modules)
    # every scope is a module of the model, and every param's source lies under its node's scope
    modules = dict(llama[0].named_modules())
    assert set(scopes.values()) - {""} <= set(modules)
    for node in graph.nodes:
        for name in node.params.values():
            if graph.params[name].trainable:
                assert graph.params[name].source.startswith(scopes[node.id] + "."), (node.id, scopes[node.id])


def _generated(llama: tuple[torch.nn.Module, ai.Graph], folder: Path) -> tuple[torch.nn.Module, str, torch.nn.Module]:
    """30% of the groups zeroed in a copy of the source and cut from the graph; the generated code."""
    model, graph = llama
    graph = graph.model_copy(deep=True)
    live = copy.deepcopy(model)
    space = ai.search_space(graph)
    zero = ai.random_zero_groups(graph, space, 0.3, seed=0)
    with torch.no_grad():
        zero_slices_(live, graph, [s for gid in zero for s in space.group(gid).slices])
    graph.update_weights(live)
    ai.codegen(ai.subnet(graph, space, zero), "torch", folder)
    return live, (folder / "model.py").read_text(), load_generated(folder).eval()


@pytest.mark.slow
def test_generated_llama_nests_like_the_source(llama: tuple[torch.nn.Module, ai.Graph], tmp_path: Path) -> None:
    live, text, generated = _generated(llama, tmp_path)
    assert "class LlamaDecoderLayer(nn.Module)" in text
    assert re.search(r"self\.model\.layers\[1\]\(", text)
    keys = set(generated.state_dict())
    # the rotary table's `inv_freq` is a non-persistent buffer of the source: in no state_dict, either
    source = set(live.state_dict())
    assert keys == source, (sorted(keys - source)[:5], sorted(source - keys)[:5])
    for batch, length in ((2, 8), (3, 5)):
        x = torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            assert_outputs_match(generated(x), live(x).logits)


@pytest.mark.slow
def test_generated_llama_has_one_decoder_layer_class(llama: tuple[torch.nn.Module, ai.Graph], tmp_path: Path) -> None:
    _, text, _ = _generated(llama, tmp_path)
    assert "class LlamaDecoderLayer(nn.Module)" in text
