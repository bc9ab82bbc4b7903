"""H2SPG and HESSO: structured-sparsity optimizers over a SearchSpace, as `torch.optim.Optimizer`s.

H2SPG (digest §1.2): (1) `warmup_steps` base steps (SGD with momentum, or Adam) while keeping an
exponential average of each group's redundancy score; (2) once, walk the groups from most redundant
down and accept one only if the network stays valid with it and all accepted ones removed, until
K = ⌊target_group_sparsity · groups⌋ (`SearchSpace.greedy_valid`: incremental, well under a second
for 37k groups); (3) the base step everywhere, and on the accepted groups x̃ = x - lr·(d + λ_g·x/‖x_g‖)
with the half-space projection x_g ← 0 when ⟨x̃_g, x_g⟩ < ε‖x_g‖², d the base optimizer's direction
(SGD's momentum direction, weight decay included, or Adam's m̂/(√v̂ + eps)). By default λ_g is chosen
every step so that the group is projected within `shrink_period` steps (NOTE: [Automatic λ]).
`finalize()` projects the accepted groups to exactly zero, warning (`GroupsNotZeroWarning`) about any
that training left far from zero. HESSO shrinks them linearly instead.
The group math is `asgnas_ir.backends.reference` (numpy); tests hold this file to it.

Every step is a fixed sequence of whole-buffer ops over the parameters re-stored in one flat buffer,
whatever the number of tensors and groups (NOTE: [A step in a constant number of kernels] in `_flat.py`):
counted as SGD's foreach step is (5, the profiler's two records included), H2SPG's step after selection
dispatches 30 ATen ops with SGD, a scored warm-up step 26, an unscored one 4, HESSO's after selection 8,
and nothing in `step()` waits for the device except the selection itself.

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
- The redundant groups step along the base optimizer's direction d, as DHSPG does with its momentum:
  one direction for every entry is what lets the whole update be one pass over the buffer. (Until
  issue 16 they took the raw gradient; the automatic λ adapts to either, BENCHMARKS.md `optimizer_quality`.)
- An entry in several redundant groups (prune mode: a conv's rows and its input columns) takes
  the subgradient of f + Σ λ_g‖x_g‖ and is zero as soon as any of its groups is projected; each
  group's half-space test looks at its own penalised step (x_g - lr(d_g + λ_g x_g/‖x_g‖)), which is
  `reference.group_half_space_step` without the other groups' pull on the shared entries (that pull
  only shrinks the group faster, so the test errs towards keeping it one more step).
- DHSPG stops penalising once the target sparsity is reached; here the set is fixed at selection
  and penalised until it is zero, and zero groups stay zero.
- Gradients stay allocated between steps (`zero_grad` zeroes them in one op): parameters in the flat
  buffer always have a gradient, zero when a parameter took no part in the loss, so momentum keeps
  moving them as it would with `zero_grad(set_to_none=False)`.

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
    check_fits,
    check_options,
    group_lines,
    not_zero_warning,
    num_selected,
    operators_holding,
    score_window,
    without_nested,
)
from asgnas_ir.backends.reference import hesso_ratio, select_redundant
from asgnas_ir.backends.torch._flat import FlatParams, GroupMap, build_group_map
from asgnas_ir.backends.torch._groups import _lambda, _resolve, _scores
from asgnas_ir.backends.torch.binding import live_tensors
from asgnas_ir.backends.torch.distributed import RankSync, space_fingerprint, unwrap
from asgnas_ir.errors import AsgnasError
from asgnas_ir.passes.analysis.alignment import check_align
from asgnas_ir.passes.analysis.latency import LatencyTarget
from asgnas_ir.passes.analysis.search_space import SearchSpace

__all__ = ["H2SPG", "HESSO", "GroupsNotZeroWarning"]


class H2SPG(torch.optim.Optimizer):
    """Hierarchical half-space projected gradient over the groups of `space`.

    Constructing it re-stores the model's parameters as views of one flat buffer (their values,
    shapes, `state_dict` keys and identities are unchanged), so build it after moving the model to
    its device and dtype; a later `model.to(...)` is noticed and the buffer rebuilt at the next step.

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
        score_every: score the groups on every n-th step of the scored warm-up window (1: every step).
        align: with > 1, the redundant groups are moved per layer (by the same scores) to the nearest count
            that leaves every layer a multiple of `align` channels or its full width (`SearchSpace.aligned`),
            so the sub-network has hardware-friendly widths; the total is then about the target, not exactly.
        latency_target: choose groups until the sub-network's estimated latency meets a budget
            (`asgnas_ir.LatencyTarget(ai.latency_table(graph, device), graph, ms)`), ranked by redundancy per
            ms saved, instead of `target_group_sparsity` of them.
        foreach: torch's multi-tensor step for parameters outside the flat buffer (another dtype or device).
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
        score_every: int = 1,
        align: int = 1,
        latency_target: LatencyTarget | None = None,
        foreach: bool = True,
        sync_group: Any = "auto",
    ) -> None:
        model = unwrap(model)
        check_align(align)
        check_options(
            type(self).__name__, lr=lr, momentum=momentum, weight_decay=weight_decay,
            target_group_sparsity=target_group_sparsity, warmup_steps=warmup_steps, ema=ema, epsilon=epsilon,
            **({} if lmbda is None else {"lmbda": lmbda}),
        )
        if shrink_period < 0:
            raise AsgnasError(f"{type(self).__name__}: shrink_period must be ≥ 0, got {shrink_period}")
        if score_every < 1:
            raise AsgnasError(f"{type(self).__name__}: score_every must be ≥ 1, got {score_every}")
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
        self.shrink_period, self.score_every = shrink_period, score_every
        self.align = align
        if latency_target is not None and not isinstance(latency_target, LatencyTarget):
            raise AsgnasError(
                f"{type(self).__name__}: latency_target must be an asgnas_ir.LatencyTarget(table, graph, ms), "
                f"got {type(latency_target).__name__}"
            )
        if latency_target is not None and latency_target.table.graph_fingerprint != space.graph_fingerprint:
            raise AsgnasError(
                f"{type(self).__name__}: the latency table was measured on another graph (fingerprint "
                f"{latency_target.table.graph_fingerprint}, the search space's {space.graph_fingerprint}); "
                "measure it with ai.latency_table on the graph the search space was built from"
            )
        self.latency_target = latency_target
        self.base, self.foreach = base, foreach
        self._model = model
        self._searched, self._lines = self._bind(model, space)
        self._entries_cache: list[dict[int, np.ndarray]] | None = None
        self._inside_cache: dict[int, list[int]] | None = None
        self._score_window = score_window(ema)
        self._steps = 0
        self._adam_steps = 0
        self._selected_at: int | None = None
        self.redundant_groups: list[int] = []
        self.start_norms: list[float] = []  # ‖x_g‖ of each sorted redundant group at selection
        self._flat: FlatParams | None = None
        self._map: GroupMap | None = None
        self._red: GroupMap | None = None
        self._shrink: torch.Tensor | None = None  # per redundant group, ‖x_g at selection‖ / shrink_period
        self._ones: torch.Tensor | None = None
        self._buffers: dict[str, Any] | None = None
        self._scratch_views: tuple[Any, torch.Tensor, torch.Tensor] | None = None
        self._moments: dict[str, torch.Tensor] = {}
        self._layout()
        self._ema = torch.zeros(len(space.groups), dtype=self._sum_dtype, device=self._device)
        self._sync = RankSync.resolve(sync_group, type(self).__name__)
        if self._sync is not None:
            self._sync.same_everywhere(
                [len(space.groups), space_fingerprint(space), warmup_steps, num_selected(target_group_sparsity, len(space.groups))],
                "search space (groups, its digest, warm-up steps, groups to select)",
                "build the search space from the same model and mode on every rank, with the same optimizer options",
            )

    @staticmethod
    def _bind(model: torch.nn.Module, space: SearchSpace) -> tuple[list[torch.Tensor], list[Any]]:
        """Unique live tensors of the non-stat slices and, per group, its lines (`group_lines`)."""
        live = live_tensors(model)
        tensors: list[torch.Tensor] = []
        position: dict[int, int] = {}
        for group in space.groups:
            for s in group.slices:
                if s.kind != "stat":
                    source = space.param_sources.get(s.param, s.param)
                    tensor = _resolve(model, live, s.param, source)
                    check_fits(s, source, tensor.shape)
                    if id(tensor) not in position:
                        position[id(tensor)] = len(tensors)
                        tensors.append(tensor)
        if len({t.device for t in tensors}) > 1:
            raise AsgnasError("the search space's params lie on several devices; move the model to one device first")
        lines = group_lines(space, lambda param, source: position[id(_resolve(model, live, param, source))], lambda i: tensors[i].shape)
        return tensors, lines

    @property
    def _entries(self) -> list[dict[int, np.ndarray]]:
        """Per group, its flat entries in each searched tensor (`bind_groups`; checks that every slice fits)."""
        if self._entries_cache is None:
            live = live_tensors(self._model)
            position = {id(t): i for i, t in enumerate(self._searched)}
            tensors, entries = bind_groups(self.space, lambda p, src: _resolve(self._model, live, p, src), lambda t: t.shape)
            order = [position[id(t)] for t in tensors]
            self._entries_cache = [{order[i]: e for i, e in group.items()} for group in entries]
        return self._entries_cache

    @property
    def _inside(self) -> dict[int, list[int]]:
        if self._inside_cache is None:
            both = any(g.kind == "operator" for g in self.space.groups) and any(g.kind == "channel" for g in self.space.groups)
            self._inside_cache = operators_holding(self.space, self._entries) if both else {}
        return self._inside_cache

    # --- layout -------------------------------------------------------------------------------------------

    def _layout(self) -> None:
        """(Re)build the flat buffer over the current parameters, the group maps and the moment buffers."""
        params = self.param_groups[0]["params"]
        kept_state = {id(p): dict(self.state[p]) for p in params if p in self.state}
        first = self._searched[0] if self._searched else (params[0] if params else None)
        dtype = first.dtype if first is not None else torch.float32
        self._device = first.device if first is not None else torch.device("cpu")
        in_flat = [p for p in params if p.dtype == dtype and p.device == self._device]
        flat_ids = {id(p) for p in in_flat}
        frozen = [t for t in self._searched if id(t) not in flat_ids]
        if any(t.dtype != dtype or t.device != self._device for t in frozen):
            raise AsgnasError(
                f"{type(self).__name__}: the search space's tensors have several dtypes or devices "
                f"({sorted({str(t.dtype) for t in self._searched})}); convert the model to one dtype first"
            )
        self._others = [p for p in params if id(p) not in flat_ids]
        self._trainable = len(in_flat)
        self._frozen_from = None
        self._flat = FlatParams(in_flat + frozen, trainable=len(in_flat)) if in_flat or frozen else None
        if self._flat is not None and frozen:
            self._frozen_from = self._flat.offsets[len(in_flat)]
        self._sum_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        if self._flat is not None:
            index = {id(t): i for i, t in enumerate(self._flat.params)}
            positions = [index[id(t)] for t in self._searched]
            self._positions = positions
            self._map = self._build_map()
        self._moments = {}
        if self._flat is not None and kept_state:
            self._restore_moments(kept_state)
        if self.selected:
            self._build_redundant()
            self._set_start(self.start_norms)
        if hasattr(self, "_ema") and self._ema.device != self._device:
            self._ema = self._ema.to(self._device)

    def _build_map(self) -> GroupMap:
        assert self._flat is not None
        return build_group_map(self._flat, self._positions, self._lines, lambda: self._entries, self._sum_dtype).to(self._device, self._sum_dtype)

    def _full_map(self) -> GroupMap | None:
        """The map of every group: kept through warm-up, rebuilt on demand after selection (the step needs only
        the redundant groups' map, and the full one's stage-two matrix would be held for nothing)."""
        if self._map is None and self._flat is not None:
            return self._build_map()
        return self._map

    def _ensure_layout(self) -> None:
        if self._flat is not None and not self._flat.attached():
            self._layout()

    def _moment(self, name: str) -> torch.Tensor:
        """The flat moment buffer `name` (created zero), its per-parameter views in `self.state` (state_dict)."""
        buffer = self._moments.get(name)
        if buffer is None:
            assert self._flat is not None
            buffer = self._moments[name] = torch.zeros_like(self._flat.x)
            for p, view in zip(self._flat.params[: self._trainable], self._flat.views_of(buffer), strict=False):
                self.state[p][name] = view
        return buffer

    def _restore_moments(self, kept: dict[int, dict[str, Any]]) -> None:
        """Copy per-parameter moments (loaded, or from before a rebuild) into fresh flat buffers."""
        assert self._flat is not None
        params = self._flat.params[: self._trainable]
        for name in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            found = [(p, kept[id(p)][name]) for p in params if name in kept.get(id(p), {})]
            if not found:
                continue
            views = dict(zip((id(p) for p in params), self._flat.views_of(self._moment(name)), strict=False))
            with torch.no_grad():
                torch._foreach_copy_([views[id(p)] for p, _ in found], [v.to(self._device) for _, v in found])
        steps = [float(s["step"]) for s in kept.values() if "step" in s]
        if steps:
            self._adam_steps = int(max(steps))

    # --- public ---------------------------------------------------------------------------------------------

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
        return self._ema.detach().to(torch.float64).cpu().numpy().copy()

    def memory_bytes(self) -> dict[str, int]:
        """Bytes the optimizer holds beyond SGD's momentum ("index": the group maps' sparse matrices and kept
        stages; "per_group": the per-group vectors) and the parameters' bytes. The flat buffers replace the
        parameters' and gradients' own storage and add nothing; the step's scratch row is the gradient buffer
        with SGD's momentum or Adam (else one more row of the buffer's size, not counted here)."""
        held: dict[int, int] = {}
        for group_map in (self._map, self._red):
            if group_map is not None:
                for t in group_map.held_tensors:  # the maps share R1 and one array of ones: count each storage once
                    storage = t.untyped_storage()
                    held[storage.data_ptr()] = storage.nbytes()
        per_group = [self._ema, *(t for t in (self._buffers or {}).values() if isinstance(t, torch.Tensor) and t._base is None)]
        params = sum(p.numel() * p.element_size() for p in self.param_groups[0]["params"])
        return {
            "index": sum(held.values()),
            "per_group": sum(t.numel() * t.element_size() for t in per_group),
            "params": params,
        }

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero every gradient in one op. The flat buffer's gradients stay allocated whatever `set_to_none`
        says (autograd then accumulates into them in place); others follow `set_to_none`."""
        if self._flat is not None:
            self._flat.grads.zero_()
            for p, view in zip(self._flat.params[: self._trainable], self._flat.grad_views, strict=False):
                if p.grad is not view:
                    p.grad = view
        for p in self._others:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def zero_groups(self) -> list[int]:
        """Groups whose non-stat slices are all exactly zero (what `ai.subnet` should remove).

        In `both` mode a channel group lying wholly inside a zero operator group is zero too; it is
        left out, since removing the operator removes it (and listing every channel of a layer is refused).
        """
        self._ensure_layout()
        group_map = self._full_map()
        if group_map is None or not group_map.groups:
            return []
        assert self._flat is not None
        l1 = group_map.group_sums(self._flat.x.abs().to(self._sum_dtype).unsqueeze(1))
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
        self._ensure_layout()
        since = None if self._selected_at is None else self._steps - self._selected_at
        if not self.selected:
            self._select()
        if self._red is not None:
            message = not_zero_warning(type(self).__name__, sorted(self.redundant_groups), self._redundant_norms(), self.start_norms, since)
            if message is not None:
                warnings.warn(message, GroupsNotZeroWarning, stacklevel=3)  # the caller, past torch.no_grad's wrapper
            assert self._flat is not None
            self._flat.x.masked_fill_(self._members() > 0, 0)
        return sorted(self.redundant_groups)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimisation step (warm-up, then selection once, then the sparsifying phase)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._ensure_layout()
        if self._flat is not None:
            try:
                self._flat.gather_grads()
            except TypeError as error:
                raise AsgnasError(f"{type(self).__name__} does not support sparse gradients") from error
        if not self.selected:
            window = self._steps >= self.warmup_steps - self._score_window
            last = self._steps == self.warmup_steps - 1
            if self.space.groups and window and (last or (self.warmup_steps - 1 - self._steps) % self.score_every == 0):
                self._update_scores()
            if self._steps >= self.warmup_steps:  # warmup_steps == 0: select before the first update
                self._select()
        if self._flat is not None:
            direction = self._direction()
            self._update(direction)
        self._others_step()
        self._steps += 1
        if not self.selected and self._steps >= self.warmup_steps:
            self._select()
        return loss

    # --- the step -----------------------------------------------------------------------------------------

    def _direction(self) -> torch.Tensor:
        """The base optimizer's direction d over the flat buffer (the update is x ← x - lr·d)."""
        assert self._flat is not None
        group = self.param_groups[0]
        x, g = self._flat.x, self._flat.grads
        if group["weight_decay"]:
            g = torch.add(g, x, alpha=group["weight_decay"])
            if self._frozen_from is not None:
                g[self._frozen_from :].zero_()
        if self.base == "adam":
            beta1, beta2 = group["betas"]
            self._adam_steps += 1
            m, v = self._moment("exp_avg"), self._moment("exp_avg_sq")
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denominator = v.sqrt().div_(math.sqrt(1 - beta2**self._adam_steps)).add_(group["eps"])
            return torch.div(m, denominator).div_(1 - beta1**self._adam_steps)
        if not group["momentum"]:
            return g
        fresh = "momentum_buffer" not in self._moments
        buffer = self._moment("momentum_buffer")
        if fresh:  # torch's SGD starts its buffer at the first gradient
            buffer.copy_(g)
        else:  # buffer ← momentum·buffer + g, one op (elementwise, so writing over an input is safe)
            torch.add(g, buffer, alpha=group["momentum"], out=buffer)
        return torch.add(g, buffer, alpha=group["momentum"]) if group["nesterov"] else buffer

    def _update(self, direction: torch.Tensor) -> None:
        """x ← x - lr·d, and on the redundant groups the penalised step with its half-space projection.

        Every per-entry quantity passes through one flat scratch row (the gradient buffer once the
        direction no longer needs it), so nothing of the model's size is allocated in the step."""
        assert self._flat is not None
        lr = self.param_groups[0]["lr"]
        x = self._flat.x
        if self._red is None or lr <= 0 or not self._uses_projection:
            x.add_(direction, alpha=-lr)
            if self._red is not None:
                self._shrink_step(direction)
            return
        b = self._group_buffers()
        scratch, chunks = self._scratch(direction)
        for (left, right), column, bias in zip(((x, direction), (x, x), (direction, direction)), b["sum_columns"], (None, b["tiny"], None), strict=True):
            torch.mul(left, right, out=scratch)
            self._red.column_sum(chunks, column, bias)
        self._group_step(b, lr)
        values = b["values"] if self._sync is None else self._sync.from_root(b["values"])
        self._red.entries_of(values, 0, chunks)
        x.addcmul_(x, scratch, value=-1)
        x.add_(direction, alpha=-lr)
        self._red.entries_of(values, 1, chunks)
        x.masked_fill_(scratch > 0, 0)

    def _scratch(self, direction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A flat row for per-entry values and its (total/W, W) view. The gradient buffer, when the direction
        is not the gradient itself and has the sums' dtype (SGD with momentum, Adam): so `p.grad` holds scratch
        values after `step()` (`zero_grad` clears them); otherwise a kept buffer."""
        assert self._flat is not None and self._red is not None
        grads = self._flat.grads
        target = grads if direction is not grads and grads.dtype == self._sum_dtype else None
        key = (id(target), self._red.chunk)
        if self._scratch_views is None or self._scratch_views[0] != key:
            if target is None:
                target = torch.zeros(self._flat.total, dtype=self._sum_dtype, device=self._device)
            self._scratch_views = (key, target, target.view(-1, self._red.chunk))
        return self._scratch_views[1], self._scratch_views[2]

    def _group_buffers(self) -> dict[str, Any]:
        """Kept per-redundant-group buffers (sums, values and their columns, constants), so that the group
        math writes with `out=` and takes no views: each view is an ATen op too."""
        if self._buffers is None:
            assert self._red is not None
            count, options = self._red.groups, {"dtype": self._sum_dtype, "device": self._device}
            sums, values = torch.zeros(count, 3, **options), torch.zeros(count, 2, **options)
            tiny = torch.full((count, 1), torch.finfo(self._sum_dtype).tiny, **options)  # a zero group's ‖x‖² stays finite to divide by
            dot, xx, dd = sums.unbind(1)
            shrink, dropped = values.unbind(1)
            self._buffers = {
                "sums": sums, "tiny": tiny, "dot": dot, "xx": xx, "dd": dd, "values": values, "shrink": shrink,
                "dropped": dropped, "ones": torch.ones(count, **options), "zeros": torch.zeros(count, **options),
                "sum_columns": [sums[:, i : i + 1] for i in range(3)],
            }
        return self._buffers

    def _group_step(self, b: dict[str, Any], lr: float) -> None:
        """Per redundant group (k, dropped) into `b["values"]`: the step is x ← x·(1 - k) - lr·d, or 0 when dropped.

        From ⟨x,d⟩, ‖x‖² (+ the smallest normal float), ‖d‖² per group: k = lr·λ/‖x‖ and the half-space
        test, written with ratios to ‖x‖² so that eleven ops serve every group. With the automatic λ
        (`reference.auto_lambda`): r = ρ/‖x‖ = √(u² - lr²‖d‖²/‖x‖² + (lr·q)²), u = (1 - s/‖x‖)₊,
        q = ⟨x,d⟩/‖x‖²; then ⟨x̃,x⟩/‖x‖² = min(r, 1 - lr·q) =: m and k = 1 - lr·q - m. A zero group gets
        m = 0 (dropped) and finite values (its ‖d‖²/‖x‖² may overflow to inf: r is then 0)."""
        dot, xx, dd = b["dot"], b["xx"], b["dd"]
        if self.lmbda is None:
            assert self._shrink is not None
            keep_ratio, m = auto_step(dot, xx, dd, self._shrink, lr, b["ones"], b["zeros"])
        else:
            norm = xx.sqrt()
            lam = _lambda(dot, norm, dd, self.lmbda, self.lmbda_amplify, self.hat_lmbda_coeff)
            keep_ratio = torch.rsub(dot.div(xx), 1, alpha=lr)
            m = keep_ratio - lam.mul_(lr).div_(norm)
        torch.sub(keep_ratio, m, out=b["shrink"])
        torch.le(m, self.epsilon, out=b["dropped"])

    def _shrink_step(self, direction: torch.Tensor) -> None:
        """HESSO: the redundant groups' entries times hesso_ratio (0 once the shrink is over)."""

    def _members(self) -> torch.Tensor:
        """Per entry of the flat buffer, how many redundant groups hold it."""
        assert self._red is not None
        if self._ones is None or self._ones.device != self._device:
            self._ones = torch.ones(self._red.groups, 1, dtype=self._sum_dtype, device=self._device)
        return self._red.to_entries(self._ones).squeeze(1)

    def _others_step(self) -> None:
        """torch's own step for parameters outside the flat buffer (another dtype or device than the groups')."""
        group = self.param_groups[0]
        params = [p for p in self._others if p.grad is not None]
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

    # --- scores and selection -------------------------------------------------------------------------------

    def _update_scores(self) -> None:
        assert self._flat is not None and self._map is not None
        x, g = self._flat.x, self._flat.grads
        if x.dtype != self._sum_dtype:
            x, g = x.to(self._sum_dtype), g.to(self._sum_dtype)
        dot, xx, gg, l1 = self._map.group_sums(torch.stack([x * g, x * x, g * g, x.abs()], 1)).unbind(1)
        scores = _scores(dot, xx, gg, l1, self._map.inverse_sizes)
        self._ema.mul_(self.ema).add_(scores, alpha=0.5 * (1.0 - self.ema))

    def _select(self) -> None:
        k = num_selected(self.target_group_sparsity, len(self.space.groups))
        if self._sync is None:
            self.redundant_groups = self._choose(k)
        else:  # every rank keeps rank 0's scores; rank 0 alone walks the validity checks
            self._ema = self._sync.scores(self._ema)
            mine = self._choose(k) if self._sync.rank == 0 else None
            # alignment can move the count past k: every rank pads to the group count, known to all
            self.redundant_groups = self._sync.choice(mine, len(self.space.groups))
        self._selected_at = self._steps
        self._build_redundant()
        self._set_start(self._redundant_norms())
        if self._red is not None:
            self._red.drop_stages()

    def _choose(self, k: int) -> list[int]:
        """The `k` most redundant groups that keep the network valid; with `align` > 1, moved per layer
        to the nearest count that leaves an aligned width (by the same scores), so about `k`."""
        scores = self.scores
        if self.latency_target is not None:
            chosen = self.latency_target.select(self.space, scores, self.align)
            estimate = self.latency_target.table.estimate(self.latency_target.graph, self.space, chosen)
            if estimate > self.latency_target.ms:
                warnings.warn(
                    f"{type(self).__name__}: removing every removable group leaves an estimated {estimate:.3g} ms, above "
                    f"the latency target of {self.latency_target.ms:.3g} ms; all {len(chosen)} are chosen",
                    stacklevel=3,
                )
            return chosen
        chosen = select_redundant(scores, k, self.space)
        return self.space.aligned(chosen, self.align, scores) if self.align > 1 else chosen

    _uses_projection = True  # H2SPG zeroes groups by the half-space test (HESSO: by its shrink)

    def _build_redundant(self) -> None:
        ids = sorted(self.redundant_groups)
        full = self._full_map()
        self._red = full.subset(ids) if ids and full is not None else None
        self._map = None  # shares R1 with the redundant map; its own part is rebuilt if `zero_groups` asks
        self._ones, self._buffers, self._scratch_views = None, None, None

    @torch.no_grad()
    def _redundant_norms(self) -> list[float]:
        """‖x_g‖ of each redundant group, in sorted id order."""
        if self._red is None:
            return []
        assert self._flat is not None
        x = self._flat.x.to(self._sum_dtype)
        return self._red.group_sums((x * x).unsqueeze(1)).squeeze(1).sqrt().tolist()

    def _set_start(self, norms: list[float]) -> None:
        self.start_norms = [float(n) for n in norms]
        period = self.shrink_period
        shrink = [n / period if period > 0 else math.inf for n in self.start_norms]
        self._shrink = torch.tensor(shrink, dtype=self._sum_dtype, device=self._device)

    # --- checkpoints ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The torch optimizer state plus phase, step count, averaged scores and the redundant set."""
        if self.base == "adam" and self._flat is not None and "exp_avg" in self._moments:
            for p in self._flat.params[: self._trainable]:
                self.state[p]["step"] = torch.tensor(float(self._adam_steps))
        state = super().state_dict()
        state["h2spg"] = {
            "steps": self._steps,
            "selected_at": self._selected_at,
            "scores": self._ema.detach().to(torch.float64).cpu().clone(),
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
        self._ensure_layout()
        super().load_state_dict(state_dict)
        # torch put fresh tensors in `self.state`; the flat moment buffers take their values, the state their views
        loaded = {id(p): dict(self.state[p]) for p in self.param_groups[0]["params"] if p in self.state}
        self._moments = {}
        if self._flat is not None:
            self._restore_moments(loaded)
        self._steps, self._selected_at = int(extra["steps"]), extra["selected_at"]
        self._ema = torch.as_tensor(extra["scores"]).to(dtype=self._sum_dtype, device=self._device).clone()
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
            self._red = None


def auto_step(
    dot: torch.Tensor, xx: torch.Tensor, dd: torch.Tensor, shrink: torch.Tensor, lr: float, ones: torch.Tensor, zeros: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - lr·q, m) per group for the automatic λ (`reference.auto_lambda`), q = ⟨x,d⟩/‖x‖²:
    m = ⟨x̃,x⟩/‖x‖² = min(r, 1 - lr·q) with r = ρ/‖x‖, and lr·λ/‖x‖ = (1 - lr·q) - m.

    `xx` must be > 0 (a zero group's plus the smallest normal float: its values stay finite, m = 0);
    `shrink` is ‖x at selection‖/period. Nine ATen ops: `_foreach_addcmul` forms 1 - s/‖x‖, lr·q,
    -lr²‖d‖²/‖x‖² and 1 - lr·q in one."""
    rsqrt = torch.rsqrt(xx)
    inverse = torch.mul(rsqrt, rsqrt)
    u, lq, nlp, keep_ratio = torch._foreach_addcmul(
        [ones, zeros, zeros, ones], [shrink, dot, dd, dot], [rsqrt, inverse, inverse, inverse], [-1.0, lr, -lr * lr, -lr],
    )
    u.relu_()
    radial = torch.addcmul(nlp, lq, lq).addcmul_(u, u).relu_().sqrt_()
    return keep_ratio, torch.minimum(radial, keep_ratio)


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

    _uses_projection = False

    def _shrink_step(self, direction: torch.Tensor) -> None:
        if self._selected_at is None:
            return
        ratio = hesso_ratio(self._steps + 1 - self._selected_at, 0, self.shrink_period)
        if ratio == 1.0:
            return
        assert self._flat is not None and self._red is not None
        if self._ones is None:
            self._ones = torch.ones(self._red.groups, 1, dtype=self._sum_dtype, device=self._device)
        scratch, chunks = self._scratch(direction)
        self._red.entries_of(self._ones, 0, chunks)
        if ratio == 0.0:
            self._flat.x.masked_fill_(scratch > 0, 0)
        else:  # an entry in two redundant groups is scaled once
            self._flat.x.addcmul_(self._flat.x, scratch.clamp_(max=1), value=ratio - 1)
