"""Prune a small Llama decoder while training it on a made-up text task, then run the generated sub-network.

    python -m asgnas_ir.examples.prune_llm                      # H2SPG, writes llm-out/
    python -m asgnas_ir.examples.prune_llm --optimizer hesso --steps 400 --out hesso-out

1. **Model.** `transformers.LlamaForCausalLM` from a tiny config at random init (no download):
   hidden 64, 2 layers, 4 query heads over 2 KV heads (grouped-query attention), SwiGLU MLP of 128
   units, RMSNorm, rotary positions, LM head tied to the input embedding.
2. **Task.** `TopicMarkov` (`asgnas_ir.backends.torch.text_data`): documents from a few topic
   Markov chains, the topic stated only by the first token, so attention has work to do; its own
   entropy on the test tokens is the loss floor printed beside the model's.
3. **Search space.** `ai.compile(model, ids)` (frontend auto: transformers goes through the ONNX
   export path, and the graph's param sources are the model's `state_dict` keys), then
   `ai.search_space(graph, mode="prune")`: one group per KV head together with the query heads that
   read it (q, k and v rows, o_proj columns), one per SwiGLU unit (gate and up rows, the down_proj
   column). The residual width is one coupled set through every layer, norm and the tied head, so
   it stays whole.
4. **Train.** `H2SPG` (or `HESSO`) with Adam as the base step on the next-token cross-entropy: warm-up,
   then half the groups (`--sparsity`) chosen by redundancy and driven to exactly zero within
   `--shrink` steps, then training goes on with them held at zero.
5. **Sub-network.** `opt.finalize()` (refusing, not forcing, if any chosen group is not already
   zero), `graph.update_weights(model)`, `ai.subnet`, `ai.codegen(sub, "torch", out)`; the generated
   `model.py` is loaded and its logits compared with the trained model's at two batch sizes and two
   sequence lengths, with the DESIGN tolerance (`ai.api.compare_outputs`).

`run(...)` does all of it and returns a `PruneRun` (model, space, zero groups, figures), so a test
can run a shorter job and check the same things.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import asgnas_ir as ai
from asgnas_ir.api import compare_outputs, worst_output
from asgnas_ir.backends.torch import H2SPG, HESSO, GroupsNotZeroWarning, live_tensors
from asgnas_ir.backends.torch.text_data import TopicMarkov, next_token_accuracy, next_token_loss
from asgnas_ir.testing import load_generated

CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "intermediate_size": 128, "max_position_embeddings": 64, "tie_word_embeddings": True}
OPTIMIZERS = {"h2spg": H2SPG, "hesso": HESSO}
# (batch, sequence length) at which the generated model must reproduce the trained one's logits
COMPARED_SHAPES = ((2, 24), (2, 11), (5, 24), (5, 11))


def build_model(vocab: int, seed: int = 0) -> torch.nn.Module:
    """The tiny Llama of the module docstring, at random init drawn from `seed`."""
    import transformers

    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=vocab, **CONFIG))


@dataclass
class Start:
    """The untrained model, its compiled graph and search space, and the task: what every run starts
    from (`run` trains a copy of `model`, so one `Start` serves several runs, one after another: each
    run's `graph.update_weights` replaces all of `graph`'s weights with its own trained ones)."""

    language: TopicMarkov
    model: torch.nn.Module
    graph: ai.Graph
    space: ai.SearchSpace
    seq_len: int
    compile_seconds: float


@dataclass
class PruneRun:
    """What `run` built and measured. `figures` is what `main` prints (JSON-ready)."""

    model: torch.nn.Module  # the trained model, chosen groups exactly zero, in eval mode
    space: ai.SearchSpace
    zero_groups: list[int]  # `opt.zero_groups()`: what the sub-network removed
    out: Path  # the generated model.py and weights.safetensors
    figures: dict[str, Any] = field(default_factory=dict)


def prepare(seed: int = 0, seq_len: int = 24) -> Start:
    """Build the model and the task from `seed`, compile the model and build its prune-mode space."""
    language = TopicMarkov(seed=seed)
    model = build_model(language.vocab, seed).eval()
    tick = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.onnx.export's and transformers' tracer warnings
        graph = ai.compile(model, language.sample(2, seq_len, seed=0))
    space = ai.search_space(graph, mode="prune")
    return Start(language, model, graph, space, seq_len, time.perf_counter() - tick)


def run(start: Start | None = None, *, optimizer: str = "h2spg", steps: int = 600, warmup: int = 150,
        shrink: int = 150, sparsity: float = 0.5, lr: float = 3e-3, batch: int = 32, train_docs: int = 4096,
        test_docs: int = 512, seed: int = 0, baseline: bool = False, out: str | Path = "llm-out",
        log: Callable[[str], None] = print) -> PruneRun:
    """Train, prune, generate and compare (module docstring), from `start` (None: `prepare(seed)`).
    `warmup + shrink` must leave steps after it, so that every chosen group is zero before
    `finalize()` and the network has recovered from it. `baseline` also trains the unpruned model
    with plain Adam for as many steps, for its test loss.

    Raises:
        SystemExit: the step counts cannot zero the groups in time, or `optimizer` is unknown.
        GroupsNotZeroWarning: (as an error) a chosen group was not zero when training ended.
    """
    if optimizer not in OPTIMIZERS:
        raise SystemExit(f"--optimizer {optimizer!r}: choose one of {sorted(OPTIMIZERS)}")
    if warmup + shrink >= steps:
        raise SystemExit(f"--warmup {warmup} + --shrink {shrink} must be below --steps {steps}: the chosen groups "
                         "would not be zero (and the network not recovered) when training ends")
    started = time.perf_counter()
    prepared = start is not None
    start = prepare(seed) if start is None else start
    language, graph, space = start.language, start.graph, start.space
    seconds: dict[str, float] = {"compile": start.compile_seconds}
    train = language.sample(train_docs, start.seq_len, seed=1)
    test = language.sample(test_docs, start.seq_len, seed=2)
    model = copy.deepcopy(start.model)
    before = _evaluate(model, test)
    log(f"{type(model).__name__}: {len(space.groups)} groups ({_describe(space)}), compiled through "
        f"'{graph.meta.frontend}' in {seconds['compile']:.1f} s")
    log(f"before training: loss {before[0]:.3f}, accuracy {before[1]:.3f} "
        f"(the language's own: loss {language.best_loss(test):.3f}, accuracy {language.best_accuracy(test):.3f})")

    tick = time.perf_counter()
    opt = OPTIMIZERS[optimizer](model, space, lr=lr, base="adam", target_group_sparsity=sparsity,
                                warmup_steps=warmup, shrink_period=shrink)
    _train(model, opt, train, steps, batch, seed, log=lambda step, loss: log(
        f"  step {step:4d}: loss {loss:.3f}, groups exactly zero {len(opt.zero_groups())}"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GroupsNotZeroWarning)  # training, not finalize(), must have zeroed them
        opt.finalize()
    model.eval()
    seconds["train"] = time.perf_counter() - tick
    after = _evaluate(model, test)
    zero = opt.zero_groups()
    zero_seen = exactly_zero(model, space)
    log(f"after training ({optimizer}, {steps} steps, {seconds['train']:.1f} s): loss {after[0]:.3f}, "
        f"accuracy {after[1]:.3f}; {len(zero_seen)} of {len(space.groups)} groups exactly zero")
    dense = None
    if baseline:
        dense = copy.deepcopy(start.model)
        _train(dense, torch.optim.Adam(dense.parameters(), lr=lr), train, steps, batch, seed)
        dense_loss = _evaluate(dense.eval(), test)
        log(f"the unpruned model, plain Adam, {steps} steps: loss {dense_loss[0]:.3f}, accuracy {dense_loss[1]:.3f}")

    tick = time.perf_counter()
    graph.update_weights(model)
    sub = ai.subnet(graph, space, zero)
    out = Path(out)
    ai.codegen(sub, target="torch", out_dir=out)
    generated = load_generated(out)
    seconds["subnet_codegen"] = time.perf_counter() - tick
    kept = _kept(sub)
    worst, per_shape = _compare(model, generated, language)
    sub_loss = _evaluate(generated, test, logits_of=lambda output: output)
    # compile included, whether this run or an earlier `prepare` did it
    seconds["total"] = time.perf_counter() - started + (start.compile_seconds if prepared else 0.0)
    params_full = sum(p.numel() for p in model.parameters())  # the tied head counted once
    params_sub = sum(p.numel() for p in generated.parameters())
    figures = {
        "optimizer": optimizer, "steps": steps, "groups": len(space.groups), "zero_groups": len(zero),
        "exactly_zero_groups": len(zero_seen),
        "loss_before": before[0], "accuracy_before": before[1], "loss_after": after[0], "accuracy_after": after[1],
        "loss_generated": sub_loss[0], "loss_floor": language.best_loss(test), "accuracy_floor": language.best_accuracy(test),
        **({} if dense is None else {"loss_baseline": dense_loss[0], "accuracy_baseline": dense_loss[1]}),
        **kept, "params_full": params_full, "params_sub": params_sub,
        "flops_full": ai.cost(graph).flops, "flops_sub": ai.cost(sub).flops,
        "max_abs_logit_diff": worst.max_abs_diff, "tolerance": worst.tolerance, "max_ref": worst.max_ref,
        "logits_match": all(c.ok for c in per_shape.values()), "shapes_compared": [list(s) for s in per_shape],
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    log(f"generated sub-network in {out}/: query heads kept per layer {kept['query_heads_kept']}, KV heads "
        f"{kept['kv_heads_kept']}, MLP units {kept['mlp_units_kept']}; params {params_sub:,} of {params_full:,}")
    log(f"its logits against the trained model's at (batch, seq) {list(per_shape)}: max |Δ| {worst.max_abs_diff:.3g} "
        f"(tolerance {worst.tolerance:.3g}) -> {'match' if figures['logits_match'] else 'DIFFER'}; "
        f"its test loss {sub_loss[0]:.3f}; {seconds['total']:.1f} s in all")
    return PruneRun(model, space, zero, out, figures)


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, train: torch.Tensor, steps: int, batch: int, seed: int,
           log: Callable[[int, float], None] | None = None) -> None:
    """`steps` Adam-based steps on random batches of `train` (the order drawn from `seed`)."""
    model.train()
    order = torch.Generator().manual_seed(seed)
    for step in range(steps):
        tokens = train[torch.randint(0, len(train), (batch,), generator=order)]
        loss = next_token_loss(model(tokens).logits, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and (step % max(1, steps // 6) == 0 or step == steps - 1):
            log(step, loss.item())


def exactly_zero(model: torch.nn.Module, space: ai.SearchSpace) -> list[int]:
    """Groups whose every non-statistic slice is exactly 0.0 in the live model (read independently of
    the optimizer's own bookkeeping)."""
    tensors = live_tensors(model)
    found = []
    for group in space.groups:
        slices = [s for s in group.slices if s.kind != "stat"]
        tensors_of = (tensors[space.param_sources[s.param]].detach() for s in slices)
        if all(bool((t.index_select(s.axis, torch.tensor(s.indices)) == 0).all()) for s, t in zip(slices, tensors_of, strict=True)):
            found.append(group.id)
    return found


def _describe(space: ai.SearchSpace) -> str:
    """'4 KV-head groups, 256 MLP-unit groups': the groups by the projection that makes them."""
    counts: dict[str, int] = {}
    for group in space.groups:
        sources = {space.param_sources[s.param].rsplit(".", 2)[-2] for s in group.slices}
        kind = "KV-head" if "k_proj" in sources else "MLP-unit" if "gate_proj" in sources else "other"
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind} groups" for kind, n in counts.items())


def _kept(sub: ai.Graph) -> dict[str, list[int]]:
    """Heads and units per layer in the sub-network, read from the shapes of its params by their source
    keys (the source model's state_dict keys, whatever names the generated code gives its attributes)."""
    shapes = {param.source: param.shape for param in sub.params.values()}
    head_dim = CONFIG["hidden_size"] // CONFIG["num_attention_heads"]
    layers = range(CONFIG["num_hidden_layers"])

    def rows(layer: int, name: str) -> int:
        shape = shapes.get(f"model.layers.{layer}.{name}.weight")
        return int(shape[0]) if shape is not None else 0  # a wholly removed projection has no weight

    return {"query_heads_kept": [rows(i, "self_attn.q_proj") // head_dim for i in layers],
            "kv_heads_kept": [rows(i, "self_attn.k_proj") // head_dim for i in layers],
            "mlp_units_kept": [rows(i, "mlp.gate_proj") for i in layers]}


@torch.no_grad()
def _evaluate(model: torch.nn.Module, tokens: torch.Tensor,
              logits_of: Callable[[Any], torch.Tensor] = lambda output: output.logits) -> tuple[float, float]:
    logits = logits_of(model(tokens))
    return float(next_token_loss(logits, tokens)), next_token_accuracy(logits, tokens)


@torch.no_grad()
def _compare(model: torch.nn.Module, generated: torch.nn.Module, language: TopicMarkov) -> tuple[Any, dict[tuple[int, int], Any]]:
    """The generated model's logits against the trained model's on fresh documents at each of
    `COMPARED_SHAPES`: the worst comparison, and each shape's."""
    per_shape = {}
    for i, (batch, seq) in enumerate(COMPARED_SHAPES):
        tokens = language.sample(batch, seq, seed=100 + i)
        expected = model(tokens).logits.numpy()
        actual = np.asarray(generated(tokens))
        per_shape[(batch, seq)] = worst_output(compare_outputs([expected], [actual]))
    return max(per_shape.values(), key=lambda c: (not c.ok, c.ratio)), per_shape


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="h2spg", choices=sorted(OPTIMIZERS))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=150, help="steps before the groups are chosen")
    parser.add_argument("--shrink", type=int, default=150, help="steps from the choice of the groups to their being zero")
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of the groups to remove")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the timings quoted in the docs: 1)")
    parser.add_argument("--baseline", action="store_true", help="also train the unpruned model with plain Adam")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object at the end")
    parser.add_argument("--out", default="llm-out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(optimizer=args.optimizer, steps=args.steps, warmup=args.warmup, shrink=args.shrink,
                 sparsity=args.sparsity, lr=args.lr, seed=args.seed, baseline=args.baseline, out=args.out)
    if args.json:
        print(json.dumps(result.figures))
    if not result.figures["logits_match"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
