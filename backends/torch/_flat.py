"""The parameters as views of one flat buffer, and the groups as two sparse stages over it.

NOTE: [A step in a constant number of kernels] On a GPU every ATen op is a kernel launch, so an
optimizer whose step loops over tensors or groups pays ~5 µs per op whatever the work: 50 ops per
tensor made H2SPG's step 24-37× SGD's on ResNets (issue 16). Here the step is a fixed sequence of
whole-buffer ops, the same for ResNet-18 and a 70-layer LLM:

- `FlatParams`: every trainable parameter (of the optimizer's dtype and device) is re-stored as a
  view of one buffer `x`, its gradient as a view of `grads` (autograd accumulates into a gradient
  that already exists, so the views stay in place across steps; `zero_grad` zeroes the buffer in one
  op). So an elementwise update of every parameter is one op, with no copy in or out and no memory
  beyond what SGD holds (the same bytes, one allocation). safetensors and torch.save handle the views.
- `GroupMap`: a group is a union of "lines" (the entries at some indices along one axis of a tensor,
  `backends._groups.group_lines`). Viewing a tensor as (A, L, B) around that axis, a line is A runs of
  B entries, one run in each of the A "rows" of length C = L·B. The buffer is cut into chunks of W
  entries, W a power of two dividing every such C, so a chunk never straddles a row. Then
  (stage 1) a sparse matrix R1 adds each chunk into its slot: the one line it lies in when B is a
  multiple of W (a conv's output row), or the block of the row "template" it occupies (a conv's
  input columns: the A rows fold onto one row of C entries); (stage 2) a sparse matrix R2 adds the
  W positions of every slot into the groups of their lines. Two sparse products give every group's
  sums of any per-entry quantities, and the transposes broadcast per-group values back to entries
  (an entry's value is the sum over its lines: a row's and a column's). The index is per chunk and
  per slot position, not per entry: 8/W bytes per entry for R1, ~0.1 % of the parameters for R2.
- A space whose groups are not unions of lines, or a tensor grouped along three axes, falls back
  to W = 1 with R1 the plain group × entry membership matrix and no stage 2 (correct, but the index
  is then per entry).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

# Tensors start at multiples of this many entries: aligned for vectorised and tensor-core kernels.
ALIGN = 64
# Chunk widths tried, largest first; the one with the smallest index wins.
CHUNK_WIDTHS = (64, 32, 16, 8, 4, 2, 1)


class FlatParams:
    """`params` re-stored as views of one buffer (`x`), their gradients as views of another (`grads`).

    Invariants: `x[offsets[i] : offsets[i] + numel]` is `params[i]`'s storage while `attached()`; the
    padding between tensors is zero in both buffers and never written by an update that keeps it zero
    (updates multiply by or add zero-gradient terms there).
    """

    def __init__(self, params: list[torch.Tensor], trainable: int | None = None) -> None:
        self.params = params
        self.trainable = len(params) if trainable is None else trainable
        self.shapes = [p.shape for p in params]
        self.numels = [p.numel() for p in params]
        offsets, cursor = [], 0
        for n in self.numels:
            offsets.append(cursor)
            cursor += -(-n // ALIGN) * ALIGN
        self.offsets, self.total = offsets, max(cursor, ALIGN)
        self.dtype, self.device = params[0].dtype, params[0].device
        self.x = torch.zeros(self.total, dtype=self.dtype, device=self.device)
        self.grads = torch.zeros(self.total, dtype=self.dtype, device=self.device)
        self.x_views = self._views(self.x)
        self.grad_views = self._views(self.grads)
        with torch.no_grad():
            for i, (p, view) in enumerate(zip(params, self.x_views, strict=True)):
                view.copy_(p)
                p.data = view
                if i < self.trainable:
                    if p.grad is not None:
                        self.grad_views[i].copy_(p.grad)
                    p.grad = self.grad_views[i]
        self._ptrs = [p.data_ptr() for p in params]

    def _views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        return [buffer[o : o + n].view(s) for o, n, s in zip(self.offsets, self.numels, self.shapes, strict=True)]

    def views_of(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views of another flat buffer with this layout (optimizer state)."""
        return self._views(buffer)

    def attached(self) -> bool:
        """Whether every parameter still lives in `x` (`model.to()`, `.half()` or `load_state_dict(assign=True)` re-store them)."""
        return [p.data_ptr() for p in self.params] == self._ptrs

    def gather_grads(self) -> None:
        """Bring gradients autograd made outside `grads` (after `model.zero_grad()` set them to None) into it,
        one multi-tensor copy, and point `.grad` back at the views. Python checks only when all are in place."""
        foreign = [i for i, p in enumerate(self.params[: self.trainable]) if p.grad is not self.grad_views[i]]
        if not foreign:
            return
        present = [i for i in foreign if self.params[i].grad is not None]
        if len(present) < len(foreign):
            torch._foreach_zero_([self.grad_views[i] for i in foreign if i not in set(present)])
        if present:
            grads = [self.params[i].grad for i in present]
            if any(g.is_sparse for g in grads):
                raise TypeError("sparse gradients")
            torch._foreach_copy_([self.grad_views[i] for i in present], grads)
        for i in foreign:
            self.params[i].grad = self.grad_views[i]


@dataclass
class _Axis:
    """One grouped axis of one tensor, the tensor viewed as (outer, length, inner) around it."""

    tensor: int
    axis: int
    outer: int
    length: int
    inner: int
    base: int = 0  # first line id of this axis
    role: str = ""  # "row" (chunk → line) or "template" (chunk → block)
    block_base: int = 0
    blocks: int = 0


@dataclass
class GroupMap:
    """Per-group sums of per-entry quantities and the way back (NOTE: [A step in a constant number of kernels]).

    `group_sums(P)` for P (total, k) returns (groups, k); `to_entries(V)` for V (groups, j) returns
    (total, j), each entry the sum over its groups. `chunk` is W; `r2 is None` for the fallback, where
    R1 maps entries straight to groups.
    """

    chunk: int
    groups: int
    total: int
    r1: torch.Tensor
    r1t: torch.Tensor
    r2: torch.Tensor | None
    _r2t: torch.Tensor | None
    slots: int
    index_bytes: int = 0
    inverse_sizes: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    _stages: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _views: dict[tuple[str, int], list[torch.Tensor]] = field(default_factory=dict)
    _ones: torch.Tensor | None = None  # the values of every 0/1 matrix here: one array, sliced

    @property
    def stage_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b, _ in self._stages.values())

    def group_sums(self, per_entry: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Per-group sums (groups, k) of per-entry columns (total, k), plus `bias` (groups, k) when given.

        The stage between the two products lives in a kept buffer (small: slots × W × k), so on a CPU no
        fresh memory is touched; `out` may be a kept (groups, k) buffer too. Four ATen ops."""
        k = per_entry.shape[1]
        chunks = per_entry.view(self.total // self.chunk, self.chunk * k)
        if self.r2 is None:
            return torch.mm(self.r1, chunks, out=out) if bias is None else torch.addmm(bias, self.r1, chunks, out=out)
        stage, stage_rows = self._stage("sums", k)
        torch.mm(self.r1, chunks, out=stage)
        return torch.mm(self.r2, stage_rows, out=out) if bias is None else torch.addmm(bias, self.r2, stage_rows, out=out)

    @property
    def held_tensors(self) -> list[torch.Tensor]:
        """The index and kept stage tensors this map holds (for memory accounting; shared ones counted once by the caller)."""
        index = [m for m in (self.r1, self.r1t, self.r2, self._r2t) if m is not None]
        parts = [t for m in index for t in (m.crow_indices(), m.col_indices(), m.values())]
        return parts + [b for b, _ in self._stages.values()]

    def drop_stages(self) -> None:
        """Free the kept stage buffers (they come back at the next use)."""
        self._stages.clear()
        self._views.clear()

    @property
    def r2t(self) -> torch.Tensor | None:
        if self._r2t is None and self.r2 is not None:
            self._r2t = _shared(_transpose(self.r2), self._ones)
        return self._r2t

    def to_entries(self, per_group: torch.Tensor) -> torch.Tensor:
        """Per-entry (total, j) sums over each entry's groups of per-group values (groups, j). Three ATen ops."""
        j = per_group.shape[1]
        if self.r2t is not None:
            buffer, positions = self._stage("spread", j)
            torch.mm(self.r2t, per_group, out=positions)
            per_group = buffer
        return torch.mm(self.r1t, per_group).view(self.total, j)

    def column_sum(self, chunks: torch.Tensor, column: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """`column` (a (groups, 1) view of a kept buffer) = each group's sum of one per-entry quantity, given as
        `chunks`, its (total/W, W) view (+ `bias`, (groups, 1)). Two ATen ops through one kept stage of slots·W."""
        if self.r2 is None:
            torch.mm(self.r1, chunks, out=column)
            if bias is not None:
                column.add_(bias)
            return
        stage, positions = self._stage("sum", 1)
        torch.mm(self.r1, chunks, out=stage)
        if bias is None:
            torch.mm(self.r2, positions, out=column)
        else:
            torch.addmm(bias, self.r2, positions, out=column)

    def entries_of(self, values: torch.Tensor, column: int, chunks: torch.Tensor) -> None:
        """Write into `chunks` (the (total/W, W) view of a flat buffer) each entry's sum over its groups of
        column `column` of `values` (groups, j). With column 0, the slot stage of every column is refreshed."""
        if self.r2t is None:
            torch.mm(self.r1t, values[:, column : column + 1], out=chunks)
            return
        stage, columns = self._value_stages(values.shape[1])
        if column == 0:
            torch.mm(self.r2t, values, out=stage)
        torch.mm(self.r1t, columns[column], out=chunks)

    def _value_stages(self, j: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Kept (slots·W, j) stage and each column's (slots, W) view."""
        key = ("values", j)
        views = self._views.get(key)
        if views is None:
            buffer = self._pool(j).view(self.slots * self.chunk, j)
            views = self._views[key] = [buffer, *(buffer[:, i].as_strided((self.slots, self.chunk), (self.chunk * j, j)) for i in range(j))]
        return views[0], views[1:]

    def _pool(self, k: int) -> torch.Tensor:
        """The first slots·W·k floats of the one kept stage buffer. Every stage lives from one product to the next
        within a call, never two at once, so they share it (grown, and every cached view dropped, when too small)."""
        size = self.slots * self.chunk * k
        pool = self._stages.get(("pool", 0))
        if pool is None or pool[0].numel() < size:
            self._stages.clear()
            self._views.clear()
            buffer = torch.empty(size, dtype=self.r1.dtype, device=self.r1.device)
            self._stages[("pool", 0)] = (buffer, buffer)
            return buffer
        return pool[0][:size]

    def _stage(self, purpose: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A kept (slots, W·k) buffer and its (slots·W, k) view."""
        key = (purpose, k)
        found = self._views.get(key)
        if found is None:
            buffer = self._pool(k).view(self.slots, self.chunk * k)
            found = self._views[key] = [buffer, buffer.view(self.slots * self.chunk, k)]
        return found[0], found[1]

    def subset(self, ids: list[int]) -> GroupMap:
        """The map of groups `ids` only (in that order): other groups' lines get no value back."""
        target = self.r2 if self.r2 is not None else self.r1
        rows = _shared(_rows(target, ids), self._ones)
        if self.r2 is not None:
            return GroupMap(self.chunk, len(ids), self.total, self.r1, self.r1t, rows, None, self.slots,
                            self.index_bytes, self.inverse_sizes[ids], _ones=self._ones)
        return GroupMap(self.chunk, len(ids), self.total, rows, _shared(_transpose(rows), self._ones), None, None, self.slots,
                        self.index_bytes, self.inverse_sizes[ids], _ones=self._ones)

    def to(self, device: torch.device, dtype: torch.dtype) -> GroupMap:
        """This map on `device` with `dtype` values, its matrices sharing one array of ones."""
        matrices = [m for m in (self.r1, self.r1t, self.r2, self._r2t) if m is not None]
        ones = torch.ones(max((m.values().numel() for m in matrices), default=0), dtype=dtype, device=device)

        def move(matrix: torch.Tensor | None) -> torch.Tensor | None:
            return None if matrix is None else _shared(matrix.to(device=device), ones)

        return GroupMap(self.chunk, self.groups, self.total, move(self.r1), move(self.r1t), move(self.r2), move(self._r2t),
                        self.slots, self.index_bytes, self.inverse_sizes.to(device=device, dtype=dtype), _ones=ones)


def build_group_map(
    flat: FlatParams,
    positions: list[int],
    lines: list[dict[int, tuple[int, np.ndarray]] | None],
    entries: Callable[[], list[dict[int, np.ndarray]]],
    dtype: torch.dtype,
) -> GroupMap:
    """The `GroupMap` of the groups over `flat`'s buffer.

    Args:
        flat: the buffer layout.
        positions: per searched tensor (the index used by `lines`/`entries`), its index in `flat.params`.
        lines: per group {searched tensor: (axis, indices)} (`backends._groups.group_lines`), None when not lines.
        entries: per group {searched tensor: flat entries in that tensor} (`backends._groups.bind_groups`), called
            only for the fallback (it is a per-entry list).
        dtype: the dtype of the sums (float32 for half-precision parameters).
    """
    if all(g is not None for g in lines):
        sizes = [sum(len(idx) * math.prod(flat.shapes[positions[t]]) // max(flat.shapes[positions[t]][axis], 1)
                     for t, (axis, idx) in g.items()) for g in lines if g is not None]
        for width in _widths(flat, positions, lines):
            plan = _plan(flat, positions, lines, width)
            if plan is not None:
                return _structured(flat, positions, lines, width, plan, dtype, _inverse(sizes, dtype))
    found = entries()
    return _entry_level(flat, positions, found, dtype, _inverse([sum(len(e) for e in g.values()) for g in found], dtype))


def _inverse(sizes: list[int], dtype: torch.dtype) -> torch.Tensor:
    """1/size per group (0 for an empty group: its mean |x| counts as 0)."""
    return torch.tensor([1.0 / n if n else 0.0 for n in sizes], dtype=dtype)


def _axes(flat: FlatParams, positions: list[int], lines: list[dict[int, tuple[int, np.ndarray]] | None]) -> dict[int, list[_Axis]]:
    """Per flat tensor, its grouped axes."""
    seen: dict[int, dict[int, _Axis]] = {}
    for group in lines:
        assert group is not None
        for searched, (axis, _) in group.items():
            t = positions[searched]
            shape = tuple(flat.shapes[t]) or (1,)
            if axis not in seen.setdefault(t, {}):
                seen[t][axis] = _Axis(t, axis, math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))
    return {t: [axes[a] for a in sorted(axes)] for t, axes in seen.items()}


def _widths(flat: FlatParams, positions: list[int], lines: list[dict[int, tuple[int, np.ndarray]] | None]) -> list[int]:
    """Chunk widths to try, by the index memory they would need (smallest first)."""
    axes = _axes(flat, positions, lines)
    costs = []
    for width in CHUNK_WIDTHS:
        chunks = flat.total // width
        rows = sum(a.length for t in axes.values() for a in t if a.outer == 1 and a.inner % width == 0)
        costs.append((2 * chunks + rows * width, -width, width))
    return [w for _, _, w in sorted(costs)]


def _plan(flat: FlatParams, positions: list[int], lines: list[dict[int, tuple[int, np.ndarray]] | None], width: int) -> dict[int, list[_Axis]] | None:
    """Each grouped axis as a row or a template axis at chunk width `width`, or None when one does not fit."""
    axes = _axes(flat, positions, lines)
    for mine in axes.values():
        if len(mine) > 2:
            return None
        rows = [a for a in mine if a.outer == 1 and a.inner % width == 0]
        row = rows[0] if rows else None
        rest = [a for a in mine if a is not row]
        if len(rest) > 1:
            return None
        for a in rest:
            if a.outer > 1 and (a.length * a.inner) % width:
                return None
            a.role = "template"
        if row is not None:
            row.role = "row"
    return axes


def _structured(
    flat: FlatParams, positions: list[int], lines: list[dict[int, tuple[int, np.ndarray]] | None],
    width: int, plan: dict[int, list[_Axis]], dtype: torch.dtype, inverse_sizes: torch.Tensor,
) -> GroupMap:
    chunks = flat.total // width
    line_count = 0
    slot_count = 0
    for t in sorted(plan):
        for a in plan[t]:
            a.base, line_count = line_count, line_count + a.length
            if a.role == "row":
                a.block_base, slot_count = slot_count, slot_count + a.length
    for t in sorted(plan):
        for a in plan[t]:
            if a.role == "template":
                span = a.length * a.inner if a.outer > 1 else -(-flat.numels[t] // width) * width
                a.blocks = span // width
                a.block_base, slot_count = slot_count, slot_count + a.blocks
    # stage 1: chunk → its row slot and its template block
    r1_rows, r1_cols = [], []
    # slot positions → line ids
    pos_slot, pos_line = [], []
    for t, mine in plan.items():
        first = flat.offsets[t] // width
        count = -(-flat.numels[t] // width)
        local = np.arange(count, dtype=np.int64)
        for a in mine:
            if a.role == "row":
                r1_rows.append(a.block_base + (local * width) // a.inner)
                r1_cols.append(first + local)
                slot = np.repeat(a.block_base + np.arange(a.length, dtype=np.int64), width)
                pos_slot.append(slot * width + np.tile(np.arange(width, dtype=np.int64), a.length))
                pos_line.append(np.repeat(a.base + np.arange(a.length, dtype=np.int64), width))
            else:
                r1_rows.append(a.block_base + local % a.blocks)
                r1_cols.append(first + local)
                template = np.arange(a.blocks * width, dtype=np.int64)
                real = template < (a.length * a.inner if a.outer > 1 else flat.numels[t])
                pos_slot.append(a.block_base * width + template[real])
                pos_line.append(a.base + template[real] // a.inner)
    r1 = _csr(np.concatenate(r1_rows), np.concatenate(r1_cols), (slot_count, chunks), dtype)
    positions_of_line = _group_by(np.concatenate(pos_line), np.concatenate(pos_slot), line_count)
    g_rows, g_cols = [], []
    for gid, group in enumerate(lines):
        assert group is not None
        for searched, (axis, indices) in group.items():
            a = next(a for a in plan[positions[searched]] if a.axis == axis)
            for line in a.base + np.asarray(indices, np.int64):
                cols = positions_of_line[line]
                g_rows.append(np.full(len(cols), gid, np.int64))
                g_cols.append(cols)
    r2 = _csr(
        np.concatenate(g_rows) if g_rows else np.zeros(0, np.int64), np.concatenate(g_cols) if g_cols else np.zeros(0, np.int64),
        (len(lines), slot_count * width), dtype,
    )
    index_bytes = _bytes(r1) * 2 + _bytes(r2)
    return GroupMap(width, len(lines), flat.total, r1, _transpose(r1), r2, None, slot_count, index_bytes, inverse_sizes)


def _entry_level(flat: FlatParams, positions: list[int], entries: list[dict[int, np.ndarray]], dtype: torch.dtype, inverse_sizes: torch.Tensor) -> GroupMap:
    rows, cols = [], []
    for gid, group in enumerate(entries):
        for searched, found in group.items():
            rows.append(np.full(len(found), gid, np.int64))
            cols.append(flat.offsets[positions[searched]] + np.asarray(found, np.int64))
    r1 = _csr(
        np.concatenate(rows) if rows else np.zeros(0, np.int64), np.concatenate(cols) if cols else np.zeros(0, np.int64),
        (len(entries), flat.total), dtype,
    )
    return GroupMap(1, len(entries), flat.total, r1, _transpose(r1), None, None, len(entries), _bytes(r1) * 2, inverse_sizes)


def _group_by(keys: np.ndarray, values: np.ndarray, count: int) -> list[np.ndarray]:
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(count + 1))
    values = values[order]
    return [values[bounds[i] : bounds[i + 1]] for i in range(count)]


def _csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """A 0/1 sparse CSR matrix (duplicates summed: an entry listed twice in a group counts once in `bind_groups`)."""
    key = np.unique(rows * shape[1] + cols) if len(rows) else np.zeros(0, np.int64)
    rows, cols = key // max(shape[1], 1), key % max(shape[1], 1)
    index = torch.int32 if max(shape[1], len(cols)) < 2**31 - 1 else torch.int64
    crow = np.zeros(shape[0] + 1, np.int64)
    np.add.at(crow, rows + 1, 1)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(
            torch.as_tensor(np.cumsum(crow), dtype=index), torch.as_tensor(cols, dtype=index),
            torch.ones(len(cols), dtype=dtype), shape, device=device,
        )


def _shared(matrix: torch.Tensor, ones: torch.Tensor | None) -> torch.Tensor:
    """`matrix` (0/1) with its values a slice of `ones`: the index arrays are what it really holds."""
    if ones is None or ones.numel() < matrix.values().numel():
        return matrix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(
            matrix.crow_indices(), matrix.col_indices(), ones[: matrix.values().numel()], matrix.shape,
            device=ones.device,
        )


def _transpose(matrix: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return matrix.t().to_sparse_csr()


def _rows(matrix: torch.Tensor, ids: list[int]) -> torch.Tensor:
    crow, col = matrix.crow_indices().cpu().numpy(), matrix.col_indices().cpu().numpy()
    rows = [np.full(crow[i + 1] - crow[i], n, np.int64) for n, i in enumerate(ids)]
    cols = [col[crow[i] : crow[i + 1]] for i in ids]
    return _csr(
        np.concatenate(rows) if rows else np.zeros(0, np.int64), np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64),
        (len(ids), matrix.shape[1]), matrix.dtype, matrix.device,
    )


def _bytes(matrix: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in (matrix.crow_indices(), matrix.col_indices(), matrix.values()))
