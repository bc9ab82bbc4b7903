"""The training job behind `asgnas train CONFIG` and `asgnas demo`.

Train a super-network on digits (or `digits_hard`, the `data` field, or the user's own data set, the
`dataset` field: see `asgnas_ir.backends.torch.datasets`) with a structured-sparsity optimizer (H2SPG
by default), then build the sub-network from the groups that ended exactly zero, generate its
source, and measure both: held-out accuracy, params, FLOPs and latency on the training device. A
plain-SGD run of the same super-network for the same epochs is the baseline. Every epoch is
checkpointed (written atomically, so an interrupted run never leaves a torn file) and `resume=True`
continues from the last completed epoch with the same result as an uninterrupted run: shuffling is
seeded per epoch, not by a running generator.

NOTE: [Device and precision of the job] The job runs on `device` (auto: CUDA when available) and,
with `amp`, computes forward and loss under `torch.autocast` (bfloat16, or float16 with a
GradScaler whose state is checkpointed); the weights and the optimizer stay float32. Evaluation,
the comparison of sub- and super-network and the generated code run in float32 without autocast, so
the equivalence verdict keeps DESIGN's float32 tolerance. The training loop reads nothing back from
the device per step: the loss is summed on the device and checked for NaN/inf when the progress bar
refreshes (a few times a second) and at the end of each epoch, so a GPU is never stalled by `.item()`.
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

from asgnas_ir.backends.data import load_split
from asgnas_ir.backends.torch.binding import model_device
from asgnas_ir.backends.torch.datasets import COMPARED_SAMPLES, ArrayData, JobData, load_job_data
from asgnas_ir.backends.training import TrainConfig, TrainingDiverged, job_report, plot_report, print_summary
from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.testing import load_generated

# how often the progress bar (loss check, throughput) refreshes during an epoch, in seconds
REFRESH_S = 0.5


def build_supernet(name: str, num_classes: int = 10, in_channels: int = 1, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The super-network `name` (a bundled one or a SPEC), built with `kwargs` (default: `num_classes`
    and `in_channels`)."""
    from asgnas_ir.examples.supernets import SUPERNETS

    arguments = kwargs if kwargs is not None else {"num_classes": num_classes, "in_channels": in_channels}
    if name in SUPERNETS:
        return SUPERNETS[name](**arguments)
    if ":" in name:
        from asgnas_ir.spec import load_model

        return load_model(name, arguments)
    raise SpecError(f"unknown super-network '{name}'; choose one of {', '.join(SUPERNETS)} or give a SPEC")


def resolve_device(name: str) -> torch.device:
    """The torch device a config's `device` names; `auto` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(
            f"device '{name}': CUDA is not available here (torch {torch.__version__}, torch.cuda.is_available() is False: "
            "a CPU-only build of torch, or no GPU visible); use --device cpu or --device auto"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SpecError(f"device '{name}': there are {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SpecError(f"device '{name}': Apple's MPS is not available here; use --device cpu or --device auto")
    return device


def logits_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The model's outputs on `x` in eval mode, as float32 numpy (computed on the model's device)."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x).to(model_device(model))).float().cpu().numpy()


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(accuracy in %, predicted labels)."""
    predictions = logits_of(model, x).argmax(1)
    return float((predictions == y).mean() * 100), predictions


def evaluate_held_out(model: nn.Module, data: JobData, keep: int = COMPARED_SAMPLES) -> tuple[float, np.ndarray, np.ndarray]:
    """(accuracy in % over every held-out sample, float32 logits of the first `keep` of them, their
    labels); in float32, without autocast, on the model's device."""
    device = model_device(model)
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, logits, labels = 0, [], []  # the first `keep` outputs, on the host
    with torch.no_grad():
        for inputs, targets in data.held_out():
            out = model(inputs.to(device, non_blocking=True))
            targets = targets.to(device, non_blocking=True)
            correct += (out.argmax(1) == targets).sum()
            if seen < keep:
                logits.append(out[: keep - seen].float().cpu().numpy())
                labels.append(targets[: keep - seen].cpu().numpy())
            seen += len(targets)
    if not seen:
        raise AsgnasError("the held-out part of the data is empty, so nothing can be evaluated")
    if not logits:  # keep=0: the accuracy alone
        return float(correct.item()) / seen * 100, np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    return float(correct.item()) / seen * 100, np.concatenate(logits), np.concatenate(labels)


def latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = 30) -> float:
    """Median wall time of one forward pass on `x` (after a few warm-up calls) on the model's device;
    on CUDA each call is timed to its end (synchronized), not to its launch."""
    model.eval()
    x = x.to(model_device(model))
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
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


# config fields that do not change what a run computes: a checkpoint resumes under other values
_RUN_ONLY = {"out", "device", "workers"}
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _comparable(config: Any) -> Any:
    """A config as checkpoints record it, for comparison: run-only fields left out, and fields added
    since an older checkpoint was written taken at their defaults (which is what that run used)."""
    if not isinstance(config, dict):
        return config
    defaults = {name: field.get_default(call_default_factory=True) for name, field in TrainConfig.model_fields.items()}
    return {k: v for k, v in {**defaults, **config}.items() if k not in _RUN_ONLY}


class _Fit:
    """One training run with per-epoch checkpoints (`label` names it in progress and files)."""

    def __init__(
        self, config: TrainConfig, data: JobData, model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint: Path,
        device: torch.device,
    ) -> None:
        self.config, self.data, self.model, self.optimizer, self.checkpoint = config, data, model, optimizer, checkpoint
        self.device = device
        self.autocast = _AUTOCAST.get(config.amp)
        # float16 needs loss scaling (its range underflows small gradients); bfloat16 has float32's range
        self.scaler = torch.amp.GradScaler(device.type) if config.amp == "fp16" else None
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0
        self.samples, self.seconds = 0, 0.0  # trained in this process, for the throughput in the report

    def resume(self) -> bool:
        """Continue from the checkpoint if there is one; returns whether there was."""
        if not self.checkpoint.exists():
            return False
        try:
            # tensors and plain containers only: nothing unpickled; onto this run's device, whichever wrote it
            state = torch.load(self.checkpoint, weights_only=True, map_location=self.device)
        except Exception as exc:  # noqa: BLE001  (torch reports a torn or foreign file in several types)
            raise SpecError(
                f"checkpoint '{self.checkpoint}' cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "it is not a checkpoint of this trainer: delete it, or run without --resume to start over"
            ) from None
        config = _comparable(self.config.model_dump())
        recorded = _comparable(state.get("config") if isinstance(state, dict) else None)
        if recorded != config:
            changed = sorted(k for k in config if not isinstance(recorded, dict) or recorded.get(k) != config[k])
            raise SpecError(
                f"checkpoint '{self.checkpoint}' was written with a different config (differs in: "
                f"{', '.join(changed) or 'its fields'}); use that config, or run without --resume to start over"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scaler is not None:
                self.scaler.load_state_dict(state["scaler"])
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

    def _step(self, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module) -> torch.Tensor:
        """One optimizer step; returns the loss (on the device, not read back)."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            loss = loss_fn(self.model(inputs), targets)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)  # skipped (and the scale lowered) when a gradient overflowed
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()

    def run(self, progress: Any, label: str) -> None:
        steps = self.data.steps_per_epoch
        task = progress.add_task(label, total=self.config.epochs, completed=self.start_epoch, status="", speed="")
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(self.start_epoch, self.config.epochs):
            self.model.train()
            total = torch.zeros((), dtype=torch.float32, device=self.device)
            started = shown = time.perf_counter()
            samples = step = 0
            for step, (inputs, targets) in enumerate(self.data.batches(epoch), 1):
                inputs = inputs.to(self.device, non_blocking=True)
                total += self._step(inputs, targets.to(self.device, non_blocking=True), loss_fn).float()
                samples += len(targets)
                now = time.perf_counter()
                if now - shown >= REFRESH_S:  # the only read-back during the epoch: a few times a second
                    shown = now
                    if not bool(torch.isfinite(total)):
                        raise self._diverged(label, f"the loss became NaN or infinite by step {step}", epoch)
                    progress.update(task, completed=epoch + min(step / steps, 1.0), speed=_rate(samples, now - started))
            mean = float(total.item()) / max(step, 1)  # waits for the epoch's last step
            elapsed = time.perf_counter() - started
            self.samples, self.seconds = self.samples + samples, self.seconds + elapsed
            if not math.isfinite(mean):
                raise self._diverged(label, f"the loss became NaN or infinite by step {step}", epoch)
            broken = _first_non_finite(self.model)
            if broken is not None:  # a finite last loss can still leave NaN weights: never checkpoint those
                raise self._diverged(label, f"'{broken}' became NaN or infinite", epoch)
            accuracy, _, _ = evaluate_held_out(self.model, self.data, keep=0)
            self.history.append({"epoch": epoch + 1, "loss": mean, "test_accuracy": accuracy})
            payload = {
                "epoch": epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "history": self.history,
                "config": self.config.model_dump(exclude=_RUN_ONLY),
            }
            if self.scaler is not None:
                payload["scaler"] = self.scaler.state_dict()
            _save_atomically(payload, self.checkpoint)
            progress.update(task, completed=epoch + 1, speed=_rate(samples, elapsed),
                            status=f"loss {mean:.3f}  {self.data.held_out_name} acc {accuracy:.1f}%")


def _rate(samples: int, seconds: float) -> str:
    return f"{samples / seconds:,.0f} samples/s" if seconds > 0 else ""


def load_data(config: TrainConfig, device: torch.device) -> JobData:
    """The job's data: the bundled `data`, or the user's `dataset` SPEC."""
    if config.dataset is None:
        return ArrayData(load_split(config.data, config.test_fraction, config.seed), config.batch_size, config.seed, device, config.data)
    return load_job_data(
        config.dataset, kwargs=config.dataset_kwargs, batch_size=config.batch_size, test_fraction=config.test_fraction,
        seed=config.seed, workers=config.workers, device=device, num_classes=config.num_classes, image_size=config.image_size,
    )


def run_training(config: TrainConfig, *, resume: bool = False, console: Any = None) -> dict[str, Any]:
    """Train, build the sub-network, generate it, measure; returns (and writes) the report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import asgnas_ir as ai
    from asgnas_ir.backends.torch.optim import H2SPG, HESSO

    console = console or Console(highlight=False)
    device = resolve_device(config.device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        for stale in ("checkpoint.pt", "baseline.pt"):
            (out / stale).unlink(missing_ok=True)
    data = load_data(config, device)
    example = data.example().to(device)
    steps_per_epoch = data.steps_per_epoch
    precision = "float32" if config.amp == "off" else f"autocast {config.amp}"
    console.print(f"training on {device} ({precision}); data: {data.description}")

    torch.manual_seed(config.seed)  # built on the CPU, then moved: the same initial weights on every device
    model = build_supernet(config.supernet, data.num_classes, data.in_channels, config.model_kwargs).to(device)
    graph = ai.compile(model.eval(), example)
    space = ai.search_space(graph, mode=config.mode)
    if not space.groups:
        raise AsgnasError(f"super-network '{config.supernet}' has no removable groups in {config.mode} mode")
    common = {
        "lr": config.lr, "momentum": config.momentum, "weight_decay": config.weight_decay,
        "target_group_sparsity": config.target_group_sparsity, "warmup_steps": config.warmup_epochs * steps_per_epoch,
        "shrink_period": config.shrink_period(steps_per_epoch), "align": config.align,
    }
    if config.optimizer == "h2spg":
        optimizer: H2SPG = H2SPG(model, space, lmbda=config.lmbda, epsilon=config.epsilon, **common)
    else:
        optimizer = HESSO(model, space, **common)
    name = "H2SPG" if config.optimizer == "h2spg" else "HESSO"
    fits = [(name, _Fit(config, data, model, optimizer, out / "checkpoint.pt", device))]
    baseline_model = None
    if config.baseline:
        torch.manual_seed(config.seed)
        baseline_model = build_supernet(config.supernet, data.num_classes, data.in_channels, config.model_kwargs).to(device)
        sgd = torch.optim.SGD(baseline_model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        fits.append(("baseline SGD", _Fit(config, data, baseline_model, sgd, out / "baseline.pt", device)))

    columns = (
        TextColumn("{task.description:>13}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[speed]:>16}"), TextColumn("{task.fields[status]}"),
    )
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

    acc_super, logits_super, labels = evaluate_held_out(model, data)
    trained_graph = ai.compile(model.eval(), example)
    trained_space = ai.search_space(trained_graph, mode=config.mode)
    zero = optimizer.zero_groups()
    sub = ai.subnet(trained_graph, trained_space, zero)
    files = ai.codegen(sub, target="torch", out_dir=out)
    generated = load_generated(out, device)
    acc_sub, logits_sub, _ = evaluate_held_out(generated, data)
    batch = data.latency_batch(64).to(device)
    full_cost, sub_cost = ai.cost(trained_graph), ai.cost(sub)
    report = job_report(
        config, len(trained_space.groups), zero, (full_cost, sub_cost), (logits_super, logits_sub),
        labels, (latency_ms(model, batch), latency_ms(generated, batch)), train_seconds, fits[0][1].history, files,
    )
    # accuracies over every held-out sample (the logits compared above are the first COMPARED_SAMPLES)
    report["super_network"]["test_accuracy"], report["sub_network"]["test_accuracy"] = acc_super, acc_sub
    trained = fits[0][1]
    report.update({
        "device": str(device), "amp": config.amp, "data": data.description,
        "train_samples_per_second": trained.samples / trained.seconds if trained.seconds > 0 else None,
    })
    if baseline_model is not None:
        acc_base, _, _ = evaluate_held_out(baseline_model, data, keep=0)
        report["baseline_sgd"] = {"test_accuracy": acc_base, "history": fits[1][1].history}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot_report(report, out / "accuracy_flops.png")
    print_summary(console, report, out)
    return report


if __name__ == "__main__":  # pragma: no cover
    run_training(TrainConfig.model_validate_json(Path(sys.argv[1]).read_text()))
