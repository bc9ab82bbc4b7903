"""The bookkeeping every searcher shares, as plain functions over numbers (no framework).

- `objective_ranks`: order architectures by validation accuracy, or, with a latency limit, by
  accuracy rank + latency rank with a large penalty factor on those over the limit (AG-Net's
  hardware-aware ranking, algorithms.md §3.4);
- `rank_weights`: AG-Net's retraining weights 1 / (c·N + rank), rank 0 the best;
- `query_plan`: how many architectures each round queries (initial, then k per round, cut at budget);
- `best_index` / `best_so_far`: the architecture a search returns after its first n evaluations.

Records are read through `val_accuracy`, `test_accuracy`, `flops` and `latency_ms` only, so these
work on `Evaluation` objects and on anything shaped like them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LATENCY_PENALTY = 1000.0


def ranks(values: Sequence[float] | np.ndarray, *, higher_is_better: bool) -> np.ndarray:
    """Rank of each value, 0 for the best; ties keep their order of appearance (stable)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-values if higher_is_better else values, kind="stable")
    result = np.empty(len(values), dtype=np.int64)
    result[order] = np.arange(len(values))
    return result


def objective_ranks(
    accuracy: Sequence[float] | np.ndarray,
    latency: Sequence[float] | np.ndarray | None = None,
    limit: float | None = None,
    penalty: float = LATENCY_PENALTY,
) -> np.ndarray:
    """Rank 0..N-1 of each architecture under the search objective (0 = the one to prefer).

    Without `limit`: by accuracy alone. With it: the score (rank_acc + rank_lat) · p, p = `penalty`
    for an architecture slower than `limit` and 1 otherwise; lower scores rank first, ties by accuracy.
    """
    accuracy = np.asarray(accuracy, dtype=np.float64)
    by_accuracy = ranks(accuracy, higher_is_better=True)
    if limit is None:
        return by_accuracy
    if latency is None:
        raise ValueError("a latency limit needs a latency for every architecture")
    latency = np.asarray(latency, dtype=np.float64)
    score = (by_accuracy + ranks(latency, higher_is_better=False)) * np.where(latency > limit, penalty, 1.0)
    order = np.lexsort((by_accuracy, score))  # last key is the primary one
    result = np.empty(len(score), dtype=np.int64)
    result[order] = np.arange(len(score))
    return result


def rank_weights(rank: Sequence[int] | np.ndarray, c: float = 0.01) -> np.ndarray:
    """AG-Net's retraining weights w_i = 1 / (c·N + rank_i): the best dominates, the rest still count."""
    rank = np.asarray(rank, dtype=np.float64)
    return 1.0 / (c * len(rank) + rank)


def query_plan(budget: int, initial: int, k: int) -> list[int]:
    """Batch sizes of a search: `initial` random ones, then rounds of `k`, the total cut at `budget`.
    After r full rounds the count is initial + k·r."""
    if budget < 1 or initial < 1 or k < 1:
        raise ValueError(f"budget, initial and k must be positive, got {budget}, {initial}, {k}")
    plan = [min(initial, budget)]
    while sum(plan) < budget:
        plan.append(min(k, budget - sum(plan)))
    return plan


def meets_limit(record: Any, limit: float | None) -> bool:
    return limit is None or (record.latency_ms is not None and record.latency_ms <= limit)


def best_index(records: Sequence[Any], limit: float | None = None) -> int | None:
    """Index of the best record by validation accuracy among those within the latency limit; ties go
    to fewer FLOPs, then to the earlier one. None when no record meets the limit."""
    best: int | None = None
    for i, record in enumerate(records):
        if not meets_limit(record, limit):
            continue
        if best is None or (record.val_accuracy, -record.flops) > (records[best].val_accuracy, -records[best].flops):
            best = i
    return best


def best_so_far(records: Sequence[Any], limit: float | None = None) -> list[dict[str, Any]]:
    """After each evaluation n (1-based): the index, validation and test accuracy of the best record
    among the first n. Validation accuracy never decreases along the curve; test accuracy may."""
    curve: list[dict[str, Any]] = []
    best: int | None = None
    for n, record in enumerate(records, start=1):
        if meets_limit(record, limit) and (
            best is None or (record.val_accuracy, -record.flops) > (records[best].val_accuracy, -records[best].flops)
        ):
            best = n - 1
        if best is None:
            curve.append({"evaluations": n, "index": None, "val_accuracy": None, "test_accuracy": None})
        else:
            curve.append({"evaluations": n, "index": best, "val_accuracy": records[best].val_accuracy,
                          "test_accuracy": records[best].test_accuracy})
    return curve
