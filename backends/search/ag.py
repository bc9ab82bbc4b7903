"""`asgnas search ag CONFIG`: AG-Net's generative search over our generated search space.

The loop (algorithms.md §3.3, adapted to keep-vectors):

1. evaluate `initial` (16) distinct random valid architectures;
   pre-train the generator to reconstruct `pretrain_samples` random valid architectures (drawn and
   repaired exactly as the random ones, from a stream of their own) for `pretrain_steps` steps;
2. each round: rank everything evaluated so far under the objective (accuracy, or accuracy and
   latency with a penalty over the limit), weight it 1 / (c·N + rank), and train the generator and
   surrogate on it (`asgnas_ir.backends.torch.ag_net`);
3. sample the generator until `candidates` (100) valid, never-evaluated architectures are found
   (each Bernoulli draw repaired by the search-space rule, its logits deciding which removed
   groups come back first); top up with random ones if the generator has collapsed onto what is
   already known;
4. rank the candidates by the surrogate's predictions the same way and evaluate the top `k`;
5. repeat until `budget` evaluations: 16 + k·r after r rounds.

Steps 2-4 are the framework-free functions below plus the torch networks; the query sequence
depends only on the seed and the evaluation results, which is what makes `--resume` exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.backends.search.config import SearchConfig, load_config
from asgnas_ir.backends.search.job import SearchJob, distinct_random
from asgnas_ir.backends.search.ranking import LATENCY_PENALTY, objective_ranks, query_plan, rank_weights

Surrogate = Literal["mlp", "gbdt"]
# Pre-training defaults, measured (docs/search.md, "How the AG defaults were chosen").
PRETRAIN_STEPS = 500
PRETRAIN_SAMPLES = 2000
PRETRAIN_LR = 1e-3
PRETRAIN_STREAM = 0x5052  # the pre-training architectures' random stream, apart from the search's own


def prior_architectures(space: ArchitectureSpace, seed: int, count: int) -> np.ndarray:
    """`count` random valid architectures (count×size), drawn and repaired as `ArchitectureSpace.random`
    draws the search's random ones, from a stream of their own: what the generator pre-trains on."""
    rng = np.random.default_rng([seed, PRETRAIN_STREAM])
    return np.stack([space.random(rng) for _ in range(count)])


class AGSettings(BaseModel):
    """The generator, surrogate and loop knobs (the `ag` object of the CONFIG); AG-Net's defaults."""

    model_config = ConfigDict(extra="forbid")

    initial: int = Field(16, ge=1, description="random architectures evaluated before the first round")
    k: int = Field(16, ge=1, description="architectures evaluated per round (the surrogate's top k)")
    candidates: int = Field(100, ge=1, description="valid, new architectures generated per round before ranking")
    rank_c: float = Field(0.01, gt=0, description="c in the rank weights 1 / (c·N + rank)")
    ticks: int = Field(30, ge=1, description="passes over the evaluated set per round of training")
    min_steps: int = Field(200, ge=1, description="training batches per round at least")
    latent_dim: int = Field(32, ge=1, description="size of the generator's latent z (AG-Net: 32)")
    hidden: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    alpha: float | None = Field(
        None, ge=0, le=1,
        description="weight of the prediction loss against the reconstruction loss; None: AG-Net's 0.9, or 0.95 "
        "with a latency limit",
    )
    batch_size: int = Field(16, ge=1)
    surrogate: Surrogate = Field(
        "mlp", description="mlp (AG-Net's predictor, trained through the generator) or gbdt (scikit-learn gradient "
        "boosting, AG-Net's XGBoost variant: ranks candidates, passes no gradient to the generator)",
    )
    pretrain_steps: int = Field(PRETRAIN_STEPS, ge=0, description="generator pre-training steps before the loop (0: off)")
    pretrain_samples: int = Field(PRETRAIN_SAMPLES, ge=1, description="random valid architectures pre-training reconstructs")
    pretrain_lr: float = Field(PRETRAIN_LR, gt=0, description="Adam step of the pre-training")
    pretrain_batch_size: int = Field(32, ge=1, description="batch of the pre-training (AG-Net: 32)")
    penalty: float = Field(LATENCY_PENALTY, ge=1, description="rank factor for architectures over the latency limit")
    max_samples: int = Field(4500, ge=1, description="generator draws per round at most (100, 200, ... per batch)")

    def alpha_for(self, limit: float | None) -> float:
        """α in use: the one set, else AG-Net's 0.9 (accuracy) or 0.95 (accuracy and latency)."""
        if self.alpha is not None:
            return self.alpha
        return 0.9 if limit is None else 0.95


class AGConfig(SearchConfig):
    """The CONFIG of `asgnas search ag`."""

    ag: AGSettings = Field(default_factory=AGSettings)


def targets_of(records: list[Any], with_latency: bool) -> np.ndarray:
    """Surrogate targets: validation accuracy, and latency when the objective has one."""
    columns = [[r.val_accuracy for r in records]]
    if with_latency:
        columns.append([r.latency_ms for r in records])
    return np.array(columns, dtype=np.float64).T


def generate_candidates(net: Any, space: ArchitectureSpace, seen: set[str], settings: AGSettings) -> list[np.ndarray]:
    """Valid canonical architectures from the generator that are not in `seen` (nor repeated): batches
    of 100, 200, ... draws until `settings.candidates` are found or `max_samples` draws are spent."""
    found: dict[str, np.ndarray] = {}
    tried: set[bytes] = set()  # a raw draw met before is skipped: repairing it again rarely gives anything new
    drawn, batch = 0, 100
    while len(found) < settings.candidates and drawn < settings.max_samples:
        draws, logits = net.sample(min(batch, settings.max_samples - drawn))
        drawn += len(draws)
        batch += 100
        for raw, priority in zip(draws, logits, strict=True):
            signature = raw.tobytes()
            if signature in tried:
                continue
            tried.add(signature)
            keep = space.repair(raw, priority)
            key = space.key(keep)
            if key not in seen and key not in found:
                found[key] = keep
            if len(found) == settings.candidates:
                break
    return list(found.values())


def choose(predictions: np.ndarray, k: int, limit: float | None, penalty: float) -> list[int]:
    """Indices of the k candidates to evaluate: best predicted under the objective first."""
    latency = predictions[:, 1] if limit is not None else None
    order = np.argsort(objective_ranks(predictions[:, 0], latency, limit, penalty), kind="stable")
    return [int(i) for i in order[:k]]


def ag_search(job: SearchJob, config: AGConfig) -> int:
    """Run the loop on `job` until the budget (or the space) is exhausted; returns the rounds run."""
    from asgnas_ir.backends.torch.ag_net import AGNet

    settings, limit = config.ag, config.latency_limit_ms
    rng = np.random.default_rng(config.seed)
    seen: set[str] = set()
    plan = query_plan(config.budget, settings.initial, settings.k)
    job.query(distinct_random(job.space, rng, plan[0], seen))
    net = AGNet(job.space.size, outputs=1 if limit is None else 2, latent_dim=settings.latent_dim,
                hidden=settings.hidden, seed=config.seed, lr=settings.lr, alpha=settings.alpha_for(limit),
                batch_size=settings.batch_size, surrogate=settings.surrogate)
    if settings.pretrain_steps:
        net.pretrain(prior_architectures(job.space, config.seed, settings.pretrain_samples), settings.pretrain_steps,
                     batch_size=settings.pretrain_batch_size, lr=settings.pretrain_lr)
    rounds = 0
    for k in plan[1:]:
        records = job.records
        latency = [r.latency_ms for r in records] if limit is not None else None
        weights = rank_weights(objective_ranks([r.val_accuracy for r in records], latency, limit, settings.penalty),
                               settings.rank_c)
        net.fit(job.keep_matrix(), targets_of(records, limit is not None), weights, settings.ticks, settings.min_steps)
        candidates = generate_candidates(net, job.space, seen, settings)
        if len(candidates) < k:
            candidates += distinct_random(job.space, rng, k - len(candidates), seen | {job.space.key(c) for c in candidates})
        if not candidates:
            break  # every architecture of the space has been evaluated
        picked = [candidates[i] for i in choose(net.predict(np.stack(candidates)), k, limit, settings.penalty)]
        seen.update(job.space.key(c) for c in picked)
        job.query(picked)
        rounds += 1
    return rounds


def run_ag_search(config_path: Path, options: Any, console: Any = None) -> dict[str, Any]:
    config = load_config(AGConfig, config_path)
    job = SearchJob.start("ag", config, options, console)
    try:
        rounds = ag_search(job, config)
    finally:
        job.pool.close()
    return job.finish({"rounds": rounds})
