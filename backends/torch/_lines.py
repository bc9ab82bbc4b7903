"""Per-group sums and the half-space update by dense per-tensor reductions ("lines"), for large models.

NOTE: [Lines instead of a membership matrix] In the usual search spaces a group holds each tensor
along one axis: a conv's output rows (its channel), or its input columns (the next layer's channel),
or the whole tensor. Such a group is a union of whole *lines* (every entry at one index along one
axis of one tensor), and lines of one group never share an entry. A group sum is then the sum of
its lines' sums, and a line sum is a dense reduction of the tensor: for a conv weight (O, I, k, k)
with both its rows and columns grouped, one pass reduces x·g over the k·k taps to an (O, I) matrix
whose row and column sums are every line's sum at once. The membership matrix (`_GroupIndex`)
instead reads an index (and a value) per entry and per group holding it: on ResNet-18 that made
H2SPG's step 14× an SGD step after selection, 7-8× with lines (BENCHMARKS.md, optimizer_overhead). The lines-to-groups map is a sparse
matrix over lines (thousands), not entries (millions).

The same structure gives the half-space update without a per-entry index. An entry's coefficient
Σ_{g∋e} λ_g/‖x_g‖ is the sum over its lines' coefficients (a row's plus a column's: an outer sum of
two vectors), and the projection test ⟨x̃_g, x_g⟩ = ‖x_g‖² - lr·⟨x_g, g_g⟩ - lr·Σ_{e∈g} c_e·x_e² is
known before the step: Σ_{e∈line} c_e·x_e² is the line's own coefficient times its ‖x‖², plus the
(O, I) matrix of x² times the other axis's coefficients. So the new values are written in one
pass, with per-entry factors that are small broadcast tensors. Same float operations as the
reference up to reordering.

Invariants: a tensor is grouped along at most two axes (else `build` returns None and the caller
keeps the membership matrix); lines of one group are disjoint (`backends._groups.group_lines`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class _Plan:
    """How one tensor is reduced: viewed as (p0, n_a, tail) or (p0, n_a, p1, n_b, tail)."""

    tensor: torch.Tensor
    view: tuple[int, ...]
    outer: tuple[int, ...]  # dims of the reduced (tail-less) view summed away
    blocks: list[slice]  # the lines of each grouped axis in the line vector, in axis order
    factor: tuple[tuple[int, ...], ...]  # per grouped axis, the shape that broadcasts its per-line vector

    @property
    def tail(self) -> int:
        return self.view[-1]


class _LineIndex:
    """Groups `ids` as unions of lines of `tensors` (NOTE: [Lines instead of a membership matrix])."""

    def __init__(self, plans: list[_Plan], groups: int, rows: np.ndarray, cols: np.ndarray, lines: int) -> None:
        self.plans, self.groups, self.lines = plans, groups, lines
        device = plans[0].tensor.device if plans else torch.device("cpu")
        values = np.ones(len(rows))
        self.matrix = _csr(rows, cols, values, (groups, lines), device)  # group × line
        self.transposed = _csr(cols, rows, values, (lines, groups), device)  # line × group
        member = np.bincount(cols, minlength=lines) > 0
        self.member = torch.as_tensor(member, device=device)
        self._ones: dict[int, torch.Tensor] = {}
        self._xx_pairs: list[torch.Tensor | None] = []
        # per plan: the members and the others as broadcastable 0/1 factors (None, None: every entry is a member)
        self._masks: list[tuple[torch.Tensor | None, torch.Tensor | None]] = []
        for plan in plans:
            parts = [self.member[b].view(shape) for b, shape in zip(plan.blocks, plan.factor, strict=True)]
            mask = parts[0] if len(parts) == 1 else parts[0] | parts[1]
            if bool(mask.all()):
                self._masks.append((None, None))
            else:
                self._masks.append((mask.to(plan.tensor.dtype), (~mask).to(plan.tensor.dtype)))
        self.full = [plan.tensor for plan, (inside, _) in zip(plans, self._masks, strict=True) if inside is None]

    @classmethod
    def build(cls, tensors: list[torch.Tensor], lines: list[dict[int, tuple[int, np.ndarray]] | None]) -> _LineIndex | None:
        """The index of the groups whose `lines` are given (positions into `tensors`); None when a
        group is not a union of disjoint lines or a tensor is grouped along more than two axes."""
        if any(g is None for g in lines):
            return None
        axes: dict[int, set[int]] = {}
        for group in lines:
            assert group is not None
            for pos, (axis, _) in group.items():
                axes.setdefault(pos, set()).add(axis)
        if any(len(a) > 2 for a in axes.values()):
            return None
        plans, offset, start = [], 0, {}
        for pos in sorted(axes):
            tensor = tensors[pos]
            if tensor.dtype not in (torch.float32, torch.float64) or not tensor.is_contiguous():
                return None
            shape, grouped = tuple(tensor.shape), sorted(axes[pos])
            blocks = []
            for axis in grouped:
                start[pos, axis] = offset
                blocks.append(slice(offset, offset + shape[axis]))
                offset += shape[axis]
            plans.append(_plan(tensor, shape, grouped, blocks))
        rows, cols = [], []
        for gid, group in enumerate(lines):
            assert group is not None
            for pos, (axis, indices) in group.items():
                rows.append(np.full(len(indices), gid, np.int64))
                cols.append(start[pos, axis] + indices)
        flat_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        flat_cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        return cls(plans, len(lines), flat_rows, flat_cols, offset)

    def line_sums(self, l1: bool = False) -> torch.Tensor:
        """(3 or 4, lines) float64: per line Σx·g, Σx², Σg² (and Σ|x| with `l1`); a missing gradient is zero.

        Keeps each two-axis tensor's matrix of Σx² (for `inner_terms`)."""
        out = torch.zeros(4 if l1 else 3, self.lines, dtype=torch.float64, device=self.member.device)
        self._xx_pairs = []
        for plan in self.plans:
            x = plan.tensor.detach().view(plan.view)
            g = plan.tensor.grad.view(plan.view) if plan.tensor.grad is not None else torch.zeros_like(x)
            pairs = [(x, g), (x, x), (g, g)] + ([(x, None)] if l1 else [])
            reduced = [self._reduce(plan, u, v) for u, v in pairs]
            self._xx_pairs.append(reduced[1].to(torch.float64) if len(plan.blocks) == 2 else None)
            for row, r in enumerate(reduced):
                if len(plan.blocks) == 1:
                    out[row, plan.blocks[0]] = r
                else:
                    out[row, plan.blocks[0]] = r.sum(1)
                    out[row, plan.blocks[1]] = r.sum(0)
        return out

    def _reduce(self, plan: _Plan, u: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        """Σ u·v (or Σ|u|) over everything but the grouped axes: (n_a,) or (n_a, n_b), in float64."""
        tail = plan.tail
        if tail > 1:
            u2 = u.reshape(-1, tail)
            if v is None:
                r = torch.mv(u2.abs(), self._ones_of(tail, u.dtype))
            else:  # a batched dot over the last axis (einsum lowers it to one fast kernel, no temporary)
                r = torch.einsum("ak,ak->a", u2, v.reshape(-1, tail))
        else:
            r = u.abs() if v is None else u * v
        r = r.view(plan.view[:-1])
        if plan.outer:
            r = r.sum(plan.outer)
        return r.reshape(plan.view[1]) if len(plan.blocks) == 1 else r.reshape(plan.view[1], plan.view[3])

    def _ones_of(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        ones = self._ones.get(n)
        if ones is None or ones.dtype != dtype:
            ones = self._ones[n] = torch.ones(n, dtype=dtype, device=self.member.device)
        return ones

    def group_sums(self, line_rows: torch.Tensor) -> torch.Tensor:
        """(k, lines) → (k, groups): each group's sum over its lines (float64)."""
        return (self.matrix @ line_rows.T.contiguous()).T

    def to_lines(self, per_group: torch.Tensor) -> torch.Tensor:
        """Per group → per line, summed over the groups holding the line (float64)."""
        return self.transposed @ per_group.to(torch.float64)

    def inner_terms(self, line_xx: torch.Tensor, line_coef: torch.Tensor) -> torch.Tensor:
        """Per group Σ_{e∈g} c_e·x_e², where an entry's c_e is the sum of its lines' `line_coef`
        (from the Σx² of the last `line_sums`)."""
        terms = line_coef * line_xx
        for plan, xx in zip(self.plans, self._xx_pairs, strict=True):
            if xx is not None:  # the other axis's coefficients, weighted by the shared entries' x²
                a, b = plan.blocks
                terms[a] += xx @ line_coef[b]
                terms[b] += xx.T @ line_coef[a]
        return self.group_sums(terms.unsqueeze(0))[0]

    def half_space_values(self, line_coef: torch.Tensor, line_dropped: torch.Tensor, lr: float) -> list[torch.Tensor]:
        """Per tensor, x - lr·(grad + c·x) on the member entries whose lines are all kept, 0 on the other
        member entries and on the non-member ones (read before the base step changes x)."""
        dtype = self.plans[0].tensor.dtype if self.plans else torch.float32
        coef_all, keep_all = line_coef.to(dtype), (~line_dropped).to(dtype)
        out = []
        for plan, (inside, _) in zip(self.plans, self._masks, strict=True):
            x = plan.tensor.detach().view(plan.view)
            coef = [coef_all[b].view(s) for b, s in zip(plan.blocks, plan.factor, strict=True)]
            keep = [keep_all[b].view(s) for b, s in zip(plan.blocks, plan.factor, strict=True)]
            # live: a member entry none of whose lines was projected; scale = live·(1 - lr·c)
            live = keep[0] if len(keep) == 1 else keep[0] * keep[1]
            if inside is not None:
                live = live * inside
            c = coef[0] if len(coef) == 1 else coef[0] + coef[1]
            new = x * torch.addcmul(live, c, live, value=-lr)
            if plan.tensor.grad is not None:
                new.addcmul_(plan.tensor.grad.view(plan.view), live, value=-lr)
            out.append(new)
        return out

    def write(self, values: list[torch.Tensor]) -> None:
        """Member entries ← `values` (from `half_space_values`); the others keep what the base step wrote."""
        for plan, (_, outside), new in zip(self.plans, self._masks, values, strict=True):
            x = plan.tensor.detach().view(plan.view)
            if outside is None:
                x.copy_(new)
            else:  # x·[not a member] + new, where new is 0 off the members (exact: x·1 + 0)
                torch.addcmul(new, x, outside, out=x)

    def scale_members(self, ratio: float) -> None:
        """Multiply the member entries by `ratio` (HESSO's shrink)."""
        for plan, (inside, _) in zip(self.plans, self._masks, strict=True):
            x = plan.tensor.detach().view(plan.view)
            if inside is None:
                x.mul_(ratio)
            else:  # 1 off the members, ratio on them
                x.mul_(inside * (ratio - 1.0) + 1.0)


def _plan(tensor: torch.Tensor, shape: tuple[int, ...], grouped: list[int], blocks: list[slice]) -> _Plan:
    if len(grouped) == 1:
        (a,) = grouped
        view = (math.prod(shape[:a]), shape[a], math.prod(shape[a + 1 :]))
        return _Plan(tensor, view, (0,) if view[0] > 1 else (), blocks, ((1, shape[a], 1),))
    a, b = grouped
    view = (math.prod(shape[:a]), shape[a], math.prod(shape[a + 1 : b]), shape[b], math.prod(shape[b + 1 :]))
    outer = tuple(d for d in (0, 2) if view[d] > 1)
    return _Plan(tensor, view, outer, blocks, ((1, shape[a], 1, 1, 1), (1, 1, 1, shape[b], 1)))


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, size: tuple[int, int], device: Any) -> torch.Tensor:
    order = np.lexsort((cols, rows))
    crow = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=size[0]))])
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(
            torch.as_tensor(crow, dtype=torch.int64, device=device),
            torch.as_tensor(cols[order], dtype=torch.int64, device=device),
            torch.as_tensor(values[order], dtype=torch.float64, device=device),
            size,
        )
