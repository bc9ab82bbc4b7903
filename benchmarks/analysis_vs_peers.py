"""Analysis speed and correctness on torchvision models: asgnas-ir vs only-train-once vs Torch-Pruning.

    python benchmarks/analysis_vs_peers.py [--models resnet18,...] [--repeats 3] [--budget 20] [--threads 1]

For each model (weights=None, 1x3x224x224) it times, in one process and one after the other:
- ours: `ai.compile(model, x)` + `ai.search_space(graph, mode="prune")`;
- OTO 3.0.1: `OTO(model, dummy_input)` (its trace, dependency graph and node groups, prune mode);
- Torch-Pruning: `DependencyGraph().build_dependency(model, example_inputs=x)`.
Each is the median of `--repeats` runs (fewer when one run takes longer than `--budget` seconds).
Then it checks correctness the way each tool offers: ours with `ai.check` (random 30% of the
groups zeroed, sub-network emitted as code and compared), OTO with `random_set_zero_groups` +
`construct_subnet` and its full vs compressed model. A tool that raises is recorded as failed.
Peers come from the benchmark venv (`make bench`); a missing peer leaves its columns empty.
Writes the `analysis_vs_peers` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402
from benchmarks.peers import available, oto_build, oto_random_subnet_diff, tp_build  # noqa: E402

MODELS = [
    "resnet18", "resnet50", "densenet121", "vgg16_bn", "mobilenet_v3_large", "convnext_tiny", "efficientnet_b0",
    "regnet_y_400mf", "vit_b_16", "swin_t",
]
NOTES: list[str] = []  # full error texts, numbered in the table
TOLERANCE = 1e-4  # DESIGN §4: max |diff| ≤ 1e-4 · max |reference|


def timed(fn: Callable[[], object], repeats: int, budget: float) -> tuple[float | None, str, object]:
    """(median seconds, error text, last result); slow tools get fewer repeats, never fewer than one."""
    times: list[float] = []
    result: object = None
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001  (a peer failing is a result, not a crash)
            NOTES.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            return None, f"{type(exc).__name__} [{len(NOTES)}]", None
        times.append(time.perf_counter() - start)
        if sum(times) > budget:
            break
    return statistics.median(times), "", result


def ours(model: torch.nn.Module, x: torch.Tensor) -> int:
    return len(ai.search_space(ai.compile(model, x), mode="prune").groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0, help="stop repeating a tool once its runs took this long")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every tool (1: the machine is shared)")
    args = parser.parse_args()
    try:
        import torchvision
    except ImportError:
        print("analysis_vs_peers needs torchvision (its models are the subjects); `make bench` installs it. Skipped.")
        return

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    peers = available()
    x = torch.randn(1, 3, 224, 224)
    rows = []
    console = Console()
    for name in args.models.split(","):
        model = getattr(torchvision.models, name)(weights=None).eval()
        ours(model, x)  # warm caches (imports, torch dispatch) for every tool alike
        t_ours, err_ours, groups = timed(lambda m=model: ours(m, x), args.repeats, args.budget)
        t_oto = t_tp = None
        err_oto = err_tp = "not installed"
        oto_instance = None
        # each peer run gets its own copy, made outside the timed region (OTO marks and later zeroes the model)
        if peers["OTO"]:
            copies = iter([copy.deepcopy(model) for _ in range(args.repeats)])
            t_oto, err_oto, oto_instance = timed(lambda c=copies: oto_build(next(c), x), args.repeats, args.budget)
        if peers["Torch-Pruning"]:
            copies = iter([copy.deepcopy(model) for _ in range(args.repeats)])
            t_tp, err_tp, _ = timed(lambda c=copies: tp_build(next(c), x), args.repeats, args.budget)
        report = ai.check(model, x, mode="prune", fraction=0.3, seed=0)
        oto_check = "not installed" if not peers["OTO"] else "failed: " + err_oto if oto_instance is None else ""
        if oto_instance is not None:
            try:
                diff, ref = oto_random_subnet_diff(oto_instance, x)
                oto_check = f"{'ok' if diff <= TOLERANCE * ref else 'MISMATCH'} {diff:.1e}"
            except Exception as exc:  # noqa: BLE001
                NOTES.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
                oto_check = f"failed: {type(exc).__name__} [{len(NOTES)}]"
        rows.append({
            "model": name, "groups": groups, "ours": t_ours, "oto": t_oto, "tp": t_tp, "err_ours": err_ours,
            "err_oto": err_oto, "err_tp": err_tp, "check": f"{'ok' if report.ok else 'FAIL'} {report.max_abs_diff:.1e}",
            "oto_check": oto_check,
        })
        console.print(f"{name}: ours {fmt(t_ours, err_ours)}  OTO {fmt(t_oto, err_oto)}  TP {fmt(t_tp, err_tp)}  "
                      f"check {rows[-1]['check']}  OTO check {oto_check}")

    header = ("model", "groups", "ours ms", "OTO ms", "TP ms", "ours / OTO", "ours / TP", "ours: check", "OTO: check")
    table = Table(title="analysis: compile + search space (ours) vs OTO(model, x) vs TP build_dependency")
    for column in header:
        table.add_column(column)
    lines = [
        "## Analysis speed and correctness vs only-train-once and Torch-Pruning (torchvision, 224x224)",
        "",
        f"Command: `python benchmarks/analysis_vs_peers.py --repeats {args.repeats} --budget {args.budget:g} "
        f"--threads {args.threads}`. Machine: {machine()}; torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{args.threads} torch thread(s) for every tool; OTO {peers['OTO'] or 'not installed'}, Torch-Pruning "
        f"{peers['Torch-Pruning'] or 'not installed'}. Median of up to {args.repeats} runs each, all in one process.",
        "",
        "Ours = `ai.compile` + `ai.search_space(mode=\"prune\")`; OTO = `OTO(model, dummy_input)`; TP = "
        "`DependencyGraph().build_dependency`. Check: ours `ai.check` (30% of groups zeroed at random, generated code vs "
        f"zeroed model), OTO `random_set_zero_groups` + `construct_subnet` (compressed vs full); ok when max |diff| ≤ "
        f"{TOLERANCE:g}·max |reference|. Goal (issue 6): ours ≤ 0.5× OTO and ≤ 2× TP.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        cells = (
            r["model"], str(r["groups"] if r["groups"] is not None else "-"), fmt(r["ours"], r["err_ours"]),
            fmt(r["oto"], r["err_oto"]), fmt(r["tp"], r["err_tp"]), ratio(r["ours"], r["oto"]), ratio(r["ours"], r["tp"]),
            r["check"], r["oto_check"],
        )
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    if NOTES:
        lines += ["", "Failures:", ""] + [f"{i}. {note}" for i, note in enumerate(NOTES, 1)]
    console.print(table)
    for i, note in enumerate(NOTES, 1):
        console.print(f"[{i}] {note}")
    write_section("analysis_vs_peers", "\n".join(lines))


def fmt(seconds: float | None, error: str) -> str:
    return f"{seconds * 1e3:.0f}" if seconds is not None else f"failed: {error}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b is not None else "-"


if __name__ == "__main__":
    main()
