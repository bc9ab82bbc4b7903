"""`asgnas search gold CONFIG`: GOLD on a super-network and digits (or digits_hard), with a Pareto front out.

One run trains the weights and one sigmoid gate per operator group on the same batches (one
level), under a resource penalty whose weight λ the schedule adapts
(`asgnas_ir.backends.search.gold`): GOLD-NAS' code's λ·Σ w_g·log(1 + n·w̄_g) on the gates
normalised per node by default (`penalty="gold"`), or λ·Σ w_g·σ(α_g) (`"linear"`), w_g being the
group's FLOPs share plus a uniform term. After every round (a fixed number of steps, one epoch by
default) weak gates are pruned, judged as GOLD-NAS' code judges them: σ(α) normalised over the
operators of the gate's node. The architectures that stayed unchanged for `stable_rounds` rounds,
and the final one, are candidates, recorded with their weights (the gated, pruned super-network
computes exactly its sub-network).

Candidates met early have had less training than those met late, so before any comparison every
candidate is trained again under one protocol for the same `finetune_epochs`, and then scored on a
validation split carved from the training data, which alone chooses the front (the non-dominated
candidates by FLOPs and validation accuracy), and on the test split, which only reports. Two
protocols (`retrain`):
- `"finetune"` (default, ours, cheap): continue from the candidate's own recorded weights, gates
  fixed at their recorded σ(α), pruned groups held at zero;
- `"scratch"` (GOLD-NAS' protocol, which follows DARTS): the candidate's architecture re-trained from
  freshly initialised weights, its open operators summed at weight 1 (gates set to σ = 1), pruned
  groups held at zero. GOLD-NAS trains each front architecture for 600 epochs on CIFAR-10; here it
  gets the same `finetune_epochs` as fine-tuning does, so give it more.
Each front point is written as generated code with its gates folded into the weights.

Every round and every re-trained candidate is checkpointed atomically; `--resume` continues from
the last completed step and ends with the same front as an uninterrupted run (shuffling and the
fresh weights of `"scratch"` are seeded per round and per candidate). `rounds` may be raised on
resume to search on: re-training works on copies, so the checkpoint always holds the search's own
weights and optimizer state.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.backends.search.gold import GoldSchedule
from asgnas_ir.backends.search.gold_run import GoldConfig, split_with_validation, write_front
from asgnas_ir.backends.search.pareto import pareto_front
from asgnas_ir.backends.torch.gates import GoldGates
from asgnas_ir.backends.torch.trainer import _save_atomically, build_supernet, evaluate
from asgnas_ir.backends.training import TrainingDiverged
from asgnas_ir.errors import SpecError

# Fields that may change between a run and its --resume: they do not alter what was computed.
RESUMABLE_CHANGES = {"out", "rounds"}


class GoldSearch:
    """The live state of one GOLD run: model, gates, optimizers, schedule and evaluated candidates."""

    def __init__(self, config: GoldConfig) -> None:
        import asgnas_ir as ai

        self.config = config
        self.data, self.full_split = split_with_validation(config)
        torch.manual_seed(config.seed)
        self.model = build_supernet(config.supernet)
        self.example = torch.from_numpy(self.full_split.x_test[:1])
        self.graph = ai.compile(self.model.eval(), self.example)
        # The graph reads weights lazily and refuses ones changed since compile; training changes
        # them all, so take a copy now (cost and subnet then never go back to the live model).
        self.graph.update_weights(self.model)
        self.space = ArchitectureSpace(self.graph, ai.search_space(self.graph, mode=config.mode))
        self.schedule = GoldSchedule(self.space, config.settings())
        self.gates = GoldGates(self.model, self.space, init=config.gate_init)
        self.weights_opt = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        self.gates_opt = torch.optim.SGD([self.gates.alpha], lr=config.gate_lr, momentum=config.gate_momentum)
        self.snapshots: list[dict[str, Any]] = []  # one per schedule candidate: weights and gates then
        self.scores: list[dict[str, float]] = []  # one per schedule candidate: val/test accuracy
        self.finetuned = 0  # candidates [0, finetuned) have fine-tuned snapshots and scores

    # training ---------------------------------------------------------------------------------------
    def train_round(self, round_index: int, *, train_gates: bool = True, weights_opt: torch.optim.Optimizer | None = None) -> float:
        """One round of one-level training: weights and (unless fixed) gates on the same batches.
        `weights_opt` replaces the search's own weight optimizer (fine-tuning brings its own)."""
        weights_opt = weights_opt or self.weights_opt
        x_all, y_all = torch.from_numpy(self.data.x_train), torch.from_numpy(self.data.y_train)
        steps = self.config.steps_per_round or math.ceil(len(x_all) / self.config.batch_size)
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + round_index)
        epochs = math.ceil(steps * self.config.batch_size / len(x_all))
        order = torch.cat([torch.randperm(len(x_all), generator=generator) for _ in range(epochs)])
        coefficients = self.schedule.penalty_coefficients() if train_gates else np.zeros(self.space.size)
        nodes = self.schedule.nodes if self.config.penalty == "gold" else None
        loss_fn = nn.CrossEntropyLoss()
        self.model.train()
        total = 0.0
        for step in range(steps):
            index = order[step * self.config.batch_size : (step + 1) * self.config.batch_size]
            if len(index) == 0:
                break
            weights_opt.zero_grad(set_to_none=True)
            self.gates_opt.zero_grad(set_to_none=True)
            loss = loss_fn(self.model(x_all[index]), y_all[index]) + self.gates.penalty(coefficients, nodes)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"GOLD: loss became {loss.item()} in round {round_index + 1}, step {step + 1}; the last round's "
                    "checkpoint is kept. Lower lr or gate_lr and rerun with --resume."
                )
            loss.backward()
            weights_opt.step()
            if train_gates:
                self.gates_opt.step()
            self.gates.rezero_()
            total += loss.item()
        return total / steps

    def end_round(self) -> str:
        """Let the schedule decide; evaluate a finished stable architecture before pruning."""
        outcome = self.schedule.end_round(self.gates.values())
        if outcome.candidate is not None:
            self._record()
        self.gates.set_active(self.schedule.keep)
        return f"λ {self.schedule.lmbda:.3g}  open {int(self.schedule.keep.sum())}/{self.space.size}"

    def finish(self) -> None:
        if self.schedule.finish() is not None:
            self._record()

    def _record(self) -> None:
        self.snapshots.append(self.snapshot())
        self.scores.append(self.accuracies())

    # evaluation and export ----------------------------------------------------------------------------
    def accuracies(self) -> dict[str, float]:
        val, _ = evaluate(self.model, self.data.x_test, self.data.y_test)
        test, _ = evaluate(self.model, self.full_split.x_test, self.full_split.y_test)
        return {"val_accuracy": val, "test_accuracy": test}

    def snapshot(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "gates": {k: v.detach().clone() for k, v in self.gates.state_dict().items()},
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.gates.load_state_dict(snapshot["gates"])

    def front(self) -> list[int]:
        """Indices of the candidates on the (FLOPs, validation accuracy) front, cheapest first."""
        candidates = self.schedule.candidates
        return pareto_front(list(range(len(candidates))), cost=lambda i: candidates[i].flops, score=lambda i: self.scores[i]["val_accuracy"])

    def finetune_next(self) -> dict[str, float]:
        """Re-train the first candidate not yet re-trained, for `finetune_epochs` epochs with a fresh
        SGD (lr falling linearly), gates fixed and pruned groups exactly zero (their gates output 0
        and `rezero_` runs after every step). `retrain="finetune"` starts from the weights recorded
        with it and keeps its gates' σ(α) (ours); `"scratch"` starts from fresh weights (seeded by
        the config's seed and the candidate) with every open gate at σ = 1, i.e. the plain
        sub-network trained anew (GOLD-NAS' protocol). Its snapshot and scores are replaced (the
        scores as recorded are kept as `recorded_*`); the search's own model, gates and optimizer
        are put back afterwards, so a resumed search continues unchanged."""
        index = self.finetuned
        live = self.snapshot()
        self.restore(self.snapshots[index])
        if self.config.retrain == "scratch":
            self._reinitialise(index)
        optimizer = torch.optim.SGD(
            self.model.parameters(), lr=self.config.lr, momentum=self.config.momentum, weight_decay=self.config.weight_decay
        )
        epochs = self.config.finetune_epochs
        for epoch in range(epochs):
            # The step size falls linearly to lr/E: a candidate's score then reflects where its
            # weights settled, not where the last large steps happened to leave them.
            for group in optimizer.param_groups:
                group["lr"] = self.config.lr * (epochs - epoch) / epochs
            # Each candidate's data order depends on (seed, candidate, epoch) only: resumable.
            self.train_round(1_000_000 + 1000 * index + epoch, train_gates=False, weights_opt=optimizer)
        recorded = {f"recorded_{k}": v for k, v in self.scores[index].items() if not k.startswith("recorded_")}
        self.snapshots[index] = self.snapshot()
        self.scores[index] = {**self.accuracies(), **recorded}
        self.restore(live)
        self.finetuned += 1
        return self.scores[index]

    def _reinitialise(self, index: int) -> None:
        """Fresh weights for candidate `index` (same init as the super-network, its own seed) and
        open gates at α = 30, whose σ is exactly 1 in float32: its operators are summed unscaled,
        as GOLD-NAS' re-training of a genotype does. Pruned groups stay pruned (zeroed here)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed * 100_003 + 7_919 * (index + 1))
            fresh = build_supernet(self.config.supernet)
        self.model.load_state_dict(fresh.state_dict())
        with torch.no_grad():
            self.gates.alpha.fill_(30.0)
        self.gates.rezero_()

    def export(self, index: int, out_dir: Path) -> dict[str, Any]:
        """Fold candidate `index`'s gates into a hook-free copy, build its sub-network, generate
        code; returns the files and how far the generated model is from the gated one (test set)."""
        import asgnas_ir as ai
        from asgnas_ir.testing import load_generated

        candidate = self.schedule.candidates[index]
        self.restore(self.snapshots[index])
        folded = build_supernet(self.config.supernet)
        folded.load_state_dict(self.snapshots[index]["model"])
        self.gates.fold_into_(folded)
        self.graph.update_weights(folded.eval())
        sub = ai.subnet(self.graph, self.space.space, self.space.zero_groups(np.array(candidate.keep)))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        files = ai.codegen(sub, target="torch", out_dir=out_dir)
        x = torch.from_numpy(self.full_split.x_test)
        self.model.eval()
        with torch.no_grad():
            reference = self.model(x).numpy()
            generated = load_generated(out_dir)(x).numpy()
        max_ref = float(np.abs(reference).max())
        diff = float(np.abs(reference - generated).max())
        return {
            "files": [str(f) for f in files],
            "max_abs_diff": diff,
            "max_ref": max_ref,
            "equivalent": bool(max_ref > 1e-3 and diff <= 1e-4 * max_ref),
        }

    # checkpoints ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(exclude=RESUMABLE_CHANGES),
            "model": self.model.state_dict(),
            "gates": self.gates.state_dict(),
            "weights_opt": self.weights_opt.state_dict(),
            "gates_opt": self.gates_opt.state_dict(),
            "schedule": self.schedule.state_dict(),
            "snapshots": self.snapshots,
            "scores": self.scores,
            "finetuned": self.finetuned,
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        if state.get("config") != self.config.model_dump(exclude=RESUMABLE_CHANGES):
            raise SpecError(f"checkpoint '{path}' was written with a different config; remove it or use that config")
        self.model.load_state_dict(state["model"])
        self.gates.load_state_dict(state["gates"])
        self.weights_opt.load_state_dict(state["weights_opt"])
        self.gates_opt.load_state_dict(state["gates_opt"])
        self.schedule.load_state_dict(state["schedule"])
        self.snapshots, self.scores = list(state["snapshots"]), list(state["scores"])
        self.finetuned = int(state["finetuned"])
        if self.schedule.reopen():  # the run had finished: its final candidate is made again at the end
            self.snapshots.pop()
            self.scores.pop()
            self.finetuned = min(self.finetuned, len(self.snapshots))


def run_gold(config: GoldConfig, *, resume: bool = False, console: Any = None) -> dict[str, Any]:
    """Search, choose the front, export it; writes front.json, front.png and front/<i>/ under
    `config.out` and returns the front.json body."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(highlight=False)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    search = GoldSearch(config)
    if resume and checkpoint.exists():
        search.load_state_dict(torch.load(checkpoint, weights_only=True), checkpoint)  # tensors and containers only

    started = time.perf_counter()
    columns = (TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("GOLD", total=config.rounds, completed=search.schedule.rounds, status="")
        while not search.schedule.done and search.schedule.rounds < config.rounds:
            loss = search.train_round(search.schedule.rounds, train_gates=not search.schedule.warming_up)
            status = search.end_round()
            _save_atomically(search.state_dict(), checkpoint)
            progress.update(task, completed=search.schedule.rounds, status=f"loss {loss:.3f}  {status}")
        search.finish()
        _save_atomically(search.state_dict(), checkpoint)  # with the final candidate's snapshot
        search_seconds = time.perf_counter() - started
        started = time.perf_counter()
        if config.finetune_epochs:
            count = len(search.snapshots)
            task = progress.add_task("tune" if config.retrain == "finetune" else "retrain", total=count, completed=search.finetuned, status="")
            while search.finetuned < count:
                scores = search.finetune_next()
                _save_atomically(search.state_dict(), checkpoint)
                progress.update(task, completed=search.finetuned, status=f"val acc {scores['val_accuracy']:.1f}%")
        finetune_seconds = time.perf_counter() - started

    return write_front(search, config, search_seconds=search_seconds, finetune_seconds=finetune_seconds, console=console)


def run_gold_search(config_path: Path, options: Any, console: Any = None) -> dict[str, Any]:
    """The `asgnas search gold CONFIG` entry (see `asgnas_ir.backends.search.runner`)."""
    config = GoldConfig.from_file(config_path)
    if getattr(options, "out", None):
        config = config.model_copy(update={"out": options.out})
    # --workers/--backend are ignored: gates and weights train together in one process, and the
    # few front candidates are evaluated in place (nothing to farm out).
    return run_gold(config, resume=bool(getattr(options, "resume", False)), console=console)


__all__ = ["GoldConfig", "GoldSearch", "run_gold", "run_gold_search"]
