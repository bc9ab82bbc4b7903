"""Optimizer overhead: H2SPG / HESSO step time, ATen ops and memory vs torch.optim.SGD, side by side.

    python benchmarks/optimizer_overhead.py [--device cpu|cuda] [--steps 30] [--resnet-steps 20]
        [--score-every-epochs 20] [--parts timing selection score-every] [--oto-periods 3] [--threads 1]
        [--local-resnet] [--no-peers] [--json PATH] [--no-report]
    python benchmarks/optimizer_overhead.py --from-json PATH     # write the section of a run made elsewhere

Three parts; on CPU they write the `optimizer_overhead` section of BENCHMARKS.md, with `--device cuda`
(fp32 and bf16 autocast) the `optimizer_overhead_gpu` section. `--device cuda` where torch sees no GPU
says so and runs the CPU tables instead. `benchmarks/device/optimizer_gpu.sh` runs the GPU tables on a
borrowed GPU machine and brings back the JSON that `--from-json` turns into the GPU section.

1. Step time per phase. For each model (the resnet_basic replica; ResNet-18 and ResNet-50, from
   torchvision when it imports, else `tests.models.resnet.ResNet` with the same layout; on CPU
   ResNet-18 at 32x32 and ResNet-50 at 64x64 with batch 8, on CUDA both at 224x224, batch 64), every
   optimizer gets its own deep copy of the model and the same batch: SGD(foreach=True), H2SPG and
   HESSO in prune mode (the replica adds H2SPG erase), and on CPU for ResNet-18 OTO 3.0.1's HESSO
   when it is installed (`make bench`). Each round runs zero_grad + forward + backward + step for every optimizer, in an order
   that rotates every round, and times `step()` alone (step ratio) and the whole iteration (iteration
   ratio) against SGD's median over the same rounds; on CUDA with a synchronize around each timed
   region. Phases of `n` timed rounds each: warm-up before the score window (a plain base step),
   warm-up inside it (the groups scored every step), and after selection (H2SPG inside its shrink
   window, HESSO once its groups are held at zero). Before each phase's timed rounds one round is run
   under a TorchDispatchMode counter instead (the "ATen ops per step" column: on a GPU each op is a
   kernel launch) and the optimizer's own memory is read (`memory_bytes()`: group index + per-group
   vectors over the parameters' bytes; beyond SGD's momentum, which every row holds alike).
2. Selection time: H2SPG's one-off work on ResNet-50 and torchvision's vit_b_16 (prune spaces):
   building the optimizer, `_select()` itself (the greedy valid walk), the step that selects, and the
   steps after it that build the kept per-group buffers.
3. (CPU) `score_every`: H2SPG on the digits SuperResNet job of benchmarks/h2spg_defaults.py (the
   user guide's call, 20 epochs) in erase and prune mode with score_every 1, 2, 4, 8: which groups it
   selects (Jaccard overlap with score_every=1) and the test accuracy before and after `finalize()`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends._groups import SCORE_WEIGHT_CUTOFF, score_window  # noqa: E402
from asgnas_ir.backends.torch import H2SPG, HESSO, GroupsNotZeroWarning  # noqa: E402
from benchmarks._report import machine, write_section  # noqa: E402
from benchmarks.peers import available, oto_module, quiet  # noqa: E402
from benchmarks.quality_digits import cuda_calls_stay_on_cpu  # noqa: E402
from tests.models import REPLICAS  # noqa: E402
from tests.models.resnet import BasicBlock, Bottleneck, ResNet  # noqa: E402

LR, MOMENTUM = 0.01, 0.9
PHASES = ("warm-up (unscored)", "warm-up (scored)", "after selection")
HEADERS = (
    "optimizer", "phase", "step ms", "step / SGD step", "iteration / SGD iteration", "slowest step ms",
    "ATen ops per step", "optimizer memory / param bytes",
)
SELECTION_HEADERS = (
    "model", "params", "prune groups", "selected", "build optimizer s", "`_select()` s", "selecting step s",
    "next 2 steps s", "steady step ms", "memory / params (warm-up → after)",
)
SCORE_EVERY_HEADERS = (
    "mode", "score_every", "scored warm-up steps", "selected", "Jaccard vs score_every=1", "selected zero before finalize()",
    "test acc. before → after finalize()",
)
# (input side, batch) per model and device. ResNet-50 at 224x224 takes seconds per iteration on one CPU
# thread, so on CPU it runs at 64x64 with batch 8; the optimizer step does not depend on the input size.
SIZES = {
    "cpu": {"resnet_basic": (32, 64), "resnet18": (32, 64), "resnet50": (64, 8)},
    "cuda": {"resnet_basic": (32, 64), "resnet18": (224, 64), "resnet50": (224, 64)},
}
SELECTION_MODELS = ("resnet50", "vit_b_16")
SCORE_EVERY = (1, 2, 4, 8)


class OpCount(TorchDispatchMode):
    """Counts the ATen ops dispatched inside it (the profiler's record_function enter/exit ops included,
    as in tests/backends/test_optim_kernels.py, where SGD's foreach step counts 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Schedule:
    """Which round of the run is what, for `n` timed rounds per phase.

    Each phase starts with untimed rounds that do one-off work (round 0 creates the momentum buffers, the
    first scored step sets up the scoring, the `settle` steps after selection build the kept per-group
    buffers and take HESSO, shrink_period = settle, to zero), then one counted round (ops and memory,
    untimed), then n timed ones. The score window (the last `window` warm-up steps) is the scored phase
    and the selecting step: the last warm-up round, which selects after its update, timed on its own
    (`select_round`)."""

    n: int
    settle: int = 3
    counted: dict[int, str] = field(init=False)
    timed: dict[str, range] = field(init=False)

    def __post_init__(self) -> None:
        n = self.n
        self.window_start = 2 + n
        self.select_round = 4 + 2 * n
        self.warmup = 5 + 2 * n
        self.window = self.warmup - self.window_start
        after = self.warmup + self.settle
        self.counted = {1: PHASES[0], self.window_start + 1: PHASES[1], after: PHASES[2]}
        self.timed = {PHASES[0]: range(2, 2 + n), PHASES[1]: range(4 + n, 4 + 2 * n), PHASES[2]: range(after + 1, after + 1 + n)}
        self.rounds = after + 1 + n


def ema_for_window(window: int) -> float:
    """An `ema` whose score window (`score_window`) is exactly `window` steps: the benchmark's warm-up is
    short, and the default ω 0.9 would score the last 132 steps of it. What a scored step costs does not
    depend on ω."""
    ema = SCORE_WEIGHT_CUTOFF ** (1.0 / (window - 1e-6))
    assert score_window(ema) == window, (ema, window)
    return ema


def build_model(name: str, local: bool) -> tuple[nn.Module, str]:
    """(the model for 10 classes in train mode, where it came from)."""
    if name == "resnet_basic":
        return REPLICAS["resnet_basic"].build().train(), "the resnet_basic test replica (tests/models)"
    if not local:
        try:
            import torchvision
        except ImportError:
            pass
        else:
            model = getattr(torchvision.models, name)(weights=None, num_classes=10)
            return model.train(), f"torchvision {torchvision.__version__} `{name}(weights=None, num_classes=10)`"
    if name == "resnet18":
        return ResNet(BasicBlock, (2, 2, 2, 2)).train(), "`tests.models.resnet.ResNet(BasicBlock, (2, 2, 2, 2))` (resnet18's layout)"
    if name == "resnet50":
        return ResNet(Bottleneck, (3, 4, 6, 3)).train(), "`tests.models.resnet.ResNet(Bottleneck, (3, 4, 6, 3))` (resnet50's layout)"
    raise ValueError(f"no local replacement for torchvision's {name}; install torchvision or leave {name} out")


def space_of(model: nn.Module, size: int, mode: str) -> ai.SearchSpace:
    return ai.search_space(ai.compile(copy.deepcopy(model).cpu().eval(), torch.randn(1, 3, size, size)), mode=mode)


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def cast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_ratio(optimizer: torch.optim.Optimizer) -> float | None:
    if not isinstance(optimizer, H2SPG):
        return None
    held = optimizer.memory_bytes()
    return (held["index"] + held["per_group"]) / held["params"]


@dataclass
class Contender:
    """One optimizer on its own copy of the model; `step` is what the training loop would call."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[], object]
    labels: dict[str, str] = field(default_factory=dict)  # phase → this optimizer's own name for it


@dataclass
class Measured:
    times: dict[str, list[tuple[float, float] | None]]  # per round: (step s, iteration s); None where untimed
    ops: dict[str, dict[str, int]]
    memory: dict[str, dict[str, float | None]]


def run_rounds(
    contenders: dict[str, Contender], x: torch.Tensor, y: torch.Tensor, schedule: Schedule, device: torch.device, precision: str,
) -> Measured:
    loss_fn = nn.CrossEntropyLoss()
    sync = synchronizer(device)

    def forward_backward(contender: Contender) -> None:
        contender.optimizer.zero_grad(set_to_none=True)
        with cast(device, precision):
            loss = loss_fn(contender.model(x), y)
        loss.backward()

    # One untimed forward/backward per model first: the first pass pays allocator, kernel selection and
    # start-up costs that would otherwise land in whichever contender happens to go first.
    for contender in contenders.values():
        forward_backward(contender)
        contender.optimizer.zero_grad(set_to_none=True)
    sync()
    names = list(contenders)
    measured = Measured({name: [None] * schedule.rounds for name in names}, {name: {} for name in names}, {name: {} for name in names})
    for r in range(schedule.rounds):
        # Rotate who goes first: the one right after another's backward sees warmer or colder caches.
        shift = r % len(names)
        phase = schedule.counted.get(r)
        for name in names[shift:] + names[:shift]:
            contender = contenders[name]
            if phase is not None:  # the counter slows the step: this round is counted, not timed
                forward_backward(contender)
                with OpCount() as count:
                    contender.step()
                sync()
                measured.ops[name][phase] = count.ops
                measured.memory[name][phase] = memory_ratio(contender.optimizer)
                continue
            sync()
            start = time.perf_counter()
            forward_backward(contender)
            sync()
            before_step = time.perf_counter()
            contender.step()
            sync()
            end = time.perf_counter()
            measured.times[name][r] = (end - before_step, end - start)
    return measured


def summarise(measured: Measured, schedule: Schedule, labels: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """One row per phase and optimizer (SGD last in each phase), against SGD's medians over the same rounds."""
    rows = []
    for phase, rounds in schedule.timed.items():
        sgd = [measured.times["SGD"][r] for r in rounds]
        sgd_step = statistics.median(t[0] for t in sgd if t)
        sgd_iter = statistics.median(t[1] for t in sgd if t)
        for name in [n for n in measured.times if n != "SGD"] + ["SGD"]:
            times = [t for t in (measured.times[name][r] for r in rounds) if t]
            step = statistics.median(t[0] for t in times)
            rows.append({
                "optimizer": name, "phase": phase, "label": labels.get(name, {}).get(phase, phase),
                "step_ms": step * 1e3, "step_ratio": step / sgd_step,
                "iteration_ratio": statistics.median(t[1] for t in times) / sgd_iter,
                "slowest_ms": max(t[0] for t in times) * 1e3,
                "aten_ops": measured.ops[name].get(phase), "memory_ratio": measured.memory[name].get(phase),
            })
    return rows


def timing_table(model_name: str, device: torch.device, precision: str, n: int, args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Build the contenders for one model and run its phases; the table as a JSON-ready dict."""
    torch.manual_seed(0)
    size, batch = SIZES[device.type][model_name]
    base, origin = build_model(model_name, args.local_resnet)
    schedule = Schedule(n)
    modes = ("erase", "prune") if model_name == "resnet_basic" else ("prune",)
    spaces = {mode: space_of(base, size, mode) for mode in modes}
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    # ω such that exactly the scored phase's rounds lie in the score window; H2SPG's shrink window outlasts
    # the run; HESSO's groups are zero from the last settle round on.
    common = {"lr": LR, "momentum": MOMENTUM, "warmup_steps": schedule.warmup, "ema": ema_for_window(schedule.window)}
    after = schedule.settle + 1 + n
    contenders: dict[str, Contender] = {}
    model = copy.deepcopy(base).to(device)
    sgd = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, foreach=True)
    contenders["SGD"] = Contender(model, sgd, sgd.step)
    kinds = [("H2SPG erase", H2SPG, "erase")] if "erase" in modes else []
    kinds += [("H2SPG prune", H2SPG, "prune"), ("HESSO prune", HESSO, "prune")]
    for name, optimizer_cls, mode in kinds:
        model = copy.deepcopy(base).to(device)  # the flat buffer is built on the model's device
        period = schedule.settle if optimizer_cls is HESSO else max(100, after + 1)
        optimizer = optimizer_cls(model, spaces[mode], shrink_period=period, **common)
        label = "after selection (held at zero)" if optimizer_cls is HESSO else "after selection (shrink window)"
        contenders[name] = Contender(model, optimizer, optimizer.step, {PHASES[2]: label})
    notes = [f"{len(spaces[m].groups)} {m}-mode groups" for m in modes]
    if model_name == "resnet18" and device.type == "cpu" and not args.no_peers:
        oto = oto_contender(base, x, schedule, args, notes)
        if oto is not None:
            contenders["OTO HESSO"] = oto
    started = time.perf_counter()
    measured = run_rounds(contenders, x, y, schedule, device, precision)
    sgd_select = measured.times["SGD"][schedule.select_round]
    assert sgd_select is not None
    selecting = {
        name: {"ms": t[0] * 1e3, "ratio": t[0] / sgd_select[0]}
        for name, t in ((name, measured.times[name][schedule.select_round]) for name in contenders)
        if t is not None and name not in ("SGD", "OTO HESSO")
    }
    table = {
        "model": model_name, "origin": origin, "device": device.type, "precision": precision,
        "input": f"3x{size}x{size}", "batch": batch, "steps_per_phase": n, "warmup_steps": schedule.warmup,
        "score_window": schedule.window, "ema": common["ema"], "settle": schedule.settle,
        "rows": summarise(measured, schedule, {name: c.labels for name, c in contenders.items()}),
        "selecting_step": selecting, "notes": notes, "seconds": time.perf_counter() - started,
    }
    print_timing(console, table)
    return table


def oto_contender(base: nn.Module, x: torch.Tensor, schedule: Schedule, args: argparse.Namespace, notes: list[str]) -> Contender | None:
    """OTO 3.0.1's HESSO on its own copy (CPU only), plain SGD until our selection, then its pruning window."""
    oto_lib = oto_module()
    if oto_lib is None:
        notes.append("only-train-once is not installed (run `make bench`): OTO HESSO rows left out")
        return None
    model = copy.deepcopy(base)
    with quiet():  # OTO prints its graph build and optimizer setup
        oto = oto_lib.OTO(model, x[:1])
        # OTO counts steps from 1 and starts choosing groups on the step after `start_pruning_step`: with
        # start_pruning_step = our warm-up, its first pruning step is our first step after selection.
        oto_optimizer = oto.hesso(
            variant="sgd", lr=LR, first_momentum=MOMENTUM, weight_decay=0.0, target_group_sparsity=0.5,
            start_pruning_step=schedule.warmup, pruning_steps=schedule.settle + 1 + schedule.n, pruning_periods=args.oto_periods,
        )
    model.train()  # OTO's trace leaves the model in eval mode; BN must run as in the other copies

    def oto_step() -> None:
        with cuda_calls_stay_on_cpu():  # OTO's hard-coded `.cuda()` on its group mask
            oto_optimizer.step()

    notes.append(f"OTO HESSO: `start_pruning_step={schedule.warmup}, pruning_steps={schedule.settle + 1 + schedule.n}, pruning_periods={args.oto_periods}`")
    before = "before start_pruning_step"
    return Contender(model, oto_optimizer, oto_step, {PHASES[0]: before, PHASES[1]: before, PHASES[2]: "pruning window"})


def selection_row(model_name: str, device: torch.device, args: argparse.Namespace) -> dict[str, Any] | None:
    """H2SPG's one-off costs on one model at 224x224 (batch 2): build, selection, and the steps after it."""
    try:
        base, origin = build_model(model_name, args.local_resnet)
    except ValueError:
        return None
    torch.manual_seed(0)
    sync = synchronizer(device)
    space = space_of(base, 224, "prune")
    model = base.to(device)
    x, y = torch.randn(2, 3, 224, 224, device=device), torch.tensor([0, 1], device=device)
    started = time.perf_counter()
    opt = H2SPG(model, space, lr=LR, momentum=MOMENTUM, warmup_steps=2)
    sync()
    build = time.perf_counter() - started
    select_seconds: list[float] = []
    select = opt._select

    def timed_select() -> None:  # instance attribute: `step()` calls this in place of the method
        sync()
        t = time.perf_counter()
        select()
        sync()
        select_seconds.append(time.perf_counter() - t)

    opt._select = timed_select  # type: ignore[method-assign]
    step_seconds = []
    memory_before = None
    for i in range(6):  # scored warm-up step, the selecting step, two that build kept buffers, two steady
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        sync()
        t = time.perf_counter()
        opt.step()
        sync()
        step_seconds.append(time.perf_counter() - t)
        if i == 0:
            memory_before = memory_ratio(opt)
    return {
        "model": model_name, "origin": origin, "device": device.type, "params": sum(p.numel() for p in model.parameters()),
        "groups": len(space.groups), "selected": len(opt.redundant_groups), "build_s": build, "select_s": select_seconds[0],
        "selecting_step_s": step_seconds[1], "next_steps_s": step_seconds[2] + step_seconds[3], "steady_step_ms": step_seconds[5] * 1e3,
        "memory_warmup": memory_before, "memory_after": memory_ratio(opt),
    }


def score_every_study(epochs: int, console: Console) -> list[dict[str, Any]]:
    """H2SPG on the digits SuperResNet (benchmarks/h2spg_defaults.py's job) with score_every 1, 2, 4, 8."""
    from asgnas_ir.backends.torch.trainer import evaluate
    from benchmarks.h2spg_defaults import BASES, GUIDE, model_and_data

    rows = []
    for mode in ("erase", "prune"):
        reference: set[int] | None = None
        for every in SCORE_EVERY:
            model, x_train, y_train, x_test, y_test = model_and_data("super_resnet")
            space = ai.search_space(ai.compile(model.eval(), torch.from_numpy(x_test[:1])), mode=mode)
            opt = H2SPG(model, space, **GUIDE, **BASES["sgd"], score_every=every)
            scored = 0
            update = opt._update_scores

            def counted_update(update: Callable[[], None] = update) -> None:
                nonlocal scored
                scored += 1
                update()

            opt._update_scores = counted_update  # type: ignore[method-assign]
            x_all, y_all = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
            batch = 64
            loss_fn = nn.CrossEntropyLoss()
            for epoch in range(epochs):
                model.train()
                order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(epoch))
                for i in range(math.ceil(len(x_all) / batch)):
                    index = order[i * batch : (i + 1) * batch]
                    opt.zero_grad(set_to_none=True)
                    loss_fn(model(x_all[index]), y_all[index]).backward()
                    opt.step()
            before, _ = evaluate(model, x_test, y_test)
            zero_before = len(set(opt.redundant_groups) & set(opt.zero_groups())) if opt.selected else 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GroupsNotZeroWarning)  # the zero count and accuracy tell what it forced
                chosen = set(opt.finalize())
            accuracy, _ = evaluate(model, x_test, y_test)
            reference = chosen if reference is None else reference
            jaccard = len(chosen & reference) / len(chosen | reference) if chosen | reference else 1.0
            rows.append({
                "mode": mode, "score_every": every, "scored_steps": scored, "groups": len(space.groups),
                "selected": len(chosen), "zero_before": zero_before, "jaccard": jaccard, "accuracy_before": before,
                "accuracy": accuracy,
            })
            console.print(
                f"score_every {every}, {mode}: {scored} scored steps, Jaccard {jaccard:.2f}, "
                f"{zero_before} of {len(chosen)} zero before finalize(), accuracy {before:.1f} → {accuracy:.1f} %"
            )
    return rows


# --- output ------------------------------------------------------------------------------------------------


def _ratio(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def timing_cells(row: dict[str, Any]) -> tuple[str, ...]:
    ops = row["aten_ops"]
    return (
        row["optimizer"], row["label"], f"{row['step_ms']:.3f}", f"{row['step_ratio']:.2f}×", f"{row['iteration_ratio']:.2f}×",
        f"{row['slowest_ms']:.2f}", "—" if ops is None else str(ops), _ratio(row["memory_ratio"], 3),
    )


def selection_cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        row["model"], f"{row['params'] / 1e6:.1f}M", str(row["groups"]), str(row["selected"]), f"{row['build_s']:.2f}",
        f"{row['select_s']:.3f}", f"{row['selecting_step_s']:.3f}", f"{row['next_steps_s']:.3f}", f"{row['steady_step_ms']:.1f}",
        f"{_ratio(row['memory_warmup'], 3)} → {_ratio(row['memory_after'], 3)}",
    )


def score_every_cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        row["mode"], str(row["score_every"]), str(row["scored_steps"]), f"{row['selected']} of {row['groups']}",
        f"{row['jaccard']:.2f}", f"{row['zero_before']} of {row['selected']}",
        f"{row['accuracy_before']:.1f} → {row['accuracy']:.1f} %",
    )


def timing_title(table: dict[str, Any]) -> str:
    precision = "bf16 autocast" if table["precision"] == "bf16" else "fp32"
    return f"{table['model']}, {table['device']} {precision}, {table['input']}, batch {table['batch']}, {table['steps_per_phase']} timed steps per phase"


def print_rows(console: Console, title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]], left: int) -> None:
    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < left else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_timing(console: Console, table: dict[str, Any]) -> None:
    print_rows(console, timing_title(table), HEADERS, [timing_cells(r) for r in table["rows"]], 2)


def markdown(headers: tuple[str, ...], rows: list[tuple[str, ...]], left: int) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * left + "---:|" * (len(headers) - left),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def section(results: dict[str, Any]) -> tuple[str, str]:
    """(section name, markdown body) of a run's results."""
    gpu = results["device"] == "cuda"
    name = "optimizer_overhead_gpu" if gpu else "optimizer_overhead"
    lines = [
        f"## Optimizer overhead{' on a GPU' if gpu else ''}: H2SPG / HESSO vs torch.optim.SGD"
        + ("" if gpu else " (and OTO HESSO)"),
        "",
        f"Command: `{results['command']}`. Machine: {results['machine']}; torch {results['torch']}"
        + (f", {results['device_name']}" if gpu else f", {results['threads']} thread(s)")
        + f"; {results['peers']}. Total {results['total_s']:.0f} s.",
        "",
        "Method. Optimizers run interleaved in one process, each on its own copy of the model with the same batch, "
        "the order rotating every round; `step()` alone is timed for the step columns, zero_grad + forward + backward "
        "+ step for the iteration ratio" + (" (with `torch.cuda.synchronize()` around each timed region)" if gpu else "")
        + "; ratios are against SGD's median over the same rounds. Baseline `torch.optim.SGD(lr=0.01, momentum=0.9, "
        "foreach=True)`; ours the same base step with their defaults (automatic λ, ε 0.5), prune mode (the replica "
        "also erase). Phases: warm-up before the score window (plain base step), warm-up inside it (every step scores "
        "the groups; ω is set so that the score window is this phase, its first step, which sets the scoring up "
        "and is not timed, and the selecting step, timed on its own), after selection (H2SPG inside its shrink "
        "window, HESSO `shrink_period=3`: its groups held at zero; the three steps after the selecting one build "
        "the kept buffers and are not timed). \"ATen ops per step\": the ops one step of that phase dispatches, "
        "counted with a TorchDispatchMode in an untimed round just before the phase's timed ones (the profiler's record_function enter/exit "
        "included: SGD's foreach step is 5); on a GPU each is a kernel launch. \"Optimizer memory / param bytes\": "
        "`memory_bytes()` index + per-group vectors over the parameters' bytes (beyond SGD's momentum, which all hold).",
    ]
    if gpu:
        lines += ["", "The bf16 rows run the forward pass under `torch.autocast(\"cuda\", dtype=torch.bfloat16)`; parameters, "
                  "gradients and the optimizer stay fp32, so the step is the same work and only the iteration ratio moves. "
                  "The score_every study runs on CPU only (the optimizer_overhead section)."]
    for table in results["timing"]:
        select = "; ".join(f"{name} {v['ms']:.1f} ms ({v['ratio']:.1f}× SGD's step)" for name, v in table["selecting_step"].items())
        lines += [
            "",
            f"**{timing_title(table)}**: {table['origin']}; {'; '.join(table['notes'])}; warm-up {table['warmup_steps']} "
            f"steps (score window the last {table['score_window']}, ω {table['ema']:.3f}). The selecting step (scores, "
            f"selection, and its update): {select}.",
            "",
            *markdown(HEADERS, [timing_cells(r) for r in table["rows"]], 2),
        ]
    if results["selection"]:
        lines += [
            "",
            "**Selection**: H2SPG's one-off work, prune mode, 3x224x224 inputs, batch 2, `warmup_steps=2` (both scored), on " + ("the GPU" if gpu else "the CPU")
            + ". Build: the constructor (flat buffer, group index). `_select()`: the greedy valid walk and the redundant "
            "groups' map. Selecting step: scores + `_select()` + its update. The two steps after it build the kept "
            "per-group buffers; the steady step is the sixth. Memory as in the tables above, after the first (scored) "
            "step and after the sixth. "
            + "; ".join(f"{r['model']}: {r['origin']}" for r in results["selection"]) + ".",
            "",
            *markdown(SELECTION_HEADERS, [selection_cells(r) for r in results["selection"]], 1),
        ]
    if results.get("score_every"):
        lines += [
            "",
            f"**score_every** (CPU): the digits SuperResNet job of `benchmarks/h2spg_defaults.py` (the user guide's "
            f"`H2SPG(model, space, lr=0.05, target_group_sparsity=0.5, warmup_steps=100)`, {results['score_every_epochs']} "
            "epochs of batch 64, seed 0, same weights and batch order in every run) with `score_every` k: the warm-up "
            "scores every k-th step of its score window (and always the last). Jaccard: |S_k ∩ S_1| / |S_k ∪ S_1| of the "
            "selected groups. Test accuracy on the 450 held-out digits before and after `finalize()` (which forces the "
            "selected groups training left non-zero to zero). One seed: at lr 0.05 this job's test accuracy swings by "
            "tens of points between epochs while the chosen groups shrink (with score_every=1 it fell to 48 % at "
            "epoch 8 before ending at 96 %), so the accuracy column shows how much rides on which groups are "
            "chosen, not a trend in k.",
            "",
            *markdown(SCORE_EVERY_HEADERS, [score_every_cells(r) for r in results["score_every"]], 2),
        ]
    if not results["timing"] and not results["selection"]:
        lines += ["", "(no tables were run)"]
    return name, "\n".join(lines)


def show(console: Console, results: dict[str, Any]) -> None:
    if results["selection"]:
        print_rows(console, f"H2SPG selection, {results['device']}", SELECTION_HEADERS, [selection_cells(r) for r in results["selection"]], 1)
    if results.get("score_every"):
        print_rows(console, "score_every on digits SuperResNet", SCORE_EVERY_HEADERS, [score_every_cells(r) for r in results["score_every"]], 2)


def resolve_device(requested: str, console: Console) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        console.print(
            f"[yellow]--device cuda: {why} (torch {torch.__version__}); running the CPU tables instead and writing "
            "only the CPU section (optimizer_overhead) of BENCHMARKS.md. Run on a machine with a GPU, e.g. "
            "benchmarks/device/optimizer_gpu.sh, for the GPU section.[/yellow]"
        )
        return torch.device("cpu")
    return torch.device(requested)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: fp32 and bf16-autocast tables on the GPU")
    parser.add_argument("--steps", type=int, default=30, help="replica: timed steps per phase")
    parser.add_argument("--resnet-steps", type=int, default=None, help="ResNet-18/50: timed steps per phase (default 20 on CPU, 30 on CUDA)")
    parser.add_argument("--parts", nargs="+", choices=("timing", "selection", "score-every"), default=["timing", "selection", "score-every"])
    parser.add_argument("--models", nargs="+", choices=("resnet_basic", "resnet18", "resnet50"), default=["resnet_basic", "resnet18", "resnet50"])
    parser.add_argument("--score-every-epochs", type=int, default=20, help="epochs of each score_every run (CPU only)")
    parser.add_argument("--oto-periods", type=int, default=3, help="OTO HESSO: pruning periods within its window")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the machine is shared)")
    parser.add_argument("--local-resnet", action="store_true", help="use tests.models.resnet.ResNet even when torchvision imports")
    parser.add_argument("--no-peers", action="store_true", help="leave OTO HESSO out even when it is installed")
    parser.add_argument("--json", type=Path, help="also write every row (numbers, not text) to this JSON file")
    parser.add_argument("--from-json", type=Path, help="write the BENCHMARKS.md section of the results in this JSON file and exit")
    parser.add_argument("--no-report", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    console = Console(highlight=False, width=180)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        for table in results["timing"]:
            print_timing(console, table)
        show(console, results)
        name, body = section(results)
        write_section(name, body)
        console.print(f"wrote the {name} section of BENCHMARKS.md from {args.from_json}")
        return

    device = resolve_device(args.device, console)
    resnet_steps = args.resnet_steps or (30 if device.type == "cuda" else 20)
    oto_runs = device.type == "cpu" and "resnet18" in args.models and not args.no_peers and available()["OTO"] is not None
    if oto_runs and resnet_steps + 4 < 2 * args.oto_periods:
        parser.error("OTO needs ≥ 2 steps per pruning period: raise --resnet-steps or lower --oto-periods")
    # One thread by default on CPU: on a shared machine a second spinning thread turns other jobs' load into noise.
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "device": device.type, "torch": torch.__version__, "machine": machine(), "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "command": " ".join(["python benchmarks/optimizer_overhead.py", *sys.argv[1:]]),
        "peers": ", ".join(f"{name} {version or 'not installed'}" for name, version in available().items()),
        "timing": [], "selection": [], "score_every": None, "score_every_epochs": args.score_every_epochs,
    }

    def checkpoint() -> None:
        """Save what is done so far: a run stopped by a time limit still brings back its finished tables."""
        results["total_s"] = time.perf_counter() - started
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))

    if "timing" in args.parts:
        for precision in ("fp32", "bf16") if device.type == "cuda" else ("fp32",):
            for model_name in args.models:
                n = args.steps if model_name == "resnet_basic" else resnet_steps
                results["timing"].append(timing_table(model_name, device, precision, n, args, console))
                checkpoint()
    if "selection" in args.parts:
        for model_name in SELECTION_MODELS:
            row = selection_row(model_name, device, args)
            if row is None:
                console.print(f"[yellow]note: {model_name} needs torchvision, which does not import here; left out[/yellow]")
            else:
                results["selection"].append(row)
                checkpoint()
    if "score-every" in args.parts and device.type == "cpu":
        results["score_every"] = score_every_study(args.score_every_epochs, console)
    checkpoint()
    show(console, results)
    console.print(f"total {results['total_s']:.0f} s")
    if args.json:
        console.print(f"wrote {args.json}")
    if not args.no_report:
        name, body = section(results)
        write_section(name, body)
        console.print(f"wrote the {name} section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
