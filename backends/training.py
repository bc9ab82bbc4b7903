"""The framework-free pieces of the training job (`asgnas train`, `asgnas demo`): its config, its
errors, and the report's plot and summary table, shared by the torch and the Keras trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from asgnas_ir.backends.data import DataName
from asgnas_ir.config_file import load_config
from asgnas_ir.errors import AsgnasError
from asgnas_ir.tolerance import outputs_match


class TrainConfig(BaseModel):
    """What to train and how (the CONFIG file of `asgnas train` is this model as JSON)."""

    model_config = ConfigDict(extra="forbid")

    supernet: str = Field("super_resnet", description="a name in asgnas_ir.examples.supernets.SUPERNETS or a SPEC")
    data: DataName = Field("digits", description="digits (8x8) or digits_hard (16x16, distorted; see asgnas_ir.backends.data)")
    mode: Literal["prune", "erase", "both"] = "erase"
    optimizer: Literal["h2spg", "hesso"] = "h2spg"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    target_group_sparsity: float = Field(0.5, ge=0, le=1)
    warmup_epochs: int = Field(5, ge=0)
    lmbda: float = Field(1.0, ge=0, description="H2SPG group penalty λ on the redundant groups")
    epsilon: float = Field(0.5, ge=0, lt=1, description="H2SPG half-space projection threshold ε")
    shrink_epochs: int = Field(10, ge=1, description="HESSO: epochs over which redundant groups shrink to zero")
    seed: int = 0
    test_fraction: float = Field(0.25, gt=0, lt=1)
    baseline: bool = True
    out: str = "demo-out"

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        return load_config(cls, path, "training config")


class TrainingDiverged(AsgnasError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def job_report(
    config: TrainConfig, groups: int, zero: list[int], costs: tuple[Any, Any], logits: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray, latency: tuple[float, float], train_seconds: float, history: Any, files: list[Path],
) -> dict[str, Any]:
    """The report.json body both frameworks' jobs write: super- vs sub-network, side by side.

    `logits` are the trained super-network's and the generated sub-network's on the test images.
    The verdict (`equivalent`) is DESIGN §4's tolerance on those logits, not equal predictions:
    after a short run a network can have near-tied top logits, whose argmax float rounding flips.
    """
    (full, sub), (lat_super, lat_sub), (reference, generated) = costs, latency, logits
    diff, max_ref = float(np.abs(reference - generated).max()), float(np.abs(reference).max())
    acc_super, acc_sub = (float((out.argmax(1) == labels).mean() * 100) for out in logits)
    return {
        "config": config.model_dump(),
        "groups": groups,
        "zero_groups": zero,
        "super_network": {"test_accuracy": acc_super, "params": full.params, "flops": full.flops, "latency_ms": lat_super},
        "sub_network": {"test_accuracy": acc_sub, "params": sub.params, "flops": sub.flops, "latency_ms": lat_sub},
        "equivalent": outputs_match(diff, max_ref),
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
    for column in ("", "test accuracy", "params", "FLOPs", "CPU latency (64 images)"):
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
    console.print(f"Wrote {out}/model.py, weights.safetensors, report.json, accuracy_flops.png")
