"""Group bookkeeping for the torch optimizers: the groups' entries as torch tensors, and the per-group math
on tensors (the framework-free parts are in `asgnas_ir.backends._groups`).

See NOTE: [Group membership matrix] and NOTE: [Per-group scalars on the host] in `optim.py`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from asgnas_ir.backends._groups import MAGNITUDE_EPS
from asgnas_ir.errors import AsgnasError


class _GroupIndex:
    """The groups' entries in the concatenation of their tensors (NOTE: [Group membership matrix])."""

    host_max = 512  # at most this many groups on CPU: per-group scalars as Python floats

    def __init__(self, tensors: list[torch.Tensor], entries: list[np.ndarray]) -> None:
        self.tensors = tensors
        self.numels = [t.numel() for t in tensors]
        self.shapes = [t.shape for t in tensors]
        self.total, self.groups = sum(self.numels), len(entries)
        self._cols = np.concatenate(entries) if entries else np.zeros(0, np.int64)
        self._lengths = np.array([len(e) for e in entries], np.int64)
        counts = np.bincount(self._cols, minlength=self.total)
        self.covers_all, self.overlap = bool((counts > 0).all()), bool((counts > 1).any())
        # layer l: the l-th group of each entry (self.groups: none); disjoint groups need one layer
        owner = np.repeat(np.arange(self.groups), self._lengths)
        order = np.argsort(self._cols, kind="stable")
        cols, owner = self._cols[order], owner[order]
        rank = np.arange(len(cols)) - np.searchsorted(cols, cols)
        self._layers = []
        for layer in range(int(rank.max()) + 1 if len(rank) else 1):
            entry_group = np.full(self.total, self.groups, np.int64)
            entry_group[cols[rank == layer]] = owner[rank == layer]
            self._layers.append(entry_group)
        bounds = np.cumsum([0, *self.numels])
        self.full = [t for t, a, b in zip(tensors, bounds[:-1], bounds[1:], strict=True) if (counts[a:b] > 0).all()]
        # each tensor wholly in one group, none shared: the group of each tensor, else None
        owners = [self._layers[0][a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        whole = not self.overlap and all(len(o) and (o == o[0]).all() and o[0] < self.groups for o in owners)
        self.tensor_group: list[int] | None = [int(o[0]) for o in owners] if whole else None
        self._ptrs: list[int] = []
        self._flat_views: list[torch.Tensor] = []
        self._place(tensors[0].device if tensors else torch.device("cpu"))

    def _place(self, device: torch.device) -> None:
        self.device = device
        self.host = device.type == "cpu" and self.groups <= self.host_max
        index = torch.int32 if max(self.total, len(self._cols)) < 2**31 - 1 else torch.int64
        crow = torch.as_tensor(np.concatenate([[0], np.cumsum(self._lengths)]), dtype=index, device=device)
        cols = torch.as_tensor(self._cols, dtype=index, device=device)
        self.layers = [torch.as_tensor(layer, device=device) for layer in self._layers]
        self.member = torch.as_tensor(self._layers[0] < self.groups, device=device)
        self.sizes = torch.as_tensor(self._lengths, dtype=torch.float64, device=device)
        self.sizes_list = self._lengths.astype(float).tolist()
        dtype = self.tensors[0].dtype if self.tensors and self.tensors[0].dtype in (torch.float32, torch.float64) else torch.float32
        ones = torch.ones(len(self._cols), dtype=dtype, device=device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            self.matrix = torch.sparse_csr_tensor(crow, cols, ones, (self.groups, self.total))
        self._buffer = torch.empty(2, self.total, dtype=dtype, device=device)
        self._products = torch.empty(4, self.total, dtype=dtype, device=device)

    def _views(self) -> list[torch.Tensor]:
        """1-D views of the tensors, cached while their storage stays put (re-placed if the model moved)."""
        ptrs = [t.data_ptr() for t in self.tensors]
        if ptrs != self._ptrs:
            if self.tensors and self.tensors[0].device != self.device:
                self._place(self.tensors[0].device)
            self._flat_views = [t.detach().reshape(-1) for t in self.tensors]
            contiguous = all(t.is_contiguous() for t in self.tensors)
            self._ptrs = ptrs if contiguous else []
        return self._flat_views

    def flat(self, grads: bool = False) -> torch.Tensor:
        """Values (row 0) and, with `grads`, gradients (row 1; none counts as zero) of the tensors, concatenated."""
        torch.cat(self._views(), out=self._buffer[0])
        if grads:
            parts = [t.grad.reshape(-1) if t.grad is not None else t.new_zeros(t.numel()) for t in self.tensors]
            torch.cat(parts, out=self._buffer[1])
        return self._buffer

    def products(self, x: torch.Tensor, g: torch.Tensor, k: int = 4) -> torch.Tensor:
        """Per entry the first `k` of [x·g, x², g², |x|], one row each (rows, not columns: writing a
        strided column costs ~2.5× a contiguous row on 11M entries)."""
        out = self._products[:k]
        torch.mul(x, g, out=out[0])
        torch.mul(x, x, out=out[1])
        torch.mul(g, g, out=out[2])
        if k > 3:
            torch.abs(x, out=out[3])
        return out

    def to_entries(self, per_group: Any, out: torch.Tensor | None = None) -> torch.Tensor:
        """Per group (a Python list on the host, else a tensor) → per entry, summed over its groups (0 off them).

        With `out` (a `work` row) nothing of the concatenation's size is allocated."""
        if self.host:
            table = torch.tensor([*per_group, 0.0], dtype=self._buffer.dtype)
        else:
            table = torch.nn.functional.pad(per_group.to(self._buffer.dtype), (0, 1))
        if out is None:
            result = table.index_select(0, self.layers[0])
            for layer in self.layers[1:]:
                result += table.index_select(0, layer)
            return result
        torch.index_select(table, 0, self.layers[0], out=out)
        if len(self.layers) > 1:
            scratch = self.work(4)[3]
            for layer in self.layers[1:]:
                out.add_(torch.index_select(table, 0, layer, out=scratch))
        return out

    def work(self, rows: int) -> torch.Tensor:
        """Reusable (rows, total) scratch rows, allocated once.

        NOTE: a fresh temporary the size of a large model is fresh memory every step (the
        allocator hands such blocks back to the OS), and filling it page-faults: ~17 ms for
        ResNet-18's 11M entries, more than SGD's whole step. Row 3 is `to_entries`' own scratch."""
        work = getattr(self, "_work", None)
        if work is None or work.shape[0] < rows or work.device != self._buffer.device:
            work = self._work = torch.empty(max(rows, 4), self.total, dtype=self._buffer.dtype, device=self._buffer.device)
        return work

    def group_sums(self, rows: torch.Tensor) -> Any:
        """Per-entry rows (k × entries) → per group (k × groups): Python floats on the host, else float64.
        One sparse mat-vec per row, which costs the same as one (entries × k) product without the layout change."""
        sums = torch.stack([self.matrix @ row for row in rows])
        return sums.tolist() if self.host else sums.to(torch.float64)

    def write(self, flat: torch.Tensor) -> None:
        """Copy a concatenation back into the tensors."""
        views = self._views()
        if self._ptrs:  # the cached views are the tensors' own storage
            torch._foreach_copy_(views, list(flat.split(self.numels)))
        else:
            chunks = [c.view(s) for c, s in zip(flat.split(self.numels), self.shapes, strict=True)]
            torch._foreach_copy_([t.detach() for t in self.tensors], chunks)


def _resolve(model: torch.nn.Module, live: dict[str, torch.Tensor], param: str, source: str) -> torch.Tensor:
    tensor = live.get(source)
    if tensor is None:  # a tied weight is listed once by named_parameters(); its other path still resolves
        for getter in (model.get_parameter, model.get_buffer):
            try:
                return getter(source)
            except (AttributeError, TypeError):
                pass
        raise AsgnasError(
            f"search-space param '{param}' (source '{source}') is not a parameter or buffer of "
            f"{type(model).__name__}; build the search space from this model (ai.compile(model, x))"
        )
    return tensor


def _reciprocal(v: torch.Tensor) -> torch.Tensor:
    """1/v, and 0 where v is 0."""
    return v.reciprocal().nan_to_num_(posinf=0.0)


def _scores(dot: torch.Tensor, xx: torch.Tensor, gg: torch.Tensor, l1: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """`reference.redundancy_scores` from per-group ⟨x,g⟩, ‖x‖², ‖g‖², ‖x‖₁ and sizes."""
    cos = dot * _reciprocal((xx * gg).sqrt_())
    inv = (l1 * _reciprocal(sizes)).add_(MAGNITUDE_EPS).reciprocal_()
    parts = torch.stack([cos, inv])
    return (parts * _reciprocal(torch.linalg.vector_norm(parts, dim=1, keepdim=True))).sum(0).mul_(0.5)


def _lambda(dot: torch.Tensor, norm: torch.Tensor, gg: torch.Tensor, lmbda: float, amplify: float, hat: float) -> torch.Tensor:
    """`reference.select_lambda` (a growing group has ⟨x,g⟩ < 0, which implies ‖x‖ > 0)."""
    lo = -dot * _reciprocal(norm)
    hi = -gg * norm / dot
    chosen = (amplify * lo).clamp_(lmbda, lmbda * hat)
    chosen = torch.where(chosen >= hi, 0.5 * (lo + hi), chosen)
    return torch.where(dot < 0, chosen, lmbda)


def _auto_lambda(dot: torch.Tensor, xx: torch.Tensor, gg: torch.Tensor, start: torch.Tensor, lr: float, period: int) -> torch.Tensor:
    """`reference.auto_lambda` on per-group float64 tensors."""
    if lr <= 0:
        return torch.zeros_like(dot)
    a = xx.sqrt()
    radial = dot * _reciprocal(a)
    side_sq = (gg - radial * radial).clamp_(min=0.0)
    shrink = start / period if period > 0 else torch.full_like(a, math.inf)
    rest = torch.where(a > shrink, (a - shrink).clamp_(min=0.0).square_() - lr * lr * side_sq, torch.zeros_like(a))
    lam = ((a - rest.clamp_(min=0.0).sqrt_()) / lr - radial).clamp_(min=0.0)
    return torch.where(xx > 0, lam, torch.zeros_like(lam))
