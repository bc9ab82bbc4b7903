"""The framework-free parts of a GOLD run, shared by the torch and the Keras search: the CONFIG
(`GoldConfig`), the data split with its validation part, and the front's files (front.json with
every candidate, front.png, the printed table). The schedule itself is `asgnas_ir.backends.search.gold`;
`asgnas_ir.backends.torch.gold` and `asgnas_ir.backends.tensorflow.gold` train the gates.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from asgnas_ir.backends.data import DataName, Split, load_split
from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.backends.search.gold import GoldCandidate, GoldSchedule, GoldSettings
from asgnas_ir.config_file import load_config


class GoldConfig(BaseModel):
    """What to search and how (the CONFIG file of `asgnas search gold` is this model as JSON)."""

    model_config = ConfigDict(extra="forbid")

    supernet: str = Field("super_resnet", description="a name in asgnas_ir.examples.supernets.SUPERNETS or a SPEC")
    data: DataName = Field("digits", description="digits (8x8) or digits_hard (16x16, distorted; see asgnas_ir.backends.data)")
    mode: Literal["erase"] = Field("erase", description="gates live on operator groups (removal structures)")
    rounds: int = Field(60, ge=1, description="most rounds to run; the search usually stops earlier at the FLOPs floor")
    steps_per_round: int | None = Field(None, ge=1, description="training steps per round; default one epoch")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.05, gt=0, description="SGD learning rate of the weights")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    gate_lr: float = Field(0.5, gt=0, description="SGD learning rate of the gate logits α")
    gate_momentum: float = Field(0.9, ge=0, lt=1)
    gate_init: float = Field(0.0, description="initial α; 0 gives σ(α)=0.5, where the sigmoid is steepest")
    lambda0: float = Field(0.02, gt=0, description="first step Δλ of the penalty weight (λ starts at 0)")
    c0: float = Field(2.0, gt=1, description="Δλ grows by c0 while fewer than n0 gates fall; λ is divided by c0 after a full round")
    n0: int = Field(1, ge=1, description="gates a round should prune")
    xi_min: float = Field(0.01, ge=0, lt=1, description="open gates scoring ≤ xi_min are pruned (GOLD-NAS' eta_min)")
    xi_max: float = Field(0.05, ge=0, lt=1, description="up to n0 more of the weakest gates are pruned if they score ≤ xi_max (eta_max)")
    normalize: bool = Field(
        True, description="score = σ(α) over the sum of its node's open gates, as GOLD-NAS' code does; false: σ(α) alone"
    )
    penalty: Literal["gold", "linear"] = Field(
        "gold",
        description="gold: λ·Σ w_g·log(1 + n·w̄_g) on the gates normalised per node (GOLD-NAS' code); linear: λ·Σ w_g·σ(α_g)",
    )
    flops_floor: float = Field(0.06, ge=0, lt=1, description="stop once the FLOPs fall under this fraction of the full network's")
    stable_rounds: int = Field(1, ge=1, description="rounds an architecture must last to be a front candidate")
    uniform_weight: float = Field(0.01, ge=0, description="penalty weight per gate on top of its FLOPs share")
    warmup_rounds: int = Field(8, ge=0, description="rounds of plain training (no penalty, gates fixed) before pruning starts")
    finetune_epochs: int = Field(
        5, ge=0, description="epochs every candidate is trained (as `retrain` says) before the front is chosen; 0: scored as recorded"
    )
    retrain: Literal["finetune", "scratch"] = Field(
        "finetune",
        description="finetune: from the recorded weights, gates as recorded (ours); scratch: fresh weights, open gates at 1 (GOLD-NAS)",
    )
    seed: int = 0
    test_fraction: float = Field(0.25, gt=0, lt=1)
    val_fraction: float = Field(0.2, gt=0, lt=1, description="part of the training split held out to choose the front")
    out: str = "gold-out"

    @classmethod
    def from_file(cls, path: str | Path) -> GoldConfig:
        return load_config(cls, path, "GOLD search config")

    def settings(self) -> GoldSettings:
        return GoldSettings(
            lambda0=self.lambda0, c0=self.c0, n0=self.n0, xi_min=self.xi_min, xi_max=self.xi_max,
            flops_floor=self.flops_floor, stable_rounds=self.stable_rounds, uniform_weight=self.uniform_weight,
            warmup_rounds=self.warmup_rounds, normalize=self.normalize,
        )


def split_with_validation(config: GoldConfig) -> tuple[Split, Split]:
    """(train/val, train+val/test): the data set's split, and a stratified validation part of its
    training data; the front is chosen on validation accuracy, the test set only reports."""
    from sklearn.model_selection import train_test_split

    full = load_split(config.data, config.test_fraction, config.seed)
    x_train, x_val, y_train, y_val = train_test_split(
        full.x_train, full.y_train, test_size=config.val_fraction, random_state=config.seed, stratify=full.y_train
    )
    return Split(x_train, y_train, x_val, y_val), full


def front_point(candidate: GoldCandidate, scores: dict[str, float], space: ArchitectureSpace) -> dict[str, Any]:
    return {
        "zero_groups": space.zero_groups(np.array(candidate.keep)),
        "flops": candidate.flops,
        "params": candidate.params,
        **scores,
        "round": candidate.round,
        "lmbda": candidate.lmbda,
        "reason": candidate.reason,
    }


def plot_front(result: dict[str, Any], path: Path) -> None:
    """FLOPs vs accuracy: every candidate, the front (validation accuracy, which chose it) and the
    front's test accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    mflops = lambda points: [p["flops"] / 1e6 for p in points]  # noqa: E731
    ax.scatter(mflops(result["candidates"]), [p["val_accuracy"] for p in result["candidates"]], s=18, color="0.6", label="candidates (val)")
    front = result["front"]
    ax.plot(mflops(front), [p["val_accuracy"] for p in front], "o-", color="C0", label="front (val)")
    ax.plot(mflops(front), [p["test_accuracy"] for p in front], "s--", color="C1", mfc="none", label="front (test)")
    ax.set_xlabel("FLOPs (millions, multiply-add = 2)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"GOLD on {result['config']['supernet']}, {result['config']['data']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class FinishedSearch(Protocol):
    """What `write_front` reads of a finished search (torch's `GoldSearch`, Keras' `KerasGoldSearch`)."""

    space: ArchitectureSpace
    schedule: GoldSchedule
    scores: list[dict[str, float]]

    def front(self) -> list[int]: ...

    def export(self, index: int, folder: Path) -> dict[str, Any]: ...


def write_front(
    search: FinishedSearch, config: GoldConfig, *, search_seconds: float, finetune_seconds: float, console: Any,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export the front as code under `config.out`/front/<i>/, write front.json (with every candidate,
    `extra` merged in) and front.png, print the table; returns the front.json body."""
    out = Path(config.out)
    front_dir = out / "front"
    if front_dir.exists():
        shutil.rmtree(front_dir)
    front = search.front()
    on_front = set(front)
    front_points = []
    for i, index in enumerate(front):
        point = front_point(search.schedule.candidates[index], search.scores[index], search.space)
        front_points.append({"index": i, "candidate": index, **point, **search.export(index, front_dir / str(i))})
    full = search.space.full_cost()
    result = {
        "config": config.model_dump(),
        "searcher": "gold",
        **(extra or {}),
        "groups": search.space.size,
        "full_network": {"flops": full.flops, "params": full.params},
        "stop_reason": search.schedule.stop_reason,
        "rounds": search.schedule.rounds,
        "search_seconds": search_seconds,
        "finetune_seconds": finetune_seconds,
        "front": front_points,
        "candidates": [
            {**front_point(c, s, search.space), "on_front": i in on_front}
            for i, (c, s) in enumerate(zip(search.schedule.candidates, search.scores, strict=True))
        ],
        "history": search.schedule.history,
    }
    (out / "front.json").write_text(json.dumps(result, indent=1))
    plot_front(result, out / "front.png")
    print_front(console, result, out)
    return result


def print_front(console: Any, result: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    full = result["full_network"]
    table = Table(title=f"GOLD front: {len(result['front'])} of {len(result['candidates'])} candidates ({result['stop_reason']})")
    for column in ("#", "FLOPs", "of full", "params", "val acc", "test acc", "round", "removed groups"):
        table.add_column(column, justify="right")
    for p in result["front"]:
        table.add_row(
            str(p["index"]), f"{p['flops']:,}", f"{p['flops'] / full['flops']:.0%}", f"{p['params']:,}",
            f"{p['val_accuracy']:.2f}%", f"{p['test_accuracy']:.2f}%", str(p["round"]), str(len(p["zero_groups"])),
        )
    console.print(table)
    bad = [p["index"] for p in result["front"] if not p["equivalent"]]
    if bad:
        console.print(f"[red]generated code differs from the gated super-network for front points {bad}[/red]")
    console.print(f"Wrote {out}/front.json, front.png and front/<i>/model.py + weights.safetensors")


__all__ = ["GoldConfig", "front_point", "plot_front", "print_front", "split_with_validation", "write_front"]
