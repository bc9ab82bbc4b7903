"""Analysis speed: compile (torch.fx → IR) and dependency-graph time per model, median of N runs.

    python benchmarks/compile_speed.py [--repeats 5] [--torchvision] [--frontend onnx]

Prints a table and writes the `compile_speed` section of BENCHMARKS.md. With --torchvision (and
torchvision installed) the torchvision models at 224x224 are measured too. With --frontend onnx it
compares instead the fx frontend with the onnx one (torch.onnx.export + lowering, and the lowering
alone) and writes the `compile_speed_onnx` section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.passes.analysis.dependency_graph import build_dependency_graph  # noqa: E402
from benchmarks._report import machine, median_seconds, write_section  # noqa: E402
from tests.models import REPLICAS, example_inputs  # noqa: E402

TORCHVISION = [
    "resnet18", "resnet50", "densenet121", "vgg16_bn", "mobilenet_v3_large", "convnext_tiny", "efficientnet_b0",
    "regnet_y_400mf", "vit_b_16", "swin_t",
]


def cases(with_torchvision: bool) -> list[tuple[str, torch.nn.Module, tuple]]:
    found = [(name, r.build(), example_inputs(r)) for name, r in sorted(REPLICAS.items())]
    if with_torchvision:
        import torchvision

        x = torch.randn(1, 3, 224, 224)
        found += [(f"tv.{n}", getattr(torchvision.models, n)(weights=None).eval(), (x,)) for n in TORCHVISION]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torchvision", action="store_true")
    parser.add_argument("--frontend", choices=["fx", "onnx"], default="fx")
    args = parser.parse_args()
    if args.frontend == "onnx":
        compare_onnx(args)
        return

    rows = []
    for name, model, inputs in cases(args.torchvision):
        graph = ai.compile(model, inputs)
        t_compile = median_seconds(lambda m=model, i=inputs: ai.compile(m, i), args.repeats)
        t_deps = median_seconds(lambda g=graph: build_dependency_graph(g), args.repeats)
        groups = len(build_dependency_graph(graph).groups)
        rows.append((name, len(graph.nodes), groups, t_compile, t_deps))

    scope = "replicas and torchvision models" if args.torchvision else "replicas"
    table = Table(title=f"compile + dependency graph, {scope}, median of {args.repeats} (torch {torch.__version__})")
    for column in ("model", "IR nodes", "channel groups", "compile ms", "dependency graph ms", "total ms"):
        table.add_column(column, justify="left" if column == "model" else "right")
    lines = [
        f"## Analysis speed: compile + dependency graph ({scope})",
        "",
        f"Command: `python benchmarks/compile_speed.py --repeats {args.repeats}"
        + (" --torchvision`" if args.torchvision else "`")
        + f". Machine: {machine()}; torch {torch.__version__}. Median of {args.repeats} runs each.",
        "",
        "| model | IR nodes | channel groups | compile ms | dependency graph ms | total ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, nodes, groups, t_c, t_d in rows:
        cells = (name, str(nodes), str(groups), f"{t_c * 1e3:.1f}", f"{t_d * 1e3:.1f}", f"{(t_c + t_d) * 1e3:.1f}")
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console().print(table)
    write_section("compile_speed" + ("_torchvision" if args.torchvision else ""), "\n".join(lines))


def compare_onnx(args: argparse.Namespace) -> None:
    """fx vs onnx: compile time per model (the onnx column includes torch.onnx.export)."""
    import logging
    import warnings

    from asgnas_ir.frontends.onnx import lower_onnx
    from asgnas_ir.frontends.onnx.export import export_torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    rows = []
    for name, model, inputs in cases(args.torchvision):
        graph = ai.compile(model, inputs, frontend="onnx")
        t_fx = median_seconds(lambda m=model, i=inputs: ai.compile(m, i, frontend="fx"), args.repeats)
        t_onnx = median_seconds(lambda m=model, i=inputs: ai.compile(m, i, frontend="onnx"), args.repeats)
        proto = export_torch(model.eval(), inputs)
        t_lower = median_seconds(lambda p=proto, i=inputs: lower_onnx(p, i), args.repeats)
        rows.append((name, len(graph.nodes), t_fx, t_onnx, t_lower))
    scope = "replicas and torchvision models" if args.torchvision else "replicas"
    headers = ("model", "IR nodes (onnx)", "fx compile ms", "onnx compile ms (export + lower)", "onnx lower only ms")
    table = Table(title=f"compile time fx vs onnx, {scope}, median of {args.repeats} (torch {torch.__version__})")
    for column in headers:
        table.add_column(column, justify="left" if column == "model" else "right")
    lines = [
        f"## Compile time: fx vs onnx frontend ({scope})",
        "",
        f"Command: `python benchmarks/compile_speed.py --frontend onnx --repeats {args.repeats}"
        + (" --torchvision`" if args.torchvision else "`")
        + f". Machine: {machine()}; torch {torch.__version__}. Median of {args.repeats} runs each. The onnx "
        "frontend exports with `torch.onnx.export(dynamo=True)` first, which dominates its time.",
        "",
        "| " + " | ".join(headers) + " |",
        "|---|" + "---:|" * (len(headers) - 1),
    ]
    for name, nodes, t_fx, t_onnx, t_lower in rows:
        cells = (name, str(nodes), f"{t_fx * 1e3:.1f}", f"{t_onnx * 1e3:.1f}", f"{t_lower * 1e3:.1f}")
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console().print(table)
    write_section("compile_speed_onnx" + ("_torchvision" if args.torchvision else ""), "\n".join(lines))


if __name__ == "__main__":
    main()
