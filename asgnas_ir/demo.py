"""`asgnas demo`: the main job, on data and networks the project ships (nothing is downloaded).

Train a bundled super-network on scikit-learn's digits with H2SPG in erasing mode, build the
sub-network from the operators that ended exactly zero, generate its PyTorch source, and compare
it with the super-network and with a plain-SGD baseline: accuracy, params, FLOPs, CPU latency.
"""

from __future__ import annotations

from pathlib import Path

DEMO_CONFIG = {
    "supernet": "super_resnet",
    "mode": "erase",
    "optimizer": "h2spg",
    "epochs": 30,
    "target_group_sparsity": 0.5,
    "warmup_epochs": 5,
    "lmbda": 1.0,
    "epsilon": 0.5,
}


def run_demo(out: Path, *, resume: bool = False, epochs: int | None = None) -> int:
    """Returns the CLI exit code: 0 when the generated sub-network predicts exactly like the trained
    super-network."""
    from rich.console import Console

    from asgnas_ir.backends.torch.trainer import TrainConfig, run_training

    console = Console(highlight=False)
    config = TrainConfig(**{**DEMO_CONFIG, "out": str(out), **({"epochs": epochs} if epochs else {})})
    console.print(
        f"asgnas demo: {config.supernet} on digits, {config.optimizer.upper()} in {config.mode} mode, "
        f"target group sparsity {config.target_group_sparsity:.0%}, {config.epochs} epochs (checkpoints in {out})"
    )
    report = run_training(config, resume=resume, console=console)
    return 0 if report["predictions_identical"] else 1
