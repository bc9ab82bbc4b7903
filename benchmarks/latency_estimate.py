"""How well a latency table predicts the measured latency of generated sub-networks.

    python benchmarks/latency_estimate.py [--device cpu] [--dtype float32] [--batches 1 32] [--tv-batches 1]
                                          [--fractions 0.25 0.5 0.75] [--repeats 10] [--align 1] [--seed 1]
                                          [--no-torchvision] [--json FILE]

For each model and batch: measure `ai.latency_table` (no cache), then for each fraction zero a random
valid selection of prune-mode groups (`ai.random_zero_groups`, seed 1: not the table's calibration
selections, which use seed 0), build `ai.subnet`, write it with `ai.codegen` and time the generated
code with the same timer the table uses. Prints, per selection, the measured sub-network latency,
the table's estimate and its relative error, next to the error of the FLOPs-proportional guess
(full latency x FLOPs ratio), which is what ranking by FLOPs assumes. The JSON rows also hold the
error of a constant remainder (the table's layers plus the full model's remainder, unscaled).

Models: the replicas resnet_bottleneck, mobilenet_v2 and vit_encoder (1x3x32x32) and, when
torchvision imports, resnet18 at 1x3x224x224 (batch 1 unless --tv-batches says more).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch.latency import _sizes, generated_model_ms, resolve_device, resolve_dtype  # noqa: E402
from tests.models import REPLICAS, example_inputs  # noqa: E402


def cases(args: argparse.Namespace) -> list[tuple[str, ai.Graph, list[int]]]:
    out = []
    for name in ("resnet_bottleneck", "mobilenet_v2", "vit_encoder"):
        replica = REPLICAS[name]
        out.append((name, ai.compile(replica.build(), example_inputs(replica)), args.batches))
    if not args.no_torchvision:
        try:
            import torchvision
        except ImportError:
            return out
        model = torchvision.models.resnet18().eval()
        out.append(("resnet18", ai.compile(model, torch.randn(1, 3, 224, 224)), args.tv_batches))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--tv-batches", type=int, nargs="+", default=[1])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--align", type=int, default=1, help="align of the random selections (the table's grid is aligned to 8)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the selections (the table calibrates on seed 0 at 0.5)")
    parser.add_argument("--no-torchvision", action="store_true")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    console = Console()
    table = Table(title=f"latency table estimates vs measured generated sub-networks ({device}, {args.dtype}, "
                        f"{torch.get_num_threads()} thread(s))")
    for column in ("model", "batch", "fraction", "full ms", "sub ms", "estimate ms", "error", "FLOPs guess error", "profile s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = []
    for name, graph, batches in cases(args):
        space = ai.search_space(graph, "prune")
        flops_full = ai.cost(graph).flops
        for batch in batches:
            started = time.perf_counter()
            lat = ai.latency_table(graph, device, dtype=args.dtype, batch=batch, repeats=args.repeats, cache=False)
            profile_s = time.perf_counter() - started
            sizes, _ = _sizes(graph, batch)
            for fraction in args.fractions:
                zero = ai.random_zero_groups(graph, space, fraction, seed=args.seed, align=args.align)
                sub = ai.subnet(graph, space, zero, align=args.align)
                measured = generated_model_ms(sub, device, dtype, sizes, 3, args.repeats)
                estimate = lat.estimate(graph, space, zero)
                flops_guess = lat.full_ms * ai.cost(sub).flops / flops_full
                row = {
                    "model": name, "batch": batch, "fraction": fraction, "full_ms": lat.full_ms, "sub_ms": measured,
                    "estimate_ms": estimate, "error": estimate / measured - 1, "flops_error": flops_guess / measured - 1,
                    "profile_s": profile_s, "remainder_fixed_ms": lat.remainder_fixed_ms, "remainder_scaled_ms": lat.remainder_scaled_ms,
                    "calibration": [(p.rest, p.ms, p.profiled_ms) for p in lat.calibration],
                    "constant_error": (lat.remainder_ms + lat.profiled_ms(lat.select(graph, space, zero))) / measured - 1,
                }
                rows.append(row)
                table.add_row(name, str(batch), f"{fraction:.2f}", f"{lat.full_ms:.3f}", f"{measured:.3f}", f"{estimate:.3f}",
                              f"{row['error']:+.1%}", f"{row['flops_error']:+.1%}", f"{profile_s:.1f}")
    console.print(table)
    errors = [abs(r["error"]) for r in rows]
    flops_errors = [abs(r["flops_error"]) for r in rows]
    console.print(f"mean |error|: table {sum(errors) / len(errors):.1%}, FLOPs guess {sum(flops_errors) / len(flops_errors):.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
