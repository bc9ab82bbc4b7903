"""`check` holds every output to the DESIGN tolerance with its own max |ref|, and reports a selection
that leaves every output constant as degenerate (issue 13, DESIGN §4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import asgnas_ir as ai
import asgnas_ir.api as api
from asgnas_ir import cli
from asgnas_ir.api import _input_independent, _other_inputs, compare_outputs, worst_output
from asgnas_ir.passes.analysis.dependency_graph import Slice
from tests.models import REPLICAS, example_inputs
from tests.models.check_outputs import two_branches, two_scales

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _shift_output(monkeypatch: pytest.MonkeyPatch, index: int, fraction: float) -> None:
    """Make the generated model's output `index` wrong by `fraction` of that output's max |value|."""
    run = api._run_generated

    def wrong(*args: object) -> list[np.ndarray]:
        outputs = run(*args)  # type: ignore[arg-type]
        outputs[index] = outputs[index] + fraction * float(np.abs(outputs[index]).max())
        return outputs

    monkeypatch.setattr(api, "_run_generated", wrong)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_two_outputs_of_different_sizes_pass_when_both_are_right(fraction: float) -> None:
    report = ai.check(two_scales(), X, fraction=fraction)
    assert report.ok, report.reason
    assert report.reason is None and not report.degenerate
    # the figures are those of the output closest to its own tolerance
    assert report.max_abs_diff <= report.tolerance == pytest.approx(1e-4 * report.max_ref)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_a_wrong_small_output_is_not_hidden_by_a_large_one(monkeypatch: pytest.MonkeyPatch, fraction: float) -> None:
    """1% off on the small output is 1e-5 of the large output's size: within one global tolerance,
    100 times its own."""
    _shift_output(monkeypatch, 1, 0.01)
    report = ai.check(two_scales(), X, fraction=fraction)
    assert not report.ok
    assert report.max_ref < 100  # the small output's figures, not the large one's (~1000x larger)
    assert report.max_abs_diff > report.tolerance == pytest.approx(1e-4 * report.max_ref)
    assert report.reason is not None and report.reason.startswith("output 1 differs from the reference by")


def test_compare_outputs_holds_each_output_to_its_own_reference() -> None:
    big, small = np.full((2, 4), 1000.0, np.float32), np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    found = compare_outputs([big, small], [big + 0.05, small + 0.01])
    assert [c.ok for c in found] == [True, False]
    worst = worst_output(found)
    assert worst.index == 1 and worst.max_ref == pytest.approx(1.0) and worst.tolerance == pytest.approx(1e-4)
    # a passing set reports the output using most of its tolerance
    found = compare_outputs([big, small], [big + 0.05, small + 1e-5])
    assert all(c.ok for c in found) and worst_output(found).index == 0
    # a degenerate output fails on its own even next to a healthy one
    found = compare_outputs([big, np.zeros(3, np.float32)], [big, np.zeros(3, np.float32)])
    assert [c.ok for c in found] == [True, False] and "degenerate" in worst_output(found).problem
    # NaN is never within tolerance; integer outputs must be equal
    assert not compare_outputs([small], [small * np.nan])[0].ok
    ints = np.arange(6).reshape(2, 3)
    assert compare_outputs([ints], [ints.copy()])[0].ok and not compare_outputs([ints], [ints + 1])[0].ok
    # count and shape mismatches fail with an infinite difference
    assert compare_outputs([big], [big, big])[0].max_abs_diff == float("inf")
    assert "shape [4, 2]" in compare_outputs([big], [big.T])[0].problem
    # the model's dtype decides the tolerance: bfloat16 outputs get its looser bound
    assert compare_outputs([small], [small + 0.01], ["bfloat16"])[0].ok


def _kill_the_stem(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add the stem's weights to check's selection, as weights shared with a removed branch would be
    (issue 13, finding 8): the reference and the generated model then both compute head(constant)."""
    select = api._random_selection

    def with_stem(graph: ai.Graph, mode: str, fraction: float, seed: int):  # type: ignore[no-untyped-def]
        space, zero, slices = select(graph, mode, fraction, seed)
        stem = [name for name, param in graph.params.items() if param.source.startswith("stem.")]
        assert len(stem) == 2  # weight and bias
        return space, zero, [*slices, *(Slice(name, 0, list(range(8)), "out") for name in stem)]

    monkeypatch.setattr(api, "_random_selection", with_stem)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_erase_selection_that_leaves_every_output_constant_is_degenerate(monkeypatch: pytest.MonkeyPatch, fraction: float) -> None:
    assert ai.check(two_branches(), X, mode="erase", fraction=fraction).ok
    _kill_the_stem(monkeypatch)
    report = ai.check(two_branches(), X, mode="erase", fraction=fraction)
    assert report.max_abs_diff <= report.tolerance  # the generated model does reproduce the constant...
    assert not report.ok and report.degenerate  # ...which says nothing
    assert report.reason is not None and report.reason.startswith("degenerate")
    if report.zeroed:
        assert report.reason.startswith("degenerate selection") and "mode 'erase'" in report.reason


def test_erasing_every_attention_block_of_a_vit_is_degenerate() -> None:
    """Without attention the ViT's CLS token never meets a patch token, and the head reads only the CLS
    token: every output is a constant. check used to call this selection ok (difference 0)."""
    replica = REPLICAS["vit_encoder"]
    model, inputs = replica.build(), example_inputs(replica)
    graph = ai.compile(model, inputs)
    space = ai.search_space(graph, mode="erase")
    chosen = ai.random_zero_groups(graph, space, 0.5, seed=0)
    assert all("self_attention" in space.group(gid).nodes[0] for gid in chosen) and len(chosen) == 2
    report = ai.check(model, inputs, mode="erase", fraction=0.5, seed=0)
    assert report.max_abs_diff <= report.tolerance
    assert report.degenerate and not report.ok
    assert ai.check(model, inputs, mode="erase", fraction=0.5, seed=1).ok  # one attention block left


def test_cli_prints_why_a_check_failed_on_stderr(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _kill_the_stem(monkeypatch)
    code = cli.main(["check", "tests/models/check_outputs.py:two_branches", "--input", "2,3,8,8", "--mode", "erase", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out)["ok"] is False  # stdout stays one JSON object
    assert "asgnas check: failed: degenerate selection" in captured.err


def test_outputs_that_follow_the_input_are_not_degenerate() -> None:
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    tokens = np.array([[0, 1, 1, 0], [1, 0, 0, 1]])  # as many 0s as 1s: mirroring keeps the counts
    dtypes = ["float32"]

    def constant(arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [np.full(3, 2.0, np.float32)]

    assert _input_independent(constant, [x], constant([x]), dtypes, seed=0)
    assert not _input_independent(lambda a: [a[0].sum(1)], [x], [x.sum(1)], dtypes, seed=0)

    # a bag of tokens ignores order, and mirroring 0 <-> 1 keeps these counts: the second input set
    # (every token the smallest one) changes them
    def counts(arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [np.bincount(arrays[0].ravel(), minlength=2).astype(np.float32)]

    assert not _input_independent(counts, [tokens], counts([tokens]), dtypes, seed=0)
    # a float input that is ignored next to an integer one that is used: still input-dependent
    assert not _input_independent(lambda a: counts(a[1:]), [x, tokens], counts([tokens]), dtypes, seed=0)
    # nothing can be varied (one repeated token): it cannot be told, so it is not called degenerate
    same = np.zeros((1, 4), np.int64)
    assert _other_inputs([same], seed=0) == []
    assert not _input_independent(constant, [same], constant([same]), dtypes, seed=0)
    # alternatives keep integer inputs inside the range the example shows
    for alt in _other_inputs([tokens * 3 + 2], seed=0):
        assert alt[0].min() >= 2 and alt[0].max() <= 5 and alt[0].dtype == tokens.dtype
