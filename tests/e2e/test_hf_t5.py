"""T5's encoder through `frontend="auto"` (issue 17): the export path, with the relative position
buckets (log of relative distances, integer comparisons and casts) computed in the generated code
from `arange(seq_len)` as the model computes them, so it is right at every sequence length, beyond
the buckets' max distance included. Tiny configs at random init, no download."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.ir.ops import Op  # noqa: E402

pytestmark = pytest.mark.slow  # each check exports the model three times


def _t5(ff: str = "relu") -> torch.nn.Module:
    t = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = t.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj=ff)
    return t.T5EncoderModel(config).eval()


def _ids(batch: int, seq: int) -> torch.Tensor:
    return torch.randint(0, 100, (batch, seq), generator=torch.Generator().manual_seed(0))


def _assert_any_size(report: ai.CheckReport, batch: int, seq: int) -> None:
    """`check` also ran the generated code at one more batch row and one token fewer."""
    assert report.ok, report
    firsts = [shapes[0] for shapes in report.shapes_checked]
    assert [batch + 1, seq] in firsts and [batch, seq - 1] in firsts, report.shapes_checked


@pytest.mark.parametrize(
    ("ff", "batch", "seq"),
    [("relu", 2, 8), ("gated-gelu", 3, 20)],  # T5 v1.0 and v1.1; 20 tokens reach past the max distance 16
)
def test_t5_encoder_passes_check_at_any_size(ff: str, batch: int, seq: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ai.check(_t5(ff), _ids(batch, seq), mode="prune")
    _assert_any_size(report, batch, seq)
    assert report.frontend == "onnx" and report.params_sub < report.params_full


def test_t5_encoder_with_attention_mask() -> None:
    ids = _ids(2, 8)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, -2:] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ai.check(_t5("gated-gelu"), (ids, mask), mode="prune")
    _assert_any_size(report, 2, 8)


def test_t5_encoder_erase_mode() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ai.check(_t5(), _ids(2, 8), mode="erase")
    _assert_any_size(report, 2, 8)
    assert report.zeroed > 0


def test_t5_head_groups_span_the_layers_sharing_the_position_bias() -> None:
    """Layer 0's relative position bias ([buckets, heads]) is added to every layer's scores, so head h
    is one group across all layers together with the bias table's column h; the buckets are computed
    at run time (a log among them), not stored at the example's length."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = ai.compile(_t5(), _ids(2, 8))
    assert Op.LOG in {n.op for n in graph.nodes}
    space = ai.search_space(graph, mode="prune")
    bias = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    heads = [g for g in space.groups if any(graph.params[s.param].source == bias for s in g.slices)]
    assert len(heads) == 4
    for group in heads:
        sources = {graph.params[s.param].source for s in group.slices}
        assert {f"encoder.block.{i}.layer.0.SelfAttention.{p}.weight" for i in (0, 1) for p in "qkvo"} <= sources
    mlp = [g for g in space.groups if g not in heads]
    assert len(mlp) == 2 * 64  # one group per feed-forward unit in each layer
