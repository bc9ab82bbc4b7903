"""The `asgnas` command line (DESIGN §4).

Exit codes: 0 success, 1 a check ran and failed, 2 bad usage or a model/IR asgnas-ir cannot
handle (the message goes to stderr as one paragraph, never a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asgnas_ir.errors import AsgnasError, SpecError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _load_spec_model(args: argparse.Namespace) -> tuple[Any, tuple]:
    from asgnas_ir.spec import load_model, make_torch_inputs, parse_kwargs

    model = load_model(args.spec, parse_kwargs(args.kwargs))
    from asgnas_ir.frontends import is_torch_module

    if is_torch_module(model):
        if not args.input:
            raise SpecError("a PyTorch model needs --input SHAPE (e.g. --input 1,3,224,224) for each forward argument")
        return model, make_torch_inputs(args.input, args.seed)
    from asgnas_ir.frontends import is_keras_model

    keras_like = is_keras_model(model) or str(model).endswith(".keras")
    if args.input and (str(model).endswith(".onnx") or keras_like):  # else the declared input shapes (channels-last for Keras)
        from asgnas_ir.spec import make_numpy_inputs

        return model, make_numpy_inputs(args.input, args.seed)
    return model, ()


def cmd_compile(args: argparse.Namespace) -> int:
    import asgnas_ir as ai

    model, inputs = _load_spec_model(args)
    graph = ai.compile(model, inputs, frontend=args.frontend, on_unsupported=args.on_unsupported)
    path = graph.save(args.output)
    _console().print(f"wrote {path} ({len(graph.nodes)} nodes, {len(graph.params)} params) and its .safetensors weights")
    return EXIT_OK


def cmd_passes(args: argparse.Namespace) -> int:
    from rich.table import Table

    import asgnas_ir as ai

    table = Table("pass", "kind", "requires", "description")
    for info in ai.list_passes():
        table.add_row(info.name, info.kind, ", ".join(info.requires) or "-", info.description)
    _console().print(table)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    import asgnas_ir as ai
    from asgnas_ir.ir.serialize import load_graph
    from asgnas_ir.pass_manager import PassResult, get_pass
    from asgnas_ir.spec import parse_kwargs

    cls = get_pass(args.pass_name)
    graph = load_graph(args.ir, require_weights=cls.kind == "codegen")
    options = parse_kwargs(args.options)
    if cls.kind == "codegen":
        if not args.output:
            raise SpecError(f"pass '{cls.name}' writes files: give the folder with -o DIR")
        files = ai.run_pass(cls.name, graph, out_dir=args.output, **options)
        for path in files:
            print(path)
        return EXIT_OK
    result = ai.run_pass(cls.name, graph, **options)
    if isinstance(result, PassResult):
        if not args.output:
            raise SpecError(f"pass '{cls.name}' produces a graph: give the file with -o OUT.json")
        result.graph.save(args.output)
        print(f"wrote {args.output} (modified: {result.modified})")
        return EXIT_OK
    text = result.model_dump_json(indent=1)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text)
    return EXIT_OK


def cmd_space(args: argparse.Namespace) -> int:
    from rich.table import Table

    import asgnas_ir as ai

    graph = ai.load(args.ir)
    space = ai.search_space(graph, mode=args.mode)
    if args.json:
        print(space.model_dump_json(indent=1))
        return EXIT_OK
    total = ai.cost(graph)
    table = Table(title=f"{graph.name}: {len(space.groups)} {args.mode}-mode groups", show_lines=False)
    for column in ("id", "kind", "channels", "parent", "params", "FLOPs", "nodes"):
        table.add_column(column, justify="right" if column in ("id", "channels", "parent", "params", "FLOPs") else "left")
    shown = sorted(space.groups, key=lambda g: (g.kind != "operator", g.id))[: args.limit]
    for group in shown:
        nodes = ", ".join(group.nodes[:3]) + (f" +{len(group.nodes) - 3}" if len(group.nodes) > 3 else "")
        table.add_row(
            str(group.id), group.kind, str(group.channels) if group.kind == "channel" else "-",
            "-" if group.parent is None else str(group.parent), f"{group.params:,}", f"{group.flops:,}", nodes,
        )
    console = _console()
    console.print(table)
    if len(space.groups) > args.limit:
        console.print(f"... {len(space.groups) - args.limit} more groups (--limit N to show more, --json for all)")
    console.print(f"graph: {total.params:,} params, {total.flops:,} FLOPs")
    return EXIT_OK


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"--zero takes comma-separated group ids like 0,3,7, got '{text}'") from None


def cmd_subnet(args: argparse.Namespace) -> int:
    import asgnas_ir as ai

    graph = ai.load(args.ir)
    space = ai.search_space(graph, mode=args.mode)
    if args.zero is not None:
        ids = _parse_ids(args.zero)
    else:
        ids = ai.random_zero_groups(graph, space, args.zero_random, args.seed, align=args.align)
    sub = ai.subnet(graph, space, ids, align=args.align)
    sub.save(args.output)
    before, after = ai.cost(graph), ai.cost(sub)
    print(
        f"wrote {args.output}: removed {len(ids)} of {len(space.groups)} groups; params {before.params:,} -> "
        f"{after.params:,}, FLOPs {before.flops:,} -> {after.flops:,}"
    )
    return EXIT_OK


def cmd_codegen(args: argparse.Namespace) -> int:
    import asgnas_ir as ai
    from asgnas_ir.ir.serialize import load_graph

    graph = load_graph(args.ir, require_weights=True)  # a missing sidecar is named here, not as a param later
    for path in ai.codegen(graph, target=args.target, out_dir=args.output):
        print(path)
    return EXIT_OK


def cmd_viz(args: argparse.Namespace) -> int:
    from asgnas_ir.ir.serialize import load_graph
    from asgnas_ir.passes.visualize import format_for, write_visualization

    format_for(args.output)  # a bad suffix fails before the IR is read
    graph = load_graph(args.ir, weights=False)  # the picture needs the structure only
    drawn = write_visualization(graph, args.output, mode=args.mode)
    if drawn.note:
        print(f"asgnas viz: note: {drawn.note}", file=sys.stderr)
    scene = drawn.scene
    print(
        f"wrote {args.output} ({drawn.fmt}, mode {drawn.mode}): {sum(1 for n in scene.nodes if n.kind == 'op')} nodes, "
        f"{len(scene.operator_groups)} removal structures, {scene.channel_group_count} channel groups"
    )
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    import asgnas_ir as ai

    model, inputs = _load_spec_model(args)
    report = ai.check(
        model, inputs, mode=args.mode, frontend=args.frontend, target=args.target, fraction=args.fraction,
        seed=args.seed, keep_weights=args.keep_weights, out_dir=args.out, on_unsupported=args.on_unsupported,
    )
    if args.json:
        print(report.model_dump_json())
    else:
        _print_report(report)
    if not report.ok:  # on stderr in both modes, so `--json` keeps stdout one JSON object
        print(f"asgnas check: failed: {report.reason}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _print_report(report: Any) -> None:
    from rich.table import Table

    table = Table("", "full", "sub-network", title=f"check ({report.frontend} → {report.target}): {'OK' if report.ok else 'FAILED'}")
    table.add_row("params", f"{report.params_full:,}", f"{report.params_sub:,}")
    table.add_row("FLOPs", f"{report.flops_full:,}", f"{report.flops_sub:,}")
    console = _console()
    console.print(table)
    console.print(
        f"groups zeroed: {report.zeroed} of {report.groups}; max |diff| {report.max_abs_diff:.3g} "
        f"(tolerance {report.tolerance:.3g}, max |ref| {report.max_ref:.3g}); {report.seconds.total:.2f}s"
    )
    for note in report.notes:  # how an output was compared (a softmax as its logits)
        console.print(f"note: {note}")


def cmd_profile(args: argparse.Namespace) -> int:
    import asgnas_ir as ai

    try:
        fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    except ValueError:
        raise SpecError(f"--fractions takes comma-separated numbers in (0, 1], got '{args.fractions}'") from None
    graph = ai.load(args.ir)
    table = ai.latency_table(
        graph, args.device, dtype=args.dtype, batch=args.batch, fractions=fractions, align=args.align, warmup=args.warmup,
        repeats=args.repeats, cache=not args.no_cache, cache_dir=args.cache_dir, refresh=args.refresh,
    )
    table.save(args.output)
    print(
        f"wrote {args.output}: {len(table.nodes)} layers on {table.device} ({table.key.device_name}), {table.dtype}, "
        f"batch {table.batch}; full model {table.full_ms:.3f} ms, of which {table.remainder_ms:.3f} ms outside the "
        f"profiled layers (measured in {table.seconds:.1f} s)"
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from asgnas_ir.demo import run_demo

    return run_demo(Path(args.out), resume=args.resume, epochs=args.epochs, framework=args.framework)


def cmd_train(args: argparse.Namespace) -> int:
    from asgnas_ir.backends.torch.trainer import TrainConfig, run_training

    config = TrainConfig.from_file(args.config)
    overrides = {name: value for name, value in (("out", args.out), ("device", args.device), ("amp", args.amp),
                                                 ("dataset", args.dataset)) if value is not None}
    if overrides:
        try:  # validated again: an override must obey the same rules as the file
            config = TrainConfig.model_validate({**config.model_dump(exclude_unset=True), **overrides})
        except ValueError as exc:
            raise SpecError(f"config file '{args.config}' with the command line's options is not a valid training config:\n{exc}") from None
    report = run_training(config, resume=args.resume)
    return EXIT_OK if report["equivalent"] else EXIT_CHECK_FAILED


def cmd_search(args: argparse.Namespace) -> int:
    from asgnas_ir.backends.search.runner import run_search

    run_search(args.searcher, args.config, args, console=_console())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asgnas", description="Compile models to the asgnas-ir IR, find removable structure, emit sub-networks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("spec", metavar="SPEC", help="package.module:attr, path/file.py:attr, or a .onnx/.keras file")
        p.add_argument("--input", action="append", default=[], metavar="SHAPE", help="1,3,32,32 or int64[1,16]; once per input")
        p.add_argument("--frontend", default="auto", choices=["auto", "fx", "onnx", "keras"])
        p.add_argument("--kwargs", default=None, metavar="JSON", help="keyword arguments for a callable SPEC")
        p.add_argument("--seed", type=int, default=0, help="seed for example inputs and random choices")
        p.add_argument(
            "--on-unsupported", default="error", choices=["error", "opaque"],
            help="error (default): stop and list every op the frontend cannot lower; opaque: keep them as opaque "
            "nodes that pin the channels they touch",
        )

    p = sub.add_parser("compile", help="lower a model into IR JSON (+ .safetensors weights)")
    model_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.json")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("passes", help="list the registered passes")
    p.set_defaults(func=cmd_passes)

    p = sub.add_parser("run", help="run one pass on an IR file")
    p.add_argument("pass_name", metavar="PASS")
    p.add_argument("ir", metavar="IR.json")
    p.add_argument("-o", "--output", default=None, metavar="OUT")
    p.add_argument("--options", default=None, metavar="JSON", help="pass options as a JSON object")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("space", help="show the search space (removable groups)")
    p.add_argument("ir", metavar="IR.json")
    p.add_argument("--mode", default="prune", choices=["prune", "erase", "both"])
    p.add_argument("--json", action="store_true", help="print the full SearchSpace as JSON")
    p.add_argument("--limit", type=int, default=50, help="rows to show in the table")
    p.set_defaults(func=cmd_space)

    p = sub.add_parser("subnet", help="remove groups and write the sub-network IR")
    p.add_argument("ir", metavar="IR.json")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--zero", metavar="ID,...", help="group ids to remove")
    which.add_argument("--zero-random", type=float, metavar="FRACTION", help="remove a random valid fraction of the groups")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="prune", choices=["prune", "erase", "both"])
    p.add_argument("--align", type=int, default=1, metavar="N",
                   help="every layer keeps a multiple of N channels or all (--zero-random rounds to it, --zero must obey it)")
    p.add_argument("-o", "--output", required=True, metavar="SUB.json")
    p.set_defaults(func=cmd_subnet)

    p = sub.add_parser("codegen", help="write an IR file as source code + weights")
    p.add_argument("ir", metavar="IR.json")
    p.add_argument("--target", default="torch", choices=["torch", "keras", "onnx"])
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(func=cmd_codegen)

    p = sub.add_parser("viz", help="draw the graph with its channel groups and removal structures (SVG, HTML or DOT)")
    p.add_argument("ir", metavar="IR.json")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.svg, FILE.html (interactive page) or FILE.dot")
    p.add_argument(
        "--mode", default=None, choices=["prune", "erase", "both"],
        help="groups to show (default: both, or prune when the graph's erase analysis fails)",
    )
    p.set_defaults(func=cmd_viz)

    p = sub.add_parser("check", help="compile, zero random groups, build and run the sub-network, compare outputs")
    model_args(p)
    p.add_argument("--mode", default="prune", choices=["prune", "erase", "both"])
    p.add_argument("--target", default=None, choices=["torch", "keras", "onnx"])
    p.add_argument("--fraction", type=float, default=0.5, help="fraction of groups to zero")
    p.add_argument("--keep-weights", action="store_true", help="do not re-randomize the model's weights first")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--out", default=None, metavar="DIR", help="keep the generated files here")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("train", help="train a super-network with H2SPG from a JSON config, then build and emit its sub-network")
    p.add_argument("config", metavar="CONFIG", help="JSON file with TrainConfig fields (see docs/training.md)")
    p.add_argument("--out", default=None, metavar="DIR", help="override the config's output folder")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch checkpoint in the output folder")
    p.add_argument(
        "--device", default=None, metavar="auto|cpu|cuda", help="where to train (overrides the config's device; auto: cuda when "
        "available, else cpu; cuda:N picks a GPU)",
    )
    p.add_argument("--amp", default=None, choices=["bf16", "fp16", "off"], help="mixed precision (overrides the config's amp)")
    p.add_argument(
        "--dataset", default=None, metavar="SPEC", help="your data instead of digits: package.module:attr or path/file.py:attr "
        "(a torch Dataset or DataLoader, or a callable returning one or a (train, validation) pair) or an image folder",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("search", help="search sub-networks of a super-network: gold, ag or random (writes the front as JSON + PNG)")
    p.add_argument("searcher", choices=["gold", "ag", "random"], metavar="SEARCHER", help="gold, ag or random")
    p.add_argument("config", metavar="CONFIG", help="JSON file with the searcher's config fields (see docs/search.md)")
    p.add_argument("--out", default=None, metavar="DIR", help="override the config's output folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search from its log and checkpoints")
    p.add_argument("--workers", type=int, default=1, help="evaluations run in parallel (ag, random)")
    p.add_argument("--backend", default="process", choices=["inline", "process", "ray"], help="where evaluations run")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="an existing Ray cluster (default: start a local one)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("profile", help="measure each prunable layer's latency over kept widths on a device (a latency table)")
    p.add_argument("ir", metavar="IR.json")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps: the hardware you deploy to")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the example's)")
    p.add_argument("--fractions", default="0.25,0.5,0.75,1", metavar="F,...", help="kept fractions of each width to measure")
    p.add_argument("--align", type=int, default=8, help="measured widths are multiples of this where the layer allows")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10, help="timed samples per point (the median is kept)")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="default $ASGNAS_LATENCY_CACHE or ~/.cache/asgnas-ir/latency")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--refresh", action="store_true", help="measure again and overwrite the cached table")
    p.add_argument("-o", "--output", required=True, metavar="TABLE.json")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("demo", help="the main job: H2SPG on a bundled super-network and digits (no downloads)")
    p.add_argument("--out", default="demo-out", metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo from its checkpoints")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument(
        "--framework", default="torch", choices=["torch", "keras"],
        help="torch (default): the PyTorch SuperResNet; keras: its Keras 3 twin, trained with model.fit, Keras code generated",
    )
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CPU features, oneDNN) buries the one-paragraph messages the
    # CLI promises on stderr; users who want it can still set the variable themselves.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AsgnasError as exc:
        message = str(exc).strip()
        print(f"asgnas {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"asgnas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
