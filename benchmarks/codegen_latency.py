"""Latency of the generated sub-network against the full model, next to its FLOPs ratio (issue 18).

    python benchmarks/codegen_latency.py [--fractions 0.5] [--aligns 1 8] [--dtypes float32 bfloat16]
        [--tv-models resnet50 convnext_tiny ...] [--tv-size 224] [--large-batch 64] [--device cpu|cuda]
        [--rounds 20] [--large-rounds 5] [--threads N] [--no-torchvision] [--seed 0]

For each model, fraction and alignment the script does what a user does after training: compile,
build the search space, zero a random valid selection of groups (`ai.random_zero_groups` with a
fixed seed and `align`) in a copy of the model, recompile that copy, take `ai.subnet`, write it with
`ai.codegen(..., target="torch")`, import the generated `model.py` and call its `load()`. It checks
the generated outputs against the zeroed full model in float32 (DESIGN tolerance), then times both,
interleaved in one process, in each dtype (both models cast alike) at batch 1 and the large batch.

Models: the replicas resnet_bottleneck and mobilenet_v2 (3x32x32) in prune mode, the example
super-network super_resnet (1x8x8) in erase mode, and, when torchvision imports, `--tv-models` at
`--tv-size` (square; ViTs are built for that size). `align` 1 is today's widths, 8 keeps every
layer a multiple of 8 channels or whole. `speedup eff.` is (1 / latency ratio) / (1 / FLOPs ratio):
1 means the latency fell as much as the FLOPs.

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

DEFAULT_TV_MODELS = ("resnet50", "convnext_tiny", "vit_b_16", "mobilenet_v3_large", "efficientnet_b0")
DEPTHWISE = ("mobilenet", "efficientnet", "mnasnet", "regnet")  # the looser goal (0.6)


@dataclass
class Case:
    """One model to measure, its batch-1 input, its search mode and the batch sizes to time."""

    name: str
    model: torch.nn.Module
    x: torch.Tensor
    mode: str


@dataclass
class Row:
    """What one (model, fraction) measurement found."""

    model: str
    mode: str
    fraction: float
    align: int
    dtype: str
    groups: int
    zeroed: int
    flops_full: int
    flops_ratio: float
    params_ratio: float
    max_abs_diff: float
    ok: bool
    # batch -> (full ms, sub ms, paired latency ratio sub/full)
    latency: dict[int, tuple[float, float, float]] = field(default_factory=dict)


def cases(args: argparse.Namespace) -> list[Case]:
    """The models to measure: two replicas and super_resnet always, torchvision models when importable."""
    found: list[Case] = []
    for name in ("resnet_bottleneck", "mobilenet_v2"):
        replica = REPLICAS[name]
        found.append(Case(name, replica.build().eval(), example_inputs(replica)[0], "prune"))
    torch.manual_seed(0)
    super_resnet = SUPERNETS["super_resnet"]().eval()
    found.append(Case("super_resnet", super_resnet, torch.randn(1, 1, 8, 8), "erase"))
    if args.no_torchvision:
        return found
    try:
        import torchvision
    except ImportError:
        return found
    size = args.tv_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    for name in args.tv_models:
        build = getattr(torchvision.models, name)
        torch.manual_seed(0)
        model = build(weights=None, image_size=size) if name.startswith("vit_") else build(weights=None)
        found.append(Case(f"tv.{name}", model.eval(), x, "prune"))
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
    # a GPU runs asynchronously: wait for its queue before reading the clock
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        # oneDNN builds its kernels for each new shape on the first calls; keep them out of the median.
        once = math.inf
        for _ in range(max(warmup, 2)):
            sync()
            start = time.perf_counter()
            full(x)
            sync()
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
                sync()
                start = time.perf_counter()
                for _ in range(inner):
                    model(x)
                sync()
                times[k].append((time.perf_counter() - start) / inner)
    ratios = [s / f for f, s in zip(times[0], times[1], strict=True)]
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3, statistics.median(ratios)


def measure(case: Case, args: argparse.Namespace, console: Console) -> list[Row]:
    # Fresh random values (as ai.check does): default-initialised BN and heads can give near-zero
    # outputs, which would make the equivalence check below meaningless. Latency does not care.
    live = copy.deepcopy(case.model).eval()
    rerandomize_(live, args.seed)
    graph = ai.compile(live, case.x)
    space = ai.search_space(graph, mode=case.mode)
    full_cost = ai.cost(graph)
    rows = []
    for fraction in args.fractions:
        for align in args.aligns:
            zero = ai.random_zero_groups(graph, space, fraction, seed=args.seed, align=align)
            slices = [s for gid in zero for s in space.group(gid).slices]
            zeroed = copy.deepcopy(live)
            zero_slices_(zeroed, graph, slices)
            # Recompile the zeroed copy, as after training, so the subnet is built from the weights it replaces.
            zeroed_graph = ai.compile(zeroed, case.x)
            sub_graph = ai.subnet(zeroed_graph, space, zero, align=align)
            sub_cost = ai.cost(sub_graph)
            with tempfile.TemporaryDirectory(prefix="asgnas-latency-") as tmp:
                ai.codegen(sub_graph, target="torch", out_dir=tmp)
                generated = import_generated(Path(tmp), f"{case.name.replace('.', '_')}_{int(fraction * 100)}_{align}")
            with torch.inference_mode():
                expected = zeroed(case.x).numpy().astype(np.float64)
                actual = generated(case.x).numpy()
            max_ref = float(np.abs(expected).max())
            diff = float(np.abs(expected - actual).max()) if expected.shape == actual.shape else math.inf
            for dtype in args.dtypes:
                row = Row(
                    model=case.name, mode=case.mode, fraction=fraction, align=align, dtype=dtype, groups=len(space.groups),
                    zeroed=len(zero), flops_full=full_cost.flops, flops_ratio=sub_cost.flops / full_cost.flops,
                    params_ratio=sub_cost.params / full_cost.params, max_abs_diff=diff,
                    ok=max_ref > 1e-3 and diff <= 1e-4 * max_ref,
                )
                torch_dtype = getattr(torch, dtype)
                full_d = copy.deepcopy(zeroed).to(args.device, torch_dtype)
                sub_d = copy.deepcopy(generated).to(args.device, torch_dtype)
                for batch, rounds in ((1, args.rounds), (args.large_batch, args.large_rounds)):
                    x = case.x.repeat(batch, *([1] * (case.x.dim() - 1))).to(args.device, torch_dtype)
                    row.latency[batch] = interleaved_ms(full_d, sub_d, x, args.warmup, rounds, args.min_round_ms / 1e3)
                timed = ", ".join(f"b{b} {f:.2f} -> {s:.2f} ms" for b, (f, s, _) in row.latency.items())
                console.log(f"{case.name} {case.mode} {fraction:.2f} align {align} {dtype}: {len(zero)}/{len(space.groups)} "
                            f"groups, FLOPs x{row.flops_ratio:.3f}, diff {diff:.1e}, {timed}")
                rows.append(row)
    return rows


def efficiency(row: Row, batch: int) -> float:
    """Latency speedup over FLOPs speedup: (full / sub latency) / (full / sub FLOPs)."""
    return row.flops_ratio / row.latency[batch][2]


def cells(row: Row, batches: tuple[int, ...]) -> list[str]:
    out = [
        row.model, row.mode, f"{row.fraction:.2f}", str(row.align), row.dtype, f"{row.zeroed}/{row.groups}",
        f"{row.flops_full / 1e6:.1f}", f"{row.flops_ratio:.3f}", f"{row.params_ratio:.3f}",
        f"{row.max_abs_diff:.1e}" + ("" if row.ok else " FAIL"),
    ]
    for batch in batches:
        if batch in row.latency:
            full, sub, ratio = row.latency[batch]
            slower = " **slower**" if ratio > 1 else ""
            out += [f"{full:.2f}", f"{sub:.2f}", f"{ratio:.3f}{slower}", f"{efficiency(row, batch):.2f}"]
        else:
            out += ["-", "-", "-", "-"]
    return out


def summary_lines(rows: list[Row], batches: tuple[int, ...]) -> list[str]:
    """The issue's goals per model, dtype and batch: aligned vs unaligned speedup efficiency, and
    whether any aligned sub-network is slower than its full model."""
    lines = ["| model | dtype | batch | eff. align 1 | eff. align 8 | goal | aligned slower than full? |",
             "|---|---|---:|---:|---:|---:|---|"]
    for model in dict.fromkeys(r.model for r in rows):
        for dtype in dict.fromkeys(r.dtype for r in rows):
            for batch in batches:
                mine = [r for r in rows if r.model == model and r.dtype == dtype and batch in r.latency]
                by_align = {r.align: r for r in mine}
                if 1 not in by_align or 8 not in by_align:
                    continue
                goal = 0.6 if any(k in model for k in DEPTHWISE) else 0.8
                aligned = by_align[8]
                lines.append(f"| {model} | {dtype} | {batch} | {efficiency(by_align[1], batch):.2f} | "
                             f"{efficiency(aligned, batch):.2f} | {goal} | "
                             f"{'yes' if aligned.latency[batch][2] > 1 else 'no'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5])
    parser.add_argument("--aligns", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--tv-models", nargs="+", default=list(DEFAULT_TV_MODELS))
    parser.add_argument("--tv-size", type=int, default=224, help="square input size of the torchvision models")
    parser.add_argument("--large-batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds at batch 1 (median over them)")
    parser.add_argument("--large-rounds", type=int, default=5, help="timed rounds at the large batch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-round-ms", type=float, default=20.0, help="repeat tiny models within a round up to this")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torchvision", action="store_true")
    args = parser.parse_args()

    # One thread count for every model and both sides of every comparison; it goes in the report.
    torch.set_num_threads(args.threads)
    console = Console()
    start = time.perf_counter()
    rows = [row for case in cases(args) for row in measure(case, args, console)]
    elapsed = time.perf_counter() - start
    batches = (1, args.large_batch)

    headers = ["model", "mode", "fraction", "align", "dtype", "zeroed", "full MFLOPs", "FLOPs ratio", "params ratio",
               "max abs diff"]
    for batch in batches:
        headers += [f"b{batch} full ms", f"b{batch} sub ms", f"b{batch} lat. ratio", f"b{batch} speedup eff."]
    where = "CPU" if args.device == "cpu" else args.device
    table = Table(title=f"generated sub-network vs full model, {where}, {args.threads} thread(s), torch {torch.__version__}")
    # Headers may wrap, but the model name and the zeroed count must stay whole.
    widths = {"model": max(len(r.model) for r in rows), "zeroed": max(len(f"{r.zeroed}/{r.groups}") for r in rows)}
    for column in headers:
        table.add_column(column, justify="left" if column in ("model", "mode", "dtype") else "right",
                         no_wrap=column in widths, min_width=widths.get(column))
    command = shlex.join(["python", "benchmarks/codegen_latency.py", *sys.argv[1:]])
    lines = [
        f"## Latency of the generated sub-network vs the full model ({where}), aligned and unaligned widths",
        "",
        f"Command: `{command}`. Machine: {machine()}; torch {torch.__version__}; `torch.set_num_threads({args.threads})`. "
        f"Whole run {elapsed:.0f} s. torchvision models at {args.tv_size}x{args.tv_size}.",
        "",
        f"Each row zeroes a random valid `fraction` of the search space's groups (seed {args.seed}; `align` 8: every "
        "layer keeps a multiple of 8 channels or all of them, `ai.random_zero_groups(..., align=8)`), builds the "
        "subnet and generates its PyTorch code, imports it and checks it against the zeroed full model in float32 "
        "(max abs diff; FAIL if over the DESIGN tolerance). Both models are then cast to `dtype` and timed "
        f"alternately in one process under `torch.inference_mode()`: {args.warmup} warm-up calls, then "
        f"{args.rounds} rounds at batch 1 and {args.large_rounds} at batch {args.large_batch} (each round at least "
        f"{args.min_round_ms:g} ms of back-to-back calls). ms columns are medians per call; `lat. ratio` is the median "
        "of the per-round ratios sub/full (**slower** when above 1); `speedup eff.` is FLOPs ratio / latency ratio "
        "(1: the latency fell as much as the FLOPs). FLOPs and params ratios are sub/full from `ai.cost`. The "
        "replicas and super_resnet are tiny (32x32 and 8x8 inputs): at batch 1 dispatch overhead dominates them.",
        "",
        "| " + " | ".join(headers) + " |",
        "|---|---|" + "---:|" * 2 + "---|" + "---:|" * (len(headers) - 5),
    ]
    for row in rows:
        row_cells = cells(row, batches)
        table.add_row(*row_cells)
        lines.append("| " + " | ".join(row_cells) + " |")
    goals = summary_lines(rows, batches)
    lines += ["", "Goals (issue 18): speedup efficiency of the aligned sub-network ≥ 0.8 (≥ 0.6 for depthwise "
              "networks); no aligned sub-network slower than its full model.", "", *goals]
    Console(width=max(console.width, 200)).print(table)
    console.print("\n".join(goals))
    console.print(f"{elapsed:.0f} s in all, {args.threads} thread(s)")
    write_section("codegen_latency", "\n".join(lines))


if __name__ == "__main__":
    main()
