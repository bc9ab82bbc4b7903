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
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from asgnas_ir._gc import with_gc_paused
from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.serialize import load_graph
from asgnas_ir.pass_manager import PassManager, get_pass
from asgnas_ir.pass_manager import list_passes as _pass_classes
from asgnas_ir.passes.analysis.cost import CostReport
from asgnas_ir.passes.analysis.dependency_graph import merge_slices
from asgnas_ir.passes.analysis.search_space import SearchSpace
from asgnas_ir.testing import load_generated
from asgnas_ir.tolerance import outputs_match, tolerance

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
def subnet(graph: Graph, space: SearchSpace, zero_groups: Any) -> Graph:
    """The sub-network with the groups `zero_groups` (ids into `space.groups`) removed."""
    if space.graph_fingerprint and space.graph_fingerprint != graph.fingerprint():
        raise AsgnasError(
            f"this search space was built for another graph (fingerprint {space.graph_fingerprint}, this graph "
            f"{graph.fingerprint()}); call ai.search_space on the graph you want to prune"
        )
    ids = [int(i) for i in zero_groups]
    for gid in ids:
        space.group(gid)
    result = PassManager().run("subnet", graph, zero_groups=ids, mode=space.mode)
    return result.graph


@with_gc_paused
def codegen(graph: Graph, target: str = "torch", out_dir: str | Path = "generated") -> list[Path]:
    """Write the graph as source for `target` into `out_dir`; returns the files written."""
    if target not in TARGETS:
        raise SpecError(f"codegen target must be one of {', '.join(TARGETS)}, not '{target}'")
    return PassManager().run(f"codegen-{target}", graph, out_dir=out_dir)


def random_zero_groups(graph: Graph, space: SearchSpace, fraction: float, seed: int = 0) -> list[int]:
    """A random valid selection of about `fraction` of the groups: no value loses all its channels."""
    if not 0.0 <= fraction <= 1.0:
        raise SpecError(f"fraction must be within [0, 1], got {fraction}")
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
    target = int(round(fraction * len(space.groups)))
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


def _random_valid(space: SearchSpace, fraction: float, seed: int) -> list[int]:
    """Greedy random selection that keeps `space.is_valid` true after every accepted group."""
    rng = np.random.default_rng(seed)
    target = int(round(fraction * len(space.groups)))
    chosen: list[int] = []
    for gid in rng.permutation(len(space.groups)).tolist():
        if len(chosen) >= target:
            break
        if space.is_valid([*chosen, gid]):
            chosen.append(gid)
    return sorted(chosen)


CHECK_TARGETS = ("torch", "keras", "onnx")


def _run_generated(target: str, folder: Path, inputs: tuple) -> list[np.ndarray]:
    """Outputs (numpy) of the code generated for `target` in `folder` on `inputs` (torch tensors)."""
    if target == "onnx":
        from asgnas_ir.testing import run_onnx

        return run_onnx(folder / "model.onnx", [x.detach().cpu().numpy() for x in inputs])
    if target == "keras":
        from asgnas_ir.testing import run_keras

        return run_keras(folder, list(inputs))
    from asgnas_ir.backends.torch.binding import run_model

    return run_model(load_generated(folder), inputs)


class CheckSeconds(BaseModel):
    compile: float
    space: float
    subnet: float
    codegen: float
    total: float


class CheckReport(BaseModel):
    """What `check` found; `ok` follows the DESIGN tolerance (see DESIGN §4)."""

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
) -> CheckReport:
    """Compile, zero a random valid `fraction` of the groups, build the subnet, generate code, run it
    and compare with the model whose zeroed groups were set to zero in place (on a copy).

    Unless `keep_weights`, the copy's floating-point state is re-randomized first so the comparison
    is not vacuous. `out_dir` keeps the generated files (default: a temporary folder).
    """
    from asgnas_ir.frontends import as_tuple, detect, is_torch_module

    chosen = detect(model) if frontend == "auto" else frontend
    if not is_torch_module(model) and chosen == "onnx":
        return _check_onnx_model(
            model, example_inputs, mode=mode, target=target or "onnx", fraction=fraction, seed=seed,
            keep_weights=keep_weights, out_dir=out_dir,
        )
    if chosen == "keras":
        return _check_keras_model(
            model, example_inputs, mode=mode, target=target or "keras", fraction=fraction, seed=seed,
            keep_weights=keep_weights, out_dir=out_dir,
        )
    if not is_torch_module(model):
        raise AsgnasError(f"check supports PyTorch, Keras and ONNX models in this version; got {type(model).__name__}")
    target = target or "torch"
    if target not in CHECK_TARGETS:
        raise AsgnasError(f"check target '{target}' is not available for PyTorch models; use one of {', '.join(CHECK_TARGETS)}")
    import torch

    from asgnas_ir.backends.torch.binding import rerandomize_, run_model, zero_slices_

    inputs = as_tuple(example_inputs)
    start = time.perf_counter()
    live = copy.deepcopy(model).eval()
    if not keep_weights:
        rerandomize_(live, seed)
    graph = compile(live, inputs, frontend=chosen)
    t_compile = time.perf_counter()
    space, zero, slices = _random_selection(graph, mode, fraction, seed)
    t_space = time.perf_counter()
    _zeroed(graph, slices)  # first: the graph reads its weights from `live` as compiled
    zero_slices_(live, graph, slices)
    sub = subnet(graph, space, zero)
    t_subnet = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="asgnas-check-") as tmp:
        target_dir = Path(out_dir) if out_dir is not None else Path(tmp)
        codegen(sub, target=target, out_dir=target_dir)
        t_codegen = time.perf_counter()
        with torch.no_grad():
            expected = run_model(live, inputs)
            actual = _run_generated(target, target_dir, inputs)

    return _report(graph, sub, space, zero, expected, actual, chosen, target, (start, t_compile, t_space, t_subnet, t_codegen))


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
    out_dir: str | Path | None,
) -> CheckReport:
    """`check` for a keras.Model or .keras path: the reference is a clone of the model (re-randomized)
    with the zeroed slices written into its variables; the generated model (Keras or PyTorch)
    runs on the same channels-last inputs."""
    if target not in CHECK_TARGETS:
        raise AsgnasError(f"check target '{target}' is not available for Keras models; use one of {', '.join(CHECK_TARGETS)}")
    from asgnas_ir.backends.tensorflow.binding import assign_weights, clone, rerandomize, run_model
    from asgnas_ir.frontends import as_tuple
    from asgnas_ir.frontends.keras.driver import example_arrays, load_keras

    start = time.perf_counter()
    live = clone(load_keras(model))
    inputs = tuple(np.asarray(x.numpy() if hasattr(x, "numpy") else x) for x in as_tuple(example_inputs))
    inputs = inputs or example_arrays(live, seed)
    if not keep_weights:
        rerandomize(live, seed)
    graph = compile(live, inputs, frontend="keras")
    t_compile = time.perf_counter()
    space, zero, slices = _random_selection(graph, mode, fraction, seed)
    t_space = time.perf_counter()
    _zeroed(graph, slices)
    assign_weights(live, graph, {s.param for s in slices})
    sub = subnet(graph, space, zero)
    t_subnet = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="asgnas-check-") as tmp:
        target_dir = Path(out_dir) if out_dir is not None else Path(tmp)
        codegen(sub, target=target, out_dir=target_dir)
        t_codegen = time.perf_counter()
        expected = run_model(live, inputs)
        if target == "keras":
            from asgnas_ir.testing import run_keras

            actual = run_keras(target_dir, list(inputs))
        elif target == "torch":
            from asgnas_ir.testing import run_torch

            actual = run_torch(target_dir, list(inputs))
        else:
            actual = _run_generated(target, target_dir, inputs)
    return _report(graph, sub, space, zero, expected, actual, "keras", target, (start, t_compile, t_space, t_subnet, t_codegen))


def _check_onnx_model(
    model: Any, example_inputs: Any, *, mode: str, target: str, fraction: float, seed: int, keep_weights: bool,
    out_dir: str | Path | None,
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
        with_weights,
    )
    from asgnas_ir.testing import run_onnx

    start = time.perf_counter()
    proto = load_onnx(model)
    given = as_tuple(example_inputs)
    inputs = as_arrays(given) if given else example_arrays(proto, seed)
    if not keep_weights:
        proto = rerandomize_initializers(proto, seed)
    graph = compile(proto, inputs, frontend="onnx")
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
        expected = run_onnx(reference, list(inputs))
        if target == "onnx":
            actual = run_onnx(target_dir / "model.onnx", list(inputs))
        else:
            import torch

            actual = _run_generated(target, target_dir, tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    return _report(graph, sub, space, zero, expected, actual, "onnx", target, (start, t_compile, t_space, t_subnet, t_codegen))


def _report(graph: Graph, sub: Graph, space: SearchSpace, zero: list[int], expected: list, actual: list, frontend: str,
            target: str, times: tuple[float, ...]) -> CheckReport:
    start, t_compile, t_space, t_subnet, t_codegen = times
    max_ref = max((float(np.abs(e).max()) for e in expected if e.size), default=0.0)
    if len(expected) != len(actual) or any(e.shape != a.shape for e, a in zip(expected, actual, strict=False)):
        diff = float("inf")
    else:
        diff = max((float(np.abs(e.astype(np.float64) - a).max()) for e, a in zip(expected, actual, strict=True) if e.size), default=0.0)
    full_cost, sub_cost = cost(graph), cost(sub)
    end = time.perf_counter()
    return CheckReport(
        ok=outputs_match(diff, max_ref), max_abs_diff=diff, tolerance=tolerance(max_ref),
        params_full=full_cost.params, params_sub=sub_cost.params, flops_full=full_cost.flops, flops_sub=sub_cost.flops,
        groups=len(space.groups), zeroed=len(zero), frontend=frontend, target=target,
        seconds=CheckSeconds(compile=t_compile - start, space=t_space - t_compile, subnet=t_subnet - t_space,
                             codegen=t_codegen - t_subnet, total=end - start),
        max_ref=max_ref,
    )
