"""`asgnas compile/check --on-unsupported error|opaque` (DESIGN §4): without the flag an unknown op
stops the command with exit 2 and a message naming it; with `opaque` compile writes the IR with an
opaque node and check runs the generated code around it. In-process (`cli.main`): a subprocess would
spend most of its time importing torch or TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asgnas_ir.cli import EXIT_OK, EXIT_USAGE, main

# torch.i0 (a Bessel function) has no IR op: the fx frontend must report it, and codegen-torch can
# call it back by name from an opaque node.
TORCH_MODEL = """
import torch

class Odd(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        return self.conv3(torch.i0(self.conv2(y)))
"""


# fx lacks i0, so frontend="auto" tries the export path too; torch.export cannot translate i0 either
# and the export path warns as it falls back to the TorchScript exporter (the point of these tests)
EXPORT_FALLBACK = pytest.mark.filterwarnings(r"ignore:torch\.onnx\.export\(dynamo=True\) failed for Odd:UserWarning")


@pytest.fixture
def torch_spec(tmp_path: Path) -> str:
    pytest.importorskip("torch")
    path = tmp_path / "odd.py"
    path.write_text(TORCH_MODEL)
    return f"{path}:Odd"


def _opaque_nodes(ir: Path) -> list[dict]:
    return [n for n in json.loads(ir.read_text())["nodes"] if n["op"] == "opaque"]


@EXPORT_FALLBACK
@pytest.mark.parametrize("command", ["compile", "check"])
def test_without_the_flag_an_unknown_op_exits_2_naming_it(command: str, torch_spec: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = ["-o", str(tmp_path / "odd.json")] if command == "compile" else []
    assert main([command, torch_spec, "--input", "1,3,8,8", *out]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "torch.i0" in err and "'i0'" in err  # the op and where it occurs
    assert "--on-unsupported opaque" in err  # the way out, as the CLI spells it
    assert "Traceback" not in err


@EXPORT_FALLBACK
def test_compile_opaque_writes_the_ir_with_an_opaque_node(torch_spec: str, tmp_path: Path) -> None:
    ir = tmp_path / "odd.json"
    assert main(["compile", torch_spec, "--input", "1,3,8,8", "--on-unsupported", "opaque", "-o", str(ir)]) == EXIT_OK
    assert ir.with_suffix(".safetensors").exists()
    [node] = _opaque_nodes(ir)
    assert node["attrs"]["target"] == "torch.i0"


@EXPORT_FALLBACK
def test_check_opaque_runs_the_generated_code_around_the_opaque_op(torch_spec: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", torch_spec, "--input", "1,3,8,8", "--on-unsupported", "opaque", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and report["ok"], report
    # the opaque op pins conv2's channels (it feeds i0) and conv3's (the output): only conv1's prune
    assert report["groups"] == 8 and report["params_sub"] < report["params_full"]


def test_the_flag_takes_error_or_opaque_only(torch_spec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compile", torch_spec, "--on-unsupported", "skip", "-o", str(tmp_path / "x.json")])
    assert exit_info.value.code == EXIT_USAGE
    assert "--on-unsupported" in capsys.readouterr().err


KERAS_MODEL = """
import keras

class Doubler(keras.layers.Layer):
    def call(self, x):
        return x * 2.0

def build():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = Doubler(name="twice")(x)
    return keras.Model(inp, keras.layers.Conv2D(2, 1, name="out")(x))
"""


def test_keras_user_layer_is_named_or_kept_opaque(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same flag on the Keras frontend; check with an opaque Keras layer stops at codegen with a
    message naming the node (codegen-keras cannot rebuild a user's layer), exit 2, no traceback."""
    pytest.importorskip("keras")
    path = tmp_path / "doubler.py"
    path.write_text(KERAS_MODEL)
    spec, ir = f"{path}:build", tmp_path / "doubler.json"
    assert main(["compile", spec, "-o", str(ir)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Doubler" in err and "'twice'" in err and "--on-unsupported opaque" in err
    assert main(["compile", spec, "--on-unsupported", "opaque", "-o", str(ir)]) == EXIT_OK
    [node] = _opaque_nodes(ir)
    assert node["source"] == "twice"
    capsys.readouterr()
    assert main(["check", spec, "--on-unsupported", "opaque"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "opaque" in err and "twice" in err and "Traceback" not in err
