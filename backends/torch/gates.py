"""GOLD's sigmoid gates on a live nn.Module: one per operator group, scaling that group's output.

A gate sits on the last module of its group's segment whose weights the group owns (a conv,
linear or affine norm, typically the BatchNorm that ends a candidate operator). A layer the segment
shares with the rest of the network (a projection called by two branches, or tied to another
layer's weight) is passed over: folding the gate into it would scale its other uses too. A forward
hook multiplies that module's output by σ(α_g). Such a module's output is linear in its weight and bias jointly
(conv/linear: W·x + b; a norm in either mode: γ·x̂ + β), so the scale can later be folded into
them exactly; what follows it in the segment (ReLU, pooling, ...) sees the same tensor either way.

An operator without weights (an identity skip-connect) has no layer to carry a gate and nothing to
zero, so it is no operator group at all; GOLD-NAS gates its skip-connects too, so a super-network
that wants them prunable gives each a per-channel scale (``examples/supernets/darts_cell.py``'s
``skip_connect``: a depthwise 1x1 conv set to 1), which the gate then scales like any other layer.
The schedule (``asgnas_ir.backends.search.gold``) reads the gates' σ(α) and normalises them per node
itself; the gates here are plain σ(α) each, and `penalty` normalises them per node when given the
schedule's nodes (GOLD-NAS' form).

A *pruned* gate outputs exactly zero and the group's params are zeroed in the live model (again
after every optimizer step, since momentum and weight decay would move them), so the gated
super-network computes what the sub-network without those groups computes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from asgnas_ir.backends.search.architecture import ArchitectureSpace
from asgnas_ir.backends.search.gold import GateNodes
from asgnas_ir.backends.torch.binding import live_tensors
from asgnas_ir.errors import AsgnasError
from asgnas_ir.passes.analysis.dependency_graph import merge_slices
from asgnas_ir.passes.analysis.segments import owned_params, param_readers

# Modules whose output scales with (weight, bias) scaled together: the gate folds into them.
FOLDABLE: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
)


def gate_module_paths(model: nn.Module, space: ArchitectureSpace) -> list[str]:
    """The module path each operator group's gate hooks, in `space.group_ids` order.

    Raises AsgnasError naming the group and its nodes when no foldable module ends the group's
    segment, or when one module would carry two gates (shared, or called at several places).
    """
    graph = space.graph
    calls = Counter(node.source for node in graph.nodes)
    readers = param_readers(graph)
    owner: dict[str, int] = {}
    paths: list[str] = []
    for gid in space.group_ids:
        group = space.space.group(gid)
        shown = ", ".join(group.nodes[:4]) + (" ..." if len(group.nodes) > 4 else "")
        inside = set(group.nodes)
        owned = owned_params(graph, group.nodes, readers)
        # the fold rescales every weight of the gated layer, so none may be read outside the group
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
                "gate on (weights read by no layer outside the group); give the candidate operator a conv, linear "
                "or affine norm layer that it does not share"
            )
        try:
            module = model.get_submodule(node.source)
        except AttributeError:
            raise AsgnasError(
                f"operator group {gid} (nodes {shown}): its last layer with weights of its own, '{node.id}', "
                f"comes from '{node.source}', "
                f"which is not a submodule of {type(model).__name__} (a functional call?); GOLD gates module outputs, "
                "so make that layer an nn.Module"
            ) from None
        if not isinstance(module, FOLDABLE):
            raise AsgnasError(
                f"operator group {gid} (nodes {shown}): its gate would sit on '{node.source}', a {type(module).__name__}, "
                "whose output is not linear in its weights, so the gate could not be folded into it for export; "
                "end the candidate operator with a conv, linear or affine norm layer"
            )
        if node.source in owner or calls[node.source] > 1:
            other = f"group {owner[node.source]} also ends there" if node.source in owner else f"it is called {calls[node.source]} times"
            raise AsgnasError(
                f"operator group {gid} (nodes {shown}): module '{node.source}' cannot carry its gate because {other}; "
                "a gate must scale one group's output only, so give each candidate operator its own layers"
            )
        owner[node.source] = gid
        paths.append(node.source)
    return paths


class GoldGates(nn.Module):
    """The gate logits α (one per operator group) and the hooks that apply them to `model`.

    `active[g]` is False once group g is pruned: its hook then multiplies by 0 and `rezero_`
    keeps its params at zero. `alpha` is an ordinary parameter for the caller's optimizer.
    """

    def __init__(self, model: nn.Module, space: ArchitectureSpace, init: float = 0.0) -> None:
        super().__init__()
        self.paths = gate_module_paths(model, space)
        self.alpha = nn.Parameter(torch.full((space.size,), float(init)))
        self.register_buffer("active", torch.ones(space.size, dtype=torch.bool))
        self._space = space
        self._handles = [model.get_submodule(path).register_forward_hook(self._hook(i)) for i, path in enumerate(self.paths)]
        # The tensors (and indices) to zero per group, bound once: the hot loop zeroes in place.
        tensors = live_tensors(model)
        graph = space.graph
        self._zero_targets: list[list[tuple[torch.Tensor, int, torch.Tensor]]] = []
        for gid in space.group_ids:
            merged = merge_slices(space.space.group(gid).slices)
            self._zero_targets.append(
                [(tensors[graph.params[p].source], axis, torch.as_tensor(idx, dtype=torch.long)) for (p, axis), idx in merged.items()]
            )

    def _hook(self, index: int):  # noqa: ANN202 - a torch hook signature
        def scale(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            return output * (torch.sigmoid(self.alpha[index]) * self.active[index])

        return scale

    def values(self) -> np.ndarray:
        """σ(α) per group as float64 (pruned groups included; the schedule looks at open ones)."""
        return torch.sigmoid(self.alpha.detach()).double().numpy()

    def penalty(self, coefficients: np.ndarray, nodes: GateNodes | None = None) -> torch.Tensor:
        """The GOLD resource term for per-gate coefficients c_g = λ·w_g (0 when pruned).

        Without `nodes`: Σ_g c_g·σ(α_g). With `nodes` (GOLD-NAS' code's form): Σ_g c_g·log(1 + n·w̄_g),
        w̄_g = σ(α_g) / (Σ open σ of g's node + its ungated operands) and n the node's open operators
        (ungated ones included), the gradient flowing through the node's sum too. It is concave in
        the normalised gates, so within a node it drives the weight onto few operators, which a
        penalty on σ alone cannot do once the thresholds look at normalised gates only.
        """
        weights = torch.as_tensor(coefficients, dtype=self.alpha.dtype) * self.active
        sigma = torch.sigmoid(self.alpha)
        if nodes is None:
            return (weights * sigma).sum()
        node_of = torch.as_tensor(nodes.node_of, dtype=torch.long)
        fixed = torch.as_tensor(nodes.fixed, dtype=sigma.dtype)
        counts = torch.zeros_like(fixed).index_add(0, node_of, self.active.to(sigma.dtype)) + fixed
        # w̄ in log space: once λ has grown large, whole nodes' σ underflow to 0 and σ / Σσ would be
        # 0 / 0. A pruned gate enters the sum at log σ = -1e4 (GOLD-NAS subtracts 1e4 from its α).
        log_sigma = torch.where(self.active, torch.nn.functional.logsigmoid(self.alpha), torch.full_like(sigma, -1e4))
        members = node_of[None, :] == torch.arange(len(fixed))[:, None]
        terms = torch.where(members, log_sigma[None, :], torch.full_like(members, -1e4, dtype=sigma.dtype))
        log_fixed = torch.where(fixed > 0, fixed.clamp_min(1).log(), torch.full_like(fixed, -1e4))
        log_sums = torch.logsumexp(torch.cat([terms, log_fixed[:, None]], dim=1), dim=1)
        normalized = torch.exp(log_sigma - log_sums[node_of])
        return (weights * torch.log1p(counts[node_of] * normalized)).sum()

    def set_active(self, keep: Sequence[bool] | np.ndarray) -> None:
        self.active.copy_(torch.as_tensor(np.asarray(keep, dtype=bool)))
        self.rezero_()

    @torch.no_grad()
    def rezero_(self) -> None:
        """Zero the params of every pruned group in the live model (running statistics excepted)."""
        for position in torch.nonzero(~self.active).flatten().tolist():
            for tensor, axis, indices in self._zero_targets[position]:
                tensor.index_fill_(axis, indices, 0)

    @torch.no_grad()
    def fold_into_(self, model: nn.Module) -> None:
        """Multiply each open gate into its module's weight and bias in `model` (a hook-free copy of
        the gated model with the same module paths) and zero the pruned groups there, so `model`
        alone computes what the gated model computes."""
        scales = torch.sigmoid(self.alpha.detach())
        tensors = live_tensors(model)
        graph = self._space.graph
        for i, path in enumerate(self.paths):
            if self.active[i]:
                module = model.get_submodule(path)
                for name in ("weight", "bias"):
                    tensor = getattr(module, name, None)
                    if tensor is not None:
                        tensor.mul_(scales[i])
            else:
                gid = self._space.group_ids[i]
                for (p, axis), idx in merge_slices(self._space.space.group(gid).slices).items():
                    tensors[graph.params[p].source].index_fill_(axis, torch.as_tensor(idx, dtype=torch.long), 0)

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
