"""Do H2SPG's defaults drive the chosen groups to exact zero on their own, where the old ones did not?

One run trains SuperResNet on digits, in erase and in prune mode, with SGD and with Adam as the base
step, each twice from the same initial weights and batches: with the optimizer's OLD defaults (the
ones before issue 13, passed explicitly: `lmbda=1e-3, epsilon=0.0`, DHSPG's fixed λ) and with its
NEW defaults (nothing passed: the automatic per-group λ, ε 0.5, `shrink_period` 100). Everything
else is the user guide's call, `H2SPG(model, space, lr=0.05, target_group_sparsity=0.5,
warmup_steps=100)` (Adam: `base="adam", lr=0.003`). For each run it reports test accuracy before and
after `finalize()`, how many of the chosen groups training itself had made exactly zero before
`finalize()`, and the step from which all of them were. It prints the table and writes the
`h2spg_defaults` section of BENCHMARKS.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/h2spg_defaults.py                 # about 9 minutes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/h2spg_defaults.py --net resnet_basic --modes prune --no-report
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/h2spg_defaults.py --bases adam --no-report \
        --setting 'λ 1, ε 0.5={"lmbda": 1.0, "epsilon": 0.5}' --setting 'λ 10, ε 0.5={"lmbda": 10.0, "epsilon": 0.5}'

`resnet_basic` is the test replica (3 input channels): digits are repeated over three channels and
upscaled to 16x16. `--setting LABEL=JSON` adds a row per mode and base with those options (the
tables of docs/training.md come from these three commands).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.data import load_split  # noqa: E402
from asgnas_ir.backends.torch import H2SPG, GroupsNotZeroWarning  # noqa: E402
from asgnas_ir.backends.torch.trainer import build_supernet, evaluate  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402

# The user guide's call; Adam takes the learning rate it needs (0.05 makes Adam diverge on digits).
GUIDE = {"target_group_sparsity": 0.5, "warmup_steps": 100}
BASES = {"sgd": {"lr": 0.05}, "adam": {"base": "adam", "lr": 0.003}}
SETTINGS = {"old defaults: λ 1e-3, ε 0": {"lmbda": 1e-3, "epsilon": 0.0}, "new defaults": {}}
HEADERS = ("mode", "base", "settings", "acc. before finalize()", "acc. after", "chosen groups zero before finalize()",
           "all zero from step", "finalize() warned")


def model_and_data(net: str) -> tuple[nn.Module, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The seeded network and the digits split (75/25, seed 0), reshaped for `resnet_basic`."""
    split = load_split("digits", 0.25, 0)
    xs = [split.x_train, split.x_test]
    torch.manual_seed(0)
    if net == "resnet_basic":
        from tests.models.resnet import ResNetBasic

        model: nn.Module = ResNetBasic()
        xs = [np.repeat(np.repeat(np.repeat(x, 3, axis=1), 2, axis=2), 2, axis=3) for x in xs]
    else:
        model = build_supernet(net)
    return model, xs[0], split.y_train, xs[1], split.y_test


def zero_chosen(opt: H2SPG) -> int:
    """How many of the chosen groups are exactly zero now."""
    return len(set(opt.redundant_groups) & set(opt.zero_groups()))


def train_once(net: str, mode: str, options: dict[str, Any], epochs: int, batch_size: int) -> dict[str, Any]:
    """Train one network with H2SPG(**options); the figures of one table row."""
    model, x_train, y_train, x_test, y_test = model_and_data(net)
    space = ai.search_space(ai.compile(model.eval(), torch.from_numpy(x_test[:1])), mode=mode)
    opt = H2SPG(model, space, **options)
    x_all, y_all = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    steps = math.ceil(len(x_all) / batch_size)
    loss_fn = nn.CrossEntropyLoss()
    all_zero_from, step, started = None, 0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(epoch))
        for i in range(steps):
            index = order[i * batch_size : (i + 1) * batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x_all[index]), y_all[index]).backward()
            opt.step()
            step += 1
            if opt.selected and opt.redundant_groups:
                # the first step of the last stretch during which every chosen group stayed zero
                done = zero_chosen(opt) == len(opt.redundant_groups)
                all_zero_from = (all_zero_from or step) if done else None
    before, _ = evaluate(model, x_test, y_test)
    zero_before = zero_chosen(opt) if opt.selected else 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GroupsNotZeroWarning)
        opt.finalize()
    after, _ = evaluate(model, x_test, y_test)
    return {
        "steps": step, "groups": len(space.groups), "chosen": len(opt.redundant_groups), "zero_before": zero_before,
        "all_zero_from": all_zero_from, "acc_before": before, "acc_after": after,
        "warned": any(issubclass(w.category, GroupsNotZeroWarning) for w in caught),
        "seconds": time.perf_counter() - started,
    }


def row(mode: str, base: str, label: str, r: dict[str, Any]) -> tuple[str, ...]:
    lr = BASES[base]["lr"]
    return (
        mode, f"{'Adam' if base == 'adam' else 'SGD'} lr {lr}", label, f"{r['acc_before']:.1f} %", f"{r['acc_after']:.1f} %",
        f"{r['zero_before']} of {r['chosen']}", "never" if r["all_zero_from"] is None else str(r["all_zero_from"]),
        "yes" if r["warned"] else "no",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="super_resnet", help="a bundled super-network name, or resnet_basic (the test replica)")
    parser.add_argument("--modes", nargs="+", default=["erase", "prune"], choices=["erase", "prune"])
    parser.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--setting", action="append", default=[], metavar="LABEL=JSON", help="an extra row: H2SPG options as JSON")
    parser.add_argument("--no-report", action="store_true", help="print the table only; BENCHMARKS.md is left as it is")
    args = parser.parse_args()
    settings = dict(SETTINGS)
    for item in args.setting:
        label, _, options = item.partition("=")
        settings[label] = json.loads(options)
    torch.set_num_threads(1)
    console = Console(highlight=False, width=160)  # the eight columns stay readable in a log

    rows, total = [], time.perf_counter()
    steps = 0
    for mode in args.modes:
        for base in args.bases:
            for label, changes in settings.items():
                r = train_once(args.net, mode, {**GUIDE, **BASES[base], **changes}, args.epochs, args.batch_size)
                steps = r["steps"]
                rows.append(row(mode, base, label, r))
                console.print(" | ".join(rows[-1]) + f"   ({r['groups']} groups, {r['seconds']:.0f} s)")
    total = time.perf_counter() - total

    table = Table(title=f"H2SPG old vs new defaults: {args.net} on digits, {args.epochs} epochs ({steps} steps), warm-up 100 steps")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("mode", "base", "settings") else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(f"total {total:.0f} s")

    command = " ".join(["python benchmarks/h2spg_defaults.py", *sys.argv[1:]])
    lines = [
        "## H2SPG: do the chosen groups reach zero before `finalize()`? Old vs new defaults",
        "",
        f"Command: `{command}`. Machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} thread). "
        f"Total {total:.0f} s.",
        "",
        f"Protocol. `{args.net}` on digits (75/25 stratified split, seed 0), {' and '.join(args.modes)} mode, "
        f"{args.epochs} epochs of batch {args.batch_size} ({steps} steps), the same initial weights and batch order in every "
        "run. The user guide's call `H2SPG(model, space, lr=0.05, target_group_sparsity=0.5, warmup_steps=100)`; Adam: "
        "`base=\"adam\", lr=0.003`. Old: the defaults before issue 13, passed explicitly (`lmbda=1e-3, epsilon=0.0`, "
        "DHSPG's fixed λ). New: nothing passed (automatic per-group λ, ε 0.5, `shrink_period` 100 steps after "
        "selection at step 100). \"Chosen groups zero\" counts the groups training itself made exactly zero; "
        "`finalize()` forces the rest, with a `GroupsNotZeroWarning`. Accuracy on the 450 test images (one = 0.22 points).",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|---|---|" + "---:|" * (len(HEADERS) - 3),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    if not args.no_report:
        write_section("h2spg_defaults", "\n".join(lines))
        console.print("wrote the h2spg_defaults section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
