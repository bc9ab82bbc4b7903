"""The GOLD schedule (gradual one-level pruning, GOLD-NAS), free of any framework.

GOLD trains one sigmoid gate per operator group together with the weights, under a penalty
λ·Σ w_g·σ(α_g) that charges each open gate its share of the network's FLOPs. This module holds
everything about the schedule that does not need the framework: the penalty weights, λ and its
step Δλ, which gates to prune after each round, when to stop, and which architectures met on
the way are candidates for the Pareto front. A backend trains the gates and reports their values
(σ(α), one per operator group, in `ArchitectureSpace.group_ids` order) once per round.

Invariants kept by `end_round`:
- the architecture (`keep`) only ever loses groups, so its exact FLOPs never rise;
- it is always valid and canonical: a gate is pruned only if the network stays valid without
  it, and groups made dead by a pruned parent fall with it;
- a candidate is recorded before the pruning that ends its life, so the backend can evaluate
  the network exactly as it was trained; candidates have non-increasing FLOPs (a group can be free).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.errors import AsgnasError


@dataclass(frozen=True)
class GoldSettings:
    """The schedule's knobs (GOLD-NAS names in brackets).

    lambda0 [λ0]: first step of the penalty weight λ (λ starts at 0).
    c0 [c0]: growth factor of Δλ while pruning is too slow, and divisor of λ after a fast round.
    n0 [n0]: gates a round should prune; also the most weak gates pruned below `xi_max` per round.
    xi_min [ξ_min]: every open gate with σ(α) ≤ xi_min is pruned.
    xi_max [ξ_max]: the up-to-n0 weakest further gates are pruned if σ(α) ≤ xi_max.
    flops_floor: stop once the exact FLOPs fall under this fraction of the full network's.
    stable_rounds: rounds an architecture must stay unchanged to be a front candidate.
    uniform_weight: penalty weight every gate gets on top of its FLOPs share, so operators
        without FLOPs (or with very few) can fall too.
    warmup_rounds: rounds of plain training first (λ stays 0, nothing is pruned), so the
        architectures compared on the front have all had their weights trained.
    """

    lambda0: float = 0.01
    c0: float = 2.0
    n0: int = 2
    xi_min: float = 0.05
    xi_max: float = 0.2
    flops_floor: float = 0.2
    stable_rounds: int = 2
    uniform_weight: float = 0.01
    warmup_rounds: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.lambda0 <= 0:
            problems.append(f"lambda0 must be > 0, got {self.lambda0}")
        if self.c0 <= 1:
            problems.append(f"c0 must be > 1 (λ has to grow while too few gates fall), got {self.c0}")
        if self.n0 < 1:
            problems.append(f"n0 must be ≥ 1, got {self.n0}")
        if not 0 <= self.xi_min <= self.xi_max < 1:
            problems.append(f"need 0 ≤ xi_min ≤ xi_max < 1, got xi_min={self.xi_min}, xi_max={self.xi_max}")
        if not 0 <= self.flops_floor < 1:
            problems.append(f"flops_floor is a fraction of the full FLOPs in [0, 1), got {self.flops_floor}")
        if self.stable_rounds < 1:
            problems.append(f"stable_rounds must be ≥ 1, got {self.stable_rounds}")
        if self.warmup_rounds < 0:
            problems.append(f"warmup_rounds must be ≥ 0, got {self.warmup_rounds}")
        if self.uniform_weight < 0:
            problems.append(f"uniform_weight must be ≥ 0, got {self.uniform_weight}")
        if problems:
            raise AsgnasError("invalid GOLD settings: " + "; ".join(problems))


@dataclass
class GoldCandidate:
    """An architecture met on the way: the keep-vector, when it was recorded and its exact cost."""

    keep: list[bool]
    round: int
    lmbda: float
    flops: int
    params: int
    reason: str  # "stable" (it lasted stable_rounds rounds) or "final"


@dataclass
class RoundOutcome:
    """What `end_round` decided: groups pruned (positions in the keep-vector), the candidate to
    evaluate *before* applying the pruning (None if the old architecture was not stable), and
    whether the search is over."""

    pruned: list[int]
    candidate: GoldCandidate | None
    done: bool
    reason: str = ""


@dataclass
class GoldSchedule:
    """λ, the open gates and the recorded candidates across rounds (see the module docstring)."""

    space: ArchitectureSpace
    settings: GoldSettings = field(default_factory=GoldSettings)

    def __post_init__(self) -> None:
        full = self.space.full_cost()
        if full.flops <= 0:
            raise AsgnasError("the super-network has no FLOPs to search over (full cost is 0)")
        # A gate's penalty weight: its FLOPs share of the whole network plus the uniform term.
        self.penalty_weights = self.space.group_flops / full.flops + self.settings.uniform_weight
        self.keep = self.space.full()
        self.lmbda = 0.0
        self.delta = self.settings.lambda0
        self.rounds = 0
        self.age = 0  # rounds trained with the current architecture
        self.done = False
        self.limited = False  # stopped by the caller's round limit, not by the schedule
        self.stop_reason = ""
        self.candidates: list[GoldCandidate] = []
        self.history: list[dict[str, Any]] = []

    # one round ------------------------------------------------------------------------------------
    def end_round(self, gates: np.ndarray) -> RoundOutcome:
        """Decide after a round of training with gate values `gates` (σ(α), one per group)."""
        if self.done:
            raise AsgnasError(f"the GOLD search already ended ({self.stop_reason}); no further rounds")
        gates = np.asarray(gates, dtype=np.float64)
        if gates.shape != (self.space.size,) or not np.isfinite(gates).all():
            raise AsgnasError(f"gate values must be {self.space.size} finite numbers, got shape {gates.shape}")
        self.rounds += 1
        self.age += 1
        if self.rounds <= self.settings.warmup_rounds:
            flops = self.space.full_cost().flops
            self.history.append({"round": self.rounds, "lmbda": 0.0, "pruned": [], "active": self.space.size, "flops": flops})
            return RoundOutcome([], None, False)
        before = self.keep.copy()
        self._prune(gates)
        pruned = [int(i) for i in np.flatnonzero(before & ~self.keep)]

        candidate = None
        if pruned and self.age >= self.settings.stable_rounds:
            candidate = self._record(before, "stable")
        if pruned:
            self.age = 0
        # The adaptive rule: too few fell → strengthen the constraint geometrically; else relax.
        if len(pruned) < self.settings.n0:
            self.delta *= self.settings.c0
            self.lmbda += self.delta
        else:
            self.delta = self.settings.lambda0
            self.lmbda /= self.settings.c0

        flops = self.space.cost(self.keep).flops
        if flops < self.settings.flops_floor * self.space.full_cost().flops:
            self._stop(f"FLOPs {flops:,} fell under the floor ({self.settings.flops_floor:.0%} of the full network)")
        elif not self._anything_prunable():
            self._stop("no gate can be pruned without disconnecting the network")
        self.history.append(
            {"round": self.rounds, "lmbda": self.lmbda, "pruned": pruned, "active": int(self.keep.sum()), "flops": flops}
        )
        return RoundOutcome(pruned, candidate, self.done, self.stop_reason)

    def finish(self) -> GoldCandidate | None:
        """End the search (if it has not ended) and record the final architecture unless it is
        already a candidate. Returns the new candidate, to evaluate with the final weights."""
        if not self.done:
            self._stop(f"round limit reached after {self.rounds} rounds")
            self.limited = True
        key = self.space.key(self.keep)
        if any(self.space.key(np.array(c.keep)) == key for c in self.candidates):
            return None
        return self._record(self.keep, "final")

    @property
    def warming_up(self) -> bool:
        """True while the next round is a warm-up round (no penalty, no pruning)."""
        return self.rounds < self.settings.warmup_rounds

    def reopen(self) -> bool:
        """Undo `finish` (for a resumed run, which may allow more rounds): drop the final candidate
        it recorded and, if only the round limit ended the search, let it go on. Returns whether a
        candidate was dropped, so the caller drops its evaluation too."""
        if self.limited:
            self.done, self.stop_reason, self.limited = False, "", False
        if self.candidates and self.candidates[-1].reason == "final":
            self.candidates.pop()
            return True
        return False

    def penalty_coefficients(self) -> np.ndarray:
        """λ·w_g for open gates and 0 for pruned ones: the loss adds Σ coefficient_g·σ(α_g)."""
        return self.lmbda * self.penalty_weights * self.keep

    # state (for checkpoints: plain containers only) ---------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "keep": [bool(k) for k in self.keep],
            "lmbda": self.lmbda,
            "delta": self.delta,
            "rounds": self.rounds,
            "age": self.age,
            "done": self.done,
            "limited": self.limited,
            "stop_reason": self.stop_reason,
            "candidates": [asdict(c) for c in self.candidates],
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keep = np.asarray(state["keep"], dtype=bool)
        if keep.shape != (self.space.size,):
            raise AsgnasError(f"GOLD state has {keep.size} gates, this search space {self.space.size} operator groups")
        self.keep = keep
        self.lmbda, self.delta = float(state["lmbda"]), float(state["delta"])
        self.rounds, self.age = int(state["rounds"]), int(state["age"])
        self.done, self.limited, self.stop_reason = bool(state["done"]), bool(state["limited"]), str(state["stop_reason"])
        self.candidates = [GoldCandidate(**c) for c in state["candidates"]]
        self.history = list(state["history"])

    # internals ------------------------------------------------------------------------------------
    def _prune(self, gates: np.ndarray) -> None:
        """Close every open gate ≤ xi_min, then up to n0 of the weakest further ones ≤ xi_max,
        weakest first, each only if the network stays valid without it."""
        order = [int(i) for i in np.argsort(gates, kind="stable") if self.keep[i]]
        weak_taken = 0
        for i in order:
            if gates[i] > self.settings.xi_max:
                break
            if not self.keep[i]:
                continue  # already fell as a dead child of a pruned parent
            below_min = gates[i] <= self.settings.xi_min
            if not below_min and weak_taken >= self.settings.n0:
                continue
            trial = self.keep.copy()
            trial[i] = False
            if not self.space.is_valid(trial):
                continue
            self.keep = self.space.canonical(trial)
            weak_taken += 0 if below_min else 1

    def _anything_prunable(self) -> bool:
        for i in np.flatnonzero(self.keep):
            trial = self.keep.copy()
            trial[i] = False
            if self.space.is_valid(trial):
                return True
        return False

    def _record(self, keep: np.ndarray, reason: str) -> GoldCandidate:
        cost = self.space.cost(keep)
        candidate = GoldCandidate([bool(k) for k in keep], self.rounds, self.lmbda, cost.flops, cost.params, reason)
        self.candidates.append(candidate)
        return candidate

    def _stop(self, reason: str) -> None:
        self.done, self.stop_reason = True, reason
