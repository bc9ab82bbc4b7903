"""The `asgnas` CLI contract: commands, exit codes (0 ok, 1 check failed, 2 bad input), messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESNET = "tests/models/resnet.py:resnet_basic"


def asgnas(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asgnas_ir.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_check_json_prints_one_object_with_ok_true() -> None:
    """`asgnas check SPEC --input SHAPE --json` prints the report as one JSON object and exits 0."""
    result = asgnas("check", RESNET, "--input", "1,3,32,32", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["params_sub"] < report["params_full"]


def test_check_accepts_kwargs_and_dtype_shapes(tmp_path: Path) -> None:
    """--kwargs reach a callable SPEC and int64[...] shapes give integer inputs."""
    spec = tmp_path / "net.py"
    spec.write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, width):\n"
        "        super().__init__()\n"
        "        self.emb = torch.nn.Linear(4, width)\n"
        "        self.out = torch.nn.Linear(width, 3)\n"
        "    def forward(self, ids):\n"
        "        return self.out(torch.relu(self.emb(ids.float())))\n"
        "def build(width=2):\n"
        "    return Net(width)\n"
    )
    result = asgnas("check", f"{spec}:build", "--input", "int64[2,4]", "--kwargs", '{"width": 16}', "--json")
    assert result.returncode == 0, result.stderr  # .float() on int64 ids is a cast the IR carries (issue 17)
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["params_full"] == 4 * 16 + 16 + 16 * 3 + 3  # width 16 reached the SPEC


def test_pipeline_compile_space_subnet_codegen(tmp_path: Path) -> None:
    """compile → space → subnet → codegen → run writes the files each step promises."""
    ir = tmp_path / "r.json"
    assert asgnas("compile", RESNET, "--input", "1,3,32,32", "-o", str(ir)).returncode == 0
    assert ir.exists() and ir.with_suffix(".safetensors").exists()
    space = asgnas("space", str(ir), "--json")
    assert space.returncode == 0
    groups = json.loads(space.stdout)["groups"]
    assert len(groups) > 10 and {"id", "kind", "slices", "nodes", "parent", "flops", "params"} <= set(groups[0])
    table = asgnas("space", str(ir))
    assert table.returncode == 0 and "groups" in table.stdout
    sub = tmp_path / "sub.json"
    result = asgnas("subnet", str(ir), "--zero-random", "0.5", "--seed", "1", "-o", str(sub))
    assert result.returncode == 0, result.stderr
    result = asgnas("subnet", str(ir), "--zero", "0,1,5", "-o", str(tmp_path / "sub2.json"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "gen"
    assert asgnas("codegen", str(sub), "--target", "torch", "-o", str(out)).returncode == 0
    assert (out / "model.py").exists() and (out / "weights.safetensors").exists()
    cost = asgnas("run", "cost", str(sub))
    assert cost.returncode == 0 and json.loads(cost.stdout)["params"] > 0
    assert asgnas("run", "subnet", str(ir), "--options", '{"zero_groups": [2]}', "-o", str(tmp_path / "s3.json")).returncode == 0


def test_passes_lists_the_core_passes() -> None:
    """`asgnas passes` lists every core pass with its description."""
    result = asgnas("passes")
    assert result.returncode == 0
    for name in ("verify", "shape-inference", "dependency-graph", "cost", "subnet", "codegen-torch", "search-space"):
        assert name in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("check", "no_such_module:thing", "--input", "1,3"), "does not import"),
        (("check", "tests/models/nothere.py:x", "--input", "1,3"), "does not exist"),
        (("check", "tests/models/resnet.py:nothere", "--input", "1,3"), "no attribute"),
        (("check", RESNET, "--input", "1,3,x"), "SHAPE"),
        (("check", RESNET), "--input"),
        (("check", RESNET, "--input", "1,5,32,32"), "1, 5, 32, 32"),
        (("check", RESNET, "--input", "1,3,32,32", "--kwargs", "{bad"), "--kwargs"),
        (("run", "no-such-pass", "x.json"), "no pass named"),
        (("space", "missing.json"), "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: tuple[str, ...], needle: str) -> None:
    """Bad SPECs, shapes, kwargs, passes and files exit 2 with a message naming the problem, no traceback."""
    result = asgnas(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_group_id_and_truncated_ir(tmp_path: Path) -> None:
    """A zero-group id that does not exist, and a truncated IR file, exit 2 naming the id / file."""
    ir = tmp_path / "r.json"
    asgnas("compile", RESNET, "--input", "1,3,32,32", "-o", str(ir))
    result = asgnas("subnet", str(ir), "--zero", "100000", "-o", str(tmp_path / "s.json"))
    assert result.returncode == 2 and "100000" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(ir.read_text()[:500])
    result = asgnas("space", str(broken))
    assert result.returncode == 2 and "broken.json" in result.stderr and "Traceback" not in result.stderr


def test_unsupported_ops_are_listed_all_at_once(tmp_path: Path) -> None:
    """A model with several unsupported ops exits 2 and names each op with its location."""
    spec = tmp_path / "odd.py"
    spec.write_text(
        "import torch\n"
        "class Odd(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.shuffle = torch.nn.PixelShuffle(2)\n"
        "    def forward(self, x):\n"
        "        return self.shuffle(torch.erf(x).logcumsumexp(1))\n"
    )
    result = asgnas("check", f"{spec}:Odd", "--input", "1,4,8,8")
    assert result.returncode == 2
    for needle in ("PixelShuffle", "torch.erf", "logcumsumexp", "'shuffle'"):
        assert needle in result.stderr


@pytest.mark.slow
def test_demo_runs_and_writes_generated_code(tmp_path: Path) -> None:
    """`asgnas demo` (the main job) trains offline, and its sub-network predicts exactly like the super-network
    with at least 40% fewer FLOPs and accuracy within a point of plain SGD."""
    out = tmp_path / "demo"
    result = asgnas("demo", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("model.py", "weights.safetensors", "report.json", "accuracy_flops.png", "checkpoint.pt"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["equivalent"] is True and report["predictions_identical"] is True
    assert report["sub_network"]["test_accuracy"] == report["super_network"]["test_accuracy"]
    assert report["flops_reduction"] >= 0.4
    assert report["sub_network"]["test_accuracy"] >= report["baseline_sgd"]["test_accuracy"] - 1.0
