"""H2SPG and HESSO: structured-sparsity optimizers over a SearchSpace, as `torch.optim.Optimizer`s.

H2SPG (digest §1.2): (1) `warmup_steps` base steps (SGD with momentum, or Adam) while keeping an
exponential average of each group's redundancy score; (2) once, walk the groups from most redundant
down and accept one only if the network stays valid with it and all accepted ones removed, until
K = ⌊target_group_sparsity · groups⌋; (3) base step everywhere else, and on the accepted groups
x̃ = x - lr·(d + λ_g·x/‖x_g‖) with the half-space projection x_g ← 0 when ⟨x̃_g, x_g⟩ < ε‖x_g‖²
(d: the raw gradient with SGD, Adam's step direction m̂/(√v̂ + eps) with Adam). By default λ_g is
chosen every step so that the group is projected within `shrink_period` steps (NOTE: [Automatic λ]).
`finalize()` projects the accepted groups to exactly zero, warning (`GroupsNotZeroWarning`) about any
that training left far from zero. HESSO shrinks them linearly instead.
The group math is `asgnas_ir.backends.reference` (numpy); tests hold this file to it.

NOTE: [Group membership matrix] A group is a set of entries of a few tensors (whole tensors, rows,
input columns). At construction every group's entries become one row of a sparse CSR matrix
M (groups × entries of the concatenated tensors). Per step the tensors are concatenated once and
every per-group sum is one sparse-dense product M @ [x·g, x², g², |x|]; the way back (group →
entry) is one 1-D `index_select` per "layer" (an entry in two groups, a conv's row and its input
column, sits in two layers; disjoint groups have one). A fixed handful of ops
whatever the number of groups, tensors or channels, no Python loop over them in `step()`, and the
kernels stay vectorised on large models. Scores are computed during warm-up only; after selection
only the tensors of the redundant groups are read, and when each of those tensors lies wholly in
one group (erase mode) the update is three multi-tensor ops on the tensors themselves. On models of
`_lines_min_entries` or more entries whose groups are unions of whole rows/columns (the usual case),
the per-entry index is replaced by dense per-tensor reductions (`_lines.py`, NOTE: [Lines instead of
a membership matrix]; ResNet-18 prune step 14× → 7-8× SGD, warm-up 9.6× → 5.8×, BENCHMARKS.md); the
matrix is then built only for `zero_groups`, `finalize` and HESSO's bookkeeping.

NOTE: [Per-group scalars on the host] λ, the projection test and the scores are a few numbers per
group. On an accelerator they stay tensors (no host sync). On CPU with few groups they are plain
Python floats: after a forward/backward every torch or numpy kernel not run recently costs ~10 µs
(cold caches), so twenty tiny tensor ops cost more than the whole SGD step of a small model.

NOTE: [Automatic λ] The digest's λ (DHSPG: 1e-3 for SGD, clipped to [λ, 10λ]) is an absolute
penalty: its pull lr·λ per step is the same for a conv row of norm 0.1 and a whole layer of norm 5,
and it knows nothing of the base step's scale. On the bundled SuperResNet (digits, lr 0.05) no
selected group reached zero in 20 epochs and `finalize()` took test accuracy from 98 % to 11 %;
with Adam (whose step is lr·m̂/√v̂, O(lr) per entry whatever the gradient) none did for λ up to 10.
With `lmbda=None` (the default) λ_g is instead the smallest penalty under which the group's norm
falls by ‖x_g at selection‖/`shrink_period` this step, given the actual direction d of the base
optimizer, sideways part included (`reference.auto_lambda`). The norm then falls linearly, as in
HESSO, while the gradient still shapes the direction, and the half-space test (ε > 0) zeroes the
group at the latest `shrink_period` steps after selection, with SGD or Adam and whatever lr (and a
scheduler) is. An explicit `lmbda` restores DHSPG's rule.

NOTE: [Choices the digest leaves open]
- With SGD, redundant groups take the *raw* gradient (no momentum, no weight decay), as does λ's
  rule; DHSPG uses its momentum direction. Their momentum entries are never used again. With Adam
  they take Adam's own step (its moments keep updating), since a raw gradient step of size lr is
  out of scale with what Adam does to every other weight.
- An entry in several redundant groups (prune mode: a conv's rows and its input columns) takes
  the subgradient of f + Σ λ_g‖x_g‖ and is zero as soon as any of its groups is projected
  (`reference.group_half_space_step`); a redundant group wins over a kept group sharing an entry.
- DHSPG stops penalising once the target sparsity is reached; here the set is fixed at selection
  and penalised until it is zero, and zero groups stay zero.

NOTE: [Ranks] Under torch.distributed (DDP) the selection and the per-step projection decisions are
rank 0's, broadcast; the space and the scores are checked to agree (`distributed.py`, docs/distributed.md).
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.optim.adam import adam as _adam
from torch.optim.sgd import sgd as _sgd

from asgnas_ir.backends._groups import (
    GroupsNotZeroWarning,
    bind_groups,
    check_options,
    group_lines,
    host_auto_lambda,
    host_lambda,
    host_scores,
    not_zero_warning,
    num_selected,
    operators_holding,
    score_window,
    without_nested,
)
from asgnas_ir.backends.reference import hesso_ratio, select_redundant
from asgnas_ir.backends.torch._groups import (
    _auto_lambda,
    _GroupIndex,
    _lambda,
    _reciprocal,
    _resolve,
    _scores,
)
from asgnas_ir.backends.torch._lines import _LineIndex
from asgnas_ir.backends.torch.binding import live_tensors
from asgnas_ir.backends.torch.distributed import RankSync, space_fingerprint, unwrap
from asgnas_ir.errors import AsgnasError
from asgnas_ir.passes.analysis.search_space import SearchSpace


class H2SPG(torch.optim.Optimizer):
    """Hierarchical half-space projected gradient over the groups of `space`.

    Args:
        model: the live model whose parameters `space.param_sources` names, or its
            DistributedDataParallel / DataParallel wrapper (unwrapped: the space names the bare model's paths).
        space: from `ai.search_space(ai.compile(model, x), mode=...)`.
        lr, momentum, weight_decay, nesterov: the base SGD step (read from `param_groups` each step,
            so LR schedulers work); `base="adam"` uses Adam with `betas`, `adam_eps`.
        target_group_sparsity: K = ⌊target · number of groups⌋ groups are selected.
        warmup_steps: base steps before selection (scores are averaged over them).
        ema: ω of the score average s ← ω·s + (1-ω)·score (only the last ⌈ln 1e-6 / ln ω⌉ warm-up
            steps are scored: earlier ones would weigh less than 1e-6 in the average).
        epsilon: half-space projection threshold ε (> 0 with the automatic λ: the projection is what
            makes a group exactly zero).
        lmbda: None (default): the automatic per-group λ that zeroes every selected group within
            `shrink_period` steps of selection (NOTE: [Automatic λ]). A number: DHSPG's rule
            (`reference.select_lambda`) with `lmbda_amplify` and `hat_lmbda_coeff`; it zeroes nothing
            unless λ suits the groups' norms and lr (the ones at selection are in `start_norms`).
        shrink_period: steps from selection to zero for the automatic λ (and HESSO's shrink).
        foreach: use torch's multi-tensor base step (also on CPU, where torch.optim.SGD defaults to a loop).
        sync_group: the ranks training this model together. "auto": the default process group when
            torch.distributed is initialised (else none); None: no syncing; or a ProcessGroup. With a
            group, construction, `step`, `finalize` before selection and `load_state_dict` are
            collectives (every rank calls them, as with DDP itself): the selection and the projection
            decisions are rank 0's, and the space and scores must agree (NOTE: [Ranks]).

    Raises:
        AsgnasError: an option is out of range, or a param of `space` is not in `model`.
        DistributedStateError: the ranks were given different search spaces, or train different weights.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        space: SearchSpace,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        target_group_sparsity: float = 0.5,
        warmup_steps: int = 100,
        ema: float = 0.9,
        epsilon: float = 0.5,
        lmbda: float | None = None,
        *,
        shrink_period: int = 100,
        lmbda_amplify: float = 2.0,
        hat_lmbda_coeff: float = 10.0,
        base: str = "sgd",
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        foreach: bool = True,
        sync_group: Any = "auto",
    ) -> None:
        model = unwrap(model)
        check_options(
            type(self).__name__, lr=lr, momentum=momentum, weight_decay=weight_decay,
            target_group_sparsity=target_group_sparsity, warmup_steps=warmup_steps, ema=ema, epsilon=epsilon,
            **({} if lmbda is None else {"lmbda": lmbda}),
        )
        if shrink_period < 0:
            raise AsgnasError(f"{type(self).__name__}: shrink_period must be ≥ 0, got {shrink_period}")
        if lmbda is None and epsilon <= 0 and type(self)._uses_projection:
            raise AsgnasError(
                f"{type(self).__name__}: epsilon must be > 0 with the automatic λ (lmbda=None): the half-space "
                "projection is what makes a group exactly zero; give epsilon=0.5 (the default), or an explicit lmbda"
            )
        if base not in ("sgd", "adam"):
            raise AsgnasError(f"{type(self).__name__}: base must be 'sgd' or 'adam', got '{base}'")
        params = [p for p in model.parameters() if p.requires_grad]
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov, "betas": betas, "eps": adam_eps}
        super().__init__(params, defaults)
        self.space = space
        self.target_group_sparsity = target_group_sparsity
        self.warmup_steps, self.ema, self.epsilon = warmup_steps, ema, epsilon
        self.lmbda, self.lmbda_amplify, self.hat_lmbda_coeff = lmbda, lmbda_amplify, hat_lmbda_coeff
        self.shrink_period = shrink_period
        self.base, self.foreach = base, foreach
        self._tensors, self._entries, self._lines = self._bind(model, space)
        self._all_index: _GroupIndex | None = None
        self._all_lines = self._line_index(list(range(len(space.groups))))
        self._sizes = torch.tensor([sum(len(e) for e in group.values()) for group in self._entries], dtype=torch.float64)
        self._inside = operators_holding(space, self._entries)
        self._red: _GroupIndex | None = None
        self._red_lines: _LineIndex | None = None
        self._flat_sgd: bool = False
        self._momentum: torch.Tensor | None = None
        self._score_window = score_window(ema)
        self._base_params: list[torch.Tensor] = list(params)
        self._steps = 0
        self._selected_at: int | None = None
        self._ema = torch.zeros(len(space.groups), dtype=torch.float64)
        self.redundant_groups: list[int] = []
        self.start_norms: list[float] = []  # ‖x_g‖ of each sorted redundant group at selection
        self._start: torch.Tensor | None = None
        self._sync = RankSync.resolve(sync_group, type(self).__name__)
        if self._sync is not None:
            self._sync.same_everywhere(
                [len(space.groups), space_fingerprint(space), warmup_steps, num_selected(target_group_sparsity, len(space.groups))],
                "search space (groups, its digest, warm-up steps, groups to select)",
                "build the search space from the same model and mode on every rank, with the same optimizer options",
            )

    @staticmethod
    def _bind(model: torch.nn.Module, space: SearchSpace) -> tuple[list[torch.Tensor], list[dict[int, np.ndarray]], list[Any]]:
        """Unique live tensors of the non-stat slices and, per group, its entries in each (by position)
        and its lines (`group_lines`)."""
        live = live_tensors(model)
        tensors, entries = bind_groups(space, lambda param, source: _resolve(model, live, param, source), lambda t: t.shape)
        if len({t.device for t in tensors}) > 1:
            raise AsgnasError("the search space's params lie on several devices; move the model to one device first")
        position = {id(t): i for i, t in enumerate(tensors)}
        lines = group_lines(space, lambda param, source: position[id(_resolve(model, live, param, source))], lambda i: tensors[i].shape)
        return tensors, entries, lines

    # Below this many entries the membership matrix's fixed handful of ops beats per-tensor reductions.
    _lines_min_entries = 1 << 20

    def _line_index(self, ids: list[int]) -> _LineIndex | None:
        """The `_LineIndex` of groups `ids` when they are unions of lines and the model is large enough."""
        tensors = {i for gid in ids for i in self._entries[gid]}
        if not ids or sum(self._tensors[i].numel() for i in tensors) < self._lines_min_entries:
            return None
        return _LineIndex.build(self._tensors, [self._lines[gid] for gid in ids])

    @property
    def _all(self) -> _GroupIndex:
        """The membership matrix of every group (built on first use: the line index serves the warm-up)."""
        if self._all_index is None:
            self._all_index = self._index(list(range(len(self.space.groups))), self._tensors)
        return self._all_index

    def _lines_on_device(self, lines: _LineIndex | None, ids: list[int]) -> _LineIndex | None:
        """`lines`, rebuilt if the model moved to another device since it was built."""
        if lines is not None and lines.plans and lines.plans[0].tensor.device != lines.member.device:
            lines = _LineIndex.build(self._tensors, [self._lines[gid] for gid in ids])
        return lines

    def _index(self, ids: list[int], tensors: list[torch.Tensor]) -> _GroupIndex:
        """The `_GroupIndex` of groups `ids` over `tensors` (which hold all their entries)."""
        offsets = dict(zip((id(t) for t in tensors), np.cumsum([0] + [t.numel() for t in tensors]).tolist(), strict=False))
        entries = []
        for gid in ids:
            parts = [e + offsets[id(self._tensors[i])] for i, e in sorted(self._entries[gid].items())]
            entries.append(np.concatenate(parts) if parts else np.zeros(0, np.int64))
        return _GroupIndex(tensors, entries)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Only the model's own group (torch adds it at construction); the group math assumes one."""
        if self.param_groups:
            raise AsgnasError(f"{type(self).__name__} keeps one parameter group (the model's); it cannot add another")
        super().add_param_group(param_group)

    @property
    def selected(self) -> bool:
        """Whether the redundant groups have been chosen (warm-up is over)."""
        return self._selected_at is not None

    @property
    def scores(self) -> np.ndarray:
        """The averaged redundancy score of every group (frozen at selection)."""
        return self._ema.detach().cpu().numpy().copy()

    @torch.no_grad()
    def zero_groups(self) -> list[int]:
        """Groups whose non-stat slices are all exactly zero (what `ai.subnet` should remove).

        In `both` mode a channel group lying wholly inside a zero operator group is zero too; it is
        left out, since removing the operator removes it (and listing every channel of a layer is refused).
        """
        index = self._all
        if not index.groups:
            return []
        l1 = index.matrix @ index.flat()[0].abs().unsqueeze(1)
        return without_nested(torch.nonzero(l1.squeeze(1) == 0).flatten().tolist(), self._inside)

    @torch.no_grad()
    def finalize(self) -> list[int]:
        """Project every redundant group to exactly zero (selecting first if warm-up has not ended;
        under torch.distributed that selection is a collective: call `finalize` on every rank).

        Training normally leaves them zero already. Any whose norm is above `NEAR_ZERO` (1e-3) of its
        norm at selection is forced to zero after a `GroupsNotZeroWarning` naming it with that ratio:
        the weights it still carries are lost, and accuracy with them. Make that warning an error
        (`warnings.simplefilter("error", GroupsNotZeroWarning)`) to keep the model as trained instead.

        Returns:
            The redundant group ids, sorted.
        """
        since = None if self._selected_at is None else self._steps - self._selected_at
        if not self.selected:
            self._select()
        red = self._red
        if red is not None:
            message = not_zero_warning(type(self).__name__, sorted(self.redundant_groups), self._redundant_norms(), self.start_norms, since)
            if message is not None:
                warnings.warn(message, GroupsNotZeroWarning, stacklevel=3)  # the caller, past torch.no_grad's wrapper
            x = red.flat()[0]
            red.write(torch.zeros_like(x) if red.covers_all else x.masked_fill(red.member, 0))
        return sorted(self.redundant_groups)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimisation step (warm-up, then selection once, then the sparsifying phase)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self.selected:
            if self.space.groups and self._steps >= self.warmup_steps - self._score_window:
                self._update_scores()
            if self._steps >= self.warmup_steps:  # warmup_steps == 0: select before the first update
                self._select()
        if self.selected:
            self._sparsify_step()
        else:
            self._base_step()
        self._steps += 1
        if not self.selected and self._steps >= self.warmup_steps:
            self._select()
        return loss

    def _update_scores(self) -> None:
        self._all_lines = lines = self._lines_on_device(self._all_lines, list(range(len(self.space.groups))))
        if lines is not None:
            dot, xx, gg, l1 = lines.group_sums(lines.line_sums(l1=True))
            scores = _scores(dot, xx, gg, l1, self._sizes.to(dot.device))
        else:
            index = self._all
            xg = index.flat(grads=True)
            dot, xx, gg, l1 = index.group_sums(index.products(xg[0], xg[1]))
            if index.host:
                scores = torch.tensor(host_scores(dot, xx, gg, l1, index.sizes_list), dtype=torch.float64)
            else:
                scores = _scores(dot, xx, gg, l1, index.sizes)
        if self._ema.device != scores.device:
            self._ema = self._ema.to(scores.device)
        self._ema.mul_(self.ema).add_(scores, alpha=1.0 - self.ema)

    def _select(self) -> None:
        k = num_selected(self.target_group_sparsity, len(self.space.groups))
        if self._sync is None:
            self.redundant_groups = select_redundant(self.scores, k, self.space.is_valid)
        else:  # every rank keeps rank 0's scores; rank 0 alone walks the validity checks
            self._ema = self._sync.scores(self._ema)
            mine = select_redundant(self.scores, k, self.space.is_valid) if self._sync.rank == 0 else None
            self.redundant_groups = self._sync.choice(mine, k)
        self._selected_at = self._steps
        self._build_redundant()
        self._set_start(self._redundant_norms())

    _skip_full_tensors = True  # a tensor wholly in redundant groups takes no base step
    _uses_projection = True  # H2SPG zeroes groups by the half-space test (HESSO: by its shrink)

    def _redundant_norms(self) -> list[float]:
        """‖x_g‖ of each redundant group, in sorted id order."""
        red = self._red
        if red is None:
            return []
        x = red.flat()[0]
        xx = red.group_sums((x * x).unsqueeze(0))
        return [math.sqrt(v) for v in (xx[0] if red.host else xx[0].tolist())]

    def _set_start(self, norms: list[float]) -> None:
        self.start_norms = [float(n) for n in norms]
        device = self._red.device if self._red is not None else torch.device("cpu")
        self._start = torch.tensor(self.start_norms, dtype=torch.float64, device=device)

    def _penalties(self, dot: Any, xx: Any, gg: Any, lr: float, host: bool) -> Any:
        """λ_g of the redundant groups from their ⟨x,d⟩, ‖x‖², ‖d‖² (host: Python lists, else float64 tensors)."""
        if self.lmbda is not None:
            rule = (self.lmbda, self.lmbda_amplify, self.hat_lmbda_coeff)
            if host:
                return host_lambda(dot, [math.sqrt(v) for v in xx], gg, *rule)
            return _lambda(dot, xx.sqrt(), gg, *rule)
        if host:
            return host_auto_lambda(dot, xx, gg, self.start_norms, lr, self.shrink_period)
        assert self._start is not None
        if self._start.device != dot.device:
            self._start = self._start.to(dot.device)
        return _auto_lambda(dot, xx, gg, self._start, lr, self.shrink_period)

    def _build_redundant(self) -> None:
        ids = sorted(self.redundant_groups)
        params = self.param_groups[0]["params"]
        if not ids:
            self._red, self._red_lines, self._base_params = None, None, list(params)
            return
        used = sorted({i for gid in ids for i in self._entries[gid]})
        tensors = [self._tensors[i] for i in used]
        red = self._red = self._index(ids, tensors)
        # whole tensors, one group each (erase mode): the multi-tensor update is cheaper still; with Adam the
        # half-space step starts from Adam's step of every tensor (`_adam_direction`), through the matrix
        lines = self._red_lines = self._line_index(ids) if red.tensor_group is None and not self._adam_half_space else None
        if lines is not None:
            self._flat_sgd, self._momentum = False, None
            skip = {id(t) for t in lines.full} if self._skip_full_tensors else set()
            self._base_params = [p for p in params if id(p) not in skip]
            return
        param_ids = {id(p) for p in params}
        # NOTE: the SGD step of every tensor the redundant groups touch runs on the concatenation,
        # merged with the half-space step, its momentum buffers viewing one flat buffer
        self._flat_sgd = (
            self._skip_full_tensors and self.base == "sgd" and red.tensor_group is None
            and all(id(t) in param_ids for t in red.tensors)
        )
        take_base = not self._skip_full_tensors or self._adam_half_space
        skip = set() if take_base else {id(t) for t in (red.tensors if self._flat_sgd else red.full)}
        self._base_params = [p for p in params if id(p) not in skip]
        self._momentum = None
        if self._flat_sgd and self.param_groups[0]["momentum"]:
            self._momentum = torch.cat([
                self.state[t].get("momentum_buffer", torch.zeros_like(t)).reshape(-1) for t in red.tensors
            ])
            for t, chunk in zip(red.tensors, self._momentum.split(red.numels), strict=True):
                self.state[t]["momentum_buffer"] = chunk.view(t.shape)

    @property
    def _adam_half_space(self) -> bool:
        return self.base == "adam" and self._uses_projection

    def _adam_direction(self, red: _GroupIndex, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Adam's step on every parameter, then (x before it, d, x after it) over the redundant tensors,
        d = (before - after)/lr: Adam's own direction, moments and weight decay included (zero when lr is 0)."""
        buffer = red.flat()
        before = buffer[0].clone()
        self._base_step()
        after = red.flat()[0].clone()
        if lr > 0:
            torch.sub(before, after, out=buffer[1]).div_(lr)
        else:
            buffer[1].zero_()
        buffer[0].copy_(before)
        return buffer[0], buffer[1], after

    def _flat_sgd_step(self, x: torch.Tensor, g: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """torch.optim.SGD's update of the concatenated tensors (a missing gradient counts as zero)."""
        group = self.param_groups[0]
        direction = g.add(x, alpha=group["weight_decay"]) if group["weight_decay"] else g
        if group["momentum"]:
            if self._momentum is None:  # momentum switched on after selection
                self._build_redundant()
            assert self._momentum is not None
            self._momentum.mul_(group["momentum"]).add_(direction)
            direction = direction.add(self._momentum, alpha=group["momentum"]) if group["nesterov"] else self._momentum
        return torch.add(x, direction, alpha=-group["lr"], out=out) if out is not None else torch.add(x, direction, alpha=-group["lr"])

    def _sparsify_step(self) -> None:
        red = self._red
        if red is None:
            self._base_step()
            return
        if self._red_lines is not None:
            self._lines_step()
            return
        lr, eps = self.param_groups[0]["lr"], self.epsilon
        after: torch.Tensor | None = None
        if self._adam_half_space:
            x, g, after = self._adam_direction(red, lr)
        else:
            xg = red.flat(grads=True)
            x, g = xg[0], xg[1]
        dot, xx, gg = red.group_sums(red.products(x, g, 3))
        lam = self._penalties(dot, xx, gg, lr, red.host)
        if red.host:
            norm = [math.sqrt(v) for v in xx]
            coef = [lm / n if n > 0 else 0.0 for lm, n in zip(lam, norm, strict=True)]
        else:
            norm = xx.sqrt()
            coef = lam * _reciprocal(norm)
        if not red.overlap:
            # disjoint groups: ⟨x̃_g, x_g⟩ = ‖x‖² - lr(⟨x,g⟩ + λ‖x‖), so the projection is known before the step
            if red.host:
                keep = [v > 0 and v - lr * (d + lm * n) >= eps * v for v, d, lm, n in zip(xx, dot, lam, norm, strict=True)]
                if self._sync is not None:
                    keep = self._sync.flags(keep)
                scale = [1.0 - lr * c if k else 0.0 for c, k in zip(coef, keep, strict=True)]
                if red.tensor_group is not None and after is None:
                    self._whole_tensor_step(red, red.tensor_group, keep, scale, lr)
                    return
                shift: Any = [-lr if k else 0.0 for k in keep]
            else:
                kept = ((xx - lr * (dot + lam * norm) >= eps * xx) & (xx > 0)).to(xx.dtype)
                if self._sync is not None:
                    kept = self._sync.from_root(kept)
                scale, shift = kept * (1.0 - lr * coef), kept * -lr
            new = torch.addcmul(red.to_entries(scale) * x, red.to_entries(shift), g)
        else:
            # x - lr·(g + c·x), in place in work rows (the same float operations, reordered exactly)
            work = red.work(4)
            new = red.to_entries(coef, out=work[0]).mul_(x).add_(g).mul_(-lr).add_(x)
            inner = red.group_sums(torch.mul(new, x, out=work[1]).unsqueeze(0))[0]
            if red.host:
                dropped: Any = [1.0 if v <= 0 or i < eps * v else 0.0 for i, v in zip(inner, xx, strict=True)]
            else:
                dropped = ((inner < eps * xx) | (xx == 0)).to(xx.dtype)
            if self._sync is not None:
                dropped = self._sync.from_root(dropped) if not red.host else [float(f) for f in self._sync.flags([d > 0 for d in dropped])]
            new.masked_fill_(red.to_entries(dropped, out=work[1]) > 0, 0.0)
        if after is not None:  # Adam has stepped every tensor already; its step stands off the groups
            red.write(new if red.covers_all else torch.where(red.member, new, after))
            return
        if self._flat_sgd:
            sgd = self._flat_sgd_step(x, g, out=red.work(4)[2] if red.overlap else None)
            red.write(torch.where(red.member, new, sgd, out=sgd) if red.overlap else torch.where(red.member, new, sgd))
            self._base_step()
            return
        self._base_step()
        if not red.covers_all:
            new = torch.where(red.member, new, red.flat()[0])
        red.write(new)

    def _lines_step(self) -> None:
        """The half-space step through the line index (NOTE: [Lines instead of a membership matrix] in `_lines.py`):
        the projection decisions first, from per-group sums, then one write of every redundant tensor."""
        lines = self._red_lines = self._lines_on_device(self._red_lines, sorted(self.redundant_groups))
        assert lines is not None
        lr, eps = self.param_groups[0]["lr"], self.epsilon
        line_rows = lines.line_sums()
        dot, xx, gg = lines.group_sums(line_rows)
        coef = self._penalties(dot, xx, gg, lr, host=False) * _reciprocal(xx.sqrt())
        line_coef = lines.to_lines(coef)
        # ⟨x̃_g, x_g⟩ = ‖x_g‖² - lr·⟨x_g, grad_g⟩ - lr·Σ_{e∈g} c_e·x_e²
        inner = xx - lr * dot - lr * lines.inner_terms(line_rows[1], line_coef)
        dropped = ((inner < eps * xx) | (xx == 0)).to(torch.float64)
        if self._sync is not None:
            dropped = self._sync.from_root(dropped)
        new = lines.half_space_values(line_coef, lines.to_lines(dropped) > 0, lr)
        self._base_step()
        lines.write(new)

    def _whole_tensor_step(self, red: _GroupIndex, groups: list[int], keep: list[bool], scale: list[float], lr: float) -> None:
        """The disjoint-group update when every tensor lies in one group: x ← scale_g·x - lr·grad, or 0."""
        kept = [i for i, gid in enumerate(groups) if keep[gid]]
        dropped = [t for i, t in enumerate(red.tensors) if not keep[groups[i]]]
        with_grad = [i for i in kept if red.tensors[i].grad is not None]
        if kept:
            torch._foreach_mul_([red.tensors[i] for i in kept], [scale[groups[i]] for i in kept])
        if with_grad:
            torch._foreach_add_([red.tensors[i] for i in with_grad], [red.tensors[i].grad for i in with_grad], alpha=-lr)
        if dropped:
            torch._foreach_zero_(dropped)
        self._base_step()

    def _base_step(self) -> None:
        group = self.param_groups[0]
        params = [p for p in self._base_params if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise AsgnasError(f"{type(self).__name__} does not support sparse gradients")
        if self.base == "sgd":
            bufs = [self.state[p].get("momentum_buffer") for p in params]
            _sgd(
                params, grads, bufs, foreach=self.foreach, weight_decay=group["weight_decay"], momentum=group["momentum"],
                lr=group["lr"], dampening=0.0, nesterov=group["nesterov"], maximize=False,
            )
            if group["momentum"]:
                for p, buf in zip(params, bufs, strict=True):
                    self.state[p]["momentum_buffer"] = buf
            return
        for p in params:
            if not self.state[p]:
                self.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        _adam(
            params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
            foreach=self.foreach, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
            eps=group["eps"], maximize=False,
        )

    def state_dict(self) -> dict[str, Any]:
        """The torch optimizer state plus phase, step count, averaged scores and the redundant set."""
        state = super().state_dict()
        state["h2spg"] = {
            "steps": self._steps,
            "selected_at": self._selected_at,
            "scores": self._ema.detach().cpu().clone(),
            "redundant_groups": list(self.redundant_groups),
            "start_norms": list(self.start_norms),
            "num_groups": len(self.space.groups),
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a `state_dict()` (same model structure and search space)."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("h2spg", None)
        if extra is None:
            raise AsgnasError(f"this state dict was not written by {type(self).__name__}.state_dict() (no 'h2spg' entry)")
        if extra["num_groups"] != len(self.space.groups):
            raise AsgnasError(
                f"the checkpoint has {extra['num_groups']} groups but this search space has {len(self.space.groups)}; "
                "build the space from the same model and mode"
            )
        super().load_state_dict(state_dict)
        self._steps, self._selected_at = int(extra["steps"]), extra["selected_at"]
        self._ema = torch.as_tensor(extra["scores"], dtype=torch.float64).clone()
        self.redundant_groups = [int(g) for g in extra["redundant_groups"]]
        if self._sync is not None:
            chosen = np.asarray(sorted(self.redundant_groups), np.int64).tobytes()
            self._sync.same_everywhere(
                [self._steps, -1 if self._selected_at is None else int(self._selected_at), zlib.crc32(chosen)],
                "loaded optimizer state (steps, selection step, digest of the redundant groups)",
                "load the same checkpoint on every rank",
            )
        if self.selected:
            self._build_redundant()
            # a checkpoint from before `start_norms` existed: the shrink starts from today's norms
            start = extra.get("start_norms")
            self._set_start(list(start) if start is not None and len(start) == len(self.redundant_groups) else self._redundant_norms())
        else:
            self._red, self._red_lines, self._flat_sgd = None, None, False
            self._base_params = list(self.param_groups[0]["params"])


class HESSO(H2SPG):
    """H2SPG's warm-up and selection, then a linear shrink of the redundant groups to exactly zero.

    After selection every parameter takes the base step, then the redundant groups' entries are
    multiplied by `reference.hesso_ratio(n, 0, shrink_period)` at the n-th step after selection:
    their magnitude follows hesso_scale (1 → 0 over `shrink_period` steps) and they are exactly
    zero from the `shrink_period`-th step on (held at zero afterwards). No λ, no ε.

    Args:
        shrink_period: steps from selection to zero (default 100). Other args as H2SPG.
    """

    def __init__(self, model: torch.nn.Module, space: SearchSpace, *args: Any, shrink_period: int = 100, **kwargs: Any) -> None:
        super().__init__(model, space, *args, shrink_period=shrink_period, **kwargs)

    _skip_full_tensors = False  # HESSO steps every parameter
    _uses_projection = False

    def _sparsify_step(self) -> None:
        self._base_step()
        red = self._red
        if red is None or self._selected_at is None:
            return
        ratio = hesso_ratio(self._steps + 1 - self._selected_at, 0, self.shrink_period)
        if ratio == 1.0:
            return
        if red.covers_all:
            torch._foreach_mul_([t.detach() for t in red.tensors], ratio)
            return
        if self._red_lines is not None:
            self._red_lines = self._lines_on_device(self._red_lines, sorted(self.redundant_groups))
            assert self._red_lines is not None
            self._red_lines.scale_members(ratio)
            return
        # Tensor by tensor, in place: temporaries the size of one tensor are recycled by the
        # allocator, where ones the size of the whole model were fresh, page-faulting memory each step.
        for tensor, member in zip(red.tensors, self._member_masks(red), strict=True):
            if member is None:
                tensor.mul_(ratio)
            elif member is not False:
                tensor.copy_(torch.where(member, tensor * ratio, tensor))

    def _member_masks(self, red: _GroupIndex) -> list[Any]:
        """Per tensor of `red`, its redundant entries as a mask (None: the whole tensor; False: none).
        Rebuilt when the index is re-placed (the model moved device)."""
        if getattr(self, "_masks_key", None) is not red.member:
            masks: list[Any] = []
            for tensor, member in zip(red.tensors, red.member.split(red.numels), strict=True):
                masks.append(None if bool(member.all()) else member.view(tensor.shape) if bool(member.any()) else False)
            self._masks_key, self._masks = red.member, masks
        return self._masks
