"""AG-Net fidelity (issue 20): generator pre-training, the paper's latent size and α, the optional
gradient-boosted surrogate, and the noise-free hidden-target objective AG must beat random search on."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy import stats

import asgnas_ir as ai
from asgnas_ir.backends.search import ArchitectureSpace
from asgnas_ir.backends.search.ag import PRETRAIN_STEPS, AGConfig, AGSettings, prior_architectures
from asgnas_ir.backends.search.synthetic import HiddenTarget, synthetic_search
from asgnas_ir.backends.torch.ag_net import AGNet
from asgnas_ir.examples.supernets import SUPERNETS


def _space(name: str) -> ArchitectureSpace:
    torch.manual_seed(0)
    graph = ai.compile(SUPERNETS[name](num_classes=10, in_channels=1).eval(), torch.randn(1, 1, 8, 8))
    return ArchitectureSpace(graph, ai.search_space(graph, mode="erase"))


@pytest.fixture(scope="module")
def regnet_space() -> ArchitectureSpace:
    # 11 operator groups, and about half of all vectors are not valid networks: validity matters here.
    return _space("regnet_super")


@pytest.fixture(scope="module")
def resnet_space() -> ArchitectureSpace:
    return _space("super_resnet")


# ---- pre-training ------------------------------------------------------------------------------------------


def _raw_draws(net: AGNet, n: int = 2000) -> np.ndarray:
    draws, _ = net.sample(n)
    return draws


def test_pretraining_lowers_the_loss_and_samples_like_the_valid_prior(regnet_space: ArchitectureSpace) -> None:
    space = regnet_space
    prior, held_out = prior_architectures(space, 0, 1000), prior_architectures(space, 1, 1000)
    assert all(space.is_valid(k) for k in prior[:50])
    net = AGNet(space.size, seed=0)
    before = net.reconstruction_loss(held_out)
    raw = _raw_draws(net)
    valid_before = np.mean([space.is_valid(r) for r in raw])
    gap_before = np.abs(raw.mean(0) - held_out.mean(0)).mean()

    losses = net.pretrain(prior, 300)
    after = net.reconstruction_loss(held_out)
    raw = _raw_draws(net)
    valid_after = np.mean([space.is_valid(r) for r in raw])
    gap_after = np.abs(raw.mean(0) - held_out.mean(0)).mean()

    # The held-out loss falls to near what the prior's own per-group keep rates allow (the unpaired
    # loss cannot go much lower), and the training loss falls over the steps.
    rate = held_out.mean(0).clip(1e-6, 1 - 1e-6)
    floor = float(np.mean(-(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))))
    assert after < before and after < floor + 0.25 * (before - floor)
    assert np.mean(losses[-50:]) < np.mean(losses[:50])
    # Raw draws (before any repair) are valid networks more often and keep groups at the prior's rates.
    assert valid_after > valid_before + 0.1
    assert gap_after < 0.5 * gap_before


def test_pretraining_is_on_by_default_and_seeded(resnet_space: ArchitectureSpace, monkeypatch) -> None:
    settings = AGSettings()
    assert settings.pretrain_steps == PRETRAIN_STEPS > 0
    assert settings.latent_dim == 32
    assert settings.alpha_for(None) == 0.9 and settings.alpha_for(2.0) == 0.95  # AG-Net's, with latency
    assert AGSettings(alpha=0.7).alpha_for(2.0) == 0.7
    # The pre-training set is the search's prior, repaired, from a stream of its own (seeded).
    a, b = prior_architectures(resnet_space, 3, 20), prior_architectures(resnet_space, 3, 20)
    assert np.array_equal(a, b) and not np.array_equal(a, prior_architectures(resnet_space, 4, 20))

    calls: list[int] = []
    original = AGNet.pretrain
    monkeypatch.setattr(AGNet, "pretrain", lambda self, keeps, steps, **kw: calls.append(steps) or original(self, keeps, steps, **kw))
    objective = HiddenTarget(resnet_space, 0)
    quick = {"k": 8, "ticks": 5, "min_steps": 20, "pretrain_steps": 50, "pretrain_samples": 100}
    first = synthetic_search("ag", resnet_space, objective, {"budget": 24, "seed": 0, "ag": quick})
    again = synthetic_search("ag", resnet_space, objective, {"budget": 24, "seed": 0, "ag": quick})
    assert calls == [50, 50] and [r.key for r in first] == [r.key for r in again]
    synthetic_search("ag", resnet_space, objective, {"budget": 24, "seed": 0, "ag": {**quick, "pretrain_steps": 0}})
    assert calls == [50, 50]  # 0 switches it off
    # Both searchers start from the same random architectures: pre-training draws from its own stream.
    rand = synthetic_search("random", resnet_space, objective, {"budget": 16, "seed": 0})
    assert [r.key for r in first[:16]] == [r.key for r in rand]


# ---- the gradient-boosted surrogate --------------------------------------------------------------------------


def test_gbdt_surrogate_ranks_held_out_architectures(resnet_space: ArchitectureSpace) -> None:
    pytest.importorskip("sklearn")
    objective = HiddenTarget(resnet_space, 1)
    keeps = prior_architectures(resnet_space, 5, 120)
    scores = np.array([objective.score(k) for k in keeps])
    net = AGNet(resnet_space.size, seed=0, surrogate="gbdt")
    with pytest.raises(RuntimeError, match="before fit"):
        net.predict(keeps)
    net.fit(keeps[:80], scores[:80, None], np.ones(80), ticks=1, min_steps=10)
    rho = stats.spearmanr(net.predict(keeps[80:])[:, 0], scores[80:]).statistic
    assert rho > 0.5  # a separable objective: trees on 80 examples rank the other 40 well
    records = synthetic_search("ag", resnet_space, objective,
                               {"budget": 32, "seed": 0, "ag": {"surrogate": "gbdt", "k": 8, "min_steps": 20,
                                                                "pretrain_steps": 50, "pretrain_samples": 100}})
    assert len({r.key for r in records}) == 32
    with pytest.raises(ValueError, match="surrogate"):
        AGNet(4, surrogate="xgboost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="surrogate"):
        AGConfig.model_validate({"ag": {"surrogate": "xgboost"}})


# ---- the noise-free objective -------------------------------------------------------------------------------


def test_hidden_target_has_its_known_optimum_only_at_the_target(resnet_space: ArchitectureSpace) -> None:
    objective = pickle.loads(pickle.dumps(HiddenTarget(resnet_space, 7)))  # picklable: usable by a process pool
    best = objective(resnet_space.zero_groups(objective.target))
    assert best.val_accuracy == best.test_accuracy == objective.optimum == 100.0
    assert resnet_space.key(objective.target) == objective.target_key and resnet_space.is_valid(objective.target)
    others = [k for k in prior_architectures(resnet_space, 9, 200) if resnet_space.key(k) != objective.target_key]
    scores = [objective(resnet_space.zero_groups(k)).val_accuracy for k in others]
    assert max(scores) < 100.0 and min(scores) >= 0.0
    flipped = objective.target.copy()
    flipped[int(np.argmax(objective.weights))] ^= True
    assert objective.score(flipped) == pytest.approx(100 * (1 - objective.weights.max() / objective.weights.sum()))
    full = objective([])
    assert (full.flops, full.params) == (resnet_space.full_cost().flops, resnet_space.full_cost().params)
    assert HiddenTarget(resnet_space, 8).target_key != objective.target_key or not np.array_equal(
        HiddenTarget(resnet_space, 8).weights, objective.weights)


def test_ag_beats_random_search_on_the_hidden_target(resnet_space: ArchitectureSpace) -> None:
    """Over several seeds (one hidden target each): AG's best after 40 evaluations against random
    search's after 80. The margin is the run's own: the one-sided 95 % lower bound of the mean paired
    difference must be above 0, so a lucky seed cannot carry it."""
    quick = {"k": 8, "ticks": 10, "min_steps": 100, "pretrain_steps": 200, "pretrain_samples": 500}
    differences = []
    for seed in range(6):
        objective = HiddenTarget(resnet_space, seed)
        ag = synthetic_search("ag", resnet_space, objective, {"budget": 40, "seed": seed, "ag": quick})
        rand = synthetic_search("random", resnet_space, objective, {"budget": 80, "seed": seed})
        differences.append(max(r.val_accuracy for r in ag) - max(r.val_accuracy for r in rand))
    d = np.array(differences)
    lower = d.mean() - stats.t.ppf(0.95, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert lower > 0, f"AG@40 - random@80 per seed: {np.round(d, 2).tolist()}, lower bound {lower:.2f}"
