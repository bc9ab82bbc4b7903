"""Property test of the whole loop on random architectures: compile -> random zero groups -> subnet ->
codegen(torch) -> load the generated model -> same outputs as the original with those groups zeroed
(`ai.check`, DESIGN §4 tolerance), in prune, erase and both modes.

A failure shows the drawn `Arch`; `build(arch, seed)` from tests/property/strategies.py rebuilds the
model and the assertion message carries the exact `ai.check` call. The CI profile runs a few dozen
derandomized examples per test; `make fuzz` (marker `nightly`) runs >= 1000 per strategy.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

import asgnas_ir as ai
from tests.property.checking import assert_check_ok
from tests.property.strategies import Arch, architectures, build, erasable_architectures, example_input

FAST = settings.get_profile(os.environ.get("ASGNAS_FUZZ_PROFILE", "ci"))
NIGHTLY = settings.get_profile("nightly")

SEEDS = st.integers(0, 2**16)


def assert_roundtrip(arch: Arch, mode: str, fraction: float, seed: int, *, removable: bool = False) -> ai.CheckReport | None:
    """`ai.check` on the model `arch` describes is ok (tests/property/checking.py); with `removable`, at
    least one group was removed."""
    torch.set_num_threads(1)  # the suite shares two cores; many tiny models gain nothing from threads
    call = (
        f"arch = {arch!r}\nai.check(build(arch, {seed}), example_input(arch, {seed}), mode={mode!r}, "
        f"fraction={fraction!r}, seed={seed})"
    )
    note(call)
    return assert_check_ok(build(arch, seed), example_input(arch, seed), mode, fraction, seed, call, removable=removable)


@FAST
@given(arch=architectures(), mode=st.sampled_from(["prune", "prune", "both"]), fraction=st.floats(0.1, 1.0), seed=SEEDS)
def test_random_architecture_prunes_exactly(arch: Arch, mode: str, fraction: float, seed: int) -> None:
    """Channel pruning (and both modes) of any drawn architecture keeps the outputs of the zeroed model."""
    assert_roundtrip(arch, mode, fraction, seed)


@FAST
@given(arch=erasable_architectures(), mode=st.sampled_from(["erase", "erase", "both"]), fraction=st.floats(0.5, 1.0), seed=SEEDS)
def test_random_branches_erase_exactly(arch: Arch, mode: str, fraction: float, seed: int) -> None:
    """Erasing removal structures (summed parallel branches, residual bodies) keeps the outputs, and something
    is always removed: the last join has a branch ending in a bare conv."""
    assert_roundtrip(arch, mode, fraction, seed, removable=True)


@pytest.mark.nightly
@NIGHTLY
@given(arch=architectures(), mode=st.sampled_from(["prune", "prune", "both"]), fraction=st.floats(0.1, 1.0), seed=SEEDS)
def test_nightly_random_architecture_prunes_exactly(arch: Arch, mode: str, fraction: float, seed: int) -> None:
    assert_roundtrip(arch, mode, fraction, seed)


@pytest.mark.nightly
@NIGHTLY
@given(arch=erasable_architectures(), mode=st.sampled_from(["erase", "erase", "both"]), fraction=st.floats(0.5, 1.0), seed=SEEDS)
def test_nightly_random_branches_erase_exactly(arch: Arch, mode: str, fraction: float, seed: int) -> None:
    assert_roundtrip(arch, mode, fraction, seed, removable=True)
