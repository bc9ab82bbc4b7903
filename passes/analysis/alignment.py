"""Hardware-aligned widths: selections whose kept channel counts are multiples of `align`.

Tensor cores want widths in multiples of 8 (bf16) and vectorised CPU kernels in multiples of their
lane count; a pruned layer left with 37 channels runs slower than one with 40 (issue 18). A prune
selection is aligned when every *family* keeps a multiple of its unit of groups, or all of them:

- A family is the set of channel groups that touch exactly the same tensor axes (the 64 output
  channels of a conv, its norm and the next conv's input columns; the KV-head groups of one
  attention layer; the SwiGLU units of one MLP). Removing r of its n groups leaves every one of
  those axes narrower by r groups' worth of channels, so one count decides the layer's width.
- A group holds `width` channels on the narrowest of those axes (1 for a conv channel, the head
  dim times the query heads per KV head for a GQA group). The kept channel count is `kept * width`,
  a multiple of `align` when `kept` is a multiple of `unit = align / gcd(align, width)`. So a head
  of 64 channels aligns at any head count, a single channel needs `align` of them.

Operator groups (erase mode) remove whole layers and are never constrained.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from asgnas_ir.errors import SpecError
from asgnas_ir.passes.analysis.dependency_graph import ChannelGroup


@dataclass(frozen=True)
class Family:
    """Channel groups that narrow the same tensor axes together; see the module docstring."""

    groups: tuple[int, ...]
    width: int  # channels per group on the narrowest axis the family touches
    label: str  # the first axis it narrows, by the source's param path, for messages

    def unit(self, align: int) -> int:
        """The kept group count must be a multiple of this (or the whole family)."""
        return align // math.gcd(align, self.width)

    def allowed_removals(self, align: int) -> list[int]:
        """Removed counts that leave an aligned width, ascending; 0 (nothing removed) always."""
        n, unit = len(self.groups), self.unit(align)
        return [r for r in range(n) if r == 0 or (n - r) % unit == 0]


def _signature(group: ChannelGroup) -> tuple[tuple[str, int], ...]:
    return tuple(sorted({(s.param, s.axis) for s in group.slices}))


def families(groups: Sequence[ChannelGroup], param_sources: dict[str, str] | None = None) -> list[Family]:
    """The families of the channel groups (see the module docstring), in order of their first group."""
    by_signature: dict[tuple[tuple[str, int], ...], list[int]] = {}
    for gid, group in enumerate(groups):
        if group.kind == "channel" and group.slices:
            by_signature.setdefault(_signature(group), []).append(gid)
    result = []
    for signature, ids in by_signature.items():
        counts = {(s.param, s.axis): len(s.indices) for s in groups[ids[0]].slices}
        narrowest = min(counts.values())
        result.append(Family(tuple(ids), max(1, narrowest), _label(signature, param_sources or {})))
    return result


def _label(signature: tuple[tuple[str, int], ...], sources: dict[str, str]) -> str:
    """The layer a family narrows, as a user finds it: the output axes (axis 0) of its weights first."""
    names = [(sources.get(param, param), axis) for param, axis in signature]
    names.sort(key=lambda item: (item[1] != 0, not item[0].endswith("weight"), item[0]))
    shown = ", ".join(f"{name}[axis {axis}]" for name, axis in names[:2])
    return shown + (f" (+{len(names) - 2} more)" if len(names) > 2 else "")


def check_align(align: int) -> int:
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        raise SpecError(f"align must be a positive integer (1: no alignment, 8: multiples of 8), got {align!r}")
    return align


def misaligned(fams: Iterable[Family], zero_ids: Iterable[int], align: int) -> list[tuple[Family, int]]:
    """(family, kept group count) of each family the selection leaves at an unaligned width."""
    chosen = set(zero_ids)
    found = []
    for family in fams:
        removed = sum(1 for g in family.groups if g in chosen)
        if removed not in family.allowed_removals(align):
            found.append((family, len(family.groups) - removed))
    return found


def describe_misaligned(found: list[tuple[Family, int]], align: int) -> str:
    """One line per misaligned family: its layer, kept channels and the nearest aligned choices."""
    lines = []
    for family, kept in found[:5]:
        n, unit = len(family.groups), family.unit(align)
        below = kept - kept % unit
        above = min(below + unit, n)
        lines.append(
            f"{family.label}: keeps {kept * family.width} of {n * family.width} channels ({kept} of {n} groups), "
            f"not a multiple of {align}; keep {below * family.width} or {above * family.width}"
        )
    more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
    return "; ".join(lines) + more


def align_selection(
    fams: Sequence[Family],
    zero_ids: Sequence[int],
    align: int,
    redundancy: Sequence[float] | np.ndarray,
    is_valid: object = None,
) -> list[int]:
    """The selection moved to the nearest aligned count in each family.

    In each family the removed count r becomes the allowed count nearest to r (ties: fewer removed,
    the safe side for accuracy), so the total stays close to what the caller asked for. Groups are
    taken off the selection least redundant first and added most redundant first (`redundancy`: one
    score per group id, higher = more removable, as H2SPG's scores). `is_valid(ids) -> bool` (a
    SearchSpace's), when given, is kept: a family whose nearest count makes the selection invalid
    takes the next nearest, down to removing none of it (a subset of a valid prune selection is
    valid, so that always holds).
    """
    check_align(align)
    chosen = list(dict.fromkeys(int(g) for g in zero_ids))
    if align == 1:
        return chosen
    score = np.asarray(redundancy, dtype=np.float64)
    selected = set(chosen)
    for family in fams:
        mine = [g for g in family.groups if g in selected]
        allowed = family.allowed_removals(align)
        r = len(mine)
        if r in allowed:
            continue
        candidates = sorted(allowed, key=lambda a: (abs(a - r), a))
        for target in candidates:
            trial = _moved(selected, family, mine, target, score)
            if is_valid is None or is_valid(sorted(trial)):  # type: ignore[operator]
                selected = trial
                break
    return [g for g in chosen if g in selected] + sorted(selected.difference(chosen))


def _moved(selected: set[int], family: Family, mine: list[int], target: int, score: np.ndarray) -> set[int]:
    trial = set(selected)
    if target < len(mine):  # give back the least redundant of the family's chosen groups
        for g in sorted(mine, key=lambda g: (score[g], -g))[: len(mine) - target]:
            trial.discard(g)
    else:  # take the family's most redundant unchosen groups
        rest = [g for g in family.groups if g not in selected]
        trial.update(sorted(rest, key=lambda g: (-score[g], g))[: target - len(mine)])
    return trial
