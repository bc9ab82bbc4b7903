"""GOLD on a Keras super-network (TensorFlow backend): `asgnas search gold` with `"framework": "keras"`.

The torch GOLD (`asgnas_ir.backends.torch.gold`, `asgnas_ir.backends.torch.gates`) with Keras 3 in
place of torch, and the same framework-free schedule (`asgnas_ir.backends.search.gold.GoldSchedule`:
per-node gate normalisation, the xi_min/xi_max thresholds, λ's rule, candidates). Only training and
the gates are Keras code here; the config (`GoldConfig` plus `framework`), the data split, the
front, its plot and table are `asgnas_ir.backends.search.gold_run`'s, shared with torch (this
module imports no torch).

Gates (`KerasGoldGates`). One sigmoid gate per operator group, on the same layer the torch gates
choose: the last layer of the group's segment whose weights the group owns and nobody outside it
reads (a Conv/Dense/BatchNormalization, whose output is linear in its weights so the gate can be
folded into them). The Keras equivalent of torch's forward hook is an instance `call` shadowing the
layer's class `call` (as `binding.calibrate_batch_norms` does), returning `call(...) · σ(α_g)·active_g`;
the logits α are one `tf.Variable` trained by the search's own GradientTape loop, alongside the
weights, on the same batches (one level). A pruned group's gate is 0 and its params are zeroed after
every step (multiplicative masks per variable, bound once), so the gated super-network computes
exactly its sub-network.

Export: a clone of the model (`keras.models.clone_model`: new layers, so no shadowed calls) gets the
candidate's weights, each open gate folded into its layer's kernel/bias (gamma/beta for a norm) and
the pruned groups zeroed; it is lowered again with `ai.compile`, cut with `ai.subnet` and written as
Keras code (`ai.codegen(target="keras")`), which is checked against the gated super-network.

Differences from the torch search: no checkpoints (so no `--resume`, as the Keras training job);
weight decay is coupled to the gradient by hand (torch SGD's form) and both optimizers are plain
momentum SGD written here, so a step is the torch step.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.backends.search.gold import GateNodes, GoldSchedule
from asgnas_ir.backends.search.gold_run import GoldConfig, split_with_validation, write_front
from asgnas_ir.backends.search.pareto import pareto_front
from asgnas_ir.backends.tensorflow.binding import _zero_lines, live_entries
from asgnas_ir.backends.training import TrainingDiverged
from asgnas_ir.config_file import load_config
from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.passes.analysis.dependency_graph import merge_slices
from asgnas_ir.passes.analysis.segments import owned_params, param_readers

# Layers whose output is linear in (kernel, bias) / (gamma, beta) jointly: a gate folds into them.
_FOLD_NAMES = ("kernel", "bias", "gamma", "beta", "depthwise_kernel", "pointwise_kernel")


class KerasGoldConfig(GoldConfig):
    """`GoldConfig` for a Keras super-network: `supernet` a name of `KERAS_SUPERNETS`, or a SPEC
    `module:function` called as `function(num_classes=10, in_channels=C, image_size=S)` (e.g.
    `asgnas_ir.examples.supernets.keras_nets:darts_cell_gold`, GOLD-NAS' operator set)."""

    framework: Literal["keras"] = "keras"

    @classmethod
    def from_file(cls, path: str | Path) -> KerasGoldConfig:
        return load_config(cls, path, "GOLD search config")


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _layer_of_variables(model: Any) -> dict[int, Any]:
    """id(variable) → the innermost layer owning it."""
    owner: dict[int, Any] = {}
    for layer in model._flatten_layers(include_self=False):
        for variable in layer.weights:
            owner[id(variable)] = layer
    return owner


def gate_layers(model: Any, space: ArchitectureSpace) -> list[Any]:
    """The Keras layer each operator group's gate scales, in `space.group_ids` order (the rule of
    `backends.torch.gates.gate_module_paths`), or an AsgnasError naming the group."""
    graph = space.graph
    calls = Counter(node.source for node in graph.nodes)
    readers = param_readers(graph)
    live = live_entries(model)
    owner_of = _layer_of_variables(model)
    taken: dict[int, int] = {}
    layers: list[Any] = []
    for gid in space.group_ids:
        group = space.space.group(gid)
        shown = ", ".join(group.nodes[:4]) + (" ..." if len(group.nodes) > 4 else "")
        inside = set(group.nodes)
        owned = owned_params(graph, group.nodes, readers)
        node = next(
            (
                graph.node(n)
                for n in reversed(group.nodes)
                if any(p in owned for p in graph.node(n).params.values())
                and all(readers[p] <= inside for p in graph.node(n).params.values())
            ),
            None,
        )
        if node is None:
            raise AsgnasError(
                f"operator group {gid} (nodes {shown}) has no layer with trainable weights of its own to put a GOLD "
                "gate on; give the candidate operator a Conv, Dense or BatchNormalization layer that it does not share"
            )
        entries = [live.get(graph.params[p].source) for p in node.params.values()]
        found = {id(owner_of[id(e.variable)]): owner_of[id(e.variable)] for e in entries if e is not None and id(e.variable) in owner_of}
        if len(found) != 1:
            raise AsgnasError(f"operator group {gid} (nodes {shown}): cannot find the one Keras layer holding the weights of '{node.id}'")
        layer = next(iter(found.values()))
        if not any(getattr(layer, name, None) is not None for name in _FOLD_NAMES) or isinstance(layer, keras.Model):
            raise AsgnasError(
                f"operator group {gid} (nodes {shown}): its gate would sit on '{layer.name}', a {type(layer).__name__}, "
                "whose output is not linear in its weights; end the candidate operator with a Conv, Dense or norm layer"
            )
        if id(layer) in taken or calls[node.source] > 1:
            raise AsgnasError(
                f"operator group {gid} (nodes {shown}): layer '{layer.name}' cannot carry its gate (shared or called twice); "
                "give each candidate operator its own layers"
            )
        taken[id(layer)] = gid
        layers.append(layer)
    return layers


class KerasGoldGates:
    """Gate logits α (one `tf.Variable`, one entry per group) applied to `model`'s gate layers."""

    def __init__(self, model: Any, space: ArchitectureSpace, init: float = 0.0) -> None:
        self.model, self.space = model, space
        self.layers = gate_layers(model, space)
        self.alpha = tf.Variable(tf.fill([space.size], float(init)), trainable=True, name="gold_alpha")
        self.active = tf.Variable(tf.ones([space.size]), trainable=False, name="gold_active")
        for i, layer in enumerate(self.layers):
            if "call" in vars(layer):
                raise AsgnasError(f"layer '{layer.name}' already has an instance `call`; it cannot carry a GOLD gate")
            object.__setattr__(layer, "call", self._gated(layer, i))
        # per group: (variable, multiplicative 0/1 mask zeroing that group's lines), bound once
        live = live_entries(model)
        graph = space.graph
        self._masks: list[list[tuple[Any, np.ndarray]]] = []
        for gid in space.group_ids:
            targets = []
            for (param, axis), idx in merge_slices(space.space.group(gid).slices).items():
                entry = live.get(graph.params[param].source)
                if entry is None or not entry.variable.trainable:  # moving statistics stay (as in torch)
                    continue
                ones = np.ones(tuple(int(d) for d in entry.variable.shape), np.float32)
                targets.append((entry.variable, _zero_lines(ones, entry.view, axis, idx)))
            self._masks.append(targets)
        self._rezero: list[tuple[Any, tf.Tensor]] = []

    def _gated(self, layer: Any, index: int) -> Any:
        original = type(layer).call.__get__(layer)

        def call(*args: Any, **kwargs: Any) -> Any:
            scale = tf.sigmoid(self.alpha[index]) * self.active[index]
            return original(*args, **kwargs) * tf.cast(scale, layer.compute_dtype)

        return call

    def remove(self) -> None:
        for layer in self.layers:
            if "call" in vars(layer):
                object.__delattr__(layer, "call")

    def values(self) -> np.ndarray:
        return tf.sigmoid(self.alpha).numpy().astype(np.float64)

    def penalty(self, coefficients: tf.Tensor, nodes: GateNodes | None) -> tf.Tensor:
        """`backends.torch.gates.GoldGates.penalty` in TF: Σ c_g·σ(α_g), or with `nodes` GOLD-NAS'
        Σ c_g·log(1 + n·w̄_g) on the gates normalised per node (in log space)."""
        active = self.active
        weights = coefficients * active
        if nodes is None:
            return tf.reduce_sum(weights * tf.sigmoid(self.alpha))
        node_of = tf.constant(nodes.node_of, tf.int32)
        fixed = tf.constant(nodes.fixed, tf.float32)
        k = len(nodes.fixed)
        counts = tf.math.unsorted_segment_sum(active, node_of, k) + fixed
        log_sigma = tf.where(active > 0, tf.math.log_sigmoid(self.alpha), -1e4 * tf.ones_like(self.alpha))
        members = tf.equal(node_of[None, :], tf.range(k)[:, None])
        terms = tf.where(members, log_sigma[None, :], -1e4 * tf.ones_like(members, tf.float32))
        log_fixed = tf.where(fixed > 0, tf.math.log(tf.maximum(fixed, 1.0)), -1e4 * tf.ones_like(fixed))
        log_sums = tf.reduce_logsumexp(tf.concat([terms, log_fixed[:, None]], axis=1), axis=1)
        normalized = tf.exp(log_sigma - tf.gather(log_sums, node_of))
        return tf.reduce_sum(weights * tf.math.log1p(tf.gather(counts, node_of) * normalized))

    def set_active(self, keep: np.ndarray) -> None:
        keep = np.asarray(keep, dtype=bool)
        self.active.assign(keep.astype(np.float32))
        masks: dict[int, tuple[Any, np.ndarray]] = {}
        for position in np.flatnonzero(~keep):
            for variable, mask in self._masks[position]:
                old = masks.get(id(variable), (variable, np.ones_like(mask)))[1]
                masks[id(variable)] = (variable, old * mask)
        self._rezero = [(v, tf.constant(m)) for v, m in masks.values()]
        self.rezero()

    def rezero(self) -> None:
        for variable, mask in self._rezero:
            variable.assign(variable * mask)

    def fold_into(self, clone: Any) -> None:
        """Multiply each open gate into its layer's kernel/bias (gamma/beta) in `clone` (same layer
        names, no shadowed calls) and zero the pruned groups there."""
        scales = self.values()
        active = self.active.numpy() > 0
        by_name = {layer.name: layer for layer in clone._flatten_layers(include_self=False)}
        for i, layer in enumerate(self.layers):
            if active[i]:
                target = by_name[layer.name]
                for name in _FOLD_NAMES:
                    variable = getattr(target, name, None)
                    if variable is not None and hasattr(variable, "assign"):
                        variable.assign(variable * np.float32(scales[i]))
        live, key_of = live_entries(clone), {id(e.variable): k for k, e in live_entries(self.model).items()}
        for position in np.flatnonzero(~active):
            for variable, mask in self._masks[position]:
                target = live[key_of[id(variable)]].variable
                target.assign(target * mask)


def _momentum_step(variables: list[Any], grads: list[Any], buffers: list[Any], lr: float, momentum: float, decay: float) -> None:
    """torch.optim.SGD's step (coupled weight decay, dampening 0, no Nesterov)."""
    for variable, grad, buffer in zip(variables, grads, buffers, strict=True):
        if grad is None:
            continue
        if decay:
            grad = grad + decay * variable
        buffer.assign(momentum * buffer + grad)
        variable.assign_sub(lr * buffer)


class KerasGoldSearch:
    """The live state of one Keras GOLD run (mirrors `backends.torch.gold.GoldSearch`)."""

    def __init__(self, config: GoldConfig, build: Any = None) -> None:
        """`build(seed) -> keras.Model` replaces the named super-network (tests, your own network)."""
        import asgnas_ir as ai
        from asgnas_ir.examples.supernets.keras_nets import KERAS_SUPERNETS

        self._builder = build
        if build is None and config.supernet not in KERAS_SUPERNETS and ":" not in config.supernet:
            raise SpecError(
                f"unknown Keras super-network '{config.supernet}'; choose one of {', '.join(KERAS_SUPERNETS)} or give a "
                "SPEC module:function"
            )
        self.config = config
        data, full = split_with_validation(config)
        self.x_train, self.y_train = _nhwc(data.x_train), data.y_train.astype(np.int64)
        self.x_val, self.y_val = _nhwc(data.x_test), data.y_test
        self.x_test, self.y_test = _nhwc(full.x_test), full.y_test
        self.example = self.x_test[:1]
        self.model = self._build(config.seed)
        self.graph = ai.compile(self.model, self.example)
        self.space = ArchitectureSpace(self.graph, ai.search_space(self.graph, mode=config.mode))
        self.schedule = GoldSchedule(self.space, config.settings())
        self.gates = KerasGoldGates(self.model, self.space, init=config.gate_init)
        self.weights = list(self.model.trainable_variables)
        self._buffers = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.weights]
        self._gate_buffer = tf.Variable(tf.zeros_like(self.gates.alpha), trainable=False)
        self._loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.snapshots: list[dict[str, Any]] = []
        self.scores: list[dict[str, float]] = []
        self.finetuned = 0
        self._step_fn = tf.function(self._step)

    def _build(self, seed: int) -> Any:
        from asgnas_ir.examples.supernets.keras_nets import build_keras

        keras.utils.set_random_seed(seed)
        if self._builder is not None:
            return self._builder(seed)
        _, size, _, channels = self.x_test.shape
        if ":" in self.config.supernet:
            from asgnas_ir.spec import load_model

            model = load_model(self.config.supernet, {"num_classes": 10, "in_channels": channels, "image_size": size})
            if not isinstance(model, keras.Model):
                raise SpecError(f"GOLD config 'supernet': SPEC '{self.config.supernet}' gave a {type(model).__name__}, "
                                "not a keras.Model; a Keras search needs a Keras super-network")
            return model
        return build_keras(self.config.supernet, num_classes=10, in_channels=channels, image_size=size)

    def _step(self, x: tf.Tensor, y: tf.Tensor, coefficients: tf.Tensor, lr: tf.Tensor, train_gates: bool, gold_penalty: bool) -> tf.Tensor:
        config = self.config
        with tf.GradientTape() as tape:
            penalty = self.gates.penalty(coefficients, self.schedule.nodes if gold_penalty else None)
            loss = self._loss(y, self.model(x, training=True)) + penalty
        grads = tape.gradient(loss, [*self.weights, self.gates.alpha])
        _momentum_step(self.weights, grads[:-1], self._buffers, lr, config.momentum, config.weight_decay)
        if train_gates:
            _momentum_step([self.gates.alpha], grads[-1:], [self._gate_buffer], config.gate_lr, config.gate_momentum, 0.0)
        return loss

    def train_round(self, round_index: int, *, train_gates: bool = True, lr: float | None = None) -> float:
        """One round of one-level training (weights and, unless fixed, gates on the same batches)."""
        config = self.config
        n = len(self.x_train)
        steps = config.steps_per_round or math.ceil(n / config.batch_size)
        rng = np.random.default_rng(config.seed * 100_003 + round_index)
        epochs = math.ceil(steps * config.batch_size / n)
        order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
        coefficients = self.schedule.penalty_coefficients() if train_gates else np.zeros(self.space.size)
        coefficients = tf.constant(coefficients, tf.float32)
        total = 0.0
        for step in range(steps):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            if len(index) == 0:
                break
            loss = float(self._step_fn(
                tf.constant(self.x_train[index]), tf.constant(self.y_train[index]), coefficients,
                tf.constant(lr or config.lr, tf.float32), bool(train_gates), config.penalty == "gold",
            ))
            if not math.isfinite(loss):
                raise TrainingDiverged(f"GOLD (keras): loss became {loss} in round {round_index + 1}, step {step + 1}; lower lr or gate_lr")
            self.gates.rezero()
            total += loss
        return total / steps

    def end_round(self) -> str:
        outcome = self.schedule.end_round(self.gates.values())
        if outcome.candidate is not None:
            self._record()
        self.gates.set_active(self.schedule.keep)
        return f"λ {self.schedule.lmbda:.3g}  open {int(self.schedule.keep.sum())}/{self.space.size}"

    def finish(self) -> None:
        if self.schedule.finish() is not None:
            self._record()

    def _record(self) -> None:
        self.snapshots.append(self.snapshot())
        self.scores.append(self.accuracies())

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(x, training=False))

    def accuracies(self) -> dict[str, float]:
        val = float((self.logits(self.x_val).argmax(1) == self.y_val).mean() * 100)
        test = float((self.logits(self.x_test).argmax(1) == self.y_test).mean() * 100)
        return {"val_accuracy": val, "test_accuracy": test}

    def snapshot(self) -> dict[str, Any]:
        return {"model": [np.array(w) for w in self.model.get_weights()], "alpha": self.gates.alpha.numpy().copy(),
                "active": self.gates.active.numpy().copy()}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.model.set_weights(snapshot["model"])
        self.gates.alpha.assign(snapshot["alpha"])
        self.gates.set_active(snapshot["active"] > 0)

    def front(self) -> list[int]:
        candidates = self.schedule.candidates
        return pareto_front(list(range(len(candidates))), cost=lambda i: candidates[i].flops, score=lambda i: self.scores[i]["val_accuracy"])

    def finetune_next(self) -> dict[str, float]:
        """`GoldSearch.finetune_next`: re-train the next candidate for `finetune_epochs` (gates fixed,
        lr falling linearly), from its weights ("finetune") or fresh ones with open gates at σ = 1 ("scratch")."""
        index = self.finetuned
        live = self.snapshot()
        buffers = [b.numpy() for b in self._buffers]
        self.restore(self.snapshots[index])
        if self.config.retrain == "scratch":
            fresh = self._build(self.config.seed * 100_003 + 7_919 * (index + 1))
            self.model.set_weights(fresh.get_weights())
            self.gates.alpha.assign(tf.fill([self.space.size], 30.0))
            self.gates.rezero()
        for b in self._buffers:
            b.assign(tf.zeros_like(b))
        epochs = self.config.finetune_epochs
        for epoch in range(epochs):
            self.train_round(1_000_000 + 1000 * index + epoch, train_gates=False, lr=self.config.lr * (epochs - epoch) / epochs)
        recorded = {f"recorded_{k}": v for k, v in self.scores[index].items() if not k.startswith("recorded_")}
        self.snapshots[index] = self.snapshot()
        self.scores[index] = {**self.accuracies(), **recorded}
        self.restore(live)
        for b, value in zip(self._buffers, buffers, strict=True):
            b.assign(value)
        self.finetuned += 1
        return self.scores[index]

    def export(self, index: int, out_dir: Path) -> dict[str, Any]:
        """Fold candidate `index`'s gates into a clone, lower it, build its sub-network, write Keras
        code; returns the files and how far the generated model is from the gated one (test set)."""
        import asgnas_ir as ai
        from asgnas_ir.testing import load_generated_keras

        candidate = self.schedule.candidates[index]
        self.restore(self.snapshots[index])
        folded = keras.models.clone_model(self.model)
        folded.set_weights(self.model.get_weights())
        self.gates.fold_into(folded)
        graph = ai.compile(folded, self.example)
        space = ai.search_space(graph, mode=self.config.mode)
        sub = ai.subnet(graph, space, self.space.zero_groups(np.array(candidate.keep)))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        files = ai.codegen(sub, target="keras", out_dir=out_dir)
        reference = self.logits(self.x_test)
        generated = np.asarray(load_generated_keras(out_dir)(self.x_test, training=False))
        max_ref = float(np.abs(reference).max())
        diff = float(np.abs(reference - generated).max())
        return {"files": [str(f) for f in files], "max_abs_diff": diff, "max_ref": max_ref,
                "equivalent": bool(max_ref > 1e-3 and diff <= 1e-4 * max_ref)}


def run_gold_keras(config: GoldConfig, *, console: Any = None) -> dict[str, Any]:
    """`backends.torch.gold.run_gold` for a Keras super-network: search, re-train the candidates,
    choose the front, export it; writes front.json, front.png and front/<i>/ under `config.out`."""
    from rich.console import Console

    console = console or Console(highlight=False)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    search = KerasGoldSearch(config)
    started = time.perf_counter()
    while not search.schedule.done and search.schedule.rounds < config.rounds:
        loss = search.train_round(search.schedule.rounds, train_gates=not search.schedule.warming_up)
        status = search.end_round()
        console.print(f"GOLD (keras) round {search.schedule.rounds}: loss {loss:.3f}  {status}")
    search.finish()
    search_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if config.finetune_epochs:
        while search.finetuned < len(search.snapshots):
            search.finetune_next()
    finetune_seconds = time.perf_counter() - started

    return write_front(search, config, search_seconds=search_seconds, finetune_seconds=finetune_seconds, console=console,
                       extra={"framework": "keras"})


def run_gold_keras_search(config_path: Path, options: Any, console: Any = None) -> dict[str, Any]:
    """The `asgnas search gold CONFIG` entry when CONFIG says `"framework": "keras"`."""
    config = KerasGoldConfig.from_file(config_path)
    if getattr(options, "out", None):
        config = config.model_copy(update={"out": options.out})
    if getattr(options, "resume", False):
        raise AsgnasError("GOLD on a Keras super-network keeps no checkpoints; rerun it without --resume")
    return run_gold_keras(config, console=console)


__all__ = ["KerasGoldConfig", "KerasGoldGates", "KerasGoldSearch", "gate_layers", "run_gold_keras", "run_gold_keras_search"]
