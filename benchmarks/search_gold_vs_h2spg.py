"""GOLD's front from one run vs separate H2SPG runs at three sparsity targets, over many seeds (issues 7, 20).

    python benchmarks/search_gold_vs_h2spg.py [--data digits_hard digits] [--seeds 10] [--workers 2]
                                              [--sparsities 0.5 0.75 0.9] [--epochs 30] [--finetune-epochs 5]
                                              [--retrain finetune|scratch] [--cache DIR] [--no-report]

One table per data set (`digits_hard` by default, where accuracy depends on size; plain `digits` on request).
Every seed is a full repetition: the data split, the super-network's initial weights, one GOLD run
and one H2SPG run per sparsity target all use that seed. Seeds × (GOLD + H2SPG runs) are jobs of a
process pool (`--workers`, one torch thread each); `--cache DIR` keeps each job's result as JSON, so
an interrupted run resumes and a rerun with more seeds only computes the new ones.

- **GOLD**: one `run_gold` (SuperResNet, erase mode, the `GoldConfig` defaults apart from `data`,
  `seed`, `finetune_epochs`, `retrain` and `GOLD_SETTINGS` below, i.e. gates normalised per node
  (`normalize`) and GOLD-NAS' log penalty (`penalty="gold"`)): weights and 24 operator-group gates
  train together on 80 % of the training split. Every stable architecture met on the way (and the
  final one) is then re-trained for the same `--finetune-epochs` under `--retrain`: `finetune` (ours,
  the default: from the weights recorded with it, gates as recorded) or `scratch` (GOLD-NAS'
  protocol: fresh weights, open gates at 1), so candidates met early are not handicapped by having
  trained less. The front is chosen on the other 20 % (validation accuracy after re-training).
- **H2SPG**: `run_training` (the `asgnas train` job) on the same super-network and data, erase
  mode, the whole training split, `--epochs` epochs, one run per target group sparsity;
  evaluated as its generated sub-network.

Both report test accuracy on the same held-out 25 % split (`load_split(data, 0.25, seed)`) and exact
FLOPs of the sub-network (`ai.cost`, multiply-add = 2, batch 1). The test set chose nothing.

Comparison at equal FLOPs: H2SPG's test accuracy at F is interpolated linearly in FLOPs between the
two runs of the same seed around F (the nearest run's outside their range). Per seed, each GOLD
front point has Δ = its test accuracy − H2SPG's at its FLOPs. Across seeds the fronts differ, so they
are compared on matched FLOPs points: a grid of `GRID_POINTS` FLOPs budgets spaced geometrically over
the range the H2SPG runs span (median FLOPs per target over seeds); at budget B, GOLD's network is
its front point of highest validation accuracy with FLOPs ≤ B (the validation choice a user would
make; on a front that is the largest point under B), and Δ(B) = its test accuracy − H2SPG's at that
network's FLOPs. Tables give means over seeds with 95 % Student-t intervals.

Goal (issue 20): GOLD's front has ≥ 5 points (mean over seeds) and every matched FLOPs point is
within 0.5 points of H2SPG in the mean over seeds (mean Δ ≥ −0.5). The verdict also says whether the
95 % interval decides it (lower end ≥ −0.5: met beyond noise; upper end < −0.5: missed beyond noise).
Writes `benchmarks/figures/search_gold_vs_h2spg.png` and the `search_gold_vs_h2spg` section of
BENCHMARKS.md unless `--no-report` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from asgnas_ir.backends.torch.gold import GoldConfig, run_gold, split_with_validation  # noqa: E402
from asgnas_ir.backends.torch.trainer import run_training  # noqa: E402
from asgnas_ir.backends.training import TrainConfig  # noqa: E402
from benchmarks._report import ROOT, machine, write_section  # noqa: E402

FIGURE = ROOT / "benchmarks" / "figures" / "search_gold_vs_h2spg.png"
TOLERANCE = 0.5
GOAL_POINTS = 5
GRID_POINTS = 5
# GOLD settings for this benchmark (the GoldConfig defaults otherwise: normalize, penalty "gold",
# ξ 0.01/0.05, c0 2, stable_rounds 1, 8 warm-up rounds). Re-checked under the paper rules (per-node
# normalisation, log penalty, ξ 0.01/0.05, λ counting rule-pruned gates) on digits_hard seed 1, one
# GOLD run each, judged on validation only: these settings gave 61 rounds, 16 candidates and a
# 6-point front spanning 4.5-40 % of the FLOPs (val 67-90 %), covering the 6-12 % where H2SPG's runs
# lie; the GoldConfig defaults (lambda0 0.02, n0 1) with the same rounds and floor ran out of
# rounds at 9.4 % after 70 rounds (front of 5 at 9.4-46 %, val 89-93 %), so they leave H2SPG's
# smaller budgets without a GOLD network. Kept.
GOLD_SETTINGS = {"steps_per_round": 9, "rounds": 70, "lambda0": 0.1, "n0": 2, "flops_floor": 0.02}
TUNING = (
    "Tuning (validation only, digits_hard seed 1, one GOLD run each, re-done for the paper rules): these settings gave "
    "a 6-point front at 4.5-40 % of the FLOPs, covering H2SPG's 6-12 %; the GoldConfig defaults (lambda0 0.02, n0 1) "
    "with the same rounds and floor hit the round limit at 9.4 % (5-point front at 9.4-46 %), leaving H2SPG's "
    "smaller budgets without a GOLD network."
)


def gold_config(data: str, seed: int, args: argparse.Namespace, out: str) -> GoldConfig:
    return GoldConfig(data=data, seed=seed, finetune_epochs=args.finetune_epochs, retrain=args.retrain, out=out, **GOLD_SETTINGS)


# jobs (run in the pool) -----------------------------------------------------------------------------
def job_key(job: tuple[str, int, str], args: argparse.Namespace) -> str:
    data, seed, what = job
    if what == "gold":
        spec = {"gold": GOLD_SETTINGS, "finetune_epochs": args.finetune_epochs, "retrain": args.retrain}
    else:
        spec = {"h2spg": what, "epochs": args.epochs}
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"{data}-s{seed}-{'gold' if what == 'gold' else 'h2spg' + what}-{digest}"


def run_job(job: tuple[str, int, str], args: argparse.Namespace) -> dict[str, Any]:
    """One GOLD run, or one H2SPG run at sparsity `what`; a small JSON-able summary."""
    from rich.console import Console

    torch.set_num_threads(1)
    console = Console(highlight=False, quiet=True)
    data, seed, what = job
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if what == "gold":
            config = gold_config(data, seed, args, f"{tmp}/gold")
            gold = run_gold(config, console=console)
            keys = ("flops", "params", "val_accuracy", "test_accuracy", "round")
            split, full_split = split_with_validation(config)
            steps_per_epoch = math.ceil(len(split.y_train) / config.batch_size)
            return {
                "front": [{k: p[k] for k in keys} for p in gold["front"]],
                "candidates": [{k: c[k] for k in keys} for c in gold["candidates"]],
                "full_flops": gold["full_network"]["flops"], "rounds": gold["rounds"], "stop_reason": gold["stop_reason"],
                "search_seconds": gold["search_seconds"], "finetune_seconds": gold["finetune_seconds"],
                "search_epochs": gold["rounds"] * config.steps_per_round / steps_per_epoch, "tests": len(full_split.y_test),
                "seconds": time.perf_counter() - started,
            }
        base = GoldConfig(data=data, seed=seed)
        config = TrainConfig(
            supernet=base.supernet, data=data, mode="erase", epochs=args.epochs, target_group_sparsity=float(what),
            baseline=False, seed=seed, test_fraction=base.test_fraction, out=f"{tmp}/h2spg",
        )
        report = run_training(config, console=console)
        return {
            "sparsity": float(what), "flops": report["sub_network"]["flops"], "params": report["sub_network"]["params"],
            "test_accuracy": report["sub_network"]["test_accuracy"], "seconds": time.perf_counter() - started,
        }


def _worker(job: tuple[str, int, str], args: argparse.Namespace) -> tuple[tuple[str, int, str], dict[str, Any]]:
    return job, run_job(job, args)


def run_all(args: argparse.Namespace) -> dict[tuple[str, int], dict[str, Any]]:
    """Every (data, seed): {"gold": ..., "runs": [...]}; cached jobs are read, the rest run in the pool."""
    jobs = [(d, s, w) for d in args.data for s in args.seed_list for w in ["gold", *[str(x) for x in args.sparsities]]]
    cache = Path(args.cache) if args.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    done: dict[tuple[str, int, str], dict[str, Any]] = {}
    todo = []
    for job in jobs:
        path = cache / f"{job_key(job, args)}.json" if cache else None
        if path and path.exists():
            done[job] = json.loads(path.read_text())
        else:
            todo.append(job)
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} cached, {len(todo)} to run on {args.workers} workers", flush=True)
    if todo and args.cached_only:
        print("--cached-only: reporting the seeds whose jobs are all cached", flush=True)
        todo = []
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(_worker, job, args) for job in todo]  # GOLD first per seed: the longest job
        for future in as_completed(futures):
            job, result = future.result()
            done[job] = result
            if cache:
                (cache / f"{job_key(job, args)}.json").write_text(json.dumps(result))
            print(f"  done {job}: {result['seconds']:.0f} s", flush=True)
    results = {}
    for data in args.data:
        for seed in args.seed_list:
            keys = [(data, seed, w) for w in ["gold", *[str(x) for x in args.sparsities]]]
            if all(k in done for k in keys):
                results[data, seed] = {"gold": done[keys[0]], "runs": [done[k] for k in keys[1:]]}
    return results


# statistics -------------------------------------------------------------------------------------------
def h2spg_at(flops: float, runs: list[dict[str, Any]]) -> float:
    """H2SPG's test accuracy at `flops`: linear between the runs around it, clamped outside."""
    ordered = sorted(runs, key=lambda r: r["flops"])
    return float(np.interp(flops, [r["flops"] for r in ordered], [r["test_accuracy"] for r in ordered]))


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and the 95 % Student-t interval's half-width (nan with fewer than 2 values)."""
    from scipy import stats

    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    mean = float(a.mean())
    if len(a) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return mean, half, float(a.std(ddof=1))


def fmt(mean: float, half: float, digits: int = 2, sign: str = "+") -> str:
    """`mean [low, high]` (the 95 % interval), or the mean alone without one."""
    if math.isnan(half):
        return f"{mean:{sign}.{digits}f}"
    return f"{mean:{sign}.{digits}f} [{mean - half:{sign}.{digits}f}, {mean + half:{sign}.{digits}f}]"


def analyse(data: str, results: dict[tuple[str, int], dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    seeds = [s for s in args.seed_list if (data, s) in results]
    per_seed = []
    for s in seeds:
        gold, runs = results[data, s]["gold"], results[data, s]["runs"]
        gaps = [p["test_accuracy"] - h2spg_at(p["flops"], runs) for p in gold["front"]]
        lo, hi = min(r["flops"] for r in runs), max(r["flops"] for r in runs)
        inside = [g for p, g in zip(gold["front"], gaps, strict=True) if lo <= p["flops"] <= hi]
        per_seed.append({
            "seed": s, "points": len(gold["front"]), "matched": sum(g >= -TOLERANCE for g in gaps), "inside": len(inside),
            "matched_inside": sum(g >= -TOLERANCE for g in inside), "mean_gap": float(np.mean(gaps)), "min_gap": min(gaps),
            "full": gold["full_flops"], "rounds": gold["rounds"], "candidates": len(gold["candidates"]),
            "h2spg": {r["sparsity"]: r for r in runs}, "gold_seconds": gold["seconds"],
            "h2spg_seconds": sum(r["seconds"] for r in runs),
        })
    full = per_seed[0]["full"]
    medians = {sp: float(np.median([p["h2spg"][sp]["flops"] for p in per_seed])) for sp in args.sparsities}
    grid = np.geomspace(min(medians.values()), max(medians.values()), GRID_POINTS)
    rows = []
    for budget in grid[::-1]:
        gaps, gold_acc, ref_acc, used = [], [], [], []
        for s in seeds:
            front = [p for p in results[data, s]["gold"]["front"] if p["flops"] <= budget]
            if not front:
                continue
            chosen = max(front, key=lambda p: (p["val_accuracy"], p["flops"]))
            reference = h2spg_at(chosen["flops"], results[data, s]["runs"])
            gaps.append(chosen["test_accuracy"] - reference)
            gold_acc.append(chosen["test_accuracy"])
            ref_acc.append(reference)
            used.append(chosen["flops"] / full)
        mean, half, _ = interval(gaps)
        rows.append({"budget": float(budget), "n": len(gaps), "gap": mean, "half": half, "gold": interval(gold_acc),
                     "h2spg": interval(ref_acc), "used": float(np.mean(used)) if used else math.nan})
    points = interval([p["points"] for p in per_seed])
    judged = [r for r in rows if r["n"]]
    worst = min(judged, key=lambda r: r["gap"]) if judged else None
    points_ok = points[0] >= GOAL_POINTS
    gaps_ok = bool(judged) and len(judged) == len(rows) and all(r["gap"] >= -TOLERANCE for r in judged)
    return {"data": data, "seeds": seeds, "per_seed": per_seed, "rows": rows, "points": points, "worst": worst,
            "holds": points_ok and gaps_ok, "points_ok": points_ok, "gaps_ok": gaps_ok, "full": full, "medians": medians}


# report -----------------------------------------------------------------------------------------------
def section(a: dict[str, Any], results: dict[tuple[str, int], dict[str, Any]], args: argparse.Namespace) -> str:
    full, per_seed = a["full"], a["per_seed"]
    n = len(a["seeds"])
    grid_rows = []
    for r in a["rows"]:
        verdict = "—" if not r["n"] else ("yes" if r["gap"] >= -TOLERANCE else "no")
        if r["n"] >= 2 and not math.isnan(r["half"]):
            if r["gap"] - r["half"] >= -TOLERANCE or r["gap"] + r["half"] < -TOLERANCE:
                verdict += " (beyond noise)"
            else:
                verdict += " (interval spans −0.5)"
        gold_mean, gold_half, _ = r["gold"]
        ref_mean, ref_half, _ = r["h2spg"]
        grid_rows.append(
            f"| ≤ {r['budget'] / 1e6:.3f} ({r['budget'] / full:.1%}) | {r['used']:.1%} | {r['n']}/{n} | "
            f"{gold_mean:.2f} ± {gold_half:.2f} | {ref_mean:.2f} ± {ref_half:.2f} | {fmt(r['gap'], r['half'])} | {verdict} |"
        )
    grid_table = (
        "| FLOPs budget: MFLOPs (of full) | GOLD's network, mean FLOPs | seeds | GOLD test acc % | H2SPG at equal FLOPs % "
        "| Δ = GOLD − H2SPG, mean [95 % CI] | within 0.5? |\n|---|---:|---:|---:|---:|---:|---|\n" + "\n".join(grid_rows)
    )
    seed_rows = []
    for p in per_seed:
        h = " / ".join(f"{p['h2spg'][sp]['flops'] / full:.1%}: {p['h2spg'][sp]['test_accuracy']:.2f}" for sp in args.sparsities)
        seed_rows.append(
            f"| {p['seed']} | {p['points']} | {p['matched']} ({p['matched_inside']} of {p['inside']}) | {p['mean_gap']:+.2f} | "
            f"{p['min_gap']:+.2f} | {p['candidates']} | {p['rounds']} | {h} |"
        )
    sparsities = " / ".join(f"{sp:.0%}" for sp in args.sparsities)
    seed_table = (
        "| seed | front points | within 0.5 of H2SPG (inside H2SPG's FLOPs range) | mean Δ over the front | worst Δ | candidates | GOLD rounds "
        f"| H2SPG {sparsities}: FLOPs of full: test acc % |\n|---:|---:|---:|---:|---:|---:|---:|---|\n" + "\n".join(seed_rows)
    )
    pm, ph, _ = a["points"]
    matched = interval([p["matched"] for p in per_seed])
    gold_seconds = sum(p["gold_seconds"] for p in per_seed)
    h2spg_seconds = sum(p["h2spg_seconds"] for p in per_seed)
    any_gold = results[a["data"], a["seeds"][0]]["gold"]
    tests = any_gold["tests"]
    level = float(np.mean([p["test_accuracy"] for s in a["seeds"] for p in results[a["data"], s]["gold"]["front"]])) / 100
    error = 100 * math.sqrt(level * (1 - level) / tests)
    search_epochs = float(np.mean([results[a["data"], s]["gold"]["search_epochs"] for s in a["seeds"]]))
    return f"""### {a['data']} ({n} seeds: {', '.join(map(str, a['seeds']))})

Work: GOLD {gold_seconds:.0f} s in all seeds (search ≈ {search_epochs:.0f} epochs on 80 % of the training split, then {args.finetune_epochs} epochs
per candidate, `retrain={args.retrain}`); H2SPG {len(args.sparsities)} runs × {args.epochs} epochs per seed, {h2spg_seconds:.0f} s in all (seconds in a worker).

Matched FLOPs points (GOLD's validation choice under each budget vs H2SPG of the same seed at that network's FLOPs; mean
over seeds, ± and [ ] are 95 % t intervals):

{grid_table}

Per seed (Δ per front point as in issue 7's rule; H2SPG runs as FLOPs share: test accuracy):

{seed_table}

{goal_line(a)}
Front points within 0.5 points of H2SPG per seed: {fmt(matched[0], matched[1], 1, '')} of {pm:.1f}.
Noise: one standard error of a single test accuracy near {100 * level:.0f} % on {tests} images is {error:.1f} points; the intervals
above are over seeds, which also vary the split and the initial weights.
"""


def lowest_interval_end(a: dict[str, Any], worst_lower: float) -> str:
    """The end of the goal sentence: whether every budget's 95 % interval, not only the worst mean's,
    stays above the tolerance (the worst mean and the lowest interval end can sit at different budgets)."""
    judged = [r for r in a["rows"] if r["n"] >= 2 and not math.isnan(r["half"])]
    if not judged:
        return ")"
    lowest = min(judged, key=lambda r: r["gap"] - r["half"])
    end = lowest["gap"] - lowest["half"]
    if end >= -TOLERANCE:
        return ", and every budget's interval lies above −0.5: beyond noise)"
    where = f"at ≤ {lowest['budget'] / a['full']:.1%} of the FLOPs"
    if lowest["gap"] - lowest["half"] == worst_lower:
        return f"; its interval reaches {end:+.2f}, so noise cannot rule out a miss)"
    return (f"; the lowest interval end is {end:+.2f} {where} (mean {lowest['gap']:+.2f}), {-TOLERANCE - end:.2f} points "
            "past the tolerance, so noise cannot rule out a miss there)")


def goal_line(a: dict[str, Any]) -> str:
    pm, ph, _ = a["points"]
    worst = a["worst"]
    parts = [f"front size {fmt(pm, ph, 1, '')} points (goal ≥ {GOAL_POINTS}: "
             + ("met" if a["points_ok"] else f"short by {GOAL_POINTS - pm:.1f}")
             + (", beyond noise" if not math.isnan(ph) and (pm - ph >= GOAL_POINTS or pm + ph < GOAL_POINTS) else ", interval spans 5" if not math.isnan(ph) else "")
             + ")"]
    if worst is None:
        parts.append("no matched FLOPs point has a GOLD network")
    else:
        lower, upper = worst["gap"] - worst["half"], worst["gap"] + worst["half"]
        shortfall = -TOLERANCE - worst["gap"]
        state = (
            f"met (worst mean Δ {fmt(worst['gap'], worst['half'])} at ≤ {worst['budget'] / a['full']:.1%} of the FLOPs"
            + lowest_interval_end(a, lower)
            if a["gaps_ok"] and shortfall <= 0 else
            f"not met: worst mean Δ {fmt(worst['gap'], worst['half'])} at ≤ {worst['budget'] / a['full']:.1%} of the FLOPs, "
            f"{max(shortfall, 0):.2f} points beyond the −{TOLERANCE} tolerance"
            + (" (the whole interval below −0.5)" if upper < -TOLERANCE else f" (interval reaches {upper:+.2f}, so within noise of the tolerance)")
            + ("" if all(r["n"] for r in a["rows"]) else "; some budgets have no GOLD network in some seeds")
        )
        parts.append(f"equal-FLOPs accuracy {state}")
    return f"**Goal {'met' if a['holds'] else 'not met'} on {a['data']}**: " + "; ".join(parts) + "."


def plot(analyses: list[dict[str, Any]], results: dict[tuple[str, int], dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, len(analyses), figsize=(6.2 * len(analyses), 4.2), squeeze=False)
    for ax, a in zip(axes[0], analyses, strict=True):
        full = a["full"]
        for k, s in enumerate(a["seeds"]):
            gold, runs = results[a["data"], s]["gold"], results[a["data"], s]["runs"]
            front = sorted(gold["front"], key=lambda p: p["flops"])
            ordered = sorted(runs, key=lambda r: r["flops"])
            ax.plot([100 * p["flops"] / full for p in front], [p["test_accuracy"] for p in front], "o-", color="C0", alpha=0.35, ms=3,
                    label="GOLD front (chosen on val), one line per seed" if k == 0 else None)
            ax.plot([100 * r["flops"] / full for r in ordered], [r["test_accuracy"] for r in ordered], "s--", color="C3", alpha=0.35, ms=3,
                    label="H2SPG, one run per target, per seed" if k == 0 else None)
        rows = [r for r in a["rows"] if r["n"]]
        ax.errorbar([100 * r["used"] for r in rows], [r["gold"][0] for r in rows], yerr=[r["gold"][1] for r in rows], fmt="o", color="C0",
                    capsize=3, lw=2, label="GOLD under each budget, mean ± 95 % CI")
        ax.errorbar([100 * r["used"] for r in rows], [r["h2spg"][0] for r in rows], yerr=[r["h2spg"][1] for r in rows], fmt="s", color="C3",
                    capsize=3, lw=2, label="H2SPG at the same FLOPs, mean ± 95 % CI")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("FLOPs (% of the super-network, log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"SuperResNet on {a['data']}, {len(a['seeds'])} seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["digits_hard"], choices=["digits", "digits_hard"])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (ignored with --seed-list)")
    parser.add_argument("--seed-list", type=int, nargs="+", help="exactly these seeds")
    parser.add_argument("--workers", type=int, default=2, help="process pool size (one torch thread each)")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    parser.add_argument("--epochs", type=int, default=30, help="H2SPG epochs per run")
    parser.add_argument("--finetune-epochs", type=int, default=5, help="GOLD: epochs every candidate is re-trained")
    parser.add_argument("--retrain", choices=["finetune", "scratch"], default="finetune", help="GOLD's candidate protocol (GoldConfig.retrain)")
    parser.add_argument("--cache", help="folder for per-job JSON results (resume; reuse seeds)")
    parser.add_argument("--cached-only", action="store_true", help="run nothing: report the seeds complete in --cache")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    args.seed_list = args.seed_list or list(range(args.seeds))
    torch.set_num_threads(1)

    started = time.perf_counter()
    results = run_all(args)
    wall = time.perf_counter() - started
    analyses = [analyse(d, results, args) for d in args.data if any(k[0] == d for k in results)]
    if not analyses:
        raise SystemExit("no seed has all its jobs done")
    sections = [section(a, results, args) for a in analyses]
    for text in sections:
        print(text, flush=True)
    if args.no_report:
        return
    plot(analyses, results)
    settings = ", ".join(f"{k} {v}" for k, v in GOLD_SETTINGS.items())
    base = GoldConfig(**{k: v for k, v in GOLD_SETTINGS.items()})
    verdict = "; ".join(goal_line(a).replace("**", "") for a in analyses)
    seeds_note = f"seeds {', '.join(map(str, analyses[0]['seeds']))}"
    shown = [a for a in sys.argv[1:] if a != "--cached-only"]
    if "--cache" in shown:  # where results were kept is no part of the command to reproduce them
        del shown[shown.index("--cache") : shown.index("--cache") + 2]
    command = "python benchmarks/search_gold_vs_h2spg.py" + (f" {' '.join(shown)}" if shown else "")
    worker = sum(p["gold_seconds"] + p["h2spg_seconds"] for a in analyses for p in a["per_seed"])
    protocol = (
        "fine-tunes every candidate for the same {e} epochs from the weights recorded with it (gates as recorded, pruned "
        "groups at zero; our protocol, not GOLD-NAS')"
        if args.retrain == "finetune" else
        "re-trains every candidate's architecture for {e} epochs from fresh weights with its open gates at 1 (GOLD-NAS' "
        "protocol, with far fewer epochs than its 600)"
    ).format(e=args.finetune_epochs)
    missing = "" if len(analyses[0]["seeds"]) == len(args.seed_list) else f" of the {len(args.seed_list)} requested, the others unfinished"
    wall_note = f", {wall / 60:.0f} min wall clock" if wall > 0.5 * worker / args.workers else ""
    body = f"""## Search: GOLD's front from one run vs H2SPG at three sparsity targets, over seeds

Command: `{command}` ({len(analyses[0]['seeds'])} seeds{missing}; {worker / 60:.0f} min of worker time in {args.workers} worker processes{wall_note}).
Machine: {machine()}; torch {torch.__version__} (1 thread per worker).

Protocol. Super-network: SuperResNet (24 operator groups), erase mode; every seed repeats everything (data split,
initial weights, GOLD and H2SPG runs); {seeds_note}. GOLD as GOLD-NAS' code prunes: gates normalised per node
(`normalize={base.normalize}`), GOLD-NAS' log penalty (`penalty="{base.penalty}"`), ξ_min/ξ_max {base.xi_min}/{base.xi_max},
λ relaxed by the count of gates the rule pruned; `GoldConfig` defaults except {settings} (c0 {base.c0},
stable_rounds {base.stable_rounds}, {base.warmup_rounds} warm-up rounds, rounds of {base.steps_per_round} batches ≈ half an epoch).
{TUNING} It trains on 80 % of the training split, then {protocol}, and chooses the front on the other 20 % (validation accuracy
after re-training; `retrain={args.retrain}`). H2SPG (`asgnas train` defaults) trains on the whole training split for {args.epochs} epochs
per run and target. Test accuracy on the seed's held-out 25 % (450 images on digits_hard: one image = 0.22 points),
which chose nothing. Matched FLOPs points: {GRID_POINTS} budgets spaced geometrically over the FLOPs H2SPG's runs span; under
each, GOLD's front point of highest validation accuracy, compared with H2SPG of the same seed interpolated linearly
in FLOPs to that network's FLOPs. Goal (issue 20): ≥ {GOAL_POINTS} front points and mean Δ ≥ −{TOLERANCE} at every matched point.

{chr(10).join(sections)}
Result: {verdict}

![GOLD vs H2SPG](benchmarks/figures/{FIGURE.name})
"""
    write_section("search_gold_vs_h2spg", body)


if __name__ == "__main__":
    main()
