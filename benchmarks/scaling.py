"""Scaling with depth: analysis time of ours, OTO and Torch-Pruning on generated residual networks.

    python benchmarks/scaling.py [--depths 8,32,128,512] [--repeats 5] [--budget 30] [--threads 1] [--profile] [--no-write]

Each network is a stem conv, N basic residual blocks (conv-bn-relu-conv-bn, identity add, relu) at a
fixed width of 16 channels, then global pooling and a linear head, on a 1x3x32x32 input. Per depth it
times, median of several runs:

- ours: `ai.compile(model, x)` + `ai.search_space(graph, mode="prune")`, and each part alone;
- OTO: `benchmarks.peers.oto_build(model, x)`;
- Torch-Pruning: `benchmarks.peers.tp_build(model, x)`.

A run that takes long gets fewer repeats (at most --budget seconds per cell after the first run). A
peer that is missing or raises is recorded as `failed: <reason>` in its cells. Time against depth is
fitted on a log-log scale per tool; the slope is the growth exponent (1.0 = linear). With --profile,
ours is run once under cProfile on the deepest network and the top functions are printed.

Writes `benchmarks/figures/scaling.png` and the `scaling` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import math
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from benchmarks._report import ROOT, machine, write_section  # noqa: E402
from benchmarks.peers import available, oto_build, tp_build  # noqa: E402

WIDTH = 16
FIGURE = ROOT / "benchmarks" / "figures" / "scaling.png"
TOOLS = ("ours", "OTO", "Torch-Pruning")


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus the identity, then relu: the width never changes, so every block's
    output joins one long chain of tied channels (the case a dependency analysis must not blow up on)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + x)


def residual_net(blocks: int, width: int = WIDTH, classes: int = 10) -> nn.Module:
    """Stem, `blocks` basic blocks, pool and head, as one flat nn.Sequential (no nesting beyond the
    block itself, so module-tree depth stays constant and only the graph length grows)."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    layers += [BasicBlock(width) for _ in range(blocks)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
    return nn.Sequential(*layers).eval()


@dataclass
class Cell:
    """One tool at one depth: the median in seconds, or why it has none."""

    seconds: float | None = None
    cpu_seconds: float | None = None
    runs: int = 0
    error: str | None = None
    warning: str | None = None
    parts: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        return f"failed: {self.error}" if self.error else f"{self.seconds * 1e3:.1f}"  # type: ignore[operator]


def short_reason(exc: BaseException) -> str:
    """One line, short enough for a table cell; markdown pipes would break the table."""
    first = (str(exc).strip().splitlines() or [""])[0].replace("|", "/")
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return reason if len(reason) <= 80 else reason[:77] + "..."


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call. CPU time is kept too because this machine is shared: other
    processes stretch wall time at random, and that noise alone can bend a fitted exponent."""
    # A collection triggered by the previous run's garbage would land in this one's time.
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(fn: Callable[[], object], repeats: int, budget: float) -> Cell:
    """Median of up to `repeats` runs; after the first, only as many as fit in `budget` seconds,
    so a slow tool at the deepest network does not stall the whole benchmark."""
    # A peer may warn and carry on with a partial analysis (Torch-Pruning caps its shape recursion),
    # which the reader should see next to its time.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            first = timed(fn)
        except (Exception, RecursionError) as exc:  # a peer failing is a result, not a crash
            return Cell(error=short_reason(exc))
        more = min(repeats - 1, int(budget / max(first[0], 1e-9)))
        samples = [first] + [timed(fn) for _ in range(max(more, 0))]
    return Cell(
        seconds=statistics.median(w for w, _ in samples),
        cpu_seconds=statistics.median(c for _, c in samples),
        runs=len(samples),
        warning=str(caught[0].message).strip().splitlines()[0][:100] if caught else None,
    )


def measure_ours(model: nn.Module, x: torch.Tensor, repeats: int, budget: float) -> Cell:
    """compile and search_space timed separately inside each run, so the parts' medians come from
    the same runs as the total."""
    totals: list[float] = []
    cpus: list[float] = []
    compiles: list[float] = []
    spaces: list[float] = []

    def one() -> None:
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        graph = ai.compile(model, x)
        mid = time.perf_counter()
        ai.search_space(graph, mode="prune")
        end = time.perf_counter()
        cpus.append(time.process_time() - cpu)
        compiles.append(mid - start)
        spaces.append(end - mid)
        totals.append(end - start)

    try:
        one()
        more = min(repeats - 1, int(budget / max(totals[0], 1e-9)))
        for _ in range(max(more, 0)):
            one()
    except Exception as exc:
        return Cell(error=short_reason(exc))
    parts = {"compile": statistics.median(compiles), "search space": statistics.median(spaces)}
    return Cell(seconds=statistics.median(totals), cpu_seconds=statistics.median(cpus), runs=len(totals), parts=parts)


def growth_exponent(depths: list[int], seconds: list[float | None]) -> tuple[float | None, float | None]:
    """Least-squares slope of log(time) on log(depth) over every measured depth, and the slope of
    the last segment alone: a fixed start-up cost flattens the overall fit, so super-linear growth
    shows first between the two deepest networks."""
    points = [(d, s) for d, s in zip(depths, seconds, strict=True) if s is not None and s > 0]
    if len(points) < 2:
        return None, None
    logs = np.log([[d, s] for d, s in points])
    overall = float(np.polyfit(logs[:, 0], logs[:, 1], 1)[0])
    (d0, s0), (d1, s1) = points[-2], points[-1]
    return overall, math.log(s1 / s0) / math.log(d1 / d0)


def fmt_exp(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def ratio(ours: Cell, peer: Cell) -> str:
    if ours.seconds is None or peer.seconds is None:
        return "n/a"
    return f"{ours.seconds / peer.seconds:.2f}"


def plot(depths: list[int], series: dict[str, list[float | None]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on benchmark machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for (name, seconds), marker in zip(series.items(), "osv^D", strict=False):
        points = [(d, s * 1e3) for d, s in zip(depths, seconds, strict=True) if s is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker=marker, label=name, linestyle="--" if name.startswith("ours:") else "-")
    # A linear reference through ours' first point makes super-linear growth visible at a glance.
    base = series["ours"][0]
    if base is not None:
        ax.plot(depths, [base * 1e3 * d / depths[0] for d in depths], color="grey", linewidth=0.8, label="linear reference")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("residual blocks")
    ax.set_ylabel("analysis time (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=120)
    plt.close(fig)


def profile_ours(model: nn.Module, x: torch.Tensor, top: int) -> str:
    """cProfile of one compile + search_space, top functions by cumulative and by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    graph = ai.compile(model, x)
    ai.search_space(graph, mode="prune")
    profiler.disable()
    out = io.StringIO()
    for key in ("cumulative", "tottime"):
        out.write(f"--- sorted by {key} ---\n")
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="8,32,128,512", help="comma-separated block counts")
    parser.add_argument("--repeats", type=int, default=5, help="runs per cell at most (median taken)")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per cell for the runs after the first")
    parser.add_argument("--profile", action="store_true", help="cProfile ours on the deepest network")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see the note in main)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md and the PNG alone")
    args = parser.parse_args()
    depths = sorted({int(d) for d in args.depths.split(",") if d.strip()})
    # Every tool runs the network forward (fx shape propagation, jit trace, TP's forward hooks). On a
    # small shared machine torch's default thread pool fights other processes: one 16-channel conv
    # took 30x longer with 2 threads than with 1, which buried the analysis cost in scheduling noise.
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    versions = available()

    # Imports and lazy first-call set-up (fx tracer, OTO's onnx aliases, TP's registries) would
    # otherwise be charged to the smallest depth and bend the fit, so each tool runs once untimed.
    warm = residual_net(2)
    builders: dict[str, Callable[[nn.Module], object]] = {
        "OTO": lambda m: oto_build(m, x),
        "Torch-Pruning": lambda m: tp_build(m, x),
    }
    ai.search_space(ai.compile(warm, x), mode="prune")
    for build in builders.values():
        with contextlib.suppress(Exception):  # the timed runs record a failure per depth
            build(warm)

    results: dict[int, dict[str, Cell]] = {}
    info: dict[int, tuple[int, int]] = {}
    wall = time.perf_counter()
    for depth in depths:
        model = residual_net(depth)
        graph = ai.compile(model, x)
        info[depth] = (len(graph.nodes), len(ai.search_space(graph, mode="prune").groups))
        del graph
        row = {"ours": measure_ours(model, x, args.repeats, args.budget)}
        for name, build in builders.items():
            # Each peer gets its own fresh copy: a tool that hooks or rewrites the module must not
            # change what the next tool sees.
            fresh = residual_net(depth)
            row[name] = measure(lambda b=build, m=fresh: b(m), args.repeats, args.budget)
        results[depth] = row
        print(f"depth {depth}: " + ", ".join(f"{t} {c.text()} ({c.runs} runs)" for t, c in row.items()), flush=True)
    wall = time.perf_counter() - wall

    series: dict[str, list[float | None]] = {t: [results[d][t].seconds for d in depths] for t in TOOLS}
    for part in ("compile", "search space"):
        series[f"ours: {part}"] = [results[d]["ours"].parts.get(part) for d in depths]
    exponents = {name: growth_exponent(depths, s) for name, s in series.items()}
    cpu_exponents = {t: growth_exponent(depths, [results[d][t].cpu_seconds for d in depths])[0] for t in TOOLS}

    headers = ("blocks", "IR nodes", "groups", "ours ms", "compile ms", "search space ms", "OTO ms", "TP ms",
               "ours/OTO", "ours/TP", "ours µs/block", "runs (ours/OTO/TP)")
    rows = []
    for d in depths:
        ours, oto, tp = (results[d][t] for t in TOOLS)
        per_block = f"{ours.seconds * 1e6 / d:.0f}" if ours.seconds is not None else "n/a"
        parts = [f"{ours.parts[p] * 1e3:.1f}" if p in ours.parts else "n/a" for p in ("compile", "search space")]
        rows.append((str(d), str(info[d][0]), str(info[d][1]), ours.text(), *parts, oto.text(), tp.text(),
                     ratio(ours, oto), ratio(ours, tp), per_block, f"{ours.runs}/{oto.runs}/{tp.runs}"))
    table = ["| " + " | ".join(headers) + " |", "|" + "---:|" * len(headers)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    notes = [f"- {t} at {d} blocks warned: \"{results[d][t].warning}\"" for d in depths for t in TOOLS
             if results[d][t].warning]
    fits = ["| tool | exponent (fit, wall) | exponent (last two depths, wall) | exponent (fit, CPU time) |",
            "|---|---:|---:|---:|"]
    fits += [f"| {name} | {fmt_exp(a)} | {fmt_exp(b)} | {fmt_exp(cpu_exponents.get(name))} |"
             for name, (a, b) in exponents.items()]

    print()
    print("\n".join(table))
    if notes:
        print("\n".join(notes))
    print()
    print("\n".join(fits))
    print(f"\nmeasurement wall time: {wall:.1f} s")

    if args.profile:
        print(profile_ours(residual_net(depths[-1]), x, top=30))

    if args.no_write:
        return
    title = f"analysis time vs depth, width {WIDTH}, 1x3x32x32 (torch {torch.__version__})"
    plot(depths, series, title)
    peers = ", ".join(f"{n} {v or 'not installed'}" for n, v in versions.items())
    command = f"python benchmarks/scaling.py --depths {','.join(map(str, depths))} --repeats {args.repeats}"
    if args.budget != 30.0:
        command += f" --budget {args.budget:g}"
    if args.threads != 1:
        command += f" --threads {args.threads}"
    lines = [
        "## Scaling with depth: ours vs OTO vs Torch-Pruning (generated residual networks)",
        "",
        f"Command: `{command}`. Machine: {machine()}; torch {torch.__version__}; {peers}.",
        "",
        f"Networks: stem conv, N basic residual blocks (conv-bn-relu-conv-bn + identity, relu), width {WIDTH}, "
        "global pool + linear head, input 1x3x32x32. ours = `ai.compile` + `ai.search_space(mode=\"prune\")`; "
        "OTO = `OTO(model, x)`; TP = `DependencyGraph().build_dependency(model, x)`. Median of the runs shown "
        f"(at most {args.repeats}; slow cells get fewer so each stays within {args.budget:g} s). "
        f"torch intra-op threads: {args.threads} (all tools). Ratios below 1 mean ours is faster.",
        "",
        *table,
        "",
        *([*notes, ""] if notes else []),
        "Growth exponent: slope of a least-squares fit of log(time) on log(blocks); 1.0 is linear. The CPU-time "
        "column fits the process CPU time of the same runs, which other load on the machine disturbs less.",
        "",
        *fits,
        "",
        f"![analysis time vs residual blocks](benchmarks/figures/{FIGURE.name})",
    ]
    write_section("scaling", "\n".join(lines))
    print(f"wrote {FIGURE.relative_to(ROOT)} and the scaling section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
