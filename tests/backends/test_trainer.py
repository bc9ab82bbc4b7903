"""The training job: checkpoints, resume, divergence handling, and the report it writes."""

from __future__ import annotations

import io
import json

import pytest
import torch
from rich.console import Console

from asgnas_ir.backends.torch.trainer import TrainConfig, TrainingDiverged, run_training
from asgnas_ir.errors import SpecError

QUIET = {"console": Console(file=io.StringIO())}
# Every run here must reach its sub-network by training: finalize() forcing a group it left non-zero fails the test.
pytestmark = pytest.mark.filterwarnings("error::asgnas_ir.backends._groups.GroupsNotZeroWarning")


def small(out, **changes) -> TrainConfig:  # noqa: ANN001
    base = {"supernet": "stacked_unets", "epochs": 4, "warmup_epochs": 1, "baseline": False, "out": str(out)}
    return TrainConfig(**{**base, **changes})


def test_report_and_files_are_written(tmp_path) -> None:
    """A short run writes model.py, weights, report.json and the plot, and the sub-network predicts like the super-network."""
    report = run_training(small(tmp_path), **QUIET)
    for name in ("model.py", "weights.safetensors", "report.json", "accuracy_flops.png", "checkpoint.pt"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["equivalent"] is True and saved["predictions_identical"] is True and saved["zero_groups"] == report["zero_groups"]
    assert saved["sub_network"]["flops"] < saved["super_network"]["flops"]
    assert len(saved["history"]) == 4


def test_hesso_shrinks_within_the_job_s_epochs(tmp_path) -> None:
    """HESSO's ramp is the job's shrink period (a third of the epochs after warm-up), so a short run ends with
    the chosen groups zero by training (the module's filter fails the test if finalize() had to force them)."""
    report = run_training(small(tmp_path, optimizer="hesso"), **QUIET)
    assert report["equivalent"] is True and len(report["zero_groups"]) == report["groups"] // 2


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path) -> None:
    """Stopping after 2 of 4 epochs and resuming ends with the same weights and report as one 4-epoch run."""
    straight = run_training(small(tmp_path / "a"), **QUIET)
    run_training(small(tmp_path / "b", epochs=2), **QUIET)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    # Pretend the 2-epoch run was a 4-epoch run cut short: rewrite the config it recorded.
    state["config"]["epochs"] = 4
    torch.save(state, tmp_path / "b" / "checkpoint.pt")
    resumed = run_training(small(tmp_path / "b"), resume=True, **QUIET)
    assert resumed["history"] == straight["history"]
    assert resumed["zero_groups"] == straight["zero_groups"]
    assert resumed["sub_network"]["test_accuracy"] == straight["sub_network"]["test_accuracy"]


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    """A NaN loss in epoch 3 stops training with a message naming the checkpoint, which still holds epoch 2."""
    calls = {"n": 0}
    original = torch.nn.CrossEntropyLoss.forward

    def flaky(self, logits, target):  # noqa: ANN001, ANN202
        calls["n"] += 1
        loss = original(self, logits, target)
        return loss * float("nan") if calls["n"] > 2 * 23 else loss  # 1347 images / 64 = 23 steps per epoch

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", flaky)
    with pytest.raises(TrainingDiverged, match=r"epoch 3.*checkpoint.*kept"):
        run_training(small(tmp_path), **QUIET)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 2


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path) -> None:
    """Resuming with a different config is refused instead of silently mixing runs."""
    run_training(small(tmp_path, epochs=1, warmup_epochs=0), **QUIET)
    with pytest.raises(Exception, match="different config"):
        run_training(small(tmp_path, epochs=1, warmup_epochs=0, lr=0.2), resume=True, **QUIET)


def test_the_job_defaults_to_the_automatic_lambda_with_a_shrink_that_fits_the_epochs() -> None:
    """λ is automatic by default and the shrink takes a third of the epochs after warm-up (two thirds are left to recover)."""
    config = TrainConfig()
    assert config.lmbda is None and config.epsilon == 0.5
    assert config.effective_shrink_epochs == (30 - 5) // 3 and config.shrink_period(22) == 8 * 22
    assert TrainConfig(epochs=4, warmup_epochs=1).effective_shrink_epochs == 1  # at least one epoch
    assert TrainConfig(shrink_epochs=7).shrink_period(10) == 70


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 3, "warmup_epochs": 3}, r"warmup_epochs \(3\) must be below epochs \(3\)"),
        ({"epochs": 10, "warmup_epochs": 5, "shrink_epochs": 6}, r"warmup_epochs \(5\) \+ shrink_epochs \(6\) exceed epochs \(10\)"),
        ({"optimizer": "hesso", "epochs": 10, "shrink_epochs": 6}, r"shrink_epochs \(6\) exceed epochs"),
        ({"epsilon": 0.0}, r"epsilon must be > 0 with the automatic λ"),
    ],
)
def test_a_schedule_whose_groups_cannot_reach_zero_is_refused(tmp_path, changes, message) -> None:  # noqa: ANN001
    """`asgnas train` refuses, naming the fields, a config under which finalize() would have to force the groups."""
    path = tmp_path / "train.json"
    path.write_text(json.dumps(changes))
    with pytest.raises(SpecError, match=message):
        TrainConfig.from_file(path)


def test_an_explicit_lambda_keeps_dhspg_and_needs_no_shrink_room() -> None:
    """With a number for lmbda the shrink period does not drive H2SPG, so it does not have to fit the epochs."""
    config = TrainConfig(lmbda=1.0, epochs=10, warmup_epochs=5, shrink_epochs=20)
    assert config.lmbda == 1.0 and not config.uses_shrink


def test_update_weights_carries_trained_values_into_the_graph() -> None:
    """graph.update_weights(model) copies the live values by source path and rejects a mismatched model."""
    import asgnas_ir as ai
    from asgnas_ir.examples.supernets import SUPERNETS

    model = SUPERNETS["stacked_unets"]().eval()
    graph = ai.compile(model, torch.randn(1, 1, 8, 8))
    with torch.no_grad():
        model.unet1.out[0].weight.fill_(0.25)
    graph.update_weights(model)
    assert (graph.weights["unet1.out.0.weight"] == 0.25).all()
    with pytest.raises(ai.IRValidationError, match="has no parameter"):
        graph.update_weights(torch.nn.Linear(2, 2))
