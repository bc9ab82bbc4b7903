"""Architectures of a super-network: which operator groups (removal structures) it keeps.

Every searcher in this package (gold, ag, random) walks the same space: a boolean *keep-vector* with
one entry per operator group of an erase- or both-mode `SearchSpace`. Not every vector is a network:
the search space's rule (`SearchSpace.is_valid`) says which removals leave every output reachable.
Two vectors can also mean the same network, since removing a group can make others dead (a branch
whose only path to the output went through it). This module is the one place that knows both facts:

- `canonical` marks dead groups as removed too, so equal networks get equal keys and are never
  evaluated twice;
- `repair` turns any vector into a valid one by putting removed groups back, most wanted first
  (the AG generator and random sampling both produce invalid vectors now and then);
- `cost` is the exact FLOPs and params of the sub-network (the subnet pass run on the IR), cached.

Nothing here imports a framework: the IR does the work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from asgnas_ir.errors import AsgnasError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.passes.analysis.search_space import SearchSpace


@dataclass(frozen=True)
class ArchitectureCost:
    flops: int
    params: int


class ArchitectureSpace:
    """Keep-vectors over the operator groups of `space` (ids in `group_ids`, in space order)."""

    def __init__(self, graph: Graph, space: SearchSpace) -> None:
        self.graph = graph
        self.space = space
        self.group_ids = [g.id for g in space.groups if g.kind == "operator"]
        if not self.group_ids:
            raise AsgnasError(
                f"the {space.mode}-mode search space has no operator groups (removal structures) to search over; "
                "build it with mode='erase' (or 'both') from a super-network with removable branches"
            )
        self._position = {gid: i for i, gid in enumerate(self.group_ids)}
        self.group_flops = np.array([space.group(g).flops for g in self.group_ids], dtype=np.float64)
        self._costs: dict[str, ArchitectureCost] = {}
        self._full_cost: ArchitectureCost | None = None

    @property
    def size(self) -> int:
        return len(self.group_ids)

    def full(self) -> np.ndarray:
        return np.ones(self.size, dtype=bool)

    # keep-vectors <-> group ids -------------------------------------------------------------------
    def zero_groups(self, keep: Sequence[bool] | np.ndarray) -> list[int]:
        """The group ids a keep-vector removes (what `ai.subnet` and the optimizers take)."""
        keep = self._checked(keep)
        return [gid for gid, k in zip(self.group_ids, keep, strict=True) if not k]

    def from_zero_groups(self, zero_groups: Iterable[int]) -> np.ndarray:
        keep = self.full()
        for gid in zero_groups:
            if gid not in self._position:
                self.space.group(gid)  # raises the "does not exist" error for unknown ids
                raise AsgnasError(f"group {gid} is a channel group; architectures are made of operator groups only")
            keep[self._position[gid]] = False
        return keep

    def key(self, keep: Sequence[bool] | np.ndarray) -> str:
        """A short stable name of the network a keep-vector means (canonical form, as hex)."""
        bits = self.canonical(keep)
        return np.packbits(bits.astype(np.uint8)).tobytes().hex() + f"/{self.size}"

    # validity -------------------------------------------------------------------------------------
    def is_valid(self, keep: Sequence[bool] | np.ndarray) -> bool:
        return self.space.is_valid(self.zero_groups(keep))

    def canonical(self, keep: Sequence[bool] | np.ndarray) -> np.ndarray:
        """`keep` with every group that is dead once the removed ones are gone marked removed too."""
        keep = self._checked(keep).copy()
        segments = self.space.segment_graph
        if segments is None or keep.all():
            return keep
        removed = {self.space.group_segments[g] for g in self.zero_groups(keep)}
        dead = segments.dead_after(removed)
        for i, gid in enumerate(self.group_ids):
            if keep[i] and self.space.group_segments.get(gid) in dead:
                keep[i] = False
        return keep

    def repair(self, keep: Sequence[bool] | np.ndarray, priority: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """A valid canonical vector close to `keep`: removed groups come back, highest `priority` first
        (ties and `None` by position), until the network is valid. The full network is always valid."""
        keep = self._checked(keep).copy()
        if not self.is_valid(keep):
            removed = np.flatnonzero(~keep)
            if priority is not None:
                removed = removed[np.argsort(-np.asarray(priority, dtype=np.float64)[removed], kind="stable")]
            restored: list[int] = []
            for i in removed:
                keep[i] = True
                restored.append(int(i))
                if self.is_valid(keep):
                    break
            # Putting groups back one at a time can overshoot (a late one may make earlier ones
            # unnecessary): remove again, least wanted first, each one the network does without.
            again = self.space.greedy_valid(
                [self.group_ids[i] for i in reversed(restored[:-1])], removed=self.zero_groups(keep)
            )
            for gid in again:
                keep[self._position[gid]] = False
        return self.canonical(keep)

    def random(self, rng: np.random.Generator, keep_probability: float | None = None) -> np.ndarray:
        """A random valid architecture: each group kept with `keep_probability` (drawn uniformly in
        [0.2, 1) per sample when None, so sizes spread over the whole range), then repaired."""
        p = rng.uniform(0.2, 1.0) if keep_probability is None else keep_probability
        keep = rng.random(self.size) < p
        return self.repair(keep, priority=rng.random(self.size))

    # cost -----------------------------------------------------------------------------------------
    def cost(self, keep: Sequence[bool] | np.ndarray) -> ArchitectureCost:
        """Exact FLOPs (multiply-add = 2, batch of the IR's example input) and params of the sub-network."""
        import asgnas_ir as ai

        keep = self.canonical(keep)
        key = self.key(keep)
        if key not in self._costs:
            if keep.all():
                report = ai.cost(self.graph)
            else:
                report = ai.cost(ai.subnet(self.graph, self.space, self.zero_groups(keep)))
            self._costs[key] = ArchitectureCost(int(report.flops), int(report.params))
        return self._costs[key]

    def full_cost(self) -> ArchitectureCost:
        if self._full_cost is None:
            self._full_cost = self.cost(self.full())
        return self._full_cost

    def _checked(self, keep: Sequence[bool] | np.ndarray) -> np.ndarray:
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.size,):
            raise AsgnasError(
                f"an architecture here is a keep-vector of {self.size} operator groups, got shape {keep.shape}"
            )
        return keep
