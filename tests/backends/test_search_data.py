"""The `evaluator.data` field of the ag/random search configs: digits by default, digits_hard on request,
evaluations on it deterministic, and super-network weights never reused across data sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asgnas_ir.backends.search.config import EvaluatorSettings, load_config
from asgnas_ir.backends.search.random_search import RandomSearchConfig
from asgnas_ir.errors import SpecError


def test_data_defaults_to_digits_and_an_unknown_name_is_refused_naming_the_field(tmp_path: Path) -> None:
    assert EvaluatorSettings().data == "digits"
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"evaluator": {"data": "digits_hard"}}))
    assert load_config(RandomSearchConfig, good).evaluator.data == "digits_hard"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"evaluator": {"data": "mnist"}}))
    with pytest.raises(SpecError, match=r"(?s)bad\.json.*evaluator\.data.*digits_hard"):
        load_config(RandomSearchConfig, bad)


def _evaluate(data: str, zero_groups: list[int]) -> dict:
    from asgnas_ir.backends.torch import evaluator as ev

    ev._CACHE.clear()  # compile and split again from scratch, as a fresh worker process would
    config = ev.TorchEvaluatorConfig(supernet="super_resnet", data=data, epochs=1, train_samples=96, batch_size=32)
    return ev.TorchEvaluator(config)(zero_groups).model_dump(exclude={"seconds"})


@pytest.mark.slow
def test_a_digits_hard_evaluation_runs_on_16x16_images_and_is_deterministic() -> None:
    first = _evaluate("digits_hard", [1, 6])
    assert first == _evaluate("digits_hard", [1, 6])
    # Accuracies are counts of the 450 test / 270 validation images of digits_hard's split.
    assert round(first["test_accuracy"] * 450 / 100, 6).is_integer()
    assert round(first["val_accuracy"] * 270 / 100, 6).is_integer()
    # The same architecture on 8x8 digits: same weights, a quarter of the pixels per conv.
    easy = _evaluate("digits", [1, 6])
    assert easy["params"] == first["params"]
    assert 3 * easy["flops"] < first["flops"] < 5 * easy["flops"]


def test_supernet_weights_trained_on_digits_are_not_reused_for_digits_hard(tmp_path: Path) -> None:
    from asgnas_ir.backends.torch.evaluator import TorchEvaluatorConfig, train_supernet

    config = TorchEvaluatorConfig(supernet="super_resnet", supernet_epochs=1, train_samples=32, batch_size=32)
    path = train_supernet(config, tmp_path / "supernet.safetensors")
    with pytest.raises(SpecError, match="different config"):
        train_supernet(config.model_copy(update={"data": "digits_hard"}), path)
