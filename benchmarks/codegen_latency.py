"""CPU latency of the generated sub-network against the full model, next to its FLOPs ratio.

    python benchmarks/codegen_latency.py [--fractions 0.25 0.5 0.75] [--rounds 20] [--threads N]
                                         [--no-torchvision] [--tv-batch32] [--seed 0]

For each model and each fraction of zeroed groups the script does what a user does after training:
compile, build the search space, zero a random valid selection of groups (`ai.random_zero_groups`
with a fixed seed) in a copy of the model, recompile that copy, take `ai.subnet`, write it with
`ai.codegen(..., target="torch")`, then import the generated `model.py` and call its `load()`.
It checks the generated outputs against the zeroed full model (DESIGN §4 tolerance) and times
both on CPU, interleaved in one process.

Models: the replicas resnet_bottleneck and mobilenet_v2 (1x3x32x32) in prune mode, the example
super-network super_resnet (1x1x8x8) in erase mode, and, when torchvision imports, torchvision's
resnet18 and mobilenet_v3_large at 1x3x224x224 in prune mode. Small-input models are also timed at
batch 32, where compute rather than Python overhead dominates; torchvision models only with
--tv-batch32 (a batch-32 224x224 pass takes seconds on 2 cores).

Prints a table and writes the `codegen_latency` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch.binding import rerandomize_, zero_slices_  # noqa: E402
from asgnas_ir.examples.supernets import SUPERNETS  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402
from tests.models import REPLICAS, example_inputs  # noqa: E402

LARGE_BATCH = 32


@dataclass
class Case:
    """One model to measure, its batch-1 input, its search mode and the batch sizes to time."""

    name: str
    model: torch.nn.Module
    x: torch.Tensor
    mode: str
    batches: tuple[int, ...]


@dataclass
class Row:
    """What one (model, fraction) measurement found."""

    model: str
    mode: str
    fraction: float
    groups: int
    zeroed: int
    flops_full: int
    flops_ratio: float
    params_ratio: float
    max_abs_diff: float
    ok: bool
    # batch -> (full ms, sub ms, paired latency ratio sub/full)
    latency: dict[int, tuple[float, float, float]] = field(default_factory=dict)


def cases(with_torchvision: bool, tv_batch32: bool) -> list[Case]:
    found: list[Case] = []
    """The models to measure: two replicas and super_resnet always, torchvision models when asked and importable."""
    for name in ("resnet_bottleneck", "mobilenet_v2"):
        replica = REPLICAS[name]
        found.append(Case(name, replica.build().eval(), example_inputs(replica)[0], "prune", (1, LARGE_BATCH)))
    torch.manual_seed(0)
    super_resnet = SUPERNETS["super_resnet"]().eval()
    found.append(Case("super_resnet", super_resnet, torch.randn(1, 1, 8, 8), "erase", (1, LARGE_BATCH)))
    if with_torchvision:
        try:
            import torchvision
        except ImportError:
            return found
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        batches = (1, LARGE_BATCH) if tv_batch32 else (1,)
        for name in ("resnet18", "mobilenet_v3_large"):
            found.append(Case(f"tv.{name}", getattr(torchvision.models, name)(weights=None).eval(), x, "prune", batches))
    return found


def import_generated(folder: Path, tag: str) -> torch.nn.Module:
    """Import `folder/model.py` by path and call its `load()`, as the generated file's docstring says."""
    spec = importlib.util.spec_from_file_location(f"asgnas_generated_{tag}", folder / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # load() reads weights.safetensors into the module right away, so the folder may go afterwards.
    return module.load()


def interleaved_ms(full: torch.nn.Module, sub: torch.nn.Module, x: torch.Tensor, warmup: int, rounds: int,
                   min_round_s: float) -> tuple[float, float, float]:
    """Median per-call ms of `full` and `sub` on `x`, and the median of the per-round ratios sub/full.

    The two models alternate round by round (and swap which goes first), so a slow phase of a
    shared machine hits both alike; the per-round ratio pairs measurements taken moments apart.
    """
    with torch.inference_mode():
        # oneDNN builds its kernels for each new shape on the first calls; keep them out of the median.
        once = math.inf
        for _ in range(max(warmup, 2)):
            start = time.perf_counter()
            full(x)
            once = min(once, time.perf_counter() - start)
            sub(x)
        # Tiny models run in about a millisecond: repeat them inside a round so the timer's resolution
        # and one-off scheduler hiccups do not dominate. The fastest warm-up call sizes the round, as a
        # single call on a busy machine can be many times slower than usual.
        inner = max(1, math.ceil(min_round_s / max(once, 1e-6)))
        times: tuple[list[float], list[float]] = ([], [])
        for r in range(rounds):
            for k in ((0, 1) if r % 2 == 0 else (1, 0)):
                model = (full, sub)[k]
                start = time.perf_counter()
                for _ in range(inner):
                    model(x)
                times[k].append((time.perf_counter() - start) / inner)
    ratios = [s / f for f, s in zip(times[0], times[1], strict=True)]
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3, statistics.median(ratios)


def measure(case: Case, fractions: list[float], args: argparse.Namespace, console: Console) -> list[Row]:
    # Fresh random values (as ai.check does): default-initialised BN and heads can give near-zero
    # outputs, which would make the equivalence check below meaningless. Latency does not care.
    live = copy.deepcopy(case.model).eval()
    rerandomize_(live, args.seed)
    graph = ai.compile(live, case.x)
    space = ai.search_space(graph, mode=case.mode)
    full_cost = ai.cost(graph)
    rows = []
    for fraction in fractions:
        zero = ai.random_zero_groups(graph, space, fraction, seed=args.seed)
        slices = [s for gid in zero for s in space.group(gid).slices]
        zeroed = copy.deepcopy(live)
        zero_slices_(zeroed, graph, slices)
        # Recompile the zeroed copy, as after training, so the subnet is built from the weights it replaces.
        zeroed_graph = ai.compile(zeroed, case.x)
        sub_graph = ai.subnet(zeroed_graph, space, zero)
        sub_cost = ai.cost(sub_graph)
        with tempfile.TemporaryDirectory(prefix="asgnas-latency-") as tmp:
            ai.codegen(sub_graph, target="torch", out_dir=tmp)
            generated = import_generated(Path(tmp), f"{case.name.replace('.', '_')}_{int(fraction * 100)}")
        with torch.inference_mode():
            expected = zeroed(case.x).numpy().astype(np.float64)
            actual = generated(case.x).numpy()
        max_ref = float(np.abs(expected).max())
        diff = float(np.abs(expected - actual).max()) if expected.shape == actual.shape else math.inf
        row = Row(
            model=case.name, mode=case.mode, fraction=fraction, groups=len(space.groups), zeroed=len(zero),
            flops_full=full_cost.flops, flops_ratio=sub_cost.flops / full_cost.flops,
            params_ratio=sub_cost.params / full_cost.params, max_abs_diff=diff,
            ok=max_ref > 1e-3 and diff <= 1e-4 * max_ref,
        )
        for batch in case.batches:
            x = case.x.repeat(batch, *([1] * (case.x.dim() - 1)))
            row.latency[batch] = interleaved_ms(zeroed, generated, x, args.warmup, args.rounds, args.min_round_ms / 1e3)
        timed = ", ".join(f"b{b} {f:.2f} -> {s:.2f} ms" for b, (f, s, _) in row.latency.items())
        console.log(f"{case.name} {case.mode} {fraction:.2f}: {len(zero)}/{len(space.groups)} groups, "
                    f"FLOPs x{row.flops_ratio:.2f}, diff {diff:.1e}, {timed}")
        rows.append(row)
    return rows


def cells(row: Row, batches: tuple[int, ...]) -> list[str]:
    out = [
        row.model, row.mode, f"{row.fraction:.2f}", f"{row.zeroed}/{row.groups}", f"{row.flops_full / 1e6:.1f}",
        f"{row.flops_ratio:.3f}", f"{row.params_ratio:.3f}", f"{row.max_abs_diff:.1e}" + ("" if row.ok else " FAIL"),
    ]
    for batch in batches:
        if batch in row.latency:
            full, sub, ratio = row.latency[batch]
            out += [f"{full:.2f}", f"{sub:.2f}", f"{ratio:.3f}"]
        else:
            out += ["-", "-", "-"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds per model (median over them)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--min-round-ms", type=float, default=20.0, help="repeat tiny models within a round up to this")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torchvision", action="store_true")
    parser.add_argument("--tv-batch32", action="store_true", help="also time torchvision models at batch 32")
    args = parser.parse_args()

    # One thread count for every model and both sides of every comparison; it goes in the report.
    torch.set_num_threads(args.threads)
    console = Console()
    start = time.perf_counter()
    chosen = cases(not args.no_torchvision, args.tv_batch32)
    rows = [row for case in chosen for row in measure(case, args.fractions, args, console)]
    elapsed = time.perf_counter() - start
    batches = tuple(sorted({b for case in chosen for b in case.batches}))

    headers = ["model", "mode", "fraction", "zeroed", "full MFLOPs", "FLOPs ratio", "params ratio", "max abs diff"]
    for batch in batches:
        headers += [f"b{batch} full ms", f"b{batch} sub ms", f"b{batch} lat. ratio"]
    table = Table(title=f"generated sub-network vs full model, CPU, {args.threads} thread(s), torch {torch.__version__}")
    # Headers may wrap, but the model name and the zeroed count must stay whole.
    widths = {"model": max(len(r.model) for r in rows), "zeroed": max(len(f"{r.zeroed}/{r.groups}") for r in rows)}
    for column in headers:
        table.add_column(column, justify="left" if column in ("model", "mode") else "right",
                         no_wrap=column in widths, min_width=widths.get(column))
    command = shlex.join(["python", "benchmarks/codegen_latency.py", *sys.argv[1:]])
    lines = [
        "## Latency of the generated sub-network vs the full model (CPU)",
        "",
        f"Command: `{command}`. Machine: {machine()}; torch {torch.__version__}; `torch.set_num_threads({args.threads})`. "
        f"Whole run {elapsed:.0f} s.",
        "",
        f"Each row zeroes a random valid `fraction` of the search space's groups (seed {args.seed}), builds the subnet "
        "and generates its PyTorch code, imports it and checks it against the zeroed full model (max abs diff; FAIL "
        "if over the DESIGN tolerance). Full and sub-network are timed alternately in one process under "
        f"`torch.inference_mode()`: {args.warmup} warm-up calls, then {args.rounds} rounds (each at least "
        f"{args.min_round_ms:g} ms of back-to-back calls). ms columns are medians per call; `lat. ratio` is the "
        "median of the per-round ratios sub/full. FLOPs and params ratios are sub/full from `ai.cost` (FLOPs at "
        "batch 1). Replicas and super_resnet are tiny (32x32 and 8x8 inputs), so at batch 1 Python and dispatch "
        "overhead dominates their latency.",
        "",
        "| " + " | ".join(headers) + " |",
        "|---|---|" + "---:|" * (len(headers) - 2),
    ]
    for row in rows:
        row_cells = cells(row, batches)
        table.add_row(*row_cells)
        lines.append("| " + " | ".join(row_cells) + " |")
    # 14 columns do not fit 80; a piped run (rich's default width there) would squash every cell.
    Console(width=max(console.width, 170)).print(table)
    console.print(f"{elapsed:.0f} s in all, {args.threads} thread(s)")
    write_section("codegen_latency", "\n".join(lines))


if __name__ == "__main__":
    main()
