"""Optimizer overhead: H2SPG / HESSO step time vs plain torch.optim.SGD (and OTO 3.0.1's HESSO), side by side.

    python benchmarks/optimizer_overhead.py [--steps 50] [--batch 64] [--resnet18-steps 30] [--oto-periods 3]
                                            [--threads 1] [--local-resnet] [--no-report]

Two tables, each from one process with the optimizers run interleaved:

1. the resnet_basic replica (tests/models), 3x32x32 inputs: SGD, H2SPG erase, H2SPG prune, HESSO prune;
   phases: warm-up (scores being averaged) and after the redundant groups were selected.
2. ResNet-18 (torchvision's `resnet18(weights=None, num_classes=10)` when torchvision imports, else the
   same layout defined here), 3x32x32 inputs: SGD, H2SPG prune, HESSO prune and OTO 3.0.1's HESSO
   (`oto.hesso(variant="sgd")`; left out with a note when only-train-once is not installed). Three phases
   of `--resnet18-steps` steps each: warm-up (before our selection / before OTO's start_pruning_step),
   the pruning window (our HESSO shrinks, OTO picks and shrinks its groups in `--oto-periods` periods),
   and after the window (every chosen group held at zero).

Every optimizer gets its own deep copy of the model and the same batch. Each round runs
zero_grad + forward + backward + step for every optimizer and times `step()` alone (step ratio) and
the whole iteration (iteration ratio); the order rotates every round so machine noise and cache
effects hit all of them alike. Ratios compare against SGD's median over the same rounds. Writes the
`optimizer_overhead` section of BENCHMARKS.md unless `--no-report` is given.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch import H2SPG, HESSO  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402
from benchmarks.peers import available, oto_module, quiet  # noqa: E402
from benchmarks.quality_digits import cuda_calls_stay_on_cpu  # noqa: E402
from tests.models import REPLICAS  # noqa: E402
from tests.models.resnet import BasicBlock  # noqa: E402

LR, MOMENTUM = 0.01, 0.9
HEADERS = ("optimizer", "phase", "step ms", "step / SGD step", "iteration / SGD iteration", "slowest step ms")


class LocalResNet18(nn.Module):
    """The layout of torchvision's resnet18 (7x7/2 stem, max pool, 4 stages of 2 basic blocks, 64..512
    channels), so the table means the same thing on a machine without torchvision; torch's default init."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(local: bool) -> tuple[nn.Module, str]:
    """(ResNet-18 for 10 classes in train mode, where it came from)."""
    if not local:
        try:
            import torchvision
        except ImportError:
            pass
        else:
            return torchvision.models.resnet18(weights=None, num_classes=10).train(), f"torchvision {torchvision.__version__} `resnet18(weights=None, num_classes=10)`"
    return LocalResNet18().train(), "`LocalResNet18` in this script (torchvision's layout)"


@dataclass
class Contender:
    """One optimizer on its own copy of the model; `step` is what the training loop would call."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[], object]


def run_rounds(contenders: dict[str, Contender], x: torch.Tensor, y: torch.Tensor, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Per contender, per round: (step seconds, iteration seconds)."""
    loss_fn = nn.CrossEntropyLoss()
    # One untimed forward/backward per model first: the first pass pays allocator and kernel start-up costs
    # that would otherwise land in whichever contender happens to go first.
    for contender in contenders.values():
        loss_fn(contender.model(x), y).backward()
        contender.optimizer.zero_grad(set_to_none=True)
    names = list(contenders)
    records: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(rounds):
        # Rotate who goes first: the one right after another's backward sees warmer or colder caches.
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            contender = contenders[name]
            start = time.perf_counter()
            contender.optimizer.zero_grad(set_to_none=True)
            loss_fn(contender.model(x), y).backward()
            before_step = time.perf_counter()
            contender.step()
            end = time.perf_counter()
            records[name].append((end - before_step, end - start))
    return records


def summarise(
    records: dict[str, list[tuple[float, float]]], phases: list[tuple[str, range]], labels: dict[str, dict[str, str]] | None = None,
) -> list[tuple[str, ...]]:
    """Table rows per phase: every optimizer (SGD last) against SGD's medians over the same rounds.

    `labels[name][phase]` overrides the phase text of one optimizer's row (OTO's phases have their own meaning)."""
    rows = []
    for phase, rounds in phases:
        sgd_step = statistics.median(records["SGD"][r][0] for r in rounds)
        sgd_iter = statistics.median(records["SGD"][r][1] for r in rounds)
        for name in [n for n in records if n != "SGD"] + ["SGD"]:
            steps = [records[name][r][0] for r in rounds]
            step = statistics.median(steps)
            it = statistics.median(records[name][r][1] for r in rounds)
            text = (labels or {}).get(name, {}).get(phase, phase)
            rows.append((name, text, f"{step * 1e3:.3f}", f"{step / sgd_step:.2f}×", f"{it / sgd_iter:.2f}×", f"{max(steps) * 1e3:.1f}"))
    return rows


def replica_table(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """SGD vs H2SPG (erase, prune) vs HESSO (prune) on the resnet_basic replica: warm-up, then after selection."""
    torch.manual_seed(0)
    base = REPLICAS["resnet_basic"].build().train()
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    graph = ai.compile(copy.deepcopy(base).eval(), x[:1])
    spaces = {mode: ai.search_space(graph, mode=mode) for mode in ("erase", "prune")}
    warmup = args.steps + 5
    contenders = {}
    for name, optimizer_cls, mode in (("SGD", None, ""), ("H2SPG erase", H2SPG, "erase"), ("H2SPG prune", H2SPG, "prune"), ("HESSO prune", HESSO, "prune")):
        model = copy.deepcopy(base)
        if optimizer_cls is None:
            optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        else:
            # HESSO keeps shrinking through the whole timed phase (its period outlasts the run)
            extra = {"shrink_period": 10 * args.steps} if optimizer_cls is HESSO else {}
            optimizer = optimizer_cls(model, spaces[mode], lr=LR, momentum=MOMENTUM, warmup_steps=warmup, lmbda=1.0, **extra)
        contenders[name] = Contender(model, optimizer, optimizer.step)
    records = run_rounds(contenders, x, y, warmup + args.steps)
    return summarise(records, [("warm-up", range(warmup)), ("after selection", range(warmup, warmup + args.steps))])


def resnet18_table(args: argparse.Namespace, console: Console) -> tuple[list[tuple[str, ...]], str, list[str]]:
    """SGD vs H2SPG prune vs HESSO prune vs OTO HESSO on ResNet-18: (rows, model description, notes)."""
    torch.manual_seed(0)
    base, origin = resnet18(args.local_resnet)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    space = ai.search_space(ai.compile(copy.deepcopy(base).eval(), x[:1]), mode="prune")
    n = args.resnet18_steps
    notes = [f"{len(space.groups)} prune-mode channel groups in our search space"]
    contenders: dict[str, Contender] = {}
    model = copy.deepcopy(base)
    sgd = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    contenders["SGD"] = Contender(model, sgd, sgd.step)
    for name, optimizer_cls in (("H2SPG prune", H2SPG), ("HESSO prune", HESSO)):
        model = copy.deepcopy(base)
        # Our HESSO shrinks over the same window as OTO's, so both hold their groups at zero in the last phase.
        extra = {"shrink_period": n} if optimizer_cls is HESSO else {}
        optimizer = optimizer_cls(model, space, lr=LR, momentum=MOMENTUM, warmup_steps=n, lmbda=1.0, **extra)
        contenders[name] = Contender(model, optimizer, optimizer.step)
    oto_lib = oto_module()
    if oto_lib is None:
        note = "only-train-once is not installed (run `make bench`); OTO HESSO rows left out"
        console.print(f"[yellow]note: {note}[/yellow]")
        notes.append(note)
    else:
        model = copy.deepcopy(base)
        with quiet():  # OTO prints its graph build and optimizer setup
            oto = oto_lib.OTO(model, x[:1])
            # OTO counts steps from 1 and starts choosing groups on the step after `start_pruning_step`, so
            # start_pruning_step = n leaves exactly the first n steps as plain SGD, like our warm-up.
            oto_optimizer = oto.hesso(
                variant="sgd", lr=LR, first_momentum=MOMENTUM, weight_decay=0.0, target_group_sparsity=0.5,
                start_pruning_step=n, pruning_steps=n, pruning_periods=args.oto_periods,
            )
        model.train()  # OTO's trace leaves the model in eval mode; BN must run as in the other copies

        def oto_step() -> None:
            with cuda_calls_stay_on_cpu():  # OTO's hard-coded `.cuda()` on its group mask
                oto_optimizer.step()

        contenders["OTO HESSO"] = Contender(model, oto_optimizer, oto_step)
    records = run_rounds(contenders, x, y, 3 * n)
    phases = [("warm-up", range(n)), ("pruning window", range(n, 2 * n)), ("after pruning", range(2 * n, 3 * n))]
    labels = {
        "H2SPG prune": {"pruning window": "after selection (window)", "after pruning": "after selection (later)"},
        "OTO HESSO": {"warm-up": "before start_pruning_step", "pruning window": "pruning window", "after pruning": "after pruning window"},
    }
    rows = summarise(records, phases, labels)
    return rows, origin, notes


def print_table(console: Console, title: str, rows: list[tuple[str, ...]]) -> None:
    table = Table(title=title)
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("optimizer", "phase") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def markdown(rows: list[tuple[str, ...]]) -> list[str]:
    return ["| " + " | ".join(HEADERS) + " |", "|---|---|" + "---:|" * (len(HEADERS) - 2), *("| " + " | ".join(row) + " |" for row in rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="replica: timed steps after selection (warm-up is steps + 5)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resnet18-steps", type=int, default=30, help="ResNet-18: steps per phase (warm-up, window, after)")
    parser.add_argument("--oto-periods", type=int, default=3, help="OTO HESSO: pruning periods within the window")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the machine is shared)")
    parser.add_argument("--local-resnet", action="store_true", help="use the script's ResNet-18 even when torchvision imports")
    parser.add_argument("--no-report", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.resnet18_steps < 2 * args.oto_periods:
        parser.error("--resnet18-steps must be at least 2 × --oto-periods (OTO needs ≥ 2 steps per period)")

    # One thread by default: on a shared machine a second spinning thread turns other jobs' load into noise.
    torch.set_num_threads(args.threads)
    console = Console(highlight=False)
    started = time.perf_counter()
    replica_rows = replica_table(args)
    title = f"optimizer step vs SGD, resnet_basic replica, 3x32x32, batch {args.batch}"
    print_table(console, title, replica_rows)
    r18_rows, origin, notes = resnet18_table(args, console)
    n = args.resnet18_steps
    print_table(console, f"optimizer step vs SGD, ResNet-18, 3x32x32, batch {args.batch}, {n} steps per phase", r18_rows)
    total = time.perf_counter() - started
    console.print(f"total {total:.0f} s")
    if args.no_report:
        return

    command = " ".join(["python benchmarks/optimizer_overhead.py", *sys.argv[1:]])
    peers = ", ".join(f"{name} {version or 'not installed'}" for name, version in available().items())
    lines = [
        "## Optimizer overhead: H2SPG / HESSO vs plain SGD (and OTO HESSO)",
        "",
        f"Command: `{command}`. Machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); {peers}. "
        f"Total {total:.0f} s. Optimizers run interleaved in one process (order rotating every round), each on its own "
        "copy of the model, same batch; only `step()` is timed for the step columns, zero_grad+forward+backward+step "
        "for the iteration ratio; ratios are against SGD's median over the same rounds. Baseline: `torch.optim.SGD` "
        f"(lr {LR}, momentum {MOMENTUM}, torch's default implementation). Ours: λ 1.0, ε 0. Slowest step shows the "
        "one-off work a median hides (our selection on the last warm-up step, OTO's scoring at each period start). "
        "Target (issue 3): step ≤ 1.15× SGD.",
        "",
        f"resnet_basic replica, 3x32x32 inputs, batch {args.batch}: warm-up {args.steps + 5} steps (every one scored), "
        f"then {args.steps} steps after selection; HESSO still shrinking throughout.",
        "",
        *markdown(replica_rows),
        "",
        f"ResNet-18: {origin}, 3x32x32 inputs (CPU: 224x224 at batch 64 is too slow to time here), batch {args.batch}; "
        f"{'; '.join(notes)}. Three phases of {n} steps: warm-up (ours average scores on every step and select at the end "
        f"of it; OTO HESSO `start_pruning_step={n}` is plain SGD), pruning window (our HESSO `shrink_period={n}` shrinks "
        f"the selected groups; OTO `pruning_steps={n}, pruning_periods={args.oto_periods}` scores, picks and shrinks; "
        "H2SPG runs its half-space step), after the window (all chosen groups held at zero). Target group sparsity 0.5, "
        "prune mode, no weight decay.",
        "",
        *markdown(r18_rows),
    ]
    write_section("optimizer_overhead", "\n".join(lines))
    console.print("wrote the optimizer_overhead section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
