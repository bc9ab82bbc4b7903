"""The Keras training job behind `asgnas demo --framework keras`: the torch job's steps with Keras 3.

Train a Keras super-network (`asgnas_ir.examples.supernets.keras_nets`) on digits (NHWC) with the
Keras H2SPG through `model.compile` + `fit`, make the chosen groups exactly zero (`finalize`), lower
the trained model again, build the sub-network from `zero_groups()`, generate its Keras source
(`model.py` + `weights.safetensors`) and measure both networks. The report has the keys of the torch
job's (`asgnas_ir.backends.torch.trainer.run_training`) plus `framework`.

Unlike the torch job there are no per-epoch checkpoints (no `--resume`), only H2SPG, and the
super-network must be a name of `KERAS_SUPERNETS`.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from asgnas_ir.backends.data import load_split
from asgnas_ir.backends.training import TrainConfig, TrainingDiverged, job_report, plot_report, print_summary
from asgnas_ir.errors import AsgnasError, SpecError


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def logits(model: Any, x: np.ndarray) -> np.ndarray:
    """Inference on `x` in one batch, through Keras' traced predict function (an eager call retraces every conv)."""
    return np.asarray(model.predict_on_batch(x))


def evaluate(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(accuracy in %, predicted labels)."""
    predictions = logits(model, x).argmax(1)
    return float((predictions == y).mean() * 100), predictions


def latency_ms(model: Any, x: np.ndarray, repeats: int = 20) -> float:
    """Median wall time of one `predict_on_batch` on `x` (after a few warm-up calls)."""
    for _ in range(3):
        model.predict_on_batch(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


class _History(keras.callbacks.Callback):
    """Per-epoch loss and test accuracy, a progress bar, and TrainingDiverged on a non-finite loss."""

    def __init__(self, x_test: np.ndarray, y_test: np.ndarray, progress: Any, label: str, epochs: int) -> None:
        super().__init__()
        self.x_test, self.y_test, self.progress, self.label = x_test, y_test, progress, label
        self.task = progress.add_task(label, total=epochs, status="")
        self.history: list[dict[str, float]] = []
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"{self.label}: loss became {loss} at epoch {self.epoch + 1}, step {batch + 1}; lower the learning rate")

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        accuracy, _ = evaluate(self.model, self.x_test, self.y_test)
        loss = float((logs or {}).get("loss", float("nan")))
        self.history.append({"epoch": epoch + 1, "loss": loss, "test_accuracy": accuracy})
        self.progress.update(self.task, advance=1, status=f"loss {loss:.3f}  test acc {accuracy:.1f}%")


def _fit(model: Any, optimizer: Any, config: TrainConfig, split: Any, progress: Any, label: str) -> list[dict[str, float]]:
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    history = _History(split["x_test"], split["y_test"], progress, label, config.epochs)
    model.fit(
        split["x_train"], split["y_train"], batch_size=config.batch_size, epochs=config.epochs, shuffle=True, verbose=0,
        callbacks=[history],
    )
    return history.history


def run_keras_training(config: TrainConfig, *, console: Any = None) -> dict[str, Any]:
    """Train the Keras super-network, build and generate the sub-network, measure; returns (and writes) the report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import asgnas_ir as ai
    from asgnas_ir.backends.tensorflow.optim import H2SPG
    from asgnas_ir.examples.supernets.keras_nets import KERAS_SUPERNETS, build_keras
    from asgnas_ir.testing import load_generated_keras

    if config.supernet not in KERAS_SUPERNETS:
        raise SpecError(f"unknown Keras super-network '{config.supernet}'; choose one of {', '.join(KERAS_SUPERNETS)}")
    if config.optimizer != "h2spg":
        raise AsgnasError(f"the Keras training job supports the h2spg optimizer only, not '{config.optimizer}'")
    console = console or Console(highlight=False)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_split(config.data, config.test_fraction, config.seed)
    split = {
        "x_train": _nhwc(digits.x_train), "y_train": digits.y_train,
        "x_test": _nhwc(digits.x_test), "y_test": digits.y_test,
    }
    _, size, _, channels = split["x_train"].shape
    example = split["x_test"][:1]
    steps_per_epoch = math.ceil(len(split["x_train"]) / config.batch_size)

    keras.utils.set_random_seed(config.seed)
    model = build_keras(config.supernet, num_classes=10, in_channels=channels, image_size=size)
    space = ai.search_space(ai.compile(model, example), mode=config.mode)
    if not space.groups:
        raise AsgnasError(f"super-network '{config.supernet}' has no removable groups in {config.mode} mode")
    sgd = {"lr": config.lr, "momentum": config.momentum, "weight_decay": config.weight_decay}
    optimizer = H2SPG(
        model, space, target_group_sparsity=config.target_group_sparsity, warmup_steps=config.warmup_epochs * steps_per_epoch,
        lmbda=config.lmbda, epsilon=config.epsilon, shrink_period=config.shrink_period(steps_per_epoch), align=config.align, **sgd,
    )

    columns = (TextColumn("{task.description:>13}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    started = time.perf_counter()
    baseline_model, baseline_history = None, []
    with Progress(*columns, console=console, transient=False) as progress:
        history = _fit(model, optimizer, config, split, progress, "H2SPG")
        train_seconds = time.perf_counter() - started
        if config.baseline:
            keras.utils.set_random_seed(config.seed)
            baseline_model = build_keras(config.supernet, num_classes=10, in_channels=channels, image_size=size)
            # Keras' SGD decays the weights decoupled (the torch baseline couples it to the gradient).
            plain = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum, weight_decay=config.weight_decay or None)
            baseline_history = _fit(baseline_model, plain, config, split, progress, "baseline SGD")
    optimizer.finalize()

    logits_super = logits(model, split["x_test"])
    trained_graph = ai.compile(model, example)
    trained_space = ai.search_space(trained_graph, mode=config.mode)
    zero = optimizer.zero_groups()
    sub = ai.subnet(trained_graph, trained_space, zero)
    files = ai.codegen(sub, target="keras", out_dir=out)
    generated = load_generated_keras(out)
    batch = split["x_test"][:64]
    full_cost, sub_cost = ai.cost(trained_graph), ai.cost(sub)
    report = {"framework": "keras", **job_report(
        config, len(trained_space.groups), zero, (full_cost, sub_cost), (logits_super, logits(generated, split["x_test"])),
        split["y_test"], (latency_ms(model, batch), latency_ms(generated, batch)), train_seconds, history, files,
    )}
    if baseline_model is not None:
        acc_base, _ = evaluate(baseline_model, split["x_test"], split["y_test"])
        report["baseline_sgd"] = {"test_accuracy": acc_base, "history": baseline_history}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot_report(report, out / "accuracy_flops.png")
    print_summary(console, report, out)
    return report
