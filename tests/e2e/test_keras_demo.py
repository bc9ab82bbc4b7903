"""`asgnas demo --framework keras`: the main job with the Keras SuperResNet, H2SPG through `fit`, Keras code out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asgnas_ir.demo import KERAS_DEMO_CONFIG, run_demo
from asgnas_ir.errors import AsgnasError
from tests.e2e.test_cli import asgnas


def test_keras_demo_refuses_resume_and_unknown_frameworks(tmp_path: Path) -> None:
    with pytest.raises(AsgnasError, match="no checkpoints"):
        run_demo(tmp_path, resume=True, framework="keras")
    with pytest.raises(AsgnasError, match="unknown framework"):
        run_demo(tmp_path, framework="jax")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_keras_demo_writes_keras_code_that_predicts_like_the_supernet(tmp_path: Path) -> None:
    """A short run (5 epochs: 3 of warm-up, 2 of H2SPG; too short to recover accuracy, which is not checked) writes the
    Keras sub-network; its logits equal the trained super-network's within the DESIGN tolerance on the test set, and
    the files reload to the reported accuracy."""
    pytest.importorskip("keras")
    out = tmp_path / "demo"
    result = asgnas("demo", "--framework", "keras", "--out", str(out), "--epochs", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GroupsNotZeroWarning" not in result.stderr  # training, not finalize(), zeroed the chosen groups
    for name in ("model.py", "weights.safetensors", "report.json", "accuracy_flops.png"):
        assert (out / name).exists(), name
    assert not (out / "checkpoint.pt").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["framework"] == "keras" and report["config"]["supernet"] == KERAS_DEMO_CONFIG["supernet"]
    # The verdict is the DESIGN tolerance on the logits; argmax may flip on near-tied logits after so short a run.
    assert report["equivalent"] is True and report["max_abs_logit_diff"] <= 1e-4 * report["max_ref"]
    assert abs(report["sub_network"]["test_accuracy"] - report["super_network"]["test_accuracy"]) <= 1.0
    assert len(report["zero_groups"]) == report["groups"] // 2 == 12
    assert report["sub_network"]["flops"] < report["super_network"]["flops"]
    assert report["sub_network"]["params"] < report["super_network"]["params"]
    assert len(report["history"]) == 5

    from asgnas_ir.backends.data import load_digits_split
    from asgnas_ir.testing import run_keras

    split = load_digits_split()
    (logits,) = run_keras(out, np.ascontiguousarray(split.x_test.transpose(0, 2, 3, 1)))
    assert float((logits.argmax(1) == split.y_test).mean() * 100) == pytest.approx(report["sub_network"]["test_accuracy"])
