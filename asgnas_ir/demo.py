"""`asgnas demo`: the main job, on data and networks the project ships (nothing is downloaded).

Train a bundled super-network on scikit-learn's digits with H2SPG in erasing mode, build the
sub-network from the operators that ended exactly zero, generate its source, and compare it with
the super-network and with a plain-SGD baseline: accuracy, params, FLOPs, CPU latency.
`framework="torch"` (the default) trains the PyTorch SuperResNet and generates PyTorch source;
`framework="keras"` trains its Keras 3 twin with the Keras H2SPG (`model.compile` + `fit`) and
generates Keras source.
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
}

# The Keras job: the same settings in half the epochs and without the plain-SGD baseline run, so that
# it stays near a minute on a 2-core CPU (Keras' fit takes ~2 s an epoch of SuperResNet there, plus
# ~10 s to trace, where torch takes well under a second).
KERAS_DEMO_CONFIG = {**DEMO_CONFIG, "epochs": 15, "warmup_epochs": 3, "baseline": False}

FRAMEWORKS = ("torch", "keras")


def run_demo(out: Path, *, resume: bool = False, epochs: int | None = None, framework: str = "torch") -> int:
    """Returns the CLI exit code: 0 when the generated sub-network predicts exactly like the trained
    super-network."""
    from rich.console import Console

    from asgnas_ir.backends.training import TrainConfig
    from asgnas_ir.errors import AsgnasError

    if framework not in FRAMEWORKS:
        raise AsgnasError(f"unknown framework '{framework}'; choose one of {', '.join(FRAMEWORKS)}")
    if framework == "keras" and resume:
        raise AsgnasError("`asgnas demo --framework keras` keeps no checkpoints; rerun it without --resume")
    console = Console(highlight=False)
    defaults = KERAS_DEMO_CONFIG if framework == "keras" else DEMO_CONFIG
    config = TrainConfig(**{**defaults, "out": str(out)})
    if epochs:
        # a short run keeps room after warm-up for the chosen groups to shrink to zero (TrainConfig refuses less)
        warmup = min(config.warmup_epochs, max(0, epochs - 2))
        config = TrainConfig(**{**config.model_dump(), "epochs": epochs, "warmup_epochs": warmup})
    where = "" if framework == "keras" else f" (checkpoints in {out})"
    console.print(
        f"asgnas demo: {config.supernet} ({framework}) on digits, {config.optimizer.upper()} in {config.mode} mode, "
        f"target group sparsity {config.target_group_sparsity:.0%}, {config.epochs} epochs{where}"
    )
    if framework == "keras":
        import os

        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from asgnas_ir.backends.tensorflow.trainer import run_keras_training

        report = run_keras_training(config, console=console)
    else:
        from asgnas_ir.backends.torch.trainer import run_training

        report = run_training(config, resume=resume, console=console)
    return 0 if report["equivalent"] else 1
