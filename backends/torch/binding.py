"""IR params ↔ the tensors of a live nn.Module, and the small torch helpers `check` needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from asgnas_ir.errors import AsgnasError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.ir.weights import tensor_array
from asgnas_ir.passes.analysis.dependency_graph import Slice, merge_slices


def live_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `model` by its path (the IR's `Param.source`); a tied tensor
    answers to each of its paths."""
    tensors = dict(model.named_buffers(remove_duplicate=False))
    tensors.update(dict(model.named_parameters(remove_duplicate=False)))
    return tensors


def device_of(values: Iterable[Any], default: str | torch.device = "cpu") -> torch.device:
    """The device of the first tensor among `values` (`default` when there is none): where the tensors
    that code makes to go with them (masks, indices, a generated model) must be created."""
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device(default)


def model_device(model: torch.nn.Module, default: str | torch.device = "cpu") -> torch.device:
    """The device of `model`'s first parameter or buffer (`default` for a model with neither)."""
    return device_of(live_tensors(model).values(), default)


@torch.no_grad()
def zero_slices_(model: torch.nn.Module, graph: Graph, slices: Iterable[Slice]) -> None:
    """Set the given slices to zero in the live model, in place (running statistics excepted)."""
    tensors = live_tensors(model)
    for (param, axis), indices in merge_slices(slices).items():
        source = graph.params[param].source
        tensor = tensors.get(source)
        if tensor is None:
            raise AsgnasError(f"param '{param}' (source '{source}') is not a parameter or buffer of {type(model).__name__}")
        tensor.index_fill_(axis, torch.as_tensor(indices, dtype=torch.long, device=tensor.device), 0)


@torch.no_grad()
def rerandomize_(model: torch.nn.Module, seed: int = 0, example_inputs: tuple[Any, ...] | None = None) -> None:
    """Give every floating-point parameter and buffer random values, in place; with `example_inputs`,
    then calibrate every batch norm's running statistics on them (`calibrate_batch_norms_`).

    Random-init models often produce degenerate outputs (zero-initialised heads, BN with unit
    statistics), which would make an equivalence check vacuous. Matrices get N(0, 2/fan_in) (He's
    rule: a ReLU zeroes half of what it reads, so 1/fan_in halves the signal's variance per layer and
    VGG16's output, 15 ReLU layers deep without a norm, no longer depended on its input); scale-like vectors (norm weights, running variances)
    U(0.5, 1.5) so they stay positive; other vectors N(0, 0.1^2).

    Random running statistics alone do not match the activations they are applied to, so in a deep
    BN network no layer normalises and each block shrinks (or grows) the signal: after a dozen blocks
    the output barely depends on the input and `check` could only compare a constant. Calibrating
    restores what BN does in a trained network (unit-spread activations per channel) while the random
    gamma/beta still make the channels differ.
    """
    # drawn on the host and moved: the same seed gives the same weights on every device (a CUDA
    # generator's stream differs from the CPU one) and in every dtype (drawn in float32, then rounded)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for name, tensor in sorted(live_tensors(model).items()):
        if not tensor.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        vector_like = sum(1 for d in tensor.shape if d > 1) <= 1
        if vector_like and (leaf in ("weight", "running_var", "gamma", "scale", "gain") or "scale" in leaf or leaf.endswith("var")):
            values = torch.rand(tensor.shape, generator=generator, device="cpu") + 0.5
        elif vector_like:
            values = torch.randn(tensor.shape, generator=generator, device="cpu") * 0.1
        else:
            fan_in = int(np.prod(tensor.shape[1:])) or 1
            values = torch.randn(tensor.shape, generator=generator, device="cpu") * (2.0 / fan_in) ** 0.5
        tensor.copy_(values.to(device=tensor.device, dtype=tensor.dtype))
    if example_inputs is not None:
        calibrate_batch_norms_(model, example_inputs, seed)


def _wide(device: torch.device) -> torch.dtype:
    """The dtype moments are summed in on `device`: float64, or float32 where the device has no float64
    (Apple's MPS), which still holds a bfloat16 or float16 activation's moments exactly enough."""
    return torch.float32 if device.type == "mps" else torch.float64


# How many inputs a calibration pass normalises over: the example and redraws like it (see
# `calibration_batch`). Eight keep a BN that sees a 2x2 map from fitting one sample.
CALIBRATION_BATCH = 8


def calibration_batch(example_inputs: tuple[Any, ...], seed: int = 0, size: int = CALIBRATION_BATCH) -> tuple[Any, ...] | None:
    """The example inputs followed, along axis 0, by `size - 1` redraws of each floating-point input
    with its own mean and spread (other inputs repeated): the inputs `check` probes a model with are
    drawn the same way. None when the inputs do not share a leading batch axis (a non-tensor, a 0-d
    tensor, leading sizes that differ), so that only the example itself can be used."""
    tensors = [x for x in example_inputs if isinstance(x, torch.Tensor)]
    if size <= 1 or len(tensors) != len(example_inputs) or any(x.dim() == 0 for x in tensors):
        return None
    if len({int(x.shape[0]) for x in tensors}) != 1:
        return None
    generator = torch.Generator(device="cpu").manual_seed(seed)  # host draws: the same batch on every device
    batch = []
    for x in tensors:
        if x.is_floating_point() and x.numel():
            host = x.detach().cpu().double()  # two scalars: read on the host (MPS has no float64)
            spread = float(host.std(unbiased=False))
            centre = float(host.mean())
            draws = torch.randn((size - 1, *x.shape), generator=generator, dtype=torch.float64, device="cpu")
            draws = centre + spread * draws if spread > 0 else draws
            redrawn = draws.reshape(-1, *x.shape[1:]).to(dtype=x.dtype, device=x.device)
        else:
            redrawn = x.repeat(size - 1, *([1] * (x.dim() - 1)))
        batch.append(torch.cat([x, redrawn]))
    return tuple(batch)


@torch.no_grad()
def calibrate_batch_norms_(model: torch.nn.Module, example_inputs: tuple[Any, ...], seed: int = 0) -> bool:
    """Set each batch norm's running mean and variance to the moments of what reaches it when the
    model runs, in eval mode, on `calibration_batch(example_inputs, seed)` (the example plus redraws
    like it), or on the example alone where that batch cannot be made or the model refuses it (a
    fixed batch size).

    A forward pre-hook writes the moments of the BN's input (per channel, axis 1, over every other
    axis) into its running statistics just before the BN runs, so each BN normalises with the batch's
    own statistics, as in training mode, and every later BN is calibrated on the already-normalised
    signal. The variance is the biased one, the one training mode divides by, so the calibrated model
    in eval mode computes on the batch exactly what training mode would (torch's train-mode update
    would store the unbiased variance instead, n/(n-1) larger). Nothing but the two buffers changes:
    no module leaves eval mode, momentum and `num_batches_tracked` stay as they are, and no dropout
    or other training-mode behaviour can leak into the statistics.

    Why a batch and not the example alone: deep in a network a BN sees few values per channel (a 2x2
    map of one sample) and fits them; any other input then leaves the fitted range, and the
    mismatch compounds block after block (EfficientNetB0 at 64x64: logits of 1 on the example, 2e6
    on a redraw). Statistics over the example and redraws like it hold for the inputs check probes.

    Statistics that the inputs cannot determine keep their random values: a BN that sees one value
    per channel (BatchNorm1d on [1, C] without a batch) has no spread to measure, and a channel that
    is constant on these inputs (a dead ReLU channel) keeps its random variance, since normalising by
    a zero variance would amplify any other input by 1/sqrt(eps). A BN called more than once is
    calibrated on its first call. Modules that carry no running statistics are left alone.

    Returns whether the statistics were calibrated. A model that cannot run on the example either
    keeps every statistic as it was (False): `check` compiles it next, and the frontend reports the
    bad input by name, which the raw exception of this pass would not.
    """
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and m.running_var is not None]
    if not norms:
        return True
    done: set[int] = set()

    def calibrate(module: Any, args: tuple[Any, ...]) -> None:
        if id(module) in done or not args or not isinstance(args[0], torch.Tensor) or args[0].dim() < 2:
            return
        done.add(id(module))
        x = args[0].detach().to(_wide(args[0].device))
        axes = [d for d in range(x.dim()) if d != 1]
        if x.numel() // max(x.shape[1], 1) <= 1:
            return
        mean = x.mean(dim=axes)
        var = x.var(dim=axes, unbiased=False)
        running_mean, running_var = module.running_mean, module.running_var
        var = torch.where(var > 0, var, running_var.to(var.dtype))
        running_mean.copy_(mean.to(running_mean.dtype))
        running_var.copy_(var.to(running_var.dtype))

    saved = {id(m): (m.running_mean.clone(), m.running_var.clone()) for m in norms}

    def restore() -> None:
        for m in norms:
            m.running_mean.copy_(saved[id(m)][0])
            m.running_var.copy_(saved[id(m)][1])
        done.clear()

    handles = [m.register_forward_pre_hook(calibrate) for m in norms]
    try:
        batch = calibration_batch(example_inputs, seed)
        for inputs in ([batch] if batch is not None else []) + [example_inputs]:
            try:
                model(*inputs)
                return True
            except Exception:  # noqa: BLE001  (a refused batch: try the example; a refused example: see above)
                restore()
        return False
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def recalibrate_batch_norms_(model: torch.nn.Module, graph: Graph, example_inputs: tuple[Any, ...], seed: int = 0) -> bool:
    """Calibrate the batch norms of `model` again (`calibrate_batch_norms_`) and write the new running
    statistics into the params of `graph` that were read from them; False, with every statistic put
    back as it was, when some BN whose statistics changed has no param in `graph` to carry them (the
    graph folded it, or an exporter did), since the graph and the model would then disagree.

    `check` calls it after zeroing a selection: the statistics calibrated on the whole network no
    longer match a network with half its channels zeroed (the activations feeding each BN lose
    spread, the stale mean dominates them), and through a dozen blocks the zeroed reference forgets
    its input again, so check would call a valid selection degenerate. Calibrating the zeroed network
    itself restores the signal; the graph gets the same statistics, so both compute the same thing.
    """
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and m.running_var is not None]
    stats = [t for m in norms for t in (m.running_mean, m.running_var) if isinstance(t, torch.Tensor)]
    if not stats:
        return True
    saved = [t.clone() for t in stats]
    weights = dict(graph.weights)  # read before the statistics change (deferred weights refuse a changed model)
    calibrate_batch_norms_(model, example_inputs, seed)
    by_id = {id(t): t for t in stats}
    carried: dict[int, list[str]] = {}
    tensors = live_tensors(model)
    for name, param in graph.params.items():
        tensor = tensors.get(param.source)
        if tensor is not None and id(tensor) in by_id:
            carried.setdefault(id(tensor), []).append(name)
    changed = [t for t, old in zip(stats, saved, strict=True) if not torch.equal(t, old)]
    if any(id(t) not in carried for t in changed):
        for tensor, old in zip(stats, saved, strict=True):
            tensor.copy_(old)
        return False
    for tensor in changed:
        for name in carried[id(tensor)]:
            old = np.asarray(weights[name])
            weights[name] = tensor_array(tensor).reshape(old.shape).astype(old.dtype)
    graph.set_weights(weights)
    return True


@torch.no_grad()
def run_model(model: Any, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """Outputs of `model(*inputs)` as numpy arrays (a tuple/list/dict of tensors is flattened)."""
    result = model(*inputs)
    flat: list[Any] = []

    def collect(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat.append(tensor_array(value))
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            for key in value:
                collect(value[key])

    collect(result)
    return flat
