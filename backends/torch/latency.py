"""Measure a `LatencyTable` (see `asgnas_ir.passes.analysis.latency`) on a torch device.

Each profiled node (conv, transposed conv, linear, attention, matmul) is rebuilt alone as one
`torch.nn.functional` call on random tensors of the graph's example shapes (batch from the example
or `batch=`), at every point of a small grid of kept widths, and timed: warm-up calls, then the
median of `repeats` samples. A sample times enough back-to-back calls to last about half a
millisecond (a 10 µs op timed one call at a time measures the clock), with CUDA events on GPUs and
`perf_counter` after a synchronize elsewhere. The full model is timed the same way through its
generated PyTorch code, which gives the constant remainder.

Grid: along each axis a shrinkable width is measured at `fractions` of its full width (default
1/4, 1/2, 3/4, 1), in whole groups, rounded to multiples of `align` channels where the width
allows; two free axes give the 4 x 4 cross product (16 points), tied axes (grouped convs,
attention heads) the 4 diagonal points. A ResNet-50 has 54 such nodes, about 800 points.

Tables are cached on disk under `~/.cache/asgnas-ir/latency/` (`$XDG_CACHE_HOME` respected; the
`ASGNAS_LATENCY_CACHE` environment variable or `cache_dir=` overrides it), one JSON file per graph
fingerprint, device (and its model name), thread count, dtype, batch, torch version and grid
settings: a second call with the same arguments reads the file and measures nothing.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.node import NodeBase
from asgnas_ir.ir.ops import Op
from asgnas_ir.ir.symbolic import evaluate
from asgnas_ir.pass_manager import PassManager
from asgnas_ir.passes.analysis.latency import (
    PROFILED_OPS,
    CalibrationPoint,
    LatencyKey,
    LatencyTable,
    NodeLatency,
    fit_remainder,
    grid_widths,
    measured_axes,
)

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
# the random sub-networks (fractions of zeroed groups) whose measured latency splits the remainder
CALIBRATION_FRACTIONS = (0.25, 0.5, 0.75)
CACHE_ENV = "ASGNAS_LATENCY_CACHE"
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
# One timed sample runs the op this long at least (in calls of it), so fast ops are not timed at the clock's noise.
_MIN_SAMPLE_MS = 0.5
_MAX_INNER = 64


def default_cache_dir() -> Path:
    """`$ASGNAS_LATENCY_CACHE`, else `$XDG_CACHE_HOME/asgnas-ir/latency`, else `~/.cache/asgnas-ir/latency`."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "asgnas-ir" / "latency"


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or an error naming it and what to do instead."""
    text = str(device)
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError) as exc:
        raise SpecError(f"device '{text}' is not a torch device string ({exc}); use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError(
                f"device '{text}' is not available: this torch {torch.__version__} sees no CUDA GPU "
                "(torch.cuda.is_available() is False). Latency is a property of the target hardware: profile on the "
                "machine you deploy to, or pass device='cpu' to profile this machine's CPU."
            )
        count = torch.cuda.device_count()
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= count:
            raise SpecError(f"device '{text}' does not exist: torch sees {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise SpecError(f"device '{text}' is not available: torch.backends.mps.is_available() is False; use device='cpu'")
        return dev
    raise SpecError(f"device '{text}': latency tables are measured on cpu, cuda[:N] or mps, not on '{dev.type}'")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise SpecError(f"dtype '{dtype}' is not supported for latency tables; use float32, bfloat16 or float16")
    return _DTYPES[dtype]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine()
    return device.type


def _synchronize(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def time_ms(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Median latency (ms) of one call of `fn` on `device`: `warmup` calls, then `repeats` samples, each
    of enough back-to-back calls to last about half a millisecond (divided by their number)."""
    sync = _synchronize(device)
    with torch.inference_mode():
        for _ in range(max(1, warmup)):
            fn()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        once = (time.perf_counter() - start) * 1e3
        inner = max(1, min(_MAX_INNER, math.ceil(_MIN_SAMPLE_MS / max(once, 1e-4))))
        samples = []
        for _ in range(max(1, repeats)):
            if device.type == "cuda":
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                for _ in range(inner):
                    fn()
                end.record()
                end.synchronize()
                samples.append(begin.elapsed_time(end) / inner)
            else:
                start = time.perf_counter()
                for _ in range(inner):
                    fn()
                sync()
                samples.append((time.perf_counter() - start) * 1e3 / inner)
    return float(statistics.median(samples))


# ---- one node alone ------------------------------------------------------------------------------


class _Builder:
    """Random operands for one node at given kept widths, and the call that runs it."""

    def __init__(self, graph: Graph, node: NodeBase, sizes: dict[str, int], device: torch.device, dtype: torch.dtype,
                 value_groups: dict[str, list[int]]) -> None:
        self.graph, self.node, self.sizes, self.device, self.dtype = graph, node, sizes, device, dtype
        self.in_value, self.in_axis, self.out_value, self.out_axis = measured_axes(graph, node.id)
        self.value_groups = value_groups

    def shape(self, value: str) -> list[int]:
        return [evaluate(d, self.sizes) for d in self.graph.values[value].symbolic]

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(tuple(shape), device=self.device, dtype=self.dtype)

    def build(self, in_w: int, out_w: int) -> Callable[[], Any]:
        op = self.node.op
        if op is Op.CONV:
            return self._conv(in_w, out_w, transposed=False)
        if op is Op.CONV_TRANSPOSE:
            return self._conv(in_w, out_w, transposed=True)
        if op is Op.LINEAR:
            return self._linear(in_w, out_w)
        return self._activations(in_w, out_w)

    def _conv(self, in_w: int, out_w: int, transposed: bool) -> Callable[[], Any]:
        attrs: Any = self.node.attrs
        x_shape = self.shape(self.node.inputs[0])
        if attrs.channels_last:  # the IR keeps Keras' NHWC; torch's kernels are measured channels-first
            x_shape = [x_shape[0], x_shape[-1], *x_shape[1:-1]]
        x_shape[1] = in_w
        weight = self.graph.params[self.node.params["weight"]]
        axes = weight.axes or ("IO" if transposed else "OI") + "K" * (len(weight.shape) - 2)
        kernel = [size for size, letter in zip(weight.shape, axes, strict=True) if letter not in "OI"]
        out_full = self.graph.values[self.node.outputs[0]].shape[self.out_axis] if self.out_axis is not None else out_w
        groups = attrs.groups if attrs.groups == 1 else attrs.groups * out_w // out_full  # whole groups go
        nd = len(attrs.stride)
        x = self.randn(x_shape)
        bias = self.randn([out_w]) if "bias" in self.node.params else None
        if transposed:
            w = self.randn([in_w, out_w // groups, *kernel])
            fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
            return lambda: fn(x, w, bias, attrs.stride, attrs.padding, attrs.output_padding, groups, attrs.dilation)
        w = self.randn([out_w, in_w // groups, *kernel])
        fn = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        symmetric = all(lo == hi for lo, hi in attrs.padding)
        if symmetric and attrs.padding_mode == "zeros":
            padding = tuple(lo for lo, _ in attrs.padding)
            return lambda: fn(x, w, bias, attrs.stride, padding, attrs.dilation, groups)
        # asymmetric or non-zero padding: pad first, as the generated code does
        pads = [p for lo_hi in reversed(attrs.padding) for p in lo_hi]
        mode = "constant" if attrs.padding_mode == "zeros" else attrs.padding_mode
        return lambda: fn(F.pad(x, pads, mode=mode), w, bias, attrs.stride, 0, attrs.dilation, groups)

    def _linear(self, in_w: int, out_w: int) -> Callable[[], Any]:
        x_shape = self.shape(self.node.inputs[0])
        x_shape[-1] = in_w
        x, w = self.randn(x_shape), self.randn([out_w, in_w])
        bias = self.randn([out_w]) if "bias" in self.node.params else None
        return lambda: F.linear(x, w, bias)

    def _operand(self, value: str, in_w: int, out_w: int) -> torch.Tensor:
        """An activation operand, its channel axis at the width of the side its channels are tied to."""
        shape = self.shape(value)
        meta = self.graph.values[value]
        groups = self.value_groups.get(value)
        if meta.channel_axis is not None and groups is not None:
            if self.in_value is not None and groups == self.value_groups.get(self.in_value):
                shape[meta.channel_axis] = in_w
            elif self.out_value is not None and groups == self.value_groups.get(self.out_value):
                shape[meta.channel_axis] = out_w
        return self.randn(shape)

    def _activations(self, in_w: int, out_w: int) -> Callable[[], Any]:
        operands = [self._operand(v, in_w, out_w) for v in self.node.inputs]
        if self.node.op is Op.MATMUL:
            a, b = operands
            return lambda: torch.matmul(a, b)
        attrs: Any = self.node.attrs
        q, k, v = operands[:3]
        mask = operands[3] if len(operands) == 4 else None
        causal = attrs.causal and mask is None  # with a mask the generated code folds causality into it
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=attrs.scale)


def _unit(groups: list[int] | None) -> int:
    """Channels per group on one axis (heads hold several): the step between removable widths."""
    if not groups:
        return 1
    ids = np.asarray(groups)
    ids = ids[ids >= 0]
    if not len(ids):
        return 1
    return int(np.unique(ids, return_counts=True)[1].min())


def _profile_node(builder: _Builder, fractions: Sequence[float], align: int, device: torch.device,
                  warmup: int, repeats: int) -> NodeLatency:
    graph, node = builder.graph, builder.node
    groups = builder.value_groups
    in_groups = groups.get(builder.in_value) if builder.in_value else None
    out_groups = groups.get(builder.out_value) if builder.out_value else None
    in_free = bool(in_groups) and max(in_groups) >= 0 and builder.in_axis == graph.values[builder.in_value].channel_axis
    out_free = bool(out_groups) and max(out_groups) >= 0 and builder.out_axis == graph.values[builder.out_value].channel_axis
    in_full = graph.values[node.inputs[0]].shape[builder.in_axis] if builder.in_axis is not None else 0
    out_full = graph.values[node.outputs[0]].shape[builder.out_axis] if builder.out_axis is not None else 0
    grouped = node.op in (Op.CONV, Op.CONV_TRANSPOSE) and node.attrs.groups > 1  # type: ignore[attr-defined]
    tied = in_free and out_free and (
        grouped or (node.op in (Op.ATTENTION, Op.MATMUL) and {g for g in in_groups if g >= 0} == {g for g in out_groups if g >= 0})
    )
    if grouped and not tied:  # whole groups only: with one side fixed neither side can shrink
        in_free = out_free = False

    def measure(i: int, o: int) -> float:
        try:
            fn = builder.build(i, o)
            return time_ms(fn, device, warmup, repeats)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise AsgnasError(
                f"cannot measure node '{node.id}' ({node.op.value}, from '{node.source}') at kept widths "
                f"({i} in, {o} out) on {device}: {type(exc).__name__}: {exc}"
            ) from exc

    if tied:
        step = _unit(out_groups)
        outs = grid_widths(out_full, fractions, step, align)
        ins = [in_full * o // out_full for o in outs]
        row = [measure(i, o) for i, o in zip(ins, outs, strict=True)]
        return NodeLatency(op=node.op.value, source=node.source or "", in_full=in_full, out_full=out_full, tied=True,
                           in_widths=ins, out_widths=outs, ms=[row])
    ins = grid_widths(in_full, fractions, _unit(in_groups), align) if in_free else [in_full]
    outs = grid_widths(out_full, fractions, _unit(out_groups), align) if out_free else [out_full]
    ms = [[measure(i, o) for o in outs] for i in ins]
    return NodeLatency(op=node.op.value, source=node.source or "", in_full=in_full, out_full=out_full,
                       in_widths=ins, out_widths=outs, ms=ms)


# ---- the whole model -----------------------------------------------------------------------------


def _sizes(graph: Graph, batch: int | None) -> tuple[dict[str, int], int]:
    sizes = dict(graph.meta.symbols)
    example = sizes.get("N")
    if example is None:
        shapes = [graph.values[v].shape for v in graph.inputs if graph.values[v].shape]
        example = shapes[0][0] if shapes else 1
        if batch is not None and batch != example:
            raise SpecError(
                f"batch={batch}: graph '{graph.name}' has no symbolic batch dim (its inputs are fixed at batch {example}); "
                f"profile it at batch {example} or recompile the model so its batch is symbolic"
            )
        return sizes, example
    if batch is None:
        return sizes, example
    if batch < 1:
        raise SpecError(f"batch must be >= 1, got {batch}")
    sizes["N"] = batch
    return sizes, batch


def _random_weights(graph: Graph) -> dict[str, np.ndarray]:
    # latency does not depend on the values, only on their being finite, normal floats (no NaNs from
    # a negative running variance, no denormals): uniform [0.5, 1.5)
    rng = np.random.default_rng(0)
    out = {}
    for name, param in graph.params.items():
        dtype = np.dtype(param.dtype) if param.dtype != "bfloat16" else np.dtype("float32")
        if np.issubdtype(dtype, np.floating):
            out[name] = (rng.random(param.shape) + 0.5).astype(dtype)
        else:
            out[name] = np.zeros(param.shape, dtype=dtype)
    return out


def model_inputs(graph: Graph, sizes: dict[str, int], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Random inputs at `sizes`: floats in `dtype`, integers (token ids) in [0, 2) as the CLI draws them."""
    gen = torch.Generator().manual_seed(0)
    tensors = []
    for name in graph.inputs:
        value = graph.values[name]
        shape = tuple(evaluate(d, sizes) for d in value.symbolic)
        if value.dtype.startswith(("float", "bfloat")):
            tensors.append(torch.randn(shape, generator=gen).to(device=device, dtype=dtype))
        elif value.dtype == "bool":
            tensors.append(torch.randint(0, 2, shape, generator=gen).bool().to(device))
        else:
            tensors.append(torch.randint(0, 2, shape, generator=gen, dtype=getattr(torch, value.dtype)).to(device))
    return tuple(tensors)


def generated_model_ms(graph: Graph, device: torch.device, dtype: torch.dtype, sizes: dict[str, int],
                       warmup: int, repeats: int) -> float:
    """Latency (ms) of the graph's generated PyTorch code (random weights when the graph has none)."""
    from asgnas_ir.api import codegen
    from asgnas_ir.testing import load_generated

    source = graph
    if not graph.has_weights:
        source = graph.model_copy()
        source.set_weights(_random_weights(graph))
    with tempfile.TemporaryDirectory(prefix="asgnas-latency-") as folder:
        codegen(source, target="torch", out_dir=folder)
        model = load_generated(folder, device).eval()
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    inputs = model_inputs(graph, sizes, device, dtype)
    try:
        return time_ms(lambda: model(*inputs), device, warmup, repeats)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise AsgnasError(
            f"the generated code of graph '{graph.name}' fails at batch {sizes.get('N')} in {dtype} on {device}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def measure_table(graph: Graph, key: LatencyKey, sizes: dict[str, int], device: torch.device, dtype: torch.dtype) -> LatencyTable:
    """Measure every profiled node of `graph`, the full model and the calibration sub-networks; no cache."""
    from asgnas_ir.api import random_zero_groups, search_space, subnet

    started = time.perf_counter()
    deps = PassManager().analysis("dependency-graph", graph)
    nodes: dict[str, NodeLatency] = {}
    for node in graph.nodes:
        if node.op not in PROFILED_OPS:
            continue
        builder = _Builder(graph, node, sizes, device, dtype, deps.value_groups)
        nodes[node.id] = _profile_node(builder, key.fractions, key.align, device, key.warmup, key.repeats)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # one node's operands at a time, even for batch-64 activations
    draft = LatencyTable(key=key, full_ms=0.0, remainder_fixed_ms=0.0, remainder_scaled_ms=0.0, nodes=nodes)
    space = search_space(graph, "prune")
    chosen: list[list[int]] = []
    for fraction in CALIBRATION_FRACTIONS if space.groups else ():
        for align in (key.align, 1):  # aligned like the grid; unaligned where aligned widths cannot shrink the rest
            zero = random_zero_groups(graph, space, fraction, seed=0, align=align)
            if zero and draft.select(graph, space, zero).rest <= 0.9:
                chosen.append(zero)
                break
    subs = [subnet(graph, space, zero) for zero in chosen]
    # Two interleaved rounds over the full model and the calibration sub-networks, keeping each one's
    # lower median: a burst of load on a shared machine then spoils one round of one model at most.
    times = [math.inf] * (1 + len(subs))
    for _ in range(2 if subs else 1):
        for i, g in enumerate([graph, *subs]):
            times[i] = min(times[i], generated_model_ms(g, device, dtype, sizes, key.warmup, key.repeats))
    points = []
    for zero, ms in zip(chosen, times[1:], strict=True):
        selection = draft.select(graph, space, zero)
        points.append(CalibrationPoint(zero=zero, rest=selection.rest, ms=ms, profiled_ms=draft.profiled_ms(selection)))
    fixed, scaled = fit_remainder(times[0], draft.profiled_ms(draft.select(graph, space, [])), points)
    return draft.model_copy(update={
        "full_ms": times[0], "remainder_fixed_ms": fixed, "remainder_scaled_ms": scaled, "calibration": points,
        "seconds": time.perf_counter() - started,
    })


def latency_table(
    graph: Graph,
    device: str | Any = "cpu",
    *,
    dtype: str | Any = "float32",
    batch: int | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    align: int = 8,
    warmup: int = 3,
    repeats: int = 10,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    refresh: bool = False,
) -> LatencyTable:
    """Measure (or read from the disk cache) the latency table of `graph` on `device`.

    Args:
        graph: the IR graph (weights not needed: random ones are used for the full-model run).
        device: "cpu", "cuda", "cuda:N" or "mps"; the one you deploy to.
        dtype: float32, bfloat16 or float16 (floating inputs and weights).
        batch: batch size (default: the example's); the graph's batch dim must be symbolic to change it.
        fractions: the kept fractions of each width to measure (1.0 is always added).
        align: grid widths are multiples of this many channels where the layer is wide enough.
        warmup, repeats: calls before timing, and timed samples whose median is kept.
        cache: read and write the disk cache; `cache_dir` overrides its folder (see `default_cache_dir`).
        refresh: measure again even when the cache holds the table, and overwrite it.
    """
    dev, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    bad = [f for f in fractions if not 0.0 < float(f) <= 1.0]
    if bad or not fractions:
        raise SpecError(f"fractions must lie in (0, 1], got {list(fractions)}")
    if align < 1 or warmup < 0 or repeats < 1:
        raise SpecError(f"need align >= 1, warmup >= 0 and repeats >= 1, got {align}, {warmup}, {repeats}")
    sizes, batch = _sizes(graph, batch)
    key = LatencyKey(
        graph_fingerprint=graph.fingerprint(), device=str(dev), device_name=device_name(dev),
        threads=torch.get_num_threads() if dev.type == "cpu" else 0, dtype=str(torch_dtype).removeprefix("torch."),
        batch=batch, torch_version=torch.__version__, fractions=tuple(sorted({float(f) for f in fractions} | {1.0})),
        align=int(align), warmup=int(warmup), repeats=int(repeats),
    )
    path = Path(cache_dir).expanduser() / key.cache_name() if cache_dir is not None else default_cache_dir() / key.cache_name()
    if cache and not refresh and path.is_file():
        try:
            table = LatencyTable.load(path)
            if table.key == key:
                return table
        except (AsgnasError, ValidationError):
            pass  # an older format or a damaged file: measure again and overwrite it
    table = measure_table(graph, key, sizes, dev, torch_dtype)
    if cache:
        try:
            table.save(path)
        except OSError as exc:
            warnings.warn(f"latency table not cached ({path}: {exc}); set {CACHE_ENV} to a writable folder", stacklevel=2)
    return table
