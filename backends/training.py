"""The framework-free pieces of the training job (`asgnas train`, `asgnas demo`): its config, its
errors, and the report's plot and summary table, shared by the torch and the Keras trainers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from asgnas_ir.backends.data import DataName
from asgnas_ir.config_file import load_config
from asgnas_ir.errors import AsgnasError


class TrainConfig(BaseModel):
    """What to train and how (the CONFIG file of `asgnas train` is this model as JSON)."""

    model_config = ConfigDict(extra="forbid")

    supernet: str = Field("super_resnet", description="a name in asgnas_ir.examples.supernets.SUPERNETS or a SPEC")
    model_kwargs: dict[str, Any] | None = Field(
        None, description="keyword arguments for the supernet (a named one or a callable SPEC); None: num_classes and "
        "in_channels, read from the data",
    )
    data: DataName = Field("digits", description="digits (8x8) or digits_hard (16x16, distorted; see asgnas_ir.backends.data)")
    dataset: str | None = Field(
        None, description="the user's data instead of `data`: a dataset SPEC (package.module:attr or path/file.py:attr "
        "naming a torch Dataset or DataLoader, or a callable returning one or a (train, validation) pair) or a folder "
        "of images (one subfolder per class); see asgnas_ir.backends.torch.datasets",
    )
    dataset_kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for a callable dataset SPEC")
    num_classes: int | None = Field(None, ge=1, description="classes of a dataset SPEC; None: read from the data set")
    image_size: int | None = Field(
        None, ge=1, description="an image folder's images are resized and centre-cropped to this size; None: to the first image's size",
    )
    workers: int = Field(0, ge=0, description="DataLoader worker processes for a dataset SPEC (0: load in the main process)")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda or cuda:N")
    amp: Literal["off", "bf16", "fp16"] = Field(
        "off", description="mixed precision: torch.autocast in bfloat16 or float16 (float16 with a GradScaler); off: float32",
    )
    mode: Literal["prune", "erase", "both"] = "erase"
    optimizer: Literal["h2spg", "hesso"] = "h2spg"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    target_group_sparsity: float = Field(0.5, ge=0, le=1)
    align: int = Field(
        1, ge=1, description="prune/both mode: every layer keeps a multiple of this many channels or its full width "
        "(8 suits tensor cores and vectorised CPU kernels); 1: any width",
    )
    warmup_epochs: int = Field(5, ge=0)
    lmbda: float | None = Field(
        None, ge=0,
        description="H2SPG group penalty λ: None sets it per group and step so the chosen groups reach zero within "
        "shrink_epochs; a number is DHSPG's fixed rule",
    )
    epsilon: float = Field(0.5, ge=0, lt=1, description="H2SPG half-space projection threshold ε (> 0 with lmbda None)")
    shrink_epochs: int | None = Field(
        None, ge=1,
        description="epochs from the choice of the groups (after warm-up) to their being exactly zero, for H2SPG's "
        "automatic λ and HESSO's shrink; None: a third of the epochs after warm-up (at least 1)",
    )
    seed: int = 0
    test_fraction: float = Field(0.25, gt=0, lt=1)
    baseline: bool = True
    out: str = "demo-out"

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, not '{value}'")
        return value

    @model_validator(mode="after")
    def _one_source_of_data(self) -> TrainConfig:
        if self.dataset is not None and "data" in self.model_fields_set:
            raise ValueError(
                f"give either data ('{self.data}', a bundled data set) or dataset ('{self.dataset}', your own), not both"
            )
        if self.dataset is None and (self.dataset_kwargs or self.num_classes or self.image_size or self.workers):
            raise ValueError("dataset_kwargs, num_classes, image_size and workers apply to a dataset SPEC; set dataset too")
        return self

    @model_validator(mode="after")
    def _groups_reach_zero_in_time(self) -> TrainConfig:
        # finalize() forces any chosen group that training left non-zero, which destroys the network it
        # reports on; a schedule that cannot get there is refused before any training is spent on it.
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs}): the groups are chosen "
                "after warm-up and need epochs of training to reach zero"
            )
        if self.optimizer == "h2spg" and self.lmbda is None and self.epsilon <= 0:
            raise ValueError(
                "epsilon must be > 0 with the automatic λ (lmbda null): the half-space projection is what makes a "
                "chosen group exactly zero; use 0.5 (the default), or give an explicit lmbda"
            )
        if self.uses_shrink and self.warmup_epochs + self.effective_shrink_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) + shrink_epochs ({self.effective_shrink_epochs}) exceed epochs "
                f"({self.epochs}): the chosen groups would not be zero when training ends; raise epochs or lower one of them"
            )
        return self

    @property
    def uses_shrink(self) -> bool:
        """Whether `shrink_epochs` drives the optimizer (HESSO, or H2SPG with the automatic λ)."""
        return self.optimizer == "hesso" or self.lmbda is None

    @property
    def effective_shrink_epochs(self) -> int:
        """`shrink_epochs`, or by default a third of the epochs after warm-up, which leaves twice as many
        for the network to recover with the groups at zero."""
        if self.shrink_epochs is not None:
            return self.shrink_epochs
        return max(1, (self.epochs - self.warmup_epochs) // 3)

    def shrink_period(self, steps_per_epoch: int) -> int:
        """The optimizer's `shrink_period` in steps: `effective_shrink_epochs` whole epochs."""
        return self.effective_shrink_epochs * steps_per_epoch

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        return load_config(cls, path, "training config")


class TrainingDiverged(AsgnasError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def _outputs(value: Any) -> list[np.ndarray]:
    """A model's outputs as a list of arrays (one array is one output)."""
    return [np.asarray(v) for v in value] if isinstance(value, (list, tuple)) else [np.asarray(value)]


def job_report(
    config: TrainConfig, groups: int, zero: list[int], costs: tuple[Any, Any], logits: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray, latency: tuple[float, float], train_seconds: float, history: Any, files: list[Path],
) -> dict[str, Any]:
    """The report.json body both frameworks' jobs write: super- vs sub-network, side by side.

    `logits` are the trained super-network's and the generated sub-network's on the test images.
    The verdict (`equivalent`) is DESIGN §4's tolerance on those logits, not equal predictions:
    after a short run a network can have near-tied top logits, whose argmax float rounding flips.
    """
    from asgnas_ir.api import compare_outputs, worst_output

    (full, sub), (lat_super, lat_sub), (reference, generated) = costs, latency, logits
    # the rule and the figures of ai.check: each output against its own max |ref|, the worst one shown
    comparisons = compare_outputs(_outputs(reference), _outputs(generated))
    worst = worst_output(comparisons)
    diff, max_ref = worst.max_abs_diff, worst.max_ref
    acc_super, acc_sub = (float((out.argmax(1) == labels).mean() * 100) for out in logits)
    return {
        "config": config.model_dump(),
        "groups": groups,
        "zero_groups": zero,
        "super_network": {"test_accuracy": acc_super, "params": full.params, "flops": full.flops, "latency_ms": lat_super},
        "sub_network": {"test_accuracy": acc_sub, "params": sub.params, "flops": sub.flops, "latency_ms": lat_sub},
        "equivalent": all(c.ok for c in comparisons),
        "max_abs_logit_diff": diff,
        "max_ref": max_ref,
        "predictions_identical": bool((reference.argmax(1) == generated.argmax(1)).all()),
        "flops_reduction": 1 - sub.flops / full.flops,
        "train_seconds": train_seconds,
        "history": history,
        "files": [str(p) for p in files],
    }


def plot_report(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    full, sub = report["super_network"], report["sub_network"]
    if "baseline_sgd" in report:
        ax.scatter(full["flops"] / 1e6, report["baseline_sgd"]["test_accuracy"], marker="s", s=60, label="super-network, plain SGD")
    ax.scatter(full["flops"] / 1e6, full["test_accuracy"], marker="o", s=60, label=f"super-network, {report['config']['optimizer'].upper()}")
    ax.scatter(sub["flops"] / 1e6, sub["test_accuracy"], marker="*", s=160, label="generated sub-network")
    ax.set_xlabel("FLOPs (millions, multiply-add = 2)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{report['config']['supernet']} on {report['config'].get('data', 'digits')} ({report['config']['mode']} mode)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.25)
    ax.legend(loc="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_summary(console: Any, report: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    full, sub = report["super_network"], report["sub_network"]
    table = Table(title=f"{report['config']['supernet']}: removed {len(report['zero_groups'])} of {report['groups']} groups")
    device = str(report.get("device", "cpu"))  # the Keras job reports none: it times on the CPU
    where = "CPU" if device == "cpu" else device
    for column in ("", "test accuracy", "params", "FLOPs", f"{where} latency (64 inputs)"):
        table.add_column(column, justify="left" if not column else "right")
    if "baseline_sgd" in report:
        table.add_row("super-network, plain SGD", f"{report['baseline_sgd']['test_accuracy']:.2f}%", f"{full['params']:,}", f"{full['flops']:,}", "")
    table.add_row("super-network, trained", f"{full['test_accuracy']:.2f}%", f"{full['params']:,}", f"{full['flops']:,}", f"{full['latency_ms']:.2f} ms")
    table.add_row("generated sub-network", f"{sub['test_accuracy']:.2f}%", f"{sub['params']:,}", f"{sub['flops']:,}", f"{sub['latency_ms']:.2f} ms")
    console.print(table)
    same = "equal within the DESIGN tolerance" if report["equivalent"] else "DIFFERENT"
    predictions = "identical" if report["predictions_identical"] else "some differ (near-tied logits)"
    console.print(
        f"FLOPs -{report['flops_reduction']:.0%}; sub- vs super-network logits on the test set: {same} "
        f"(max |Δ| {report['max_abs_logit_diff']:.1e}, max |logit| {report['max_ref']:.2g}); predictions {predictions}."
    )
    if report.get("train_samples_per_second"):
        console.print(f"Training throughput: {report['train_samples_per_second']:,.0f} samples/s on {device} (amp {report.get('amp', 'off')}).")
    console.print(f"Wrote {out}/model.py, weights.safetensors, report.json, accuracy_flops.png")
