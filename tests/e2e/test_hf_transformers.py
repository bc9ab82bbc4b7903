"""`check` on Hugging Face BERT and GPT-2 built from small configs (no download). transformers is
optional; without it these skip. Hugging Face models do not trace with plain torch.fx, so they go
through the ONNX frontend (torch.onnx.export, then the ONNX graph with names mapped back)."""

from __future__ import annotations

import pytest

import asgnas_ir as ai

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32,
    )
    return transformers.BertModel(config).eval()


def _gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0, use_cache=False
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.slow
@pytest.mark.parametrize("build", [_bert, _gpt2], ids=["bert", "gpt2"])
def test_hugging_face_model_passes_check_through_onnx(build) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    ids = torch.randint(0, 2, (1, 16), generator=torch.Generator().manual_seed(0))
    report = ai.check(build(), (ids,), frontend="onnx")
    assert report.ok, report
    assert report.params_sub < report.params_full
