"""The Keras/TensorFlow H2SPG honours the torch optimizer's `align=` and `latency_target=` (issue 18):
aligned widths chosen by the scores inside the traced step, a latency budget chosen by
`LatencyTarget.select`, and the same errors for bad options. The latency table is built by hand
(a bilinear cost per layer), so nothing here reads a wall clock."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import asgnas_ir as ai  # noqa: E402
from asgnas_ir.backends._groups import num_selected  # noqa: E402
from asgnas_ir.backends.reference import select_redundant  # noqa: E402
from asgnas_ir.backends.tensorflow import H2SPG  # noqa: E402
from asgnas_ir.errors import AsgnasError, SpecError  # noqa: E402
from asgnas_ir.passes.analysis.alignment import misaligned  # noqa: E402
from asgnas_ir.passes.analysis.latency import (  # noqa: E402
    PROFILED_OPS,
    LatencyKey,
    LatencyTable,
    NodeLatency,
    measured_axes,
)

if keras.backend.backend() != "tensorflow":  # pragma: no cover - KERAS_BACKEND set elsewhere
    pytest.skip("the TensorFlow backend needs KERAS_BACKEND=tensorflow", allow_module_level=True)

WIDTHS = (24, 40)  # the prune-mode layers: neither 8-aligned removal is the plain selection's by default


def _model(seed: int = 0) -> keras.Model:
    """Conv(24) → BN → relu → Conv(40) → relu → global average pool → Dense(5)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(WIDTHS[0], 3, padding="same", name="c1")(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(h))
    h = keras.layers.Conv2D(WIDTHS[1], 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(h), name="align_net")


def _data(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 3)).astype("float32"), rng.integers(0, 5, n)


@pytest.fixture(scope="module")
def compiled() -> tuple[ai.Graph, ai.SearchSpace]:
    x, _ = _data(1)
    graph = ai.compile(_model(), x)
    space = ai.search_space(graph, "prune")
    assert sorted(len(f.groups) for f in space.families()) == sorted(WIDTHS)
    return graph, space


def _kept(space: ai.SearchSpace, zero: list[int]) -> list[tuple[int, int]]:
    """(kept channels, full channels) of every layer (family)."""
    chosen = set(zero)
    return [(sum(g not in chosen for g in f.groups) * f.width, len(f.groups) * f.width) for f in space.families()]


def _table(graph: ai.Graph) -> LatencyTable:
    """A hand-made table: every profiled node costs 1e-3 ms per (in, out) channel pair, on a grid that the
    bilinear interpolation reproduces exactly; a remainder half fixed, half scaled."""
    nodes = {}
    for node in graph.nodes:
        if node.op not in PROFILED_OPS:
            continue
        in_value, in_axis, out_value, out_axis = measured_axes(graph, node.id)
        fin = graph.values[in_value].shape[in_axis] if in_value is not None else 0
        fout = graph.values[out_value].shape[out_axis] if out_value is not None else 0
        ins = sorted({max(1, fin // 4), fin}) if fin else [0]
        outs = sorted({max(1, fout // 4), fout}) if fout else [0]
        ms = [[1e-3 * max(i, 1) * max(o, 1) for o in outs] for i in ins]
        nodes[node.id] = NodeLatency(op=node.op.value, in_full=fin, out_full=fout, in_widths=ins, out_widths=outs, ms=ms)
    key = LatencyKey(
        graph_fingerprint=graph.fingerprint(), device="cpu", device_name="by hand", threads=1, dtype="float32", batch=1,
        torch_version="none", fractions=(0.25, 1.0), align=1, warmup=0, repeats=1,
    )
    profiled = sum(n.full_ms() for n in nodes.values())
    return LatencyTable(key=key, full_ms=profiled + 0.2, remainder_fixed_ms=0.1, remainder_scaled_ms=0.1, nodes=nodes)


def _train(model: keras.Model, opt: H2SPG, epochs: int) -> None:
    """`fit` (one traced step for every phase, the selection through tf.py_function)."""
    x, y = _data()
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)


def test_aligned_selection_is_zeroed_aligned_and_builds(compiled) -> None:  # noqa: ANN001
    graph, space = compiled
    model = _model()
    opt = H2SPG(model, space, lr=0.05, target_group_sparsity=0.5, warmup_steps=4, shrink_period=4, align=8)
    _train(model, opt, epochs=3)  # 4 steps an epoch: selection after the first, zero 4 steps later
    assert opt.selected
    chosen = opt.redundant_groups
    assert space.is_valid(chosen) and not misaligned(space.families(), chosen, 8)
    space.check_aligned(chosen, 8)
    for kept, full in _kept(space, chosen):
        assert kept == full or kept % 8 == 0, (kept, full)
    assert any(kept < full for kept, full in _kept(space, chosen))
    # the same scores decided: the plain choice (align 1) is misaligned, and alignment moved it by less than a unit
    plain = select_redundant(opt.scores, num_selected(0.5, len(space.groups)), space)
    assert misaligned(space.families(), plain, 8), "the plain selection is aligned by chance; the test proves nothing"
    assert abs(len(chosen) - len(plain)) <= sum(f.unit(8) for f in space.families())
    scores = opt.scores
    for family in space.families():
        mine = [g for g in family.groups if g in set(chosen)]
        rest = [g for g in family.groups if g not in set(chosen)]
        if mine and rest:
            assert min(scores[mine]) >= max(scores[rest]) - 1e-12
    # the traced step projected exactly the chosen groups (finalize forces nothing)
    assert opt.zero_groups() == sorted(chosen)
    assert opt.finalize() == sorted(chosen)
    x, _ = _data(1)
    trained = ai.compile(model, x)
    trained_space = ai.search_space(trained, "prune")
    sub = ai.subnet(trained, trained_space, opt.zero_groups(), align=8)
    full = {p.source: p.shape[-1] for p in trained.params.values() if len(p.shape) == 4}
    convs = [p for p in sub.params.values() if len(p.shape) == 4]
    assert convs and all(p.shape[-1] % 8 == 0 or p.shape[-1] == full[p.source] for p in convs)
    assert ai.cost(sub).flops < ai.cost(trained).flops


@pytest.mark.parametrize("align", [1, 8])
def test_latency_target_selects_what_latency_target_select_gives(compiled, align: int) -> None:  # noqa: ANN001
    graph, space = compiled
    table = _table(graph)
    full = table.estimate(graph, space, [])
    floor = table.estimate(graph, space, space.greedy_valid(range(len(space.groups))))
    assert floor < full
    target = ai.LatencyTarget(table, graph, (full + floor) / 2)
    model = _model()
    opt = H2SPG(model, space, lr=0.05, target_group_sparsity=0.9, warmup_steps=4, shrink_period=4, align=align,
                latency_target=target)
    _train(model, opt, epochs=2)
    assert opt.selected
    expected = target.select(space, opt.scores, align)
    assert opt.redundant_groups == expected  # in LatencyTarget.select's order, not K = 0.9 of the groups
    assert len(expected) != num_selected(0.9, len(space.groups))
    assert table.estimate(graph, space, opt.redundant_groups) <= target.ms
    if align > 1:
        space.check_aligned(opt.redundant_groups, align)
    assert opt.finalize() == sorted(expected)


@pytest.mark.filterwarnings("ignore::asgnas_ir.backends._groups.GroupsNotZeroWarning")  # finalize before training
def test_an_unreachable_budget_takes_every_candidate_and_warns(compiled) -> None:  # noqa: ANN001
    graph, space = compiled
    table = _table(graph)
    floor = table.estimate(graph, space, space.greedy_valid(range(len(space.groups))))
    opt = H2SPG(_model(), space, warmup_steps=1, latency_target=ai.LatencyTarget(table, graph, floor * 0.5))
    with pytest.warns(UserWarning, match="above the latency target"):
        chosen = opt.finalize()  # selects from the (zero) scores first
    more = set(space.greedy_valid(range(len(space.groups)), removed=chosen))
    assert space.is_valid(chosen) and more <= set(chosen)


def test_bad_options_are_refused_by_name(compiled) -> None:  # noqa: ANN001
    graph, space = compiled
    model = _model()
    for bad in (0, -8, 2.5, True):
        with pytest.raises(SpecError, match="align must be a positive integer"):
            H2SPG(model, space, align=bad)  # type: ignore[arg-type]
    with pytest.raises(AsgnasError, match="latency_target must be an asgnas_ir.LatencyTarget"):
        H2SPG(model, space, latency_target=5.0)  # type: ignore[arg-type]
    with pytest.raises(AsgnasError, match="positive number of ms"):
        ai.LatencyTarget(_table(graph), graph, 0.0)
    x, _ = _data(1)
    other_graph = ai.compile(_other_model(), x)
    with pytest.raises(AsgnasError, match="measured on another graph"):
        H2SPG(model, space, latency_target=ai.LatencyTarget(_table(other_graph), other_graph, 1.0))


def _other_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(h), name="other_net")
