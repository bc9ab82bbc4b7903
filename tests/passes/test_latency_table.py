"""Latency tables: what is measured, how a selection is read, the disk cache, the CLI and the errors.

No test asserts a wall-clock value: timings on a shared machine are noise. Tests assert the table's
structure, the arithmetic of the model (monotone where the envelope guarantees it, savings that
equal differences of estimates), that a cached table is never re-measured, and the error texts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.backends.torch import latency as measuring
from asgnas_ir.cli import main as cli_main
from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.ir.ops import Op
from asgnas_ir.pass_manager import PassManager
from asgnas_ir.passes.analysis.latency import (
    CalibrationPoint,
    LatencyTable,
    NodeLatency,
    fit_remainder,
    grid_widths,
)
from tests.models import REPLICAS, example_inputs

FAST = {"fractions": (0.5, 1.0), "warmup": 0, "repeats": 1}
PROFILED = {Op.CONV, Op.CONV_TRANSPOSE, Op.LINEAR, Op.ATTENTION, Op.MATMUL}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's ~/.cache: every test's default cache is a fresh folder."""
    monkeypatch.setenv("ASGNAS_LATENCY_CACHE", str(tmp_path_factory.mktemp("latency-cache")))


def replica_graph(name: str) -> ai.Graph:
    replica = REPLICAS[name]
    return ai.compile(replica.build(), example_inputs(replica))


@pytest.fixture(scope="module")
def mobilenet() -> tuple[ai.Graph, LatencyTable]:
    graph = replica_graph("mobilenet_v2")
    return graph, ai.latency_table(graph, "cpu", cache=False, **FAST)


@pytest.fixture(scope="module")
def vit() -> tuple[ai.Graph, LatencyTable]:
    graph = replica_graph("vit_encoder")
    return graph, ai.latency_table(graph, "cpu", cache=False, **FAST)


class CountingTimer:
    """Stands in for the timer: counts calls and returns a fixed latency."""

    def __init__(self, ms: float = 0.01) -> None:
        self.calls, self.ms = 0, ms

    def __call__(self, fn, device, warmup, repeats) -> float:  # noqa: ANN001
        self.calls += 1
        return self.ms


# ---- structure ----------------------------------------------------------------------------------


def test_every_compute_node_is_profiled_with_its_full_width(mobilenet):
    """One entry per conv/linear node; each axis is measured at its full width, and the grid has the
    shape its widths say."""
    graph, table = mobilenet
    assert set(table.nodes) == {n.id for n in graph.nodes if n.op in PROFILED}
    for nid, entry in table.nodes.items():
        node = graph.node(nid)
        assert entry.op == node.op.value
        assert entry.out_widths[-1] == entry.out_full == graph.values[node.outputs[0]].shape[1]
        assert entry.in_widths[-1] == entry.in_full == graph.values[node.inputs[0]].shape[1]
        assert all(ms > 0 for row in entry.ms for ms in row)
    assert table.full_ms > 0 and table.remainder_ms >= 0
    assert table.key.batch == 1 and table.key.dtype == "float32" and table.key.device == "cpu"
    assert table.key.torch_version == torch.__version__ and table.key.graph_fingerprint == graph.fingerprint()


def test_fixed_free_and_tied_axes(mobilenet, vit):
    """The stem's 3 image channels are one width; a depthwise conv and attention heads are tied
    (one row along the output width); a pointwise conv gets the 2-D grid."""
    graph, table = mobilenet
    stem = table.nodes["features_0_0"]
    assert stem.in_widths == [3] and len(stem.out_widths) > 1 and not stem.tied
    depthwise = table.nodes["features_2_conv_1_0"]
    assert depthwise.tied and len(depthwise.ms) == 1 and depthwise.in_widths == depthwise.out_widths
    pointwise = table.nodes["features_2_conv_2"]
    assert not pointwise.tied and len(pointwise.ms) == len(pointwise.in_widths) > 1
    _, vit_table = vit
    heads = vit_table.nodes["layers_0_self_attention_attention"]
    assert heads.op == "attention" and heads.tied and heads.out_widths == [2, 4]
    qkv = vit_table.nodes["layers_0_self_attention_qkv"]
    assert qkv.out_widths == [48, 96], "the packed q/k/v projection shrinks in whole heads of 24 channels"


def test_grid_widths_are_aligned_whole_groups():
    assert grid_widths(64, (0.25, 0.5, 0.75, 1.0), 1, 8) == [16, 32, 48, 64]
    assert grid_widths(12, (0.25, 0.5, 0.75, 1.0), 1, 8) == [3, 6, 8, 12], "below align, plain channel counts"
    assert grid_widths(96, (0.25, 0.5, 0.75, 1.0), 24, 8) == [24, 48, 72, 96], "heads: whole groups, not aligned"
    assert grid_widths(100, (0.3,), 1, 1) == [30, 100], "the full width is always measured"


# ---- the model's arithmetic ---------------------------------------------------------------------


def test_lookup_interpolates_clamps_and_is_monotone():
    entry = NodeLatency(op="linear", in_full=8, out_full=8, in_widths=[4, 8], out_widths=[4, 8],
                        ms=[[1.0, 3.0], [2.0, 4.0]])
    at = lambda i, o: float(entry.lookup(np.array([i]), np.array([o]))[0])  # noqa: E731
    assert at(4, 4) == 1.0 and at(8, 8) == 4.0
    assert at(6, 6) == pytest.approx(2.5)
    assert at(1, 1) == 1.0, "below the grid the narrowest measurement holds"
    noisy = NodeLatency(op="linear", in_full=8, out_full=8, in_widths=[8], out_widths=[2, 4, 8], ms=[[1.0, 5.0, 3.0]])
    assert float(noisy.lookup(np.array([8]), np.array([4]))[0]) == 3.0, "a narrower width never predicts slower"
    assert noisy.ms == [[1.0, 5.0, 3.0]], "the raw medians are kept"


def test_fit_remainder_splits_fixed_and_scaled():
    point = lambda rest, ms, profiled: CalibrationPoint(zero=[0], rest=rest, ms=ms, profiled_ms=profiled)  # noqa: E731
    # full 10 ms with 4 ms profiled: a remainder of 6 ms; at half the rest it fell to 3 ms, at a quarter to 1.5
    fixed, scaled = fit_remainder(10.0, 4.0, [point(0.5, 6.0, 3.0), point(0.25, 3.5, 2.0)])
    assert (fixed, scaled) == pytest.approx((0.0, 6.0))
    fixed, scaled = fit_remainder(10.0, 4.0, [point(0.5, 8.0, 3.0)])
    assert (fixed, scaled) == pytest.approx((4.0, 2.0)), "a remainder that shrinks half as fast: half fixed"
    fixed, scaled = fit_remainder(10.0, 4.0, [point(0.5, 4.0, 3.0), point(0.25, 4.0, 2.0)])
    assert fixed == 0.0 and scaled > 0, "a line that would cross zero goes through the origin"
    assert fit_remainder(10.0, 4.0, []) == (6.0, 0.0), "no calibration: a constant"
    assert fit_remainder(10.0, 4.0, [point(0.95, 5.0, 3.0)]) == (6.0, 0.0), "too little shrink to tell: constant"
    fixed, scaled = fit_remainder(10.0, 4.0, [point(0.5, 12.0, 3.0)])
    assert scaled == 0.0 and fixed == pytest.approx(7.5), "a calibration slower than the full model: constant"
    assert fit_remainder(1.0, 4.0, [point(0.5, 0.5, 3.0)]) == (0.0, 0.0), "floored at zero"


def test_estimate_of_nothing_removed_is_its_terms(mobilenet):
    """With nothing removed every layer is at full width and the whole remainder counts."""
    graph, table = mobilenet
    space = ai.search_space(graph, "prune")
    profiled = sum(entry.full_ms() for entry in table.nodes.values())
    assert table.remainder_fixed_ms >= 0 and table.remainder_scaled_ms >= 0
    assert table.estimate(graph, space, []) == pytest.approx(profiled + table.remainder_ms)
    terms = table.breakdown(graph, space, [])
    assert sum(terms.values()) == pytest.approx(table.estimate(graph, space, []))
    assert len(table.calibration) == 3 and all(p.rest <= 0.9 and p.zero for p in table.calibration)


def test_removing_more_never_predicts_slower(mobilenet):
    graph, table = mobilenet
    space = ai.search_space(graph, "prune")
    bigger = ai.random_zero_groups(graph, space, 0.6, seed=3)
    smaller = bigger[: len(bigger) // 2]
    assert table.estimate(graph, space, bigger) <= table.estimate(graph, space, smaller) <= table.estimate(graph, space, [])


def test_prune_widths_match_the_subnet(mobilenet):
    """The fast path (channel → group map) reads the same widths the built subnet has."""
    graph, table = mobilenet
    space = ai.search_space(graph, "prune")
    zero = ai.random_zero_groups(graph, space, 0.5, seed=1)
    selection = table.select(graph, space, zero)
    sub = ai.subnet(graph, space, zero)
    for nid, (kin, kout) in selection.widths.items():
        node = sub.node(nid)
        assert (kin, kout) == (sub.values[node.inputs[0]].shape[1], sub.values[node.outputs[0]].shape[1]), nid
    written = [o for n in graph.nodes if n.op not in PROFILED and n.op is not Op.CONSTANT for o in n.outputs
               if graph.values[o].dtype == "float32"]
    full = sum(int(np.prod(graph.values[v].shape)) for v in written)
    kept = sum(int(np.prod(sub.values[v].shape)) for v in written if v in sub.values)
    assert selection.rest == pytest.approx(kept / full)


def test_savings_are_differences_of_estimates(vit):
    graph, table = vit
    space = ai.search_space(graph, "prune")
    zero = ai.random_zero_groups(graph, space, 0.3, seed=0)
    savings = table.savings(graph, space, zero)
    assert savings.shape == (len(space.groups),) and (savings >= 0).all()
    assert (savings[zero] == 0).all()
    base = table.estimate(graph, space, zero)
    rng = np.random.default_rng(0)
    free = [g for g in range(len(space.groups)) if g not in set(zero)]
    for gid in rng.choice(free, size=5, replace=False).tolist():
        try:
            after = table.estimate(graph, space, [*zero, gid])
        except AsgnasError:  # removing it would empty a layer
            continue
        assert savings[gid] == pytest.approx(base - after, abs=1e-9)
        assert table.saving(graph, space, gid, zero) == pytest.approx(savings[gid])
    head = PassManager().analysis("dependency-graph", graph).value_groups["layers_0_self_attention_q_heads"][0]
    assert table.savings(graph, space)[head] > 0, "an attention head saves part of its layer"


def test_erase_mode_drops_erased_nodes(vit):
    graph, table = vit
    space = ai.search_space(graph, "erase")
    zero = ai.random_zero_groups(graph, space, 0.5, seed=1)
    sub = ai.subnet(graph, space, zero)
    gone = [nid for nid in table.nodes if nid not in {n.id for n in sub.nodes}]
    assert gone, "this selection erases at least one profiled node"
    terms = table.breakdown(graph, space, zero)
    assert all(terms[nid] == 0.0 for nid in gone)
    assert table.estimate(graph, space, zero) <= table.estimate(graph, space, [])
    savings = table.savings(graph, space)
    assert savings.shape == (len(space.groups),) and (savings >= 0).all() and savings.max() > 0


def test_another_graph_is_refused(vit, mobilenet):
    graph, table = vit
    other, _ = mobilenet
    with pytest.raises(AsgnasError, match="measured for another graph"):
        table.estimate(other, ai.search_space(other, "prune"), [])


# ---- persistence and the cache ------------------------------------------------------------------


def test_json_round_trip(vit, tmp_path: Path):
    graph, table = vit
    path = table.save(tmp_path / "sub" / "table.json")
    loaded = LatencyTable.load(path)
    assert loaded == table
    space = ai.search_space(graph, "prune")
    zero = ai.random_zero_groups(graph, space, 0.5, seed=0)
    assert loaded.estimate(graph, space, zero) == table.estimate(graph, space, zero)
    data = json.loads(path.read_text())
    data["format_version"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(AsgnasError, match="format version 0"):
        LatencyTable.load(path)


def test_second_call_reads_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    graph = replica_graph("mlp")
    timer = CountingTimer()
    monkeypatch.setattr(measuring, "time_ms", timer)
    first = ai.latency_table(graph, "cpu", cache_dir=tmp_path, **FAST)
    measured = timer.calls
    assert measured > len(first.nodes), "every grid point and the full model are timed"
    assert len(list(tmp_path.glob("*.json"))) == 1
    second = ai.latency_table(graph, "cpu", cache_dir=tmp_path, **FAST)
    assert timer.calls == measured and second == first
    ai.latency_table(graph, "cpu", cache_dir=tmp_path, batch=4, **FAST)
    assert timer.calls > measured, "another batch is another table"
    assert len(list(tmp_path.glob("*.json"))) == 2
    calls = timer.calls
    ai.latency_table(graph, "cpu", cache_dir=tmp_path, refresh=True, **FAST)
    assert timer.calls > calls
    calls = timer.calls
    ai.latency_table(graph, "cpu", cache=False, **FAST)
    assert timer.calls > calls


def test_cache_folder_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    graph = replica_graph("mlp")
    monkeypatch.setattr(measuring, "time_ms", CountingTimer())
    monkeypatch.setenv("ASGNAS_LATENCY_CACHE", str(tmp_path / "env-cache"))
    table = ai.latency_table(graph, "cpu", **FAST)
    files = list((tmp_path / "env-cache").glob("*.json"))
    assert len(files) == 1 and graph.fingerprint() in files[0].name
    assert LatencyTable.load(files[0]) == table


def test_a_damaged_cache_file_is_measured_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    graph = replica_graph("mlp")
    timer = CountingTimer()
    monkeypatch.setattr(measuring, "time_ms", timer)
    ai.latency_table(graph, "cpu", cache_dir=tmp_path, **FAST)
    (path,) = tmp_path.glob("*.json")
    path.write_text("{not json")
    calls = timer.calls
    table = ai.latency_table(graph, "cpu", cache_dir=tmp_path, **FAST)
    assert timer.calls > calls and LatencyTable.load(path) == table


# ---- options and errors -------------------------------------------------------------------------


def test_batch_and_dtype_options():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)
            self.fc = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    graph = ai.compile(Net().eval(), torch.randn(1, 3, 8, 8))
    table = ai.latency_table(graph, "cpu", batch=3, dtype="bfloat16", cache=False, **FAST)
    assert table.key.batch == 3 and table.key.dtype == "bfloat16" and table.full_ms > 0
    assert table.nodes["conv"].out_widths == [8, 16]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_says_what_to_do():
    graph = replica_graph("mlp")
    with pytest.raises(SpecError, match=r"device 'cuda' is not available.*no CUDA GPU.*device='cpu'"):
        ai.latency_table(graph, "cuda")
    with pytest.raises(SpecError, match="device 'cuda:1' is not available"):
        ai.latency_table(graph, "cuda:1")


def test_bad_device_and_options_are_named():
    graph = replica_graph("mlp")
    with pytest.raises(SpecError, match="device 'tpu' is not a torch device string"):
        ai.latency_table(graph, "tpu")
    with pytest.raises(SpecError, match="dtype 'int8' is not supported"):
        ai.latency_table(graph, "cpu", dtype="int8")
    with pytest.raises(SpecError, match="fractions must lie in"):
        ai.latency_table(graph, "cpu", fractions=(0.0, 0.5))


def test_cli_profile_writes_the_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture):
    graph = replica_graph("mlp")
    ir = graph.save(tmp_path / "mlp.json")
    monkeypatch.setattr(measuring, "time_ms", CountingTimer())
    out = tmp_path / "table.json"
    rc = cli_main(["profile", str(ir), "--device", "cpu", "-o", str(out), "--repeats", "1", "--warmup", "0",
                   "--fractions", "0.5,1", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    table = LatencyTable.load(out)
    assert table.graph_fingerprint == graph.fingerprint() and set(table.nodes) == {"fc1", "fc2", "fc3"}
    rc = cli_main(["profile", str(ir), "--device", "nonsense", "-o", str(out)])
    assert rc == 2 and "device 'nonsense'" in capsys.readouterr().err
