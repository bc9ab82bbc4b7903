"""A noise-free objective over a search space with a known optimum, for testing searchers without training.

`HiddenTarget` scores an architecture by how much it agrees with a hidden target architecture: the
target is one random valid architecture of the space (drawn and repaired as `ArchitectureSpace.random`
draws them, from its own seeded stream), and the score is the weighted share of operator groups on
which the candidate's canonical keep-vector equals the target's, in percent:

    score(x) = 100 · Σ_i v_i·[x_i = t_i] / Σ_i v_i,   v_i ~ U[0.5, 1.5] (fixed by the seed)

The optimum is known: 100, reached by the target and by nothing else (every weight is positive and
both vectors are canonical). The weights make some groups matter more than others, so the objective
is not plain Hamming similarity; it is still separable, which is the easy case for a surrogate and
says nothing about interactions between groups. It is what `val_accuracy` and `test_accuracy` both
report (there is no noise to select on), and `regret` is 100 minus it.

`synthetic_search` runs `ag` or `random` on it inline (no output folder, no super-network training):
the same loop code the CLI runs, so what it shows is how the searchers pick architectures, free of
the evaluator's noise. FLOPs and params of a record are the full network's minus the removed groups'
(the linear estimate of `SearchSpace` group costs), which is enough for ranking and fronts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.backends.search.evaluation import Evaluation, EvaluationPool

TARGET_STREAM = 0x7A47  # the hidden target's random stream, apart from every searcher's own


class HiddenTarget:
    """`zero_groups -> Evaluation`: weighted agreement (%) with a hidden random valid architecture.
    Picklable and instant; the zero-group lists it is given are read as canonical (searchers give
    canonical ones)."""

    optimum = 100.0

    def __init__(self, space: ArchitectureSpace, seed: int = 0, keep_probability: float | None = None) -> None:
        rng = np.random.default_rng([seed, TARGET_STREAM])
        self.group_ids = list(space.group_ids)
        self.target = space.random(rng, keep_probability)
        self.target_key = space.key(self.target)
        self.weights = rng.uniform(0.5, 1.5, space.size)
        groups = [space.space.group(g) for g in self.group_ids]
        self.group_flops = np.array([g.flops for g in groups], dtype=np.int64)
        self.group_params = np.array([g.params for g in groups], dtype=np.int64)
        full = space.full_cost()
        self.full_flops, self.full_params = full.flops, full.params

    def keep(self, zero_groups: list[int]) -> np.ndarray:
        removed = set(zero_groups)
        return np.array([g not in removed for g in self.group_ids])

    def score(self, keep: np.ndarray) -> float:
        agree = np.asarray(keep, dtype=bool) == self.target
        return float(100.0 * (self.weights * agree).sum() / self.weights.sum())

    def __call__(self, zero_groups: list[int]) -> Evaluation:
        keep = self.keep(zero_groups)
        score = self.score(keep)
        return Evaluation(key="", zero_groups=list(zero_groups), val_accuracy=score, test_accuracy=score,
                          flops=int(self.full_flops - self.group_flops[~keep].sum()),
                          params=int(self.full_params - self.group_params[~keep].sum()))


def synthetic_search(searcher: str, space: ArchitectureSpace, objective: Any, config: dict[str, Any]) -> list[Evaluation]:
    """Run `searcher` ('ag' or 'random') with `config` (a CONFIG dict: budget, seed, ag…) against
    `objective` (any `zero_groups -> Evaluation`), inline; returns the evaluations in query order."""
    from asgnas_ir.backends.search.ag import AGConfig, ag_search
    from asgnas_ir.backends.search.job import SearchJob
    from asgnas_ir.backends.search.random_search import RandomSearchConfig, random_search

    if searcher not in ("ag", "random"):
        raise ValueError(f"synthetic_search runs 'ag' or 'random', not '{searcher}'")
    parsed = (AGConfig if searcher == "ag" else RandomSearchConfig).model_validate(config)
    job = SearchJob(searcher, parsed, Path("unused"), space, EvaluationPool(objective, backend="inline"), evaluator=None)
    if searcher == "ag":
        ag_search(job, parsed)
    else:
        random_search(job, parsed)
    return job.records
