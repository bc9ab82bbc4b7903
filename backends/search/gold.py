"""The GOLD schedule (gradual one-level pruning, GOLD-NAS), free of any framework.

GOLD trains one sigmoid gate per operator group together with the weights, under a penalty λ·Σ_g
w_g·f(gate g) that charges each open gate its share of the network's FLOPs (w_g; f is σ(α_g), or
GOLD-NAS' log(1 + n·w̄_g) of the normalised gate below, as the backend chooses). This module holds
everything about the schedule that does not need the framework: the penalty weights, λ and its
step Δλ, which gates to prune after each round, when to stop, and which architectures met on
the way are candidates for the Pareto front. A backend trains the gates and reports their values
(σ(α), one per operator group, in `ArchitectureSpace.group_ids` order) once per round.

Pruning thresholds apply, as in GOLD-NAS' code, to gates *normalised per node*: a group's score is
σ(α_g) divided by the sum over its node, the open gates of the operators summed into the same
additive joint plus 1 for every operand of that joint without a gate (an identity path or a
backbone branch, which enters the sum at weight 1). A node is found on the IR (`gate_nodes`): the
tree of binary adds a group's output feeds, followed while each add's result feeds one add only
(DARTS: every candidate of every edge into one intermediate node; SuperResNet: a block's candidates
and its identity). `GoldSettings(normalize=False)` thresholds the raw σ(α) instead.

Invariants kept by `end_round`:
- the architecture (`keep`) only ever loses groups, so its exact FLOPs never rise;
- it is always valid and canonical: a gate is pruned only if the network stays valid without
  it, and groups made dead by a pruned parent fall with it;
- a candidate is recorded before the pruning that ends its life, so the backend can evaluate
  the network exactly as it was trained; candidates have non-increasing FLOPs (a group can be free);
- λ's rule counts the gates the thresholds pruned (`RoundOutcome.rule_pruned`), not the groups that
  fell only because a pruned parent left them dead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.errors import AsgnasError
from asgnas_ir.ir.ops import Op


@dataclass(frozen=True)
class GoldSettings:
    """The schedule's knobs (GOLD-NAS names in brackets).

    lambda0 [λ0]: first step of the penalty weight λ (λ starts at 0).
    c0 [c0]: growth factor of Δλ while pruning is too slow, and divisor of λ after a fast round.
    n0 [n0]: gates a round should prune; also the most weak gates pruned below `xi_max` per round.
    xi_min [ξ_min, eta_min]: every open gate whose score is ≤ xi_min is pruned.
    xi_max [ξ_max, eta_max]: the up-to-n0 weakest further gates are pruned if their score is ≤ xi_max.
        The defaults are GOLD-NAS' code's (0.01, 0.05), meant for normalised scores.
    normalize: score a gate by σ(α) over its node's sum (GOLD-NAS' code; see the module
        docstring); False scores it by σ(α) alone.
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
    xi_min: float = 0.01
    xi_max: float = 0.05
    normalize: bool = True
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
    """What `end_round` decided: groups that left the architecture (positions in the keep-vector:
    the pruned ones and the children they left dead), the candidate to evaluate *before* applying
    the pruning (None if the old architecture was not stable), whether the search is over, and the
    groups the thresholds pruned (what λ's rule counts), in the order they fell."""

    pruned: list[int]
    candidate: GoldCandidate | None
    done: bool
    reason: str = ""
    rule_pruned: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class GateNodes:
    """Which node each operator group's gate is normalised in (GOLD-NAS' target node).

    node_of[i]: the node of group position i; fixed[k]: operands of node k without a gate (each
    counts 1 in the node's sum); roots[k]: the IR node that ends node k's sum (the last add).
    """

    node_of: np.ndarray
    fixed: np.ndarray
    roots: list[str]

    def normalized(self, gates: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """σ(α_g) / (Σ of the open gates of g's node + its fixed operands), for every group."""
        sums = np.bincount(self.node_of, weights=np.where(keep, gates, 0.0), minlength=len(self.fixed)) + self.fixed
        totals = sums[self.node_of]
        return np.divide(gates, totals, out=np.zeros_like(gates), where=totals > 0)


def _is_sum(node: Any) -> bool:
    return node.op is Op.ADD and len(node.inputs) == 2 and getattr(node.attrs, "scalar", None) is None


def gate_nodes(space: ArchitectureSpace) -> GateNodes:
    """The node of every operator group: the add tree its output feeds (see the module docstring).

    From the add (or concat) that reads a group's output, the tree goes on through adds whose
    result has that one add as its only reader; its operands are the values entering it from
    elsewhere. An operand that is a group's output is gated; any other operand (an identity, a
    backbone branch) counts 1. A group read by several joints belongs to the first one's node;
    a group read by no add or concat is a node of its own.
    """
    graph = space.graph
    outputs = set(graph.outputs)
    position_of_value = {
        graph.node(space.space.group(gid).nodes[-1]).outputs[0]: i for i, gid in enumerate(space.group_ids)
    }

    def readers(value: str) -> list[Any]:
        return list(graph.users(value))

    def inner(value: str) -> Any:
        """The add producing `value` when it belongs to the tree of its only reader, else None."""
        producer = graph.producer(value)
        if producer is None or not _is_sum(producer) or value in outputs or len(readers(value)) != 1:
            return None
        return producer

    root_of: dict[str, int] = {}
    roots: list[str] = []
    fixed: list[float] = []
    node_of = np.zeros(space.size, dtype=np.int64)
    for value, position in position_of_value.items():
        joint = next((u for u in readers(value) if _is_sum(u) or u.op is Op.CONCAT), None)
        if joint is None:
            node_of[position] = len(roots)
            roots.append(graph.node(space.space.group(space.group_ids[position]).nodes[-1]).id)
            fixed.append(0.0)
            continue
        while _is_sum(joint):
            result = joint.outputs[0]
            following = readers(result)
            if result in outputs or len(following) != 1 or not _is_sum(following[0]):
                break
            joint = following[0]
        if joint.id not in root_of:
            root_of[joint.id] = len(roots)
            roots.append(joint.id)
            operands = 0
            stack = [joint]
            while stack:
                current = stack.pop()
                for name in current.inputs:
                    producer = graph.producer(name)
                    if producer is not None and producer.op is Op.CONSTANT:
                        continue
                    below = inner(name) if _is_sum(current) else None
                    if below is not None:
                        stack.append(below)
                    elif name not in position_of_value:
                        operands += 1
            fixed.append(float(operands))
        node_of[position] = root_of[joint.id]
    return GateNodes(node_of, np.array(fixed, dtype=np.float64), roots)


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
        self.nodes = gate_nodes(self.space)
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
        rule_pruned = self._prune(gates)
        pruned = [int(i) for i in np.flatnonzero(before & ~self.keep)]

        candidate = None
        if pruned and self.age >= self.settings.stable_rounds:
            candidate = self._record(before, "stable")
        if pruned:
            self.age = 0
        # The adaptive rule: too few fell → strengthen the constraint geometrically; else relax.
        # Only the gates the thresholds pruned count: children that fell dead with their parent
        # say nothing about how fast the gates are falling (GOLD-NAS counts pruned operators).
        if len(rule_pruned) < self.settings.n0:
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
            {
                "round": self.rounds, "lmbda": self.lmbda, "pruned": pruned, "rule_pruned": rule_pruned,
                "active": int(self.keep.sum()), "flops": flops,
            }
        )
        return RoundOutcome(pruned, candidate, self.done, self.stop_reason, rule_pruned)

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

    def scores(self, gates: np.ndarray) -> np.ndarray:
        """What the thresholds compare, per group: σ(α) normalised over its node among the open
        gates of `keep` (or σ(α) itself with `normalize=False`)."""
        gates = np.asarray(gates, dtype=np.float64)
        return self.nodes.normalized(gates, self.keep) if self.settings.normalize else gates

    def penalty_coefficients(self) -> np.ndarray:
        """λ·w_g for open gates and 0 for pruned ones: the loss adds Σ coefficient_g·f(gate g)."""
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
    def _prune(self, gates: np.ndarray) -> list[int]:
        """GOLD-NAS' pruning step, n0 times over: every open gate scoring ≤ xi_min falls (weakest
        first, the scores recomputed after each fall, since a node's sum shrinks with it), then the
        weakest open gate if it scores ≤ xi_max. A gate falls only if the network stays valid
        without it (else the next weakest is tried); the groups it leaves dead fall with it.
        Returns the positions the thresholds pruned, in order (dead children not included)."""
        pruned: list[int] = []
        for _ in range(self.settings.n0):
            while (i := self._weakest_removable(gates, self.settings.xi_min)) is not None:
                self._remove(i, pruned)
            i = self._weakest_removable(gates, self.settings.xi_max)
            if i is not None:
                self._remove(i, pruned)
        return pruned

    def _weakest_removable(self, gates: np.ndarray, limit: float) -> int | None:
        scores = self.scores(gates)
        for i in np.argsort(scores, kind="stable"):
            if scores[i] > limit:
                return None
            if self.keep[i]:
                trial = self.keep.copy()
                trial[i] = False
                if self.space.is_valid(trial):
                    return int(i)
        return None

    def _remove(self, i: int, pruned: list[int]) -> None:
        trial = self.keep.copy()
        trial[i] = False
        self.keep = self.space.canonical(trial)
        pruned.append(i)

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
