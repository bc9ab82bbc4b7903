"""H2SPG and HESSO prune a transformers Llama decoder while it learns a made-up text task (issue 17, part 4).

A shorter run of `examples/prune_llm.py`: the tiny LlamaForCausalLM (4 query heads over 2 KV heads,
SwiGLU MLP of 128 units, tied LM head) trains on `TopicMarkov` documents with half of its 260 prune
groups chosen; the chosen groups must end exactly zero in the trained model (by training, not by
`finalize()` forcing them), the loss must fall, and the generated sub-network must give the trained
model's logits at two batch sizes and two sequence lengths.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnx")

from asgnas_ir.api import compare_outputs  # noqa: E402
from asgnas_ir.backends.torch.text_data import TopicMarkov, next_token_loss  # noqa: E402
from asgnas_ir.examples import prune_llm  # noqa: E402
from asgnas_ir.testing import load_generated  # noqa: E402


@pytest.fixture(scope="module")
def start() -> Iterator[prune_llm.Start]:
    """The model compiled once (the export takes most of the time); each test trains its own copy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield prune_llm.prepare(seed=0)
    torch.set_num_threads(before)


def _kind(space, group) -> str:  # noqa: ANN001
    sources = {space.param_sources[s.param] for s in group.slices}
    return "kv" if any(".k_proj." in s for s in sources) else "mlp" if any(".gate_proj." in s for s in sources) else "other"


def test_text_task_is_a_fixed_language_with_a_computable_floor() -> None:
    language = TopicMarkov(vocab=48, topics=4, branching=3, seed=0)
    a, b = language.sample(64, 16, seed=1), language.sample(64, 16, seed=1)
    assert torch.equal(a, b) and a.dtype == torch.int64 and a.shape == (64, 16)
    assert bool((a[:, 0] < 4).all()) and bool((a[:, 1:] >= 4).all())  # markers start documents, only there
    # the chains' own distribution is the best possible predictor: its loss is below a uniform guess's
    # and the empirical next-token frequencies per (topic, token) state follow it
    assert language.best_loss(a) < np.log(3) < np.log(48)
    logits = torch.from_numpy(np.log(np.maximum(language.next_probs(a), 1e-30))).float()
    full = torch.cat([logits, torch.zeros(64, 1, 48)], 1)  # the last position predicts nothing
    assert abs(float(next_token_loss(full, a)) - language.best_loss(a)) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["h2spg", "hesso"])
def test_pruned_decoder_is_exactly_zero_and_its_generated_subnetwork_matches(
        start: prune_llm.Start, optimizer: str, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # transformers' notes on tracing; GroupsNotZeroWarning is an error in run()
        result = prune_llm.run(start, optimizer=optimizer, steps=260, warmup=80, shrink=80, test_docs=256,
                               out=tmp_path, log=lambda line: None)
    figures, space, model = result.figures, result.space, result.model

    # the chosen groups: half of them, exactly 0.0 at every slice in the trained torch params
    assert len(result.zero_groups) == len(space.groups) // 2
    params = dict(model.named_parameters(remove_duplicate=False))
    for gid in result.zero_groups:
        for s in space.groups[gid].slices:
            picked = params[space.param_sources[s.param]].detach().index_select(s.axis, torch.tensor(s.indices))
            assert bool((picked == 0.0).all()), (gid, s.param)
    kinds = [_kind(space, space.groups[g]) for g in result.zero_groups]
    assert kinds.count("kv") >= 1 and kinds.count("mlp") >= 64, kinds

    # it learned: the loss fell from ln(48)-ish to within reach of the language's own entropy
    assert figures["loss_after"] < 0.4 * figures["loss_before"], figures
    assert figures["loss_after"] < figures["loss_floor"] + 0.3, figures

    # the generated sub-network: smaller, with the trained model's logits at 2 batch sizes x 2 lengths
    generated = load_generated(tmp_path)
    assert sum(p.numel() for p in generated.parameters()) < 0.6 * sum(p.numel() for p in model.parameters())
    # each removed KV group takes its two query heads with it; each removed unit one gate/up row
    assert sum(figures["kv_heads_kept"]) == 4 - kinds.count("kv")
    assert figures["query_heads_kept"] == [2 * kv for kv in figures["kv_heads_kept"]]
    assert sum(figures["mlp_units_kept"]) == 256 - kinds.count("mlp")
    language = start.language
    with torch.no_grad():
        for i, (batch, seq) in enumerate([(1, 24), (1, 9), (3, 24), (3, 9)]):
            tokens = language.sample(batch, seq, seed=500 + i)
            comparison = compare_outputs([model(tokens).logits.numpy()], [generated(tokens).numpy()])[0]
            assert comparison.ok, ((batch, seq), comparison)
