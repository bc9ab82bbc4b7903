"""search-space: the groups a searcher may zero.

`mode="prune"` gives the channel groups of the dependency graph. Erasing mode (operator and branch
removal structures with their hierarchy) and `mode="both"` build on the same groups; until they
land the pass says so instead of returning a partial space.
"""

from __future__ import annotations

from typing import Literal

from asgnas_ir.passes.analysis.dependency_graph import ChannelGroup
from pydantic import BaseModel

from asgnas_ir.errors import AsgnasError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.pass_manager import Pass, analysis, register_pass

Mode = Literal["prune", "erase", "both"]
MODES = ("prune", "erase", "both")


class SearchSpace(BaseModel):
    """Removable groups of one graph. Group ids index `groups`."""

    mode: Mode
    groups: list[ChannelGroup]
    graph_fingerprint: str = ""

    def group(self, group_id: int) -> ChannelGroup:
        if not 0 <= group_id < len(self.groups):
            raise AsgnasError(
                f"group id {group_id} does not exist: this {self.mode}-mode search space has "
                f"{len(self.groups)} groups (ids 0..{len(self.groups) - 1})"
            )
        return self.groups[group_id]


@register_pass
class SearchSpacePass(Pass):
    name = "search-space"
    description = "Removable groups: channel groups (prune), operator removal structures (erase), or both."
    requires = ("dependency-graph",)

    def run(self, graph: Graph, mode: Mode = "prune") -> SearchSpace:
        if mode not in MODES:
            raise AsgnasError(f"search-space mode must be one of {', '.join(MODES)}, not '{mode}'")
        if mode != "prune":
            raise AsgnasError(
                f"search-space mode '{mode}' (erasing operators and branches) is not available in this "
                "version yet; use mode='prune'"
            )
        deps = analysis("dependency-graph", graph)
        return SearchSpace(mode=mode, groups=deps.groups, graph_fingerprint=graph.fingerprint())
