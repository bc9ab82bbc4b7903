"""The public Python API (DESIGN §4): orchestration only, the algorithms live in passes.

    import asgnas_ir as ai
    graph = ai.compile(model, example_inputs)
    space = ai.search_space(graph, mode="prune")
    sub = ai.subnet(graph, space, zero_groups=[0, 3, 7])
    ai.codegen(sub, target="torch", out_dir="pruned/")
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr

import asgnas_ir.backends.weight_readers  # noqa: F401  (the readers Graph.update_weights reads live models through)
from asgnas_ir._gc import with_gc_paused
from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.serialize import load_graph
from asgnas_ir.pass_manager import PassManager, get_pass
from asgnas_ir.pass_manager import list_passes as _pass_classes
from asgnas_ir.passes.analysis.cost import CostReport
from asgnas_ir.passes.analysis.dependency_graph import merge_slices
from asgnas_ir.passes.analysis.latency import LatencyTable
from asgnas_ir.passes.analysis.search_space import SearchSpace
from asgnas_ir.testing import load_generated
from asgnas_ir.tolerance import MIN_REF, loosest, outputs_match, rtol, tolerance

TARGETS = ("torch", "keras", "onnx")


class PassInfo(str):
    """A pass name (compares equal to the string) that also carries its description."""

    name: str
    description: str
    kind: str
    requires: tuple[str, ...]

    def __new__(cls, name: str, description: str, kind: str, requires: tuple[str, ...]) -> PassInfo:
        info = super().__new__(cls, name)
        info.name, info.description, info.kind, info.requires = name, description, kind, requires
        return info


@with_gc_paused
def compile(  # noqa: A001  (the contract's name)
    model: Any, example_inputs: Any = None, *, frontend: str = "auto", on_unsupported: str = "error"
) -> Graph:
    """Lower a torch.nn.Module (or, as frontends land, a keras.Model / ONNX model) into the IR.

    Args:
        model: the model object, or a path to a `.onnx` / `.keras` file.
        example_inputs: a tensor or tuple of tensors the model accepts (needed for PyTorch).
        frontend: `auto`, `fx`, `onnx` or `keras`.
        on_unsupported: `error` raises one UnsupportedOpError listing every unknown op; `opaque`
            keeps them as opaque nodes that pin every channel they touch.

    Returns:
        The verified IR graph, with the model's weights in `graph.weights`.
    """
    from asgnas_ir.frontends import lower

    graph = lower(model, example_inputs, frontend=frontend, on_unsupported=on_unsupported)
    PassManager().run("verify", graph)
    return graph


def load(path: str | Path) -> Graph:
    """Load a graph saved with `Graph.save` (weights from the `.safetensors` sidecar if present)."""
    return load_graph(path)


def list_passes() -> list[PassInfo]:
    """Every registered pass (each compares equal to its name)."""
    return [PassInfo(p.name, p.description, p.kind, tuple(p.requires)) for p in _pass_classes()]


@with_gc_paused
def run_pass(name: str, graph: Graph, **options: Any) -> Any:
    """Run one pass by name; analyses return their pydantic result, transforms a PassResult."""
    get_pass(name)
    return PassManager().run(name, graph, **options)


@with_gc_paused
def search_space(graph: Graph, mode: str = "prune") -> SearchSpace:
    """The removable groups of `graph` (`prune`: channel groups)."""
    return PassManager().analysis("search-space", graph, mode=mode)


@with_gc_paused
def cost(graph: Graph) -> CostReport:
    """FLOPs (multiply-add = 2), trainable params and activation memory."""
    return PassManager().analysis("cost", graph)


@with_gc_paused
def subnet(graph: Graph, space: SearchSpace, zero_groups: Any, *, align: int = 1) -> Graph:
    """The sub-network with the groups `zero_groups` (ids into `space.groups`) removed.

    With `align` > 1 the selection must leave every layer a multiple of `align` channels or its full
    width (`SearchSpace.aligned` makes one so); a misaligned one is refused with the layers named."""
    if space.graph_fingerprint and space.graph_fingerprint != graph.fingerprint():
        raise AsgnasError(
            f"this search space was built for another graph (fingerprint {space.graph_fingerprint}, this graph "
            f"{graph.fingerprint()}); call ai.search_space on the graph you want to prune"
        )
    ids = [int(i) for i in zero_groups]
    for gid in ids:
        space.group(gid)
    space.check_aligned(ids, align)
    result = PassManager().run("subnet", graph, zero_groups=ids, mode=space.mode)
    return result.graph


@with_gc_paused
def codegen(graph: Graph, target: str = "torch", out_dir: str | Path = "generated") -> list[Path]:
    """Write the graph as source for `target` into `out_dir`; returns the files written."""
    if target not in TARGETS:
        raise SpecError(f"codegen target must be one of {', '.join(TARGETS)}, not '{target}'")
    return PassManager().run(f"codegen-{target}", graph, out_dir=out_dir)


def latency_table(
    graph: Graph,
    device: str | Any = "cpu",
    *,
    dtype: str | Any = "float32",
    batch: int | None = None,
    fractions: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    align: int = 8,
    warmup: int = 3,
    repeats: int = 10,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    refresh: bool = False,
) -> LatencyTable:
    """Measure the latency of `graph`'s compute nodes over kept widths on `device` (PyTorch), cached on disk.

    Args:
        graph: the IR graph (weights are not needed).
        device: "cpu", "cuda", "cuda:N" or "mps": the hardware you deploy to.
        dtype: float32, bfloat16 or float16.
        batch: the batch size to measure at (default: the example's).
        fractions: kept fractions of each width to measure (1.0 is always added).
        align: grid widths are multiples of `align` channels where the layer is wide enough.
        warmup, repeats: untimed calls, then timed samples whose median is kept.
        cache: read and write the disk cache (`cache_dir`, else `$ASGNAS_LATENCY_CACHE`, else
            `~/.cache/asgnas-ir/latency`); a second call with the same arguments measures nothing.
        refresh: measure again and overwrite the cached table.

    Returns:
        The table; `table.estimate(graph, space, zero_groups)` predicts a sub-network's latency (ms) and
        `table.savings(graph, space)` each group's latency saving.
    """
    from asgnas_ir.backends.torch.latency import latency_table as measure

    return measure(
        graph, device, dtype=dtype, batch=batch, fractions=fractions, align=align, warmup=warmup, repeats=repeats,
        cache=cache, cache_dir=cache_dir, refresh=refresh,
    )


def random_zero_groups(graph: Graph, space: SearchSpace, fraction: float, seed: int = 0, *, align: int = 1) -> list[int]:
    """A random valid selection of about `fraction` of the groups: no value loses all its channels.

    With `align` > 1 every layer keeps a multiple of `align` channels or its full width: each layer's
    random count is moved to the nearest aligned one, so the total is about `fraction`, not exactly."""
    if not 0.0 <= fraction <= 1.0:
        raise SpecError(f"fraction must be within [0, 1], got {fraction}")
    chosen = _random_selection_unaligned(graph, space, fraction, seed)
    if align == 1 and not isinstance(align, bool):
        return chosen
    redundancy = np.random.default_rng([seed, 1]).random(len(space.groups))
    return sorted(space.aligned(chosen, align, redundancy))


def _random_selection_unaligned(graph: Graph, space: SearchSpace, fraction: float, seed: int) -> list[int]:
    if space.mode != "prune":
        return _random_valid(space, fraction, seed)
    deps = PassManager().analysis("dependency-graph", graph)
    remaining: dict[str, Counter] = {}
    touches: dict[int, list[str]] = {}
    for value, groups in deps.value_groups.items():
        counts = Counter(g for g in groups if g >= 0)
        remaining[value] = Counter({"total": len(groups)})
        for gid, n in counts.items():
            touches.setdefault(gid, []).append(value)
            remaining[value][gid] = n
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(space.groups)).tolist()
    target = _target_count(fraction, len(space.groups))
    chosen: list[int] = []
    for gid in order:
        if len(chosen) >= target:
            break
        values = touches.get(gid, [])
        if all(remaining[v]["total"] - remaining[v][gid] > 0 for v in values):
            for v in values:
                remaining[v]["total"] -= remaining[v][gid]
            chosen.append(gid)
    return sorted(chosen)


def _target_count(fraction: float, groups: int) -> int:
    """How many groups a `fraction` asks for: at least one whenever it is above zero and there is a group,
    since rounding a small share down to none (round(0.5 * 1) == 0) would make a check test nothing."""
    target = int(round(fraction * groups))
    return max(target, 1) if fraction > 0 and groups else target


def _random_valid(space: SearchSpace, fraction: float, seed: int) -> list[int]:
    """Greedy random selection that keeps `space.is_valid` true after every accepted group."""
    rng = np.random.default_rng(seed)
    target = _target_count(fraction, len(space.groups))
    return sorted(space.greedy_valid(rng.permutation(len(space.groups)).tolist(), target))


CHECK_TARGETS = ("torch", "keras", "onnx")


def _run_generated(target: str, folder: Path, inputs: tuple) -> list[np.ndarray]:
    """Outputs (numpy) of the code generated for `target` in `folder` on `inputs` (torch tensors).

    Raises:
        CodegenError: the generated code does not run (a codegen bug: it must never surface as a
            traceback from inside the generated file).
    """
    try:
        return _run_generated_unchecked(target, folder, inputs)
    except AsgnasError:
        raise
    except Exception as exc:  # noqa: BLE001  (anything the generated code raises is reported as one error)
        from asgnas_ir.errors import CodegenError

        shapes = [list(getattr(x, "shape", ())) for x in inputs]
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CodegenError(
            f"the code generated for target '{target}' fails on inputs of shape {shapes}: {type(exc).__name__}: {first}. "
            f"This is a bug in codegen-{target}; please report it with the model (the files are kept with out_dir=)."
        ) from exc


def _run_generated_unchecked(target: str, folder: Path, inputs: tuple) -> list[np.ndarray]:
    if target == "onnx":
        from asgnas_ir.frontends.onnx.reference import as_arrays
        from asgnas_ir.testing import run_onnx

        return run_onnx(folder / "model.onnx", list(as_arrays(inputs)))
    if target == "keras":
        from asgnas_ir.testing import run_keras

        return run_keras(folder, list(inputs))
    from asgnas_ir.backends.torch.binding import device_of, run_model

    # on the inputs' device: a model on CUDA is checked against generated code running on CUDA
    return run_model(load_generated(folder, device_of(inputs)), inputs)


class CheckSeconds(BaseModel):
    compile: float
    space: float
    subnet: float
    codegen: float
    total: float


class CheckReport(BaseModel):
    """What `check` found; `ok` follows the DESIGN tolerance (see DESIGN §4), output by output.

    `max_abs_diff`, `tolerance` and `max_ref` are those of the worst output: the one that fails, or else
    the one closest to its tolerance. `reason` (not a field: the JSON keys are DESIGN's) says in words
    why a failed check failed."""

    ok: bool
    max_abs_diff: float
    tolerance: float
    params_full: int
    params_sub: int
    flops_full: int
    flops_sub: int
    groups: int
    zeroed: int
    frontend: str
    target: str
    seconds: CheckSeconds
    max_ref: float
    # the input shapes the generated code ran at (one list of shapes per run); the worst output over
    # all of them is what `max_abs_diff` reports
    shapes_checked: list[list[list[int]]] = Field(default_factory=list)

    _reason: str | None = PrivateAttr(default=None)
    _degenerate: bool = PrivateAttr(default=False)
    _notes: list[str] = PrivateAttr(default_factory=list)
    _untested: bool = PrivateAttr(default=False)

    @property
    def untested(self) -> bool:
        """A fraction above zero was asked for but no valid non-empty selection exists, so nothing was
        removed and only the unpruned model was compared: not ok, whatever the difference."""
        return self._untested

    @property
    def notes(self) -> list[str]:
        """How outputs were compared where it was not value by value (a softmax's probabilities are
        compared as logits, see `compare_outputs`)."""
        return list(self._notes)

    @property
    def reason(self) -> str | None:
        """Why `ok` is false, in a sentence; None when it is true."""
        return self._reason

    @property
    def degenerate(self) -> bool:
        """The selection left every output the same for any input: not ok, whatever the difference,
        since reproducing a constant proves nothing (a fuzzer may count it rather than fail on it)."""
        return self._degenerate


def check(
    model: Any,
    example_inputs: Any,
    *,
    mode: str = "prune",
    frontend: str = "auto",
    target: str | None = None,
    fraction: float = 0.5,
    seed: int = 0,
    keep_weights: bool = False,
    out_dir: str | Path | None = None,
    on_unsupported: str = "error",
) -> CheckReport:
    """Compile, zero a random valid `fraction` of the groups, build the subnet, generate code, run it
    and compare with the model whose zeroed groups were set to zero in place (on a copy).

    Unless `keep_weights`, the copy's floating-point state is re-randomized first so the comparison
    is not vacuous. `out_dir` keeps the generated files (default: a temporary folder).
    `on_unsupported` is `compile`'s: `opaque` keeps unknown ops as opaque nodes, which the check then
    needs the target's codegen to write back (codegen-torch can for torch functions and methods).
    """
    from asgnas_ir.frontends import as_tuple, detect, is_torch_module

    chosen = detect(model) if frontend == "auto" else frontend
    if not is_torch_module(model) and chosen == "onnx":
        return _check_onnx_model(
            model, example_inputs, mode=mode, target=target or "onnx", fraction=fraction, seed=seed,
            keep_weights=keep_weights, out_dir=out_dir, on_unsupported=on_unsupported,
        )
    if chosen == "keras":
        return _check_keras_model(
            model, example_inputs, mode=mode, target=target or "keras", fraction=fraction, seed=seed,
            keep_weights=keep_weights, out_dir=out_dir, on_unsupported=on_unsupported,
        )
    if not is_torch_module(model):
        raise AsgnasError(f"check supports PyTorch, Keras and ONNX models in this version; got {type(model).__name__}")
    target = target or "torch"
    if target not in CHECK_TARGETS:
        raise AsgnasError(f"check target '{target}' is not available for PyTorch models; use one of {', '.join(CHECK_TARGETS)}")
    import torch

    from asgnas_ir.backends.torch.binding import (
        recalibrate_batch_norms_,
        rerandomize_,
        run_model,
        zero_slices_,
    )

    inputs = as_tuple(example_inputs)
    start = time.perf_counter()
    live = copy.deepcopy(model).eval()
    if not keep_weights:
        rerandomize_(live, seed, inputs)  # BN statistics calibrated on the inputs: see rerandomize_
    graph = compile(live, inputs, frontend=frontend, on_unsupported=on_unsupported)
    t_compile = time.perf_counter()
    space, zero, slices = _random_selection(graph, mode, fraction, seed)
    t_space = time.perf_counter()
    _zeroed(graph, slices)  # first: the graph reads its weights from `live` as compiled
    zero_slices_(live, graph, slices)
    if not keep_weights and slices:
        recalibrate_batch_norms_(live, graph, inputs, seed)  # the zeroed reference's own statistics, in both
    sub = subnet(graph, space, zero)
    t_subnet = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="asgnas-check-") as tmp:
        target_dir = Path(out_dir) if out_dir is not None else Path(tmp)
        codegen(sub, target=target, out_dir=target_dir)
        t_codegen = time.perf_counter()
        with torch.no_grad():
            expected = run_model(live, inputs)
            actual = _run_generated(target, target_dir, inputs)
            constant = _input_independent(lambda arrays: run_model(live, _like_tensors(arrays, inputs)), _as_arrays(inputs),
                                          expected, _output_dtypes(graph, expected), seed,
                                          _softmax_axes_for(graph, expected))
            runs = _other_shapes(graph, inputs, lambda xs: run_model(live, xs), lambda xs: _run_generated(target, target_dir, xs))

    return _report(graph, sub, space, zero, expected, actual, graph.meta.frontend or chosen, target,
                   (start, t_compile, t_space, t_subnet, t_codegen), constant=constant, mode=mode, fraction=fraction,
                   inputs=inputs, runs=runs)


def _random_selection(graph: Graph, mode: str, fraction: float, seed: int) -> tuple[SearchSpace, list[int], list]:
    """check's choice: the search space, a random valid `fraction` of its groups, and their slices."""
    space = search_space(graph, mode=mode)
    zero = random_zero_groups(graph, space, fraction, seed)
    return space, zero, [s for gid in zero for s in space.group(gid).slices]


def _zeroed(graph: Graph, slices: list) -> None:
    """Set the given slices of `graph.weights` to zero (copies of the touched arrays)."""
    weights = dict(graph.weights)
    for (param, axis), indices in merge_slices(slices).items():
        array = weights[param] = weights[param].copy()
        index = [slice(None)] * array.ndim
        index[axis] = indices  # type: ignore[call-overload]
        array[tuple(index)] = 0
    graph.set_weights(weights)


def _check_keras_model(
    model: Any, example_inputs: Any, *, mode: str, target: str, fraction: float, seed: int, keep_weights: bool,
    out_dir: str | Path | None, on_unsupported: str = "error",
) -> CheckReport:
    """`check` for a keras.Model or .keras path. The reference is the caller's model itself: its
    variables are saved, re-randomized and zeroed in place, and restored exactly on the way out, even
    on error. A copy (`clone_model`) would rebuild every layer from its config, which silently swaps a
    user function for a Keras one of the same name and breaks on lambdas and custom constructors, so it
    would test another model. Dict inputs are matched by key and dict outputs compared by key; the
    generated model (Keras or PyTorch) runs on the same channels-last inputs."""
    if target not in CHECK_TARGETS:
        raise AsgnasError(f"check target '{target}' is not available for Keras models; use one of {', '.join(CHECK_TARGETS)}")
    from asgnas_ir.backends.tensorflow.binding import assign_weights, recalibrate_batch_norms, rerandomize
    from asgnas_ir.frontends.keras.driver import example_arrays, functional_of, load_keras, ordered_inputs

    start = time.perf_counter()
    user = load_keras(model)
    given = ordered_inputs(user, example_inputs)
    inputs = tuple(np.asarray(x.numpy() if hasattr(x, "numpy") else x) for x in given)
    # build an unbuilt Sequential now, so that the variables saved are all the variables there will be
    functional_of(user, [tuple(x.shape) for x in inputs] or None)
    saved = _save_variables(user)
    try:
        inputs = inputs or example_arrays(user, seed)
        if not keep_weights:
            rerandomize(user, seed, inputs)  # BN statistics calibrated on the inputs: see rerandomize
        graph = compile(user, inputs, frontend="keras", on_unsupported=on_unsupported)
        t_compile = time.perf_counter()
        space, zero, slices = _random_selection(graph, mode, fraction, seed)
        t_space = time.perf_counter()
        _zeroed(graph, slices)
        assign_weights(user, graph, {s.param for s in slices})
        if not keep_weights and slices:
            recalibrate_batch_norms(user, graph, inputs, seed)  # the zeroed reference's own statistics, in both
        sub = subnet(graph, space, zero)
        t_subnet = time.perf_counter()

        with tempfile.TemporaryDirectory(prefix="asgnas-check-") as tmp:
            target_dir = Path(out_dir) if out_dir is not None else Path(tmp)
            codegen(sub, target=target, out_dir=target_dir)
            t_codegen = time.perf_counter()
            expected = _run_keras_reference(user, list(inputs))
            constant = _input_independent(lambda arrays: _run_keras_reference(user, arrays), list(inputs), expected,
                                          _output_dtypes(graph, expected), seed, _softmax_axes_for(graph, expected))
            def generated(arrays: Sequence[Any]) -> list[np.ndarray]:
                if target == "keras":
                    from asgnas_ir.testing import run_keras

                    return run_keras(target_dir, list(arrays))
                if target == "torch":
                    from asgnas_ir.testing import run_torch

                    return run_torch(target_dir, list(arrays))
                from asgnas_ir.testing import run_onnx

                return run_onnx(target_dir / "model.onnx", list(arrays))

            actual = generated(inputs)
            runs = _other_shapes(graph, inputs, lambda xs: _run_keras_reference(user, list(xs)), generated)
    finally:
        _restore_variables(saved)
    return _report(graph, sub, space, zero, expected, actual, "keras", target, (start, t_compile, t_space, t_subnet, t_codegen),
                   constant=constant, mode=mode, fraction=fraction, inputs=inputs, runs=runs)


def _save_variables(model: Any) -> list[tuple[Any, np.ndarray]]:
    """Every variable of a Keras `model` (trainable or not, LoRA adapters, seed states) with a copy of its
    value, for `_restore_variables`."""
    from asgnas_ir.backends.tensorflow.binding import live_variables

    seen: dict[int, Any] = {}
    for variable in [*model.variables, *live_variables(model).values()]:
        seen.setdefault(id(variable), variable)
    return [(v, np.array(v.numpy(), copy=True)) for v in seen.values()]


def _restore_variables(saved: list[tuple[Any, np.ndarray]]) -> None:
    for variable, value in saved:
        variable.assign(value)


def _run_keras_reference(model: Any, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Outputs of the caller's Keras model (inference) on `arrays` (the IR's input order), called with the
    structure it was built on (a dict by key for dict inputs); a dict of outputs comes back in sorted-key
    order, `keras.tree.flatten`'s, which is the order the frontend gave the IR's outputs."""
    import keras

    from asgnas_ir.frontends.keras.driver import pack_inputs

    outputs = model(pack_inputs(model, [np.asarray(a) for a in arrays]), training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)]


def _check_onnx_model(
    model: Any, example_inputs: Any, *, mode: str, target: str, fraction: float, seed: int, keep_weights: bool,
    out_dir: str | Path | None, on_unsupported: str = "error",
) -> CheckReport:
    """`check` for an onnx.ModelProto or .onnx path: the reference is the (re-randomized) ONNX model
    itself with the zeroed slices written into its initializers, run in onnxruntime."""
    if target not in CHECK_TARGETS:
        raise AsgnasError(f"check target '{target}' is not available for ONNX models; use one of {', '.join(CHECK_TARGETS)}")
    from asgnas_ir.frontends import as_tuple
    from asgnas_ir.frontends.onnx import load_onnx
    from asgnas_ir.frontends.onnx.reference import (
        as_arrays,
        example_arrays,
        rerandomize_initializers,
        run_checked,
        with_weights,
    )

    start = time.perf_counter()
    proto = load_onnx(model)
    given = as_tuple(example_inputs)
    inputs = as_arrays(given) if given else example_arrays(proto, seed)
    if not keep_weights:
        proto = rerandomize_initializers(proto, seed)
    graph = compile(proto, inputs, frontend="onnx", on_unsupported=on_unsupported)
    t_compile = time.perf_counter()
    space, zero, slices = _random_selection(graph, mode, fraction, seed)
    t_space = time.perf_counter()
    _zeroed(graph, slices)
    sub = subnet(graph, space, zero)
    t_subnet = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="asgnas-check-") as tmp:
        target_dir = Path(out_dir) if out_dir is not None else Path(tmp)
        codegen(sub, target=target, out_dir=target_dir)
        t_codegen = time.perf_counter()
        reference = Path(tmp) / "reference.onnx"
        import onnx

        onnx.save(with_weights(proto, graph), str(reference))
        source = f"'{model}'" if isinstance(model, (str, Path)) else f"ModelProto '{proto.graph.name or 'model'}'"
        expected = run_checked(reference, list(inputs), f"the ONNX model {source} (the reference, with the zeroed weights)")
        constant = _input_independent(lambda arrays: run_checked(reference, arrays, f"the ONNX model {source}"), list(inputs), expected,
                                      _output_dtypes(graph, expected), seed, _softmax_axes_for(graph, expected))
        def generated(arrays: Sequence[Any]) -> list[np.ndarray]:
            if target == "onnx":
                return run_checked(target_dir / "model.onnx", list(arrays), f"the generated model.onnx of {source}")
            import torch

            return _run_generated(target, target_dir, tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in arrays))

        actual = generated(inputs)
        runs = _other_shapes(graph, inputs, lambda xs: run_checked(reference, list(xs), f"the ONNX model {source}"), generated)
    return _report(graph, sub, space, zero, expected, actual, "onnx", target, (start, t_compile, t_space, t_subnet, t_codegen),
                   constant=constant, mode=mode, fraction=fraction, inputs=inputs, runs=runs)


class OutputComparison(NamedTuple):
    """One output of the generated model against the reference's (DESIGN §4's rule, for that output alone)."""

    index: int
    max_abs_diff: float
    max_ref: float
    tolerance: float
    ok: bool
    problem: str  # why it fails, in words; "" when ok
    note: str = ""  # how the output was compared, when not value by value

    @property
    def ratio(self) -> float:
        """How much of its tolerance the output uses (inf: unusable); ranks outputs for the report."""
        if self.tolerance > 0:
            return self.max_abs_diff / self.tolerance if not np.isnan(self.max_abs_diff) else float("inf")
        return 0.0 if self.max_abs_diff == 0 else float("inf")


def _is_float(array: np.ndarray) -> bool:
    # ml_dtypes' bfloat16 (what Keras hands back for a bfloat16 output) is no np.floating subtype
    return bool(
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating)
        or array.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")
    )


# smallest normal number per dtype: probabilities below it are rounding noise when read back as logits
_TINY = {"float16": 2.0**-14, "bfloat16": 2.0**-126, "float32": 2.0**-126, "float64": 2.0**-1022}


def softmax_logits(probabilities: np.ndarray, axis: int, dtype: str = "float32") -> np.ndarray:
    """The logits a softmax's `probabilities` came from, centred along `axis` (float64).

    Softmax forgets one constant per row (z and z + c give the same probabilities), and only that:
    log p - mean(log p) is the logits minus their mean, whatever the constant was. Comparing these
    instead of the probabilities keeps every class on the scale of the logits, so neither a head with
    thousands of classes (max p under MIN_REF) nor an error in the small probabilities hides under
    the largest probability. Values below the dtype's smallest normal are clipped to it, on both sides.
    """
    p = np.maximum(np.asarray(probabilities, np.float64), _TINY.get(dtype, 2.0**-126))
    logp = np.log(p)
    return logp - logp.mean(axis=axis, keepdims=True)


def compare_outputs(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray], dtypes: Sequence[str] | None = None,
                    softmax: Sequence[int | None] | None = None) -> list[OutputComparison]:
    """Each output held to the DESIGN tolerance with its own max |reference|, so a large output cannot
    hide a wrong small one. Float outputs use `tolerance(max_ref, dtype)` (`dtypes`: the model's output
    dtypes, which numpy may have widened, e.g. bfloat16); integer and bool outputs must be equal. A
    count or shape mismatch is one failing comparison with an infinite difference. `softmax` gives,
    per output, the axis of the softmax that produced it (None: not one): those outputs are compared as
    their centred logits (`softmax_logits`) and say so in their `note`."""
    if len(expected) != len(actual):
        return [OutputComparison(0, float("inf"), 0.0, 0.0, False,
                                 f"the generated model returns {len(actual)} output(s), the reference {len(expected)}")]
    dtypes = list(dtypes) if dtypes is not None and len(dtypes) == len(expected) else [str(e.dtype) for e in expected]
    axes = list(softmax) if softmax is not None and len(softmax) == len(expected) else [None] * len(expected)
    found = []
    for i, (e, a, dtype, axis) in enumerate(zip(expected, actual, dtypes, axes, strict=True)):
        e, a = np.asarray(e), np.asarray(a)
        if e.shape != a.shape:
            found.append(OutputComparison(i, float("inf"), 0.0, 0.0, False,
                                          f"output {i} has shape {list(a.shape)}, the reference {list(e.shape)}"))
            continue
        if e.size == 0:
            continue  # nothing to compare; with no other output the check fails below for want of one
        note = ""
        if axis is not None and _is_float(e) and e.ndim > axis and e.shape[axis] > 1:
            e, a = softmax_logits(e, axis, dtype), softmax_logits(a, axis, dtype)
            note = (f"output {i} is a softmax over axis {axis}: compared as logits (log-probabilities centred "
                    "along that axis; softmax ignores one constant per row)")
        max_ref = float(np.abs(e.astype(np.float64)).max())
        diff = float(np.abs(e.astype(np.float64) - a.astype(np.float64)).max())
        if not _is_float(e):
            ok = diff == 0
            found.append(OutputComparison(i, diff, max_ref, 0.0, ok, "" if ok else f"output {i} ({dtype}) differs by {diff:.3g}"))
            continue
        tol = tolerance(max_ref, dtype)
        ok = outputs_match(diff, max_ref, dtype)
        if ok:
            problem = ""
        elif not max_ref > MIN_REF:
            problem = (f"output {i}'s reference is degenerate (max |ref| {max_ref:.3g} <= {MIN_REF:g}), so the "
                       "comparison would say nothing; let check re-randomize the weights (no keep_weights)")
        else:
            problem = (f"output {i} differs from the reference by {diff:.3g}, more than its tolerance {tol:.3g} "
                       f"({rtol(dtype):g} x its max |ref| {max_ref:.3g})")
        if note and problem:
            problem = problem.replace(f"output {i} ", f"output {i} (a softmax, compared as centred logits) ", 1)
        found.append(OutputComparison(i, diff, max_ref, tol, ok, problem, note))
    if not found:
        found.append(OutputComparison(0, 0.0, 0.0, 0.0, False, "the model has no non-empty output to compare"))
    return found


def worst_output(comparisons: Sequence[OutputComparison]) -> OutputComparison:
    """The output the report shows: a failing one before any passing one, then the largest share of its
    tolerance."""
    return max(comparisons, key=lambda c: (not c.ok, c.ratio))


def _output_dtypes(graph: Graph, expected: Sequence[np.ndarray]) -> list[str]:
    """The model's output dtypes as the graph records them (numpy widens bfloat16), or numpy's when the
    graph's outputs do not line up with the ones the model returned."""
    names = graph.outputs
    if len(names) == len(expected) and all(n in graph.values for n in names):
        # a value computed in a lower precision upstream (a Keras mixed-precision layer before a float32
        # head) limits the output's accuracy: its rounding is the loosest one the comparison allows for
        rounded = [graph.values[node.outputs[0]].dtype for node in graph.nodes if node.op.value == "cast"]
        return [loosest([graph.values[n].dtype, *rounded]) for n in names]
    return [str(np.asarray(e).dtype) for e in expected]


def _as_arrays(tensors: Sequence[Any]) -> list[np.ndarray]:
    from asgnas_ir.ir.weights import tensor_array

    return [tensor_array(t) for t in tensors]


def _like_tensors(arrays: Sequence[np.ndarray], like: Sequence[Any]) -> tuple:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(dtype=t.dtype, device=t.device) for a, t in zip(arrays, like, strict=True))


def _other_inputs(inputs: Sequence[np.ndarray], seed: int) -> list[list[np.ndarray]]:
    """Two sets of inputs unlike `inputs`, each input kept in the range the example shows: floats redrawn
    with the example's mean and spread; integers mirrored within their observed [lo, hi] (indices stay
    valid), then all set to lo, so a model that only counts tokens still sees a change; bools negated,
    then all false. An input that cannot change this way (one repeated integer) stays as it is; a set in
    which nothing changed is left out."""
    rng = np.random.default_rng([seed, 0x0C0])
    sets: list[list[np.ndarray]] = [[], []]
    for x in inputs:
        x = np.asarray(x)
        if _is_float(x):
            spread = float(x.std()) if x.size else 0.0
            centre = float(x.mean()) if x.size else 0.0
            for alt in sets:
                z = rng.standard_normal(x.shape)
                alt.append((centre + spread * z if spread > 0 else z).astype(x.dtype))
        elif x.dtype == np.bool_:
            sets[0].append(~x)
            sets[1].append(np.zeros_like(x) if x.any() else np.ones_like(x))
        elif x.size and np.issubdtype(x.dtype, np.integer):
            lo, hi = x.min(), x.max()
            sets[0].append((lo + hi - x).astype(x.dtype))
            sets[1].append(np.full_like(x, lo))
        else:
            sets[0].append(x)
            sets[1].append(x)
    return [alt for alt in sets if any(not np.array_equal(a, x) for a, x in zip(alt, inputs, strict=True))]


def _input_independent(run: Callable[[list[np.ndarray]], list[np.ndarray]], inputs: Sequence[np.ndarray],
                       expected: Sequence[np.ndarray], dtypes: Sequence[str], seed: int,
                       softmax: Sequence[int | None] | None = None) -> bool:
    """Whether every output of the (zeroed) reference stays the same when the inputs change.

    Such a selection cut every path from the inputs to the outputs (an erase choice that removed the
    trunk, or weights shared with a removed part): the generated model then only has to reproduce a
    constant, and a check that passes says nothing. "The same" is within each output's own tolerance,
    since a change below it is one the comparison could not see either. Two unlike inputs are tried and
    both must leave every output unchanged; when no unlike input can be made, it cannot be told: False.
    A softmax's output (`softmax`: its axis per output) is judged as its logits, as `compare_outputs`
    judges it: a wide head's probabilities move less than their tolerance while its logits move."""
    alternatives = _other_inputs(inputs, seed)
    if not alternatives:
        return False
    axes = list(softmax) if softmax is not None and len(softmax) == len(expected) else [None] * len(expected)
    for alt in alternatives:
        other = run(list(alt))
        if len(other) != len(expected):
            return False
        for e, o, dtype, axis in zip(expected, other, dtypes, axes, strict=True):
            e, o = np.asarray(e), np.asarray(o)
            if e.shape != o.shape:
                return False
            if not e.size:
                continue
            if axis is not None and _is_float(e) and e.ndim > axis and e.shape[axis] > 1:
                e, o = softmax_logits(e, axis, dtype), softmax_logits(o, axis, dtype)
            change = float(np.abs(e.astype(np.float64) - o.astype(np.float64)).max())
            limit = tolerance(float(np.abs(e.astype(np.float64)).max()), dtype) if _is_float(e) else 0.0
            if not change <= limit:  # NaN counts as a change
                return False
    return True


def softmax_axes(graph: Graph) -> list[int | None]:
    """For each graph output, the axis of the softmax that produces it (None: not a softmax's output)."""
    from asgnas_ir.ir.ops import Op

    producer = {out: node for node in graph.nodes for out in node.outputs}
    axes: list[int | None] = []
    for name in graph.outputs:
        node = producer.get(name)
        if node is None or node.op != Op.SOFTMAX:
            axes.append(None)
            continue
        rank = len(graph.values[name].shape)
        axes.append(int(node.attrs.axis) % rank if rank else None)
    return axes


def _softmax_axes_for(graph: Graph, expected: Sequence[np.ndarray]) -> list[int | None] | None:
    """`softmax_axes(graph)` when the graph's outputs line up with the outputs the reference returned."""
    return softmax_axes(graph) if len(graph.outputs) == len(expected) else None


class ShapeRun(NamedTuple):
    """The reference and the generated code at input shapes other than the example's."""

    shapes: list[list[int]]
    expected: list
    actual: list


def _other_shapes(graph: Graph, inputs: Sequence[Any], reference: Callable[[tuple], list],
                  generated: Callable[[tuple], list]) -> list[ShapeRun | str]:
    """Both models at every other size the graph's symbols were found to follow (DESIGN §4: another
    batch, and another sequence length for token inputs). A source that refuses a size (an ONNX file
    with a fixed batch) is not run there: the entry is then the sentence saying so."""
    from asgnas_ir.frontends._symbolic import resized_inputs, varied_size

    runs: list[ShapeRun | str] = []
    for symbol, size in graph.meta.symbols.items():
        other = varied_size(symbol, size)
        resized = resized_inputs(inputs, graph, symbol, other)
        try:
            expected = reference(resized)
        except Exception as exc:  # noqa: BLE001  (the source's own refusal is reported, not raised)
            runs.append(f"the source model does not run at {symbol}={other} ({type(exc).__name__}), so only "
                        f"{symbol}={size} was checked")
            continue
        runs.append(ShapeRun(_shapes_of(resized), expected, generated(resized)))
    return runs


def _shapes_of(inputs: Sequence[Any]) -> list[list[int]]:
    return [[int(d) for d in getattr(x, "shape", ())] for x in inputs]


def _report(graph: Graph, sub: Graph, space: SearchSpace, zero: list[int], expected: list, actual: list, frontend: str,
            target: str, times: tuple[float, ...], *, constant: bool = False, mode: str = "prune",
            fraction: float = 0.0, inputs: Sequence[Any] = (), runs: Sequence[ShapeRun | str] = ()) -> CheckReport:
    start, t_compile, t_space, t_subnet, t_codegen = times
    dtypes, softmax = _output_dtypes(graph, expected), _softmax_axes_for(graph, expected)
    comparisons = compare_outputs(expected, actual, dtypes, softmax)
    shapes_checked = [_shapes_of(inputs)]
    shape_notes = [graph.meta.static_reason] if graph.meta.static_reason else []
    for run in runs:
        if isinstance(run, str):
            shape_notes.append(run)
            continue
        shapes_checked.append(run.shapes)
        at = f"at input shapes {run.shapes}"
        comparisons += [
            c._replace(problem=f"{c.problem} ({at})") if c.problem else c
            for c in compare_outputs(run.expected, run.actual, dtypes, softmax)
        ]
    worst = worst_output(comparisons)
    # a fraction above zero asks for a test of removal: a selection of none (no valid non-empty one
    # exists) compared only the unpruned model, which must not read as a pass
    untested = fraction > 0 and bool(space.groups) and not zero
    ok = all(c.ok for c in comparisons) and not constant and not untested
    if worst.problem:
        reason: str | None = worst.problem
        others = sum(1 for c in comparisons if not c.ok) - 1
        if others > 0:
            reason += f" (and {others} more output(s) fail)"
    elif untested:
        reason = (
            f"nothing was tested: fraction {fraction:g} asks to zero some of the {len(space.groups)} group(s) (mode "
            f"'{mode}'), but no valid non-empty selection exists (each group alone would empty a value or break the "
            "mode's rules), so only the unpruned model was compared"
        )
    elif constant and zero:
        shown = ", ".join(map(str, zero[:8])) + (", ..." if len(zero) > 8 else "")
        reason = (
            f"degenerate selection: with the {len(zero)} zeroed group(s) [{shown}] (mode '{mode}') every output of the "
            "reference stays the same when the inputs change, so nothing from the inputs reaches an output and the "
            "comparison says nothing; choose groups that leave a path (another seed or a smaller fraction)"
        )
    elif constant:
        reason = ("degenerate model: with nothing zeroed, every output stays the same when the inputs change, so the "
                  "comparison says nothing about how the generated code treats its inputs")
    else:
        reason = None
    full_cost, sub_cost = cost(graph), cost(sub)
    end = time.perf_counter()
    report = CheckReport(
        ok=ok, max_abs_diff=worst.max_abs_diff, tolerance=worst.tolerance,
        params_full=full_cost.params, params_sub=sub_cost.params, flops_full=full_cost.flops, flops_sub=sub_cost.flops,
        groups=len(space.groups), zeroed=len(zero), frontend=frontend, target=target,
        seconds=CheckSeconds(compile=t_compile - start, space=t_space - t_compile, subnet=t_subnet - t_space,
                             codegen=t_codegen - t_subnet, total=end - start),
        max_ref=worst.max_ref, shapes_checked=shapes_checked,
    )
    report._reason, report._degenerate = reason, constant
    report._notes, report._untested = list(dict.fromkeys([c.note for c in comparisons if c.note] + shape_notes)), untested
    return report
