"""GOLD on a Keras super-network (backends/tensorflow/gold.py): the shared schedule, gates, export."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from keras import layers as L  # noqa: E402

from asgnas_ir.backends.search.gold import GoldSchedule  # noqa: E402
from asgnas_ir.backends.tensorflow.gold import KerasGoldConfig, KerasGoldSearch  # noqa: E402


def _tiny(seed: int) -> keras.Model:
    """stem → one super block (identity + conv3x3/conv1x1/conv5x5, each conv+BN) → head: 3 groups in one node."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((8, 8, 1), name="x")
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(epsilon=1e-5, name="stem_bn")(L.Conv2D(6, 3, padding="same", use_bias=False, name="stem_conv")(x_in)))
    ops = [
        L.BatchNormalization(epsilon=1e-5, name=f"b_{k}_bn")(L.Conv2D(6, k, padding="same", use_bias=False, name=f"b_{k}_conv")(x))
        for k in (3, 1, 5)
    ]
    x = L.ReLU(name="b_relu")(L.Add(name="b_add")([x, *ops]))
    x = L.GlobalAveragePooling2D(name="mean")(x)
    return keras.Model(x_in, L.Dense(10, name="head")(x), name="tiny")


def _search(**overrides: object) -> KerasGoldSearch:
    settings = {"rounds": 4, "steps_per_round": 3, "batch_size": 32, "warmup_rounds": 0, "finetune_epochs": 0, "n0": 1,
                "stable_rounds": 1, "flops_floor": 0.0, "lambda0": 0.05, **overrides}
    return KerasGoldSearch(KerasGoldConfig(**settings), build=_tiny)


@pytest.fixture(scope="module")
def search() -> KerasGoldSearch:
    return _search()


def test_gates_sit_on_each_candidates_bn_and_share_one_node(search: KerasGoldSearch) -> None:
    assert search.space.size == 3
    assert sorted(layer.name for layer in search.gates.layers) == ["b_1_bn", "b_3_bn", "b_5_bn"]
    nodes = search.schedule.nodes
    assert len(set(nodes.node_of.tolist())) == 1 and nodes.fixed.tolist() == [1.0]  # the identity counts 1


def test_penalty_is_the_torch_form(search: KerasGoldSearch) -> None:
    """Σ c·σ (linear) and Σ c·log(1 + n·w̄) on the per-node normalised gates (gold), as in torch's GoldGates."""
    alpha = np.array([0.3, -1.0, 2.0])
    search.gates.alpha.assign(alpha.astype(np.float32))
    c = np.array([0.5, 1.0, 2.0])
    sigma = 1 / (1 + np.exp(-alpha))
    linear = float(search.gates.penalty(tf.constant(c, tf.float32), None))
    assert linear == pytest.approx(float((c * sigma).sum()), rel=1e-5)
    normalized = search.schedule.nodes.normalized(sigma, np.ones(3, bool))
    gold = float(search.gates.penalty(tf.constant(c, tf.float32), search.schedule.nodes))
    assert gold == pytest.approx(float((c * np.log1p(4 * normalized)).sum()), rel=1e-5)
    search.gates.alpha.assign(np.zeros(3, np.float32))


def test_rounds_prune_by_the_shared_rule_and_lambda_follows_it() -> None:
    search = _search()
    reference = GoldSchedule(search.space, search.config.settings())
    # round 1: training moves gates and weights; nothing is near the thresholds → λ grows by Δλ·c0
    before = [w.numpy().copy() for w in search.weights]
    alpha0 = search.gates.alpha.numpy().copy()
    loss = search.train_round(0)
    assert np.isfinite(loss)
    assert not np.allclose(search.gates.alpha.numpy(), alpha0) or search.schedule.lmbda == 0  # λ = 0: no push yet
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, search.weights, strict=True))
    values = search.gates.values()
    search.end_round()
    reference.end_round(values)
    assert search.schedule.lmbda == pytest.approx(0.05 * 2) == reference.lmbda
    assert search.schedule.keep.all()
    # round 2: one gate driven to a normalised score under xi_min → the shared rule prunes it, λ relaxes
    search.train_round(1)
    alpha = search.gates.alpha.numpy().copy()
    alpha[2] = -12.0
    search.gates.alpha.assign(alpha)
    values = search.gates.values()
    assert search.schedule.scores(values)[2] <= search.config.xi_min
    search.end_round()
    outcome = reference.end_round(values)
    assert outcome.rule_pruned == [2]
    assert search.schedule.keep.tolist() == reference.keep.tolist() == [True, True, False]
    assert search.schedule.lmbda == pytest.approx(reference.lmbda) == pytest.approx(0.1 / 2)
    assert len(search.schedule.candidates) == 1 and search.schedule.candidates[0].keep == [True, True, True]
    # the pruned group's gate is 0 and its weights stay exactly zero through training
    search.train_round(2)
    pruned_layer = search.gates.layers[2]
    assert float(search.gates.active[2]) == 0.0
    assert np.count_nonzero(pruned_layer.gamma.numpy()) == 0 and np.count_nonzero(pruned_layer.beta.numpy()) == 0
    search.finish()
    assert search.schedule.candidates[-1].reason == "final"
    assert search.schedule.candidates[-1].flops < search.schedule.candidates[0].flops


def test_candidate_subnet_generated_keras_matches_gated_model(tmp_path) -> None:  # noqa: ANN001
    search = _search()
    search.train_round(0)
    search.end_round()
    alpha = search.gates.alpha.numpy().copy()
    alpha[0] = -12.0
    search.gates.alpha.assign(alpha)
    search.end_round()
    search.train_round(1)
    search.finish()
    final = len(search.schedule.candidates) - 1
    pruned = search.space.zero_groups(np.array(search.schedule.candidates[final].keep))
    assert len(pruned) == 1
    result = search.export(final, tmp_path / "front0")
    assert result["equivalent"], result
    assert (tmp_path / "front0" / "model.py").exists()
    # the gated model, with the pruned gate at zero, predicts as the generated sub-network
    assert result["max_abs_diff"] <= 1e-4 * result["max_ref"]


def test_search_gold_dispatches_on_framework(tmp_path) -> None:  # noqa: ANN001
    """`asgnas search gold` reads `framework` (torch by default); a Keras config refuses torch-only names."""
    from types import SimpleNamespace

    from asgnas_ir.backends.search.runner import run_search
    from asgnas_ir.errors import SpecError

    options = SimpleNamespace(out=None, resume=False, workers=1, backend="inline", ray_address=None)
    bad = tmp_path / "bad.json"
    bad.write_text('{"framework": "jax"}')
    with pytest.raises(SpecError, match="unknown framework 'jax'"):
        run_search("gold", bad, options)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"framework": "keras", "supernet": "resnet_zoo"}')
    with pytest.raises(SpecError, match="unknown Keras super-network"):
        run_search("gold", unknown, options)


def test_gold_space_with_prunable_skips_from_a_spec(tmp_path) -> None:  # noqa: ANN001
    """GOLD-NAS' operator set on Keras (`supernet` a SPEC): the skip-connects carry gates like the
    convolutions, a pruned skip-connect is gone from the generated sub-network, which matches the gated model."""
    config = KerasGoldConfig(supernet="asgnas_ir.examples.supernets.keras_nets:darts_cell_gold", rounds=2,
                             steps_per_round=2, batch_size=32, warmup_rounds=0, finetune_epochs=0, flops_floor=0.0)
    search = KerasGoldSearch(config)
    names = [layer.name for layer in search.gates.layers]
    skips = [i for i, name in enumerate(names) if name.endswith("_skip")]
    assert len(names) == 54 and len(skips) == 27  # a skip-connect and a sep_conv3x3 on each of 27 edges
    search.train_round(0)
    search.end_round()
    alpha = search.gates.alpha.numpy().copy()
    alpha[skips[-1]] = -12.0  # the last node's last skip-connect: not the one each node must keep
    search.gates.alpha.assign(alpha)
    search.end_round()
    search.finish()
    final = len(search.schedule.candidates) - 1
    keep = np.array(search.schedule.candidates[final].keep)
    assert not keep[skips[-1]] and keep.sum() == len(keep) - 1
    result = search.export(final, tmp_path / "front0")
    assert result["equivalent"], result
    assert names[skips[-1]] not in (tmp_path / "front0" / "model.py").read_text()


def test_keras_spec_must_build_a_keras_model(tmp_path) -> None:  # noqa: ANN001
    from asgnas_ir.errors import SpecError

    builder = tmp_path / "nets.py"
    builder.write_text("def build(num_classes, in_channels, image_size):\n    return {'not': 'a model'}\n")
    with pytest.raises(SpecError, match=r"SPEC '.*nets.py:build' gave a dict, not a keras.Model"):
        KerasGoldSearch(KerasGoldConfig(supernet=f"{builder}:build", rounds=1))
