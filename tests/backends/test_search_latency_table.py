"""AG's (and random search's) latency objective read from a latency table (issue 18, part 2): with
`latency_table` set, each candidate's `latency_ms` is the table's estimate for it, not a timing."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends.torch import evaluator as ev  # noqa: E402
from asgnas_ir.errors import SpecError  # noqa: E402

FAST = {"fractions": (0.5, 1.0), "warmup": 0, "repeats": 1, "cache": False}


def _config(**extra: object) -> ev.TorchEvaluatorConfig:
    return ev.TorchEvaluatorConfig(supernet="super_resnet", epochs=1, train_samples=32, batch_size=32, inherit=False, **extra)


def test_candidate_latency_is_the_tables_estimate(tmp_path: Path) -> None:
    ev._CACHE.clear()
    prepared = ev.prepare(_config())
    table = ai.latency_table(prepared.graph, "cpu", **FAST)
    path = table.save(tmp_path / "super.latency.json")
    evaluator = ev.TorchEvaluator(_config(latency_table=str(path)))
    full, pruned = evaluator([]), evaluator([1, 6])
    assert full.latency_ms == pytest.approx(table.estimate(prepared.graph, prepared.space, []))
    assert pruned.latency_ms == pytest.approx(table.estimate(prepared.graph, prepared.space, [1, 6]))
    assert pruned.latency_ms <= full.latency_ms  # the table never predicts a slower sub-network


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(SpecError, match="latency table .*nope.json.* does not exist"):
        ev.TorchEvaluator(_config(latency_table=str(missing)))([])
