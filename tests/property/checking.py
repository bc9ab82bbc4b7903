"""The assertion every property test of the whole loop makes about one drawn model.

`ai.check` must be ok. Two reports are not failures of the library, and are counted as hypothesis
events instead (see `--hypothesis-show-statistics`):
- an (almost) zero reference (max |ref| <= 1e-3): DESIGN's relative rule is vacuous there, so the
  difference is held to its value at 1e-3 instead;
- a degenerate report whose every output matches: the zeroed reference does not depend on its inputs.
  A drawn model can be like that on its own (an InstanceNorm branch under a global average pool gives
  a per-channel constant), and then check is right to refuse to call the comparison evidence; what
  the library must not do is offer a removal that cuts the trunk through shared params (issue 13,
  finding 8), and `assert_structures_own_their_params` asserts that on every erase space directly.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import event

import asgnas_ir as ai


def param_users(graph: ai.Graph) -> dict[str, set[str]]:
    users: dict[str, set[str]] = {}
    for node in graph.nodes:
        for param in node.params.values():
            if param:
                users.setdefault(param, set()).add(node.id)
    return users


def assert_structures_own_their_params(graph: ai.Graph, space: ai.SearchSpace, call: str) -> None:
    """No removal structure (operator group) owns a param that a node outside it also reads: zeroing the
    structure would change that node too (finding 8: a conv shared by the trunk and a branch). Slices of
    params that only nodes outside read are the consumers' input channels the removal cuts from a
    concat; those are the structure's to take."""
    users = param_users(graph)
    for group in space.groups:
        if group.kind != "operator":
            continue
        inside = set(group.nodes)
        for param in {s.param for s in group.slices}:
            readers = users.get(param, set())
            if not readers & inside:
                continue
            outside = readers - inside
            assert not outside, (
                f"erase group {group.id} (nodes {group.nodes}) zeroes '{param}', which {sorted(outside)} outside it "
                f"also read\nreproduce: {call}"
            )


def assert_check_ok(model: Any, inputs: Any, mode: str, fraction: float, seed: int, call: str,
                    *, removable: bool = False, frontend: str = "auto", target: str | None = None
                    ) -> ai.CheckReport | None:
    """`ai.check(model, inputs, mode=..., fraction=..., seed=...)` is ok (see the module docstring for the
    two reports that count as events); with `removable`, at least one group was removed. A model that
    `ai.compile` refuses with asgnas-ir's own error is an event too (returns None): the issue allows a
    refusal up front, naming the op and place, instead of handling a construct; so is a CodegenError of
    a target other than torch."""
    try:
        report = ai.check(model, inputs, mode=mode, fraction=fraction, seed=seed, frontend=frontend, target=target)
    except ai.CodegenError as refusal:
        if target in (None, "torch"):
            raise
        # another framework's limit (Keras has no dilated strided transposed conv) is only known to
        # the codegen of that target: as early as such a refusal can come
        event(f"refused by codegen-{target}: {str(refusal).splitlines()[0][:80]}")
        return None
    except ai.AsgnasError:
        try:
            ai.compile(copy.deepcopy(model), inputs, frontend=frontend)
        except ai.AsgnasError as refusal:
            event(f"refused by compile: {type(refusal).__name__}")
            assert str(refusal).strip(), f"empty refusal message\nreproduce: {call}"
            return None
        raise  # refused after compile accepted the model: too late to count as a refusal up front
    if mode != "prune":
        graph = ai.compile(copy.deepcopy(model), inputs, frontend=frontend)
        assert_structures_own_their_params(graph, ai.search_space(graph, mode=mode), call)
    shown = f"{report}\nreason: {getattr(report, 'reason', None)}\nreproduce: {call}"
    if report.max_ref <= 1e-3:
        event("degenerate output (max_ref <= 1e-3)")
        assert report.max_abs_diff <= 1e-7, shown
    elif not report.ok and report.max_abs_diff <= report.tolerance:
        event("degenerate selection: the zeroed reference does not depend on its inputs")
    else:
        assert report.ok, shown
    assert report.params_sub <= report.params_full and report.flops_sub <= report.flops_full, shown
    if removable:
        assert report.groups >= 1 and report.zeroed >= 1, f"nothing removed: {shown}"
        assert report.params_sub < report.params_full, shown
    event(f"zeroed {'none' if report.zeroed == 0 else 'some'} of {'no' if report.groups == 0 else 'some'} groups")
    return report
