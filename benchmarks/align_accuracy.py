"""Does aligning the widths cost accuracy? H2SPG on digits with `align` 1 and 8, paired over seeds (issue 18).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/align_accuracy.py [--seeds 5] [--aligns 1 8] [--epochs 20]

Each seed trains SuperResNet (prune mode: 60 channel groups in three layers of 12, 20 and 28 channels)
on the digits split once per `align`, from the same initial weights and the same batches, with the user
guide's call `H2SPG(model, space, lr=0.05, target_group_sparsity=0.5, warmup_steps=100, align=A)`.
It reports test accuracy after `finalize()` (the sub-network's accuracy: the chosen groups are zero),
the groups removed, the kept widths and the FLOPs ratio of the sub-network, and the mean paired
difference (align 8 minus align 1) with a 95 % t interval over the seeds. One test image is 0.22
points, so single seeds decide little. Prints the table and writes the `align_accuracy` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy import stats  # noqa: E402
from torch import nn  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.data import load_split  # noqa: E402
from asgnas_ir.backends.torch import H2SPG, GroupsNotZeroWarning  # noqa: E402
from asgnas_ir.backends.torch.trainer import build_supernet, evaluate  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402

GUIDE = {"lr": 0.05, "target_group_sparsity": 0.5, "warmup_steps": 100}


def train(seed: int, align: int, epochs: int, batch_size: int) -> dict[str, Any]:
    split = load_split("digits", 0.25, 0)
    torch.manual_seed(seed)
    model = build_supernet("super_resnet")
    graph = ai.compile(model.eval(), torch.from_numpy(split.x_test[:1]))
    space = ai.search_space(graph, mode="prune")
    opt = H2SPG(model, space, align=align, **GUIDE)
    x_all, y_all = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train).long()
    steps = math.ceil(len(x_all) / batch_size)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(steps):
            index = order[i * batch_size : (i + 1) * batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x_all[index]), y_all[index]).backward()
            opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GroupsNotZeroWarning)
        opt.finalize()
    accuracy, _ = evaluate(model, split.x_test, split.y_test)
    zero = opt.zero_groups()
    graph.update_weights(model)
    sub = ai.subnet(graph, space, zero, align=align)
    kept = [len(f.groups) - sum(g in set(zero) for g in f.groups) for f in space.families()]
    return {"accuracy": accuracy, "removed": len(zero), "groups": len(space.groups), "kept": kept,
            "flops_ratio": ai.cost(sub).flops / ai.cost(graph).flops, "seconds": time.perf_counter() - started}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t interval."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--aligns", type=int, nargs=2, default=[1, 8])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    results: dict[int, list[dict[str, Any]]] = {a: [] for a in args.aligns}
    for seed in range(args.seeds):
        for align in args.aligns:
            r = train(seed, align, args.epochs, args.batch_size)
            results[align].append(r)
            console.log(f"seed {seed} align {align}: {r['accuracy']:.2f} %, removed {r['removed']}/{r['groups']}, "
                        f"kept {r['kept']}, FLOPs x{r['flops_ratio']:.3f}, {r['seconds']:.0f} s")
    base, other = args.aligns
    headers = ["align", "test acc. (mean ± 95 %)", "groups removed", "kept widths (per seed)", "FLOPs ratio (mean)"]
    table = Table(title="H2SPG on digits, SuperResNet prune mode, aligned vs unaligned widths")
    for h in headers:
        table.add_column(h)
    rows = []
    for align in args.aligns:
        acc, half = interval([r["accuracy"] for r in results[align]])
        kept = sorted({tuple(r["kept"]) for r in results[align]})
        rows.append([str(align), f"{acc:.2f} ± {half:.2f} %", ", ".join(sorted({str(r['removed']) for r in results[align]})),
                     "; ".join(str(list(k)) for k in kept),
                     f"{statistics.fmean(r['flops_ratio'] for r in results[align]):.3f}"])
        table.add_row(*rows[-1])
    diff, half = interval([o["accuracy"] - b["accuracy"] for b, o in zip(results[base], results[other], strict=True)])
    verdict = (f"align {other} minus align {base}: {diff:+.2f} ± {half:.2f} points (paired over {args.seeds} seeds); "
               f"the goal (within 0.3 points) is {'met' if abs(diff) + half <= 0.3 else 'met in the mean' if abs(diff) <= 0.3 else 'not met'}")
    console.print(table)
    console.print(verdict)
    elapsed = time.perf_counter() - started
    command = shlex.join(["python", "benchmarks/align_accuracy.py", *sys.argv[1:]])
    lines = [
        "## H2SPG with aligned widths on digits (issue 18)",
        "",
        f"Command: `{command}`. Machine: {machine()}; torch {torch.__version__}. Whole run {elapsed:.0f} s. "
        f"SuperResNet in prune mode (layers of 12, 20 and 28 channels), `H2SPG(lr=0.05, target_group_sparsity=0.5, "
        f"warmup_steps=100, align=A)`, {args.epochs} epochs of batch {args.batch_size}, the same initial weights and "
        "batches for both aligns of a seed. Accuracy after `finalize()` on the 450 test digits (one image is 0.22 "
        "points); kept widths are per layer; at align 8 each is a multiple of 8 or the full width.",
        "",
        "| " + " | ".join(headers) + " |",
        "|---|---|---|---|---:|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        verdict + ".",
    ]
    write_section("align_accuracy", "\n".join(lines))


if __name__ == "__main__":
    main()
