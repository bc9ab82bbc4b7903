"""The training job behind `asgnas train CONFIG` and `asgnas demo`.

Train a super-network on digits (or `digits_hard`, the `data` field) with a structured-sparsity optimizer (H2SPG by default), then build
the sub-network from the groups that ended exactly zero, generate its source, and measure both:
test accuracy, params, FLOPs and CPU latency. A plain-SGD run of the same super-network for the
same epochs is the baseline. Every epoch is checkpointed (written atomically, so an interrupted
run never leaves a torn file) and `resume=True` continues from the last completed epoch with the
same result as an uninterrupted run: shuffling is seeded per epoch, not by a running generator.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from asgnas_ir.backends.data import Split, load_split
from asgnas_ir.backends.training import TrainConfig, TrainingDiverged, job_report, plot_report, print_summary
from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.testing import load_generated


def build_supernet(name: str, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    from asgnas_ir.examples.supernets import SUPERNETS

    if name in SUPERNETS:
        return SUPERNETS[name](num_classes=num_classes, in_channels=in_channels)
    if ":" in name:
        from asgnas_ir.spec import load_model

        return load_model(name, {"num_classes": num_classes, "in_channels": in_channels})
    raise SpecError(f"unknown super-network '{name}'; choose one of {', '.join(SUPERNETS)} or give a SPEC")


def logits_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The model's outputs on `x` in eval mode, as numpy."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(accuracy in %, predicted labels)."""
    predictions = logits_of(model, x).argmax(1)
    return float((predictions == y).mean() * 100), predictions


def latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = 30) -> float:
    """Median wall time of one forward pass on `x` (after a few warm-up calls)."""
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    """Write `payload` to a temporary file, flush it to disk, then rename it over `path`.

    Invariant: `path` always holds a complete checkpoint (the previous one until the rename), so a
    kill at any moment leaves a loadable file; a torn `.tmp` is simply overwritten next time.
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _first_non_finite(model: nn.Module) -> str | None:
    """The name of the first parameter or buffer holding a NaN or an infinity, else None."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


class _Fit:
    """One training run with per-epoch checkpoints (`label` names it in progress and files)."""

    def __init__(self, config: TrainConfig, split: Split, model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint: Path) -> None:
        self.config, self.split, self.model, self.optimizer, self.checkpoint = config, split, model, optimizer, checkpoint
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0

    def resume(self) -> bool:
        """Continue from the checkpoint if there is one; returns whether there was."""
        if not self.checkpoint.exists():
            return False
        try:
            state = torch.load(self.checkpoint, weights_only=True)  # tensors and plain containers only: nothing unpickled
        except Exception as exc:  # noqa: BLE001  (torch reports a torn or foreign file in several types)
            raise SpecError(
                f"checkpoint '{self.checkpoint}' cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "it is not a checkpoint of this trainer: delete it, or run without --resume to start over"
            ) from None
        config = self.config.model_dump(exclude={"out"})
        recorded = state.get("config") if isinstance(state, dict) else None
        if recorded != config:
            changed = sorted(k for k in config if not isinstance(recorded, dict) or recorded.get(k) != config[k])
            raise SpecError(
                f"checkpoint '{self.checkpoint}' was written with a different config (differs in: "
                f"{', '.join(changed) or 'its fields'}); use that config, or run without --resume to start over"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise SpecError(
                f"checkpoint '{self.checkpoint}' does not fit this model and optimizer ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}); run without --resume to start over"
            ) from None
        self.history = state["history"]
        self.start_epoch = state["epoch"] + 1
        return True

    def _diverged(self, label: str, what: str, epoch: int) -> TrainingDiverged:
        if epoch == 0:
            kept = "no checkpoint was written (the first epoch did not finish)"
        else:
            kept = (
                f"the last good checkpoint '{self.checkpoint}' (after epoch {epoch}) is kept and loads with "
                "torch.load(weights_only=True); --resume continues from it with this same config"
            )
        return TrainingDiverged(
            f"{label}: {what} in epoch {epoch + 1}, so training stopped; {kept}. To train with a lower learning "
            "rate (lr in the config), start again without --resume."
        )

    def run(self, progress: Any, label: str) -> None:
        steps = math.ceil(len(self.split.x_train) / self.config.batch_size)
        task = progress.add_task(label, total=self.config.epochs, completed=self.start_epoch, status="")
        x_all = torch.from_numpy(self.split.x_train)
        y_all = torch.from_numpy(self.split.y_train)
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(self.start_epoch, self.config.epochs):
            self.model.train()
            order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(self.config.seed * 100_003 + epoch))
            total = 0.0
            for step in range(steps):
                index = order[step * self.config.batch_size : (step + 1) * self.config.batch_size]
                self.optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(self.model(x_all[index]), y_all[index])
                if not torch.isfinite(loss):
                    raise self._diverged(label, f"the loss became {loss.item()} at step {step + 1}", epoch)
                loss.backward()
                self.optimizer.step()
                total += loss.item()
            broken = _first_non_finite(self.model)
            if broken is not None:  # a finite last loss can still leave NaN weights: never checkpoint those
                raise self._diverged(label, f"'{broken}' became NaN or infinite", epoch)
            accuracy, _ = evaluate(self.model, self.split.x_test, self.split.y_test)
            self.history.append({"epoch": epoch + 1, "loss": total / steps, "test_accuracy": accuracy})
            _save_atomically(
                {
                    "epoch": epoch,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "history": self.history,
                    "config": self.config.model_dump(exclude={"out"}),
                },
                self.checkpoint,
            )
            progress.update(task, advance=1, status=f"loss {total / steps:.3f}  test acc {accuracy:.1f}%")


def run_training(config: TrainConfig, *, resume: bool = False, console: Any = None) -> dict[str, Any]:
    """Train, build the sub-network, generate it, measure; returns (and writes) the report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import asgnas_ir as ai
    from asgnas_ir.backends.torch.optim import H2SPG, HESSO

    console = console or Console(highlight=False)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        for stale in ("checkpoint.pt", "baseline.pt"):
            (out / stale).unlink(missing_ok=True)
    split = load_split(config.data, config.test_fraction, config.seed)
    example = torch.from_numpy(split.x_test[:1])
    steps_per_epoch = math.ceil(len(split.x_train) / config.batch_size)

    torch.manual_seed(config.seed)
    model = build_supernet(config.supernet)
    graph = ai.compile(model.eval(), example)
    space = ai.search_space(graph, mode=config.mode)
    if not space.groups:
        raise AsgnasError(f"super-network '{config.supernet}' has no removable groups in {config.mode} mode")
    common = {
        "lr": config.lr, "momentum": config.momentum, "weight_decay": config.weight_decay,
        "target_group_sparsity": config.target_group_sparsity, "warmup_steps": config.warmup_epochs * steps_per_epoch,
        "shrink_period": config.shrink_period(steps_per_epoch),
    }
    if config.optimizer == "h2spg":
        optimizer: H2SPG = H2SPG(model, space, lmbda=config.lmbda, epsilon=config.epsilon, **common)
    else:
        optimizer = HESSO(model, space, **common)
    fits = [("H2SPG" if config.optimizer == "h2spg" else "HESSO", _Fit(config, split, model, optimizer, out / "checkpoint.pt"))]
    baseline_model = None
    if config.baseline:
        torch.manual_seed(config.seed)
        baseline_model = build_supernet(config.supernet)
        sgd = torch.optim.SGD(baseline_model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        fits.append(("baseline SGD", _Fit(config, split, baseline_model, sgd, out / "baseline.pt")))

    columns = (TextColumn("{task.description:>13}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    started = time.perf_counter()
    with Progress(*columns, console=console, transient=False) as progress:
        for label, fit in fits:
            if resume:
                note = (
                    f"resuming {label} after epoch {fit.start_epoch} from '{fit.checkpoint}'" if fit.resume()
                    else f"no checkpoint '{fit.checkpoint}' to resume: {label} starts from epoch 1"
                )
                progress.console.print(note)
            fit.run(progress, label)
    train_seconds = time.perf_counter() - started
    optimizer.finalize()

    logits_super = logits_of(model, split.x_test)
    trained_graph = ai.compile(model.eval(), example)
    trained_space = ai.search_space(trained_graph, mode=config.mode)
    zero = optimizer.zero_groups()
    sub = ai.subnet(trained_graph, trained_space, zero)
    files = ai.codegen(sub, target="torch", out_dir=out)
    generated = load_generated(out)
    batch = torch.from_numpy(split.x_test[:64])
    full_cost, sub_cost = ai.cost(trained_graph), ai.cost(sub)
    report = job_report(
        config, len(trained_space.groups), zero, (full_cost, sub_cost), (logits_super, logits_of(generated, split.x_test)),
        split.y_test, (latency_ms(model, batch), latency_ms(generated, batch)), train_seconds, fits[0][1].history, files,
    )
    if baseline_model is not None:
        acc_base, _ = evaluate(baseline_model, split.x_test, split.y_test)
        report["baseline_sgd"] = {"test_accuracy": acc_base, "history": fits[1][1].history}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot_report(report, out / "accuracy_flops.png")
    print_summary(console, report, out)
    return report


if __name__ == "__main__":  # pragma: no cover
    run_training(TrainConfig.model_validate_json(Path(sys.argv[1]).read_text()))
