"""Property tests on hand-built ONNX graphs (tests/property/onnx_graphs.py), in prune and erase mode, at
fraction 0 and at random fractions:

- Gemm chains with every bias shape go through `ai.check` (reference: onnxruntime on the source graph);
- graphs whose `value_info` lies about a Reshape output are compiled from the file alone (no example
  inputs: the case `check` cannot see, since it always passes inputs), sliced, written as ONNX, and the
  generated model is compared with onnxruntime on the source file whose removed groups were zeroed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import asgnas_ir as ai
from asgnas_ir.frontends.onnx.reference import with_weights
from asgnas_ir.passes.analysis.dependency_graph import merge_slices
from asgnas_ir.testing import run_onnx
from asgnas_ir.tolerance import outputs_match, tolerance
from tests.property.checking import assert_check_ok
from tests.property.onnx_graphs import (
    GemmGraph,
    LyingGraph,
    gemm_graphs,
    gemm_model,
    lying_graphs,
    lying_model,
)

FAST = settings.get_profile(os.environ.get("ASGNAS_FUZZ_PROFILE", "ci_adversarial"))
NIGHTLY = settings.get_profile("nightly")

SEEDS = st.integers(0, 2**16)
FRACTIONS = st.one_of(st.just(0.0), st.floats(0.1, 1.0))
MODES = ("prune", "erase")


def _input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check_gemm(spec: GemmGraph, mode: str, fraction: float, seed: int) -> None:
    call = (f"spec = {spec!r}\nai.check(gemm_model(spec, {seed}), _input(spec.input_shape, {seed}), mode={mode!r}, "
            f"fraction={fraction!r}, seed={seed})")
    note(call)
    assert_check_ok(gemm_model(spec, seed), _input(spec.input_shape, seed), mode, fraction, seed, call)


def check_lying(spec: LyingGraph, mode: str, fraction: float, seed: int, folder: Path) -> None:
    """compile(path) without inputs -> random zero groups -> subnet -> codegen(onnx) == onnxruntime on the
    source file with those groups zeroed; or a refusal by compile with asgnas-ir's own error."""
    note(f"spec = {spec!r}\nmode={mode!r}, fraction={fraction!r}, seed={seed}  (see check_lying)")
    proto = lying_model(spec, seed)
    source = folder / "source.onnx"
    onnx.save(proto, str(source))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a warning about the wrong value_info is welcome, not required
            graph = ai.compile(str(source))
    except ai.AsgnasError as refusal:
        event(f"refused by compile: {type(refusal).__name__}")
        assert str(refusal).strip()
        return
    space = ai.search_space(graph, mode=mode)
    zero = ai.random_zero_groups(graph, space, fraction, seed)
    weights = {name: np.array(graph.weights[name]) for name in graph.params}
    for (param, axis), indices in merge_slices([s for gid in zero for s in space.group(gid).slices]).items():
        index: list = [slice(None)] * weights[param].ndim
        index[axis] = indices
        weights[param][tuple(index)] = 0
    graph.set_weights(weights)
    reference = folder / "reference.onnx"
    onnx.save(with_weights(proto, graph), str(reference))
    ai.codegen(ai.subnet(graph, space, zero), target="onnx", out_dir=folder / "generated")
    x = _input(spec.input_shape, seed)
    (expected,) = run_onnx(reference, [x])
    (actual,) = run_onnx(folder / "generated" / "model.onnx", [x])
    assert actual.shape == expected.shape, f"generated output shape {actual.shape}, source {expected.shape}"
    max_ref = float(np.abs(expected).max())
    diff = float(np.abs(expected.astype(np.float64) - actual).max())
    if max_ref <= 1e-3:
        assert diff <= 1e-7
    else:
        assert outputs_match(diff, max_ref), f"differs by {diff:.3g} > {tolerance(max_ref):.3g} (max |ref| {max_ref:.3g})"
    event(f"zeroed {'none' if not zero else 'some'}")


@FAST
@given(spec=gemm_graphs(), mode=st.sampled_from(MODES), fraction=FRACTIONS, seed=SEEDS)
def test_gemm_bias_shapes_check(spec: GemmGraph, mode: str, fraction: float, seed: int) -> None:
    check_gemm(spec, mode, fraction, seed)


@FAST
@given(spec=lying_graphs(), mode=st.sampled_from(MODES), fraction=FRACTIONS, seed=SEEDS)
def test_lying_value_info_is_not_believed(spec: LyingGraph, mode: str, fraction: float, seed: int,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    check_lying(spec, mode, fraction, seed, tmp_path_factory.mktemp("lying"))


@pytest.mark.nightly
@NIGHTLY
@given(spec=gemm_graphs(), mode=st.sampled_from([*MODES, "both"]), fraction=FRACTIONS, seed=SEEDS)
def test_nightly_gemm_bias_shapes_check(spec: GemmGraph, mode: str, fraction: float, seed: int) -> None:
    check_gemm(spec, mode, fraction, seed)


@pytest.mark.nightly
@NIGHTLY
@given(spec=lying_graphs(), mode=st.sampled_from([*MODES, "both"]), fraction=FRACTIONS, seed=SEEDS)
def test_nightly_lying_value_info_is_not_believed(spec: LyingGraph, mode: str, fraction: float, seed: int,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    check_lying(spec, mode, fraction, seed, tmp_path_factory.mktemp("lying"))
