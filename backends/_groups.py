"""Framework-free group bookkeeping shared by the torch and TensorFlow optimizers.

Where each group's entries lie in the live variables (flat, row-major positions), the per-group
scalar math on the host (`reference.redundancy_scores` and `reference.select_lambda` from per-group
sums), and the few numbers every H2SPG derives from its options. Nothing here imports a framework:
a backend passes callbacks that resolve a param to its live variable and read that variable's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from asgnas_ir.errors import AsgnasError
from asgnas_ir.passes.analysis.search_space import SearchSpace

MAGNITUDE_EPS = 1e-6
# Warm-up steps whose weight in the final score average would be below this are not scored.
SCORE_WEIGHT_CUTOFF = 1e-6
# `finalize()` calls a selected group "already zero" below this fraction of its norm at selection.
NEAR_ZERO = 1e-3


class GroupsNotZeroWarning(UserWarning):
    """`finalize()` had to force selected groups to zero that training had not made (near) zero.

    Forcing such groups removes weights the network still uses, so accuracy can fall sharply.
    `warnings.simplefilter("error", GroupsNotZeroWarning)` turns it into an exception raised before
    anything is zeroed, which leaves the model as trained.
    """

V = TypeVar("V")


def entries(shape: Sequence[int], axis: int, indices: Sequence[int]) -> np.ndarray:
    """Flat positions in a tensor of `shape` of the entries at `indices` along `axis` (row-major order)."""
    shape = tuple(int(d) for d in shape)
    if not shape:
        return np.zeros(1, np.int64)
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    rows = np.asarray(indices, np.int64)
    positions = (np.arange(outer)[:, None, None] * shape[axis] + rows[None, :, None]) * inner + np.arange(inner)[None, None, :]
    return positions.ravel()


def bind_groups(
    space: SearchSpace, resolve: Callable[[str, str], V], shape_of: Callable[[V], Sequence[int]]
) -> tuple[list[V], list[dict[int, np.ndarray]]]:
    """The unique live variables of the groups' non-stat slices and, per group, its entries in each.

    Args:
        space: the search space.
        resolve: (IR param name, source path) → the live variable; raises when there is none.
        shape_of: a live variable's shape.

    Returns:
        (variables in first-use order, per group {position in that list: sorted unique flat entries}).

    Raises:
        AsgnasError: a slice does not fit its variable (the space was built from another model).
    """
    variables: list[V] = []
    position: dict[int, int] = {}
    per_group: list[dict[int, np.ndarray]] = []
    for group in space.groups:
        parts: dict[int, list[np.ndarray]] = {}
        for s in group.slices:
            if s.kind == "stat":
                continue
            source = space.param_sources.get(s.param, s.param)
            variable = resolve(s.param, source)
            shape = check_fits(s, source, shape_of(variable))
            if id(variable) not in position:
                position[id(variable)] = len(variables)
                variables.append(variable)
            parts.setdefault(position[id(variable)], []).append(entries(shape, s.axis, s.indices))
        per_group.append({i: _sorted_unique(chunks) for i, chunks in parts.items()})
    return variables, per_group


def check_fits(s: Any, source: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The live variable's shape, after checking that slice `s` of the space fits it.

    Raises:
        AsgnasError: the slice's axis or an index lies outside the variable (the space was built from another model).
    """
    shape = tuple(int(d) for d in shape)
    top = max(s.indices, default=-1)
    if shape and (s.axis >= len(shape) or top >= shape[s.axis]):
        raise AsgnasError(
            f"search-space param '{s.param}' (source '{source}') has shape {shape} in the model, "
            f"too small for index {top} on axis {s.axis}; was the space built from another model?"
        )
    return shape


def _sorted_unique(chunks: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct values of `chunks` (one slice's positions are already sorted and distinct)."""
    if len(chunks) == 1 and (len(chunks[0]) < 2 or bool((np.diff(chunks[0]) > 0).all())):
        return chunks[0]
    values = np.sort(np.concatenate(chunks), kind="stable")
    keep = np.ones(len(values), bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def group_lines(
    space: SearchSpace, position: Callable[[str, str], int], shape_of: Callable[[int], Sequence[int]]
) -> list[dict[int, tuple[int, np.ndarray]] | None]:
    """Each group as whole "lines": per variable, one axis and the indices along it (every entry at those indices).

    A group is a union of slices, and a slice is whole lines of one axis. When a group touches each
    variable along one axis only, its lines are disjoint and its sums are sums of per-line sums, which
    two sparse products over chunks of the flat buffer compute (`backends.torch._flat`).

    Args:
        space: the search space.
        position: (IR param name, source path) → the variable's position in `bind_groups`' list.
        shape_of: a position → that variable's shape.

    Returns:
        Per group {position: (axis, sorted unique indices)}, or None for a group that holds two axes of
        one variable (a conv's rows and its columns) or a 0-d variable: its lines would share entries.
    """
    result: list[dict[int, tuple[int, np.ndarray]] | None] = []
    for group in space.groups:
        parts: dict[int, tuple[int, list[np.ndarray]]] = {}
        ok = True
        for s in group.slices:
            if s.kind == "stat":
                continue
            pos = position(s.param, space.param_sources.get(s.param, s.param))
            axis, chunks = parts.setdefault(pos, (s.axis, []))
            if axis != s.axis or not len(shape_of(pos)):
                ok = False
                break
            chunks.append(np.asarray(s.indices, np.int64))
        result.append({pos: (axis, np.unique(np.concatenate(chunks))) for pos, (axis, chunks) in parts.items()} if ok else None)
    return result


def operators_holding(space: SearchSpace, per_group: list[dict[int, np.ndarray]]) -> dict[int, list[int]]:
    """Channel group → the operator groups that hold every one of its entries (`both` mode)."""
    operators = [g.id for g in space.groups if g.kind == "operator"]
    inside: dict[int, list[int]] = {}
    for group in space.groups:
        if group.kind != "channel" or not operators:
            continue
        mine = per_group[group.id]
        holders = [
            op for op in operators
            if all(i in per_group[op] and np.isin(e, per_group[op][i]).all() for i, e in mine.items())
        ]
        if holders:
            inside[group.id] = holders
    return inside


def without_nested(zero: list[int], inside: dict[int, list[int]]) -> list[int]:
    """`zero` less the channel groups lying inside a zero operator group (removing the operator removes them)."""
    zero_set = set(zero)
    return [gid for gid in zero if not zero_set.intersection(inside.get(gid, ()))]


def score_window(ema: float) -> int:
    """How many final warm-up steps weigh at least `SCORE_WEIGHT_CUTOFF` in the score average.

    Step t of T contributes (1-ω)·ω^(T-1-t) to the average, so only the last steps matter.
    """
    return 1 if ema == 0 else math.ceil(math.log(SCORE_WEIGHT_CUTOFF) / math.log(ema))


def num_selected(target_group_sparsity: float, groups: int) -> int:
    """K = ⌊target · groups⌋ (with a tolerance for fractions like 2/3 that are not exact in binary)."""
    return math.floor(target_group_sparsity * groups + 1e-9)


def check_options(owner: str, **options: Any) -> None:
    """Raise an AsgnasError naming `owner` for the first H2SPG option out of range."""
    rules = {
        "lr": (lambda v: v >= 0, "≥ 0"),
        "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "weight_decay": (lambda v: v >= 0, "≥ 0"),
        "target_group_sparsity": (lambda v: 0 <= v <= 1, "in [0, 1]"),
        "warmup_steps": (lambda v: v >= 0, "≥ 0"),
        "ema": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "epsilon": (lambda v: v >= 0, "≥ 0"),
        "lmbda": (lambda v: v >= 0, "≥ 0"),
    }
    for name, value in options.items():
        ok, bound = rules[name]
        if not ok(value):
            raise AsgnasError(f"{owner}: {name} must be {bound}, got {value}")


def not_zero_warning(owner: str, groups: Sequence[int], norms: Sequence[float], start: Sequence[float], steps_since: int | None) -> str | None:
    """The `GroupsNotZeroWarning` text for the selected `groups` whose norm is above `NEAR_ZERO` of their norm at
    selection (`start`), or None when every one is (near) zero."""
    far = [(g, n, s) for g, n, s in zip(groups, norms, start, strict=True) if n > NEAR_ZERO * s]
    if not far:
        return None
    shown = ", ".join(f"{g} ({n / s:.1%} of its norm at selection)" if s > 0 else f"{g} (norm {n:.3g})" for g, n, s in far[:20])
    more = f" and {len(far) - 20} more" if len(far) > 20 else ""
    when = "before the groups were selected (warm-up not over)" if steps_since is None else f"{steps_since} steps after selection"
    return (
        f"{owner}.finalize(): {len(far)} of the {len(groups)} selected groups are not zero yet, {when}; they are "
        f"being forced to zero, which removes weights the network still uses and can cost much accuracy. "
        f"Groups: {shown}{more}. With the automatic λ (lmbda=None) and HESSO a group is zero `shrink_period` steps "
        f"after selection: train that long (or lower it). To keep the model untouched instead, warnings.simplefilter('error', GroupsNotZeroWarning) raises this before "
        f"anything is zeroed, and training can then go on."
    )
