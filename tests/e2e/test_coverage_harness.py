"""A CI-sized slice of the real-model coverage harness (benchmarks/coverage.py): two tiny timm models and
a keras.applications MobileNet, checked in both modes through the harness's own row function, and one
model through the script's isolated-process driver. timm and Keras are optional: absent, these skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import coverage
from benchmarks._report import REPORT

ROW_FIELDS = {"source", "model", "mode", "frontend", "groups", "ok", "shapes_checked", "both_batches", "seconds",
              "error", "input"}


def _assert_passing(row: dict) -> None:
    assert not ROW_FIELDS - row.keys(), row
    assert row["ok"], row
    assert row["error"] is None
    # erase mode may find nothing to erase (MobileNet v1 has no residual blocks); prune always finds channels
    assert row["groups"] >= (1 if row["mode"] == "prune" else 0)
    assert row["frontend"]
    assert row["shapes_checked"] and all(isinstance(s, list) for s in row["shapes_checked"])
    assert row["both_batches"] == (len(row["shapes_checked"]) >= 2)
    assert row["seconds"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", coverage.MODES)
@pytest.mark.parametrize("name", ["test_resnet", "test_byobnet"])
def test_timm_rows(name: str, mode: str) -> None:
    pytest.importorskip("timm")
    row = coverage.run_case("timm", name, mode)
    _assert_passing(row)
    assert row["input"] == [[1, 3, 64, 64]]  # the smallest size of the ladder these accept


@pytest.mark.slow
@pytest.mark.parametrize("mode", coverage.MODES)
def test_keras_mobilenet_row(mode: str) -> None:
    keras = pytest.importorskip("keras")
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(alpha=0.25, weights=None, classes=10, input_shape=(64, 64, 3))
    x = np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype("float32")
    row = coverage.check_row("keras", "MobileNet", model, [x], mode)
    _assert_passing(row)
    assert row["frontend"] == "keras"


@pytest.mark.slow
def test_script_runs_isolated_and_reports(tmp_path: Path) -> None:
    """The driver end to end: child processes, the results file and the per-source totals, no BENCHMARKS.md."""
    pytest.importorskip("timm")
    results = tmp_path / "results.json"
    before = REPORT.read_text() if REPORT.exists() else None
    assert coverage.main(["--sources", "timm", "--models", "timm:test_resnet", "--limit", "1", "--timeout", "60",
                          "--results", str(results), "--no-write"]) == 0
    data = json.loads(results.read_text())
    assert [(r["model"], r["mode"]) for r in data["rows"]] == [("test_resnet", "prune"), ("test_resnet", "erase")]
    for row in data["rows"]:
        _assert_passing(row)
    (total,) = coverage.totals(coverage.summarize(data["rows"]))
    assert total[:5] == ("timm", "1", "1 / 1 (100%)", "1 / 1 (100%)", "1 / 1 (100%)")
    assert (REPORT.read_text() if REPORT.exists() else None) == before


def test_timeout_and_worker_errors_become_rows() -> None:
    """A worker past its time limit, or one that cannot build its model, yields a failed row naming why,
    not an exception in the driver."""
    case = coverage.Case("timm", "test_resnet", "resnet")
    env = coverage._child_env(1)
    row = coverage.run_isolated(case, "prune", 0.5, env)
    assert not row["ok"] and row["error"].startswith("timed out after 0.5 s")
    row = coverage.run_isolated(coverage.Case("nosuch", "x"), "prune", 60, env)
    assert not row["ok"] and "unknown source 'nosuch'" in row["error"]


# ---- the Hugging Face section -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "bert"])
def test_hugging_face_rows_pass_at_two_batches_and_two_lengths(name: str) -> None:
    """A transformers release that breaks the export path turns this red: a grouped-query decoder and
    an encoder, from the harness's own tiny configs, checked at batch 2 and 3 and at 16 and 15 tokens.
    transformers is in the test extra, so this does not skip."""
    row = coverage.run_case("hf", name, "prune")
    _assert_passing(row)
    assert row["frontend"] == "onnx" and row["input"] == [[2, 16]]
    assert row["sizes_ok"] and row["batches"] == [2, 3] and row["seq_lens"] == [15, 16], row


def _fake_row(name: str, mode: str, shapes: list, ok: bool = True, error: str | None = None) -> dict:
    row = coverage._row("hf", name, mode, frontend="onnx", groups=4, ok=ok, shapes_checked=shapes, seconds=1.0,
                        error=error, family=f"{name.title()}Model", both_batches=ok and len(shapes) >= 2)
    return {**row, **coverage.sizes_checked(row)}


def test_hugging_face_sizes_cell_needs_two_batches_and_two_lengths() -> None:
    full = [[[2, 16]], [[3, 16]], [[2, 15]]]
    rows = [_fake_row("a", m, full) for m in coverage.MODES]
    rows += [_fake_row("b", m, [[[2, 16]], [[3, 16]]]) for m in coverage.MODES]  # no second length
    rows += [_fake_row("c", "prune", full), _fake_row("c", "erase", [[[2, 16]]], ok=False, error="ValueError: x")]
    a, b, c = (coverage.hf_cells(m) for m in coverage.summarize(rows))
    assert a[6] == "yes (batch 2, 3; seq 15, 16)" and a[8] == ""
    assert b[6] == "no (batch 2, 3; seq 16)" and b[8] == "checked at fewer than two batch sizes and two sequence lengths"
    assert c[5] == "no" and c[6] == "no (batch 2, 3; seq 15, 16)" and c[8] == "erase: ValueError: x"
    assert coverage.hf_totals(coverage.summarize(rows)) == ("3", "3 / 3", "2 / 3", "1 / 3")


def test_hugging_face_rows_keep_to_their_own_file_and_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--sources hf` writes the hf results file and the `coverage_hf` section only: the vision table and
    its results stay as they were."""
    written: dict[str, str] = {}
    monkeypatch.setattr(coverage, "run_isolated",
                        lambda case, mode, timeout, env: _fake_row(case.name, mode, [[[2, 16]], [[3, 16]], [[2, 15]]]))
    monkeypatch.setattr(coverage, "write_section", lambda name, body: written.__setitem__(name, body))
    results = tmp_path / "results.json"
    assert coverage.main(["--sources", "hf", "--models", "llama,bert", "--results", str(results)]) == 0
    assert not results.exists() and list(written) == ["coverage_hf"]
    rows = json.loads((tmp_path / "results_hf.json").read_text())["rows"]
    assert [(r["model"], r["mode"]) for r in rows] == [("bert", "prune"), ("bert", "erase"), ("llama", "prune"),
                                                        ("llama", "erase")]
    assert "| llama | LlamaModel | onnx | 4/4 | yes | yes | yes (batch 2, 3; seq 15, 16) | 2.0 |  |" in written["coverage_hf"]
