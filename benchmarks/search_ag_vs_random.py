"""AG search vs random search on digits: best test accuracy reached vs number of evaluations.

    python benchmarks/search_ag_vs_random.py [--seeds 0 1] [--budget 200] [--workers 2] [--no-report]

Both searchers walk the erase-mode search space of `super_resnet` (24 operator groups: four
candidate operators in each of six residual blocks) with the same evaluator: every candidate is
cut from the super-network trained once per search (10 epochs of SGD, inherited weights), emitted
as PyTorch code, trained one more epoch and scored on a validation part carved from the training
images. The number reported after n evaluations is the *test* accuracy of the architecture with
the best *validation* accuracy among the first n (what a user of the search would ship). Seeds fix
the data split, the super-network's initial weights and each searcher's choices.

The goal stated in issue 7 is AG after 50 evaluations ≥ random after 200; the table says per seed
whether it holds. Writes the `search_ag_vs_random` section of BENCHMARKS.md and
`benchmarks/figures/search_ag_vs_random.png` unless `--no-report` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402

from asgnas_ir.backends.search.ag import run_ag_search  # noqa: E402
from asgnas_ir.backends.search.random_search import run_random_search  # noqa: E402
from benchmarks._report import ROOT, machine, write_section  # noqa: E402

SUPERNET = "super_resnet"
CHECKPOINTS = (16, 50, 100, 200)
EVALUATOR = {"epochs": 1, "inherit": True, "supernet_epochs": 10}


def run(searcher: str, seed: int, budget: int, workers: int, folder: Path) -> dict[str, Any]:
    config = {"supernet": SUPERNET, "budget": budget, "seed": seed, "evaluator": EVALUATOR, "out": str(folder / searcher)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{searcher}.json"
    path.write_text(json.dumps(config))
    options = SimpleNamespace(out=None, resume=False, workers=workers, backend="process" if workers > 1 else "inline",
                              ray_address=None)
    runner = run_ag_search if searcher == "ag" else run_random_search
    return runner(path, options, console=None)


def accuracy_at(result: dict[str, Any], n: int, which: str = "test_accuracy") -> float | None:
    """`which` accuracy of the best-by-validation architecture among the first n evaluations."""
    curve = result["curve"]
    return curve[n - 1][which] if len(curve) >= n else None


def plot(results: dict[str, list[dict[str, Any]]], seeds: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, which, title in zip(axes, ("val_accuracy", "test_accuracy"), ("validation (what is searched)", "test (reported)"),
                                strict=True):
        low = 100.0
        for color, (name, runs) in zip(("C0", "C1"), results.items(), strict=False):
            for seed, result in zip(seeds, runs, strict=True):
                curve = [p[which] for p in result["curve"]]
                low = min(low, min(curve[15:]))
                ax.step(range(1, len(curve) + 1), curve, where="post", color=color, alpha=0.85,
                        linestyle="-" if seed == seeds[0] else "--", label=f"{name}, seed {seed}")
        ax.set_ylim(low - 1, 100)
        ax.set_xlabel("architectures evaluated")
        ax.set_title(f"best-by-validation architecture: {title}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"AG vs random search, {SUPERNET} on digits", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    console = Console(highlight=False)
    results: dict[str, list[dict[str, Any]]] = {"ag": [], "random": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asgnas-bench-search-") as tmp:
        for seed in args.seeds:
            for searcher in results:
                t0 = time.perf_counter()
                result = run(searcher, seed, args.budget, args.workers, Path(tmp) / f"seed{seed}")
                results[searcher].append(result)
                console.print(f"{searcher} seed {seed}: {len(result['evaluations'])} evaluations in "
                              f"{time.perf_counter() - t0:.0f} s, best test {result['best']['test_accuracy']:.2f}%")
    total = time.perf_counter() - started
    checkpoints = [n for n in CHECKPOINTS if n <= args.budget]

    header = "| searcher | accuracy | seed | " + " | ".join(f"@{n}" for n in checkpoints) + " |"
    lines = [header, "|" + " --- |" * (len(checkpoints) + 3)]
    for which, label in (("test_accuracy", "test"), ("val_accuracy", "val")):
        for searcher, runs in results.items():
            for seed, result in zip(args.seeds, runs, strict=True):
                cells = " | ".join(f"{accuracy_at(result, n, which):.2f}" for n in checkpoints)
                lines.append(f"| {searcher} | {label} | {seed} | {cells} |")
            means = [statistics.mean(accuracy_at(r, n, which) for r in runs) for n in checkpoints]
            lines.append(f"| {searcher} | {label} | mean | " + " | ".join(f"**{m:.2f}**" for m in means) + " |")
    verdicts = []
    for seed, ag, rand in zip(args.seeds, results["ag"], results["random"], strict=True):
        a50, r_end = accuracy_at(ag, 50), accuracy_at(rand, checkpoints[-1])
        if a50 is None or r_end is None:
            continue
        verdicts.append(f"seed {seed}: AG@50 {a50:.2f}% {'≥' if a50 >= r_end else '<'} random@{checkpoints[-1]} {r_end:.2f}%")
    holds = sum("≥" in v for v in verdicts)
    val_holds = sum(
        accuracy_at(ag, 50, "val_accuracy") >= accuracy_at(rand, checkpoints[-1], "val_accuracy")
        for ag, rand in zip(results["ag"], results["random"], strict=True)
        if len(ag["curve"]) >= 50 and len(rand["curve"]) >= checkpoints[-1]
    )
    best_full = results["ag"][0]["supernet"]
    body = "\n".join([
        "## AG vs random search (issue 7)",
        "",
        f"`python benchmarks/search_ag_vs_random.py --seeds {' '.join(map(str, args.seeds))} --budget {args.budget} "
        f"--workers {args.workers}` ({machine()}; {total / 60:.1f} min in all).",
        "",
        f"Search space: erase mode of `{SUPERNET}` ({best_full['operator_groups']} operator groups, full network "
        f"{best_full['flops']:,} FLOPs). Evaluator (same for both): sub-network of the super-network trained once "
        f"({EVALUATOR['supernet_epochs']} epochs), generated as PyTorch code, trained {EVALUATOR['epochs']} epoch, "
        "selected by validation accuracy (20 % of the training images), reported by test accuracy (25 % held out). "
        "Cells: accuracy (%) of the best-by-validation architecture after n evaluations: its test accuracy "
        "(the figure the goal is about), then the validation accuracy the searchers maximise. "
        "AG: 16 random, then rounds of 16 chosen by the surrogate out of 100 generated candidates; "
        "both searchers start from the same 16 random architectures.",
        "",
        *lines,
        "",
        f"Goal AG@50 ≥ random@{checkpoints[-1]}: holds for {holds} of {len(verdicts)} seed(s) ({'; '.join(verdicts)}). "
        f"On validation accuracy, the objective both searchers maximise, it holds for {val_holds} of {len(verdicts)}.",
        "",
        "Read with care: one validation image is 0.37 points and one test image 0.22 points, so the test columns "
        "differ by a handful of images, and the best-by-validation test accuracy can fall as more architectures "
        "are seen (a luckier validation score wins). The validation rows show the search itself: after its "
        "first round AG samples almost only near-full, high-accuracy architectures, while random search spreads "
        "over all sizes.",
        "",
        "![AG vs random](benchmarks/figures/search_ag_vs_random.png)",
    ])
    console.print(body)
    if not args.no_report:
        plot(results, args.seeds, ROOT / "benchmarks" / "figures" / "search_ag_vs_random.png")
        write_section("search_ag_vs_random", body)


if __name__ == "__main__":
    main()
