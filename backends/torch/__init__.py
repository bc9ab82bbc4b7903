"""PyTorch backend: binds IR params to a live nn.Module by their source paths.

How torch differs from the IR: params are found by `named_parameters()`/`named_buffers()` path
(the IR's `Param.source`); weights are OIHW/OI as the IR's torch frontend records them.
"""

from asgnas_ir.backends._groups import GroupsNotZeroWarning
from asgnas_ir.backends.torch.binding import live_tensors, rerandomize_, run_model, zero_slices_
from asgnas_ir.backends.torch.optim import H2SPG, HESSO

__all__ = ["H2SPG", "HESSO", "GroupsNotZeroWarning", "live_tensors", "rerandomize_", "run_model", "zero_slices_"]
