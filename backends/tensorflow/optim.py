"""H2SPG for Keras 3 on TensorFlow: the torch optimizer's semantics as a `keras.optimizers.Optimizer`.

Works in `model.compile(optimizer=H2SPG(model, space, ...))` + `fit` and in a custom loop
(`opt.apply_gradients(zip(grads, model.trainable_variables))`, eager or inside `tf.function`).
The steps are those of `asgnas_ir.backends.torch.H2SPG` (module docstring there; math:
`asgnas_ir.backends.reference`): warm-up steps of SGD with momentum while the redundancy scores are
averaged, then once the K most redundant groups that keep `space.is_valid` (moved per layer to aligned
widths with `align`, or as many as a `latency_target` needs instead of K), then the half-space step
on them and the SGD step everywhere else; `finalize()` makes exactly the chosen groups zero (warning,
as torch does, about any that training left far from zero). λ is the torch optimizer's: automatic by
default (NOTE: [Automatic λ] in the torch module: each chosen group is projected within `shrink_period`
steps of selection), DHSPG's rule when `lmbda` is given.

NOTE: [One graph for every phase] `fit` traces the train step once, so the phase cannot be a
Python branch: it lives in optimizer variables (`selected_at`, the redundant mask and order, the
score average) and each phase is a `tf.cond`. The selection walks the groups with
`space.is_valid` (a graph search) on the host, through `tf.py_function`, once per run. Hence no
XLA: `fit` on CPU does not use it (`jit_compile="auto"`); on a GPU pass `jit_compile=False` to
`model.compile` (checked at trace time).

NOTE: [Flat entries, segment sums] The variables the groups touch are concatenated (flat, float64
for the group math); a group is a list of entries of that vector (`cols`, with `owner` its group),
so every per-group sum is one `unsorted_segment_sum` and the way back to entries another. Groups
may share entries (prune mode: a conv's rows and its input columns); the update is then
`reference.group_half_space_step`. The per-group math runs over all groups every sparsifying step
(masked by the redundant set), a fixed handful of ops however many groups there are.

NOTE: [Replicas] Under `tf.distribute.MirroredStrategy` (model and optimizer built in
`strategy.scope()`) the step runs once per replica on all-reduced gradients, so every replica
scores, selects and projects the same groups (docs/distributed.md; tested on 2 logical CPUs).

Choices the digest leaves open are the torch optimizer's: the redundant groups take the raw gradient
(no momentum, no weight decay); `weight_decay` is coupled (added to the gradient, as torch's SGD),
not Keras' decoupled decay. The momentum of redundant entries keeps being updated but is never used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from asgnas_ir.backends._groups import (
    MAGNITUDE_EPS,
    GroupsNotZeroWarning,
    bind_groups,
    check_options,
    not_zero_warning,
    num_selected,
    operators_holding,
    score_window,
    without_nested,
)
from asgnas_ir.backends.reference import select_redundant
from asgnas_ir.backends.tensorflow.binding import entry_of, live_entries
from asgnas_ir.errors import AsgnasError
from asgnas_ir.frontends.keras.variables import Entry
from asgnas_ir.passes.analysis.alignment import check_align
from asgnas_ir.passes.analysis.latency import LatencyTarget
from asgnas_ir.passes.analysis.search_space import SearchSpace


@dataclass
class _Binding:
    """The model, its space and the groups' flat layout (a plain object: Keras must not track the model
    as part of the optimizer's state)."""

    model: Any
    space: SearchSpace
    variables: list[Any]  # the bound Keras variables, first-use order
    entries: list[dict[int, np.ndarray]]  # per group: {variable position: flat entries}
    offsets: list[int]  # start of each variable in the concatenation
    cols: np.ndarray  # (nnz,) entry of the concatenation
    owner: np.ndarray  # (nnz,) its group
    sizes: np.ndarray  # entries per group
    total: int
    inside: dict[int, list[int]]


def _bound_entry(live: dict[str, Entry], param: str, source: str, model: Any) -> Entry:
    entry = entry_of(live, param, source, model)
    if entry.lora is not None:
        raise AsgnasError(
            f"search-space param '{param}' is the LoRA-merged kernel of layer '{entry.lora.layer}' "
            f"(kernel + {entry.lora.scale:g}·A@B), which is no single variable the optimizer could sparsify; "
            "merge the adapters into the kernel first (or train without LoRA) and build the space again"
        )
    return entry


def _bind(model: Any, space: SearchSpace) -> _Binding:
    live = live_entries(model)
    # slices index each param's IR view (`Entry.view`), whose flat entries are the variable's own
    bound, entries = bind_groups(space, lambda param, source: _bound_entry(live, param, source, model), lambda e: e.view)
    variables = [e.variable for e in bound]
    numels = [int(np.prod(v.shape)) for v in variables]
    offsets = np.cumsum([0, *numels]).tolist()
    cols = [np.concatenate([e + offsets[i] for i, e in sorted(g.items())]) if g else np.zeros(0, np.int64) for g in entries]
    sizes = np.array([len(c) for c in cols], np.float64)
    owner = np.repeat(np.arange(len(entries)), sizes.astype(np.int64))
    flat = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return _Binding(model, space, variables, entries, offsets[:-1], flat, owner, sizes, offsets[-1], operators_holding(space, entries))


class H2SPG(keras.optimizers.Optimizer):
    """Hierarchical half-space projected gradient over the groups of `space` (Keras 3, TensorFlow).

    Args:
        model: the live Keras model whose variables `space.param_sources` names (by their unique keys, `frontends.keras.variables`).
        space: from `ai.search_space(ai.compile(model), mode=...)`.
        lr, momentum, weight_decay, nesterov: the base SGD step, as torch's SGD (`lr` may be a Keras
            learning-rate schedule; `weight_decay` is added to the gradient).
        target_group_sparsity: K = ⌊target · number of groups⌋ groups are selected.
        warmup_steps: base steps before selection (scores are averaged over them).
        ema: ω of the score average s ← ω·s + (1-ω)·score (only the last warm-up steps that weigh
            ≥ 1e-6 are scored).
        epsilon: half-space projection threshold ε (> 0 with the automatic λ).
        lmbda: None (default): the automatic λ (`reference.auto_lambda`), which zeroes every chosen group
            within `shrink_period` steps of selection; a number: DHSPG's rule (`reference.select_lambda`)
            with `lmbda_amplify` and `hat_lmbda_coeff`.
        shrink_period: steps from selection to zero for the automatic λ.
        align: with > 1, the redundant groups are moved per layer (by the same scores) to the nearest count
            that leaves every layer a multiple of `align` channels or its full width (`SearchSpace.aligned`),
            so the sub-network has hardware-friendly widths; the total is then about the target, not exactly.
        latency_target: choose groups until the sub-network's estimated latency meets a budget
            (`asgnas_ir.LatencyTarget(ai.latency_table(graph, device), graph, ms)`), ranked by redundancy per
            ms saved, instead of `target_group_sparsity` of them.
        **kwargs: Keras optimizer options (`clipnorm`, `global_clipnorm`, `loss_scale_factor`, `name`, ...).

    Raises:
        AsgnasError: an option is out of range, or a param of `space` is not a variable of `model`.
    """

    def __init__(
        self,
        model: Any,
        space: SearchSpace,
        lr: Any = 0.1,
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
        nesterov: bool = False,
        align: int = 1,
        latency_target: LatencyTarget | None = None,
        name: str = "h2spg",
        **kwargs: Any,
    ) -> None:
        check_align(align)
        check_options(
            type(self).__name__, momentum=momentum, weight_decay=weight_decay, target_group_sparsity=target_group_sparsity,
            warmup_steps=warmup_steps, ema=ema, epsilon=epsilon,
            **({"lr": lr} if isinstance(lr, (int, float)) else {}), **({} if lmbda is None else {"lmbda": lmbda}),
        )
        if shrink_period < 0:
            raise AsgnasError(f"{type(self).__name__}: shrink_period must be ≥ 0, got {shrink_period}")
        if lmbda is None and epsilon <= 0:
            raise AsgnasError(
                f"{type(self).__name__}: epsilon must be > 0 with the automatic λ (lmbda=None): the half-space "
                "projection is what makes a group exactly zero; give epsilon=0.5 (the default), or an explicit lmbda"
            )
        if kwargs.get("weight_decay") is not None or kwargs.get("use_ema") or kwargs.get("gradient_accumulation_steps"):
            raise AsgnasError(f"{type(self).__name__}: Keras' decoupled weight decay, EMA and gradient accumulation are not supported")
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
        super().__init__(learning_rate=lr, name=name, **kwargs)
        self.momentum, self.nesterov, self.l2 = float(momentum), bool(nesterov), float(weight_decay)
        self.target_group_sparsity, self.warmup_steps, self.ema = target_group_sparsity, int(warmup_steps), float(ema)
        self.epsilon, self.lmbda = float(epsilon), None if lmbda is None else float(lmbda)
        self.shrink_period = int(shrink_period)
        self.lmbda_amplify, self.hat_lmbda_coeff = float(lmbda_amplify), float(hat_lmbda_coeff)
        self.align, self.latency_target = align, latency_target
        self._binding = _bind(model, space)
        self._k = num_selected(target_group_sparsity, len(space.groups))
        # slots of the `redundant_order` variable: K, or every group when alignment or a latency budget decides
        # the count (a variable's shape is fixed when the step is traced; -1 pads)
        self._slots = self._k if align == 1 and latency_target is None else len(space.groups)
        self._window = score_window(ema)

    # ----- state -------------------------------------------------------------------------------

    @property
    def space(self) -> SearchSpace:
        return self._binding.space

    def build(self, var_list: list[Any]) -> None:
        """Momentum slots per variable, and the group state (scores, redundant set, phase) as variables."""
        if self.built:
            return
        super().build(var_list)
        # by identity: Keras lets several variables share one `path`
        known = {id(v) for v in var_list}
        missing = [v.path for v in self._binding.variables if id(v) not in known]
        if missing:
            raise AsgnasError(
                f"{type(self).__name__}: the search space's variables {missing} are not among the variables being trained; "
                "make them trainable (or build the space from this model)"
            )
        groups = len(self.space.groups)
        self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list] if self.momentum else []
        self._scores = self.add_variable((groups,), "zeros", "float64", name="scores")
        self._mask = self.add_variable((groups,), "zeros", "float64", name="redundant_mask")
        self._order = self.add_variable((self._slots,), keras.initializers.Constant(-1), "int64", name="redundant_order")
        self._selected_at = self.add_variable((), keras.initializers.Constant(-1), "int64", name="selected_at")
        self._start = self.add_variable((groups,), "zeros", "float64", name="start_norms")

    def _ensure_built(self) -> None:
        if not self.built:
            self.build(self._binding.model.trainable_variables)

    @property
    def selected(self) -> bool:
        """Whether the redundant groups have been chosen (warm-up is over)."""
        return self.built and int(self._selected_at.numpy()) >= 0

    @property
    def scores(self) -> np.ndarray:
        """The averaged redundancy score of every group (frozen at selection)."""
        return self._scores.numpy().copy() if self.built else np.zeros(len(self.space.groups))

    @property
    def redundant_groups(self) -> list[int]:
        """The selected groups in acceptance order (empty before selection)."""
        if not self.selected:
            return []
        return [int(g) for g in self._order.numpy() if g >= 0]

    def state_dict(self) -> dict[str, Any]:
        """Every optimizer variable (iterations, momenta, scores, redundant set, phase) as numpy arrays."""
        self._ensure_built()
        return {"variables": [np.array(v.numpy()) for v in self.variables], "num_groups": len(self.space.groups)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()` (same model structure and search space)."""
        self._ensure_built()
        if state.get("num_groups") != len(self.space.groups):
            raise AsgnasError(
                f"the checkpoint has {state.get('num_groups')} groups but this search space has {len(self.space.groups)}; "
                "build the space from the same model and mode"
            )
        values = state["variables"]
        if len(values) != len(self.variables):
            raise AsgnasError(f"the checkpoint holds {len(values)} optimizer variables, this optimizer {len(self.variables)}")
        for variable, value in zip(self.variables, values, strict=True):
            variable.assign(value)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            momentum=self.momentum, nesterov=self.nesterov, target_group_sparsity=self.target_group_sparsity,
            warmup_steps=self.warmup_steps, ema=self.ema, epsilon=self.epsilon, lmbda=self.lmbda,
            lmbda_amplify=self.lmbda_amplify, hat_lmbda_coeff=self.hat_lmbda_coeff, l2=self.l2, shrink_period=self.shrink_period,
            align=self.align,
        )
        return config

    # ----- host-side results -------------------------------------------------------------------

    def _flat_numpy(self) -> np.ndarray:
        parts = [np.asarray(v.numpy(), np.float64).ravel() for v in self._binding.variables]
        return np.concatenate(parts) if parts else np.zeros(0)

    def zero_groups(self) -> list[int]:
        """Groups whose non-stat slices are all exactly zero (what `ai.subnet` should remove).

        In `both` mode a channel group lying wholly inside a zero operator group is left out, as in torch.
        """
        b = self._binding
        if not len(b.sizes):
            return []
        l1 = np.bincount(b.owner, weights=np.abs(self._flat_numpy()[b.cols]), minlength=len(b.sizes))
        return without_nested(np.flatnonzero(l1 == 0).tolist(), b.inside)

    def _choose(self, scores: np.ndarray) -> list[int]:
        """The `k` most redundant groups that keep the network valid; with `align` > 1, moved per layer
        to the nearest count that leaves an aligned width (by the same scores), so about `k`. With a
        `latency_target`, `LatencyTarget.select`'s groups instead (as the torch H2SPG)."""
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
        chosen = select_redundant(scores, self._k, self.space)
        return self.space.aligned(chosen, self.align, scores) if self.align > 1 else chosen

    def _select_host(self, scores: Any) -> tuple[np.ndarray, np.ndarray]:
        order = self._choose(np.asarray(scores, np.float64))
        mask = np.zeros(len(self.space.groups))
        mask[order] = 1.0
        return np.array(order + [-1] * (self._slots - len(order)), np.int64), mask

    def _group_norms(self) -> np.ndarray:
        b = self._binding
        return np.sqrt(np.bincount(b.owner, weights=self._flat_numpy()[b.cols] ** 2, minlength=len(b.sizes)))

    def finalize(self) -> list[int]:
        """Project every redundant group to exactly zero (selecting first if warm-up has not ended).

        A group above `NEAR_ZERO` of its norm at selection is forced after a `GroupsNotZeroWarning` naming it
        (as the torch H2SPG does; made an error, the warning leaves the model as trained).

        Returns:
            The redundant group ids, sorted.
        """
        self._ensure_built()
        since = int(self.iterations.numpy()) - int(self._selected_at.numpy()) if self.selected else None
        if not self.selected:
            order, mask = self._select_host(self._scores.numpy())
            self._order.assign(order)
            self._mask.assign(mask)
            self._selected_at.assign(int(self.iterations.numpy()))
            self._start.assign(self._group_norms())
        b, red = self._binding, self.redundant_groups
        if red:
            ids, norms, start = sorted(red), self._group_norms(), self._start.numpy()
            message = not_zero_warning(type(self).__name__, ids, norms[ids].tolist(), start[ids].tolist(), since)
            if message is not None:
                warnings.warn(message, GroupsNotZeroWarning, stacklevel=2)
        for i, variable in enumerate(b.variables):
            drop = [b.entries[g][i] for g in red if i in b.entries[g]]
            if drop:
                value = np.array(variable.numpy())
                value.reshape(-1)[np.concatenate(drop)] = 0
                variable.assign(value)
        return sorted(red)

    # ----- the step (NOTE: [One graph for every phase]) ----------------------------------------

    def _segment(self, values: tf.Tensor, to_groups: bool) -> tf.Tensor:
        """Per entry → per group (sum over each group's entries), or per group → per entry (sum over its groups)."""
        b = self._binding
        if to_groups:
            return tf.math.unsorted_segment_sum(tf.gather(values, b.cols), b.owner, len(b.sizes))
        return tf.math.unsorted_segment_sum(tf.gather(values, b.owner), b.cols, b.total)

    def _group_scores(self, x: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        """`reference.redundancy_scores` of every group."""
        sums = self._segment(tf.stack([x * g, x * x, g * g, tf.abs(x)], axis=1), True)
        dot, xx, gg, l1 = tf.unstack(sums, axis=1)
        cos = tf.math.divide_no_nan(dot, tf.sqrt(xx * gg))
        inv = 1.0 / (tf.math.divide_no_nan(l1, tf.constant(self._binding.sizes)) + MAGNITUDE_EPS)
        return 0.5 * tf.math.divide_no_nan(cos, tf.norm(cos)) + 0.5 * tf.math.divide_no_nan(inv, tf.norm(inv))

    def _lambda(self, dot: tf.Tensor, norm: tf.Tensor, gg: tf.Tensor) -> tf.Tensor:
        """`reference.select_lambda` of every group."""
        lmbda = tf.constant(self.lmbda, tf.float64)
        lo = tf.math.divide_no_nan(-dot, norm)
        hi = tf.math.divide_no_nan(-gg * norm, dot)
        chosen = tf.clip_by_value(self.lmbda_amplify * lo, lmbda, lmbda * self.hat_lmbda_coeff)
        chosen = tf.where(chosen >= hi, 0.5 * (lo + hi), chosen)
        return tf.where((dot < 0) & (norm > 0), chosen, lmbda)

    def _auto_lambda(self, dot: tf.Tensor, xx: tf.Tensor, gg: tf.Tensor, lr: tf.Tensor) -> tf.Tensor:
        """`reference.auto_lambda` of every group, from its norm at selection."""
        a = tf.sqrt(xx)
        radial = tf.math.divide_no_nan(dot, a)
        side_sq = tf.maximum(gg - radial * radial, 0.0)
        start = tf.convert_to_tensor(self._start)
        shrink = start / self.shrink_period if self.shrink_period > 0 else tf.fill(tf.shape(a), tf.constant(np.inf, tf.float64))
        rest = tf.where(a > shrink, tf.square(tf.maximum(a - shrink, 0.0)) - lr * lr * side_sq, tf.zeros_like(a))
        lam = tf.maximum(tf.math.divide_no_nan(a - tf.sqrt(tf.maximum(rest, 0.0)), lr) - radial, 0.0)
        return tf.where((xx > 0) & (lr > 0), lam, tf.zeros_like(lam))

    def _half_space(self, x: tf.Tensor, g: tf.Tensor, lr: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(`reference.group_half_space_step` on the redundant groups, which entries they hold)."""
        red = tf.convert_to_tensor(self._mask)
        sums = self._segment(tf.stack([x * g, x * x, g * g], axis=1), True)
        dot, xx, gg = tf.unstack(sums, axis=1)
        norm = tf.sqrt(xx)
        lam = self._auto_lambda(dot, xx, gg, lr) if self.lmbda is None else self._lambda(dot, norm, gg)
        coef = red * tf.math.divide_no_nan(lam, norm)
        member = self._segment(red, False) > 0
        new = x - lr * (g + self._segment(coef, False) * x)
        inner = self._segment(new * x, True)
        dropped = red * tf.cast((inner < self.epsilon * xx) | (xx == 0), tf.float64)
        return tf.where(self._segment(dropped, False) > 0, tf.zeros_like(new), new), member

    def _select(self, at: tf.Tensor) -> tf.Tensor:
        order, mask = tf.py_function(self._select_host, [tf.convert_to_tensor(self._scores)], [tf.int64, tf.float64])
        order.set_shape((self._slots,))
        mask.set_shape((len(self.space.groups),))
        self._order.assign(order)
        self._mask.assign(mask)
        self._selected_at.assign(at)
        b = self._binding
        if len(b.sizes):  # the norms the automatic λ shrinks from, read after this step's updates
            parts = [tf.reshape(tf.cast(tf.convert_to_tensor(v), tf.float64), [-1]) for v in b.variables]
            x = tf.concat(parts, 0)
            self._start.assign(tf.sqrt(self._segment(x * x, True)))
        return tf.constant(True)

    def _backend_update_step(self, grads: list[Any], trainable_variables: list[Any], learning_rate: Any) -> None:
        if getattr(self._binding.model, "jit_compile", False) is True:
            raise AsgnasError(
                f"{type(self).__name__} selects its groups on the host (tf.py_function), which XLA cannot compile; "
                "pass jit_compile=False to model.compile"
            )
        if tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1:
            # NOTE: [Replicas] Keras' own update step sums the replicas' gradients (each replica's loss is
            # already divided by their number); this override replaces it, so it must sum them too, or every
            # replica would step, score and select on its own shard's gradient.
            pairs = self._all_reduce_sum_gradients(list(zip(grads, trainable_variables, strict=True)))
            grads = [g for g, _ in pairs]
        b = self._binding
        grad_of = {id(v): g for g, v in zip(grads, trainable_variables, strict=True)}
        step = tf.convert_to_tensor(self.iterations)
        lr = tf.cast(learning_rate, tf.float64)

        def flat(tensors: list[Any]) -> tf.Tensor:
            parts = [tf.reshape(tf.cast(t, tf.float64), [-1]) for t in tensors]
            return tf.concat(parts, 0) if parts else tf.zeros([0], tf.float64)

        x = flat([tf.convert_to_tensor(v) for v in b.variables])
        g = flat([grad_of[id(v)] if grad_of.get(id(v)) is not None else tf.zeros(v.shape, v.dtype) for v in b.variables])
        never = tf.constant(False)

        def warm_up() -> tf.Tensor:
            def score() -> tf.Tensor:
                self._scores.assign(self.ema * tf.convert_to_tensor(self._scores) + (1.0 - self.ema) * self._group_scores(x, g))
                return tf.constant(True)

            if len(b.sizes):
                tf.cond(step >= self.warmup_steps - self._window, score, lambda: never)
            return tf.cond(step >= self.warmup_steps, lambda: self._select(step), lambda: never)

        tf.cond(tf.convert_to_tensor(self._selected_at) < 0, warm_up, lambda: never)

        for grad, variable in zip(grads, trainable_variables, strict=True):
            self._sgd(grad, variable, learning_rate)

        def sparsify() -> tf.Tensor:
            new, member = self._half_space(x, g, lr)
            for variable, start in zip(b.variables, b.offsets, strict=True):
                n = int(np.prod(variable.shape))
                current = tf.reshape(tf.convert_to_tensor(variable), [-1])
                chunk = tf.cast(new[start : start + n], variable.dtype)
                variable.assign(tf.reshape(tf.where(member[start : start + n], chunk, current), variable.shape))
            return tf.constant(True)

        if len(b.sizes):
            tf.cond(tf.convert_to_tensor(self._selected_at) >= 0, sparsify, lambda: never)
        tf.cond(
            (tf.convert_to_tensor(self._selected_at) < 0) & (step + 1 >= self.warmup_steps),
            lambda: self._select(step + 1),
            lambda: never,
        )

    def _sgd(self, grad: Any, variable: Any, learning_rate: Any) -> None:
        """torch.optim.SGD's update (dampening 0, coupled weight decay)."""
        lr = tf.cast(learning_rate, variable.dtype)
        direction = tf.convert_to_tensor(grad)
        if self.l2:
            direction = direction + self.l2 * tf.convert_to_tensor(variable)
        if self.momentum:
            buf = self._momentums[self._get_variable_index(variable)]
            self.assign(buf, self.momentum * tf.convert_to_tensor(buf) + direction)
            direction = direction + self.momentum * tf.convert_to_tensor(buf) if self.nesterov else tf.convert_to_tensor(buf)
        self.assign_sub(variable, lr * direction)
