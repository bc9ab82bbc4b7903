"""Bad input end to end: every case gets an AsgnasError naming what and where from the Python API, and
exit code 2 with that message (no traceback) from the CLI. Also: generated code and checkpoints never
unpickle anything, and `asgnas train` survives SIGKILL (resume ends exactly where an uninterrupted run does).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import asgnas_ir as ai
from asgnas_ir.errors import AsgnasError, FrontendError, IRValidationError, SpecError, UnsupportedOpError
from asgnas_ir.ir.serialize import load_graph
from asgnas_ir.spec import load_model
from tests.models.resnet import resnet_basic

ROOT = Path(__file__).resolve().parents[2]
RESNET = "tests/models/resnet.py:resnet_basic"


def asgnas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "asgnas_ir.cli", *args], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def refused(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert the CLI exited 2 with a one-paragraph message containing every needle; return stderr."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    return result.stderr


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[ai.Graph, Path]:
    """resnet_basic compiled and saved (JSON + sidecar); tests copy it before breaking it."""
    graph = ai.compile(resnet_basic(), torch.randn(1, 3, 32, 32))
    return graph, graph.save(tmp_path_factory.mktemp("ir") / "r.json")


def copy_ir(saved: tuple[ai.Graph, Path], folder: Path, sidecar: bool = True) -> Path:
    _, path = saved
    target = folder / "r.json"
    target.write_text(path.read_text())
    if sidecar:
        target.with_suffix(".safetensors").write_bytes(path.with_suffix(".safetensors").read_bytes())
    return target


# ---- 1. malformed or truncated IR JSON ---------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("space",), ("subnet", "--zero", "0", "-o", "SUB"), ("codegen", "--target", "torch", "-o", "GEN"), ("run", "cost")],
    ids=["space", "subnet", "codegen", "run"],
)
def test_truncated_ir_json_names_the_file_and_position(saved, tmp_path: Path, command: tuple[str, ...]) -> None:
    """Every command that reads IR reports a truncated file by name with line and column, exit 2."""
    path = copy_ir(saved, tmp_path)
    path.write_text(path.read_text()[:700])
    with pytest.raises(IRValidationError, match=r"r\.json' is not valid JSON \(line \d+, column \d+"):
        ai.load(path)
    args = [str(tmp_path / a) if a in ("SUB", "GEN") else a for a in command]
    head = args[:2] if command[0] == "run" else args[:1]
    refused(asgnas(*head, str(path), *args[len(head):]), str(path), "not valid JSON", "line")


def test_schema_error_gives_the_pydantic_path(saved, tmp_path: Path) -> None:
    """A node with a wrong-typed field is named by its JSON path (nodes.<i>...), from ai.load and the CLI."""
    path = copy_ir(saved, tmp_path)
    data = json.loads(path.read_text())
    data["nodes"][3]["inputs"] = 17
    path.write_text(json.dumps(data))
    with pytest.raises(IRValidationError, match=r"nodes\.3") as info:
        ai.load(path)
    assert str(path) in str(info.value)
    refused(asgnas("codegen", str(path), "-o", str(tmp_path / "gen")), str(path), "nodes.3")


# ---- 2. the safetensors sidecar ------------------------------------------------------------------------


def test_missing_sidecar_is_named_where_weights_are_needed(saved, tmp_path: Path) -> None:
    """Without its sidecar the IR still loads for analysis, but codegen names the missing weights file."""
    path = copy_ir(saved, tmp_path, sidecar=False)
    assert not ai.load(path).has_weights
    with pytest.raises(IRValidationError, match=r"r\.safetensors' is missing"):
        load_graph(path, require_weights=True)
    refused(asgnas("codegen", str(path), "-o", str(tmp_path / "gen")), "r.safetensors", "missing")
    refused(asgnas("run", "codegen-torch", str(path), "-o", str(tmp_path / "gen")), "r.safetensors", "missing")
    assert not (tmp_path / "gen" / "model.py").exists()


def test_corrupt_sidecar_names_the_file(saved, tmp_path: Path) -> None:
    """A sidecar overwritten with garbage (not only truncated) names the weights file, API and CLI."""
    path = copy_ir(saved, tmp_path)
    path.with_suffix(".safetensors").write_bytes(b"\x07" * 64)
    with pytest.raises(IRValidationError, match=r"weights file '.*r\.safetensors' cannot be read"):
        ai.load(path)
    refused(asgnas("space", str(path)), "r.safetensors", "cannot be read")


def test_sidecar_with_wrong_dtype_names_the_param_and_both_dtypes(saved, tmp_path: Path) -> None:
    """A param stored as float64 where the graph declares float32 is refused, naming file, param and dtypes."""
    from safetensors.numpy import load_file, save_file

    path = copy_ir(saved, tmp_path)
    side = path.with_suffix(".safetensors")
    arrays = load_file(str(side))
    arrays["conv1.weight"] = arrays["conv1.weight"].astype(np.float64)
    save_file(arrays, str(side))
    with pytest.raises(IRValidationError) as info:
        ai.load(path)
    message = str(info.value)
    assert "r.safetensors" in message and "'conv1.weight'" in message and "float64" in message and "float32" in message


def test_sidecar_with_wrong_shape_names_expected_and_found(saved, tmp_path: Path) -> None:
    """A param of another shape names the param with the stored and the declared shape (CLI path)."""
    from safetensors.numpy import load_file, save_file

    path = copy_ir(saved, tmp_path)
    side = path.with_suffix(".safetensors")
    arrays = load_file(str(side))
    arrays["fc.weight"] = np.zeros((10, 7), np.float32)
    save_file(arrays, str(side))
    declared = list(saved[0].params["fc.weight"].shape)
    refused(asgnas("space", str(path)), "'fc.weight'", "[10, 7]", str(declared))


# ---- 3. example inputs of the wrong shape or dtype --------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "needles"),
    [
        (torch.randn(1, 5, 32, 32), ("[?, 3, ?, ?]", "float32 [1, 5, 32, 32]")),
        (torch.randn(1, 3, 32, 32, dtype=torch.float64), ("a float32 tensor", "float64 [1, 3, 32, 32]")),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int64), ("a float32 tensor", "int64 [1, 3, 32, 32]")),
        (np.zeros((1, 3, 32, 32), np.float32), ("numpy.ndarray", "torch.from_numpy")),
    ],
    ids=["channels", "float64", "int64", "numpy"],
)
def test_fx_names_the_input_and_expected_vs_given(given: object, needles: tuple[str, ...]) -> None:
    """ai.compile and ai.check name the forward argument, the layer reading it, and expected vs given."""
    for call in (lambda: ai.compile(resnet_basic(), given), lambda: ai.check(resnet_basic(), given)):
        with pytest.raises(FrontendError) as info:
            call()
        message = str(info.value)
        assert "example input 1 ('x' of ResNetBasic.forward)" in message
        assert "While executing" not in message  # fx's appended context is cut
        for needle in needles:
            assert needle in message, (needle, message)
        if "numpy" not in needles[0]:
            assert "'conv1' (Conv2d)" in message


def test_cli_wrong_input_dtype_exits_2_naming_input_and_layer() -> None:
    """`asgnas check --input int64[...]` on a float model names the input, layer and both dtypes."""
    refused(asgnas("check", RESNET, "--input", "int64[1,3,32,32]"), "'x'", "'conv1' (Conv2d)", "float32", "int64")


def _onnx_conv(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["y"], name="conv_1", pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_inputs_name_the_declared_dtype_and_sizes(tmp_path: Path) -> None:
    """An ONNX model refuses another dtype naming the input; a channel change that breaks lowering says
    which declared sizes the example inputs changed."""
    model = _onnx_conv(tmp_path / "m.onnx")
    with pytest.raises(FrontendError, match=r"example input 1 \('image'\) is int64 but the ONNX model declares float32"):
        ai.compile(model, [np.zeros((1, 3, 8, 8), np.int64)])
    with pytest.raises(FrontendError, match=r"input 'image': declared \[1, 3, 8, 8\], given \[1, 5, 8, 8\]"):
        ai.check(model, [np.zeros((1, 5, 8, 8), np.float32)])
    assert ai.compile(model, [np.zeros((2, 3, 16, 16), np.float32)]).values["y"].shape == (2, 4, 16, 16)
    refused(asgnas("check", str(model), "--input", "int64[1,3,8,8]"), "'image'", "int64", "float32")


# ---- 4. SPECs that do not import --------------------------------------------------------------------------


def test_spec_failures_name_the_spec_and_the_cause(tmp_path: Path) -> None:
    """Syntax errors, import-time raises (file and dotted module) and a raising builder name SPEC and cause."""
    (tmp_path / "broken_syntax.py").write_text("def build(:\n    pass\n")
    (tmp_path / "raises.py").write_text("import torch\ndef build(width=2):\n    raise ValueError(f'width {width} is odd')\n")
    (tmp_path / "pkg_bad").mkdir()
    (tmp_path / "pkg_bad" / "__init__.py").write_text("")
    (tmp_path / "pkg_bad" / "net.py").write_text("raise RuntimeError('needs a GPU')\n")
    cases = [
        (f"{tmp_path}/broken_syntax.py:build", ("broken_syntax.py", "SyntaxError")),
        (f"{tmp_path}/raises.py:build", ("raises.py:build", "ValueError", "width 3 is odd")),
        ("pkg_bad.net:build", ("pkg_bad.net", "RuntimeError", "needs a GPU")),
        (f"{tmp_path}/nothere.py:build", ("nothere.py", "does not exist")),
        (f"{tmp_path}/raises.py:nothere", ("raises.py:nothere", "no attribute")),
        ("no_such_pkg_xyz.net:build", ("no_such_pkg_xyz.net", "does not import")),
    ]
    sys.path.insert(0, str(tmp_path))
    try:
        for spec, needles in cases:
            with pytest.raises(SpecError) as info:
                load_model(spec, {"width": 3})
            for needle in needles:
                assert needle in str(info.value), (needle, str(info.value))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pkg_bad", None)
    for spec, needles in cases[1:3]:
        result = asgnas("check", spec, "--input", "1,3,8,8", "--kwargs", '{"width": 3}', env={"PYTHONPATH": str(tmp_path)})
        refused(result, *needles)


# ---- 5. unsupported ops: all at once ----------------------------------------------------------------------


def test_onnx_file_with_two_unsupported_ops_lists_both_from_the_cli(tmp_path: Path) -> None:
    """`asgnas compile x.onnx` lists every unsupported ONNX op kind with its node names in one message."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Tan", ["x"], ["a"], name="tan_a"),
        helper.make_node("Atan", ["a"], ["b"], name="atan_b"),
        helper.make_node("Tan", ["b"], ["y"], name="tan_c"),
    ]
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 4, 4]) for n in ("x", "y")]
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", info[:1], info[1:]), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UnsupportedOpError) as caught:
        ai.compile(str(path))
    assert {op.op for op in caught.value.ops} == {"Tan", "Atan"}
    refused(asgnas("compile", str(path), "-o", str(tmp_path / "o.json")), "2 op kind(s)", "Tan (2x)", "'tan_a'", "'tan_c'", "Atan (1x)", "'atan_b'")


# ---- 6./7. zero-group ids that do not exist, selections that disconnect the net ------------------------


def test_unknown_group_id_names_it_and_the_valid_range(saved, tmp_path: Path) -> None:
    graph, path = saved
    space = ai.search_space(graph, mode="prune")
    with pytest.raises(AsgnasError, match=rf"group id 99999 does not exist: .* has {len(space.groups)} groups"):
        ai.subnet(graph, space, [0, 99999])
    refused(asgnas("subnet", str(path), "--zero", "99999", "-o", str(tmp_path / "s.json")), "99999", f"0..{len(space.groups) - 1}")
    assert not (tmp_path / "s.json").exists()


def test_disconnecting_erase_selection_names_the_cutting_groups(saved, tmp_path: Path) -> None:
    """Erasing every operator group of resnet_basic cuts it; the error names a smallest cutting subset."""
    graph, path = saved
    space = ai.search_space(graph, mode="erase")
    every = list(range(len(space.groups)))
    with pytest.raises(AsgnasError, match="disconnect") as info:
        ai.subnet(graph, space, every)
    named = [int(g) for g in re.search(r"groups \[([\d, ]+)\] \(", str(info.value)).group(1).split(",")]
    assert not space.is_valid(named) and all(space.is_valid([g for g in named if g != drop]) for drop in named)
    for gid in named:
        assert space.group(gid).nodes[0] in str(info.value)
    refused(asgnas("subnet", str(path), "--mode", "erase", "--zero", ",".join(map(str, every)), "-o", str(tmp_path / "s.json")),
            "disconnect", f"groups {named}")


# ---- generated code and checkpoints never unpickle --------------------------------------------------------

_UNPICKLING = re.compile(r"pickle|torch\.load|np\.load|numpy\.load|joblib|dill|allow_pickle")


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_generated_code_loads_weights_only_through_safetensors(saved, tmp_path: Path, target: str) -> None:
    graph, _ = saved
    ai.codegen(graph, target=target, out_dir=tmp_path)
    source = (tmp_path / "model.py").read_text()
    assert _UNPICKLING.search(source) is None, _UNPICKLING.search(source)
    assert "safetensors" in source and (tmp_path / "weights.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".npy", ".npz")]


def test_every_torch_load_in_the_library_is_weights_only() -> None:
    """Checkpoints (and anything else torch.load reads) load with weights_only=True: nothing is unpickled."""
    calls = []
    for folder in ("asgnas_ir", "backends", "frontends", "passes"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for match in re.finditer(r"torch\.load\(", text):
                end = text.find(")", match.end())
                calls.append((path.relative_to(ROOT), text[match.start() : text.find("\n", end)]))
            assert not re.search(r"^\s*import pickle|^\s*from pickle|allow_pickle=True", text, re.M), path
    assert calls, "the trainer's resume reads checkpoints with torch.load"
    for where, call in calls:
        assert "weights_only=True" in call, (where, call)


# ---- 8. NaN/inf loss ----------------------------------------------------------------------------------------


def _config(path: Path, out: Path, **changes: object) -> Path:
    base = {"supernet": "super_resnet", "epochs": 2, "warmup_epochs": 1, "baseline": False, "batch_size": 256, "out": str(out)}
    path.write_text(json.dumps({**base, **changes}))
    return path


@pytest.mark.slow
def test_cli_divergence_exits_2_and_resume_refuses_to_loop(tmp_path: Path) -> None:
    """A huge lr makes `asgnas train` stop with exit 2 and a message about the loss; any checkpoint left is
    complete and finite, and --resume with the same config stops the same clear way (no traceback)."""
    config = _config(tmp_path / "c.json", tmp_path / "out", lr=1e6)
    first = refused(asgnas("train", str(config)), "became", "training stopped", "lower learning rate")
    checkpoint = tmp_path / "out" / "checkpoint.pt"
    if "no checkpoint was written" not in first:
        state = torch.load(checkpoint, weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert not (tmp_path / "out" / "checkpoint.pt.tmp").exists()
    refused(asgnas("train", str(config), "--resume"), "training stopped")


@pytest.mark.slow
def test_transient_nan_keeps_a_loadable_checkpoint_and_resume_finishes_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A NaN loss in epoch 2 (one bad step) stops training; the epoch-1 checkpoint on disk is intact, and
    --resume without the fault continues from it (same config) to a full report. That a resumed run equals
    an uninterrupted one is test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run's job."""
    import io

    from rich.console import Console

    from asgnas_ir.backends.torch.trainer import TrainConfig, TrainingDiverged, run_training

    output = io.StringIO()
    config = TrainConfig.model_validate_json(_config(tmp_path / "c.json", tmp_path / "b").read_text())
    steps, calls = -(-1347 // config.batch_size), {"n": 0}
    original = torch.nn.CrossEntropyLoss.forward

    def flaky(self, logits, target):  # noqa: ANN001, ANN202
        calls["n"] += 1
        loss = original(self, logits, target)
        return loss * float("nan") if calls["n"] == steps + 3 else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", flaky)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: more threads only contend with the other tests
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    with pytest.raises(TrainingDiverged, match=r"epoch 2, so training stopped; the last good checkpoint .*after epoch 1"):
        run_training(config, console=Console(file=output))
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", original)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    resumed = run_training(config, resume=True, console=Console(file=output, width=200))
    assert "resuming H2SPG after epoch 1" in output.getvalue()
    assert resumed["history"][0] == state["history"][0] and len(resumed["history"]) == 2
    assert resumed["equivalent"] and resumed["predictions_identical"] and (tmp_path / "b" / "model.py").exists()


@pytest.mark.slow
def test_unreadable_or_foreign_checkpoint_is_refused_on_resume(tmp_path: Path) -> None:
    """--resume on a torn checkpoint (CLI), on one holding other tensors, or on one from another config
    names the file (and the changed fields) instead of a traceback."""
    import io

    from rich.console import Console

    from asgnas_ir.backends.torch.trainer import TrainConfig, run_training

    config = _config(tmp_path / "c.json", tmp_path / "out", epochs=1, warmup_epochs=0)
    (tmp_path / "out").mkdir()
    checkpoint = tmp_path / "out" / "checkpoint.pt"
    checkpoint.write_bytes(b"PK\x03\x04 torn")
    refused(asgnas("train", str(config), "--resume"), str(checkpoint), "cannot be read")
    parsed = TrainConfig.model_validate_json(config.read_text())
    quiet = {"resume": True, "console": Console(file=io.StringIO())}
    torch.save({"epoch": 0, "model": {"w": torch.zeros(2)}, "optimizer": {}, "history": [],
                "config": parsed.model_dump(exclude={"out"})}, checkpoint)
    with pytest.raises(SpecError, match=r"checkpoint '.*checkpoint\.pt' does not fit this model"):
        run_training(parsed, **quiet)
    with pytest.raises(SpecError, match=r"different config \(differs in: batch_size, lr\)"):
        run_training(parsed.model_copy(update={"lr": 0.5, "batch_size": 32}), **quiet)


# ---- part 3: resume after SIGKILL ---------------------------------------------------------------------------


def _reports_equal(a: Path, b: Path) -> None:
    from safetensors.numpy import load_file

    ra, rb = json.loads((a / "report.json").read_text()), json.loads((b / "report.json").read_text())
    assert ra["zero_groups"] == rb["zero_groups"] and ra["groups"] == rb["groups"]
    assert ra["history"] == rb["history"]
    for net in ("super_network", "sub_network"):
        assert ra[net]["test_accuracy"] == rb[net]["test_accuracy"]
        assert ra[net]["params"] == rb[net]["params"] and ra[net]["flops"] == rb[net]["flops"]
    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:  # bitwise: both runs are the same program, same data, same thread count (OMP_NUM_THREADS=1)
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)
    assert (a / "model.py").read_text() == (b / "model.py").read_text()


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """`asgnas train` killed with SIGKILL right after its first epoch checkpoint, then `--resume`d, ends with
    the same zero groups, history, accuracies and sub-network weights (bitwise) as a run never interrupted."""
    config = _config(tmp_path / "c.json", tmp_path / "x", epochs=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "asgnas_ir.cli", "train", str(config)]
    straight = subprocess.Popen([*command, "--out", str(tmp_path / "a")], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen([*command, "--out", str(tmp_path / "b")], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "b" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    state = torch.load(checkpoint, weights_only=True)  # what the kill left behind is a complete checkpoint
    assert state["epoch"] < 2 and not (tmp_path / "b" / "report.json").exists()
    resumed = subprocess.run([*command, "--out", str(tmp_path / "b"), "--resume"], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming H2SPG after epoch {state['epoch'] + 1}" in resumed.stdout
    _, errors = straight.communicate()  # reads stderr to its end and closes the pipe
    assert straight.returncode == 0, errors
    _reports_equal(tmp_path / "a", tmp_path / "b")


_KILL_DURING_WRITE = """
import os, signal, sys, torch
from pathlib import Path
from asgnas_ir.backends.torch import trainer
path = Path(sys.argv[1])
trainer._save_atomically({"epoch": 0, "w": torch.arange(4.0)}, path)
real_save = torch.save
def torn_save(payload, handle):
    handle.write(b"PK\\x03\\x04 half a checkpoint")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = torn_save
trainer._save_atomically({"epoch": 1, "w": torch.zeros(4)}, path)
"""


def test_kill_during_a_checkpoint_write_leaves_the_previous_one_usable(tmp_path: Path) -> None:
    """A process killed in the middle of writing epoch 2's checkpoint leaves epoch 1's intact and loadable."""
    path = tmp_path / "checkpoint.pt"
    result = subprocess.run([sys.executable, "-c", _KILL_DURING_WRITE, str(path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert path.with_suffix(".pt.tmp").read_bytes().startswith(b"PK\x03\x04 half")  # the torn write happened
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 0 and torch.equal(state["w"], torch.arange(4.0))
