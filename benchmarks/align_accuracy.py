"""Does aligning the widths cost accuracy? H2SPG on digits with `align` 1 and 8, paired over seeds (issue 18).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/align_accuracy.py [--seeds 20] [--workers 2] [--recipe stable|guide]

Each seed trains SuperResNet (prune mode: 60 channel groups in three layers of 12, 20 and 28 channels)
on the digits split once per `align`, from the same initial weights and the same batches, with
`H2SPG(model, space, lr, momentum, target_group_sparsity=0.5, warmup_steps=100, align=A)`.

Recipes (the same for both aligns; every knob can be overridden by its flag):

* `stable` (default): the user guide's optimizer settings (lr 0.05, SGD momentum 0.9, target 0.5,
  warm-up 100 steps, the automatic λ with `shrink_period` 100) with a cosine LR schedule from 0.05 to 0
  over the run (`torch.optim.lr_scheduler.CosineAnnealingLR`, stepped per batch; H2SPG reads its lr
  from `param_groups` every step) and the ragged last batch of each epoch dropped, for 20 epochs of batch 64.
* `guide`: the recipe of the first version of this benchmark: constant lr 0.05 and every batch kept.
  Its final accuracy is a lottery: the 1,347 training digits leave a last batch of 3 each epoch, whose
  BatchNorm statistics (batch 3 at 2x2 in the last stage) and gradient at lr 0.05 throw the network
  off just before it is evaluated, and without an annealed lr the test accuracy swings by tens of
  points from epoch to epoch; two unaligned seeds of twelve ended at 57 % and 74 %.

What was tried on seeds 0-11 (20 epochs, same recipe for both aligns; min accuracy over the 24 runs):
`guide` 57.3 %; lr 0.01 constant, every batch kept: 61.8 % (an aligned seed); cosine, every batch kept:
82.2 % (an unaligned seed); constant lr 0.05, ragged batch dropped: 91.6 %; cosine and dropped
(`stable`): 97.3 %, every run between 97.3 and 99.1 %.

It reports test accuracy after `finalize()` (the sub-network's accuracy: the chosen groups are zero),
the groups removed, the kept widths and the FLOPs ratio of the sub-network, and the mean paired
difference (align 8 minus align 1) with a 95 % t interval over the seeds, checked as an equivalence
statement against the goal (the whole interval inside ±0.3 points) and, separately, as non-inferiority
(the lower end above -0.3: aligning loses at most 0.3 points). One test image is 0.22 points. At align 8
the count of removed groups moves to aligned widths (24 to 32 here, exactly 30 at align 1), so the arms
differ in FLOPs too: the comparison is at the same `target_group_sparsity`, not at the same FLOPs.
`--save FILE` keeps every run's numbers as JSON.
Seeds run in a pool of `--workers` processes of one thread each; a seed's result does not depend on
the pool. Prints the table and writes the `align_accuracy` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
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

GOAL = 0.3  # points: |align 8 - align 1| within this (issue 18)
RECIPES: dict[str, dict[str, Any]] = {
    "stable": {"lr": 0.05, "momentum": 0.9, "schedule": "cosine", "drop_last": True, "epochs": 20},
    "guide": {"lr": 0.05, "momentum": 0.9, "schedule": "constant", "drop_last": False, "epochs": 20},
}
FIXED = {"target_group_sparsity": 0.5, "warmup_steps": 100}


def train(seed: int, align: int, recipe: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(1)
    split = load_split("digits", 0.25, 0)
    torch.manual_seed(seed)
    model = build_supernet("super_resnet")
    graph = ai.compile(model.eval(), torch.from_numpy(split.x_test[:1]))
    space = ai.search_space(graph, mode="prune")
    opt = H2SPG(model, space, lr=recipe["lr"], momentum=recipe["momentum"], shrink_period=recipe["shrink_period"],
                align=align, **FIXED)
    x_all, y_all = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train).long()
    batch_size = recipe["batch_size"]
    steps = len(x_all) // batch_size if recipe["drop_last"] else math.ceil(len(x_all) / batch_size)
    epochs = recipe["epochs"]
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps) if recipe["schedule"] == "cosine" else None
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
            if schedule is not None:
                schedule.step()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GroupsNotZeroWarning)
        opt.finalize()
    accuracy, _ = evaluate(model, split.x_test, split.y_test)
    zero = opt.zero_groups()
    graph.update_weights(model)
    sub = ai.subnet(graph, space, zero, align=align)
    kept = [len(f.groups) - sum(g in set(zero) for g in f.groups) for f in space.families()]
    return {"seed": seed, "align": align, "accuracy": accuracy, "removed": len(zero), "groups": len(space.groups),
            "kept": kept, "flops_ratio": ai.cost(sub).flops / ai.cost(graph).flops, "not_zero": len(caught),
            "seconds": time.perf_counter() - started}


def _train(job: tuple[int, int, dict[str, Any]]) -> dict[str, Any]:
    return train(*job)


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t interval."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def verdict_of(diff: float, half: float, goal: float = GOAL) -> str:
    """The equivalence reading of a paired interval against ±goal."""
    low, high = diff - half, diff + half
    if math.isnan(half):
        return "one seed gives no interval: nothing is shown"
    if -goal <= low and high <= goal:
        return f"the whole interval [{low:+.2f}, {high:+.2f}] lies within ±{goal}: the goal is met (equivalence shown at 95 %)"
    side = (f"; non-inferiority (aligning loses at most {goal} points: the lower end above -{goal}) is shown"
            if low > -goal else f"; non-inferiority (the lower end above -{goal}) is not shown either")
    short = max(high - goal, -goal - low)
    where = "above +" if high - goal >= -goal - low else "below -"
    mean = f"the mean is within ±{goal}" if abs(diff) <= goal else f"even the mean is outside ±{goal}"
    return (f"the interval [{low:+.2f}, {high:+.2f}] reaches {short:.2f} points {where}{goal}: equivalence within "
            f"±{goal} is not shown ({mean}; the interval would have to be {short:.2f} points narrower on that side){side}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--aligns", type=int, nargs=2, default=[1, 8])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="stable")
    parser.add_argument("--epochs", type=int, help="default: the recipe's (20)")
    parser.add_argument("--lr", type=float, help="default: the recipe's (0.05)")
    parser.add_argument("--momentum", type=float, help="default: the recipe's (0.9)")
    parser.add_argument("--schedule", choices=["constant", "cosine"], help="default: the recipe's")
    parser.add_argument("--drop-last", action=argparse.BooleanOptionalAction, default=None, help="default: the recipe's")
    parser.add_argument("--shrink-period", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    parser.add_argument("--save", type=Path, help="write every run's numbers to this JSON file")
    args = parser.parse_args()
    recipe = dict(RECIPES[args.recipe])
    for key in ("epochs", "lr", "momentum", "schedule", "drop_last"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    recipe.update(shrink_period=args.shrink_period, batch_size=args.batch_size)
    console = Console()
    started = time.perf_counter()
    results: dict[int, dict[int, dict[str, Any]]] = {a: {} for a in args.aligns}
    jobs = [(seed, align, recipe) for seed in range(args.seeds) for align in args.aligns]
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers before they import torch
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        for r in pool.map(_train, jobs):
            results[r["align"]][r["seed"]] = r
            console.log(f"seed {r['seed']} align {r['align']}: {r['accuracy']:.2f} %, removed {r['removed']}/{r['groups']}, "
                        f"kept {r['kept']}, FLOPs x{r['flops_ratio']:.3f}, {r['seconds']:.0f} s")
    if args.save is not None:
        args.save.write_text(json.dumps({"recipe": recipe, "runs": [r for a in args.aligns for r in results[a].values()]}, indent=1))
    base, other = args.aligns
    seeds = list(range(args.seeds))
    headers = ["align", "test acc. (mean ± 95 %)", "min / max acc.", "groups removed (mean; values)",
               "kept widths (per seed)", "FLOPs ratio (mean)"]
    table = Table(title="H2SPG on digits, SuperResNet prune mode, aligned vs unaligned widths")
    for h in headers:
        table.add_column(h)
    rows = []
    for align in args.aligns:
        runs = [results[align][s] for s in seeds]
        acc, half = interval([r["accuracy"] for r in runs])
        kept = sorted({tuple(r["kept"]) for r in runs})
        rows.append([
            str(align), f"{acc:.2f} ± {half:.2f} %",
            f"{min(r['accuracy'] for r in runs):.2f} / {max(r['accuracy'] for r in runs):.2f} %",
            f"{statistics.fmean(r['removed'] for r in runs):.1f}; "
            + ", ".join(str(v) for v in sorted({r["removed"] for r in runs})) + f" of {runs[0]['groups']}",
            "; ".join(str(list(k)) for k in kept),
            f"{statistics.fmean(r['flops_ratio'] for r in runs):.3f}",
        ])
        table.add_row(*rows[-1])
    diffs = [results[other][s]["accuracy"] - results[base][s]["accuracy"] for s in seeds]
    diff, half = interval(diffs)
    summary = (f"align {other} minus align {base}: {diff:+.2f} ± {half:.2f} points (mean paired difference, 95 % t "
               f"interval over {args.seeds} seeds, sd {statistics.stdev(diffs) if len(diffs) > 1 else math.nan:.2f}); "
               + verdict_of(diff, half))
    if len(diffs) > 1 and abs(diff) + half > GOAL:
        tost = float(stats.t.ppf(0.95, len(diffs) - 1)) * statistics.stdev(diffs) / math.sqrt(len(diffs))
        inside = "inside" if abs(diff) + tost <= GOAL else "not inside"
        summary += (f" (for comparison, the 90 % interval of a two one-sided tests equivalence test at α = 0.05 is "
                    f"[{diff - tost:+.2f}, {diff + tost:+.2f}], {inside} ±{GOAL})")
    not_zero = sum(r["not_zero"] for a in args.aligns for r in results[a].values())
    console.print(table)
    console.print(summary)
    elapsed = time.perf_counter() - started
    shown = [a for i, a in enumerate(sys.argv[1:]) if not a.startswith("--save") and (i == 0 or sys.argv[i] != "--save")]
    command = shlex.join(["python", "benchmarks/align_accuracy.py", *shown])
    schedule = "a cosine lr schedule to 0 over the run (stepped per batch)" if recipe["schedule"] == "cosine" else "a constant lr"
    batches = "the ragged last batch of each epoch (3 of the 1,347 digits) dropped" if recipe["drop_last"] else "every batch kept (each epoch ends with a batch of 3)"
    lines = [
        "## H2SPG with aligned widths on digits (issue 18)",
        "",
        f"Command: `OMP_NUM_THREADS=1 {command}` (recipe `{args.recipe}`). Machine: {machine()}; torch {torch.__version__}; "
        f"{args.workers} worker process(es) of one thread. Whole run {elapsed:.0f} s. SuperResNet in prune mode (layers of "
        f"12, 20 and 28 channels), `H2SPG(lr={recipe['lr']}, momentum={recipe['momentum']}, target_group_sparsity=0.5, "
        f"warmup_steps=100, shrink_period={recipe['shrink_period']}, align=A)` with {schedule}, {recipe['epochs']} epoch{'s' if recipe['epochs'] != 1 else ''} "
        f"of batch {recipe['batch_size']} with {batches}; the same recipe, initial weights and batches for both aligns of "
        "a seed. Accuracy after `finalize()` on the 450 test digits (one image is 0.22 points); kept widths are per "
        f"layer; at align {other} each is a multiple of {other} or the full width, so the number of groups removed "
        f"varies around the target of 30 (it is exactly 30 at align 1), and the FLOPs column says what each arm kept. "
        f"`finalize()` warned about groups left far from zero in {not_zero} of {len(jobs)} runs.",
        "",
        "| " + " | ".join(headers) + " |",
        "|---|---|---|---|---|---:|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "Per-seed difference (align " + f"{other} - {base}, points): " + ", ".join(f"{d:+.2f}" for d in diffs) + ".",
        "",
        f"The arms are compared at the same `target_group_sparsity`: align {other} removed "
        f"{statistics.fmean(results[other][s]['removed'] for s in seeds):.1f} groups on average against "
        f"{statistics.fmean(results[base][s]['removed'] for s in seeds):.1f} and kept a FLOPs ratio of "
        f"{statistics.fmean(results[other][s]['flops_ratio'] for s in seeds):.3f} against "
        f"{statistics.fmean(results[base][s]['flops_ratio'] for s in seeds):.3f}, so this says what aligning does to "
        "H2SPG's accuracy at the same target, not at the same FLOPs.",
        "",
        summary + ".",
    ]
    if args.recipe == "stable":
        lines += [
            "",
            "The first version of this benchmark used the `guide` recipe (constant lr 0.05, every batch kept): with 12 seeds "
            "align 1 scored 90.02 ± 7.87 % and align 8 93.70 ± 2.71 %, difference +3.69 ± 7.88 points, because two "
            "unaligned seeds ended at 57 % and 74 % (`--recipe guide` reruns it). The last batch of each epoch held 3 "
            "digits: its BatchNorm statistics and its gradient at lr 0.05 threw the network off right before "
            "evaluation, and with a constant lr the test accuracy swung by tens of points between epochs. On seeds "
            "0-11 the lowest of the 24 final accuracies was 57.3 % with `guide`, 61.8 % with lr 0.01 (constant, every "
            "batch), 82.2 % with the cosine schedule alone, 91.6 % with the ragged batch dropped alone, and 97.3 % "
            "with both (`stable`).",
        ]
    write_section("align_accuracy", "\n".join(lines))


if __name__ == "__main__":
    main()
