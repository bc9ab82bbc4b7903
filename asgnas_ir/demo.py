"""`asgnas demo`: the main job on bundled networks, with nothing downloaded.

For each bundled network: compile it, find its channel groups, remove a random valid half of
them, generate the pruned model's source, run it, and compare with the original whose removed
groups were zeroed in place. Prints one table and leaves the generated files in `out`.
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODELS = {
    "resnet20": ("asgnas_ir.examples.cifar_nets", "resnet20"),
    "mobile_net": ("asgnas_ir.examples.cifar_nets", "mobile_net"),
}


def run_demo(out: Path, fraction: float = 0.5, seed: int = 0) -> int:
    """Returns the CLI exit code: 0 when every sub-network matches its super-network."""
    import importlib

    import torch
    from rich.console import Console
    from rich.table import Table

    import asgnas_ir as ai

    console = Console(highlight=False)
    table = Table(title=f"asgnas demo: remove {fraction:.0%} of the channel groups, generate code, compare outputs")
    for column in ("model", "groups removed", "params", "FLOPs", "max |diff|", "ok"):
        table.add_column(column)
    all_ok = True
    for name, (module, factory) in DEMO_MODELS.items():
        torch.manual_seed(seed)
        model = getattr(importlib.import_module(module), factory)()
        inputs = (torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)),)
        with console.status(f"{name}: compile → search space → subnet → codegen → compare"):
            report = ai.check(model, inputs, fraction=fraction, seed=seed, out_dir=out / name)
        all_ok &= report.ok
        table.add_row(
            name,
            f"{report.zeroed}/{report.groups}",
            f"{report.params_full:,} → {report.params_sub:,}",
            f"{report.flops_full / 1e6:.1f}M → {report.flops_sub / 1e6:.1f}M",
            f"{report.max_abs_diff:.1e}",
            "yes" if report.ok else "NO",
        )
    console.print(table)
    console.print(f"Generated sources and weights are in {out}/<model>/; read {out / 'resnet20' / 'model.py'}")
    return 0 if all_ok else 1
