"""Property tests for the Keras review's classes (issue 14; tests/property/keras_models.py draws the
models): nested sub-models whose inner layers share names (and their `clone_model` copies), Conv2D/Dense
subclasses, `Embedding(mask_zero=True)` with and without a mask consumer, frozen layers in residual
branches, dict inputs and outputs, and per-layer dtype policies. Each goes through
`ai.check(model, inputs, mode=..., fraction=..., seed=...)` in prune and erase mode, at fraction 0 (the
generated code alone must be right) and at random fractions, to the Keras target (and, fewer, to torch).

A case with a `refusal` pattern (a subclass overriding `call`/`convolution_op`, a mask consumer) must be
refused up front with asgnas-ir's own error whose message matches it; the others follow the shared
rule of tests/property/checking.py. Either way `check` leaves the caller's model's variables as they
were (its reference is the model itself, restored on the way out). A failure prints the drawn case:
rebuild it with `build_keras(case, seed)`.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import numpy as np  # noqa: E402
from hypothesis import event, given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import asgnas_ir as ai  # noqa: E402
from tests.property.checking import assert_check_ok  # noqa: E402
from tests.property.keras_models import CI_STRATEGIES, STRATEGIES, build_keras  # noqa: E402

FAST = settings.get_profile(os.environ.get("ASGNAS_FUZZ_PROFILE", "ci_adversarial"))
NIGHTLY = settings.get_profile("nightly")
# TensorFlow makes every example cost ~0.3 s: CI draws a few per (strategy, mode, fractions)
CI_EXAMPLES = max(1, FAST.max_examples // 7)

SEEDS = st.integers(0, 2**16)
FRACTIONS = st.one_of(st.just(0.0), st.floats(0.1, 1.0))
MODES = ("prune", "erase")


def check_case(case: Any, mode: str, fraction: float, seed: int, target: str | None = None) -> None:
    call = (f"case = {case!r}\nmodel, x = build_keras(case, {seed})\n"
            f"ai.check(model, x, mode={mode!r}, fraction={fraction!r}, seed={seed}, target={target!r})")
    note(call)
    model, inputs = build_keras(case, seed)
    before = [np.array(v.numpy(), copy=True) for v in model.variables]
    if case.refusal is not None:
        with pytest.raises(ai.AsgnasError) as info:
            ai.check(model, inputs, mode=mode, fraction=fraction, seed=seed, target=target)
        assert re.search(case.refusal, str(info.value)), f"refused without naming it:\n{info.value}\nreproduce: {call}"
        event(f"refused as expected: {type(info.value).__name__}")
    else:
        assert_check_ok(model, inputs, mode, fraction, seed, call, target=target)
    changed = [v.path for v, old in zip(model.variables, before, strict=True) if not np.array_equal(v.numpy(), old)]
    assert not changed, f"check left the caller's variables changed: {changed}\nreproduce: {call}"


@pytest.mark.parametrize("fractions", ["zero", "random"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("strategy", sorted(CI_STRATEGIES))
def test_keras_models_check(strategy: str, mode: str, fractions: str) -> None:
    @settings(FAST, max_examples=CI_EXAMPLES)
    @given(case=CI_STRATEGIES[strategy](), fraction=st.just(0.0) if fractions == "zero" else st.floats(0.1, 1.0),
           seed=SEEDS)
    def run(case: Any, fraction: float, seed: int) -> None:
        check_case(case, mode, fraction, seed, target="keras")

    run()


ANY_CASE = st.one_of(*(strategy() for strategy in STRATEGIES.values()))
ANY_CI_CASE = st.one_of(*(strategy() for strategy in CI_STRATEGIES.values()))


@settings(FAST, max_examples=2 * CI_EXAMPLES)
@given(case=ANY_CI_CASE, mode=st.sampled_from(MODES), fraction=FRACTIONS, seed=SEEDS)
def test_keras_models_to_torch_check(case: Any, mode: str, fraction: float, seed: int) -> None:
    """The generated PyTorch code runs on the same channels-last inputs and matches the Keras model."""
    check_case(case, mode, fraction, seed, target="torch")


@pytest.mark.nightly
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_nightly_keras_models_check(strategy: str, mode: str) -> None:
    # 500 per mode: 1000 per strategy across the two modes
    @settings(NIGHTLY, max_examples=NIGHTLY.max_examples // 2)
    @given(case=STRATEGIES[strategy](), fraction=FRACTIONS, seed=SEEDS)
    def run(case: Any, fraction: float, seed: int) -> None:
        check_case(case, mode, fraction, seed, target="keras")

    run()


@pytest.mark.nightly
@settings(NIGHTLY, max_examples=300)
@given(case=ANY_CASE, mode=st.sampled_from([*MODES, "both"]), fraction=FRACTIONS, seed=SEEDS)
def test_nightly_keras_models_to_torch_check(case: Any, mode: str, fraction: float, seed: int) -> None:
    check_case(case, mode, fraction, seed, target="torch")
