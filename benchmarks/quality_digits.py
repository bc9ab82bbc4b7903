"""Sub-network quality on digits: H2SPG (ours) vs OTO 3.0.1 HESSO vs Torch-Pruning magnitude pruning.

    python benchmarks/quality_digits.py [--seeds 0 1 2] [--epochs 30] [--sparsity 0.5] [--no-report]

One small ResNet-like super-network (`DigitsNet`, 192 channel groups) trained on scikit-learn's digits
(8x8 grayscale, 10 classes; the demo's 75/25 stratified split, `load_digits_split(0.25, 0)`), once
per tool and seed, from the same initial weights, with the same data order, batch size, epochs, base
SGD step (lr, momentum, weight decay, constant lr) and target group sparsity:

- **ours**: `asgnas_ir.backends.torch.H2SPG` over `ai.search_space(..., mode="prune")`; after
  training `finalize()`, recompile, `ai.subnet(graph, space, optimizer.zero_groups())`,
  `ai.codegen(target="torch")`, and the generated module is the one evaluated.
- **OTO**: only-train-once 3.0.1 `oto.hesso(variant="sgd")`; `construct_subnet()` and the compressed
  model it pickles is the one evaluated.
- **Torch-Pruning**: dense SGD for the warm-up epochs, then one-shot `BasePruner` with
  `MagnitudeImportance` (group L2 norm, the same ratio in every layer) and SGD fine-tuning for the
  remaining epochs.
- **dense**: plain SGD for all epochs (the accuracy the pruned networks should approach).

Every final network is measured with the same counter: `ai.compile` of the final torch module, then
`ai.cost` (FLOPs, params) and `ai.search_space(mode="prune")` (channel groups left). A peer that is
not installed is skipped with a note. Writes the `quality_digits` section of BENCHMARKS.md unless
`--no-report` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.data import Split, load_digits_split  # noqa: E402
from asgnas_ir.backends.torch import H2SPG  # noqa: E402
from asgnas_ir.testing import load_generated  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402
from benchmarks.peers import available, oto_module, quiet, tp_module  # noqa: E402

TOOLS = ("dense SGD", "ours (H2SPG)", "OTO (HESSO)", "Torch-Pruning")


class Block(nn.Module):
    """A basic residual block: relu(x + bn(conv(relu(bn(conv(x)))))); its output channels are tied to its input's."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class DigitsNet(nn.Module):
    """Stem (32 ch, 8x8), a residual block, a stride-2 conv (64 ch, 4x4), a residual block, mean pool, Linear.

    Prune mode sees 192 channel groups in all three tools: the stem/block1 output channels (32, tied by
    the residual add), block1's inner channels (32), and the same two kinds at 64 channels in stage two.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.block1 = Block(32)
        self.down = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.block2 = Block(64)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.down(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@dataclass
class Outcome:
    """One tool, one seed: the final network's test accuracy and size, and how it was obtained."""

    accuracy: float
    flops: int
    params: int
    groups_left: int
    train_seconds: float
    # max |logits(final sub-network) - logits(trained model with its zero groups)| on the test set; None
    # where the tool has no such pair (dense, and Torch-Pruning, which slices the live model itself).
    equivalence: float | None = None


@dataclass
class Column:
    """All seeds of one tool, or why it did not run."""

    outcomes: list[Outcome] = field(default_factory=list)
    note: str | None = None


def accuracy(model: nn.Module, split: Split) -> tuple[float, torch.Tensor]:
    """(test accuracy in %, test logits) in eval mode."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(split.x_test))
    return float((logits.argmax(1).numpy() == split.y_test).mean() * 100), logits


def measure(model: nn.Module, example: torch.Tensor) -> tuple[int, int, int]:
    """(FLOPs, params, channel groups) of a torch module, by the project's own counter for every tool alike."""
    graph = ai.compile(copy.deepcopy(model).eval(), example)
    cost = ai.cost(graph)
    return int(cost.flops), int(cost.params), len(ai.search_space(graph, mode="prune").groups)


def train_epochs(
    model: nn.Module, optimizer: torch.optim.Optimizer, split: Split, args: argparse.Namespace, seed: int,
    epochs: range, step: Callable[[], None] | None = None,
) -> None:
    """Plain minibatch training over `epochs`; the order of each epoch depends only on (seed, epoch), as in the
    project's trainer, so every tool sees the same batches in the same order."""
    x_all, y_all = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    loss_fn = nn.CrossEntropyLoss()
    steps = math.ceil(len(x_all) / args.batch_size)
    for epoch in epochs:
        model.train()
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        for i in range(steps):
            index = order[i * args.batch_size : (i + 1) * args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_all[index]), y_all[index])
            if not torch.isfinite(loss):
                raise RuntimeError(f"loss became {loss.item()} at epoch {epoch + 1}; lower --lr")
            loss.backward()
            (step or optimizer.step)()


def sgd(model: nn.Module, args: argparse.Namespace) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def steps_per_epoch(split: Split, args: argparse.Namespace) -> int:
    return math.ceil(len(split.x_train) / args.batch_size)


def run_dense(base: nn.Module, split: Split, args: argparse.Namespace, seed: int) -> Outcome:
    model = copy.deepcopy(base)
    started = time.perf_counter()
    train_epochs(model, sgd(model, args), split, args, seed, range(args.epochs))
    seconds = time.perf_counter() - started
    acc, _ = accuracy(model, split)
    return Outcome(acc, *measure(model, torch.from_numpy(split.x_test[:1])), seconds)


def run_ours(base: nn.Module, split: Split, args: argparse.Namespace, seed: int) -> Outcome:
    model = copy.deepcopy(base)
    example = torch.from_numpy(split.x_test[:1])
    space = ai.search_space(ai.compile(copy.deepcopy(model).eval(), example), mode="prune")
    optimizer = H2SPG(
        model, space, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        target_group_sparsity=args.sparsity, warmup_steps=args.warmup_epochs * steps_per_epoch(split, args),
        lmbda=args.lmbda, epsilon=args.epsilon,
    )
    started = time.perf_counter()
    train_epochs(model, optimizer, split, args, seed, range(args.epochs))
    optimizer.finalize()  # exactly the selected groups are zero from here on
    seconds = time.perf_counter() - started
    _, trained_logits = accuracy(model, split)
    # The documented path (docs/training.md): recompile the trained model, cut the zero groups out of it,
    # generate standalone source, and evaluate what that generated file builds, not the masked model.
    graph = ai.compile(model.eval(), example)
    sub = ai.subnet(graph, ai.search_space(graph, mode="prune"), optimizer.zero_groups())
    with tempfile.TemporaryDirectory() as out:
        ai.codegen(sub, target="torch", out_dir=out)
        generated = load_generated(out)
    acc, logits = accuracy(generated, split)
    diff = float((logits - trained_logits).abs().max())
    return Outcome(acc, *measure(generated, example), seconds, diff)


@contextlib.contextmanager
def cuda_calls_stay_on_cpu() -> Iterator[None]:
    """OTO 3.0.1's HESSO builds its redundant-group mask with a hard-coded `.cuda()` (optimizer/hesso.py,
    `identify_redundant_groups`), which raises on a CPU-only torch. Where no GPU exists, make `Tensor.cuda`
    return the tensor unchanged for the duration of a step, so the mask stays on the CPU with the params."""
    if torch.cuda.is_available():
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def run_oto(base: nn.Module, split: Split, args: argparse.Namespace, seed: int) -> Outcome:
    oto_lib = oto_module()
    assert oto_lib is not None
    model = copy.deepcopy(base)
    example = torch.from_numpy(split.x_test[:1])
    per_epoch = steps_per_epoch(split, args)
    with quiet():  # OTO prints its graph build and optimizer setup
        oto = oto_lib.OTO(model, example)
        # The same warm-up as H2SPG before any group is chosen; then OTO's own schedule: the groups are
        # chosen in `pruning_periods` installments and each installment shrinks to zero over one period.
        optimizer = oto.hesso(
            variant="sgd", lr=args.lr, first_momentum=args.momentum, weight_decay=args.weight_decay,
            target_group_sparsity=args.sparsity, start_pruning_step=args.warmup_epochs * per_epoch,
            pruning_steps=args.shrink_epochs * per_epoch, pruning_periods=args.oto_periods,
        )

    def step() -> None:
        with cuda_calls_stay_on_cpu():
            optimizer.step()

    started = time.perf_counter()
    train_epochs(model, optimizer, split, args, seed, range(args.epochs), step)
    seconds = time.perf_counter() - started
    _, trained_logits = accuracy(model, split)
    with quiet(), tempfile.TemporaryDirectory() as out:
        oto.construct_subnet(out_dir=out)
        compressed = torch.load(oto.compressed_model_path, weights_only=False)  # OTO pickles the whole module
    acc, logits = accuracy(compressed, split)
    diff = float((logits - trained_logits).abs().max())
    return Outcome(acc, *measure(compressed, example), seconds, diff)


def run_tp(base: nn.Module, split: Split, args: argparse.Namespace, seed: int) -> Outcome:
    tp = tp_module()
    assert tp is not None
    model = copy.deepcopy(base)
    example = torch.from_numpy(split.x_test[:1])
    started = time.perf_counter()
    # Prune at the epoch where H2SPG commits to its groups (end of warm-up), then fine-tune the rest,
    # so the total epoch count is the same as for the other tools.
    prune_at = min(args.warmup_epochs, args.epochs)
    train_epochs(model, sgd(model, args), split, args, seed, range(prune_at))
    model.eval()  # tracing runs a forward; keep it from moving the BN running statistics
    pruner = tp.pruner.BasePruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=args.sparsity,
        ignored_layers=[model.fc],  # the 10 class logits are not prunable (nor are they in ours or OTO)
    )
    pruner.step()
    # A fresh SGD for the smaller tensors: the momentum buffers of the removed channels have no place left.
    train_epochs(model, sgd(model, args), split, args, seed, range(prune_at, args.epochs))
    seconds = time.perf_counter() - started
    acc, _ = accuracy(model, split)
    return Outcome(acc, *measure(model, example), seconds)


def mean_std(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{format(statistics.mean(values), fmt)} ± {format(std, fmt)}"


def rows(columns: dict[str, Column], dense_groups: int) -> list[tuple[str, ...]]:
    """Per tool: accuracy, params, FLOPs, groups removed, equivalence check, training seconds (mean ± std)."""
    table = []
    for tool, column in columns.items():
        if column.note is not None and not column.outcomes:
            table.append((tool, "skipped (see notes)", "–", "–", "–", "–", "–"))
            continue
        found = column.outcomes
        diffs = [o.equivalence for o in found if o.equivalence is not None]
        table.append((
            tool,
            mean_std([o.accuracy for o in found], ".2f"),
            mean_std([o.params / 1e3 for o in found], ".1f"),
            mean_std([o.flops / 1e6 for o in found], ".2f"),
            mean_std([(dense_groups - o.groups_left) / dense_groups * 100 for o in found], ".1f"),
            f"{max(diffs):.1e}" if diffs else "n/a",
            mean_std([o.train_seconds for o in found], ".1f"),
        ))
    return table


HEADERS = ("tool", "test acc %", "params (k)", "FLOPs (M)", "groups removed %", "max abs Δ logit", "train s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--sparsity", type=float, default=0.5, help="target fraction of channel groups to remove")
    parser.add_argument("--warmup-epochs", type=int, default=5, help="dense epochs before any tool picks its groups")
    parser.add_argument("--shrink-epochs", type=int, default=10, help="OTO HESSO: epochs over which groups shrink to zero")
    parser.add_argument("--oto-periods", type=int, default=10, help="OTO HESSO: installments the groups are chosen in")
    parser.add_argument("--lmbda", type=float, default=None, help="H2SPG group penalty (default: the automatic λ the demo uses)")
    parser.add_argument("--epsilon", type=float, default=0.5, help="H2SPG half-space threshold (the demo's value)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: tiny tensors, shared machines)")
    parser.add_argument("--no-report", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.warmup_epochs + args.shrink_epochs > args.epochs:
        parser.error("--warmup-epochs + --shrink-epochs must not exceed --epochs (OTO would not finish pruning)")

    # One thread: on 8x8 inputs intra-op parallelism gains little, and on a loaded shared machine two
    # spinning threads made the same epoch up to 15x slower in our dev runs, which would swamp the times.
    torch.set_num_threads(args.threads)
    console = Console(highlight=False)
    versions = available()
    split = load_digits_split(0.25, 0)  # the demo's split (TrainConfig defaults), the same for every seed
    example = torch.from_numpy(split.x_test[:1])
    runners: dict[str, Callable[[nn.Module, Split, argparse.Namespace, int], Outcome]] = {
        "dense SGD": run_dense, "ours (H2SPG)": run_ours, "OTO (HESSO)": run_oto, "Torch-Pruning": run_tp,
    }
    columns = {tool: Column() for tool in TOOLS}
    missing = {tool for tool, module in (("OTO (HESSO)", oto_module()), ("Torch-Pruning", tp_module())) if module is None}
    for tool in missing:
        dist = "only-train-once" if tool.startswith("OTO") else "torch-pruning"
        columns[tool].note = f"{dist} is not installed (run `make bench`); column skipped"
        console.print(f"[yellow]{tool}: {columns[tool].note}[/yellow]")

    # One untimed forward/backward first, so the first tool of the first seed does not pay torch's
    # one-off start-up costs in its training time.
    DigitsNet()(torch.from_numpy(split.x_train[: args.batch_size])).sum().backward()
    started = time.perf_counter()
    for seed in args.seeds:
        torch.manual_seed(seed)
        np.random.seed(seed)
        base = DigitsNet()  # one initialisation per seed, deep-copied into every tool
        for tool, runner in runners.items():
            column = columns[tool]
            if tool in missing:
                continue
            try:
                outcome = runner(base, split, args, seed)
            except Exception as error:  # a peer failing must not hide the other columns; say so instead
                if tool == "ours (H2SPG)":
                    raise
                column.note = f"failed on seed {seed}: {type(error).__name__}: {error}"
                console.print(f"[red]{tool}: {column.note}[/red]\n{traceback.format_exc(limit=3)}")
                continue
            column.outcomes.append(outcome)
            console.print(f"seed {seed}  {tool:<14} acc {outcome.accuracy:6.2f}%  FLOPs {outcome.flops / 1e6:6.2f}M  "
                          f"params {outcome.params / 1e3:6.1f}k  ({outcome.train_seconds:.1f} s)")
    total = time.perf_counter() - started

    dense_flops, dense_params, dense_groups = measure(DigitsNet(), example)
    table_rows = rows(columns, dense_groups)
    table = Table(title=f"digits, DigitsNet ({dense_groups} channel groups, {dense_flops / 1e6:.2f} MFLOPs, "
                        f"{dense_params / 1e3:.1f}k params), target sparsity {args.sparsity}, "
                        f"{args.epochs} epochs, seeds {' '.join(map(str, args.seeds))}")
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "tool" else "right")
    for row in table_rows:
        table.add_row(*row)
    console.print(table)
    for tool, column in columns.items():
        if column.note:
            console.print(f"[yellow]note: {tool}: {column.note}[/yellow]")
    console.print(f"total {total:.0f} s")

    # The exact command line of this run (every effective value is also spelled out below it).
    command = " ".join(["python benchmarks/quality_digits.py", *sys.argv[1:]])
    peers = ", ".join(f"{name} {version or 'not installed'}" for name, version in versions.items())
    notes = [f"- {tool}: {column.note}" for tool, column in columns.items() if column.note]
    lines = [
        "## Sub-network quality on digits: H2SPG vs OTO HESSO vs Torch-Pruning",
        "",
        f"Command: `{command}`. Machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} thread(s)), {peers}. "
        f"Total {total:.0f} s.",
        "",
        f"Super-network: `DigitsNet` in the script (a small ResNet-like net, {dense_groups} channel groups, "
        f"{dense_flops / 1e6:.2f} MFLOPs, {dense_params / 1e3:.1f}k params), one initialisation per seed shared by all tools. "
        f"Data: scikit-learn digits, the demo's 75/25 stratified split. Every tool: {args.epochs} epochs, batch "
        f"{args.batch_size}, SGD lr {args.lr} (constant), momentum {args.momentum}, weight decay {args.weight_decay}, "
        f"the same batch order, target sparsity {args.sparsity} of the channel groups, {args.warmup_epochs} dense "
        f"epochs before any group is chosen. Ours: H2SPG prune mode, λ {args.lmbda if args.lmbda is not None else 'automatic'}, ε {args.epsilon}, evaluated as the "
        f"generated `model.py`. OTO: HESSO, pruning over {args.shrink_epochs} epochs in {args.oto_periods} periods, "
        "evaluated as its compressed model. Torch-Pruning: one-shot group-L2 magnitude pruning (same ratio per layer) "
        f"after epoch {args.warmup_epochs}, then SGD fine-tuning. FLOPs, params and groups are counted for every "
        "final module by `ai.compile` + `ai.cost` / `ai.search_space`. Mean ± std over seeds; max abs Δ logit is "
        "the largest logit difference between the final sub-network and the trained model it was cut from.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|" + "---:|" * (len(HEADERS) - 1),
        *("| " + " | ".join(row) + " |" for row in table_rows),
    ]
    if notes:
        lines += ["", "Notes:", *notes]
    if not args.no_report:
        write_section("quality_digits", "\n".join(lines))
        console.print("wrote the quality_digits section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
