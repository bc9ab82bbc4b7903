"""Issue 15, item 1: symbolic dims. Generated code runs at any batch size (and sequence length for token
inputs), however the example fixed them: torchvision's ViT (class token expanded to the batch) and Swin
(windows folded into the batch), a GPT block (arange of the sequence length, causal attention), in every
target; `check` runs the generated code at two batch sizes and says so in `shapes_checked`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.testing import assert_outputs_match, load_generated, run_onnx
from tests.models import REPLICAS, example_inputs


def _generated_at(graph: ai.Graph, target: str, folder: str, x: torch.Tensor) -> list[np.ndarray]:
    space = ai.search_space(graph)
    sub = ai.subnet(graph, space, [])
    ai.codegen(sub, target=target, out_dir=folder)
    if target == "onnx":
        return run_onnx(Path(folder) / "model.onnx", [x.numpy()])
    with torch.no_grad():
        out = load_generated(folder)(x)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def test_class_token_expand_follows_the_batch() -> None:
    """The ViT replica compiled at batch 1: the class token's expand (an identity at batch 1, which
    the frontend would drop) is kept, symbolic, and the generated code runs at batch 3."""
    replica = REPLICAS["vit_encoder"]
    model = replica.build().eval()
    graph = ai.compile(model, example_inputs(replica))
    assert graph.meta.symbols == {"N": 1}
    expands = [n for n in graph.nodes if n.op.value == "expand"]
    assert expands and graph.values[expands[0].outputs[0]].dims == ("N", 1, 32)
    assert graph.values[expands[0].outputs[0]].shape == (1, 1, 32)  # the example's sizes stay in `shape`
    x3 = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x3)
    for target in ("torch", "onnx"):
        with tempfile.TemporaryDirectory() as folder:
            assert_outputs_match(_generated_at(graph, target, folder, x3), expected)


def test_token_model_follows_batch_and_sequence_length() -> None:
    """GPT block: N and S symbolic; the arange of positions is rebuilt at the call's length and the
    causal mask too (ONNX), so both targets run at another batch and sequence length."""
    replica = REPLICAS["gpt_block"]
    model = replica.build().eval()
    graph = ai.compile(model, example_inputs(replica))
    assert graph.meta.symbols == {"N": 1, "S": 16}
    assert graph.values[graph.inputs[0]].dims == ("N", "S")
    ids = torch.randint(0, 50, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids)
    for target in ("torch", "onnx"):
        with tempfile.TemporaryDirectory() as folder:
            assert_outputs_match(_generated_at(graph, target, folder, ids), expected)
            if target == "torch":
                text = (Path(folder) / "model.py").read_text()
                assert "seq_len = idx.shape[1]" in text and "torch.arange(seq_len" in text


def test_check_reports_the_shapes_it_ran_at() -> None:
    replica = REPLICAS["gpt_block"]
    report = ai.check(replica.build(), example_inputs(replica), mode="prune")
    assert report.ok, report.reason
    assert report.shapes_checked == [[[1, 16]], [[2, 16]], [[1, 15]]]
    assert "shapes_checked" in report.model_dump()


def test_onnx_inputs_declare_a_symbolic_batch(tmp_path: Path) -> None:
    import onnx

    replica = REPLICAS["resnet_basic"]
    graph = ai.compile(replica.build().eval(), example_inputs(replica))
    ai.codegen(graph, target="onnx", out_dir=tmp_path)
    proto = onnx.load(str(tmp_path / "model.onnx"))
    first = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert first.dim_param == "N" and not first.HasField("dim_value")


def test_a_model_that_fixes_its_batch_stays_static_and_says_why() -> None:
    class FixedBatch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(12, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.view(1, 12))  # the batch is 1 whatever comes in

    graph = ai.compile(FixedBatch(), torch.randn(1, 3, 4))
    assert graph.meta.symbols == {}
    assert "N stays 1" in graph.meta.static_reason and "did not lower at N=2" in graph.meta.static_reason
    report = ai.check(FixedBatch(), torch.randn(1, 3, 4))
    assert report.ok and report.shapes_checked == [[[1, 3, 4]]]
    assert any("N stays 1" in note for note in report.notes)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["torch", "onnx"])
def test_torchvision_vit_and_swin_compiled_at_batch_1_run_at_batch_3(target: str) -> None:
    tv = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    models = [
        tv.vision_transformer.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
        ),
        tv.swin_transformer.SwinTransformer(
            patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4], num_classes=10
        ),
    ]
    x3 = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for model in models:
        model.eval()
        with torch.no_grad():  # torchvision zero-initialises the ViT head: every output would be 0
            for param in model.parameters():
                param.normal_(0.0, 0.2)
        report = ai.check(model, torch.randn(1, 3, 32, 32), target=target, seed=1)
        assert report.ok, report.reason
        assert len(report.shapes_checked) == 2
        graph = ai.compile(model, torch.randn(1, 3, 32, 32))
        with torch.no_grad():
            expected = model(x3)
        with tempfile.TemporaryDirectory() as folder:
            assert_outputs_match(_generated_at(graph, target, folder, x3), expected)


class _BatchSizedPositions(torch.nn.Module):
    """A position code built in forward from a batch-sized tensor (XCiT, EdgeNeXt do this with a mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.ones(x.shape[0], 4, 4).cumsum(1)[:, :, 0]
        return self.fc(x + positions)


@pytest.mark.parametrize("target", ["torch", "onnx"])
def test_a_constant_built_at_the_batch_size_follows_it(target: str) -> None:
    report = ai.check(_BatchSizedPositions().eval(), torch.randn(1, 4), target=target)
    assert report.ok, report.reason
    assert report.shapes_checked == [[[1, 4]], [[2, 4]]]
