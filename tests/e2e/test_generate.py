"""`generate(input_ids, max_new_tokens)` in the generated code of a causal language model (issue 17, part 3).

Greedy decoding through the generated sub-network must pick the tokens the source model picks with its
pruned groups zeroed: Hugging Face's own `generate` (with its key/value cache) for transformers models,
a plain argmax loop for the fx replica. A model that is not a causal LM gets no `generate`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.testing import load_generated  # noqa: E402
from tests.models import REPLICAS, example_inputs  # noqa: E402

NEW_TOKENS = 6


def _zero_in_place(model: torch.nn.Module, graph: ai.Graph, space: ai.SearchSpace, zero: list[int]) -> None:
    """Set the chosen groups' slices to zero in the source model, by its state_dict keys."""
    tensors = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers())
    with torch.no_grad():
        for index in zero:
            for piece in space.groups[index].slices:
                target = tensors[graph.params[piece.param].source]
                target.index_fill_(piece.axis, torch.tensor(piece.indices), 0.0)


def _pruned(model: torch.nn.Module, inputs: tuple, out: Path, fraction: float = 0.5) -> torch.nn.Module:
    graph = ai.compile(model, inputs)
    space = ai.search_space(graph, "prune")
    zero = ai.random_zero_groups(graph, space, fraction, seed=1)
    ai.codegen(ai.subnet(graph, space, zero), "torch", out)
    _zero_in_place(model, graph, space, zero)  # after codegen: the graph reads the weights lazily
    return load_generated(out)


def _greedy(model: torch.nn.Module, ids: torch.Tensor, steps: int) -> tuple[torch.Tensor, float]:
    """Argmax decoding by re-running `model`, and the smallest gap between the best and second-best
    logit on the way (a gap far above float32 rounding makes the picked tokens a stable reference)."""
    gap = float("inf")
    with torch.no_grad():
        for _ in range(steps):
            logits = model(ids)
            logits = logits if isinstance(logits, torch.Tensor) else logits["logits"]
            top = logits[:, -1].topk(2, dim=-1).values
            gap = min(gap, float((top[:, 0] - top[:, 1]).min()))
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids, gap


def test_replica_decoder_generates_the_tokens_of_its_source(tmp_path: Path) -> None:
    model = REPLICAS["llama_decoder"].build()
    vocab = model.embed_tokens.num_embeddings
    ids = torch.randint(0, vocab, (2, 5), generator=torch.Generator().manual_seed(3))
    generated = _pruned(model, (ids,), tmp_path)
    expected, gap = _greedy(model, ids, NEW_TOKENS)
    assert gap > 1e-4, "the seed gives a near-tie; pick another"
    got = generated.generate(ids, max_new_tokens=NEW_TOKENS)
    assert got.shape == (2, 5 + NEW_TOKENS) and got.dtype == ids.dtype
    assert torch.equal(got, expected)


def test_a_model_that_is_not_causal_gets_no_generate(tmp_path: Path) -> None:
    replica = REPLICAS["mlp"]
    ai.codegen(ai.compile(replica.build(), example_inputs(replica)), "torch", tmp_path)
    assert "def generate" not in (tmp_path / "model.py").read_text()


@pytest.mark.slow
# GPT-2's second positional parameter is past_key_values: example inputs bind positionally, so its mask
# is not given here (docs/user-guide.md, Hugging Face models)
@pytest.mark.parametrize(("name", "with_mask"), [("llama", False), ("llama", True), ("gpt2", False)])
def test_hugging_face_decoder_generates_what_transformers_generates(name: str, with_mask: bool, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if name == "llama":
        config = transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                         bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2LMHeadModel(config)
    model.eval()
    ids = torch.randint(2, 100, (2, 5), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generated = _pruned(model, (ids, mask) if with_mask else (ids,), tmp_path)
        # eos 0 and pad 0 never stop the reference early: the vocabulary's argmax decides every step
        expected = model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                                  min_new_tokens=NEW_TOKENS, pad_token_id=0)
    _, gap = _greedy(lambda t: model(t).logits, ids, NEW_TOKENS)
    assert gap > 1e-4, "the seed gives a near-tie; pick another"
    got = generated.generate(ids, NEW_TOKENS, attention_mask=mask) if with_mask else generated.generate(ids, NEW_TOKENS)
    assert torch.equal(got, expected)
    assert "def generate" in (tmp_path / "model.py").read_text()
