"""Issue 17, part 2 on a plain-PyTorch Llama replica (tests/models/transformers.py: TinyLlama):
grouped-query attention heads, SwiGLU units and the residual stream as prune-mode groups, attention
and MLP sub-blocks as erase-mode structures, and generated code that reshapes to the pruned head
counts and computes the zeroed model's logits at two batch sizes and two sequence lengths."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.backends.torch.binding import zero_slices_
from asgnas_ir.passes.analysis.dependency_graph import ChannelGroup, dependency_graph
from asgnas_ir.testing import assert_outputs_match, emit_and_load, one_line
from tests.models import REPLICAS, example_inputs
from tests.models.transformers import TinyLlama

LAYERS, HEADS, KV_HEADS, HEAD_DIM, DIM, HIDDEN, VOCAB = 2, 4, 2, 8, 32, 64, 50
SHARE = HEADS // KV_HEADS  # query heads per KV head
# (batch, sequence): the example's, another batch, another length, both
SHAPES = ((1, 16), (3, 16), (1, 7), (3, 7))


def _llama(variant: str = "repeat_kv", **kwargs: object) -> nn.Module:
    """The replica, or one written another common way: `sdpa_gqa` hands the KV heads to
    scaled_dot_product_attention(enable_gqa=True); `nn_rmsnorm` uses torch's nn.RMSNorm module."""
    torch.manual_seed(0)
    model = TinyLlama(sdpa_gqa=variant == "sdpa_gqa", **kwargs).eval()  # type: ignore[arg-type]
    if variant == "nn_rmsnorm":
        for layer in model.layers:
            layer.input_layernorm, layer.post_attention_layernorm = nn.RMSNorm(DIM, eps=1e-6), nn.RMSNorm(DIM, eps=1e-6)
        model.norm = nn.RMSNorm(DIM, eps=1e-6)
    return model


def _ids() -> tuple[torch.Tensor, ...]:
    return example_inputs(REPLICAS["llama_decoder"])


def _tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed + 100 * batch + length))


def _indices(group: ChannelGroup, param: str, axis: int) -> set[int]:
    return {int(i) for s in group.slices if s.param == param and s.axis == axis for i in s.indices}


def _touching(space: ai.SearchSpace, param: str) -> list[ChannelGroup]:
    return [g for g in space.groups if any(s.param == param for s in g.slices)]


def _param(graph: ai.Graph, source: str) -> str:
    (name,) = [n for n, p in graph.params.items() if p.source == source]
    return name


@pytest.mark.parametrize("variant", ["repeat_kv", "sdpa_gqa", "nn_rmsnorm"])
def test_a_kv_head_and_the_query_heads_sharing_it_are_one_group(variant: str) -> None:
    """GQA: KV head j's group holds the q rows of query heads 2j and 2j+1, KV head j's k and v rows and
    those query heads' o_proj columns, and nothing else; two such groups per layer."""
    graph = ai.compile(_llama(variant), _ids(), frontend="fx")
    space = ai.search_space(graph, mode="prune")
    for layer in range(LAYERS):
        attn = f"layers.{layer}.self_attn"
        q, k, v, o = (_param(graph, f"{attn}.{p}_proj.weight") for p in "qkvo")
        heads = _touching(space, o)
        assert len(heads) == KV_HEADS
        for group in heads:
            first_q_head = min(_indices(group, o, 1)) // HEAD_DIM
            assert first_q_head % SHARE == 0
            kv = first_q_head // SHARE
            query_features = set(range(kv * SHARE * HEAD_DIM, (kv + 1) * SHARE * HEAD_DIM))
            kv_features = set(range(kv * HEAD_DIM, (kv + 1) * HEAD_DIM))
            assert {(s.param, s.axis, s.kind) for s in group.slices} == {(q, 0, "out"), (k, 0, "out"), (v, 0, "out"), (o, 1, "in")}
            assert _indices(group, q, 0) == query_features
            assert _indices(group, k, 0) == kv_features and _indices(group, v, 0) == kv_features
            assert _indices(group, o, 1) == query_features
            assert group.channels == SHARE * HEAD_DIM
            # its share of the four projections: 2 heads of q and o, 1 of k and v
            assert group.params == DIM * HEAD_DIM * (2 * SHARE + 2)


@pytest.mark.parametrize("variant", ["repeat_kv", "sdpa_gqa", "nn_rmsnorm"])
def test_each_swiglu_hidden_unit_is_one_group(variant: str) -> None:
    """Unit r of the SwiGLU MLP: gate_proj row r, up_proj row r and down_proj column r."""
    graph = ai.compile(_llama(variant), _ids(), frontend="fx")
    space = ai.search_space(graph, mode="prune")
    for layer in range(LAYERS):
        gate, up, down = (_param(graph, f"layers.{layer}.mlp.{p}_proj.weight") for p in ("gate", "up", "down"))
        units = _touching(space, down)
        assert len(units) == HIDDEN
        rows = set()
        for group in units:
            assert {(s.param, s.axis, s.kind) for s in group.slices} == {(gate, 0, "out"), (up, 0, "out"), (down, 1, "in")}
            (row,) = _indices(group, gate, 0)
            assert _indices(group, up, 0) == _indices(group, down, 1) == {row}
            rows.add(row)
        assert rows == set(range(HIDDEN))
    # nothing else is prunable: the residual stream is pinned (next test)
    assert len(space.groups) == LAYERS * (KV_HEADS + HIDDEN)


@pytest.mark.parametrize("tie", [True, False])
def test_the_residual_stream_is_pinned_by_the_rms_norms(tie: bool) -> None:
    """No group touches the hidden size: the embedding, the norm weights, the LM head, o_proj and
    down_proj rows and the q/k/v/gate/up columns stay whole, and every residual value is pinned."""
    graph = ai.compile(_llama(tie=tie), _ids(), frontend="fx")
    space = ai.search_space(graph, mode="prune")
    hidden = {"embed_tokens.weight", "lm_head.weight", "norm.weight"} | {
        f"layers.{i}.{p}" for i in range(LAYERS) for p in ("input_layernorm.weight", "post_attention_layernorm.weight")
    }
    for group in space.groups:
        for s in group.slices:
            source = graph.params[s.param].source
            assert source not in hidden
            assert not (source.endswith(("o_proj.weight", "down_proj.weight")) and s.axis == 0)
            assert not (source.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "gate_proj.weight", "up_proj.weight")) and s.axis == 1)
    deps = dependency_graph(graph)
    residual = [n.outputs[0] for n in graph.nodes if n.op.value in ("embedding", "add") and graph.values[n.outputs[0]].shape[-1:] == (DIM,)]
    assert len(residual) == 1 + 2 * LAYERS
    assert all(set(deps.value_groups[v]) == {-1} for v in residual)
    assert deps.pinned_reasons["mean over the channel axis (divides by the channel count)"] == 2 * LAYERS + 1


@pytest.mark.parametrize("tie", [True, False])
def test_without_norms_the_hidden_size_is_one_coupled_set_across_layers(tie: bool) -> None:
    """Take the RMSNorms out and hidden channel j becomes one group spanning the whole network: the
    embedding's column j (the tied LM head's column j, one tensor), every layer's o_proj and down_proj
    row j and q/k/v/gate/up column j, and an untied LM head's column j. Removing it is exact."""
    model = _llama(tie=tie)
    for layer in model.layers:
        layer.input_layernorm = layer.post_attention_layernorm = nn.Identity()
    model.norm = nn.Identity()
    graph = ai.compile(model, _ids(), frontend="fx")
    space = ai.search_space(graph, mode="prune")
    embed = _param(graph, "embed_tokens.weight")
    channels = _touching(space, embed)
    assert len(channels) == DIM
    for group in channels:
        (j,) = _indices(group, embed, 1)
        expected = {("embed_tokens.weight", 1)}
        for i in range(LAYERS):
            expected |= {(f"layers.{i}.self_attn.o_proj.weight", 0), (f"layers.{i}.mlp.down_proj.weight", 0)}
            expected |= {(f"layers.{i}.self_attn.{p}_proj.weight", 1) for p in "qkv"}
            expected |= {(f"layers.{i}.mlp.{p}_proj.weight", 1) for p in ("gate", "up")}
        if not tie:
            expected.add(("lm_head.weight", 1))
        assert {(graph.params[s.param].source, s.axis) for s in group.slices} == expected
        assert all(s.indices == [j] for s in group.slices)
    report = ai.check(model, _ids(), mode="prune", frontend="fx")
    assert report.ok, report.reason


def _select_half(graph: ai.Graph, space: ai.SearchSpace, seed: int) -> list[int]:
    """Half of every layer's heads (one KV group of two) and half of its SwiGLU units, at random."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for layer in range(LAYERS):
        for proj, count in ((f"layers.{layer}.self_attn.o_proj.weight", KV_HEADS // 2), (f"layers.{layer}.mlp.down_proj.weight", HIDDEN // 2)):
            ids = [g.id for g in _touching(space, _param(graph, proj))]
            chosen += rng.choice(ids, size=count, replace=False).tolist()
    return sorted(chosen)


def _zeroed_pair(model: nn.Module, zero_of: object, tmp_path: Path, mode: str = "prune") -> tuple[nn.Module, nn.Module, ai.Graph]:
    """The model with the selected groups zeroed in place (a copy), and the generated sub-network."""
    graph = ai.compile(model, _ids(), frontend="fx")
    space = ai.search_space(graph, mode=mode)
    zero = zero_of(graph, space)  # type: ignore[operator]
    assert space.is_valid(zero)
    zeroed = copy.deepcopy(model)
    zero_slices_(zeroed, graph, [s for gid in zero for s in space.group(gid).slices])
    graph = ai.compile(zeroed, _ids(), frontend="fx")  # the IR reads the zeroed weights
    sub = ai.subnet(graph, ai.search_space(graph, mode=mode), zero)
    return zeroed, emit_and_load(sub, tmp_path), sub


def _assert_same_logits(reference: nn.Module, generated: nn.Module) -> None:
    with torch.no_grad():
        for batch, length in SHAPES:
            ids = _tokens(batch, length)
            expected = reference(ids)
            assert expected.abs().max() > 1e-3
            assert_outputs_match(generated(ids), expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_half_of_the_groups_zeroed_gives_the_same_logits(seed: int, tmp_path: Path) -> None:
    """`check`'s own draw (a random valid half of all groups), compared at two batch sizes and two
    sequence lengths."""
    reference, generated, sub = _zeroed_pair(
        _llama(), lambda g, s: ai.random_zero_groups(g, s, 0.5, seed), tmp_path
    )
    _assert_same_logits(reference, generated)
    assert ai.cost(sub).params < sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("variant", ["repeat_kv", "sdpa_gqa"])
def test_generated_code_reshapes_to_the_pruned_head_counts(variant: str, tmp_path: Path) -> None:
    """Half the heads (one KV group per layer) and half the units removed: the generated forward splits
    q into 2 heads and k/v into 1, repeats the KV head twice, merges 2 heads, and the logits match."""
    reference, generated, _ = _zeroed_pair(_llama(variant), lambda g, s: _select_half(g, s, 3), tmp_path)
    _assert_same_logits(reference, generated)
    code = (tmp_path / "model.py").read_text()
    kept_heads, kept_kv = HEADS // 2, KV_HEADS // 2
    # both layers keep the same counts, so their one generated class writes them as literals
    code = one_line(code)
    split = re.findall(rf"\.reshape\(\w+, -1, (\d+), {HEAD_DIM}\)", code)  # [B, T, E] -> [B, T, H, Dh]
    assert set(split) == {str(kept_heads), str(kept_kv)}
    repeated = re.findall(r"\.expand\(-1, -1, (\d+), -1, -1\)", code)  # a new axis after the KV heads
    assert repeated and set(repeated) == {str(SHARE)}
    merged_back = re.findall(rf"\.reshape\(\w+, (\d+), -1, {HEAD_DIM}\)", code)  # KV heads as query heads
    assert merged_back and set(merged_back) == {str(kept_heads)}
    assert re.search(rf"\.reshape\(\w+, -1, {kept_heads * HEAD_DIM}\)", code)  # heads merged
    assert f", {HEADS}, " not in "".join(re.findall(r"\.reshape\([^)]*\)", code))
    state = generated.state_dict()
    assert state["layers.0.self_attn.q_proj.weight"].shape == (kept_heads * HEAD_DIM, DIM)
    assert state["layers.0.self_attn.k_proj.weight"].shape == (kept_kv * HEAD_DIM, DIM)
    assert state["layers.1.mlp.up_proj.weight"].shape == (HIDDEN // 2, DIM)


@pytest.mark.parametrize("tie", [True, False])
def test_generated_code_keeps_the_lm_head_tied_to_the_embedding(tie: bool, tmp_path: Path) -> None:
    """A tied LM head stays one Parameter in the generated model (it used to be two copies, so the
    module held a vocabulary table more than the IR and the docstring counted, and training it
    further would untie them); an untied head keeps its own weight."""
    model = _llama(tie=tie)
    reference, generated, sub = _zeroed_pair(model, lambda g, s: _select_half(g, s, 5), tmp_path)
    _assert_same_logits(reference, generated)
    assert (generated.lm_head.weight is generated.embed_tokens.weight) is tie
    assert sum(p.numel() for p in generated.parameters()) == ai.cost(sub).params
    code = (tmp_path / "model.py").read_text()
    assert ("self.lm_head.weight = self.embed_tokens.weight" in code) is tie
    assert f"{ai.cost(sub).params:,} trainable parameters" in code
    # both keys load, as in the module's own state_dict
    assert {"embed_tokens.weight", "lm_head.weight"} <= set(generated.state_dict())


def test_erase_mode_removes_attention_and_mlp_sub_blocks_and_whole_layers(tmp_path: Path) -> None:
    """Each layer's attention and MLP end in a residual add: four removal structures, each headed by its
    output projection. Erasing layer 0's attention and all of layer 1 leaves the generated model without
    those projections, and its logits match at every shape."""
    graph = ai.compile(_llama(), _ids(), frontend="fx")
    space = ai.search_space(graph, mode="erase")
    ends = {}
    for group in space.groups:
        assert group.kind == "operator"
        (s,) = group.slices
        ends[graph.params[s.param].source] = group.id
    assert set(ends) == {f"layers.{i}.{p}.weight" for i in range(LAYERS) for p in ("self_attn.o_proj", "mlp.down_proj")}
    erased = ["layers.0.self_attn.o_proj.weight", "layers.1.self_attn.o_proj.weight", "layers.1.mlp.down_proj.weight"]
    reference, generated, _ = _zeroed_pair(_llama(), lambda g, s: sorted(ends[e] for e in erased), tmp_path, mode="erase")
    _assert_same_logits(reference, generated)
    code = (tmp_path / "model.py").read_text()
    keys = set(generated.state_dict())
    assert not any(k.startswith(("layers.0.self_attn.", "layers.1.")) for k in keys)
    assert "layers.0.mlp.down_proj.weight" in keys and ".mlp.down_proj(" in code


@pytest.mark.parametrize("mode", ["prune", "erase", "both"])
def test_check_passes_in_every_mode(mode: str) -> None:
    """`ai.check` on the replica through fx: two batch sizes and two sequence lengths compared."""
    replica = REPLICAS["llama_decoder"]
    report = ai.check(replica.build(), example_inputs(replica), mode=mode)
    assert report.ok, report.reason
    assert report.frontend == "fx" and report.zeroed > 0
    shapes = [tuple(s[0]) for s in report.shapes_checked]
    assert len({b for b, _ in shapes}) == 2 and len({t for _, t in shapes}) == 2
