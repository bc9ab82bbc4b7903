"""Checking example inputs against what a traced module's first layers accept.

A wrong example input otherwise surfaces as an error from deep inside torch ("weight of size
[8, 3, 3, 3], expected input[1, 5, 32, 32] to have 3 channels", "expected scalar type Double but
found Float", sometimes only when the generated code runs). Before the shape run, every forward
argument that feeds a known layer directly (conv, linear, norm, embedding) is compared with what
that layer needs, and a mismatch is reported naming the argument, the layer, and expected vs given.

Invariant: a rule here only fires where torch itself would fail for the same input (or, for a
floating dtype other than the weights', produce an IR whose input and weights disagree), so no
model that runs on its example inputs is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx

from asgnas_ir.errors import ExampleInputError


@dataclass(frozen=True)
class Expectation:
    """What one layer needs of the tensor it reads: `dims` maps axis (negative: from the end) to size."""

    layer: str
    ranks: tuple[int, ...]
    dims: dict[int, int]
    dtype: torch.dtype | None
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else (f"a {str(self.dtype).removeprefix('torch.')}" if self.dtype else "a")
        if len(self.ranks) > 2:  # any rank: only the trailing sizes matter
            trailing = [str(self.dims[axis]) for axis in sorted(self.dims)]
            return f"{kind} tensor shaped [{', '.join(['...', *trailing])}]"
        rank = max(self.ranks)
        shown = ["?"] * rank
        for axis, size in self.dims.items():
            shown[axis if axis >= 0 else rank + axis] = str(size)
        ranks = " or ".join(str(r) for r in self.ranks)
        return f"{kind} tensor of rank {ranks} shaped [{', '.join(shown)}]"

    def mismatch(self, tensor: torch.Tensor) -> str | None:
        """Why `tensor` does not fit, or None when it does."""
        if self.integer and (tensor.is_floating_point() or tensor.is_complex()):
            return f"dtype {str(tensor.dtype).removeprefix('torch.')} (an embedding looks up integer ids)"
        if self.dtype is not None and tensor.dtype != self.dtype:
            return f"dtype {str(tensor.dtype).removeprefix('torch.')}"
        if tensor.dim() not in self.ranks:
            return f"rank {tensor.dim()}"
        for axis, size in self.dims.items():
            if not -tensor.dim() <= axis < tensor.dim() or tensor.shape[axis] != size:
                return f"size {tensor.shape[axis] if -tensor.dim() <= axis < tensor.dim() else 'none'} on axis {axis}"
        return None


def expectation(module: torch.nn.Module, path: str) -> Expectation | None:
    """What `module` (at `path`) requires of its first argument, or None for a layer without rules."""
    name = f"'{path}' ({type(module).__name__})"
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        spatial = len(module.kernel_size)
        # unbatched input is allowed: channels are then the first axis, so count from the end
        return Expectation(name, (spatial + 1, spatial + 2), {-(spatial + 1): module.in_channels}, module.weight.dtype)
    if isinstance(module, torch.nn.Linear):
        return Expectation(name, tuple(range(1, 9)), {-1: module.in_features}, module.weight.dtype)
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
        ranks = {torch.nn.BatchNorm1d: (2, 3), torch.nn.BatchNorm2d: (4,), torch.nn.BatchNorm3d: (5,)}.get(type(module))
        if ranks is None:
            return None
        return Expectation(name, ranks, {1: module.num_features}, None)
    if isinstance(module, torch.nn.LayerNorm):
        trailing = tuple(module.normalized_shape)
        dims = {-(i + 1): size for i, size in enumerate(reversed(trailing))}
        return Expectation(name, tuple(range(len(trailing), 9)), dims, None)
    if isinstance(module, torch.nn.Embedding):
        return Expectation(name, tuple(range(1, 9)), {}, None, integer=True)
    return None


def check_example_inputs(model: torch.nn.Module, gm: torch.nn.Module, arguments: list[torch.fx.Node], given: tuple) -> None:
    """Raise FrontendError naming the first forward argument that its reading layer cannot accept.

    `arguments` are the traced placeholders that receive `given`, in order.
    """
    owner = type(model).__name__
    for index, (node, value) in enumerate(zip(arguments, given, strict=True)):
        where = f"example input {index + 1} ('{node.name}' of {owner}.forward)"
        if not isinstance(value, torch.Tensor):
            hint = " (torch.from_numpy(array) converts it)" if type(value).__module__ == "numpy" else ""
            kind = type(value).__name__ if type(value).__module__ == "builtins" else f"{type(value).__module__}.{type(value).__name__}"
            raise ExampleInputError(f"{where} is a {kind}; pass a torch.Tensor{hint}")
        for user in node.users:
            if user.op != "call_module" or not user.args or user.args[0] is not node:
                continue
            rule = expectation(gm.get_submodule(str(user.target)), str(user.target))
            problem = rule.mismatch(value) if rule is not None else None
            if rule is not None and problem is not None:
                raise ExampleInputError(
                    f"{where} does not fit {rule.layer}: it expects {rule.describe()}, but the given tensor is "
                    f"{str(value.dtype).removeprefix('torch.')} {list(value.shape)} ({problem}). "
                    "Pass inputs of the expected shape and dtype (CLI: --input 1,3,224,224 or int64[1,16])."
                )
