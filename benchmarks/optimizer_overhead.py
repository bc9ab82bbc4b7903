"""Optimizer overhead: H2SPG / HESSO step time vs plain torch.optim.SGD, side by side in one run.

    python benchmarks/optimizer_overhead.py [--steps 50] [--batch 64]

Model: the resnet_basic replica (tests/models) on 3x32x32 inputs. Every optimizer gets its own copy of the
model; each round runs forward+backward for every optimizer and times only `step()` (and, separately,
the whole iteration), alternating optimizers so machine noise hits all of them alike. Phases: during
warm-up (scores being averaged) and after the redundant groups were selected. Writes the
`optimizer_overhead` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch import H2SPG, HESSO  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402
from tests.models import REPLICAS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    base = REPLICAS["resnet_basic"].build().train()
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    graph = ai.compile(copy.deepcopy(base).eval(), x[:1])
    spaces = {mode: ai.search_space(graph, mode=mode) for mode in ("erase", "prune")}
    warmup = args.steps + 5

    def make(kind: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = copy.deepcopy(base)
        if kind == "SGD":
            return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        optimizer_cls, mode = {"H2SPG erase": (H2SPG, "erase"), "H2SPG prune": (H2SPG, "prune"), "HESSO prune": (HESSO, "prune")}[kind]
        extra = {"shrink_period": 10 * args.steps} if optimizer_cls is HESSO else {}
        return model, optimizer_cls(model, spaces[mode], lr=0.01, momentum=0.9, warmup_steps=warmup, lmbda=1.0, **extra)

    kinds = ["SGD", "H2SPG erase", "H2SPG prune", "HESSO prune"]
    runs = {kind: make(kind) for kind in kinds}
    loss_fn = torch.nn.CrossEntropyLoss()
    timings: dict[tuple[str, str], list[float]] = {}
    iteration: dict[tuple[str, str], list[float]] = {}
    for phase, rounds in (("warm-up", warmup), ("after selection", args.steps)):
        for _ in range(rounds):
            for kind, (model, optimizer) in runs.items():
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                before_step = time.perf_counter()
                optimizer.step()
                end = time.perf_counter()
                timings.setdefault((kind, phase), []).append(end - before_step)
                iteration.setdefault((kind, phase), []).append(end - start)
    rows = []
    for phase in ("warm-up", "after selection"):
        sgd_step = statistics.median(timings[("SGD", phase)])
        sgd_iter = statistics.median(iteration[("SGD", phase)])
        for kind in kinds[1:]:
            step = statistics.median(timings[(kind, phase)])
            it = statistics.median(iteration[(kind, phase)])
            rows.append((kind, phase, step * 1e3, step / sgd_step, it / sgd_iter))
        rows.append(("SGD", phase, sgd_step * 1e3, 1.0, 1.0))

    table = Table(title=f"optimizer step vs SGD, resnet_basic, batch {args.batch}, median of {args.steps}+ steps")
    for column in ("optimizer", "phase", "step ms", "step / SGD step", "iteration / SGD iteration"):
        table.add_column(column)
    lines = [
        "## Optimizer overhead: H2SPG / HESSO vs plain SGD",
        "",
        f"Command: `python benchmarks/optimizer_overhead.py --steps {args.steps} --batch {args.batch}`. Machine: {machine()}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads. Model: resnet_basic replica, 3x32x32 inputs. "
        "Optimizers run interleaved in one process; only `step()` is timed for the step ratio, forward+backward+step for the "
        "iteration ratio. Target (issue 3): step ≤ 1.15× SGD.",
        "",
        "| optimizer | phase | step ms | step / SGD step | iteration / SGD iteration |",
        "|---|---|---:|---:|---:|",
    ]
    for kind, phase, ms, ratio, it_ratio in rows:
        cells = (kind, phase, f"{ms:.3f}", f"{ratio:.2f}×", f"{it_ratio:.2f}×")
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console().print(table)
    write_section("optimizer_overhead", "\n".join(lines))


if __name__ == "__main__":
    main()
